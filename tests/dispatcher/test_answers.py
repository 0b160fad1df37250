"""Every answer the dispatcher gives members and admins is one of ``domtool.protocol``'s
reply classes, byte for byte: the class the CLI reads it with decodes it (``read`` is not
None) and writes it back unchanged, so the CLIs never fall back to showing raw JSON for
what this dispatcher sends."""

from __future__ import annotations

import json

import pytest

from domtool import protocol
from domtool.dispatcher import ca
from domtool.mailhash import sha512_crypt

from .harness import ALICE, ROOT, example, files, make_dispatcher


def _same(cls: type, answer) -> object:
    """``answer`` (as JSON) read by ``cls`` and written back is itself."""
    sent = json.loads(json.dumps(answer))
    read = cls.read(sent)
    assert read is not None, (cls.__name__, sent)
    assert read.to_json() == sent, cls.__name__
    return read


@pytest.fixture
def d(tmp_path):
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")
    d = make_dispatcher(ca_dir=ca_dir)
    return d


def test_the_answers_to_a_member_are_protocol_replies(d):
    org, net = files(example_org=example("example.org")), files(example_net=example("example.net"))
    _same(protocol.CheckAnswer, d.run(ALICE, "check", files=org))
    plan = _same(protocol.PlanAnswer, d.run(ALICE, "plan", files=org))
    assert plan.ok and plan.hosts
    for diff in plan.hosts.values():
        _same(protocol.HostDiff, diff)
    change = _same(protocol.ChangeAnswer, d.run(ALICE, "submit", files=org))
    assert change.applied and change.hosts and change.versions == {"example.org": 1}
    _same(protocol.ChangeAnswer, d.run(ALICE, "submit", files=net))
    _same(protocol.ChangeAnswer, d.run(ALICE, "submit", files=org))
    perms = _same(protocol.PermsAnswer, d.run(ALICE, "perms"))
    assert ("domain", "example.org") in perms.pairs()
    history = _same(protocol.HistoryAnswer, d.run(ALICE, "history", domain="example.org"))
    assert [v.version for v in history.versions] == [1, 2]
    described = _same(protocol.DescribeResult, d.run(ALICE, "describe", domain="example.org"))
    assert described.hosts and all(
        protocol.DescribeAnswer.read(h) is not None for h in described.hosts.values()
    )
    _same(protocol.ChangeAnswer, d.run(ALICE, "undo", domain="example.org", version=1))
    added = d.run(ALICE, "vmail", action="add", domain="example.net", user="info", hash=H)
    _same(protocol.VmailResult, added)
    listed = _same(protocol.VmailResult, d.run(ALICE, "vmail", action="list"))
    assert [b.address for b in listed.mailboxes] == ["info@example.net"]
    assert listed.mailboxes[0].hosts == ("web1",)
    dry = d.run(ALICE, "vmail", action="rm", domain="example.net", user="info")
    assert _same(protocol.VmailResult, dry).dry_run
    _same(protocol.MemberPolicyAnswer, d.run(ALICE, "policy"))
    _same(protocol.UsageReport, d.run(ALICE, "usage"))
    _same(protocol.ChangeAnswer, d.run(ALICE, "rmdom", domain="example.org"))


H = sha512_crypt("pw")


def test_the_answers_to_an_admin_are_protocol_replies(d):
    d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    added = _same(protocol.AddUserAnswer, d.run(ROOT, "adduser", user="carol"))
    assert added.user == "carol" and added.cert_pem.startswith("-----BEGIN")
    _same(protocol.PermsAnswer, d.run(ROOT, "perms_of", user="alice"))
    hosts = _same(protocol.HostsAnswer, d.run(ROOT, "hosts"))
    assert set(hosts.hosts) == {"ns1", "web1"} and hosts.hosts["web1"].roles == ("web", "mail")
    _same(protocol.HostsAnswer, d.run(ROOT, "ping", host="web1"))
    audit = _same(protocol.AuditAnswer, d.run(ROOT, "audit", limit=5))
    assert audit.entries and audit.entries[0].action
    described = _same(protocol.DescribeResult, d.run(ROOT, "admin_describe", domain="example.org"))
    assert described.hosts
    set_ = d.run(
        ROOT, "policy_set", part="firewall", action="add", value="client tcp 80", user="alice"
    )
    assert _same(protocol.ChangeAnswer, set_).applied
    dry = d.run(
        ROOT,
        "policy_set",
        part="firewall",
        action="add",
        value="client tcp 443",
        user="alice",
        dry_run=True,
    )
    assert _same(protocol.ChangeAnswer, dry).applied is False
    shown = _same(protocol.PolicyShowAnswer, d.run(ROOT, "policy_show", user="alice"))
    assert shown.members["alice"].lines
    _same(protocol.PolicyCheckAnswer, d.run(ROOT, "policy_check"))
    _same(protocol.UsageReport, d.run(ROOT, "usage_of", user="alice"))
    regen = d.run(ROOT, "regen")
    assert protocol.DryRun.is_one(regen)
    _same(protocol.ChangeAnswer, d.run(ROOT, "regen", apply=True))
    removed = _same(
        protocol.ChangeAnswer, d.run(ROOT, "admin_rmdom", domain="example.org", apply=True)
    )
    assert removed.applied and set(removed.members) == {"alice"}
    _same(protocol.ChangeAnswer, d.run(ROOT, "rmuser", user="alice", apply=True))


def test_an_answer_that_is_not_the_reply_is_not_guessed_at():
    """``read`` gives None for what is not its reply (the CLI shows it as it came)."""
    assert protocol.ChangeAnswer.read(["applied"]) is None
    assert protocol.ChangeAnswer.read({"applied": "yes"}) is None
    assert protocol.HostsAnswer.read({"hosts": {"web1": {"reachable": 1}}}) is None
    assert protocol.ChangeAnswer.read({"applied": False}).applied is False


def test_the_database_answers_are_protocol_replies(tmp_path):
    """``db_*`` over a real slave agent with the fake servers: each answer is a DbReply."""
    from twisted.internet.task import Clock

    from domtool.dispatcher.apply import Coordinator
    from domtool.dispatcher.controller import Controller
    from domtool.slave.agent import Agent
    from domtool.slave.dbagent import DatabaseOps
    from tests.agent_link import AgentLink
    from tests.dispatcher.harness import Dispatcher
    from tests.dispatcher.test_databases import SITE
    from tests.slave.fake_dbserver import FakeDatabaseServer

    servers = {"postgres": FakeDatabaseServer("postgres"), "mysql": FakeDatabaseServer("mysql")}
    base = make_dispatcher()
    ops = DatabaseOps(servers, host="db1", audit_path=tmp_path / "db-audit.jsonl")
    agent = Agent(None, host="db1", state_dir=tmp_path, clock=Clock(), databases=ops)
    links = {**base.links, "db1": AgentLink("db1", agent)}
    coordinator = Coordinator(base.store, links, base.clock)
    controller = Controller(base.store, SITE, coordinator, site_domains=("coop.example",))
    d = Dispatcher(base.store, base.clock, base.slaves, links, coordinator, controller)
    created = _same(protocol.DbReply, d.run(ALICE, "db_create", kind="postgres", name="alice_blog"))
    assert created.host == "db1" and created.quota == protocol.DbQuota(1, 20)
    listed = _same(protocol.DbReply, d.run(ALICE, "db_list"))
    assert [db.name for db in listed.databases] == ["alice_blog"]
    _same(
        protocol.DbReply,
        d.run(ALICE, "db_passwd", kind="postgres", role="alice_blog", password="x"),
    )
    _same(
        protocol.DbReply,
        d.run(ALICE, "db_grant", kind="postgres", database="alice_blog", role="alice_ro"),
    )
    assert (
        _same(protocol.DbReply, d.run(ALICE, "db_drop", kind="postgres", name="alice_blog")).apply
        is False
    )
    gone = d.run(ALICE, "db_drop", kind="postgres", name="alice_blog", apply=True)
    assert _same(protocol.DbReply, gone).apply is True
