"""The nftables backend: members' network policy (issue 11) as one table of its own.

Each member's ``MemberPolicy.firewall`` is one unit (an nft fragment: the member's
chains, counters, rate limit and its users' entries in the ``owners`` verdict map); the
index ``ruleset.nft`` is the one transaction that replaces our table and nothing else::

    table inet domtool                # make sure it exists (so the delete cannot fail)
    delete table inet domtool         # ...and drop it,
    table inet domtool {              # then build it again, in the same transaction
        map owners { type uid : verdict; }
        include "state_dir/units/nft/<sha256>.nft"    # one per member
        chain output { type filter hook output priority 0; policy accept;
                       meta skuid vmap @owners; }
    }

``nft -f`` applies a file as one netlink batch: either the whole new table is there or
the old one still is. Other tables on the host are never named. The daemon's check is
``nft -c -f`` of the staged index (the kernel validates the batch without committing;
user names are resolved to uids then, so a user this host lacks is refused there, and
the engine's bisection refuses only that member). The probe (kind ``"nft_table"``)
lists our table after the load and checks every member's chain is in it.

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

import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

import attrs

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
FAMILY = "inet"
TABLE = "domtool"
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
    """The nft rules of one firewall rule (each ends in ``goto accept``)."""
    member_policy.check_rule(rule)  # the renderer's own grammar check (PolicyError)
    match = f"{rule.proto} {'dport' if rule.mode == 'client' else 'sport'} {_ports(rule.ports)}"
    if rule.mode == "client":
        if not rule.hosts:
            return [f"ct direction original {match} goto {accept}"]
        fams = _by_family(rule.hosts)
        return [
            f"ct direction original {fam} daddr {_set(nets)} {match} goto {accept}"
            for fam, nets in fams.items()
            if nets
        ]
    if rule.mode == "server":
        return [f"ct direction reply {match} goto {accept}"]
    if rule.mode == "local":
        return [f'ct direction reply oif "lo" {match} goto {accept}']
    # proxied: only to the site's web servers
    fams = _by_family(web_servers)
    return [
        f"ct direction reply {fam} daddr {_set(addrs)} {match} goto {accept}"
        for fam, addrs in fams.items()
        if addrs
    ]


def unit_content(p: MemberPolicy) -> bytes:
    """The nft fragment of one member's firewall (PolicyError / ValueError if bad)."""
    for name in (p.owner, *p.users):
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Unix user name")
    fw = p.firewall
    if fw is None:
        raise ValueError("no firewall part")
    for a in fw.web_servers:
        ipaddress.ip_address(a)
    o = p.owner
    out = [f"# domtool: network policy of {o}", f"counter out_{o} {{ }}", f"counter drop_{o} {{ }}"]
    accept = [f"chain a_{o} {{"]
    if fw.rate is not None:
        if type(fw.rate) is not int or not 1 <= fw.rate <= member_policy.MAX_RATE:
            raise ValueError(f"rate {fw.rate!r} out of range")
        out.append(f"limit lim_{o} {{ rate over {fw.rate} bytes/second }}")
        accept.append(f'    limit name "lim_{o}" counter name "drop_{o}" drop')
    accept += [f'    counter name "out_{o}" accept', "}"]
    out += accept
    for user in p.users:
        out.append(f"chain u_{user} {{")
        for r in fw.rules:
            if r.user == user:
                out += ["    " + line for line in rule_lines(r, fw.web_servers, f"a_{o}")]
        out += [
            "    meta l4proto tcp reject with tcp reset",
            "    reject with icmpx admin-prohibited",
            "}",
        ]
    elements = ", ".join(f'"{u}" : goto u_{u}' for u in p.users)
    if elements:
        out.append(f"map owners {{ type uid : verdict; elements = {{ {elements} }} }}")
    return ("\n".join(out) + "\n").encode()


@attrs.define
class NftBackend:
    """Renders members' firewall parts into our nftables table (see the module doc)."""

    config: NftConfig
    name: str = "nft"
    _memo: dict = attrs.Factory(dict)

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
        seen_users: dict[str, str] = {}
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
                    content = unit_content(p)
                except ValueError as e:
                    errors.append(PolicyRefused(p.owner, p.owner, "firewall", "", str(e)))
                    continue
                unit = Unit(f"policy:{p.owner}", p.owner, "nft", content)
            memo_put(memo, p, unit)
            units.append(unit)
        if errors:
            raise RenderRefused(errors)
        self._memo = memo
        return sorted(units, key=lambda u: u.key)

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        t = self.config.table
        lines = [
            "# domtool: members' network policy (one transaction; no other table is named)",
            f"table {FAMILY} {t}",
            f"delete table {FAMILY} {t}",
            f"table {FAMILY} {t} {{",
            '    comment "domtool: members\' network policy"',
            "    map owners { type uid : verdict; }",
        ]
        for key in sorted(units):
            if not key.startswith("policy:"):
                raise ValueError(f"not a policy unit key: {key!r}")
            path = str(units[key])
            if '"' in path or "\n" in path:
                raise ValueError(f"unit path {path!r} cannot be included")
            lines.append(f'    include "{path}"')
        lines += [
            "    chain output {",
            "        type filter hook output priority 0; policy accept;",
            "        meta skuid vmap @owners",
            "    }",
            "}",
        ]
        return {INDEX_FILE: ("\n".join(lines) + "\n").encode()}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        staged = str(PurePosixPath(generation_dir) / self.name / INDEX_FILE)
        return (Command((self.config.nft, "-c", "-f", staged), timeout=self.config.timeout),)

    def reload(self) -> tuple[Command, ...]:
        live = f"{self.config.state_dir}/current/{self.name}/{INDEX_FILE}"
        return (Command((self.config.nft, "-f", live), timeout=self.config.timeout),)

    def probes(self, state: DesiredState) -> list[Probe]:
        """One probe per member: our table is loaded and holds the member's chains."""
        out = []
        for p in self._policies(state):
            chains = (f"a_{p.owner}", *(f"u_{u}" for u in p.users))
            target = (self.config.nft, FAMILY, self.config.table, tuple(chains))
            out.append(Probe("nft_table", target, p.owner))
        return out


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


def probe_table(nft: str, family: str, table: str, chains) -> bool | str:
    """The probe: our table is loaded and has every one of ``chains``."""
    if family != FAMILY:
        return f"nft probe: family {family!r} is not {FAMILY}"
    try:
        have = list_table(nft, table)
    except (OSError, ValueError, subprocess.SubprocessError) as e:
        return str(e)
    missing = sorted(set(chains) - have["chains"])
    if missing:
        return f"table {family} {table} lacks chain(s) {', '.join(missing)}"
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
