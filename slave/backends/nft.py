"""The nftables backend: members' network policy (issue 11) as one table of its own.

Each member's ``MemberPolicy.firewall`` is one unit: nft *commands* on our table, each
one idempotent (``add table``, ``add map owners``, the member's counters, ``add chain`` +
``flush chain`` of its chains, its rules, its users' entries in the ``owners`` verdict
map). The index ``ruleset.nft`` is the one transaction that replaces our table and
nothing else::

    table inet domtool                 # make sure it exists (so the delete cannot fail)
    delete table inet domtool          # ...and drop it, then build it again:
    add table inet domtool; add map inet domtool owners { type uid : verdict; }
    add chain inet domtool output { type filter hook output priority 0; policy accept; }
    add rule inet domtool output meta skuid vmap @owners
    include "state_dir/live/nft/OWNER.nft"      # one per member

``nft -f`` applies a file as one netlink batch: either the whole new table is there or
the old one still is. Other tables on the host are never named. The daemon's check is
``nft -c -f`` of ``check.nft`` (the same, naming the staged unit files; the kernel
validates the batch without committing; user names are resolved to uids then, so a user
this host lacks is refused there, and the engine's bisection refuses only that member).

Units live at stable paths (``state_dir/live/nft/OWNER.nft``, the engine's live files),
so when only members' rules change (the same members with the same users) the engine
takes the narrow path: each changed unit is checked on its own (``nft -c -f UNIT``,
against the live table) and loaded on its own (``nft -f UNIT``: that member's chains
flushed and refilled in one transaction; everyone's counters are kept). Adding or
removing a member or one of its users changes the unit keys and reloads the whole table
(counters start again). The probe (kind ``"nft_table"``) reads a changed member's ``a_``
chain back from the kernel: its accept rule carries this version's digest (a comment).

What a member's user chain ``u_<user>`` says, for packets its sockets send (``meta
skuid`` matches the owner of the sending socket, on output only):

- ``ct direction original``: a connection or datagram flow the member started; allowed
  by a ``client`` rule's protocol and destination port (and destination ``hosts``);
- ``ct direction reply``: the member answering a flow someone else started, i.e. a
  socket it accepted on or receives on; allowed by a ``server`` rule's source port
  (anywhere), ``proxied`` (only to the site's web servers' addresses), ``local``
  (only out of ``lo``: to this machine). A listener on a port the member may not serve
  never gets its SYN-ACK out (the kernel attributes it to the listener's owner), so
  the connection is never established.
- anything else: rejected (TCP reset to the member's socket, ICMP admin-prohibited).

Allowed packets go to ``a_<owner>``: the owner's optional rate limit (``limit name
lim_<owner>``, ``rate over N bytes/second``: packets over it are dropped and counted in
``drop_<owner>``), then the outbound counter ``out_<owner>`` and accept.
:func:`read_counters` reads those counters (the usage report's source).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

import attrs

from domtool import model
from domtool.model import DesiredState, FirewallRule, MemberPolicy
from domtool.policies import member_policy
from domtool.slave.backend import (
    Command,
    Probe,
    RenderRefused,
    Unit,
    UnitRefused,
    memo_get,
    memo_put,
)

INDEX_FILE = "ruleset.nft"
CHECK_FILE = "check.nft"
NARROW_RELOADS = 20
FAMILY = "inet"
TABLE = "domtool"
MAX_PROBES = 10
NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class PolicyRefused(UnitRefused):
    kind = "policy"


@attrs.frozen
class NftConfig:
    """``nft``: the nft program; ``state_dir``: the slave's (the index names unit files
    under it); ``node``: this host's node name (units of other nodes are ignored);
    ``table``: our table's name in family inet."""

    state_dir: str
    nft: str = "/usr/sbin/nft"
    node: str | None = None
    table: str = TABLE
    timeout: float = 60.0


def _ports(ranges) -> str:
    items = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _set(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _by_family(addresses) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"ip": [], "ip6": []}
    for a in addresses:
        net = ipaddress.ip_network(a, strict=False)
        out["ip" if net.version == 4 else "ip6"].append(str(net))
    return out


def rule_lines(rule: FirewallRule, web_servers, accept: str) -> list[str]:
    """The nft rules of one firewall rule (each ends in ``goto accept``): one rule per
    port range (an anonymous set per rule would be a kernel object each: loading 1,000
    members' sets costs about twice the kernel time of the plain rules)."""
    member_policy.check_rule(rule)  # the renderer's own grammar check (PolicyError)
    field = "dport" if rule.mode == "client" else "sport"
    matches = [f"{rule.proto} {field} {_ports([r])}" for r in rule.ports]
    if rule.mode == "client":
        fams = _by_family(rule.hosts)
        where = [f"{fam} daddr {_set(nets)} " for fam, nets in fams.items() if nets]
        if not rule.hosts:
            where = [""]
        return [f"ct direction original {w}{m} goto {accept}" for w in where for m in matches]
    if rule.mode == "server":
        return [f"ct direction reply {m} goto {accept}" for m in matches]
    if rule.mode == "local":
        return [f'ct direction reply oif "lo" {m} goto {accept}' for m in matches]
    # proxied: only to the site's web servers (no web server: nothing is admitted)
    fams = _by_family(web_servers)
    where = [f"{fam} daddr {_set(addrs)} " for fam, addrs in fams.items() if addrs]
    return [f"ct direction reply {w}{m} goto {accept}" for w in where for m in matches]


def digest(p: MemberPolicy) -> str:
    """A short digest of the policy unit, kept as a comment on the member's ``a_`` chain
    so the probe can tell that exactly this version is live."""
    text = json.dumps(model.to_json(p), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def unit_content(p: MemberPolicy, table: str = TABLE) -> bytes:
    """One member's firewall as nft commands on our table (PolicyError / ValueError if
    bad). Each command is idempotent, so the same file is included by the full load,
    checked on its own against the live kernel (``nft -c -f``), and loaded on its own to
    replace only this member's rules (a narrow reload: the other members' rules and
    counters, and this member's counters, stay as they are)."""
    for name in (p.owner, *p.users, table):
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Unix user name")
    fw = p.firewall
    if fw is None:
        raise ValueError("no firewall part")
    for a in fw.web_servers:
        ipaddress.ip_address(a)
    if fw.rate is not None and (
        type(fw.rate) is not int or not 1 <= fw.rate <= member_policy.MAX_RATE
    ):
        raise ValueError(f"rate {fw.rate!r} out of range")
    o, t = p.owner, f"{FAMILY} {table}"
    out = [
        f"# domtool: network policy of {o}",
        f"add table {t}",
        f"add map {t} owners {{ type uid : verdict; }}",
        f"add counter {t} out_{o}",
        f"add counter {t} drop_{o}",
        f"add chain {t} a_{o}",
        f"flush chain {t} a_{o}",
    ]
    for user in p.users:
        out += [f"add chain {t} u_{user}", f"flush chain {t} u_{user}"]
    # the rate limit: made sure to exist, dropped (nothing refers to it after the
    # flushes), and made again with this version's rate
    out += [f"add limit {t} lim_{o} {{ rate over 1 bytes/second; }}", f"delete limit {t} lim_{o}"]
    if fw.rate is not None:
        out.append(f"add limit {t} lim_{o} {{ rate over {fw.rate} bytes/second; }}")
        out.append(f'add rule {t} a_{o} limit name "lim_{o}" counter name "drop_{o}" drop')
    out.append(f'add rule {t} a_{o} counter name "out_{o}" accept comment "domtool {digest(p)}"')
    for user in p.users:
        for r in fw.rules:
            if r.user == user:
                out += [
                    f"add rule {t} u_{user} {line}"
                    for line in rule_lines(r, fw.web_servers, f"a_{o}")
                ]
        out += [
            f"add rule {t} u_{user} meta l4proto tcp reject with tcp reset",
            f"add rule {t} u_{user} reject with icmpx admin-prohibited",
        ]
        out.append(f'add element {t} owners {{ "{user}" : goto u_{user} }}')
    return ("\n".join(out) + "\n").encode()


def unit_key(p: MemberPolicy) -> str:
    """``policy:OWNER``, with the users when they are not just the owner: a change of
    users changes the key, so the engine loads the whole table again (a narrow reload
    cannot take a user's chain away)."""
    if p.users == (p.owner,):
        return f"policy:{p.owner}"
    return f"policy:{p.owner}:{'+'.join(p.users)}"


@attrs.define
class NftBackend:
    """Renders members' firewall parts into our nftables table (see the module doc)."""

    config: NftConfig
    name: str = "nft"
    # Units at stable paths (state_dir/live/nft/OWNER.nft): ruleset.nft names those, so
    # a change of rules only is loaded member by member (reload_units), checked by each
    # changed unit's own nft -c; a change of who is in the table reloads it whole.
    live_files: bool = True
    live_index_files: tuple[str, ...] = (INDEX_FILE,)
    check_all_covers_units: bool = True  # check.nft (nft -c) covers every unit's check
    _memo: dict = attrs.Factory(dict)
    _changed: list[tuple[str, str]] = attrs.Factory(list)  # (owner, digest) of the last units()

    def _policies(self, state: DesiredState) -> list[MemberPolicy]:
        node = self.config.node
        return [
            p
            for p in state.policies
            if p.firewall is not None and (node is None or node in p.nodes)
        ]

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        errors: list[UnitRefused] = []
        units: list[Unit] = []
        memo: dict = {}
        changed = []
        seen_users: dict[str, str] = {}
        check = (Command((self.config.nft, "-c", "-f", "{path}"), timeout=self.config.timeout),)
        for p in self._policies(state):
            for u in p.users:
                if u in seen_users and seen_users[u] != p.owner:
                    errors.append(
                        PolicyRefused(
                            p.owner, p.owner, "users", u, f"is {seen_users[u]}'s user too"
                        )
                    )
                seen_users.setdefault(u, p.owner)
            unit = memo_get(self._memo, p)
            if unit is None:
                try:
                    content = unit_content(p, self.config.table)
                except ValueError as e:
                    errors.append(PolicyRefused(p.owner, p.owner, "firewall", "", str(e)))
                    continue
                unit = Unit(unit_key(p), p.owner, "nft", content, check, live=f"{p.owner}.nft")
            memo_put(memo, p, unit)
            units.append(unit)
            prev = previous.get(unit.key)
            if prev is None or prev.content != unit.content:
                changed.append((p.owner, digest(p)))
        if errors:
            raise RenderRefused(errors)
        self._memo = memo
        self._changed = changed
        return sorted(units, key=lambda u: u.key)

    def index(
        self, units: Mapping[str, PurePosixPath], live: Mapping[str, PurePosixPath] | None = None
    ) -> dict[str, bytes]:
        """``ruleset.nft`` (what is loaded: each unit at its stable live path) and
        ``check.nft`` (the same naming this generation's staged unit files: what
        ``nft -c`` checks before the switch)."""
        named = {k: (live or {}).get(k, path) for k, path in units.items()}
        return {
            INDEX_FILE: self._index(named, "what is loaded"),
            CHECK_FILE: self._index(units, "for nft -c only: the staged units"),
        }

    def _index(self, units: Mapping[str, PurePosixPath], what: str) -> bytes:
        t = f"{FAMILY} {self.config.table}"
        lines = [
            f"# domtool: members' network policy, {what} (one transaction; no other table)",
            f"table {t}",
            f"delete table {t}",
            f'add table {t} {{ comment "domtool: members\' network policy"; }}',
            f"add map {t} owners {{ type uid : verdict; }}",
            f"add chain {t} output {{ type filter hook output priority 0; policy accept; }}",
            f"add rule {t} output meta skuid vmap @owners",
        ]
        for key in sorted(units):
            if not key.startswith("policy:"):
                raise ValueError(f"not a policy unit key: {key!r}")
            path = str(units[key])
            if '"' in path or "\n" in path:
                raise ValueError(f"unit path {path!r} cannot be included")
            lines.append(f'include "{path}"')
        return ("\n".join(lines) + "\n").encode()

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        staged = str(PurePosixPath(generation_dir) / self.name / CHECK_FILE)
        return (Command((self.config.nft, "-c", "-f", staged), timeout=self.config.timeout),)

    def reload(self) -> tuple[Command, ...]:
        live = f"{self.config.state_dir}/current/{self.name}/{INDEX_FILE}"
        return (Command((self.config.nft, "-f", live), timeout=self.config.timeout),)

    def reload_units(self, keys) -> tuple[Command, ...]:
        """Each changed member's unit loaded on its own (its rules replaced, counters
        kept); more than :data:`NARROW_RELOADS` members: the whole table."""
        keys = sorted(keys)
        if len(keys) > NARROW_RELOADS:
            return self.reload()
        out = []
        for key in keys:
            owner = key.split(":")[1]
            if not NAME.fullmatch(owner):
                raise ValueError(f"bad unit key {key!r}")
            path = f"{self.config.state_dir}/live/{self.name}/{owner}.nft"
            out.append(Command((self.config.nft, "-f", path), timeout=self.config.timeout))
        return tuple(out)

    def actions(self) -> dict:
        """``policy_live(policy)``: True when the kernel's table holds this version of
        the member's rules (the probe's check), else the reason."""

        def live(p: MemberPolicy) -> bool | str:
            if p.firewall is None:
                return True
            return probe_table(self.config.nft, self.config.table, f"a_{p.owner}", digest(p))

        return {"policy_live": live}

    def probes(self, state: DesiredState) -> list[Probe]:
        """For the members whose unit the last :meth:`units` call changed (at most
        ``MAX_PROBES``; the load itself is one transaction ``nft -f`` confirmed): the
        member's ``a_`` chain in the kernel carries this version's digest."""
        owners = {p.owner for p in self._policies(state)}
        out = [
            Probe("nft_table", (self.config.nft, self.config.table, f"a_{o}", d), o)
            for o, d in self._changed
            if o in owners
        ]
        return sorted(out, key=lambda p: p.owner)[:MAX_PROBES]


# ---------------------------------------------------------------------------
# Reading our table back (the probe, the counters)


def list_table(
    nft: str = "/usr/sbin/nft",
    table: str = TABLE,
    run: Callable[..., Any] = subprocess.run,
) -> dict[str, Any]:
    """``nft -j list table inet TABLE`` parsed: {"chains": {...}, "counters": {...},
    "comment": ...}. Raises OSError if nft fails (no such table)."""
    proc = run(
        [nft, "-j", "list", "table", FAMILY, table],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise OSError(f"nft list table {FAMILY} {table}: {proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout)
    out: dict[str, Any] = {"chains": set(), "counters": {}, "comment": None}
    for item in data.get("nftables", []):
        if "table" in item:
            out["comment"] = item["table"].get("comment")
        elif "chain" in item:
            out["chains"].add(item["chain"]["name"])
        elif "counter" in item:
            c = item["counter"]
            out["counters"][c["name"]] = (c.get("packets", 0), c.get("bytes", 0))
    return out


def probe_table(nft: str, table: str, chain: str, want: str) -> bool | str:
    """The probe: our table's ``chain`` is loaded with the comment of this version."""
    if not NAME.fullmatch(chain.partition("_")[2]) or not re.fullmatch(r"[0-9a-f]{16}", want):
        return f"nft probe: bad chain {chain!r} or digest {want!r}"
    try:
        proc = subprocess.run(
            [nft, "list", "chain", FAMILY, table, chain], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as e:
        return f"nft list chain {FAMILY} {table} {chain}: {e}"
    if proc.returncode != 0:
        return f"nft list chain {FAMILY} {table} {chain}: {proc.stderr.strip()[:300]}"
    if f'comment "domtool {want}"' not in proc.stdout:
        return f"chain {chain} of table {FAMILY} {table} is not version {want}"
    return True


def read_counters(
    nft: str = "/usr/sbin/nft", table: str = TABLE, run: Callable[..., Any] = subprocess.run
) -> dict[str, dict[str, int]]:
    """Per owner, the outbound traffic its sockets sent since our table was last loaded:
    ``{"packets", "bytes"}`` accepted and ``{"dropped_packets", "dropped_bytes"}`` over its
    rate limit. (A reload of the table, i.e. any member's policy change, starts them
    from zero again.)"""
    counters = list_table(nft, table, run)["counters"]
    out: dict[str, dict[str, int]] = {}
    for name, (packets, nbytes) in counters.items():
        kind, _, owner = name.partition("_")
        if kind == "out":
            out.setdefault(owner, {}).update(packets=packets, bytes=nbytes)
        elif kind == "drop":
            out.setdefault(owner, {}).update(dropped_packets=packets, dropped_bytes=nbytes)
    return out
