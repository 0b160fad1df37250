"""Database and role names: the member-prefix rule, the strict grammar, and MariaDB quoting.

A member's PostgreSQL and MariaDB databases and roles are named under the member's
prefix: the member's own name (``alice``) or it, an underscore and a suffix
(``alice_blog``). Both the dispatcher (before any host is asked) and the slave (before
any SQL runs) call :func:`check_name` with the member; anything else is refused with
:class:`domtool.validate.Invalid`, saying why.

The grammar is narrower than either server's (``docs/grammars.md``): lower-case ASCII
letters, digits, ``_`` and ``-`` (member names may contain ``-``), starting with a letter
or ``_``, at most :data:`MAX_NAME` (63) bytes, PostgreSQL's identifier limit and under
MariaDB's 64 for databases and 80 for users. Names a server keeps for itself
(``postgres``, ``root``, ``mysql``, ``information_schema``, ``pg_*``...) are refused,
as is any member whose own name is one of them.

Quoting, as the drivers do it:

- PostgreSQL: ``psycopg.sql.Identifier`` (double quotes, ``"`` doubled) in the slave;
  no SQL text is ever built by string formatting.
- MariaDB (PyMySQL has no identifier quoting): :func:`backtick` wraps an identifier in
  backticks and doubles any backtick inside, the server's own rule for quoted
  identifiers; :func:`mysql_ident` applies it only to names that passed the grammar
  (defence in depth: the grammar admits no backtick, NUL or non-ASCII at all).
  :func:`mysql_grant_db` additionally escapes ``_`` and ``%`` (as ``\\_``, ``\\%``):
  in ``GRANT ... ON db.*`` they are wildcards, so an unescaped ``alice_blog`` would also
  match ``alice-blog``, another member's name. User names and passwords travel as string
  literals through the driver's own parameter escaping, never pasted into SQL.

Pure: this module only decides and quotes.
"""

from __future__ import annotations

import re
from typing import Any

from domtool.validate import Invalid

__all__ = [
    "KINDS",
    "MAX_NAME",
    "RESERVED",
    "backtick",
    "check_kind",
    "check_name",
    "is_under",
    "mysql_grant_db",
    "mysql_ident",
    "owner_of",
]

KINDS = ("postgres", "mysql")
KIND_LABELS = {"postgres": "PostgreSQL", "mysql": "MariaDB"}
MAX_NAME = 63
NAME = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
# What the servers keep for themselves (never a member's database or role name).
RESERVED = frozenset(
    {
        "postgres",
        "template0",
        "template1",
        "public",
        "root",
        "mysql",
        "mariadb.sys",
        "information_schema",
        "performance_schema",
        "sys",
        "test",
        "none",
        "all",
        "current_user",
        "session_user",
        "current_role",
        "debian-sys-maint",
        "domtool",
    }
)
_RESERVED_PREFIXES = ("pg_",)


def check_kind(kind: Any) -> str:
    """``postgres`` or ``mysql``, else Invalid."""
    if kind not in KINDS:
        raise Invalid("a database kind", kind, f"must be one of {', '.join(KINDS)}")
    return kind


def _reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(_RESERVED_PREFIXES)


def is_under(name: str, member: str) -> bool:
    """Whether ``name`` is the member's own name or starts with it and ``_``."""
    return name == member or name.startswith(member + "_")


def check_name(value: Any, member: str, what: str = "a database name") -> str:
    """``value`` if it is a valid database or role name under ``member``'s prefix.

    Raises :class:`Invalid` naming the rule broken: not a string, too long, a character
    outside ``[a-z0-9_-]`` (or a first character that is not a letter or ``_``), a name
    the server reserves, or a name outside ``member`` / ``member_*``."""
    kind = f"{what} of {member}'s"
    if not isinstance(value, str):
        raise Invalid(kind, value, "must be a string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size == 0:
        raise Invalid(kind, value, "must not be empty")
    if size > MAX_NAME:
        raise Invalid(kind, value, f"is {size} bytes long, at most {MAX_NAME}")
    if not NAME.fullmatch(value):
        bad = next((c for c in value if not re.fullmatch(r"[a-z0-9_-]", c)), None)
        if bad is not None:
            reason = f"contains {bad!r}; only a-z, 0-9, '_' and '-' are allowed"
        else:
            reason = "must start with a letter a-z or '_'"
        raise Invalid(kind, value, reason)
    if _reserved(member):
        raise Invalid(kind, value, f"{member!r} is a name the database servers reserve")
    if not is_under(value, member):
        raise Invalid(
            kind,
            value,
            f"must be {member!r} or start with {member + '_'!r}",
            hint=f"for example {member}_blog",
        )
    if _reserved(value):
        raise Invalid(kind, value, "is a name the database servers reserve")
    return value


def owner_of(name: str, members: Any) -> str | None:
    """Which of ``members`` a name belongs to: the one with the longest prefix it is
    under (``alice_b_x`` is ``alice_b``'s when both ``alice`` and ``alice_b`` are
    members), or None."""
    best = None
    for m in members:
        if is_under(name, m) and (best is None or len(m) > len(best)):
            best = m
    return best


def backtick(identifier: str) -> str:
    """A MariaDB quoted identifier: in backticks, each backtick inside doubled.

    Refuses what no quoting can carry (NUL, a lone surrogate, characters outside the
    Basic Multilingual Plane, trailing spaces, which the server refuses in names)."""
    if not isinstance(identifier, str) or identifier == "":
        raise Invalid("a MariaDB identifier", identifier, "must be a non-empty string")
    for c in identifier:
        if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF or ord(c) > 0xFFFF:
            raise Invalid("a MariaDB identifier", identifier, f"contains {c!r}")
    if identifier.endswith(" "):
        raise Invalid("a MariaDB identifier", identifier, "ends with a space")
    return "`" + "``".join(identifier.split("`")) + "`"


def mysql_ident(name: str, member: str) -> str:
    """The backtick-quoted form of a database name that passed :func:`check_name`."""
    return backtick(check_name(name, member))


def mysql_grant_db(name: str, member: str) -> str:
    """The database part of ``GRANT ... ON <db>.*``: checked, ``_`` and ``%`` escaped
    (wildcards in grants), then backtick-quoted."""
    checked = check_name(name, member)
    escaped = "".join("\\" + c if c in "_%\\" else c for c in checked)
    return backtick(escaped)
