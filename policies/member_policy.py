"""Admin-set member policy (issue 11): its stored JSON form, the rule syntax admins type,
validation with clear errors, and the per-host unit the dispatcher sends (pure).

A policy record (one per member, and one for the site's defaults) is a JSON object with
one optional entry per *part*; a part absent means "not set"::

    {"firewall": {"rules": [RULE, ...], "rate": BYTES_PER_SECOND | null}}

    RULE = {"user": USER, "mode": "client"|"server"|"proxied"|"local",
            "proto": "tcp"|"udp", "ports": [[LO, HI], ...], "hosts": [ADDRESS, ...]}

The site record's rules name the user ``*``: each of the member's users. Parts are a
closed table (:data:`PARTS`): each part has a parser of its JSON (``from_json``, raising
:class:`PolicyError`), its JSON form (``to_json``) and a check against the member's
grants (``problems``). The limits part plugs in the same way.

What reaches a host is a :class:`domtool.model.MemberPolicy` (:func:`unit`): the member's
record over the site's defaults, ``*`` expanded to the member's users, the web servers'
addresses filled in. A member's own submission never carries one: the dispatcher refuses
an evaluated state with ``policies`` and puts the stored one in (``policies`` are only
ever built here).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from domtool.model import FIREWALL_MODES, PROTOCOLS, Firewall, FirewallRule, MemberPolicy, Site

ALL_USERS = "*"
MAX_RULES = 256
MAX_HOSTS = 64
MAX_RANGES = 32
MAX_RATE = 10 * 1024**3  # bytes per second (80 Gbit/s)
USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class PolicyError(ValueError):
    """A policy that cannot be stored or sent; ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


# ---------------------------------------------------------------------------
# Rules: the text admins type and the JSON form


def parse_ports(text: str) -> tuple[tuple[int, int], ...]:
    """``80,443,8000-8100`` -> ((80, 80), (443, 443), (8000, 8100)) (PolicyError)."""
    out: list[tuple[int, int]] = []
    problems: list[str] = []
    for item in str(text).split(","):
        m = re.fullmatch(r"\s*(\d{1,6})(?:\s*-\s*(\d{1,6}))?\s*", item)
        if m is None:
            problems.append(f"port {item.strip()!r} is not a number or a range LO-HI")
            continue
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        out.append((lo, hi))
    if problems:
        raise PolicyError(problems)
    _check_ranges(out, problems, "ports")
    if problems:
        raise PolicyError(problems)
    return tuple(sorted(set(out)))


def _check_ranges(ranges, problems: list[str], where: str) -> None:
    if not ranges:
        problems.append(f"{where}: at least one port")
    if len(ranges) > MAX_RANGES:
        problems.append(f"{where}: at most {MAX_RANGES} ports or ranges")
    for lo, hi in ranges:
        for p in (lo, hi):
            if not 1 <= p <= 65535:
                problems.append(f"{where}: port {p} is out of range (1-65535)")
        if lo > hi:
            problems.append(f"{where}: range {lo}-{hi} goes backwards")


def _check_host(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise PolicyError([f"host {text!r} is not an IP address or network"]) from None


def parse_rule(text: str, member: str | None = None) -> FirewallRule:
    """One rule as admins type it, HCoop's FirewallRules style::

        USER client [tcp|udp] PORTS [to HOST,...]
        USER server|proxied|local [tcp|udp] PORTS

    ``USER`` may be left out when ``member`` is given (the member's own name)."""
    words = str(text).split()
    if words and words[0] in FIREWALL_MODES and member is not None:
        words = [member, *words]
    if len(words) < 3:
        raise PolicyError([f"rule {text!r}: expected USER MODE [PROTO] PORTS [to HOSTS]"])
    user, mode, rest = words[0], words[1], words[2:]
    problems: list[str] = []
    if mode not in FIREWALL_MODES:
        problems.append(f"rule {text!r}: {mode!r} is not one of {', '.join(FIREWALL_MODES)}")
    proto = "tcp"
    if rest and rest[0] in PROTOCOLS:
        proto, rest = rest[0], rest[1:]
    if not rest:
        problems.append(f"rule {text!r}: no ports")
        raise PolicyError(problems)
    ports: tuple[tuple[int, int], ...] = ()
    try:
        ports = parse_ports(rest[0])
    except PolicyError as e:
        problems += [f"rule {text!r}: {p}" for p in e.problems]
    hosts: list[str] = []
    rest = rest[1:]
    if rest:
        if rest[0] != "to" or len(rest) != 2:
            problems.append(f"rule {text!r}: after the ports only 'to HOST,...' may follow")
        elif mode != "client":
            problems.append(f"rule {text!r}: only a client rule names hosts")
        else:
            for h in rest[1].split(","):
                try:
                    hosts.append(_check_host(h))
                except PolicyError as e:
                    problems += [f"rule {text!r}: {p}" for p in e.problems]
    if problems:
        raise PolicyError(problems)
    rule = FirewallRule(user, mode, proto, ports, tuple(sorted(set(hosts))))
    check_rule(rule)
    return rule


def format_rule(rule: FirewallRule) -> str:
    """The text form :func:`parse_rule` reads back."""
    ports = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in rule.ports)
    out = f"{rule.user} {rule.mode} {rule.proto} {ports}"
    return out + (f" to {','.join(rule.hosts)}" if rule.hosts else "")


def check_rule(rule: FirewallRule) -> None:
    """PolicyError unless ``rule`` is well-formed (the renderer's grammar)."""
    problems: list[str] = []
    shown = f"rule {format_rule(rule)!r}" if isinstance(rule.ports, tuple) else "rule"
    if not isinstance(rule.user, str) or not (rule.user == ALL_USERS or USER.fullmatch(rule.user)):
        problems.append(f"{shown}: user {rule.user!r} is not a Unix user name")
    if rule.mode not in FIREWALL_MODES:
        problems.append(f"{shown}: mode {rule.mode!r} is not one of {', '.join(FIREWALL_MODES)}")
    if rule.proto not in PROTOCOLS:
        problems.append(f"{shown}: protocol {rule.proto!r} is not tcp or udp")
    if not isinstance(rule.ports, tuple) or not all(
        isinstance(r, tuple) and len(r) == 2 and all(type(p) is int for p in r) for r in rule.ports
    ):
        problems.append("rule: ports must be (lo, hi) pairs of integers")
    else:
        _check_ranges(rule.ports, problems, shown)
    if len(rule.hosts) > MAX_HOSTS:
        problems.append(f"{shown}: at most {MAX_HOSTS} hosts")
    if rule.hosts and rule.mode != "client":
        problems.append(f"{shown}: only a client rule names hosts")
    for h in rule.hosts:
        try:
            if _check_host(h) != h:
                problems.append(f"{shown}: host {h!r} is not in canonical form")
        except PolicyError as e:
            problems += list(e.problems)
    if problems:
        raise PolicyError(problems)


def rule_to_json(rule: FirewallRule) -> dict[str, Any]:
    return {
        "user": rule.user,
        "mode": rule.mode,
        "proto": rule.proto,
        "ports": [list(r) for r in rule.ports],
        "hosts": list(rule.hosts),
    }


def rule_from_json(data: Any) -> FirewallRule:
    if not isinstance(data, Mapping) or set(data) - {"user", "mode", "proto", "ports", "hosts"}:
        raise PolicyError([f"a rule is an object of user, mode, proto, ports, hosts: {data!r}"])
    try:
        rule = FirewallRule(
            data["user"],
            data["mode"],
            data.get("proto", "tcp"),
            tuple(tuple(r) for r in data["ports"]),
            tuple(data.get("hosts", ())),
        )
    except (KeyError, TypeError) as e:
        raise PolicyError([f"rule {data!r}: {e}"]) from None
    check_rule(rule)
    return rule


# ---------------------------------------------------------------------------
# Parts


@attrs.frozen
class FirewallPart:
    """The stored firewall part: rules (sorted, no duplicates) and the outbound rate."""

    rules: tuple[FirewallRule, ...] = ()
    rate: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"rules": [rule_to_json(r) for r in self.rules], "rate": self.rate}

    @classmethod
    def from_json(cls, data: Any) -> FirewallPart:
        if not isinstance(data, Mapping) or set(data) - {"rules", "rate"}:
            raise PolicyError(["the firewall part is an object of rules and rate"])
        rules = data.get("rules", [])
        if not isinstance(rules, list) or len(rules) > MAX_RULES:
            raise PolicyError([f"firewall rules: a list of at most {MAX_RULES}"])
        rate = data.get("rate")
        if rate is not None and (type(rate) is not int or not 1 <= rate <= MAX_RATE):
            raise PolicyError([f"firewall rate {rate!r}: bytes per second, 1 to {MAX_RATE}"])
        return cls(tuple(sorted({rule_from_json(r) for r in rules}, key=rule_key)), rate)

    def problems(
        self, member: str, users: Iterable[str], holder: Callable[[str], str | None]
    ) -> list[str]:
        """Why this part may not be ``member``'s: a rule for a user the member was not
        granted (``holder(user)``: the member who holds it, for a clearer message)."""
        mine = set(users)
        out = []
        for r in self.rules:
            if r.user == ALL_USERS:
                continue
            if r.user not in mine:
                who = holder(r.user)
                why = f"is {who}'s user" if who else f"is not one of {member}'s users"
                out.append(f"rule {format_rule(r)!r}: {r.user} {why}")
        return out


def rule_key(r: FirewallRule):
    return (r.user, r.mode, r.proto, r.ports, r.hosts)


def parse_rate(text: str) -> int | None:
    """``none``, ``1000``, ``500k``, ``10M`` (bytes per second; k and M are 1024s)."""
    t = str(text).strip()
    if t.lower() in ("none", "off", "0"):
        return None
    m = re.fullmatch(r"(\d{1,12})\s*([kKmMgG]?)(?:bytes|B)?(?:/s)?", t)
    if m is None:
        raise PolicyError([f"rate {text!r}: a number of bytes per second, e.g. 500k or 10M"])
    value = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    if not 1 <= value <= MAX_RATE:
        raise PolicyError([f"rate {text!r}: between 1 byte/s and {MAX_RATE} bytes/s"])
    return value


#: The closed table of parts: name -> class with from_json, to_json and problems.
PARTS: dict[str, type] = {"firewall": FirewallPart}


@attrs.frozen
class PolicyRecord:
    """One stored record: part name -> part (only the parts that are set)."""

    parts: Mapping[str, Any] = attrs.field(factory=dict)

    def get(self, name: str) -> Any:
        return self.parts.get(name)

    def with_part(self, name: str, part: Any) -> PolicyRecord:
        parts = dict(self.parts)
        if part is None:
            parts.pop(name, None)
        else:
            parts[name] = part
        return PolicyRecord(parts)

    @property
    def empty(self) -> bool:
        return not self.parts

    def to_json(self) -> dict[str, Any]:
        return {name: part.to_json() for name, part in sorted(self.parts.items())}

    @classmethod
    def from_json(cls, data: Any) -> PolicyRecord:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PolicyError(["a policy record is an object of parts"])
        unknown = sorted(set(data) - set(PARTS))
        if unknown:
            raise PolicyError([f"unknown policy part(s) {unknown}; known: {sorted(PARTS)}"])
        return cls({name: PARTS[name].from_json(v) for name, v in data.items() if v is not None})


# ---------------------------------------------------------------------------
# What a host gets


def web_servers(site: Site) -> tuple[str, ...]:
    """The addresses of the site's web nodes (what "proxied" rules admit)."""
    out = set()
    for n in site.nodes:
        if "web" in n.roles:
            out.add(n.ipv4)
            if n.ipv6:
                out.add(n.ipv6)
    return tuple(sorted(out))


def effective_firewall(
    member_part: FirewallPart | None,
    site_part: FirewallPart | None,
    users: Iterable[str],
    site: Site,
) -> Firewall | None:
    """The member's rules over the site's defaults, ``*`` expanded to each user."""
    if member_part is None and site_part is None:
        return None
    users = sorted(set(users))
    rules: set[FirewallRule] = set()
    for part in (site_part, member_part):
        if part is None:
            continue
        for r in part.rules:
            for u in users if r.user == ALL_USERS else [r.user]:
                rules.add(attrs.evolve(r, user=u))
    rate = member_part.rate if member_part is not None and member_part.rate else None
    if rate is None and site_part is not None:
        rate = site_part.rate
    return Firewall(tuple(sorted(rules, key=rule_key)), web_servers(site), rate)


#: Builders of the unit's parts from the member's and the site's record: the limits
#: part adds one (name -> fn(member_part, site_part, users, site) -> unit part or None).
UNIT_PARTS: dict[str, Callable[..., Any]] = {"firewall": effective_firewall}


def unit(
    member: str,
    record: PolicyRecord,
    site_record: PolicyRecord,
    users: Iterable[str],
    site: Site,
) -> MemberPolicy | None:
    """The MemberPolicy every node of the site gets for ``member`` (None: no policy, or
    the member has no Unix user for it to bind)."""
    users = tuple(sorted(set(users)))
    if not users:
        return None
    parts = {
        name: build(record.get(name), site_record.get(name), users, site)
        for name, build in UNIT_PARTS.items()
    }
    if all(v is None for v in parts.values()):
        return None
    return MemberPolicy(member, tuple(sorted(n.name for n in site.nodes)), users, **parts)


# ---------------------------------------------------------------------------
# Checks shared by the dispatcher and the slave


def served_ports(policy: MemberPolicy | None) -> set[tuple[str, int, int]] | None:
    """(proto, lo, hi) the member may accept on; None when no firewall binds it."""
    if policy is None or policy.firewall is None:
        return None
    return {
        (r.proto, lo, hi)
        for r in policy.firewall.rules
        if r.mode in ("server", "proxied", "local")
        for lo, hi in r.ports
    }


def proxy_problems(vhosts, policy: MemberPolicy | None) -> list[str]:
    """A vhost's reverse proxy (``ProxyPass.port``) that points at a port its owner may
    not serve (no server, proxied or local tcp rule covers it)."""
    served = served_ports(policy)
    if served is None:
        return []
    out = []
    for v in vhosts:
        for p in v.proxies:
            if not any(proto == "tcp" and lo <= p.port <= hi for proto, lo, hi in served):
                out.append(
                    f"vhost {v.fqdn}: proxy {p.path} -> port {p.port}: {v.owner} may not "
                    f"serve tcp port {p.port} (no server, proxied or local rule covers it)"
                )
    return out


def unit_problems(owner: str, policy: MemberPolicy, granted_users: Iterable[str]) -> list[str]:
    """What a host refuses in a MemberPolicy it is sent (beside the schema): another
    owner's unit, a user not granted to the owner, a malformed rule."""
    out = []
    granted = set(granted_users)
    if policy.owner != owner:
        out.append(f"policy belongs to {str(policy.owner)[:32]!r}, not to {owner!r}")
    for u in policy.users:
        if u not in granted:
            out.append(f"policy: user {u!r} is not one of {owner}'s granted users")
    if policy.limits is not None:
        from domtool.policies.limits import unit_problems as limits_problems

        out += limits_problems(policy.limits)
    fw = policy.firewall
    if fw is not None:
        if fw.rate is not None and not 1 <= fw.rate <= MAX_RATE:
            out.append(f"policy: rate {fw.rate} out of range")
        for r in fw.rules:
            try:
                check_rule(r)
            except PolicyError as e:
                out += [f"policy: {p}" for p in e.problems]
            if r.user not in policy.users:
                out.append(f"policy: rule for user {r.user!r}, not one of the policy's users")
        for a in fw.web_servers:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                out.append(f"policy: web server {a!r} is not an IP address")
    return out


# ---------------------------------------------------------------------------
# Edits (what ``domtool-admin firewall add|remove|rate`` ask for)


def edit_firewall(part: FirewallPart | None, action: str, value: str, member: str | None):
    """The firewall part after ``action`` (add RULE, remove RULE, rate RATE, clear).
    ``member`` None: the site's defaults (rules for ``*``, each member's users)."""
    part = part or FirewallPart()
    if action == "clear":
        return None
    if action == "rate":
        new = attrs.evolve(part, rate=parse_rate(value))
    elif action in ("add", "remove"):
        rule = parse_rule(value, member if member is not None else ALL_USERS)
        if member is None and rule.user != ALL_USERS:
            raise PolicyError([f"a site default rule is for every user: start it with {ALL_USERS}"])
        if action == "add":
            if rule in part.rules:
                raise PolicyError([f"rule {format_rule(rule)!r} is already there"])
            if len(part.rules) >= MAX_RULES:
                raise PolicyError([f"at most {MAX_RULES} rules"])
            new = attrs.evolve(part, rules=tuple(sorted({*part.rules, rule}, key=rule_key)))
        else:
            if rule not in part.rules:
                shown = "; ".join(format_rule(r) for r in part.rules) or "none"
                raise PolicyError([f"no rule {format_rule(rule)!r} (the rules: {shown})"])
            new = attrs.evolve(part, rules=tuple(r for r in part.rules if r != rule))
    else:
        raise PolicyError([f"unknown firewall action {action!r}"])
    return None if not new.rules and new.rate is None else new


#: part name -> fn(part or None, action, value, member or None for the site) -> part or None
EDITS: dict[str, Callable[..., Any]] = {"firewall": edit_firewall}


def unit_to_lines(policy: MemberPolicy | None) -> list[str]:
    """A member's policy as the rule lines admins type (what ``domtool firewall`` shows)."""
    if policy is None or policy.firewall is None:
        return []
    out = [format_rule(r) for r in policy.firewall.rules]
    if policy.firewall.rate is not None:
        out.append(f"rate {policy.firewall.rate} bytes/s")
    return out


# The limits part (policies/limits.py) plugs into the same tables.
from domtool.policies import limits as _limits  # noqa: E402

PARTS["limits"] = _limits.LimitsPart
EDITS["limits"] = _limits.edit_limits
UNIT_PARTS["limits"] = _limits.effective_limits
