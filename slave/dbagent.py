"""The slave's database operations: re-check, run on the server, audit.

The agent (``domtool.slave.agent``) hands each ``db_*`` op (``domtool.protocol``,
already schema-checked) to :class:`DatabaseOps`, which, before any SQL runs:

1. refuses a kind this host does not serve;
2. checks every database and role name against ``domtool.dbnames.check_name`` for the
   owner (the grammar, the owner's prefix, the servers' reserved names);

then, asking the server what it holds (read only), refuses a drop or grant of a database
that does not exist or whose owner on the server is someone else, and a create of a name
that exists already (another member's: refused; the owner's own: answered as unchanged).
A role that exists on the server with powers no member's role has (superuser, creating
roles, granting; ``dbserver.PrivilegedRole``) is refused by the server layer before it
changes anything.
Only then does it call the server (``domtool.slave.dbserver``).

Every op that changes something, and every refusal, is appended to the audit log
(``state_dir/agent/db-audit.jsonl``, one JSON object a line: time, op, kind, owner,
names, outcome, message; never a password). Calls run through the agent's
``run_blocking`` (a thread in the service) one at a time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from domtool import dbnames, protocol
from domtool.protocol import DbArgs, DbGrantArgs, DbListArgs, DbPasswdArgs
from domtool.slave.agent import Failed, Refused
from domtool.slave.dbserver import DatabaseServer, PrivilegedRole, ServerError
from domtool.validate import Invalid

__all__ = ["DatabaseOps", "build_servers"]

log = Logger()


def build_servers(tables: Mapping[str, Mapping[str, Any]]) -> dict[str, DatabaseServer]:
    """The database servers of slave.toml's ``[databases.postgres]`` and
    ``[databases.mysql]`` tables (each table's keys are the server config's fields)."""
    import attrs

    from domtool.slave.config import ConfigError
    from domtool.slave.db_mysql import MariaDBConfig, MariaDBServer
    from domtool.slave.db_postgres import PostgresConfig, PostgresServer

    known = {"postgres": (PostgresConfig, PostgresServer), "mysql": (MariaDBConfig, MariaDBServer)}
    out: dict[str, DatabaseServer] = {}
    for kind, table in tables.items():
        if kind not in known:
            raise ConfigError("[databases]", [f"unknown kind {kind!r}; one of postgres, mysql"])
        cls, server = known[kind]
        fields = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(table) - fields)
        if unknown:
            raise ConfigError(f"[databases.{kind}]", [f"unknown key(s): {', '.join(unknown)}"])
        out[kind] = server(cls(**table))
    return out


def _inline(fn: Callable, *args: Any) -> Any:
    return fn(*args)


class DatabaseOps:
    """The ``db_*`` ops of one slave over its database ``servers`` (kind -> server)."""

    OPS = ("db_create", "db_drop", "db_list", "db_passwd", "db_grant")

    def __init__(
        self,
        servers: Mapping[str, DatabaseServer],
        *,
        audit_path: str | os.PathLike | None = None,
        host: str = "this host",
        run_blocking: Callable[..., Any] = _inline,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.servers = dict(servers)
        self.audit_path = None if audit_path is None else os.fspath(audit_path)
        self.host = host
        self.now = now
        self._run_blocking = run_blocking
        self._lock = defer.DeferredLock()

    def close(self) -> None:
        """Close the servers' admin connections (the service stopping)."""
        for server in self.servers.values():
            try:
                server.close()
            except Exception:  # noqa: BLE001 - stopping anyway
                log.failure("closing the {kind} admin connection failed", kind=server.kind)

    def handlers(self) -> dict[str, Callable[[Any], Any]]:
        """op -> coroutine function, for the agent's closed table."""
        return {
            "db_create": lambda a: self._call(self.create, a),
            "db_drop": lambda a: self._call(self.drop, a),
            "db_list": lambda a: self._call(self.list, a),
            "db_passwd": lambda a: self._call(self.passwd, a),
            "db_grant": lambda a: self._call(self.grant, a),
        }

    async def _call(self, fn: Callable, args: Any) -> Any:
        await self._lock.acquire()
        try:
            result = self._run_blocking(fn, args)
            if isinstance(result, defer.Deferred):
                result = await result
            return result
        finally:
            self._lock.release()

    # -- checks ----------------------------------------------------------------------

    def _server(self, kind: str) -> DatabaseServer:
        server = self.servers.get(kind)
        if server is None:
            served = ", ".join(sorted(self.servers)) or "none"
            raise Refused(f"{self.host} serves no {kind} databases (it serves: {served})")
        return server

    def _name(self, value: str, owner: str, what: str) -> str:
        try:
            return dbnames.check_name(value, owner, what)
        except Invalid as e:
            raise Refused(str(e)) from None

    def _holds(self, server: DatabaseServer, name: str, owner: str, kind: str):
        try:
            held = server.databases().get(name)
        except ServerError as e:
            raise Failed(str(e)) from None
        if held is None:
            raise Refused(f"{owner} has no {kind} database {name!r} on {self.host}")
        if held.owner != owner:
            raise Refused(f"{kind} database {name!r} is not {owner}'s")
        return held

    def _audit(self, op: str, outcome: str, message: str = "", **fields: Any) -> None:
        entry = {"time": round(self.now(), 3), "op": op, **fields, "outcome": outcome}
        if message:
            entry["message"] = message[:500]
        log.info("{op} {fields}: {outcome}", op=op, fields=fields, outcome=outcome)
        if self.audit_path is None:
            return
        os.makedirs(os.path.dirname(self.audit_path) or ".", exist_ok=True)
        fd = os.open(self.audit_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _audited(self, op: str, fields: dict[str, Any], fn: Callable[[], dict]) -> dict:
        try:
            result = fn()
        except Refused as e:
            self._audit(op, "refused", e.message, **fields)
            raise
        except PrivilegedRole as e:
            self._audit(op, "refused", str(e), **fields)
            raise Refused(str(e)) from None
        except ServerError as e:
            self._audit(op, "failed", str(e), **fields)
            raise Failed(str(e)) from None
        self._audit(op, "applied" if result.get("changed", True) else "unchanged", **fields)
        return result

    # -- the ops ----------------------------------------------------------------------

    def create(self, a: DbArgs) -> dict[str, Any]:
        fields = {"kind": a.kind, "owner": a.owner, "name": a.name}

        def run() -> dict[str, Any]:
            server = self._server(a.kind)
            name = self._name(a.name, a.owner, "a database name")
            held = server.databases().get(name)
            if held is not None and held.owner != a.owner:
                raise Refused(f"{a.kind} database {name!r} already exists and is not {a.owner}'s")
            if held is None:
                server.create(a.owner, name)
            return protocol.DbCreateAnswer(
                a.kind,
                name,
                a.owner,
                held is None,
                "created" if held is None else "already exists",
                server.endpoint(),
            ).to_json()

        return self._audited("db_create", fields, run)

    def drop(self, a: DbArgs) -> dict[str, Any]:
        fields = {"kind": a.kind, "owner": a.owner, "name": a.name}

        def run() -> dict[str, Any]:
            server = self._server(a.kind)
            name = self._name(a.name, a.owner, "a database name")
            held = self._holds(server, name, a.owner, a.kind)
            server.drop(name)
            return protocol.DbDropAnswer(a.kind, name, True, held.size).to_json()

        return self._audited("db_drop", fields, run)

    def passwd(self, a: DbPasswdArgs) -> dict[str, Any]:
        fields = {"kind": a.kind, "owner": a.owner, "role": a.role}

        def run() -> dict[str, Any]:
            server = self._server(a.kind)
            role = self._name(a.role, a.owner, "a role name")
            if not a.password:
                raise Refused("the password is empty")
            created = server.set_password(role, a.password)
            return protocol.DbPasswdAnswer(a.kind, role, created, True).to_json()

        return self._audited("db_passwd", fields, run)

    def grant(self, a: DbGrantArgs) -> dict[str, Any]:
        fields = {"kind": a.kind, "owner": a.owner, "database": a.database, "role": a.role}

        def run() -> dict[str, Any]:
            server = self._server(a.kind)
            database = self._name(a.database, a.owner, "a database name")
            role = self._name(a.role, a.owner, "a role name")
            self._holds(server, database, a.owner, a.kind)
            created = server.grant(database, role)
            return protocol.DbGrantAnswer(a.kind, database, role, created, True).to_json()

        return self._audited("db_grant", fields, run)

    def list(self, a: DbListArgs) -> dict[str, Any]:
        """The databases (with their sizes as the server reports them) and roles of
        ``a.owner`` (every member's when None), per kind; a server that cannot be asked
        is reported in ``errors``, the others still answer."""
        databases: list[protocol.DbInfo] = []
        roles: dict[str, list[str]] = {}
        errors: dict[str, str] = {}
        for kind, server in sorted(self.servers.items()):
            try:
                held = server.databases()
                names = server.roles()
            except ServerError as e:
                errors[kind] = str(e)
                continue
            for info in sorted(held.values(), key=lambda i: i.name):
                if a.owner is None or info.owner == a.owner:
                    databases.append(protocol.DbInfo(kind, info.name, info.owner, info.size))
            roles[kind] = sorted(
                r for r in names if a.owner is None or dbnames.is_under(r, a.owner)
            )
        return protocol.DbListAnswer(
            self.host,
            tuple(sorted(self.servers)),
            tuple(databases),
            roles,
            errors,
            {k: s.endpoint() for k, s in sorted(self.servers.items())},
        ).to_json()
