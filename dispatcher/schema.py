"""Requests on the wire: JSON objects checked against a declarative schema, with size limits,
BEFORE any logic sees them.

A request is one JSON object ``{"kind": <kind>, ...fields}``, or, inside a
``domtool.wire`` envelope, an op and its args object (``validate_args(op, args)``). ``decode(raw)`` refuses
oversize input before parsing, parses, and checks the object against the kind's schema:
every field's type, length (UTF-8 bytes for strings, items for lists), range, allowed
values or pattern; required fields present; no unknown fields. All problems are reported
at once (``SchemaError.problems``, each with the JSON path it concerns). Nothing here
looks up anything by a name that came over the wire except the closed ``KINDS`` table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

KiB = 1024
MAX_FILES = 64
MAX_FILE_BYTES = 256 * KiB
# The whole request: 64 files of 256 KiB, with room for JSON escaping of the text.
MAX_REQUEST_BYTES = 2 * MAX_FILES * MAX_FILE_BYTES
# Nesting deeper than the deepest schema (object > list > object > string) plus slack.
MAX_DEPTH = 8

DOMAIN = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


class SchemaError(ValueError):
    """The request does not match the schema; ``problems`` lists every (path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


@frozen
class Field:
    """One value's rules. ``type`` is one of str, int, bool, list, object."""

    type: str
    required: bool = True
    max_bytes: int | None = None  # str: UTF-8 length
    min_items: int = 0  # list
    max_items: int | None = None  # list
    minimum: int | None = None  # int
    maximum: int | None = None  # int
    allowed: frozenset | None = None
    pattern: re.Pattern | None = None  # str: must match fully
    items: Field | None = None  # list: every item's rules
    fields: Mapping[str, Field] = field(factory=dict)  # object: its fields (closed)


@frozen
class Request:
    """A request that passed its schema."""

    kind: str
    args: Mapping[str, Any]


def _str(max_bytes: int, *, required: bool = True, pattern: re.Pattern | None = None) -> Field:
    return Field("str", required=required, max_bytes=max_bytes, pattern=pattern)


DOMAIN_FIELD = _str(253, pattern=DOMAIN)
FILES = Field(
    "list",
    min_items=1,
    max_items=MAX_FILES,
    items=Field(
        "object",
        fields={"name": _str(253, pattern=DOMAIN), "text": _str(MAX_FILE_BYTES)},
    ),
)
DB_KIND = Field("str", allowed=frozenset({"postgres", "mysql"}))
DB_NAME = _str(64)

# The request kinds members may send (admin kinds come later). Closed table.
KINDS: dict[str, dict[str, Field]] = {
    "submit": {"files": FILES},
    "check": {"files": FILES},
    "plan": {"files": FILES},
    "perms": {},
    "whoami": {},
    "describe": {"domain": DOMAIN_FIELD},
    "history": {"domain": DOMAIN_FIELD},
    "undo": {"domain": DOMAIN_FIELD, "version": Field("int", minimum=1, maximum=2**31 - 1)},
    "rmdom": {"domain": DOMAIN_FIELD},
    "vmail": {},  # filled in below from domtool.dispatcher.vmail.ARGS
    "list_rm": {
        "list": _str(320, pattern=re.compile(r"[A-Za-z0-9._-]{1,64}@[A-Za-z0-9.-]{1,253}")),
        "doit": Field("bool", required=False),
    },
    # databases (domtool.dispatcher.databases). Names are only size-limited here so that
    # the grammar's own message (domtool.dbnames) reaches the member.
    "db_create": {"kind": DB_KIND, "name": DB_NAME},
    "db_drop": {"kind": DB_KIND, "name": DB_NAME, "apply": Field("bool", required=False)},
    "db_list": {},
    "db_passwd": {"kind": DB_KIND, "role": DB_NAME, "password": _str(1024)},
    "db_grant": {"kind": DB_KIND, "database": DB_NAME, "role": DB_NAME},
    # the member's own admin-set policy (domtool.dispatcher.policy_ops)
    "policy": {},
    # what the member uses (domtool.dispatcher.usage_ops)
    "usage": {},
}

USER_FIELD = _str(32, pattern=re.compile(r"[a-z_][a-z0-9_-]{0,31}"))
GRANT_CLASS = Field("str", allowed=frozenset({"domain", "path", "user", "group"}))
GRANT_VALUE = _str(4096)
# Destructive admin verbs are dry runs unless ``apply`` is true.
APPLY = Field("bool", required=False)

# What admins may ask in addition (the avatar's is_admin decides who may). Closed table.
ADMIN_KINDS: dict[str, dict[str, Field]] = {
    "adduser": {"user": USER_FIELD, "admin": Field("bool", required=False)},
    "rmuser": {"user": USER_FIELD, "apply": APPLY},
    "grant": {
        "user": USER_FIELD,
        "class": GRANT_CLASS,
        "value": GRANT_VALUE,
        "shared": Field("bool", required=False),  # overlapping another member's: on purpose
    },
    "revoke": {"user": USER_FIELD, "class": GRANT_CLASS, "value": GRANT_VALUE},
    "perms_of": {"user": USER_FIELD},
    "whohas": {"class": GRANT_CLASS, "value": GRANT_VALUE},
    "regen": {"apply": APPLY},
    "admin_rmdom": {"domain": DOMAIN_FIELD, "apply": APPLY},
    "hosts": {},
    "ping": {"host": _str(253, required=False, pattern=DOMAIN)},
    "admin_describe": {"domain": DOMAIN_FIELD},
    "audit": {
        "user": Field("str", required=False, max_bytes=32, pattern=USER_FIELD.pattern),
        "limit": Field("int", required=False, minimum=1, maximum=10_000),
    },
    "quota": {"user": USER_FIELD},
    # A grant record signed by an admin's key (domtool.grantsig), checked by the controller.
    "put_grants": {
        "signed": Field(
            "object",
            fields={
                "record": Field(
                    "object",
                    fields={
                        "member": USER_FIELD,
                        "serial": Field("int", minimum=1, maximum=2**63 - 1),
                        "grants": Field(
                            "list",
                            max_items=10_000,
                            items=Field("list", min_items=2, max_items=2, items=_str(4096)),
                        ),
                    },
                ),
                "signature": _str(200),
                "key": _str(64),
            },
        )
    },
    # admin-set member policy (domtool.dispatcher.policy_ops); a part's own parser
    # (domtool.policies.member_policy.EDITS) checks the action's value.
    "policy_show": {"user": _str(32, required=False, pattern=USER_FIELD.pattern)},
    "policy_check": {"user": _str(32, required=False, pattern=USER_FIELD.pattern)},
    "usage_of": {"user": _str(32, required=False, pattern=USER_FIELD.pattern)},
    "policy_set": {
        "user": _str(32, required=False, pattern=USER_FIELD.pattern),
        "site": Field("bool", required=False),
        "part": _str(32, pattern=re.compile(r"[a-z][a-z0-9_]{0,31}")),
        "action": _str(32, pattern=re.compile(r"[a-z][a-z0-9_]{0,31}")),
        "value": _str(4096, required=False),
        "dry_run": Field("bool", required=False),
    },
    "set_quota": {
        "user": USER_FIELD,
        "resource": _str(64, pattern=re.compile(r"[a-z][a-z0-9_]{0,63}")),
        "value": Field("int", minimum=0, maximum=2**53),
    },
}

_TYPES = {"str": str, "int": int, "bool": bool, "list": list, "object": dict}


def check(value: Any, rules: Field, path: str, problems: list[tuple[str, str]]) -> None:
    """Append to ``problems`` everything wrong with ``value`` under ``rules``."""
    expected = _TYPES[rules.type]
    # bool is an int in Python; JSON true is never an integer here.
    if not isinstance(value, expected) or (rules.type == "int" and isinstance(value, bool)):
        problems.append((path, f"expected {rules.type}, got {_json_type(value)}"))
        return
    if rules.allowed is not None and rules.type in ("str", "int") and value not in rules.allowed:
        problems.append((path, f"must be one of {', '.join(sorted(map(str, rules.allowed)))}"))
    if rules.type == "str":
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            problems.append((path, "contains a lone surrogate (not valid Unicode text)"))
            return
        if rules.max_bytes is not None and size > rules.max_bytes:
            problems.append((path, f"too long: {size} bytes, at most {rules.max_bytes}"))
        elif rules.pattern is not None and not rules.pattern.fullmatch(value):
            problems.append((path, "not a valid name"))
    elif rules.type == "int":
        if rules.minimum is not None and value < rules.minimum:
            problems.append((path, f"must be at least {rules.minimum}"))
        if rules.maximum is not None and value > rules.maximum:
            problems.append((path, f"must be at most {rules.maximum}"))
    elif rules.type == "list":
        if rules.max_items is not None and len(value) > rules.max_items:
            problems.append((path, f"too many items: {len(value)}, at most {rules.max_items}"))
            return
        if len(value) < rules.min_items:
            problems.append((path, f"needs at least {rules.min_items} item(s)"))
        if rules.items is not None:
            for i, item in enumerate(value):
                check(item, rules.items, f"{path}[{i}]", problems)
    elif rules.type == "object":
        check_fields(value, rules.fields, path, problems)


def check_fields(
    obj: dict, fields: Mapping[str, Field], path: str, problems: list[tuple[str, str]]
) -> None:
    """Check an object's fields: required ones present, none unknown, each by its rules."""
    for name, rules in fields.items():
        where = f"{path}.{name}" if path else name
        if name in obj:
            check(obj[name], rules, where, problems)
        elif rules.required:
            problems.append((where, "required"))
    unknown = sorted(k for k in obj if k not in fields)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        problems.append((path, f"unknown field(s): {shown}"))


def _json_type(value: Any) -> str:
    for name, t in (("bool", bool), ("int", int), ("str", str), ("list", list)):
        if isinstance(value, t):
            return name
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__


def validate(obj: Any, *, admin: bool = False) -> Request:
    """Check a decoded JSON value as a request; the Request, or SchemaError with every problem."""
    if not isinstance(obj, dict):
        raise SchemaError([("", f"a request is a JSON object, got {_json_type(obj)}")])
    kind = obj.get("kind")
    return validate_args(kind, {k: v for k, v in obj.items() if k != "kind"}, admin=admin)


def validate_args(kind: Any, args: Any, *, admin: bool = False) -> Request:
    """Check the arguments of a request of ``kind`` (the ``op`` and ``args`` of a
    ``domtool.wire`` envelope); the Request, or SchemaError with every problem.

    Admin kinds are known only with ``admin=True`` (the admin listener or an admin avatar)."""
    table = {**KINDS, **ADMIN_KINDS} if admin else KINDS
    if not isinstance(kind, str) or kind not in table:
        raise SchemaError([("kind", f"must be one of {', '.join(sorted(table))}")])
    if not isinstance(args, dict):
        raise SchemaError([("", f"arguments are a JSON object, got {_json_type(args)}")])
    problems: list[tuple[str, str]] = []
    check_fields(args, table[kind], "", problems)
    if problems:
        raise SchemaError(problems)
    return Request(kind, args)


def _depth(text: str) -> int:
    """The deepest bracket nesting in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def decode(raw: bytes, *, max_bytes: int = MAX_REQUEST_BYTES, admin: bool = False) -> Request:
    """Size-check, parse and validate one request's bytes (UTF-8 JSON)."""
    if len(raw) > max_bytes:
        raise SchemaError([("", f"request too large: {len(raw)} bytes, at most {max_bytes}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError([("", f"not UTF-8 at byte {e.start}")]) from None
    if _depth(text) > MAX_DEPTH:
        raise SchemaError([("", f"nested deeper than {MAX_DEPTH}")])
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise SchemaError([("", f"not JSON: {str(e)[:200]}")]) from None
    return validate(obj, admin=admin)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _vmail_args() -> None:
    from domtool.dispatcher.vmail import ARGS

    KINDS["vmail"] = ARGS


_vmail_args()
