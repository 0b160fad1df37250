"""The one protocol between members, the dispatcher and the slaves: every request and answer,
one schema mechanism, one decoder and encoder per message (pure).

The envelope and framing are ``domtool.wire``'s; this module says what goes inside it:

- **the schema mechanism**: closed, declarative nodes (:class:`Str`, :class:`Int`,
  :class:`Bool`, :class:`Nullable`, :class:`StrOrInt`, :class:`List`, :class:`Tuple`,
  :class:`Obj`, :class:`Map`) with size limits (UTF-8 bytes of every string, items of every
  list and map, range of every integer, nesting depth), allowed values and patterns, no
  unknown fields. Every problem is reported at once (:class:`SchemaError`), each with the
  JSON path it concerns (``changes.alice.state.zones[0].name``).
- **what members and admins ask the dispatcher**: ``MEMBER_REQUESTS`` and
  ``ADMIN_REQUESTS`` (closed tables of schemas, keys exactly
  ``wire.MEMBER_OPS``/``wire.ADMIN_OPS``), checked by :func:`validate_args` before any
  controller logic; one request class per op (``REQUESTS``: :class:`SubmitRequest`,
  :class:`GrantRequest`, ...), read by :func:`read_request` (the dispatcher's ops take
  these objects) and written by their ``to_json`` (the CLIs, through
  ``client.connection.ask``).
- **what the dispatcher asks a slave**: ``SLAVE_OPS`` (keys exactly ``wire.SLAVE_OPS``),
  each op's schema and typed arguments (:class:`PrepareArgs` with per owner an
  :class:`OwnerChange`, :class:`TxArgs`, :class:`VmailArgs`, :class:`DbArgs`, ...), built
  by :func:`parse_slave` (the slave) and written by each class's ``to_json`` (the
  dispatcher).
- **what a slave answers**: :class:`PrepareAnswer`, :class:`CommitAnswer`,
  :class:`AbortAnswer`, :class:`StatusAnswer`, and the actions' own answers
  (:class:`VmailAnswer`, :class:`ListRemoveAnswer`, :class:`DbCreateAnswer`,
  :class:`DbListAnswer`, ...), each with its schema (``SLAVE_ANSWERS``); the agent and the
  dispatcher's fake slave build them, the coordinator reads them with ``from_json``
  (``Coordinator.ask``).
- **what the dispatcher answers members and admins**: :class:`DryRun` (a dry run's plan,
  per host or per member, as the answer says) and the reply classes (:class:`ChangeAnswer`,
  :class:`PlanAnswer`, :class:`PermsAnswer`, :class:`HistoryAnswer`,
  :class:`HostsAnswer`, :class:`VmailResult`, :class:`DbReply`, ...): the ops write them
  with ``to_json``, the CLIs read them with ``read`` (None for what is not one: shown as
  it came). A field absent from the JSON is None in the object and stays absent.

Nothing here looks anything up by a name that came over the wire except these closed
tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from domtool import dbnames, model
from domtool.model import DesiredState
from domtool.states import kinds

# ---------------------------------------------------------------------------
# The schema mechanism

Problems = list[tuple[str, str]]

#: object > list > object > ... : DesiredState > vhosts > Vhost > blocks > Block > WebSettings
#: > rewrites > Rewrite > conditions > (test, pattern, flags) > flag, under args > changes.
MAX_DEPTH = 16


class SchemaError(ValueError):
    """A message does not match its schema; ``problems`` lists every (path, message)."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        shown = "; ".join(f"{p}: {m}" if p else m for p, m in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(shown + more)

    @property
    def details(self) -> tuple[str, ...]:
        """Every problem as ``path: message``."""
        return tuple(f"{p}: {m}" if p else m for p, m in self.problems)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (bool before int: JSON true is no integer)."""
    for name, t in (("bool", bool), ("int", int), ("str", str), ("list", list), ("object", dict)):
        if isinstance(value, t):
            return name
    return "null" if value is None else type(value).__name__


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _nest(path: str, depth: int, problems: Problems) -> bool:
    if depth >= MAX_DEPTH:
        problems.append((path, f"nested deeper than {MAX_DEPTH}"))
        return False
    return True


@attrs.frozen
class Str:
    """A string of at most ``max_bytes`` UTF-8 bytes, one of ``allowed`` or matching
    ``pattern`` fully (else ``invalid`` is the message)."""

    max_bytes: int
    pattern: re.Pattern | None = None
    allowed: frozenset[str] | None = None
    invalid: str = "not a valid value here"

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, str):
            problems.append((path, f"expected str, got {json_type(value)}"))
            return
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            problems.append((path, "contains a lone surrogate (not valid Unicode text)"))
            return
        if size > self.max_bytes:
            problems.append((path, f"too long: {size} bytes, at most {self.max_bytes}"))
        elif self.allowed is not None and value not in self.allowed:
            problems.append((path, f"must be one of {', '.join(sorted(self.allowed))}"))
        elif self.pattern is not None and not self.pattern.fullmatch(value):
            problems.append((path, self.invalid))


@attrs.frozen
class Int:
    """An integer (never a JSON boolean) in [minimum, maximum]."""

    minimum: int
    maximum: int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append((path, f"expected int, got {json_type(value)}"))
        elif value < self.minimum:
            problems.append((path, f"must be at least {self.minimum}"))
        elif value > self.maximum:
            problems.append((path, f"must be at most {self.maximum}"))


@attrs.frozen
class Bool:
    """A JSON boolean."""

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, bool):
            problems.append((path, f"expected bool, got {json_type(value)}"))


@attrs.frozen
class Nullable:
    """``null`` or the inner schema."""

    inner: Any

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if value is not None:
            self.inner.check(value, path, problems, depth)


@attrs.frozen
class StrOrInt:
    """A string or an integer (a DNS record's data items)."""

    string: Str
    integer: Int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if isinstance(value, str):
            self.string.check(value, path, problems, depth)
        elif isinstance(value, int) and not isinstance(value, bool):
            self.integer.check(value, path, problems, depth)
        else:
            problems.append((path, f"expected str or int, got {json_type(value)}"))


@attrs.frozen
class List:
    """A list of ``min_items`` to ``max_items`` items, each matching ``items``."""

    items: Any
    max_items: int
    min_items: int = 0

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, list):
            problems.append((path, f"expected list, got {json_type(value)}"))
            return
        if len(value) > self.max_items:
            problems.append((path, f"too many items: {len(value)}, at most {self.max_items}"))
            return
        if len(value) < self.min_items:
            problems.append((path, f"needs at least {self.min_items} item(s)"))
        if not _nest(path, depth, problems):
            return
        for i, item in enumerate(value):
            self.items.check(item, f"{path}[{i}]", problems, depth + 1)


@attrs.frozen
class Tuple:
    """A list of exactly ``len(items)`` items, the i-th matching ``items[i]``."""

    items: tuple[Any, ...]

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, list) or len(value) != len(self.items):
            problems.append((path, f"expected a list of {len(self.items)} items"))
            return
        if not _nest(path, depth, problems):
            return
        for i, (item, rules) in enumerate(zip(value, self.items, strict=True)):
            rules.check(item, f"{path}[{i}]", problems, depth + 1)


@attrs.frozen
class Obj:
    """A closed JSON object: ``required`` and ``optional`` fields, nothing else. With
    ``kind``, the object must carry ``"kind": kind`` (the model's JSON form)."""

    required: Mapping[str, Any]
    optional: Mapping[str, Any] = attrs.field(factory=dict)
    kind: str | None = None

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, dict):
            problems.append((path, f"expected object, got {json_type(value)}"))
            return
        if not _nest(path, depth, problems):
            return
        if self.kind is not None and value.get("kind") != self.kind:
            problems.append((_at(path, "kind"), f"must be {self.kind!r}"))
            return
        for name, rules in self.required.items():
            if name in value:
                rules.check(value[name], _at(path, name), problems, depth + 1)
            else:
                problems.append((_at(path, name), "required"))
        for name, rules in self.optional.items():
            if name in value:
                rules.check(value[name], _at(path, name), problems, depth + 1)
        known = set(self.required) | set(self.optional) | ({"kind"} if self.kind else set())
        unknown = sorted(str(k)[:40] for k in value if k not in known)
        if unknown:
            problems.append((path, f"unknown field(s): {', '.join(map(repr, unknown[:5]))}"))

    def fields(self) -> set[str]:
        """Every field this object may carry."""
        return set(self.required) | set(self.optional)


@attrs.frozen
class Map:
    """An object used as a map: at most ``max_items`` keys matching ``key``, values ``value``."""

    key: Str
    value: Any
    max_items: int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, dict):
            problems.append((path, f"expected object, got {json_type(value)}"))
            return
        if len(value) > self.max_items:
            problems.append((path, f"too many entries: {len(value)}, at most {self.max_items}"))
            return
        if not _nest(path, depth, problems):
            return
        for k, v in value.items():
            where = _at(path, str(k)[:64])
            before = len(problems)
            self.key.check(k, where, problems, depth + 1)
            if len(problems) == before:
                self.value.check(v, where, problems, depth + 1)


@attrs.frozen
class Free:
    """A free-form value whose shape is its producer's (a probe's target, a usage
    collector's figures): null, a boolean, a number, a string of at most ``max_bytes``, or
    a list or object of at most ``max_items`` of these (nested no deeper than
    ``MAX_DEPTH``)."""

    max_bytes: int
    max_items: int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if value is None or isinstance(value, (bool, int, float)):
            return
        if isinstance(value, str):
            Str(self.max_bytes).check(value, path, problems, depth)
        elif isinstance(value, list):
            List(self, self.max_items).check(value, path, problems, depth)
        elif isinstance(value, dict):
            Map(Str(self.max_bytes), self, self.max_items).check(value, path, problems, depth)
        else:
            problems.append(
                (path, f"expected null, bool, int, str or list, got {json_type(value)}")
            )


def check(schema: Any, value: Any, path: str = "") -> None:
    """Raise :class:`SchemaError` with every problem of ``value`` under ``schema``."""
    problems: Problems = []
    schema.check(value, path, problems, 0)
    if problems:
        raise SchemaError(problems)


# ---------------------------------------------------------------------------
# Shared value rules

KiB = 1024
MAX_FILES = 64
MAX_FILE_BYTES = 256 * KiB
MAX_OWNERS = 10_000  # members touched by one prepare (a whole-site regen)
MAX_UNITS = 20_000  # zones, vhosts or mail domains of one member on one host
MAX_RECORDS = 100_000  # records of one zone
MAX_NODES = 64
MAX_NAME = 253
MAX_PATH = 4096
MAX_TEXT = 4096
MAX_SMALL_LIST = 256
MAX_GRANTS = 10_000
MAX_PASSWORD = 1024

DOMAIN = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
TXID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# A loose shape check only; the real grammar is domtool.validate's, in the slave's recheck.
NAME = re.compile(r"[A-Za-z0-9*_.-]{1,253}")
LIST_ADDRESS = re.compile(r"[A-Za-z0-9._-]{1,64}@[A-Za-z0-9.-]{1,253}")
RECORD_NAME = re.compile(r"@|[A-Za-z0-9*_.-]{1,253}")
VMAIL_ACTIONS = frozenset({"add", "passwd", "rm", "list"})
# A SHA-512 crypt hash, as the dispatcher requires it (never clear text).
VMAIL_HASH = re.compile(r"\$6\$(?:rounds=[1-9][0-9]{3,8}\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}")
VMAIL_LOCAL = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,63}")

_name = Str(MAX_NAME, NAME)
_owner = Str(32, UNIX_NAME)
_path = Str(MAX_PATH)
_text = Str(MAX_TEXT)
_names = List(_name, MAX_SMALL_LIST)
_texts = List(_text, MAX_SMALL_LIST)
_nodes = List(_name, MAX_NODES)
_u32 = Int(0, 2**32 - 1)
_u63 = Int(1, 2**63 - 1)
_port = Int(0, 65535)
_status = Int(100, 999)
_db_kind = Str(16, allowed=frozenset(dbnames.KINDS))
# Database names are only size-limited on the wire, so that the grammar's own message
# (domtool.dbnames) reaches the member; the dispatcher and the slave apply it.
_db_name = Str(64)

# ---------------------------------------------------------------------------
# The model's JSON form (domtool.model.to_json), field by field.

RECORD = Obj(
    {"name": Str(MAX_NAME, RECORD_NAME), "rtype": Str(8), "data": List(StrOrInt(_text, _u32), 8)},
    {"ttl": Nullable(_u32)},
    kind="Record",
)
ZONE = Obj(
    {"name": _name, "owner": _owner, "records": List(RECORD, MAX_RECORDS), "nodes": _nodes},
    {"ttl": _u32},
    kind="Zone",
)
REDIRECT = Obj({"path": _text, "target": _text}, {"status": _status}, kind="Redirect")
REWRITE = Obj(
    {"pattern": _text, "target": _text},
    {
        "flags": _texts,
        "conditions": List(Tuple((_text, _text, _texts)), MAX_SMALL_LIST),
    },
    kind="Rewrite",
)
PROXY = Obj({"path": _text, "port": _port}, {"target": _text}, kind="ProxyPass")
AUTH = Obj({"realm": _text, "user_file": _path}, {"require": _texts}, kind="BasicAuth")
SETTINGS = Obj(
    {},
    {
        "directory_index": _texts,
        "options": _texts,
        "error_documents": List(Tuple((_status, _text)), MAX_SMALL_LIST),
        "redirects": List(REDIRECT, MAX_SMALL_LIST),
        "rewrites": List(REWRITE, MAX_SMALL_LIST),
        "auth": Nullable(AUTH),
        "ssi": Bool(),
        "cgi": Bool(),
    },
    kind="WebSettings",
)
# A Block's JSON carries its own kind ("location"/"directory") instead of a class tag.
BLOCK = Obj(
    {"kind": Str(16, allowed=frozenset(model.BLOCK_KINDS)), "path": _path},
    {"settings": SETTINGS},
)
TLS = Obj({"certificate": _path, "key": _path}, {"chain": Nullable(_path)}, kind="TLS")
VHOST = Obj(
    {
        "fqdn": _name,
        "owner": _owner,
        "domain": _name,
        "nodes": _nodes,
        "document_root": _path,
        "user": _owner,
        "group": _owner,
        "server_admin": _text,
    },
    {
        "aliases": _names,
        "tls": Nullable(TLS),
        "url_aliases": List(Tuple((_text, _path)), MAX_SMALL_LIST),
        "script_aliases": List(Tuple((_text, _path)), MAX_SMALL_LIST),
        "proxies": List(PROXY, MAX_SMALL_LIST),
        "settings": SETTINGS,
        "blocks": List(BLOCK, MAX_SMALL_LIST),
    },
    kind="Vhost",
)
ALIAS = Obj({"source": List(_text, 2), "targets": _texts}, kind="Alias")
MAIL = Obj(
    {"name": _name, "owner": _owner, "nodes": _nodes},
    {
        "handle": Str(16, allowed=frozenset({"local", "relay"})),
        "relay_host": Nullable(_name),
        "aliases": List(ALIAS, MAX_UNITS),
        "spam_filter": Bool(),
        "spam_threshold": Int(-100, 100),
        "spam_action": Str(16, allowed=frozenset({"tag", "refuse", "junk"})),
    },
    kind="MailDomain",
)
MAILING_LIST = Obj(
    {"name": Str(64, NAME), "owners": List(_text, MAX_SMALL_LIST)}, kind="MailingList"
)
LIST_DOMAIN = Obj(
    {"name": _name, "owner": _owner, "nodes": _nodes, "web_host": _name},
    {"lists": List(MAILING_LIST, MAX_UNITS), "mail_nodes": _nodes},
    kind="ListDomain",
)
# Admin-set member policy (domtool.policies.member_policy).
FIREWALL_RULE = Obj(
    {
        "user": _owner,
        "mode": Str(16, allowed=frozenset(model.FIREWALL_MODES)),
        "proto": Str(8, allowed=frozenset(model.PROTOCOLS)),
        "ports": List(Tuple((Int(1, 65535), Int(1, 65535))), 32),
    },
    {"hosts": List(Str(64, re.compile(r"[0-9A-Fa-f.:/]{1,64}")), 64)},
    kind="FirewallRule",
)
FIREWALL = Obj(
    {},
    {
        "rules": List(FIREWALL_RULE, 1024),
        "web_servers": List(Str(64, re.compile(r"[0-9A-Fa-f.:]{1,64}")), MAX_NODES),
        "rate": Nullable(Int(1, 10 * 1024**3)),
    },
    kind="Firewall",
)
LIMITS = Obj(
    {
        "processes": _u63,
        "memory": _u63,
        "cpu_weight": Int(1, 10000),
        "cgi_cpu": _u63,
        "cgi_wall": _u63,
        "disk": _u63,
    },
    {"overridden": List(Str(16), 8)},
    kind="Limits",
)
POLICY = Obj(
    {"owner": _owner, "nodes": _nodes, "users": List(_owner, MAX_GRANTS)},
    {"firewall": Nullable(FIREWALL), "limits": Nullable(LIMITS)},
    kind="MemberPolicy",
)
STATE = Obj(
    {},
    {
        "zones": List(ZONE, MAX_UNITS),
        "vhosts": List(VHOST, MAX_UNITS),
        "mail": List(MAIL, MAX_UNITS),
        "lists": List(LIST_DOMAIN, MAX_UNITS),
        "policies": List(POLICY, 1),
    },
    kind="DesiredState",
)
GRANTS = Obj(
    {},
    {
        "paths": List(_path, MAX_GRANTS),
        "users": List(_owner, MAX_GRANTS),
        "groups": List(_owner, MAX_GRANTS),
    },
)
SIGNED_GRANTS = Obj(
    {
        "record": Obj(
            {
                "member": _owner,
                "serial": Int(1, 2**63 - 1),
                "grants": List(Tuple((Str(16), _path)), MAX_GRANTS),
            }
        ),
        "signature": Str(200),
        "key": Str(64),
    }
)
OWNER_CHANGE = Obj({"state": STATE}, {"grants": GRANTS, "signed_grants": SIGNED_GRANTS})
TXID_FIELD = Str(64, TXID)


# ---------------------------------------------------------------------------
# What the dispatcher asks a slave: typed arguments, each with its JSON form.


@attrs.frozen
class Grants:
    """What the dispatcher says an owner may use on a host: paths, Unix users, groups."""

    paths: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, perms: Any) -> Grants:
        """A member's grants from their ``domtool.perms.Permissions``."""
        return cls(
            tuple(sorted(perms.paths)), tuple(sorted(perms.users)), tuple(sorted(perms.groups))
        )

    def to_json(self) -> dict[str, list[str]]:
        return {"paths": list(self.paths), "users": list(self.users), "groups": list(self.groups)}

    @classmethod
    def from_json(cls, g: Mapping[str, Any]) -> Grants:
        return cls(tuple(g.get("paths", ())), tuple(g.get("users", ())), tuple(g.get("groups", ())))


@attrs.frozen
class OwnerChange:
    """One member's COMPLETE desired state on a host, and their grants (as the dispatcher
    says, and as an administrator signed them when relayed: ``domtool.grantsig``)."""

    state: DesiredState
    grants: Grants
    signed: Any = None  # domtool.grantsig.SignedGrants | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": model.to_json(self.state.normalised())}
        out["grants"] = self.grants.to_json()
        if self.signed is not None:
            out["signed_grants"] = self.signed.to_json()
        return out


def change_json(
    state_json: Mapping[str, Any], grants: Grants, signed: Mapping[str, Any] | None = None
) -> dict:
    """An :class:`OwnerChange`'s JSON form from a state already in model JSON and the
    signed grant record's JSON form (the dispatcher keeps and relays both as JSON; this
    writes the same bytes as ``OwnerChange.to_json``)."""
    out: dict[str, Any] = {"state": state_json, "grants": grants.to_json()}
    if signed is not None:
        out["signed_grants"] = dict(signed)
    return out


def change_state(change: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The state JSON of an :class:`OwnerChange`'s JSON form, or None when it is empty
    (the owner's part is removed)."""
    state = change["state"]
    return None if not any(v for k, v in state.items() if k != "kind") else state


@attrs.frozen
class PrepareArgs:
    """``prepare``: stage these owners' new parts under transaction ``txid``. With
    ``complete``, ``changes`` names every owner of the host and any other owner's part is
    removed (a whole-host convergence)."""

    txid: str
    # Each owner's change, typed, or already in its JSON form (the dispatcher keeps the
    # parts it sends as JSON: :func:`change_json`).
    changes: Mapping[str, OwnerChange | Mapping[str, Any]]
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        changes = {
            o: c.to_json() if isinstance(c, OwnerChange) else c for o, c in self.changes.items()
        }
        out: dict[str, Any] = {"txid": self.txid, "changes": changes}
        if self.complete:
            out["complete"] = True
        return out


@attrs.frozen
class TxArgs:
    """``commit`` / ``abort`` of transaction ``txid``."""

    txid: str

    def to_json(self) -> dict[str, Any]:
        return {"txid": self.txid}


@attrs.frozen
class StatusArgs:
    """``status``: no arguments."""

    def to_json(self) -> dict[str, Any]:
        return {}


@attrs.frozen
class DescribeArgs:
    """``describe``: what the host serves for ``domain``."""

    domain: str

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain}


@attrs.frozen
class ListRemoveArgs:
    """``list_remove``: remove ``owner``'s mailing list ``list`` (a dry run unless ``doit``)."""

    owner: str
    list: str
    doit: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "list": self.list, "doit": self.doit}


@attrs.frozen
class PolicyHeldArgs:
    """``policy_held``: ``owner``'s admin-set policy as the host holds it."""

    owner: str

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner}


@attrs.frozen
class UsageArgs:
    """``usage``: what ``owner`` (None: every owner of the host) uses there."""

    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {} if self.owner is None else {"owner": self.owner}


@attrs.frozen
class TlsUpdateArgs:
    """``tls_update``: the host CRL, and the host's certificate and key when renewed."""

    crl_pem: str
    cert_pem: str | None = None
    key_pem: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"crl_pem": self.crl_pem}
        if self.cert_pem is not None:
            out["cert_pem"] = self.cert_pem
        if self.key_pem is not None:
            out["key_pem"] = self.key_pem
        return out


@attrs.frozen
class VmailArgs:
    """``vmail``: a virtual mailbox action of ``owner`` (``domtool.slave.vmail``); ``users``
    are the owner's granted Unix users (a mailbox's ``mail_user`` must be one)."""

    action: str
    owner: str
    domain: str | None = None
    user: str | None = None
    hash: str | None = attrs.field(default=None, repr=False)
    mail_user: str | None = None
    purge: bool = False
    users: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "owner": self.owner}
        for key in ("domain", "user"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.action != "list":
            out["grants"] = {"users": list(self.users)}
        for key in ("hash", "mail_user"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.purge:
            out["purge"] = True
        return out


@attrs.frozen
class DbArgs:
    """``db_create`` / ``db_drop``: database ``name`` of ``kind`` for ``owner``."""

    kind: str
    owner: str
    name: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "owner": self.owner, "name": self.name}


@attrs.frozen
class DbListArgs:
    """``db_list``: the databases and roles of ``owner`` (None: of every member)."""

    owner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {} if self.owner is None else {"owner": self.owner}


@attrs.frozen
class DbPasswdArgs:
    """``db_passwd``: set ``role``'s password (never shown in a repr, log or audit)."""

    kind: str
    owner: str
    role: str
    password: str = attrs.field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "owner": self.owner,
            "role": self.role,
            "password": self.password,
        }


@attrs.frozen
class DbGrantArgs:
    """``db_grant``: let ``role`` use ``database``."""

    kind: str
    owner: str
    database: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "owner": self.owner,
            "database": self.database,
            "role": self.role,
        }


def _prepare(args: dict) -> PrepareArgs:
    changes: dict[str, OwnerChange] = {}
    problems: Problems = []
    for owner, change in sorted(args["changes"].items()):
        try:
            state = model.from_json(change["state"])
        except (TypeError, ValueError) as e:
            problems.append((f"changes.{owner}.state", str(e)[:200]))
            continue
        signed = None
        if "signed_grants" in change:
            from domtool import grantsig

            try:
                signed = grantsig.SignedGrants.from_json(change["signed_grants"])
            except grantsig.GrantSigError as e:
                problems.append((f"changes.{owner}.signed_grants", str(e)[:200]))
                continue
        changes[owner] = OwnerChange(
            state.normalised(), Grants.from_json(change.get("grants", {})), signed
        )
    if problems:
        raise SchemaError(problems)
    return PrepareArgs(args["txid"], changes, bool(args.get("complete", False)))


def _tls_update(args: dict) -> TlsUpdateArgs:
    if ("cert_pem" in args) != ("key_pem" in args):
        raise SchemaError([("", "cert_pem and key_pem go together")])
    return TlsUpdateArgs(args["crl_pem"], args.get("cert_pem"), args.get("key_pem"))


def _vmail(a: dict) -> VmailArgs:
    g = a.get("grants") or {}
    return VmailArgs(
        action=a["action"],
        owner=a["owner"],
        domain=(a.get("domain") or None) and a["domain"].lower(),
        user=(a.get("user") or None) and a["user"].lower(),
        hash=a.get("hash"),
        mail_user=a.get("mail_user"),
        purge=bool(a.get("purge", False)),
        users=tuple(g.get("users", ())),
    )


@attrs.frozen
class SlaveOp:
    """One slave op: its arguments' schema, their typed class, and the builder from
    checked JSON to that class."""

    schema: Obj
    args: type
    build: Callable[[dict], Any]


_dbop = {"kind": _db_kind, "owner": _owner}

#: The ops a slave accepts. Closed table: its keys are exactly ``domtool.wire.SLAVE_OPS``.
SLAVE_OPS: dict[str, SlaveOp] = {
    "prepare": SlaveOp(
        Obj(
            {"txid": TXID_FIELD, "changes": Map(Str(32, UNIX_NAME), OWNER_CHANGE, MAX_OWNERS)},
            {"complete": Bool()},
        ),
        PrepareArgs,
        _prepare,
    ),
    "commit": SlaveOp(Obj({"txid": TXID_FIELD}), TxArgs, lambda a: TxArgs(a["txid"])),
    "abort": SlaveOp(Obj({"txid": TXID_FIELD}), TxArgs, lambda a: TxArgs(a["txid"])),
    "status": SlaveOp(Obj({}), StatusArgs, lambda a: StatusArgs()),
    "describe": SlaveOp(
        Obj({"domain": _name}), DescribeArgs, lambda a: DescribeArgs(a["domain"].lower())
    ),
    "list_remove": SlaveOp(
        Obj({"owner": _owner, "list": Str(320, LIST_ADDRESS)}, {"doit": Bool()}),
        ListRemoveArgs,
        lambda a: ListRemoveArgs(a["owner"], a["list"].lower(), bool(a.get("doit"))),
    ),
    # The owner's admin-set policy as the host holds it, and whether it is live.
    "policy_held": SlaveOp(
        Obj({"owner": _owner}), PolicyHeldArgs, lambda a: PolicyHeldArgs(a["owner"])
    ),
    # What members use on the host (domtool.slave.usage); no owner: every owner there.
    "usage": SlaveOp(Obj({}, {"owner": _owner}), UsageArgs, lambda a: UsageArgs(a.get("owner"))),
    # Renewed TLS files from the dispatcher (slave/tlsupdate.py checks and installs them).
    "tls_update": SlaveOp(
        Obj({"crl_pem": Str(1 << 20)}, {"cert_pem": Str(16384), "key_pem": Str(16384)}),
        TlsUpdateArgs,
        _tls_update,
    ),
    # Virtual mailboxes (domtool.slave.vmail): a typed action, not a config unit.
    "vmail": SlaveOp(
        Obj(
            {"action": Str(8, allowed=VMAIL_ACTIONS), "owner": _owner},
            {
                "domain": _name,
                "user": Str(64, re.compile(r"[A-Za-z0-9._+-]{1,64}")),
                "hash": Str(128, re.compile(r"\$6\$[A-Za-z0-9./$=]{1,120}")),
                "mail_user": _owner,
                "purge": Bool(),
                "grants": Obj({}, {"users": List(_owner, MAX_GRANTS)}),
            },
        ),
        VmailArgs,
        _vmail,
    ),
    # Databases (domtool.slave.dbagent applies domtool.dbnames before any SQL).
    "db_create": SlaveOp(
        Obj({**_dbop, "name": _db_name}), DbArgs, lambda a: DbArgs(a["kind"], a["owner"], a["name"])
    ),
    "db_drop": SlaveOp(
        Obj({**_dbop, "name": _db_name}), DbArgs, lambda a: DbArgs(a["kind"], a["owner"], a["name"])
    ),
    "db_list": SlaveOp(
        Obj({}, {"owner": _owner}), DbListArgs, lambda a: DbListArgs(a.get("owner"))
    ),
    "db_passwd": SlaveOp(
        Obj({**_dbop, "role": _db_name, "password": Str(MAX_PASSWORD)}),
        DbPasswdArgs,
        lambda a: DbPasswdArgs(a["kind"], a["owner"], a["role"], a["password"]),
    ),
    "db_grant": SlaveOp(
        Obj({**_dbop, "database": _db_name, "role": _db_name}),
        DbGrantArgs,
        lambda a: DbGrantArgs(a["kind"], a["owner"], a["database"], a["role"]),
    ),
}


def parse_slave(op: str, args: Any) -> Any:
    """Check a slave op's ``args`` against its schema and build its typed arguments.

    ``op`` must already be one of ``domtool.wire.SLAVE_OPS`` (``wire.decode_request``
    refuses anything else). Raises :class:`SchemaError` listing every problem."""
    entry = SLAVE_OPS.get(op)
    if entry is None:
        raise SchemaError([("", f"unknown operation {op[:40]!r}")])
    check(entry.schema, args)
    return entry.build(args)


# ---------------------------------------------------------------------------
# What a slave answers.


@attrs.frozen
class Verdict:
    """A host's word on one owner's part: accepted (``ok``) or why not."""

    ok: bool
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message}


VERDICT = Obj({"ok": Bool()}, {"message": Str(1 << 20)})
_verdicts = Map(Str(32, UNIX_NAME), VERDICT, MAX_OWNERS)
_generation = Int(0, 2**63 - 1)
# A probe the host ran after its reload (slave.probes): kind, target, owner.
PROBE = Obj(
    {"kind": Str(32), "target": Free(MAX_TEXT, MAX_SMALL_LIST)}, {"owner": Nullable(Str(32))}
)


def probe_json(kind: str, target: Any, owner: str | None) -> dict[str, Any]:
    """One verified probe's JSON form (an item of :class:`CommitAnswer`'s ``verified``)."""
    return {"kind": kind, "target": list(target), "owner": owner}


def _verdicts_from(obj: Mapping[str, Any]) -> dict[str, Verdict]:
    return {o: Verdict(v["ok"], v.get("message", "")) for o, v in sorted(obj.items())}


def _verdicts_json(owners: Mapping[str, Verdict]) -> dict[str, Any]:
    return {o: v.to_json() for o, v in sorted(owners.items())}


@attrs.frozen
class PrepareAnswer:
    """``prepare``'s answer: the generation it started from and the one it staged, and
    each owner's verdict."""

    txid: str
    base_generation: int
    staged_generation: int
    owners: Mapping[str, Verdict] = attrs.field(factory=dict)
    message: str = ""

    SCHEMA = Obj(
        {
            "txid": TXID_FIELD,
            "base_generation": _generation,
            "staged_generation": _generation,
            "owners": _verdicts,
        },
        {"message": Str(1 << 20)},
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "txid": self.txid,
            "base_generation": self.base_generation,
            "staged_generation": self.staged_generation,
            "owners": _verdicts_json(self.owners),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, obj: Any) -> PrepareAnswer:
        check(cls.SCHEMA, obj)
        return cls(
            obj["txid"],
            obj["base_generation"],
            obj["staged_generation"],
            _verdicts_from(obj["owners"]),
            obj.get("message", ""),
        )

    def refused(self) -> dict[str, str]:
        """owner -> why, for every owner this host refused."""
        return {o: v.message or "refused" for o, v in self.owners.items() if not v.ok}


@attrs.frozen
class CommitAnswer:
    """``commit``'s answer: the live generation, what happened (``applied``,
    ``unchanged``, ``rolled_back``), the probes run after the reload, and each owner's
    verdict (the prepare's, then what the engine said at commit)."""

    txid: str
    generation: int
    status: str
    verified: tuple[Mapping[str, Any], ...] = ()
    message: str = ""
    owners: Mapping[str, Verdict] = attrs.field(factory=dict)

    SCHEMA = Obj(
        {"txid": TXID_FIELD, "generation": _generation, "status": Str(32)},
        {
            "verified": List(PROBE, 10 * MAX_UNITS),
            "message": Str(1 << 20),
            "owners": _verdicts,
        },
    )

    def to_json(self) -> dict[str, Any]:
        return {
            "txid": self.txid,
            "generation": self.generation,
            "status": self.status,
            "verified": [dict(v) for v in self.verified],
            "message": self.message,
            "owners": _verdicts_json(self.owners),
        }

    @classmethod
    def from_json(cls, obj: Any) -> CommitAnswer:
        check(cls.SCHEMA, obj)
        return cls(
            obj["txid"],
            obj["generation"],
            obj["status"],
            tuple(obj.get("verified", ())),
            obj.get("message", ""),
            _verdicts_from(obj.get("owners", {})),
        )

    def accepted(self, owner: str) -> bool:
        """Whether ``owner``'s part went live (an owner not named was not refused)."""
        v = self.owners.get(owner)
        return v is None or v.ok


@attrs.frozen
class AbortAnswer:
    """``abort``'s answer: whether the transaction was pending (and is now discarded)."""

    txid: str
    aborted: bool
    generation: int

    def to_json(self) -> dict[str, Any]:
        return {"txid": self.txid, "aborted": self.aborted, "generation": self.generation}


@attrs.frozen
class StatusAnswer:
    """``status``'s answer: the live generation, its owners, the pending transaction;
    the real agent also says whether the generation is verified and its state known."""

    host: str
    generation: int
    owners: tuple[str, ...]
    pending_txid: str | None = None
    verified: bool | None = None
    state_known: bool | None = None

    SCHEMA = Obj(
        {
            "host": Str(MAX_NAME),
            "generation": _generation,
            "owners": List(Str(32, UNIX_NAME), MAX_OWNERS),
            "pending_txid": Nullable(TXID_FIELD),
        },
        {"verified": Bool(), "state_known": Bool()},
    )

    @classmethod
    def from_json(cls, obj: Any) -> StatusAnswer:
        check(cls.SCHEMA, obj)
        return cls(
            obj["host"],
            obj["generation"],
            tuple(obj["owners"]),
            obj["pending_txid"],
            obj.get("verified"),
            obj.get("state_known"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "generation": self.generation}
        if self.verified is not None:
            out["verified"] = self.verified
        out["owners"] = list(self.owners)
        out["pending_txid"] = self.pending_txid
        if self.state_known is not None:
            out["state_known"] = self.state_known
        return out


@attrs.frozen
class DescribeAnswer:
    """``describe``'s answer: what the host serves for ``domain`` (``state``: the units
    under it, by kind)."""

    domain: str | None
    host: str | None
    generation: int | None
    state: DesiredState

    def to_json(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "host": self.host,
            "generation": self.generation,
            **{k: [model.to_json(u) for u in getattr(self.state, k)] for k in kinds(self.state)},
        }

    @classmethod
    def read(cls, obj: Any) -> DescribeAnswer | None:
        """The answer as a client reads it (a missing name or generation is None), or
        None when ``obj`` is not one (a unit that does not decode, an unknown field)."""
        units = set(attrs.fields_dict(DesiredState))
        if not isinstance(obj, dict) or not set(obj) <= units | {"domain", "host", "generation"}:
            return None
        try:
            check(_DESCRIBED, {k: v for k, v in obj.items() if k not in units})
            state = DesiredState(
                **{k: tuple(model.from_json(u) for u in obj[k]) for k in units if obj.get(k)}
            )
        except (SchemaError, ValueError, TypeError, KeyError):
            return None
        return cls(obj.get("domain"), obj.get("host"), obj.get("generation"), state)


_DESCRIBED = Obj(
    {},
    {"domain": Str(MAX_NAME), "host": Str(MAX_NAME), "generation": Nullable(Int(0, 2**63 - 1))},
)


@attrs.frozen
class PolicyHeldAnswer:
    """``policy_held``'s answer: the owner's policy unit in the live state (or None), and
    whether the kernel holds it (True, the reason it does not, or None: not asked)."""

    host: str
    generation: int
    policy: Any = None  # domtool.model.MemberPolicy | None
    live: bool | str | None = None

    SCHEMA = Obj(
        {
            "host": Str(MAX_NAME),
            "generation": _generation,
            "policy": Nullable(POLICY),
            "live": Nullable(Free(MAX_TEXT, 0)),
        }
    )

    @classmethod
    def from_json(cls, obj: Any) -> PolicyHeldAnswer:
        check(cls.SCHEMA, obj)
        policy = None if obj["policy"] is None else model.from_json(obj["policy"])
        return cls(obj["host"], obj["generation"], policy, obj["live"])

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "generation": self.generation,
            "policy": None if self.policy is None else model.to_json(self.policy),
            "live": self.live,
        }


@attrs.frozen
class UsageAnswer:
    """``usage``'s answer: per member, what ``domtool.slave.usage`` collected."""

    host: str
    members: Mapping[str, Any]

    SCHEMA = Obj(
        {
            "host": Str(MAX_NAME),
            "members": Map(Str(32, UNIX_NAME), Free(MAX_TEXT, MAX_UNITS), MAX_OWNERS),
        }
    )

    @classmethod
    def from_json(cls, obj: Any) -> UsageAnswer:
        check(cls.SCHEMA, obj)
        return cls(obj["host"], dict(obj["members"]))

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "members": dict(self.members)}


# ---------------------------------------------------------------------------
# The actions' own answers (``vmail``, ``list_remove``, ``db_*``): the slave writes them
# with ``to_json``, the dispatcher reads them with ``from_json`` (``Coordinator.ask``) and
# relays them to the member. As for requests, an absent field is None and stays absent.


class _Answer:
    """What these answer classes share: ``SCHEMA``, and the generic decoder and encoder
    (a field with ``items`` metadata is a tuple of that class's objects)."""

    SCHEMA: Obj = Obj({})

    @classmethod
    def from_json(cls, obj: Any) -> Any:
        check(cls.SCHEMA, obj)
        return cls._build(obj)

    @classmethod
    def _build(cls, obj: Mapping[str, Any]) -> Any:
        kwargs = {}
        for f in attrs.fields(cls):
            value = obj.get(_wire_name(f))
            items, values = f.metadata.get("items"), f.metadata.get("values")
            one = f.metadata.get("object")
            if value is None:
                pass
            elif one is not None:
                value = one._build(value)
            elif items is not None:
                value = tuple(items._build(v) for v in value)
            elif values is not None:
                value = {k: values._build(v) for k, v in value.items()}
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)

    @classmethod
    def read(cls, obj: Any) -> Any:
        """The answer, or None when ``obj`` is not one (a client then shows it as it
        came: an older or newer dispatcher's answer is printed, never guessed at)."""
        try:
            return cls.from_json(obj)
        except SchemaError:
            return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in attrs.fields(type(self)):
            value = getattr(self, f.name)
            if value is None:
                if f.metadata.get("always"):
                    out[_wire_name(f)] = None
                continue
            if f.metadata.get("object") is not None:
                value = value.to_json()
            elif f.metadata.get("items") is not None:
                value = [v.to_json() for v in value]
            elif f.metadata.get("values") is not None:
                value = {k: v.to_json() for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[_wire_name(f)] = value
        return out


def _items(cls: type, default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, metadata={"items": cls})


def _values(cls: type) -> Any:
    """An optional map whose values are ``cls``'s objects."""
    return attrs.field(default=None, metadata={"values": cls})


def _always(**metadata: Any) -> Any:
    """An optional field written as null when None (the answer always carries it)."""
    return attrs.field(default=None, metadata={"always": True, **metadata})


_address = Str(MAX_NAME + 65)
_message = Str(MAX_TEXT)
_bytes = Nullable(Int(0, 2**63 - 1))
_db_role = Str(MAX_NAME)


@attrs.frozen
class Mailbox(_Answer):
    """One virtual mailbox: its address, the Unix user its mail is delivered as, its
    maildir; in the dispatcher's ``vmail list`` answer, also the ``hosts`` holding it."""

    address: str
    mail_user: str
    maildir: str | None = None
    hosts: tuple[str, ...] | None = None

    SCHEMA = Obj(
        {"address": _address, "mail_user": Str(32, UNIX_NAME)},
        {"maildir": Str(MAX_PATH), "hosts": List(Str(MAX_NAME), MAX_NODES)},
    )


@attrs.frozen
class VmailAnswer(_Answer):
    """``vmail``'s answer: the owner's ``mailboxes`` (``list``), or what was done
    (``added`` with its ``maildir``, ``changed``, ``removed`` with the maildir ``purged``
    or ``kept``)."""

    mailboxes: tuple[Mailbox, ...] | None = _items(Mailbox, None)
    added: str | None = None
    maildir: str | None = None
    changed: str | None = None
    removed: str | None = None
    purged: str | None = None
    kept: str | None = None

    SCHEMA = Obj(
        {},
        {
            "mailboxes": List(Mailbox.SCHEMA, MAX_UNITS),
            "added": _address,
            "maildir": Str(MAX_PATH),
            "changed": _address,
            "removed": _address,
            "purged": Str(MAX_PATH),
            "kept": Str(MAX_PATH),
        },
    )


@attrs.frozen
class ListRemoveAnswer(_Answer):
    """``list_remove``'s answer: whether the list exists (after), was ``removed``, its
    member count, where its settings and rosters were exported, and the message."""

    host: str
    list: str
    exists: bool
    removed: bool
    message: str
    members: int | None = None
    export: str | None = None

    SCHEMA = Obj(
        {
            "host": Str(MAX_NAME),
            "list": Str(320, LIST_ADDRESS),
            "exists": Bool(),
            "removed": Bool(),
            "message": _message,
        },
        {"members": Int(0, 2**31 - 1), "export": Str(MAX_PATH)},
    )


@attrs.frozen
class DbCreateAnswer(_Answer):
    """``db_create``'s answer: the database, whether it is new, how to connect."""

    kind: str
    name: str
    owner: str
    changed: bool
    message: str
    endpoint: Mapping[str, Any]

    SCHEMA = Obj(
        {
            "kind": _db_kind,
            "name": _db_name,
            "owner": _owner,
            "changed": Bool(),
            "message": _message,
            "endpoint": Map(Str(64), Free(MAX_PATH, 0), 16),
        }
    )


@attrs.frozen
class DbDropAnswer(_Answer):
    """``db_drop``'s answer: the database dropped and its size."""

    kind: str
    name: str
    changed: bool
    size: int | None

    SCHEMA = Obj({"kind": _db_kind, "name": _db_name, "changed": Bool(), "size": _bytes})


@attrs.frozen
class DbPasswdAnswer(_Answer):
    """``db_passwd``'s answer: the role, and whether it was created."""

    kind: str
    role: str
    created: bool
    changed: bool

    SCHEMA = Obj({"kind": _db_kind, "role": _db_name, "created": Bool(), "changed": Bool()})


@attrs.frozen
class DbGrantAnswer(_Answer):
    """``db_grant``'s answer: the database, the role, and whether the role was created."""

    kind: str
    database: str
    role: str
    role_created: bool
    changed: bool

    SCHEMA = Obj(
        {
            "kind": _db_kind,
            "database": _db_name,
            "role": _db_name,
            "role_created": Bool(),
            "changed": Bool(),
        }
    )


@attrs.frozen
class DbInfo(_Answer):
    """One database in ``db_list``'s answer: its kind, name, owning role and size."""

    kind: str
    name: str
    owner: str
    size: int | None

    SCHEMA = Obj({"kind": _db_kind, "name": Str(MAX_NAME), "owner": _db_role, "size": _bytes})


@attrs.frozen
class DbListAnswer(_Answer):
    """``db_list``'s answer: the host's database kinds, the owner's databases and roles
    per kind, the servers that could not be asked (``errors``) and how to connect."""

    host: str
    kinds: tuple[str, ...]
    databases: tuple[DbInfo, ...] = _items(DbInfo)
    roles: Mapping[str, Any] = attrs.field(factory=dict)
    errors: Mapping[str, str] = attrs.field(factory=dict)
    endpoints: Mapping[str, Any] = attrs.field(factory=dict)

    SCHEMA = Obj(
        {
            "host": Str(MAX_NAME),
            "kinds": List(_db_kind, 8),
            "databases": List(DbInfo.SCHEMA, MAX_UNITS),
            "roles": Map(_db_kind, List(_db_role, MAX_UNITS), 8),
            "errors": Map(_db_kind, _message, 8),
            "endpoints": Map(_db_kind, Map(Str(64), Free(MAX_PATH, 0), 16), 8),
        }
    )

    @classmethod
    def _build(cls, obj: Mapping[str, Any]) -> DbListAnswer:
        return cls(
            obj["host"],
            tuple(obj["kinds"]),
            tuple(DbInfo._build(d) for d in obj["databases"]),
            dict(obj["roles"]),
            dict(obj["errors"]),
            dict(obj["endpoints"]),
        )


#: The answers the dispatcher reads (``Coordinator.ask`` decodes them). The others it
#: relays to the member as they are: ``abort`` (only its success matters) and
#: ``describe`` (written by :class:`DescribeAnswer`).
SLAVE_ANSWERS: dict[str, type] = {
    "prepare": PrepareAnswer,
    "commit": CommitAnswer,
    "status": StatusAnswer,
    "policy_held": PolicyHeldAnswer,
    "usage": UsageAnswer,
    "vmail": VmailAnswer,
    "list_remove": ListRemoveAnswer,
    "db_create": DbCreateAnswer,
    "db_drop": DbDropAnswer,
    "db_passwd": DbPasswdAnswer,
    "db_grant": DbGrantAnswer,
    "db_list": DbListAnswer,
}


# ---------------------------------------------------------------------------
# What the dispatcher answers a change (written by dispatcher/apply.py's coordinator).


@attrs.frozen
class HostResult:
    """In the dispatcher's answer to a change (``submit``, ``undo``, ``rmdom``, ``regen``...),
    what one host did: its generation, status (applied, unchanged, rolled_back,
    pending), what it verified after the switch, and its message."""

    generation: int | None
    status: str
    verified: tuple[Any, ...] = ()
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "status": self.status,
            "verified": list(self.verified),
            "message": self.message,
        }


@attrs.frozen
class ApplyResult:
    """The one answer of an apply: applied or not, each host's result, the reasons."""

    applied: bool
    hosts: Mapping[str, HostResult] = attrs.field(factory=dict)
    refused: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "hosts": {h: r.to_json() for h, r in sorted(self.hosts.items())},
            "refused": list(self.refused),
        }


# ---------------------------------------------------------------------------
# What members and admins ask the dispatcher.


@attrs.frozen
class Request:
    """A member's or admin's request that passed its schema."""

    kind: str
    args: Mapping[str, Any]


def _named(max_bytes: int, pattern: re.Pattern) -> Str:
    return Str(max_bytes, pattern, invalid="not a valid name")


DOMAIN_FIELD = _named(253, DOMAIN)
FILES = List(
    Obj({"name": DOMAIN_FIELD, "text": Str(MAX_FILE_BYTES)}),
    MAX_FILES,
    min_items=1,
)
USER_FIELD = _named(32, UNIX_NAME)
GRANT_CLASS = Str(16, allowed=frozenset({"domain", "path", "user", "group"}))
GRANT_VALUE = Str(4096)
_word = _named(32, re.compile(r"[a-z][a-z0-9_]{0,31}"))

#: The requests members may send. Closed table: its keys are exactly ``wire.MEMBER_OPS``.
MEMBER_REQUESTS: dict[str, Obj] = {
    "submit": Obj({"files": FILES}),
    "check": Obj({"files": FILES}),
    "plan": Obj({"files": FILES}),
    "perms": Obj({}),
    "whoami": Obj({}),
    "describe": Obj({"domain": DOMAIN_FIELD}),
    "history": Obj({"domain": DOMAIN_FIELD}),
    "undo": Obj({"domain": DOMAIN_FIELD, "version": Int(1, 2**31 - 1)}),
    "rmdom": Obj({"domain": DOMAIN_FIELD}),
    # virtual mailboxes (domtool.dispatcher.vmail)
    "vmail": Obj(
        {"action": Str(8, allowed=VMAIL_ACTIONS)},
        {
            "domain": DOMAIN_FIELD,
            "user": _named(64, VMAIL_LOCAL),
            "hash": _named(128, VMAIL_HASH),
            "mail_user": USER_FIELD,
            "purge": Bool(),
            "doit": Bool(),
        },
    ),
    "list_rm": Obj({"list": _named(320, LIST_ADDRESS)}, {"doit": Bool()}),
    # databases (domtool.dispatcher.databases)
    "db_create": Obj({"kind": _db_kind, "name": _db_name}),
    "db_drop": Obj({"kind": _db_kind, "name": _db_name}, {"apply": Bool()}),
    "db_list": Obj({}),
    "db_passwd": Obj({"kind": _db_kind, "role": _db_name, "password": Str(MAX_PASSWORD)}),
    "db_grant": Obj({"kind": _db_kind, "database": _db_name, "role": _db_name}),
    # the member's own admin-set policy (domtool.dispatcher.policy_ops)
    "policy": Obj({}),
    # what the member uses (domtool.dispatcher.usage_ops)
    "usage": Obj({}),
}

# Destructive admin verbs are dry runs unless ``apply`` is true.
_apply = {"apply": Bool()}

#: What admins may ask in addition (the avatar's ``is_admin`` decides who may). Closed
#: table: its keys are exactly ``wire.ADMIN_OPS``.
ADMIN_REQUESTS: dict[str, Obj] = {
    "adduser": Obj({"user": USER_FIELD}, {"admin": Bool()}),
    "rmuser": Obj({"user": USER_FIELD}, _apply),
    # shared: overlapping another member's grant, on purpose
    "grant": Obj(
        {"user": USER_FIELD, "class": GRANT_CLASS, "value": GRANT_VALUE}, {"shared": Bool()}
    ),
    "revoke": Obj({"user": USER_FIELD, "class": GRANT_CLASS, "value": GRANT_VALUE}),
    "perms_of": Obj({"user": USER_FIELD}),
    "whohas": Obj({"class": GRANT_CLASS, "value": GRANT_VALUE}),
    "regen": Obj({}, _apply),
    "admin_rmdom": Obj({"domain": DOMAIN_FIELD}, _apply),
    "hosts": Obj({}),
    "ping": Obj({}, {"host": DOMAIN_FIELD}),
    "admin_describe": Obj({"domain": DOMAIN_FIELD}),
    "audit": Obj({}, {"user": USER_FIELD, "limit": Int(1, 10_000)}),
    "quota": Obj({"user": USER_FIELD}),
    # A grant record signed by an admin's key (domtool.grantsig), checked by the controller.
    "put_grants": Obj(
        {
            "signed": Obj(
                {
                    "record": Obj(
                        {
                            "member": USER_FIELD,
                            "serial": Int(1, 2**63 - 1),
                            "grants": List(Tuple((Str(4096), Str(4096))), 10_000),
                        }
                    ),
                    "signature": Str(200),
                    "key": Str(64),
                }
            )
        }
    ),
    # admin-set member policy (domtool.dispatcher.policy_ops); a part's own parser
    # (domtool.policies.member_policy.EDITS) checks the action's value.
    "policy_show": Obj({}, {"user": USER_FIELD}),
    "policy_check": Obj({}, {"user": USER_FIELD}),
    "usage_of": Obj({}, {"user": USER_FIELD}),
    "policy_set": Obj(
        {"part": _word, "action": _word},
        {"user": USER_FIELD, "site": Bool(), "value": Str(4096), "dry_run": Bool()},
    ),
    "set_quota": Obj(
        {
            "user": USER_FIELD,
            "resource": _named(64, re.compile(r"[a-z][a-z0-9_]{0,63}")),
            "value": Int(0, 2**53),
        }
    ),
}


def validate_args(kind: Any, args: Any, *, admin: bool = False) -> Request:
    """Check the arguments of a member's (with ``admin``, also an admin's) request of
    ``kind`` (the ``op`` and ``args`` of a ``domtool.wire`` envelope); the Request, or
    SchemaError with every problem."""
    table = {**MEMBER_REQUESTS, **ADMIN_REQUESTS} if admin else MEMBER_REQUESTS
    if not isinstance(kind, str) or kind not in table:
        raise SchemaError([("kind", f"must be one of {', '.join(sorted(table))}")])
    if not isinstance(args, dict):
        raise SchemaError([("", f"arguments are a JSON object, got {json_type(args)}")])
    check(table[kind], args)
    return Request(kind, args)


# ---------------------------------------------------------------------------
# Member and admin requests as typed objects: one class per op, ``REQUESTS`` (op -> class)
# and :func:`read_request`. A field absent from the JSON is None in the object (and left
# out again by ``to_json``), so what a client sends is what the dispatcher reads, byte for
# byte; the op says what None means (``apply`` None is a dry run, ``limit`` None is 100).

#: op -> request class, filled by :func:`_request`; keys exactly ``wire.MEMBER_OPS |
#: wire.ADMIN_OPS`` (``tests/core/test_protocol.py``).
REQUESTS: dict[str, type] = {}


def _request(op: str) -> Callable[[type], type]:
    def register(cls: type) -> type:
        cls.OP = op
        REQUESTS[op] = cls
        return cls

    return register


def _wire_name(field: Any) -> str:
    return field.metadata.get("wire", field.name)


class _Request:
    """What every request class shares: its op (``OP``), its schema (the op's entry of
    ``MEMBER_REQUESTS`` or ``ADMIN_REQUESTS``), the generic encoder and decoder (a field's
    JSON name is its own or its ``wire`` metadata: ``class`` is ``grant_class``)."""

    OP: str = ""

    @classmethod
    def schema(cls) -> Obj:
        return MEMBER_REQUESTS.get(cls.OP) or ADMIN_REQUESTS[cls.OP]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Any:
        """The request from JSON already checked against :meth:`schema`."""
        return cls(**{f.name: obj.get(_wire_name(f)) for f in attrs.fields(cls)})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in attrs.fields(type(self)):
            value = getattr(self, f.name)
            if value is not None:
                out[_wire_name(f)] = value
        return out


def _grant_class() -> Any:
    return attrs.field(metadata={"wire": "class"})


@attrs.frozen
class SourceFile:
    """One member file of a ``submit``, ``check`` or ``plan``: named after its domain."""

    name: str
    text: str = attrs.field(repr=False)


@attrs.frozen
class _FilesRequest(_Request):
    files: tuple[SourceFile, ...]

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Any:
        return cls(tuple(SourceFile(f["name"], f["text"]) for f in obj["files"]))

    def to_json(self) -> dict[str, Any]:
        return {"files": [{"name": f.name, "text": f.text} for f in self.files]}


@_request("submit")
@attrs.frozen
class SubmitRequest(_FilesRequest):
    """``submit``: apply these files (with the member's other stored files)."""


@_request("check")
@attrs.frozen
class CheckRequest(_FilesRequest):
    """``check``: type-check these files, change nothing."""


@_request("plan")
@attrs.frozen
class PlanRequest(_FilesRequest):
    """``plan``: what a submit of these files would change, per host."""


@_request("perms")
@attrs.frozen
class PermsRequest(_Request):
    """``perms``: the member's own grants."""


@_request("whoami")
@attrs.frozen
class WhoamiRequest(_Request):
    """``whoami``: who the certificate says the member is."""


@_request("describe")
@attrs.frozen
class DescribeRequest(_Request):
    """``describe``: what the hosts serve for one of the member's domains."""

    domain: str


@_request("history")
@attrs.frozen
class HistoryRequest(_Request):
    """``history``: the member's versions of a domain's file."""

    domain: str


@_request("undo")
@attrs.frozen
class UndoRequest(_Request):
    """``undo``: restore an accepted ``version`` of a domain's file."""

    domain: str
    version: int


@_request("rmdom")
@attrs.frozen
class RmdomRequest(_Request):
    """``rmdom``: remove the member's units under a domain."""

    domain: str


@_request("vmail")
@attrs.frozen
class VmailRequest(_Request):
    """``vmail``: a virtual mailbox action (``add``, ``passwd``, ``rm``, ``list``)."""

    action: str
    domain: str | None = None
    user: str | None = None
    hash: str | None = attrs.field(default=None, repr=False)
    mail_user: str | None = None
    purge: bool | None = None
    doit: bool | None = None


@_request("list_rm")
@attrs.frozen
class ListRmRequest(_Request):
    """``list_rm``: remove a mailing list (a dry run unless ``doit``)."""

    list: str
    doit: bool | None = None


@_request("db_create")
@attrs.frozen
class DbCreateRequest(_Request):
    """``db_create``: a database of ``kind`` named ``name``."""

    kind: str
    name: str


@_request("db_drop")
@attrs.frozen
class DbDropRequest(_Request):
    """``db_drop``: drop a database (a dry run unless ``apply``)."""

    kind: str
    name: str
    apply: bool | None = None


@_request("db_list")
@attrs.frozen
class DbListRequest(_Request):
    """``db_list``: the member's databases and roles."""


@_request("db_passwd")
@attrs.frozen
class DbPasswdRequest(_Request):
    """``db_passwd``: set a role's password."""

    kind: str
    role: str
    password: str = attrs.field(repr=False)


@_request("db_grant")
@attrs.frozen
class DbGrantRequest(_Request):
    """``db_grant``: give a role the use of a database."""

    kind: str
    database: str
    role: str


@_request("policy")
@attrs.frozen
class PolicyRequest(_Request):
    """``policy``: the member's own admin-set policy."""


@_request("usage")
@attrs.frozen
class UsageRequest(_Request):
    """``usage``: what the member uses on each host."""


@_request("adduser")
@attrs.frozen
class AddUserRequest(_Request):
    """``adduser``: a new member (an administrator with ``admin``)."""

    user: str
    admin: bool | None = None


@_request("rmuser")
@attrs.frozen
class RmUserRequest(_Request):
    """``rmuser``: remove a member (a dry run unless ``apply``)."""

    user: str
    apply: bool | None = None


@_request("grant")
@attrs.frozen
class GrantRequest(_Request):
    """``grant``: give ``user`` a grant (``shared``: overlapping another's, on purpose)."""

    user: str
    grant_class: str = _grant_class()
    value: str = attrs.field()
    shared: bool | None = None


@_request("revoke")
@attrs.frozen
class RevokeRequest(_Request):
    """``revoke``: take a grant back."""

    user: str
    grant_class: str = _grant_class()
    value: str = attrs.field()


@_request("perms_of")
@attrs.frozen
class PermsOfRequest(_Request):
    """``perms_of``: a member's grants."""

    user: str


@_request("whohas")
@attrs.frozen
class WhohasRequest(_Request):
    """``whohas``: the members holding a grant."""

    grant_class: str = _grant_class()
    value: str = attrs.field()


@_request("regen")
@attrs.frozen
class RegenRequest(_Request):
    """``regen``: replay every member's files (a dry run unless ``apply``)."""

    apply: bool | None = None


@_request("admin_rmdom")
@attrs.frozen
class AdminRmdomRequest(_Request):
    """``admin_rmdom``: remove every member's units under a domain (dry run unless ``apply``)."""

    domain: str
    apply: bool | None = None


@_request("hosts")
@attrs.frozen
class HostsRequest(_Request):
    """``hosts``: the site's hosts and what the dispatcher knows of each."""


@_request("ping")
@attrs.frozen
class PingRequest(_Request):
    """``ping``: ask each host (or ``host``) for its status."""

    host: str | None = None


@_request("admin_describe")
@attrs.frozen
class AdminDescribeRequest(_Request):
    """``admin_describe``: what the hosts serve for any domain."""

    domain: str


@_request("audit")
@attrs.frozen
class AuditRequest(_Request):
    """``audit``: the newest audit lines (of ``user``; at most ``limit``, None: 100)."""

    user: str | None = None
    limit: int | None = None


@_request("quota")
@attrs.frozen
class QuotaRequest(_Request):
    """``quota``: a member's limits."""

    user: str


@_request("set_quota")
@attrs.frozen
class SetQuotaRequest(_Request):
    """``set_quota``: set one of a member's limits."""

    user: str
    resource: str
    value: int


@_request("put_grants")
@attrs.frozen
class PutGrantsRequest(_Request):
    """``put_grants``: an admin-signed grant record (its JSON form, checked by
    ``domtool.grantsig`` in the op: the signature covers those bytes)."""

    signed: Mapping[str, Any]


@_request("policy_show")
@attrs.frozen
class PolicyShowRequest(_Request):
    """``policy_show``: the admin-set policy of ``user`` (None: every member)."""

    user: str | None = None


@_request("policy_check")
@attrs.frozen
class PolicyCheckRequest(_Request):
    """``policy_check``: whether the hosts hold ``user``'s (None: everyone's) policy."""

    user: str | None = None


@_request("usage_of")
@attrs.frozen
class UsageOfRequest(_Request):
    """``usage_of``: what ``user`` (None: every member) uses."""

    user: str | None = None


@_request("policy_set")
@attrs.frozen
class PolicySetRequest(_Request):
    """``policy_set``: one edit of a member's (or with ``site``, the site's) policy."""

    part: str
    action: str
    user: str | None = None
    site: bool | None = None
    value: str | None = None
    dry_run: bool | None = None


def read_request(op: Any, obj: Any, *, admin: bool = True) -> Any:
    """The typed request of ``op`` from its JSON arguments: checked against the op's
    schema (:class:`SchemaError` with every problem), then built. Without ``admin``,
    only a member op is read."""
    return REQUESTS[validate_args(op, obj, admin=admin).kind].from_json(obj)


def request_of(request: Any) -> tuple[str, dict[str, Any]]:
    """A request object's op and JSON arguments (what a client sends)."""
    if not isinstance(request, _Request):
        raise TypeError(f"not a protocol request: {type(request).__name__}")
    return request.OP, request.to_json()


# ---------------------------------------------------------------------------
# What the dispatcher answers.


@attrs.frozen
class DryRun:
    """A destructive admin op's dry run (``regen``, ``admin_rmdom``, ``rmuser`` without
    ``apply``): what it would do. ``plan`` is per host (host -> diff) or, with
    ``per_member``, per member then per host; ``dropped`` lists the member files a regen
    would drop (``{member, domain, reasons}``)."""

    message: str
    plan: Mapping[str, Any]
    per_member: bool = False
    dropped: tuple[Mapping[str, Any], ...] | None = None

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The answer (``apply: false``), with the op's own ``extra`` fields."""
        out: dict[str, Any] = {"apply": False, "plan": dict(self.plan), "message": self.message}
        out["per_member"] = self.per_member
        if self.dropped is not None:
            out["dropped"] = [dict(d) for d in self.dropped]
        return {**extra, **out}

    @staticmethod
    def is_one(obj: Any) -> bool:
        """Whether an answer is a dry run's."""
        return isinstance(obj, dict) and obj.get("apply") is False

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DryRun:
        return cls(
            str(obj.get("message") or ""),
            dict(obj.get("plan") or {}),
            bool(obj.get("per_member", False)),
            None if obj.get("dropped") is None else tuple(obj["dropped"]),
        )


# ---------------------------------------------------------------------------
# What the dispatcher answers members and admins, as the CLIs read it. Every field is
# optional in the decoder (None when absent), so a client reads an older dispatcher's
# answer too; ``read`` gives None for what is not the answer at all (the CLI prints it as
# it came). The ops write these classes with ``to_json`` (the same JSON as before).

_texts_out = List(Str(1 << 20), 1 << 16)
_host_name = Str(MAX_NAME)
_free = Free(1 << 20, 1 << 20)


@attrs.frozen
class OneOf:
    """The first of ``options`` a value matches (a grant as ``{class, value}`` or as the
    older ``[class, value]``); the problems of the last if none does."""

    options: tuple[Any, ...]

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        last: Problems = []
        for option in self.options:
            last = []
            option.check(value, path, last, depth)
            if not last:
                return
        problems.extend(last)


class _Reply(_Answer):
    """A dispatcher's answer to a member or admin: ``SCHEMA`` has only optional fields."""


@attrs.frozen
class HostReport(_Reply):
    """One host's part of a change's answer (:class:`HostResult` as the client reads it)."""

    generation: int | None = _always()
    status: str | None = None
    verified: tuple[Any, ...] | None = None
    message: str | None = None

    SCHEMA = Obj(
        {},
        {
            "generation": Nullable(Int(0, 2**63 - 1)),
            "status": Str(64),
            "verified": List(_free, MAX_UNITS),
            "message": Str(1 << 20),
        },
    )


@attrs.frozen
class ChangeAnswer(_Reply):
    """The answer to a change (``submit``, ``undo``, ``rmdom``, an applied ``regen``,
    ``rmuser``, ``admin_rmdom`` or ``policy_set``, and a ``policy_set`` dry run): applied
    or not, each host's report, the reasons, the type errors, the plan (host -> diff, or
    member -> host -> diff), the message; then what the op adds (the stored
    ``versions``, the ``dropped`` files, the ``domain``, the ``user`` and the grants it
    ``revoked``, the per-member answers of an ``admin_rmdom``, the policy ``record``)."""

    applied: bool | None = None
    hosts: Mapping[str, HostReport] | None = _values(HostReport)
    refused: tuple[str, ...] | None = None
    diagnostics: tuple[str, ...] | None = None
    plan: Mapping[str, Any] | None = None
    message: str | None = None
    versions: Mapping[str, int] | None = None
    dropped: tuple[Any, ...] | None = None
    domain: str | None = None
    user: str | None = None
    apply: bool | None = None
    revoked: tuple[Any, ...] | None = None
    members: Mapping[str, Any] | None = None
    record: Mapping[str, Any] | None = None

    SCHEMA = Obj(
        {},
        {
            "applied": Bool(),
            "hosts": Map(_host_name, HostReport.SCHEMA, MAX_NODES),
            "refused": _texts_out,
            "diagnostics": _texts_out,
            "plan": Map(Str(MAX_NAME), _free, MAX_OWNERS),
            "message": Str(1 << 20),
            "versions": Map(Str(MAX_NAME), Int(0, 2**63 - 1), MAX_FILES),
            "dropped": List(_free, MAX_OWNERS * MAX_FILES),
            "domain": Str(MAX_NAME),
            "user": Str(32),
            "apply": Bool(),
            "revoked": List(_free, MAX_GRANTS),
            "members": Map(Str(32), _free, MAX_OWNERS),
            "record": Map(Str(64), _free, 64),
        },
    )

    #: The fields every change answer has (what a CLI prints in its own way).
    SHOWN = frozenset({"hosts", "message", "applied", "refused", "diagnostics", "plan", "versions"})


@attrs.frozen
class HostDiff(_Reply):
    """A plan's diff on one host: the unit keys added, changed and removed
    (``dispatcher/plan.py``'s ``Diff``)."""

    added: tuple[str, ...] | None = None
    changed: tuple[str, ...] | None = None
    removed: tuple[str, ...] | None = None

    SCHEMA = Obj(
        {},
        {
            "added": List(Str(MAX_TEXT), MAX_UNITS * 8),
            "changed": List(Str(MAX_TEXT), MAX_UNITS * 8),
            "removed": List(Str(MAX_TEXT), MAX_UNITS * 8),
        },
    )

    def keys(self) -> list[str]:
        """Every unit key it names, added then changed then removed."""
        return [*(self.added or ()), *(self.changed or ()), *(self.removed or ())]


@attrs.frozen
class DroppedFile(_Reply):
    """A member's stored file a regen drops (or would): the member, the domain, why."""

    member: str | None = None
    domain: str | None = None
    reasons: tuple[str, ...] | None = None

    SCHEMA = Obj({}, {"member": Str(32), "domain": Str(MAX_NAME), "reasons": _texts_out})


@attrs.frozen
class PlanAnswer(_Reply):
    """``plan``'s answer: whether the files would be accepted, the type errors, the
    refusals, per host the diff, and the stored files that would be dropped."""

    ok: bool | None = None
    diagnostics: tuple[str, ...] | None = None
    refused: tuple[str, ...] | None = None
    hosts: Mapping[str, Any] | None = None
    dropped: tuple[Any, ...] | None = None

    SCHEMA = Obj(
        {},
        {
            "ok": Bool(),
            "diagnostics": _texts_out,
            "refused": _texts_out,
            "hosts": Map(_host_name, _free, MAX_NODES),
            "dropped": List(_free, MAX_FILES),
        },
    )


@attrs.frozen
class CheckAnswer(_Reply):
    """``check``'s answer: whether the files check, the type errors, the state."""

    ok: bool | None = None
    diagnostics: tuple[str, ...] | None = None
    state: Any = _always()

    SCHEMA = Obj({}, {"ok": Bool(), "diagnostics": _texts_out, "state": Nullable(_free)})


_grant_item = OneOf(
    (Obj({"class": GRANT_CLASS, "value": GRANT_VALUE}), Tuple((GRANT_CLASS, GRANT_VALUE)))
)


@attrs.frozen
class PermsAnswer(_Reply):
    """``perms`` and ``perms_of``: the member, their grants (``{class, value}``), and the
    grants by class (``perms``: domains, paths, users, groups)."""

    user: str | None = None
    grants: tuple[Any, ...] | None = None
    perms: Mapping[str, Any] | None = None

    SCHEMA = Obj(
        {},
        {
            "user": Str(32),
            "grants": List(_grant_item, MAX_GRANTS),
            "perms": Map(Str(16), List(GRANT_VALUE, MAX_GRANTS), 8),
        },
    )

    def pairs(self) -> list[tuple[str, str]]:
        """The grants as (class, value), whichever of the two forms they came in."""
        return [
            (g["class"], g["value"]) if isinstance(g, Mapping) else (g[0], g[1])
            for g in self.grants or ()
        ]

    def by_class(self) -> list[tuple[str, str]]:
        """The grants from ``perms`` (domains, paths, users, groups) as (class, value)."""
        source = self.perms or {}
        return [
            (c, v)
            for c in ("domain", "path", "user", "group")
            for v in source.get(c + "s", source.get(c)) or ()
        ]


@attrs.frozen
class Version(_Reply):
    """One stored version of a domain's file (``history``): its number, who sent it and
    when, whether it was accepted or is a removal, and its text (the newest only)."""

    version: int | None = None
    member: str | None = None
    submitted_at: str | None = None
    accepted: bool | None = None
    removed: bool | None = None
    text: str | None = None

    SCHEMA = Obj(
        {},
        {
            "version": Int(0, 2**31 - 1),
            "member": Str(32),
            "submitted_at": Str(64),
            "accepted": Bool(),
            "removed": Bool(),
            "text": Str(MAX_FILE_BYTES),
        },
    )


@attrs.frozen
class HistoryAnswer(_Reply):
    """``history``'s answer: the domain and its versions, oldest first."""

    domain: str | None = None
    versions: tuple[Version, ...] | None = _items(Version, None)

    SCHEMA = Obj({}, {"domain": Str(MAX_NAME), "versions": List(Version.SCHEMA, 1 << 20)})


@attrs.frozen
class HostError(_Reply):
    """A host that could not answer, in an answer listing hosts: why."""

    error: str

    SCHEMA = Obj({"error": Str(1 << 20)})


@attrs.frozen
class DescribeResult(_Reply):
    """``describe`` and ``admin_describe``: per host, its :class:`DescribeAnswer` (read
    by :meth:`DescribeAnswer.read`) or a :class:`HostError`."""

    domain: str | None = None
    hosts: Mapping[str, Any] | None = None

    SCHEMA = Obj({}, {"domain": Str(MAX_NAME), "hosts": Map(_host_name, _free, MAX_NODES)})


@attrs.frozen
class HostStatus(_Reply):
    """``hosts`` and ``ping``: what the dispatcher knows of one host (whether it answered,
    its live and recorded generation, whether a change is converging there and when it is
    retried, the last error, the message) and, for ``hosts``, its roles."""

    reachable: bool | None = None
    generation: int | None = _always()
    recorded_generation: int | None = _always()
    recorded_status: str | None = _always()
    pending: bool | None = None
    last_error: str | None = _always()
    next_retry_in: float | None = _always()
    message: str | None = None
    roles: tuple[str, ...] | None = None

    SCHEMA = Obj(
        {},
        {
            "reachable": Bool(),
            "generation": Nullable(Int(0, 2**63 - 1)),
            "recorded_generation": Nullable(Int(0, 2**63 - 1)),
            "recorded_status": Nullable(Str(64)),
            "pending": Bool(),
            "last_error": Nullable(Str(1 << 20)),
            "next_retry_in": Free(64, 0),
            "message": Str(1 << 20),
            "roles": List(Str(64), 64),
        },
    )


@attrs.frozen
class HostsAnswer(_Reply):
    """``hosts`` and ``ping``: host -> :class:`HostStatus`."""

    hosts: Mapping[str, HostStatus] | None = _values(HostStatus)

    SCHEMA = Obj({}, {"hosts": Map(_host_name, HostStatus.SCHEMA, 1 << 16)})


@attrs.frozen
class AuditEntry(_Reply):
    """One audit line: when, who, what, its detail and outcome."""

    time: str | None = None
    who: str | None = None
    action: str | None = None
    detail: Any = None
    outcome: str | None = None

    SCHEMA = Obj(
        {},
        {
            "time": Str(64),
            "who": Str(64),
            "action": Str(64),
            "detail": _free,
            "outcome": Str(64),
        },
    )


@attrs.frozen
class AuditAnswer(_Reply):
    """``audit``'s answer: the entries, newest first."""

    entries: tuple[AuditEntry, ...] | None = _items(AuditEntry, None)

    SCHEMA = Obj({}, {"entries": List(AuditEntry.SCHEMA, 10_000)})


@attrs.frozen
class AddUserAnswer(_Reply):
    """``adduser``'s answer: the member, whether an admin, their certificate's serial,
    certificate and key (PEM)."""

    user: str | None = None
    admin: bool | None = None
    serial: str | None = None
    cert_pem: str | None = attrs.field(default=None, repr=False)
    key_pem: str | None = attrs.field(default=None, repr=False)

    SCHEMA = Obj(
        {},
        {
            "user": Str(32),
            "admin": Bool(),
            "serial": Str(64),
            "cert_pem": Str(1 << 16),
            "key_pem": Str(1 << 16),
        },
    )


@attrs.frozen
class PutGrantsAnswer(_Reply):
    """``put_grants``'s answer: the member, the kept record's serial, its key's name."""

    user: str | None = None
    serial: int | None = None
    key: str | None = None

    SCHEMA = Obj({}, {"user": Str(32), "serial": Int(0, 2**63 - 1), "key": Str(64)})


@attrs.frozen
class MemberPolicyOf(_Reply):
    """``policy_show``: one member's admin-set policy: the stored record, the effective
    unit (model JSON), its lines, and per host the unit the dispatcher recorded there."""

    record: Mapping[str, Any] | None = None
    effective: Any = _always()
    lines: tuple[str, ...] | None = None
    hosts: Mapping[str, Any] | None = None

    SCHEMA = Obj(
        {},
        {
            "record": Map(Str(64), _free, 64),
            "effective": Nullable(_free),
            "lines": _texts_out,
            "hosts": Map(_host_name, _free, MAX_NODES),
        },
    )


@attrs.frozen
class PolicyShowAnswer(_Reply):
    """``policy_show``'s answer: the site's defaults (its record) and each member's."""

    site: Mapping[str, Any] | None = None
    members: Mapping[str, MemberPolicyOf] | None = _values(MemberPolicyOf)

    SCHEMA = Obj(
        {},
        {"site": Map(Str(64), _free, 64), "members": Map(Str(32), MemberPolicyOf.SCHEMA, 1 << 16)},
    )


@attrs.frozen
class PolicyCheckOf(_Reply):
    """``policy_check``: one member's stored policy's problems, and the hosts that hold
    another."""

    problems: tuple[str, ...] | None = None
    out_of_sync: tuple[str, ...] | None = None

    SCHEMA = Obj({}, {"problems": _texts_out, "out_of_sync": List(_host_name, 1 << 16)})


@attrs.frozen
class PolicyCheckAnswer(_Reply):
    """``policy_check``'s answer: whether all is well, and per member."""

    ok: bool | None = None
    members: Mapping[str, PolicyCheckOf] | None = _values(PolicyCheckOf)

    SCHEMA = Obj({}, {"ok": Bool(), "members": Map(Str(32), PolicyCheckOf.SCHEMA, 1 << 16)})


@attrs.frozen
class HeldPolicy(_Reply):
    """``policy``: what one host holds of the member's policy: its lines, whether the
    kernel holds it (True, why not, or None: not asked), and where the lines come from
    (``host``, or the dispatcher's record when the host did not answer)."""

    lines: tuple[str, ...] | None = None
    live: Any = _always()
    source: str | None = attrs.field(default=None, metadata={"wire": "from"})

    SCHEMA = Obj({}, {"lines": _texts_out, "live": Free(MAX_TEXT, 0), "from": Str(MAX_TEXT)})


@attrs.frozen
class MemberPolicyAnswer(_Reply):
    """``policy``'s answer (a member's own): their lines, per host what it holds, the
    effective unit and the whole unit each host holds (model JSON)."""

    member: str | None = None
    lines: tuple[str, ...] | None = None
    hosts: Mapping[str, HeldPolicy] | None = _values(HeldPolicy)
    effective: Any = _always()
    held: Mapping[str, Any] | None = None

    SCHEMA = Obj(
        {},
        {
            "member": Str(32),
            "lines": _texts_out,
            "hosts": Map(_host_name, HeldPolicy.SCHEMA, MAX_NODES),
            "effective": Nullable(_free),
            "held": Map(_host_name, _free, MAX_NODES),
        },
    )


@attrs.frozen
class UsageReport(_Reply):
    """``usage`` and ``usage_of``: per member, per host, the figures (or ``error``)."""

    members: Mapping[str, Any] | None = None

    SCHEMA = Obj({}, {"members": Map(Str(32), Map(_host_name, _free, MAX_NODES), 1 << 16)})


@attrs.frozen
class VmailResult(_Reply):
    """The dispatcher's ``vmail`` answer: the member's ``mailboxes`` (``list``, each with
    its hosts), a dry run (``dry_run``, what it ``would`` do, the hosts), or what was done
    (``address``, ``action``, per host the slave's :class:`VmailAnswer`)."""

    mailboxes: tuple[Mailbox, ...] | None = _items(Mailbox, None)
    dry_run: bool | None = None
    would: str | None = None
    address: str | None = None
    action: str | None = None
    hosts: Any = None

    SCHEMA = Obj(
        {},
        {
            "mailboxes": List(Mailbox.SCHEMA, MAX_UNITS),
            "dry_run": Bool(),
            "would": Str(MAX_TEXT),
            "address": _address,
            "action": Str(8),
            "hosts": OneOf((List(_host_name, MAX_NODES), Map(_host_name, _free, MAX_NODES))),
        },
    )


@attrs.frozen
class ListRmAnswer(_Reply):
    """``list_rm``'s answer: the list, whether a real run, whether some host removed it,
    and per host its :class:`ListRemoveAnswer` or a :class:`HostError`."""

    list: str | None = None
    doit: bool | None = None
    removed: bool | None = None
    hosts: Mapping[str, Any] | None = None

    SCHEMA = Obj(
        {},
        {
            "list": Str(320),
            "doit": Bool(),
            "removed": Bool(),
            "hosts": Map(_host_name, _free, MAX_NODES),
        },
    )


@attrs.frozen
class DbEndpoint(_Reply):
    """What a member connects to on a database server: the socket directory (peer
    authentication; ``socket`` in older answers) and host and port (password)."""

    socket_dir: str | None = None
    socket: str | None = None
    host: str | None = None
    port: int | None = None

    SCHEMA = Obj(
        {},
        {
            "socket_dir": Nullable(Str(MAX_PATH)),
            "socket": Nullable(Str(MAX_PATH)),
            "host": Nullable(Str(MAX_NAME)),
            "port": Nullable(Int(0, 65535)),
        },
    )


@attrs.frozen
class DbQuota(_Reply):
    """How many databases the member has (``used``) and may have (``limit``)."""

    used: int | None = None
    limit: int | None = None

    SCHEMA = Obj({}, {"used": Int(0, 2**31 - 1), "limit": Int(0, 2**53)})


@attrs.frozen
class DbReply(_Reply):
    """The dispatcher's answer to a ``db_*`` op: the slave's (:class:`DbCreateAnswer`,
    :class:`DbDropAnswer`, :class:`DbPasswdAnswer`, :class:`DbGrantAnswer`,
    :class:`DbListAnswer`) as the member reads it, with what the dispatcher adds (the
    database ``host``, the ``quota`` used and its limit, whether a drop was ``apply``,
    its ``message``)."""

    kind: str | None = None
    name: str | None = None
    owner: str | None = None
    role: str | None = None
    database: str | None = None
    changed: bool | None = None
    created: bool | None = None
    role_created: bool | None = None
    size: int | None = None
    message: str | None = None
    endpoint: Mapping[str, Any] | None = None
    host: str | None = None
    kinds: tuple[str, ...] | None = None
    databases: tuple[DbInfo, ...] | None = _items(DbInfo, None)
    roles: Mapping[str, Any] | None = None
    errors: Mapping[str, str] | None = None
    endpoints: Mapping[str, Any] | None = None
    quota: DbQuota | None = attrs.field(default=None, metadata={"object": DbQuota})
    apply: bool | None = None

    SCHEMA = Obj(
        {},
        {
            **DbCreateAnswer.SCHEMA.required,
            **DbDropAnswer.SCHEMA.required,
            **DbPasswdAnswer.SCHEMA.required,
            **DbGrantAnswer.SCHEMA.required,
            **DbListAnswer.SCHEMA.required,
            "quota": DbQuota.SCHEMA,
            "apply": Bool(),
        },
    )
