"""The slave's database ops against the REAL PostgreSQL 15 and MariaDB (one of each per
session, ``tests/db_servers.py``): the fake's contract, a member's own database accepting
them and refusing another member (TCP with the password ``db passwd`` set, and the Unix
identity over the socket), hostile and foreign names refused with nothing changed on the
server, and the drivers' identifier quoting round-tripping hostile names."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domtool.devsite import localdb
from domtool.protocol import DbArgs, DbGrantArgs, DbListArgs, DbPasswdArgs
from domtool.slave.agent import Refused
from domtool.slave.db_mysql import MariaDBConfig, MariaDBServer
from domtool.slave.db_postgres import PostgresConfig, PostgresServer
from domtool.slave.dbagent import DatabaseOps
from tests.slave.fake_dbserver import FakeDatabaseServer

pytestmark = pytest.mark.daemons

KINDS = ["postgres", "mysql"]


def real_server(request, kind: str):
    if kind == "postgres":
        running = request.getfixturevalue("postgres_server")
        server = PostgresServer(PostgresConfig(**running.slave_table()))
    else:
        running = request.getfixturevalue("mariadb_server")
        server = MariaDBServer(MariaDBConfig(**running.slave_table()))
    request.addfinalizer(server.close)  # its admin connection stays open between ops
    return server, running


def server_of(request, kind: str):
    if kind == "fake":
        return FakeDatabaseServer(), None
    return real_server(request, kind)


def dbops_for(server, kind: str, tmp_path) -> DatabaseOps:
    return DatabaseOps({kind: server}, audit_path=tmp_path / "audit.jsonl", host="db1")


@pytest.mark.parametrize("kind", ["fake", *KINDS])
def test_the_fake_and_the_real_servers_keep_the_same_contract(request, tmp_path, kind):
    """The same sequence gives the same answers on the fake and on both real servers."""
    server, _ = server_of(request, kind)
    k = "postgres" if kind == "fake" else kind
    d = dbops_for(server, k, tmp_path)
    o = f"con{kind[:2]}"  # an owner of this test only (the real servers are shared)
    seen = []
    seen.append(d.create(DbArgs(k, o, f"{o}_a"))["changed"])
    seen.append(d.create(DbArgs(k, o, f"{o}_a"))["changed"])
    seen.append(d.passwd(DbPasswdArgs(k, o, f"{o}_r", "pw-1"))["created"])
    seen.append(d.grant(DbGrantArgs(k, o, f"{o}_a", f"{o}_r"))["role_created"])
    seen.append(d.grant(DbGrantArgs(k, o, f"{o}_a", f"{o}_s"))["role_created"])
    listed = d.list(DbListArgs(o))
    seen.append([(x["name"], x["owner"]) for x in listed["databases"]])
    seen.append(listed["roles"][k])
    seen.append(all(isinstance(x["size"], int) and x["size"] >= 0 for x in listed["databases"]))
    with pytest.raises(Refused):
        d.drop(DbArgs(k, "other", f"{o}_a"))
    seen.append(d.drop(DbArgs(k, o, f"{o}_a"))["changed"])
    seen.append(d.list(DbListArgs(o))["databases"])
    assert seen == [
        True,
        False,
        True,
        False,
        True,
        [(f"{o}_a", o)],
        [o, f"{o}_r", f"{o}_s"],
        True,
        True,
        [],
    ]


# -- a member's database accepts them and refuses the others --------------------------


def connect_tcp(kind: str, running, user: str, password: str, database: str):
    if kind == "postgres":
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=running.port,
            user=user,
            password=password,
            dbname=database,
            connect_timeout=5,
        )
    import pymysql

    return pymysql.connect(
        host="127.0.0.1",
        port=running.port,
        user=user,
        password=password,
        database=database,
        connect_timeout=5,
    )


def refused_errors(kind: str):
    if kind == "postgres":
        import psycopg

        return psycopg.OperationalError
    import pymysql

    return pymysql.err.OperationalError


@pytest.mark.parametrize("kind", KINDS)
def test_a_member_connects_to_its_own_database_and_is_refused_on_anothers(request, tmp_path, kind):
    server, running = real_server(request, kind)
    d = dbops_for(server, kind, tmp_path)
    a, b = f"tcpa{kind[:2]}", f"tcpb{kind[:2]}"
    d.create(DbArgs(kind, a, f"{a}_db"))
    d.create(DbArgs(kind, b, f"{b}_db"))
    d.passwd(DbPasswdArgs(kind, a, a, "a-secret"))
    d.passwd(DbPasswdArgs(kind, b, b, "b-secret"))
    conn = connect_tcp(kind, running, a, "a-secret", f"{a}_db")
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE t (x int)")
        cur.execute("INSERT INTO t VALUES (42)")
        cur.execute("SELECT x FROM t")
        assert cur.fetchall() in ([(42,)], ((42,),))
        if kind == "mysql":
            conn.commit()
    finally:
        conn.close()
    with pytest.raises(refused_errors(kind)) as e:
        connect_tcp(kind, running, a, "a-secret", f"{b}_db").close()
    assert "denied" in str(e.value).lower()
    with pytest.raises(refused_errors(kind)):
        connect_tcp(kind, running, b, "a-secret", f"{b}_db").close()  # wrong password
    # A role alice granted may use her database.
    d.passwd(DbPasswdArgs(kind, a, f"{a}_ro", "ro-secret"))
    with pytest.raises(refused_errors(kind)):
        connect_tcp(kind, running, f"{a}_ro", "ro-secret", f"{a}_db").close()
    d.grant(DbGrantArgs(kind, a, f"{a}_db", f"{a}_ro"))
    connect_tcp(kind, running, f"{a}_ro", "ro-secret", f"{a}_db").close()
    # Sizes as the server reports them: alice's table is counted.
    sizes = {x["name"]: x["size"] for x in d.list(DbListArgs(a))["databases"]}
    assert sizes[f"{a}_db"] > 0


def _client(kind: str, running, database: str) -> list[str]:
    if kind == "postgres":
        psql = str(localdb.postgres_bindir() / "psql")
        return [psql, "-h", str(running.socket_dir), "-p", str(running.port), "-d", database]
    client = shutil.which("mariadb") or shutil.which("mysql")
    return [client, f"--socket={running.socket}", "-u", "nobody", "-D", database]


@pytest.mark.parametrize("kind", KINDS)
def test_the_unix_identity_is_the_role_over_the_socket(request, tmp_path, kind):
    """The Unix user ``nobody`` (no password anywhere) reaches its own database over the
    socket (PostgreSQL peer, MariaDB unix_socket) and is refused on another's."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another Unix user")
    server, running = real_server(request, kind)
    d = dbops_for(server, kind, tmp_path)
    d.create(DbArgs(kind, "nobody", "nobody"))
    d.create(DbArgs(kind, f"peer{kind[:2]}", f"peer{kind[:2]}_db"))
    q = ["-Atc", "SELECT current_user"] if kind == "postgres" else ["-Nse", "SELECT USER()"]

    def as_nobody(database: str):
        return subprocess.run(
            _client(kind, running, database) + q,
            capture_output=True,
            text=True,
            timeout=30,
            user=65534,
            group=65534,
            extra_groups=[],
            cwd="/",
        )

    own = as_nobody("nobody")
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip().split("@")[0] == "nobody"
    other = as_nobody(f"peer{kind[:2]}_db")
    assert other.returncode != 0 and "denied" in other.stderr.lower(), other.stderr


# -- hostile names ---------------------------------------------------------------------

HOSTILE = [
    "bob_db",
    "alice_x`; DROP DATABASE mysql; --",
    'alice_x"; DROP DATABASE postgres; --',
    "alice_x' OR '1'='1",
    "alice_%",
    "alice\\_x",
    "alice_x\x00y",
    "alice_ü",
    "ALICE_X",
    "root",
    "alice_" + "y" * 64,
]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_and_foreign_names_are_refused_and_nothing_changes(request, tmp_path, kind):
    server, _ = real_server(request, kind)
    d = dbops_for(server, kind, tmp_path)
    owner = f"hos{kind[:2]}"
    d.create(DbArgs(kind, owner, owner))

    def held():  # names and owners (sizes move on their own), and the roles
        return {n: i.owner for n, i in server.databases().items()}, server.roles()

    before = held()
    for name in HOSTILE:
        n = name.replace("alice", owner)
        for call in (
            lambda n=n: d.create(DbArgs(kind, owner, n)),
            lambda n=n: d.drop(DbArgs(kind, owner, n)),
            lambda n=n: d.passwd(DbPasswdArgs(kind, owner, n, "x")),
            lambda n=n: d.grant(DbGrantArgs(kind, owner, owner, n)),
        ):
            with pytest.raises(Refused) as e:
                call()
            assert f"{owner}'s" in e.value.message, e.value.message
    assert held() == before


ident_chars = st.sampled_from(list("abcXYZ019_-%$`'\";\\/. ()*?=@#") + ["é", "☃", "ß"])


@pytest.mark.parametrize("kind", KINDS)
def test_identifier_quoting_round_trips_hostile_names_on_the_server(request, kind):
    """Bypassing the grammar on purpose: the drivers' quoting alone (psycopg's
    sql.Identifier; backticks with doubling, and escaped grant wildcards) creates a
    database of EXACTLY the hostile name, owned as recorded, and drops exactly it."""
    server, _ = real_server(request, kind)
    owner = f"quo{kind[:2]}"

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.text(ident_chars, min_size=1, max_size=20))
    def round_trip(name):
        name = name.rstrip(" ") or "x"
        if kind == "mysql" and name[-1] in "./":
            name += "x"  # MariaDB's own rule for names, not ours
        others = set(server.databases())
        server.create(owner, name)
        try:
            held = server.databases()
            assert held[name].owner == owner
            assert set(held) - others == {name}
        finally:
            server.drop(name)
        assert set(server.databases()) == others

    round_trip()


@pytest.mark.parametrize("kind", KINDS)
def test_a_privileged_role_of_the_server_is_never_touched(request, tmp_path, kind):
    """A role that is a superuser (PostgreSQL) or holds global privileges (MariaDB) on the
    server, under a member's prefix by name, is refused: no password set, no database."""
    server, _ = real_server(request, kind)
    d = dbops_for(server, kind, tmp_path)
    role = f"priv{kind[:2]}"
    if kind == "postgres":
        server._run([f"CREATE ROLE {role} SUPERUSER"])
    else:
        server._query([(f"CREATE USER '{role}'@'localhost'", ()),
                       (f"GRANT ALL ON *.* TO '{role}'@'localhost'", ())])  # fmt: skip
    before = {n: i.owner for n, i in server.databases().items()}
    for call in (
        lambda: d.passwd(DbPasswdArgs(kind, role, role, "take-over")),
        lambda: d.create(DbArgs(kind, role, f"{role}_db")),
    ):
        with pytest.raises(Refused, match="privileged|global privileges"):
            call()
    assert {n: i.owner for n, i in server.databases().items()} == before
    assert [e for e in (tmp_path / "audit.jsonl").read_text().splitlines() if "refused" in e]
