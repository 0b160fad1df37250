"""The slave's PostgreSQL server: members' databases and roles through psycopg 3.

Every identifier goes through ``psycopg.sql.Identifier`` and every value through
``sql.Literal`` or a bound parameter; no SQL text is built from a name by string
formatting. Passwords never reach the server (nor its logs) in clear: the slave computes
the SCRAM-SHA-256 verifier itself (:func:`scram_verifier`) and stores that.

The slave connects as the cluster's superuser (``admin_user``, default ``postgres``)
over the Unix socket in ``socket_dir``, authenticated by its Unix identity (``peer``; a
site maps the slave's user to ``admin_user`` in ``pg_ident.conf``, see
``docs/databases.md``). Members connect the same way as themselves (``peer``: the Unix
user ``alice`` is the role ``alice``), or over TCP with the password ``db passwd`` set.

What ``create`` does: the owner's role (``LOGIN``, no password) if it is missing, the
database ``OWNER`` that role, and ``REVOKE ALL ON DATABASE ... FROM PUBLIC`` so no other
role may connect to it. Which member a database belongs to is the server's own record:
the database's owner role (``pg_database.datdba``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import Any

import attrs

from domtool.slave.dbserver import DatabaseInfo, PrivilegedRole, ServerError

__all__ = ["PostgresConfig", "PostgresServer", "scram_verifier"]

SCRAM_ITERATIONS = 4096


def scram_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802/7677):
    ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>``, base64."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


@attrs.frozen
class PostgresConfig:
    """``[databases.postgres]`` of slave.toml: where the server's socket is, its port
    (the socket's name ``.s.PGSQL.<port>``), the superuser the slave connects as, and
    what members are told to connect to (``tcp_address``/``port`` for passwords)."""

    socket_dir: str = "/var/run/postgresql"
    port: int = 5432
    admin_user: str = "postgres"
    admin_database: str = "postgres"
    tcp_address: str = "127.0.0.1"
    connect_timeout: int = 10


class PostgresServer:
    """Members' databases on one PostgreSQL cluster (see the module docstring)."""

    kind = "postgres"

    def __init__(self, config: PostgresConfig) -> None:
        self.config = config
        self._conn: Any = None

    # -- plumbing ------------------------------------------------------------------

    def _connect(self) -> Any:
        """The admin connection: kept open between ops (they run one at a time), checked
        before each use and opened again when the server dropped it."""
        import psycopg

        if self._conn is not None:
            try:
                self._conn.execute("SELECT 1")
                return self._conn
            except psycopg.Error:
                self.close()
        c = self.config
        try:
            self._conn = psycopg.connect(
                host=c.socket_dir,
                port=c.port,
                user=c.admin_user,
                dbname=c.admin_database,
                autocommit=True,  # CREATE/DROP DATABASE cannot run in a transaction
                connect_timeout=c.connect_timeout,
            )
        except psycopg.Error as e:
            raise ServerError(f"cannot connect to PostgreSQL at {c.socket_dir}: {_short(e)}") from e
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """The admin connection for one op; a driver error becomes ServerError (and a
        broken connection is dropped, so the next op opens a new one)."""
        import psycopg

        conn = self._connect()
        try:
            yield conn
        except PrivilegedRole:
            raise
        except psycopg.Error as e:
            if conn.closed or getattr(conn, "broken", False):
                self.close()
            raise ServerError(f"PostgreSQL: {_short(e)}") from e

    def _run(self, statements: list[Any]) -> None:
        with self._session() as conn:
            for s in statements:
                conn.execute(s)

    def _role_exists(self, conn: Any, role: str) -> bool:
        """Whether ``role`` exists; PrivilegedRole if it is a superuser or may create
        roles or databases, replicate or bypass row security (never a member's role)."""
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls"
            " FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        if row is not None and row[0]:
            raise PrivilegedRole(f"role {role!r} is privileged on this PostgreSQL server")
        return row is not None

    # -- what the slave asks -------------------------------------------------------

    def databases(self) -> dict[str, DatabaseInfo]:
        """Every non-template database whose owner is not a superuser: name -> info."""
        with self._session() as conn:
            rows = conn.execute(
                "SELECT d.datname, r.rolname, pg_database_size(d.oid) FROM pg_database d"
                " JOIN pg_roles r ON r.oid = d.datdba"
                " WHERE NOT d.datistemplate AND NOT r.rolsuper ORDER BY d.datname"
            ).fetchall()
        return {name: DatabaseInfo(name, owner, int(size)) for name, owner, size in rows}

    def roles(self) -> set[str]:
        """Every role that may log in and is not a superuser."""
        with self._session() as conn:
            rows = conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper"
            ).fetchall()
        return {r[0] for r in rows}

    def create(self, owner: str, name: str) -> None:
        from psycopg import sql

        db, role = sql.Identifier(name), sql.Identifier(owner)
        with self._session() as conn:
            if not self._role_exists(conn, owner):
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))

    def drop(self, name: str) -> None:
        from psycopg import sql

        self._run([sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))])

    def set_password(self, role: str, password: str) -> bool:
        """Set ``role``'s password (creating the role, LOGIN, if missing); whether the
        role was created."""
        from psycopg import sql

        verifier = sql.Literal(scram_verifier(password, os.urandom(16)))
        r = sql.Identifier(role)
        with self._session() as conn:
            created = not self._role_exists(conn, role)
            verb = "CREATE" if created else "ALTER"
            conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(r, verifier))
        return created

    def grant(self, database: str, role: str) -> bool:
        """Let ``role`` (created, LOGIN, if missing) connect to ``database``, create
        schemas and temporary tables in it; whether the role was created."""
        from psycopg import sql

        r = sql.Identifier(role)
        with self._session() as conn:
            created = not self._role_exists(conn, role)
            if created:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
            conn.execute(
                sql.SQL("GRANT ALL PRIVILEGES ON DATABASE {} TO {}").format(
                    sql.Identifier(database), r
                )
            )
        return created

    def endpoint(self) -> dict[str, Any]:
        """What a member connects to: the socket directory (peer) and host:port (password)."""
        c = self.config
        return {"socket_dir": c.socket_dir, "host": c.tcp_address, "port": c.port}


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]
