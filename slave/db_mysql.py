"""The slave's MariaDB server: members' databases and accounts through PyMySQL.

PyMySQL has no identifier quoting, so database names go through the strict grammar of
``domtool.dbnames`` and then :func:`domtool.dbnames.backtick` (backticks, any backtick
doubled); in ``GRANT``/``REVOKE ... ON db.*`` through ``dbnames.mysql_grant_db`` too,
which escapes the wildcards ``_`` and ``%``. Account names, comments and password hashes
are string literals bound as parameters (PyMySQL's escaping, which follows the server's
``NO_BACKSLASH_ESCAPES`` mode). A ``%`` inside a quoted identifier is doubled before
PyMySQL's parameter substitution so it stays a ``%``.

The slave connects as ``admin_user`` (default ``root``) over the Unix socket,
authenticated by its Unix identity (``unix_socket``). A member's account is
``'alice'@'%'`` ``IDENTIFIED VIA unix_socket`` (the Unix user ``alice`` is the account
``alice`` over the socket); ``db passwd`` adds ``OR mysql_native_password`` with the hash
computed here (:func:`native_password_hash`), so the clear password never reaches the
server or its logs. Which member a database belongs to is recorded on the server itself,
in the database's comment (``domtool:owner=alice``, MariaDB 10.5+).
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

from domtool import dbnames
from domtool.slave.dbserver import DatabaseInfo, PrivilegedRole, ServerError

__all__ = ["MariaDBConfig", "MariaDBServer", "native_password_hash"]

OWNER_COMMENT = "domtool:owner="
ACCOUNT_HOST = "%"


def native_password_hash(password: str) -> str:
    """``mysql_native_password``'s stored form: ``*`` and the upper-case hex of
    SHA1(SHA1(password))."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


@attrs.frozen
class MariaDBConfig:
    """``[databases.mysql]`` of slave.toml: the server's socket, the account the slave
    connects as, and the TCP address/port members use with a password."""

    socket: str = "/run/mysqld/mysqld.sock"
    admin_user: str = "root"
    tcp_address: str = "127.0.0.1"
    port: int = 3306
    connect_timeout: int = 10


def _ident(name: str) -> str:
    """A backtick-quoted identifier, with ``%`` doubled for PyMySQL's substitution."""
    return "%%".join(dbnames.backtick(name).split("%"))


def _grant_db(name: str) -> str:
    escaped = "".join("\\" + c if c in "_%\\" else c for c in name)
    return "%%".join(dbnames.backtick(escaped).split("%"))


class MariaDBServer:
    """Members' databases on one MariaDB server (see the module docstring)."""

    kind = "mysql"

    def __init__(self, config: MariaDBConfig) -> None:
        self.config = config
        self._conn: Any = None

    def _connect(self) -> Any:
        """The admin connection: kept open between ops (they run one at a time), checked
        with a ping before each use and opened again when the server dropped it."""
        import pymysql

        if self._conn is not None:
            try:
                self._conn.ping(reconnect=False)
                return self._conn
            except pymysql.Error:
                self.close()
        c = self.config
        settings: dict[str, Any] = {
            "unix_socket": c.socket,
            "user": c.admin_user,
            "autocommit": True,
            "connect_timeout": c.connect_timeout,
            "charset": "utf8mb4",
            "ssl_disabled": True,  # a Unix socket; and no CA bundle loaded per connection
        }
        try:
            try:
                self._conn = pymysql.connect(**settings)
            except TypeError:  # a PyMySQL without ssl_disabled (it then builds no context)
                del settings["ssl_disabled"]
                self._conn = pymysql.connect(**settings)
        except pymysql.Error as e:
            raise ServerError(f"cannot connect to MariaDB at {c.socket}: {_short(e)}") from e
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _query(self, statements: list[tuple[str, tuple]]) -> list[list[tuple]]:
        import pymysql

        conn = self._connect()
        try:
            out = []
            with conn.cursor() as cur:
                for text, args in statements:
                    cur.execute(text, args)
                    out.append(list(cur.fetchall()))
            return out
        except pymysql.err.OperationalError as e:
            self.close()  # perhaps the connection; the next op opens a new one
            raise ServerError(f"MariaDB: {_short(e)}") from e
        except pymysql.Error as e:
            raise ServerError(f"MariaDB: {_short(e)}") from e

    def databases(self) -> dict[str, DatabaseInfo]:
        """Every database whose comment names a domtool owner: name -> info. (Sizes are
        asked for those schemas only: information_schema.TABLES over every schema of
        the server costs tens of milliseconds.)"""
        (rows,) = self._query(
            [
                (
                    "SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA"
                    " WHERE SCHEMA_COMMENT LIKE %s ORDER BY SCHEMA_NAME",
                    (OWNER_COMMENT + "%",),
                )
            ]
        )
        sizes: dict[str, int] = {}
        if rows:
            marks = ", ".join(["%s"] * len(rows))
            (found,) = self._query(
                [
                    (
                        "SELECT TABLE_SCHEMA, COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0)"
                        f" FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ({marks})"
                        " GROUP BY TABLE_SCHEMA",
                        tuple(name for name, _c in rows),
                    )
                ]
            )
            sizes = {name: int(size) for name, size in found}
        return {
            name: DatabaseInfo(name, comment[len(OWNER_COMMENT) :], sizes.get(name, 0))
            for name, comment in rows
        }

    def roles(self) -> set[str]:
        (rows,) = self._query(
            [("SELECT User FROM mysql.user WHERE Host = %s AND User <> ''", (ACCOUNT_HOST,))]
        )
        return {r[0] for r in rows}

    def _account_exists(self, role: str) -> bool:
        """Whether the account ``'role'@'%'`` exists; PrivilegedRole if ANY account of
        that name has a global privilege (SUPER, CREATE USER, GRANT, ...: never a
        member's account, which holds only database-level grants)."""
        (rows,) = self._query(
            [("SELECT Host, Super_priv, Create_user_priv, Grant_priv, Select_priv,"
              " Insert_priv, Drop_priv, File_priv, Shutdown_priv, Process_priv"
              " FROM mysql.user WHERE User = %s", (role,))]
        )  # fmt: skip
        if any("Y" in privileges for _host, *privileges in rows):
            raise PrivilegedRole(f"account {role!r} has global privileges on this MariaDB server")
        return any(host == ACCOUNT_HOST for host, *_p in rows)

    def create(self, owner: str, name: str) -> None:
        statements: list[tuple[str, tuple]] = []
        if not self._account_exists(owner):
            statements.append(
                ("CREATE USER %s@%s IDENTIFIED VIA unix_socket", (owner, ACCOUNT_HOST))
            )
        statements += [
            (f"CREATE DATABASE {_ident(name)} COMMENT %s", (OWNER_COMMENT + owner,)),
            (f"GRANT ALL PRIVILEGES ON {_grant_db(name)}.* TO %s@%s", (owner, ACCOUNT_HOST)),
        ]
        self._query(statements)

    def drop(self, name: str) -> None:
        escaped = "".join("\\" + c if c in "_%\\" else c for c in name)
        (holders,) = self._query(
            [("SELECT User, Host, Db FROM mysql.db WHERE Db IN (%s, %s)", (escaped, name))]
        )
        statements: list[tuple[str, tuple]] = []
        for user, host, pattern in holders:
            # The grants of a dropped database would otherwise outlive it and apply to
            # any database created later under the same name. ``pattern`` is the
            # grant's database as stored (wildcards escaped as they were granted).
            db = "%%".join(dbnames.backtick(pattern).split("%"))
            statements.append((f"REVOKE ALL PRIVILEGES ON {db}.* FROM %s@%s", (user, host)))
        statements.append((f"DROP DATABASE {_ident(name)}", ()))
        self._query(statements)

    def set_password(self, role: str, password: str) -> bool:
        created = not self._account_exists(role)
        verb = "CREATE USER" if created else "ALTER USER"
        self._query(
            [
                (
                    f"{verb} %s@%s IDENTIFIED VIA unix_socket OR mysql_native_password USING %s",
                    (role, ACCOUNT_HOST, native_password_hash(password)),
                )
            ]
        )
        return created

    def grant(self, database: str, role: str) -> bool:
        created = not self._account_exists(role)
        statements: list[tuple[str, tuple]] = []
        if created:
            statements.append(
                ("CREATE USER %s@%s IDENTIFIED VIA unix_socket", (role, ACCOUNT_HOST))
            )
        statements.append(
            (f"GRANT ALL PRIVILEGES ON {_grant_db(database)}.* TO %s@%s", (role, ACCOUNT_HOST))
        )
        self._query(statements)
        return created

    def endpoint(self) -> dict[str, Any]:
        c = self.config
        return {"socket": c.socket, "host": c.tcp_address, "port": c.port}


def _short(e: BaseException) -> str:
    args = getattr(e, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(e)
    return (text.strip().splitlines() or [type(e).__name__])[0][:300]
