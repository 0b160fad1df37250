"""Run a real PostgreSQL 15 and MariaDB on loopback, each on a data directory of its own.

Used by ``domtool-quickstart`` and the ``daemons`` tests (started once per session):

- :func:`start_postgres`: ``initdb`` (no fsync), then ``postgres`` on ``root/data`` with its
  socket in ``root/run`` and TCP on 127.0.0.1:PORT. Authentication is a site's: ``peer``
  over the socket with the ident map ``domtool`` (the invoking Unix user, the slave, is
  the superuser ``postgres``; every other Unix user is the role of the same name) and
  ``scram-sha-256`` over TCP.
- :func:`start_mariadb`: ``mariadb-install-db`` (root by ``unix_socket``, no test
  database, no anonymous accounts), then ``mariadbd`` on ``root/data``, socket
  ``root/run/mysqld.sock``, TCP on 127.0.0.1:PORT.

Neither server runs as root: when invoked as root they run as the packages' ``postgres``
and ``mysql`` users (their trees are chowned to them), otherwise as the invoking user.
Both run in the foreground as children (:class:`localdaemons.Daemon`), so ``stop()``
leaves nothing behind. ``root`` must be reachable by that user (not under a 0700
directory such as pytest's ``/tmp/pytest-of-root``).
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import attrs

from domtool.devsite import localdaemons as L

__all__ = [
    "MariaDB",
    "Postgres",
    "mariadb_binaries",
    "postgres_bindir",
    "reachable_by_others",
    "start_mariadb",
    "start_postgres",
]

#: the servers' and their setup tools' environment (nothing of the invoking user's)
_ENV = {"PATH": L.SBIN, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

PG_BINDIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")


def postgres_bindir() -> Path | None:
    """The directory of ``initdb`` and ``postgres`` (Debian's versioned one), or None."""
    for d in PG_BINDIRS:
        if (Path(d) / "initdb").exists() and (Path(d) / "postgres").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def mariadb_binaries() -> tuple[str, str] | None:
    """(``mariadb-install-db``, ``mariadbd``) or None when MariaDB is not installed."""
    install = L.binary("mariadb-install-db") or L.binary("mysql_install_db")
    server = L.binary("mariadbd") or L.binary("mysqld")
    return (install, server) if install and server else None


def reachable_by_others(path: Path) -> bool:
    """Whether every directory from / down to ``path`` lets others through (o+x), as
    the servers' own users need when we are root."""
    p = path.resolve()
    for d in [p, *p.parents]:
        try:
            if not d.stat().st_mode & 0o001:
                return False
        except FileNotFoundError:
            continue
    return True


def _run_as(service_user: str) -> tuple[str, int | None, int | None]:
    """The user a server runs as: the package's account when we are root, else us."""
    if os.geteuid() == 0:
        pw = pwd.getpwnam(service_user)
        return service_user, pw.pw_uid, pw.pw_gid
    return getpass.getuser(), None, None


def _chown_tree(path: Path, uid: int | None, gid: int | None) -> None:
    if uid is None:
        return
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, uid, gid)
        for n in dirnames + filenames:
            os.chown(os.path.join(dirpath, n), uid, gid, follow_symlinks=False)


@attrs.frozen
class _Tree:
    """Where a server runs and as whom (see :func:`_server_tree`)."""

    run_user: str
    uid: int | None
    gid: int | None
    data: Path
    run: Path


def _server_tree(root: Path, service_user: str) -> _Tree:
    """``root`` (0755) with its ``run`` directory (0755), owned by the user the server
    runs as (:func:`_run_as`); the data directory is ``root/data`` (made by the server's
    setup tool)."""
    run_user, uid, gid = _run_as(service_user)
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    run = root / "run"
    run.mkdir(exist_ok=True)
    run.chmod(0o755)
    _chown_tree(root, uid, gid)
    return _Tree(run_user, uid, gid, root / "data", run)


@attrs.define
class _Server:
    """A running database server: its daemon and root."""

    daemon: L.Daemon
    root: Path

    def stop(self) -> int | None:
        return self.daemon.stop()


def _setup(argv: list[str], uid, gid, what: str, timeout: float = 120) -> None:
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        **L.as_user(uid, gid),
        env=_ENV,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
        )


# ---------------------------------------------------------------------------
# PostgreSQL


@attrs.define
class Postgres(_Server):
    """A running PostgreSQL: its daemon, socket directory, TCP port, superuser."""

    socket_dir: Path
    port: int
    admin_user: str = "postgres"

    def slave_table(self) -> dict:
        """The slave's ``[databases.postgres]`` settings for this server."""
        return {
            "socket_dir": str(self.socket_dir),
            "port": self.port,
            "admin_user": self.admin_user,
        }


def start_postgres(root: Path, port: int | None = None, timeout: float = 60.0) -> Postgres:
    """initdb ``root/data`` and run postgres on it (see the module docstring)."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb/postgres)")
    port = port or L.free_port()
    tree = _server_tree(root, "postgres")
    run_user, uid, gid, data, run = tree.run_user, tree.uid, tree.gid, tree.data, tree.run
    me = getpass.getuser()
    _setup(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
        ],
        uid,
        gid,
        "initdb",
    )
    (data / "pg_hba.conf").write_text(
        "# domtool test/local site: peer over the socket (ident map domtool), passwords over TCP\n"
        "local all all peer map=domtool\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    (data / "pg_ident.conf").write_text(
        f"domtool {me} postgres\n"
        + (f"domtool {run_user} postgres\n" if run_user != me else "")
        # every other Unix user is the role of the same name
        + "domtool /^(.*)$ \\1\n"
    )
    _chown_tree(data, uid, gid)
    argv = [
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-k",
        str(run),
        "-p",
        str(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        "-c",
        "synchronous_commit=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "shared_buffers=16MB",
        "-c",
        "max_connections=40",
        "-c",
        "password_encryption=scram-sha-256",
    ]

    def ready() -> bool:
        done = subprocess.run(
            [str(bindir / "pg_isready"), "-h", str(run), "-p", str(port), "-U", "postgres", "-q"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    d = L.start(
        "postgres",
        argv,
        root / "postgres.log",
        ready,
        what=f"postgres accepting connections on {port}",
        timeout=timeout,
        uid=uid,
        gid=gid,
        env=_ENV,
        stop_timeout=20.0,
    )
    return Postgres(d, root, run, port)


# ---------------------------------------------------------------------------
# MariaDB


@attrs.define
class MariaDB(_Server):
    """A running MariaDB: its daemon, socket, TCP port."""

    socket: Path
    port: int
    admin_user: str = "root"

    def slave_table(self) -> dict:
        """The slave's ``[databases.mysql]`` settings for this server."""
        return {"socket": str(self.socket), "port": self.port, "admin_user": self.admin_user}


def start_mariadb(root: Path, port: int | None = None, timeout: float = 60.0) -> MariaDB:
    """mariadb-install-db ``root/data`` and run mariadbd on it (see the module docstring)."""
    found = mariadb_binaries()
    if found is None:
        raise RuntimeError("MariaDB is not installed (no mariadb-install-db/mariadbd)")
    install, server = found
    port = port or L.free_port()
    tree = _server_tree(root, "mysql")
    uid, gid, data, run = tree.uid, tree.gid, tree.data, tree.run
    me = getpass.getuser()
    _setup(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--auth-root-authentication-method=socket",
            f"--auth-root-socket-user={me}",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        uid,
        gid,
        "mariadb-install-db",
    )
    sock = run / "mysqld.sock"
    argv = [
        server,
        "--no-defaults",
        f"--datadir={data}",
        f"--socket={sock}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--pid-file={run / 'mysqld.pid'}",
        f"--log-error={root / 'error.log'}",
        "--skip-name-resolve",
        "--skip-log-bin",
        "--innodb-buffer-pool-size=16M",
        "--innodb-log-file-size=8M",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-doublewrite=0",
        "--max-connections=40",
    ]
    d = L.start(
        "mariadbd",
        argv,
        root / "mariadbd.log",
        lambda: sock.exists() and L.connects(port),
        what=f"mariadbd accepting connections on {port}",
        timeout=timeout,
        also_logs=(root / "error.log",),
        uid=uid,
        gid=gid,
        env=_ENV,
        stop_timeout=30.0,
    )
    return MariaDB(d, root, sock, port, admin_user=me)
