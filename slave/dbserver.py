"""The seam between the slave's database operations and one database server.

``domtool.slave.dbagent`` decides (names, owners, quota-free checks, audit); a server
(``db_postgres.PostgresServer``, ``db_mysql.MariaDBServer``, or the tests' fake) only
does what it is told, through its driver's quoting. Every server has the same methods:

- ``databases() -> {name: DatabaseInfo}``: the members' databases with their owner and
  size in bytes as the server reports them;
- ``roles() -> set[str]``: the roles (accounts) that are not the server's own;
- ``create(owner, name)``: the owner's role if missing (Unix-identity authentication),
  then the database, usable by that role only;
- ``drop(name)``; ``set_password(role, password) -> created``; ``grant(database, role)
  -> created``; ``endpoint() -> dict`` (what a member connects to); ``close()`` (the
  admin connection, which the real servers keep open between ops).

Failures are :class:`ServerError` with the server's own message (first line).
"""

from __future__ import annotations

from typing import Protocol

import attrs

__all__ = ["DatabaseInfo", "DatabaseServer", "PrivilegedRole", "ServerError"]


class ServerError(Exception):
    """The database server refused or could not be reached (the message says which)."""


class PrivilegedRole(ServerError):
    """The role exists on the server with powers no member's role has (a superuser, an
    account that may create roles or grant): the slave never touches it for a member."""


@attrs.frozen
class DatabaseInfo:
    """One database: its name, the role that owns it, its size in bytes."""

    name: str
    owner: str
    size: int = 0


class DatabaseServer(Protocol):
    kind: str

    def databases(self) -> dict[str, DatabaseInfo]: ...

    def roles(self) -> set[str]: ...

    def create(self, owner: str, name: str) -> None: ...

    def drop(self, name: str) -> None: ...

    def set_password(self, role: str, password: str) -> bool: ...

    def grant(self, database: str, role: str) -> bool: ...

    def endpoint(self) -> dict: ...

    def close(self) -> None: ...
