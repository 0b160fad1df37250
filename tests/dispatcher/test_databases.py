"""``db_*`` member ops at the dispatcher (``domtool.dispatcher.databases``): names outside
the member's prefix, another member's names and databases are refused BEFORE any host is
asked; the quota counts the databases the server reports; drop is a dry run unless
apply; the audit never holds a password. The database host is a real slave Agent with
DatabaseOps over the fake server (its contract with the real servers:
tests/slave/test_db_daemons.py)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from domtool import protocol
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.controller import Controller
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.model import Node, Site
from domtool.slave.agent import Agent
from domtool.slave.dbagent import DatabaseOps
from tests.agent_link import AgentLink
from tests.dispatcher.harness import ALICE, BOB, ROOT, Dispatcher, make_dispatcher
from tests.slave.fake_dbserver import FakeDatabaseServer

SITE = Site(nodes=(Node("ns1", ("dns",)), Node("web1", ("web", "mail")), Node("db1", ("db",))))


@pytest.fixture
def servers():
    return {"postgres": FakeDatabaseServer("postgres"), "mysql": FakeDatabaseServer("mysql")}


@pytest.fixture
def dispatcher(servers, tmp_path) -> Dispatcher:
    base = make_dispatcher()
    agent = Agent(
        None,
        host="db1",
        state_dir=tmp_path,
        clock=Clock(),
        databases=DatabaseOps(servers, host="db1", audit_path=tmp_path / "db-audit.jsonl"),
    )
    slaves = {"ns1": FakeSlave("ns1"), "web1": FakeSlave("web1")}
    links = {h: FakeLink(h, s) for h, s in slaves.items()}
    links["db1"] = AgentLink("db1", agent)
    coordinator = Coordinator(base.store, links, base.clock)
    controller = Controller(base.store, SITE, coordinator, site_domains=("coop.example",))
    return Dispatcher(base.store, base.clock, slaves, links, coordinator, controller)


def db_calls(d: Dispatcher) -> list[str]:
    return [op for op, _ in d.links["db1"].calls]


def test_create_list_and_drop(dispatcher, servers):
    out = dispatcher.run(ALICE, "db_create", kind="postgres", name="alice_blog")
    assert out["changed"] and out["host"] == "db1" and out["quota"] == {"used": 1, "limit": 20}
    assert servers["postgres"].dbs["alice_blog"].owner == "alice"
    dispatcher.run(ALICE, "db_create", kind="mysql", name="alice")
    listed = dispatcher.run(ALICE, "db_list")
    assert [(x["kind"], x["name"], x["size"]) for x in listed["databases"]] == [
        ("mysql", "alice", 1000),
        ("postgres", "alice_blog", 1000),
    ]
    assert dispatcher.run(BOB, "db_list")["databases"] == []
    dry = dispatcher.run(ALICE, "db_drop", kind="postgres", name="alice_blog")
    assert dry["apply"] is False and "dry run" in dry["message"]
    assert "alice_blog" in servers["postgres"].dbs and "db_drop" not in db_calls(dispatcher)
    gone = dispatcher.run(ALICE, "db_drop", kind="postgres", name="alice_blog", apply=True)
    assert gone["apply"] and "alice_blog" not in servers["postgres"].dbs
    actions = [(e.action, e.outcome) for e in dispatcher.store.audit_log(who="alice")]
    assert ("db_create", "applied") in actions and ("db_drop", "applied") in actions


@pytest.mark.parametrize(
    "name, why",
    [
        ("bob_blog", "must be 'alice' or start with 'alice_'"),
        ("alice blog", "contains ' '"),
        ("alice_x`; DROP DATABASE bob", "contains '`'"),
        ('alice_x"; DROP DATABASE postgres; --', "contains '\"'"),
        ("root", "must be 'alice'"),
        ("", "must not be empty"),
    ],
)
def test_a_name_outside_the_prefix_is_refused_before_any_host_is_asked(
    dispatcher, servers, name, why
):
    for op, args in (
        ("db_create", {"kind": "postgres", "name": name}),
        ("db_drop", {"kind": "postgres", "name": name, "apply": True}),
        ("db_passwd", {"kind": "mysql", "role": name, "password": "pw"}),
        ("db_grant", {"kind": "mysql", "database": name, "role": "alice"}),
        ("db_grant", {"kind": "mysql", "database": "alice", "role": name}),
    ):
        e = dispatcher.refusal(ALICE, op, **args)
        assert e.failure.kind == "refused" and why in e.failure.message, e.failure.message
    assert db_calls(dispatcher) == []
    assert all(s.calls == [] for s in servers.values())


def test_a_drop_of_another_members_database_never_reaches_the_server(dispatcher, servers):
    dispatcher.run(BOB, "db_create", kind="postgres", name="bob_shop")
    dispatcher.links["db1"].calls.clear()
    servers["postgres"].calls.clear()
    e = dispatcher.refusal(ALICE, "db_drop", kind="postgres", name="bob_shop", apply=True)
    assert "must be 'alice' or start with 'alice_'" in e.failure.message
    assert db_calls(dispatcher) == [] and servers["postgres"].calls == []
    assert "bob_shop" in servers["postgres"].dbs
    refused = [e for e in dispatcher.store.audit_log(who="alice") if e.action == "db_drop"]
    assert refused and refused[0].outcome == "refused"


def test_a_longer_member_prefix_owns_the_name(dispatcher):
    """With a member alice_b, ``alice_b_x`` is alice_b's, not alice's."""
    dispatcher.store.add_member("alice_b")
    e = dispatcher.refusal(ALICE, "db_create", kind="postgres", name="alice_b_x")
    assert "under alice_b's prefix" in e.failure.message and db_calls(dispatcher) == []
    dispatcher.run(ALICE, "db_create", kind="postgres", name="alice_bx")


def test_databases_count_against_the_quota(dispatcher, servers):
    dispatcher.run(ROOT, "set_quota", user="alice", resource="databases", value=2)
    dispatcher.run(ALICE, "db_create", kind="postgres", name="alice")
    dispatcher.run(ALICE, "db_create", kind="mysql", name="alice")
    e = dispatcher.refusal(ALICE, "db_create", kind="postgres", name="alice_3")
    assert e.failure.kind == "policy" and "quota is 2" in e.failure.message
    assert "alice_3" not in servers["postgres"].dbs
    assert db_calls(dispatcher).count("db_create") == 2
    q = dispatcher.run(ROOT, "quota", user="alice")
    assert q["usage"]["databases"] == 2 and q["limits"]["databases"] == 2
    assert q["databases"]["total_size"] == 2000
    assert {(x["kind"], x["name"], x["size"]) for x in q["databases"]["databases"]} == {
        ("postgres", "alice", 1000),
        ("mysql", "alice", 1000),
    }


def test_passwd_and_grant_keep_the_password_out_of_the_audit(dispatcher, servers):
    dispatcher.run(ALICE, "db_create", kind="mysql", name="alice_app")
    out = dispatcher.run(ALICE, "db_passwd", kind="mysql", role="alice_web", password="s3cr3t!")
    assert out["created"] is True and servers["mysql"].passwords["alice_web"] == "s3cr3t!"
    g = dispatcher.run(ALICE, "db_grant", kind="mysql", database="alice_app", role="alice_web")
    assert g["role"] == "alice_web" and ("alice_app", "alice_web") in servers["mysql"].grants
    log = repr([(e.action, e.detail, e.outcome) for e in dispatcher.store.audit_log()])
    assert "db_passwd" in log and "s3cr3t!" not in log
    assert "s3cr3t!" not in repr(dispatcher.links["db1"].calls[-1])  # the grant's args
    e = dispatcher.refusal(ALICE, "db_grant", kind="mysql", database="alice_none", role="alice")
    assert "alice has no mysql database 'alice_none'" in e.failure.message


def test_the_schema_refuses_bad_db_arguments_before_any_logic():
    with pytest.raises(protocol.SchemaError, match="kind: must be one of mysql, postgres"):
        protocol.validate_args("db_create", {"kind": "oracle", "name": "alice"})
    with pytest.raises(protocol.SchemaError, match="too long"):
        protocol.validate_args("db_create", {"kind": "mysql", "name": "a" * 65})
    with pytest.raises(protocol.SchemaError, match="too long"):
        protocol.validate_args(
            "db_passwd", {"kind": "mysql", "role": "alice", "password": "x" * 1025}
        )
    with pytest.raises(protocol.SchemaError, match="unknown field"):
        protocol.validate_args("db_list", {"owner": "bob"})


def test_a_site_without_a_database_host_says_so():
    d = make_dispatcher()
    e = d.refusal(ALICE, "db_create", kind="postgres", name="alice")
    assert "no database host" in e.failure.message
    assert d.run(ROOT, "quota", user="alice")["databases"] == {"databases": [], "total_size": 0}
