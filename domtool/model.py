"""The typed desired state: what the evaluator produces and the slaves apply.

Every object here is a frozen attrs value. Collections are tuples, sorted where order
carries no meaning, so that the same source and permissions always give an equal (and
identically serialised) state. Each value caches its hash (computed once: the slave's
render memos look up thousands of unchanged objects on every change). Every unit of configuration carries its ``owner``: the
member whose submission produced it. The slave uses the owner to isolate one member's
failure from the others and to re-check paths and users locally.

Values in here have already passed the language's type checker (their extern types'
grammars), but renderers and the slave must still treat them as untrusted and validate
them again (``domtool.validate``) before they reach a file.
"""

from __future__ import annotations

import operator
import sys
from typing import Any

import attrs

# ---------------------------------------------------------------------------
# Site: nodes (hosts) and their roles. Defined by the site, not by members.

ROLES = ("dns", "web", "mail", "lists", "db")


@attrs.frozen(cache_hash=True)
class Node:
    """One host of the site: its name, the roles it serves and its public address."""

    name: str
    roles: tuple[str, ...]
    ipv4: str = "127.0.0.1"
    ipv6: str | None = None


@attrs.frozen(cache_hash=True)
class Site:
    """Site-wide settings the evaluator needs: nodes, name servers and defaults."""

    nodes: tuple[Node, ...]
    nameservers: tuple[str, ...] = ("ns1.coop.example", "ns2.coop.example")
    default_ttl: int = 3600
    hostmaster: str = "hostmaster.coop.example"

    def nodes_with(self, role: str) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if role in n.roles)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


DEFAULT_SITE = Site(nodes=(Node(name="local", roles=ROLES, ipv4="127.0.0.1"),))


# ---------------------------------------------------------------------------
# DNS


@attrs.frozen(cache_hash=True)
class Record:
    """One resource record. ``name`` is relative to the zone: "@" for the apex,
    otherwise one or more labels ("www", "_sip._tcp"). ``data`` depends on ``rtype``:

    - A: (ipv4,)            AAAA: (ipv6,)          CNAME: (fqdn,)       NS: (fqdn,)
    - MX: (priority, fqdn)  TXT: (text,)           SRV: (priority, weight, port, fqdn)
    - CAA: (flags, tag, value)

    Host names in data are absolute (no trailing dot; the renderer adds it).
    """

    name: str
    rtype: str
    data: tuple[Any, ...]
    ttl: int | None = None


@attrs.frozen(cache_hash=True)
class Zone:
    """A DNS zone a member owns, with its records (sorted) and the DNS nodes serving it."""

    name: str
    owner: str
    records: tuple[Record, ...]
    nodes: tuple[str, ...]
    ttl: int = 3600


# ---------------------------------------------------------------------------
# Web


@attrs.frozen(cache_hash=True)
class Redirect:
    """Redirect requests for ``path`` (and below) to ``target`` with an HTTP status."""

    path: str
    target: str
    status: int = 302


@attrs.frozen(cache_hash=True)
class Rewrite:
    """A mod_rewrite rule with optional conditions ((test string, pattern, flags), ...)."""

    pattern: str
    target: str
    flags: tuple[str, ...] = ()
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()


@attrs.frozen(cache_hash=True)
class ProxyPass:
    """Reverse-proxy URL ``path`` to the member's own daemon at http://127.0.0.1:port/target."""

    path: str
    port: int
    target: str = "/"


@attrs.frozen(cache_hash=True)
class BasicAuth:
    """HTTP basic authentication with a member-owned htpasswd file."""

    realm: str
    user_file: str
    require: tuple[str, ...] = ("valid-user",)


@attrs.frozen(cache_hash=True)
class WebSettings:
    """Settings that may appear on a vhost and inside location/directory blocks."""

    directory_index: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # e.g. "+Indexes", "-FollowSymLinks"
    error_documents: tuple[tuple[int, str], ...] = ()
    redirects: tuple[Redirect, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    auth: BasicAuth | None = None
    ssi: bool = False
    cgi: bool = False  # ExecCGI handler for .cgi files


BLOCK_KINDS = ("location", "directory")


@attrs.frozen(cache_hash=True)
class Block:
    """A ``<Location>`` or ``<Directory>`` block: kind is "location" or "directory"."""

    kind: str
    path: str
    settings: WebSettings = WebSettings()


@attrs.frozen(cache_hash=True)
class TLS:
    """TLS for a vhost: member-owned certificate and key files (and optional chain)."""

    certificate: str
    key: str
    chain: str | None = None


@attrs.frozen(cache_hash=True)
class Vhost:
    """One virtual host: a host name served by the given web nodes."""

    fqdn: str
    owner: str
    domain: str
    nodes: tuple[str, ...]
    document_root: str
    user: str
    group: str
    server_admin: str
    aliases: tuple[str, ...] = ()
    tls: TLS | None = None
    url_aliases: tuple[tuple[str, str], ...] = ()  # (url path, filesystem path)
    script_aliases: tuple[tuple[str, str], ...] = ()  # CGI through suexec
    proxies: tuple[ProxyPass, ...] = ()
    settings: WebSettings = WebSettings()
    blocks: tuple[Block, ...] = ()


# ---------------------------------------------------------------------------
# Mail


@attrs.frozen(cache_hash=True)
class Alias:
    """One mail routing rule of a domain.

    source: ("user", LOCALPART) | ("default",) | ("catchall",)
    targets: addresses (a bare member user name means that member's mailbox); empty means drop.
    """

    source: tuple[str, ...]
    targets: tuple[str, ...]


@attrs.frozen(cache_hash=True)
class MailDomain:
    """Mail for a domain: handled locally (``handle="local"``) or relayed to ``relay_host``."""

    name: str
    owner: str
    nodes: tuple[str, ...]
    handle: str = "local"
    relay_host: str | None = None
    aliases: tuple[Alias, ...] = ()
    spam_filter: bool = False
    spam_threshold: int = 5  # SpamAssassin score at or above which mail counts as spam
    spam_action: str = "tag"  # "tag" (header), "refuse" (550 at DATA), "junk" (Junk folder)


# ---------------------------------------------------------------------------
# Mailing lists (Mailman 3)


@attrs.frozen
class MailingList:
    """One Mailman list, ``name@`` its domain, and its owners' addresses (sorted)."""

    name: str
    owners: tuple[str, ...]


@attrs.frozen
class ListDomain:
    """A domain's Mailman lists: Mailman answers for ``name`` (lists are NAME@name) on the
    list ``nodes``, its web interface is ``web_host``; ``lists`` sorted by name. The
    domain's ``mail_nodes`` (its Exim hosts) get it too, to route list mail to Mailman."""

    name: str
    owner: str
    nodes: tuple[str, ...]
    web_host: str
    lists: tuple[MailingList, ...] = ()
    mail_nodes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# Admin-set member policy (issue 11). Never produced by a member's source: the
# dispatcher puts the policy the admins stored (``domtool.policies.member_policy``) into
# each host's part of the member's state, and refuses an evaluation that carries one.

FIREWALL_MODES = ("client", "server", "proxied", "local")
PROTOCOLS = ("tcp", "udp")


@attrs.frozen(cache_hash=True)
class FirewallRule:
    """What one of the member's Unix users may do on the network.

    mode "client": connect out to ``ports`` (only to ``hosts``, addresses or networks,
    when given); "server": accept on ``ports`` from anywhere; "proxied": accept only
    from the site's web servers; "local": accept only from this machine. ``ports`` are
    inclusive ranges (lo, hi)."""

    user: str
    mode: str
    proto: str
    ports: tuple[tuple[int, int], ...]
    hosts: tuple[str, ...] = ()


@attrs.frozen(cache_hash=True)
class Firewall:
    """A member's network policy: its rules (sorted), the web servers' addresses that
    "proxied" rules admit, and an optional outbound rate limit in bytes per second."""

    rules: tuple[FirewallRule, ...] = ()
    web_servers: tuple[str, ...] = ()
    rate: int | None = None


@attrs.frozen(cache_hash=True)
class Limits:
    """A member's resource limits (``policies/limits.py``): processes, memory in bytes,
    CPU weight, CGI CPU and wall seconds, disk quota in bytes; ``overridden`` names the
    ones an admin set for this member (the rest are the site's defaults)."""

    processes: int
    memory: int
    cpu_weight: int
    cgi_cpu: int
    cgi_wall: int
    disk: int
    overridden: tuple[str, ...] = ()


@attrs.frozen(cache_hash=True)
class MemberPolicy:
    """The admin-set policy of one member on the given nodes: the member's Unix
    ``users`` it binds (sorted) and its parts (None: that part is not set)."""

    owner: str
    nodes: tuple[str, ...]
    users: tuple[str, ...]
    firewall: Firewall | None = None
    limits: Limits | None = None


# ---------------------------------------------------------------------------
# The whole state


_NAME = operator.attrgetter("name")
_FQDN_NODES = operator.attrgetter("fqdn", "nodes")
_OWNER = operator.attrgetter("owner")
# The sort key of each field of a DesiredState (``normalised``; ``states.recompose``).
SORT_KEYS = {
    "zones": _NAME,
    "vhosts": _FQDN_NODES,
    "mail": _NAME,
    "lists": _NAME,
    "policies": _OWNER,
}


@attrs.frozen
class DesiredState:
    """Everything one member's sources (or a whole site) ask of the hosts."""

    zones: tuple[Zone, ...] = ()
    vhosts: tuple[Vhost, ...] = ()
    mail: tuple[MailDomain, ...] = ()
    lists: tuple[ListDomain, ...] = ()
    policies: tuple[MemberPolicy, ...] = ()

    def normalised(self) -> DesiredState:
        """Sort every collection so equal content gives an equal value (stably, by
        ``SORT_KEYS``, which ``states.recompose`` bisects by)."""
        # (attrgetter: the keys of 30,000 objects at C speed, as the slave composes a host)
        return DesiredState(
            **{f: tuple(sorted(getattr(self, f), key=k)) for f, k in SORT_KEYS.items()}
        )

    def merge(self, other: DesiredState) -> DesiredState:
        return DesiredState(
            zones=self.zones + other.zones,
            vhosts=self.vhosts + other.vhosts,
            mail=self.mail + other.mail,
            lists=self.lists + other.lists,
            policies=self.policies + other.policies,
        ).normalised()

    def for_node(self, node: str) -> DesiredState:
        """The part of the state one host serves."""
        return DesiredState(
            zones=tuple(z for z in self.zones if node in z.nodes),
            vhosts=tuple(v for v in self.vhosts if node in v.nodes),
            mail=tuple(m for m in self.mail if node in m.nodes),
            lists=tuple(d for d in self.lists if node in d.nodes or node in d.mail_nodes),
            policies=tuple(p for p in self.policies if node in p.nodes),
        )


# ---------------------------------------------------------------------------
# JSON form (used by ``domtool -tc --show --json`` and the wire schema)

_CLASSES = {
    c.__name__: c
    for c in (
        Node,
        Site,
        Record,
        Zone,
        Redirect,
        Rewrite,
        ProxyPass,
        BasicAuth,
        WebSettings,
        Block,
        TLS,
        Vhost,
        Alias,
        MailDomain,
        MailingList,
        ListDomain,
        FirewallRule,
        Firewall,
        Limits,
        MemberPolicy,
        DesiredState,
    )
}


#: type -> its attrs field names (None: not an attrs class), so ``to_json`` asks attrs
#: once per class, not once per object (a 10,000-domain site is ~900,000 values)
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def to_json(value: Any) -> Any:
    """Plain JSON data for a model value; objects carry their class under ``"kind"``."""
    t = type(value)
    if t is str or t is int or value is None or t is bool:
        return value
    try:
        names = _FIELD_NAMES[t]
    except KeyError:
        names = tuple(f.name for f in attrs.fields(t)) if attrs.has(t) else None
        _FIELD_NAMES[t] = names
    if names is not None:
        out: dict[str, Any] = {"kind": t.__name__}
        for name in names:
            out[name] = to_json(getattr(value, name))
        return out
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def from_json(data: Any) -> Any:
    """Inverse of :func:`to_json`. Only the classes of this module can be built.

    Equal values decoded by one call are one object (hash-consing): the 10,000 zones of
    a host decoded in one frame share their NS records, node tuples and settings, and
    short strings (owners, nodes, record types, addresses) are interned across calls.
    Sharing is exact: two values become one only when they are of the same class (or
    both tuples) and their fields are the same objects or equal scalars of the same
    type (``True`` and ``1`` stay apart), so the result is the same value, field by
    field and type by type, as decoding without it; the objects are immutable."""
    return _Decoder().value(data)


#: strings up to this long are interned across calls (``sys.intern``): owners, nodes,
#: record types and names, addresses; longer ones are shared within one call only
INTERN_MAX = 24

_FIELDS = {c: frozenset(f.name for f in attrs.fields(c)) for c in _CLASSES.values()}


class _Decoder:
    """One :func:`from_json` call's table of the values built so far, by exact key: a
    value's part of its container's key is a string itself, an object or tuple already
    shared by its id (the table keeps it alive), any other scalar with its type."""

    __slots__ = ("_shared", "_strs")

    def __init__(self) -> None:
        self._strs: dict[str, str] = {}
        self._shared: dict[tuple, Any] = {}

    def _str(self, data: str) -> str:
        got = sys.intern(data) if len(data) <= INTERN_MAX and type(data) is str else data
        self._strs[got] = got
        return got

    def value(self, data: Any) -> Any:
        t = type(data)
        if t is str:
            return self._strs.get(data) or self._str(data)
        if t is dict or isinstance(data, dict):
            return self._object(data)
        if t is list or isinstance(data, list):
            return self._items(data)
        if isinstance(data, str):
            return self._strs.get(data) or self._str(data)
        return data

    def _part(self, v: Any, key: list) -> Any:
        """``v`` decoded, its key part appended to ``key``."""
        t = type(v)
        if t is str:
            x = self._strs.get(v) or self._str(v)
            key.append(x)
        elif t is dict or t is list or isinstance(v, dict | list | str):
            x = self.value(v)
            key.append(x if type(x) is str else id(x))
        else:
            x = v
            key.append((t, v))
        return x

    def _items(self, data: list) -> tuple:
        key: list = [tuple]
        part = self._part
        items = tuple([part(v, key) for v in data])
        return self._shared.setdefault(tuple(key), items)

    def _object(self, data: dict) -> Any:
        kind = data.get("kind")
        if kind in BLOCK_KINDS:
            # A Block's own ``kind`` field ("location"/"directory") overwrites the class
            # tag in to_json, so a block is recognised by that field instead.
            cls, skip = Block, None
            extra = data.keys() - _FIELDS[Block]
        else:
            cls = _CLASSES.get(kind if isinstance(kind, str) else "")
            if cls is None:
                raise ValueError(f"unknown model object kind {kind!r}")
            skip = "kind"
            extra = data.keys() - _FIELDS[cls] - {"kind"}
        if extra:
            raise ValueError(f"unexpected fields for {cls.__name__}: {sorted(extra)}")
        key: list = [cls]
        part = self._part
        fields = {}
        for k, v in data.items():
            if k != skip:
                key.append(k)
                fields[k] = part(v, key)
        key_t = tuple(key)
        got = self._shared.get(key_t)
        if got is None:
            got = self._shared[key_t] = cls(**fields)
        return got
