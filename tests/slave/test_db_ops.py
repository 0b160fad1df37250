"""The slave's database ops (``domtool.slave.dbagent``) over the fake server: the closed
schemas, the re-check before any SQL (names, prefix, owner on the server), the audit
without passwords. The fake is checked against the real servers in test_db_daemons.py."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock

from domtool import wire
from domtool.protocol import DbArgs, DbGrantArgs, DbListArgs, DbPasswdArgs
from domtool.slave import ops
from domtool.slave.agent import Agent, Failed, Refused
from domtool.slave.dbagent import DatabaseOps
from tests.slave.fake_dbserver import FakeDatabaseServer


@pytest.fixture
def fake():
    return FakeDatabaseServer()


@pytest.fixture
def dbops(fake, tmp_path):
    return DatabaseOps({"postgres": fake}, audit_path=tmp_path / "audit.jsonl", host="db1")


def audit(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_every_db_op_is_in_the_closed_tables():
    assert {"db_create", "db_drop", "db_list", "db_passwd", "db_grant"} <= wire.SLAVE_OPS
    assert set(ops.OP_SCHEMAS) == wire.SLAVE_OPS
    agent = Agent(None, host="h", state_dir="/nonexistent", clock=Clock())
    # tls_update is answered by the slave's listener itself (slave/tlsupdate.py)
    assert set(agent.OPS) == wire.SLAVE_OPS - {"tls_update"}


@pytest.mark.parametrize(
    "op, args, where",
    [
        ("db_create", {"kind": "oracle", "owner": "alice", "name": "alice"}, "kind"),
        ("db_create", {"kind": "postgres", "owner": "Alice!", "name": "alice"}, "owner"),
        ("db_create", {"kind": "postgres", "owner": "alice", "name": "a" * 65}, "name"),
        ("db_create", {"kind": "postgres", "owner": "alice", "name": "alice", "x": 1}, "unknown"),
        ("db_drop", {"kind": "postgres", "owner": "alice"}, "name"),
        (
            "db_passwd",
            {"kind": "mysql", "owner": "alice", "role": "alice", "password": 7},
            "password",
        ),
        ("db_grant", {"kind": "mysql", "owner": "alice", "database": "alice"}, "role"),
        ("db_list", {"owner": ["alice"]}, "owner"),
    ],
)
def test_bad_arguments_are_refused_by_the_schema(op, args, where):
    with pytest.raises(ops.BadArgs) as e:
        ops.parse(op, args)
    assert where in str(e.value)


def test_a_password_is_never_in_a_repr():
    args = ops.parse(
        "db_passwd", {"kind": "mysql", "owner": "alice", "role": "alice", "password": "s3cret"}
    )
    assert "s3cret" not in repr(args) and args.password == "s3cret"


def test_create_then_list_drop(dbops, fake, tmp_path):
    out = dbops.create(DbArgs("postgres", "alice", "alice_blog"))
    assert (
        out["changed"] and out["name"] == "alice_blog" and fake.dbs["alice_blog"].owner == "alice"
    )
    listed = dbops.list(DbListArgs("alice"))
    assert [d["name"] for d in listed["databases"]] == ["alice_blog"]
    assert listed["databases"][0]["size"] == 1000 and listed["roles"] == {"postgres": ["alice"]}
    assert dbops.list(DbListArgs("bob"))["databases"] == []
    again = dbops.create(DbArgs("postgres", "alice", "alice_blog"))
    assert again["changed"] is False and again["message"] == "already exists"
    dbops.drop(DbArgs("postgres", "alice", "alice_blog"))
    assert fake.dbs == {}
    assert [(e["op"], e["outcome"]) for e in audit(tmp_path)] == [
        ("db_create", "applied"),
        ("db_create", "unchanged"),
        ("db_drop", "applied"),
    ]


@pytest.mark.parametrize(
    "name",
    ["bob_blog", "alice blog", "alice_x`; drop database bob", 'alice_"', "root", "ALICE", ""],
)
def test_a_name_outside_the_prefix_never_reaches_the_server(dbops, fake, tmp_path, name):
    for call in (
        lambda: dbops.create(DbArgs("postgres", "alice", name)),
        lambda: dbops.drop(DbArgs("postgres", "alice", name)),
        lambda: dbops.grant(DbGrantArgs("postgres", "alice", name, "alice")),
        lambda: dbops.grant(DbGrantArgs("postgres", "alice", "alice", name)),
        lambda: dbops.passwd(DbPasswdArgs("postgres", "alice", name, "pw")),
    ):
        with pytest.raises(Refused) as e:
            call()
        assert "alice's" in e.value.message
    assert fake.calls == []
    assert {e["outcome"] for e in audit(tmp_path)} == {"refused"}


def test_another_members_database_is_refused_and_kept(dbops, fake):
    dbops.create(DbArgs("postgres", "bob", "bob_shop"))
    # alice_x is alice's name, but suppose the server says bob owns it (a stale record):
    fake.create("bob", "alice_x")
    fake.calls.clear()
    for call in (
        lambda: dbops.drop(DbArgs("postgres", "alice", "alice_x")),
        lambda: dbops.grant(DbGrantArgs("postgres", "alice", "alice_x", "alice")),
        lambda: dbops.create(DbArgs("postgres", "alice", "alice_x")),
    ):
        with pytest.raises(Refused, match="not alice's"):
            call()
    assert fake.writes() == [] and set(fake.dbs) == {"bob_shop", "alice_x"}


def test_drop_or_grant_of_a_missing_database_is_refused(dbops, fake):
    with pytest.raises(Refused, match="alice has no postgres database 'alice_x'"):
        dbops.drop(DbArgs("postgres", "alice", "alice_x"))
    with pytest.raises(Refused, match="alice has no postgres database"):
        dbops.grant(DbGrantArgs("postgres", "alice", "alice_x", "alice_r"))
    assert fake.writes() == []


def test_passwd_and_grant(dbops, fake, tmp_path):
    dbops.create(DbArgs("postgres", "alice", "alice"))
    out = dbops.passwd(DbPasswdArgs("postgres", "alice", "alice_web", "hunter2"))
    assert out == {"kind": "postgres", "role": "alice_web", "created": True, "changed": True}
    g = dbops.grant(DbGrantArgs("postgres", "alice", "alice", "alice_web"))
    assert g["role_created"] is False and ("alice", "alice_web") in fake.grants
    assert "hunter2" not in (tmp_path / "audit.jsonl").read_text()
    with pytest.raises(Refused, match="empty"):
        dbops.passwd(DbPasswdArgs("postgres", "alice", "alice", ""))


def test_a_kind_this_host_does_not_serve_is_refused(dbops, fake):
    with pytest.raises(Refused, match="serves no mysql databases"):
        dbops.create(DbArgs("mysql", "alice", "alice"))
    assert fake.calls == []


def test_a_server_failure_is_failed_and_audited(dbops, fake, tmp_path):
    fake.down = True
    with pytest.raises(Failed, match="cannot connect"):
        dbops.create(DbArgs("postgres", "alice", "alice"))
    assert audit(tmp_path)[-1]["outcome"] == "failed"
    listed = dbops.list(DbListArgs("alice"))
    assert listed["databases"] == [] and "cannot connect" in listed["errors"]["postgres"]


def test_the_agent_dispatches_db_ops_and_a_host_without_servers_refuses(fake, tmp_path):
    agent = Agent(
        None,
        host="db1",
        state_dir=tmp_path,
        clock=Clock(),
        databases=DatabaseOps({"postgres": fake}, host="db1"),
    )
    out: list = []
    agent.handle(
        "db_create", ops.parse("db_create", {"kind": "postgres", "owner": "alice", "name": "alice"})
    ).addBoth(out.append)
    assert out[0]["changed"] is True
    bare = Agent(None, host="web1", state_dir=tmp_path, clock=Clock())
    out.clear()
    bare.handle("db_list", ops.parse("db_list", {})).addBoth(out.append)
    assert out[0]["databases"] == [] and out[0]["kinds"] == []
    out.clear()
    bare.handle(
        "db_create", ops.parse("db_create", {"kind": "mysql", "owner": "alice", "name": "alice"})
    ).addBoth(out.append)
    assert isinstance(out[0].value, Refused) and "web1 serves no mysql" in out[0].value.message


def test_slave_toml_names_the_database_servers(tmp_path):
    from domtool.slave import config as slave_config
    from domtool.slave.config import ConfigError
    from domtool.slave.db_mysql import MariaDBServer
    from domtool.slave.db_postgres import PostgresServer
    from domtool.slave.dbagent import build_servers

    base = """
[slave]
host = "db1.example.coop"
dispatcher = ["dispatcher.example.coop"]
state_dir = "state"
[tls]
certificate = "c.pem"
key = "k.pem"
ca = "ca.pem"
crl = "crl.pem"
"""
    c = slave_config.parse(
        base
        + '[databases.postgres]\nsocket_dir = "run/pg"\nport = 5433\n'
        + '[databases.mysql]\nsocket = "run/mysqld.sock"\n',
        str(tmp_path),
    )
    servers = build_servers(c.databases)
    assert isinstance(servers["postgres"], PostgresServer)
    assert servers["postgres"].config.socket_dir == str(tmp_path / "run/pg")
    assert servers["postgres"].config.port == 5433
    assert isinstance(servers["mysql"], MariaDBServer)
    assert servers["mysql"].config.socket == str(tmp_path / "run/mysqld.sock")
    with pytest.raises(ConfigError, match="postgres or mysql"):
        slave_config.parse(base + "[databases.oracle]\nx = 1\n", str(tmp_path))
    bad = slave_config.parse(base + '[databases.mysql]\nsockets = "x"\n', str(tmp_path))
    with pytest.raises(ConfigError, match="unknown key"):
        build_servers(bad.databases)


def test_close_closes_every_servers_admin_connection(dbops, fake):
    dbops.close()
    assert fake.calls == [("close",)]
