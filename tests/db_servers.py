"""Session fixtures: one real PostgreSQL and one real MariaDB for every daemons test.

Each is started ONCE per test session (``domtool.devsite.localdb``) on a data directory
of its own under a fresh ``/tmp/domtool-dbtest-*`` (reachable by the ``postgres`` and
``mysql`` users when the tests run as root), with its own socket and a free loopback
port, and stopped (and the tree removed) at the end of the session. Outside CI a missing
server skips the test; with CI=true it fails."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from domtool.devsite import localdb
from tests.conftest import IN_CI


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not installed (CI must install it: see scripts/setup)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def db_tree():
    root = Path(tempfile.mkdtemp(prefix="domtool-dbtest-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(db_tree):
    """A running ``localdb.Postgres`` (superuser reached by peer from this process)."""
    if localdb.postgres_bindir() is None:
        _missing("PostgreSQL (initdb, postgres)")
    server = localdb.start_postgres(db_tree / "postgres")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server(db_tree):
    """A running ``localdb.MariaDB`` (root reached by unix_socket from this process)."""
    if localdb.mariadb_binaries() is None:
        _missing("MariaDB (mariadb-install-db, mariadbd)")
    server = localdb.start_mariadb(db_tree / "mariadb")
    yield server
    server.stop()
