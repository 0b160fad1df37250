"""The slave's database operations on the wire: their closed argument schemas and types.

Added to ``domtool.slave.ops.OP_SCHEMAS`` (which checks every op before the agent sees
it); the names are only shape-checked here (at most 64 bytes), the real grammar and the
owner's prefix are ``domtool.dbnames``', applied by ``domtool.slave.dbagent`` before any
SQL runs::

    db_create {kind, owner, name}          db_drop  {kind, owner, name}
    db_list   {owner?}                     db_passwd {kind, owner, role, password}
    db_grant  {kind, owner, database, role}

``kind`` is ``postgres`` or ``mysql``. A password is at most 1024 bytes and is never
shown in a repr, a log line or the audit.
"""

from __future__ import annotations

import attrs

from domtool import dbnames
from domtool.slave.ops import UNIX_NAME, Obj, Str

__all__ = ["BUILDERS", "SCHEMAS", "DbArgs", "DbGrantArgs", "DbListArgs", "DbPasswdArgs"]

MAX_PASSWORD = 1024

_kind = Str(16, allowed=frozenset(dbnames.KINDS))
_owner = Str(32, UNIX_NAME)
_name = Str(64)

SCHEMAS: dict[str, Obj] = {
    "db_create": Obj({"kind": _kind, "owner": _owner, "name": _name}),
    "db_drop": Obj({"kind": _kind, "owner": _owner, "name": _name}),
    "db_list": Obj({}, {"owner": _owner}),
    "db_passwd": Obj(
        {"kind": _kind, "owner": _owner, "role": _name, "password": Str(MAX_PASSWORD)}
    ),
    "db_grant": Obj({"kind": _kind, "owner": _owner, "database": _name, "role": _name}),
}


@attrs.frozen
class DbArgs:
    """``db_create`` / ``db_drop``: database ``name`` of ``kind`` for ``owner``."""

    kind: str
    owner: str
    name: str


@attrs.frozen
class DbListArgs:
    """``db_list``: the databases and roles of ``owner`` (None: of every member)."""

    owner: str | None = None


@attrs.frozen
class DbPasswdArgs:
    """``db_passwd``: set ``role``'s password (never shown)."""

    kind: str
    owner: str
    role: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class DbGrantArgs:
    """``db_grant``: let ``role`` use ``database``."""

    kind: str
    owner: str
    database: str
    role: str


BUILDERS = {
    "db_create": lambda a: DbArgs(a["kind"], a["owner"], a["name"]),
    "db_drop": lambda a: DbArgs(a["kind"], a["owner"], a["name"]),
    "db_list": lambda a: DbListArgs(a.get("owner")),
    "db_passwd": lambda a: DbPasswdArgs(a["kind"], a["owner"], a["role"], a["password"]),
    "db_grant": lambda a: DbGrantArgs(a["kind"], a["owner"], a["database"], a["role"]),
}
