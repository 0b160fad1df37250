"""A database server in memory, behind the seam of ``domtool.slave.dbserver``.

It keeps databases (name -> owner, size), roles, grants and passwords, and records every
call in ``calls`` so a test can show that a refused op never reached the server. The
same contract test runs it and the real PostgreSQL and MariaDB
(``tests/slave/test_db_daemons.py``)."""

from __future__ import annotations

import attrs

from domtool.slave.dbserver import DatabaseInfo, ServerError


@attrs.define
class FakeDatabaseServer:
    kind: str = "postgres"
    dbs: dict[str, DatabaseInfo] = attrs.field(factory=dict)
    role_names: set[str] = attrs.field(factory=set)
    grants: set[tuple[str, str]] = attrs.field(factory=set)
    passwords: dict[str, str] = attrs.field(factory=dict)
    calls: list[tuple] = attrs.field(factory=list)
    down: bool = False

    def _call(self, *what) -> None:
        self.calls.append(what)
        if self.down:
            raise ServerError(f"cannot connect to the fake {self.kind} server")

    def databases(self) -> dict[str, DatabaseInfo]:
        self._call("databases")
        return dict(self.dbs)

    def roles(self) -> set[str]:
        self._call("roles")
        return set(self.role_names)

    def create(self, owner: str, name: str) -> None:
        self._call("create", owner, name)
        if name in self.dbs:
            raise ServerError(f'database "{name}" already exists')
        self.role_names.add(owner)
        self.dbs[name] = DatabaseInfo(name, owner, 1000)
        self.grants.add((name, owner))

    def drop(self, name: str) -> None:
        self._call("drop", name)
        if name not in self.dbs:
            raise ServerError(f'database "{name}" does not exist')
        del self.dbs[name]
        self.grants = {(d, r) for d, r in self.grants if d != name}

    def set_password(self, role: str, password: str) -> bool:
        self._call("set_password", role)
        created = role not in self.role_names
        self.role_names.add(role)
        self.passwords[role] = password
        return created

    def grant(self, database: str, role: str) -> bool:
        self._call("grant", database, role)
        created = role not in self.role_names
        self.role_names.add(role)
        self.grants.add((database, role))
        return created

    def close(self) -> None:
        self.calls.append(("close",))

    def endpoint(self) -> dict:
        return {"socket_dir": "/fake", "host": "127.0.0.1", "port": 1}

    def writes(self) -> list[tuple]:
        """The calls that would change the server."""
        return [c for c in self.calls if c[0] not in ("databases", "roles", "close")]
