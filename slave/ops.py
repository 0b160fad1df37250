"""The slave's operations on the wire: their argument schemas, and the local re-check.

Two layers, both run before the agent (``domtool.slave.agent``) decides anything:

1. :func:`parse` checks an op's ``args`` object against a closed schema with size limits
   (every string's UTF-8 length, every list's item count, every integer's range, no
   unknown fields, nothing deeper than the model allows) and only then builds typed values:
   :class:`PrepareArgs` (per owner, a :class:`domtool.model.DesiredState` and the owner's
   :class:`Grants`), :class:`TxArgs`, :class:`DescribeArgs`, :class:`StatusArgs`. Every
   problem is reported at once (:class:`BadArgs`, each with its JSON path).
2. :func:`recheck` is the slave's own check of one owner's part, with what only this
   host knows: every zone, vhost and mail domain names the owner it came under; names pass
   ``domtool.validate``; a vhost runs as a user and group the owner was granted, never
   ``root``, anything that is uid/gid 0 here, nor a system account (id below 1000);
   every member path (document root, alias and script alias targets, directory blocks,
   TLS files, the htpasswd file) really lies under one of the owner's granted paths once
   symlinks are resolved on THIS host (``slave.pathcheck.check_member_path``); a mail
   domain's alias sources, targets and spam settings pass ``slave.mailcheck`` (a bare user
   name target must be one of the owner's users). Each refusal names the owner and the
   field.

The ops (``domtool.wire.SLAVE_OPS``)::

    list_remove {owner, list, doit?: bool}   (remove a mailing list; dry run unless doit)
    policy_held {owner}   (the owner's admin-set policy here, and whether the kernel holds it)
    usage    {owner?}   (what a member uses here: domtool.slave.usage)
    prepare  {txid, changes: {OWNER: {state: <model JSON of a DesiredState>,
                                      grants: {paths: [...], users: [...], groups: [...]},
                                      signed_grants?: {record, signature, key}}},
              complete?: bool}   (complete: changes names every owner of this host;
                                  signed_grants: domtool.grantsig, see slave/verified.py)
    commit   {txid}
    abort    {txid}
    status   {}
    describe {domain}
    vmail    {action: add|passwd|rm|list, owner, domain?, user?, hash?, mail_user?, purge?,
              grants?: {users}}   (domtool.slave.vmail)
    db_create, db_drop, db_list, db_passwd, db_grant   (domtool.slave.dbargs)
    tls_update {crl_pem, cert_pem?, key_pem?}   (renewed TLS files: slave/tlsupdate.py,
                                                 answered by the listener, not the agent)
"""

from __future__ import annotations

import grp
import pwd
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from domtool import model, validate
from domtool.model import DesiredState
from domtool.policies import member_policy
from domtool.slave.mailcheck import recheck_mail
from domtool.slave.pathcheck import PathRefused, check_member_path
from domtool.states import member_paths
from domtool.validate import Invalid

__all__ = [
    "BadArgs",
    "DescribeArgs",
    "Grants",
    "OwnerChange",
    "PrepareArgs",
    "StatusArgs",
    "TxArgs",
    "parse",
    "recheck",
    "OP_SCHEMAS",
]

# ---------------------------------------------------------------------------
# Limits

MAX_OWNERS = 10_000  # members touched by one prepare (a whole-site regen)
MAX_UNITS = 20_000  # zones, vhosts or mail domains of one member on one host
MAX_RECORDS = 100_000  # records of one zone
MAX_NODES = 64
MAX_NAME = 253
MAX_PATH = 4096
MAX_TEXT = 4096
MAX_SMALL_LIST = 256
MAX_GRANTS = 10_000
# object > list > object > ... : DesiredState > vhosts > Vhost > blocks > Block > WebSettings
# > rewrites > Rewrite > conditions > (test, pattern, flags) > flag, under args > changes > owner.
MAX_DEPTH = 16

TXID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# A loose shape check only; the real grammar is domtool.validate's, in recheck.
NAME = re.compile(r"[A-Za-z0-9*_.-]{1,253}")
LIST_ADDRESS = re.compile(r"[A-Za-z0-9._-]{1,64}@[A-Za-z0-9.-]{1,253}")
RECORD_NAME = re.compile(r"@|[A-Za-z0-9*_.-]{1,253}")


class BadArgs(ValueError):
    """The arguments do not match the op's schema; ``problems`` lists every (path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        shown = "; ".join(f"{p}: {m}" if p else m for p, m in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(shown + more)

    @property
    def details(self) -> tuple[str, ...]:
        """Every problem as ``path: message``."""
        return tuple(f"{p}: {m}" if p else m for p, m in self.problems)


# ---------------------------------------------------------------------------
# Schema nodes: a closed, declarative description of the JSON each op accepts.

Problems = list[tuple[str, str]]


def _json_type(value: Any) -> str:
    for name, t in (("bool", bool), ("int", int), ("str", str), ("list", list), ("object", dict)):
        if isinstance(value, t):
            return name
    return "null" if value is None else type(value).__name__


@attrs.frozen
class Str:
    """A string of at most ``max_bytes`` UTF-8 bytes, optionally matching ``pattern`` fully
    or one of ``allowed``."""

    max_bytes: int
    pattern: re.Pattern | None = None
    allowed: frozenset[str] | None = None

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, str):
            problems.append((path, f"expected a string, got {_json_type(value)}"))
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
            problems.append((path, "not a valid value here"))


@attrs.frozen
class Int:
    """An integer (never a JSON boolean) in [minimum, maximum]."""

    minimum: int
    maximum: int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append((path, f"expected an integer, got {_json_type(value)}"))
        elif not self.minimum <= value <= self.maximum:
            problems.append((path, f"must be between {self.minimum} and {self.maximum}"))


@attrs.frozen
class Bool:
    """A JSON boolean."""

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, bool):
            problems.append((path, f"expected a boolean, got {_json_type(value)}"))


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
            problems.append((path, f"expected a string or an integer, got {_json_type(value)}"))


def _nest(path: str, depth: int, problems: Problems) -> bool:
    if depth >= MAX_DEPTH:
        problems.append((path, f"nested deeper than {MAX_DEPTH}"))
        return False
    return True


@attrs.frozen
class List:
    """A list of at most ``max_items`` items, each matching ``items``."""

    items: Any
    max_items: int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, list):
            problems.append((path, f"expected a list, got {_json_type(value)}"))
            return
        if len(value) > self.max_items:
            problems.append((path, f"too many items: {len(value)}, at most {self.max_items}"))
            return
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
            problems.append((path, f"expected an object, got {_json_type(value)}"))
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


@attrs.frozen
class Map:
    """An object used as a map: at most ``max_items`` keys matching ``key``, values ``value``."""

    key: Str
    value: Any
    max_items: int

    def check(self, value: Any, path: str, problems: Problems, depth: int) -> None:
        if not isinstance(value, dict):
            problems.append((path, f"expected an object, got {_json_type(value)}"))
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


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---------------------------------------------------------------------------
# The model's JSON form (domtool.model.to_json), field by field.

_name = Str(MAX_NAME, NAME)
_owner = Str(32, UNIX_NAME)
_path = Str(MAX_PATH)
_text = Str(MAX_TEXT)
_names = List(_name, MAX_SMALL_LIST)
_texts = List(_text, MAX_SMALL_LIST)
_nodes = List(_name, MAX_NODES)
_u32 = Int(0, 2**32 - 1)
_port = Int(0, 65535)
_status = Int(100, 999)

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
ALIAS = Obj(
    {"source": List(_text, 2), "targets": _texts},
    kind="Alias",
)
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
# Admin-set member policy (domtool.policies.member_policy): the limits part adds its
# own entry to POLICY's optional fields.
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
_u63 = Int(1, 2**63 - 1)
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
TXID_FIELD = Str(64, TXID)

# The arguments of every op. Closed table: its keys are exactly domtool.wire.SLAVE_OPS.
OP_SCHEMAS: dict[str, Obj] = {
    "prepare": Obj(
        {
            "txid": TXID_FIELD,
            "changes": Map(
                Str(32, UNIX_NAME),
                Obj({"state": STATE}, {"grants": GRANTS, "signed_grants": SIGNED_GRANTS}),
                MAX_OWNERS,
            ),
        },
        {"complete": Bool()},
    ),
    "commit": Obj({"txid": TXID_FIELD}),
    "abort": Obj({"txid": TXID_FIELD}),
    "status": Obj({}),
    "describe": Obj({"domain": _name}),
    "list_remove": Obj({"owner": _owner, "list": Str(320, LIST_ADDRESS)}, {"doit": Bool()}),
    # The owner's admin-set policy as this host holds it, and whether it is live.
    "policy_held": Obj({"owner": _owner}),
    # what members use on this host (domtool.slave.usage); no owner: every owner here
    "usage": Obj({}, {"owner": _owner}),
    # Renewed TLS files from the dispatcher (slave/tlsupdate.py checks and installs them).
    "tls_update": Obj({"crl_pem": Str(1 << 20)}, {"cert_pem": Str(16384), "key_pem": Str(16384)}),
    # Virtual mailboxes (domtool.slave.vmail): a typed action, not a config unit.
    "vmail": Obj(
        {"action": Str(8, allowed=frozenset({"add", "passwd", "rm", "list"})), "owner": _owner},
        {
            "domain": _name,
            "user": Str(64, re.compile(r"[A-Za-z0-9._+-]{1,64}")),
            "hash": Str(128, re.compile(r"\$6\$[A-Za-z0-9./$=]{1,120}")),
            "mail_user": _owner,
            "purge": Bool(),
            "grants": Obj({}, {"users": List(_owner, MAX_GRANTS)}),
        },
    ),
}


# ---------------------------------------------------------------------------
# Typed arguments


@attrs.frozen
class Grants:
    """What the dispatcher says an owner may use on this host: paths, Unix users, groups."""

    paths: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@attrs.frozen
class OwnerChange:
    """One member's COMPLETE desired state on this host, and their grants (as the
    dispatcher says, and as an administrator signed them when relayed)."""

    state: DesiredState
    grants: Grants
    signed: Any = None  # domtool.grantsig.SignedGrants | None


@attrs.frozen
class PrepareArgs:
    """``prepare``: stage these owners' new parts under transaction ``txid``. With
    ``complete``, ``changes`` names every owner of this host and any other owner's part is
    removed (a whole-host convergence)."""

    txid: str
    changes: Mapping[str, OwnerChange]
    complete: bool = False


@attrs.frozen
class TxArgs:
    """``commit`` / ``abort`` of transaction ``txid``."""

    txid: str


@attrs.frozen
class StatusArgs:
    """``status``: no arguments."""


@attrs.frozen
class ListRemoveArgs:
    """``list_remove``: remove ``owner``'s mailing list ``list`` (a dry run unless ``doit``)."""

    owner: str
    list: str
    doit: bool = False


@attrs.frozen
class PolicyHeldArgs:
    """``policy_held``: ``owner``'s admin-set policy as this host holds it."""

    owner: str


@attrs.frozen
class UsageArgs:
    """``usage``: what ``owner`` (None: every owner of this host) uses here."""

    owner: str | None = None


@attrs.frozen
class DescribeArgs:
    """``describe``: what this host serves for ``domain``."""

    domain: str


@attrs.frozen
class TlsUpdateArgs:
    """``tls_update``: the host CRL, and this host's certificate and key when renewed."""

    crl_pem: str
    cert_pem: str | None = None
    key_pem: str | None = None


def _tls_update(args: dict) -> TlsUpdateArgs:
    if ("cert_pem" in args) != ("key_pem" in args):
        raise BadArgs([("", "cert_pem and key_pem go together")])
    return TlsUpdateArgs(args["crl_pem"], args.get("cert_pem"), args.get("key_pem"))


def _prepare(args: dict) -> PrepareArgs:
    changes: dict[str, OwnerChange] = {}
    problems: Problems = []
    for owner, change in sorted(args["changes"].items()):
        try:
            state = model.from_json(change["state"])
        except (TypeError, ValueError) as e:
            problems.append((f"changes.{owner}.state", str(e)[:200]))
            continue
        g = change.get("grants", {})
        grants = Grants(
            tuple(g.get("paths", ())), tuple(g.get("users", ())), tuple(g.get("groups", ()))
        )
        signed = None
        if "signed_grants" in change:
            from domtool import grantsig

            try:
                signed = grantsig.SignedGrants.from_json(change["signed_grants"])
            except grantsig.GrantSigError as e:
                problems.append((f"changes.{owner}.signed_grants", str(e)[:200]))
                continue
        changes[owner] = OwnerChange(state.normalised(), grants, signed)
    if problems:
        raise BadArgs(problems)
    return PrepareArgs(args["txid"], changes, bool(args.get("complete", False)))


_BUILDERS: dict[str, Callable[[dict], Any]] = {
    "prepare": _prepare,
    "commit": lambda a: TxArgs(a["txid"]),
    "abort": lambda a: TxArgs(a["txid"]),
    "status": lambda a: StatusArgs(),
    "describe": lambda a: DescribeArgs(a["domain"].lower()),
    "list_remove": lambda a: ListRemoveArgs(a["owner"], a["list"].lower(), bool(a.get("doit"))),
    "policy_held": lambda a: PolicyHeldArgs(a["owner"]),
    "tls_update": _tls_update,
    "vmail": lambda a: _vmail_args(a),
    "usage": lambda a: UsageArgs(a.get("owner")),
}


def _vmail_args(a: dict) -> Any:
    from domtool.slave.vmail import parse_args

    return parse_args(a)


def parse(op: str, args: Any) -> Any:
    """Check ``args`` against ``op``'s schema and build its typed arguments.

    ``op`` must already be one of ``domtool.wire.SLAVE_OPS`` (``wire.decode_request``
    refuses anything else). Raises :class:`BadArgs` listing every problem.
    """
    schema = OP_SCHEMAS.get(op)
    if schema is None:
        raise BadArgs([("", f"unknown operation {op[:40]!r}")])
    problems: Problems = []
    schema.check(args, "", problems, 0)
    if problems:
        raise BadArgs(problems)
    return _BUILDERS[op](args)


# ---------------------------------------------------------------------------
# The local re-check of one owner's part


MIN_MEMBER_ID = 1000  # Debian: uids and gids below this are the system's, not members'


def _account(user: str | None = None, group: str | None = None, min_id: int = MIN_MEMBER_ID):
    """Why a user or group name may not run a member's site on this host, or None.

    ``root`` and anything that is id 0 here are the superuser; an existing account with
    an id below ``min_id`` is a system account (``daemon``, ``www-data``...). A name this
    host does not know is left to the grants (and to suexec, which refuses it)."""
    if user is not None:
        if user == "root":
            return "is the superuser"
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            return None
        if uid == 0:
            return "is the superuser (uid 0 on this host)"
        return f"is a system account (uid {uid} on this host)" if uid < min_id else None
    if group is not None:
        if group == "root":
            return "is the superuser's group"
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return None
        if gid == 0:
            return "is the superuser's group (gid 0 on this host)"
        return f"is a system group (gid {gid} on this host)" if gid < min_id else None
    return None


def recheck(
    owner: str, change: OwnerChange, node: str | None = None, min_id: int = MIN_MEMBER_ID
) -> list[str]:
    """Every reason this host refuses ``owner``'s part (empty: accepted).

    ``node`` is this host's node name in the model; when given, every unit must list it
    among its nodes (the dispatcher sends a host only its own part). A vhost's user and
    group must be granted, and must not be root or an account of this host with an id
    below ``min_id`` (system accounts)."""
    problems: list[str] = []
    g = change.grants
    accounts: dict[tuple, str | None] = {}  # each name looked up once (50 vhosts, 1 user)

    def account(user: str | None = None, group: str | None = None) -> str | None:
        key = (user, group)
        try:
            return accounts[key]
        except KeyError:
            accounts[key] = why = _account(user=user, group=group, min_id=min_id)
            return why
        except TypeError:  # not a name at all: looked up (and refused) as it is
            return _account(user=user, group=group, min_id=min_id)

    def refuse(what: str, field: str, reason: str) -> None:
        problems.append(f"{owner}: {what}: {field}: {reason}")

    def name(what: str, field: str, checker, value) -> None:
        try:
            checker(value)
        except Invalid as e:
            refuse(what, field, str(e))

    def units(kind: str, items, label) -> None:
        for u in items:
            what = f"{kind} {str(label(u))[:253]}"
            if u.owner != owner:
                refuse(what, "owner", f"belongs to {str(u.owner)[:32]!r}, not to {owner!r}")
            if node is not None and node not in u.nodes:
                refuse(what, "nodes", f"not served by this host ({node})")

    st = change.state
    units("zone", st.zones, lambda z: z.name)
    units("policy", st.policies, lambda p: p.owner)
    for p in st.policies:
        for reason in member_policy.unit_problems(owner, p, g.users):
            problems.append(f"{owner}: {reason}")
        for u in p.users:
            why = _account(user=u, min_id=min_id)
            if why is not None:
                refuse("policy", "users", f"{u!r} {why}")
    # A reverse proxy only to a port the owner may serve (checked at the dispatcher too).
    for reason in member_policy.proxy_problems(st.vhosts, st.policies[0] if st.policies else None):
        problems.append(f"{owner}: {reason}")
    units("vhost", st.vhosts, lambda v: v.fqdn)
    units("mail domain", st.mail, lambda m: m.name)
    for d in st.lists:  # a list domain goes to its list nodes and its mail nodes
        if d.owner != owner:
            refuse(
                f"list domain {d.name}",
                "owner",
                f"belongs to {str(d.owner)[:32]!r}, not to {owner!r}",
            )
        if node is not None and node not in d.nodes and node not in d.mail_nodes:
            refuse(f"list domain {d.name}", "nodes", f"not served by this host ({node})")
    for d in st.lists:
        what = f"list domain {d.name}"
        name(what, "name", validate.check_domain, d.name)
        name(what, "web_host", validate.check_domain, d.web_host)
        for i, ml in enumerate(d.lists):
            name(what, f"lists[{i}].name", validate.check_list_name, ml.name)
            if ml.name != str(ml.name).lower():
                refuse(what, f"lists[{i}].name", "not lower-cased")
            for j, o in enumerate(ml.owners):
                name(what, f"lists[{i}].owners[{j}]", validate.check_email, o)
    for z in st.zones:
        what = f"zone {z.name}"
        name(what, "name", validate.check_domain, z.name)
        for i, r in enumerate(z.records):
            name(what, f"records[{i}].name", validate.check_record_name, r.name)
    for m in st.mail:
        name(f"mail domain {m.name}", "name", validate.check_domain, m.name)
        if m.relay_host is not None:
            name(f"mail domain {m.name}", "relay_host", validate.check_domain, m.relay_host)
        recheck_mail(owner, m, g, account, refuse)
    for v in st.vhosts:
        what = f"vhost {v.fqdn}"
        name(what, "fqdn", validate.check_domain, v.fqdn)
        name(what, "domain", validate.check_domain, v.domain)
        for i, a in enumerate(v.aliases):
            name(what, f"aliases[{i}]", validate.check_domain, a)
        why = account(user=v.user)
        if why is not None:
            refuse(what, "user", f"{v.user!r} {why}")
        elif v.user not in g.users:
            refuse(what, "user", f"{v.user!r} is not one of {owner}'s granted users")
        why = account(group=v.group)
        if why is not None:
            refuse(what, "group", f"{v.group!r} {why}")
        elif v.group not in g.groups:
            refuse(what, "group", f"{v.group!r} is not one of {owner}'s granted groups")
        for field, path in member_paths(v):
            try:
                check_member_path(path, g.paths)
            except PathRefused as e:
                refuse(what, field, str(e))
    return problems


# The database operations (``domtool.slave.dbargs``) belong to the same closed table.
from domtool.slave import dbargs as _dbargs  # noqa: E402

OP_SCHEMAS.update(_dbargs.SCHEMAS)
_BUILDERS.update(_dbargs.BUILDERS)
