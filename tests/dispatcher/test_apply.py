"""The two-phase apply across hosts: a refusal or an unreachable host before commit
changes nothing anywhere; a host lost after its prepare converges when it comes back
(retried with exponential backoff on the Clock, across a dispatcher restart); and the
same submit through the real slave agent controller in-process."""

from __future__ import annotations

import pytest

from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.controller import Controller
from domtool.dispatcher.links import LinkError, RemoteError
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.model import Node, Site
from tests.agent_link import AgentLink
from tests.slave.test_agent import make_host

from .harness import ALICE, BOB, ROOT, SITE_DOMAINS, example, files, make_dispatcher, result_of


def test_prepare_failure_on_one_host_changes_nothing_on_either():
    """ns1's checker refuses alice's zone: web1, which prepared fine, is aborted too;
    both stay at generation 0 and alice is told ns1's message."""
    d = make_dispatcher()
    d.slaves["ns1"].refuse["alice"] = "named-checkzone: example.org/IN: bad owner name"
    out = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] is False
    assert out["refused"] == ["ns1: alice: named-checkzone: example.org/IN: bad owner name"]
    assert (d.slaves["ns1"].generation, d.slaves["web1"].generation) == (0, 0)
    assert d.ops() == {"ns1": ["prepare", "abort"], "web1": ["prepare", "abort"]}
    assert d.store.generations() == [] and d.store.pending() == {}
    assert d.controller.stored_files("alice") == {}


def test_a_host_down_before_prepare_changes_nothing():
    """web1 unreachable: ns1's prepared change is aborted; the message names web1."""
    d = make_dispatcher()
    d.links["web1"].up = False
    out = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] is False
    assert out["refused"] == ["web1 is unreachable: connection to web1 refused"]
    assert d.slaves["ns1"].generation == 0 and d.ops()["ns1"] == ["prepare", "abort"]
    assert d.store.pending() == {}


def test_a_host_that_dies_after_prepare_converges_when_it_comes_back():
    """web1 prepares then drops off before commit: ns1 commits, web1's change is pending
    in the store and retried at 1, 2, 4 s...; once web1 is back it commits, and its
    generation shows in hosts."""
    d = make_dispatcher()
    d.links["web1"].drop = {"commit"}
    out = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] is True
    assert out["hosts"]["ns1"]["status"] == "applied"
    assert out["hosts"]["web1"]["status"] == "pending"
    assert "retrying" in out["hosts"]["web1"]["message"]
    assert set(d.store.pending()) == {"web1"}
    assert d.slaves["web1"].generation == 0
    d.links["web1"].up = False
    delays = []
    for _ in range(4):
        delays.append(d.coordinator.converging()["web1"])
        d.clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert (
        d.store.pending()["web1"]["last_error"] == "web1 is unreachable: connection to web1 refused"
    )
    d.links["web1"].up, d.links["web1"].drop = True, set()
    d.clock.advance(16.0)
    assert d.slaves["web1"].generation == 1
    assert [v.fqdn for v in d.slaves["web1"].state.vhosts] == ["www.example.org"]
    assert d.store.pending() == {}
    hosts = d.run(ROOT, "hosts")["hosts"]
    assert hosts["web1"]["generation"] == 1 and hosts["web1"]["recorded_generation"] == 1
    assert not hosts["web1"]["pending"]


def test_a_restarted_dispatcher_continues_and_a_restarted_slave_is_prepared_again():
    """The pending change survives in the store: a new coordinator resumes it; the slave
    lost the prepared transaction in its own restart, so it is prepared again and
    committed under a new id."""
    d = make_dispatcher()
    d.links["web1"].drop = {"commit"}
    d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    d.coordinator.stop()
    d.slaves["web1"].restart()
    d.links["web1"].drop = set()
    d.links["web1"].calls.clear()
    again = Coordinator(d.store, d.links, d.clock)
    again.resume()
    d.clock.advance(0)
    assert d.links["web1"].ops() == ["commit", "prepare", "commit"]
    assert d.slaves["web1"].generation == 1 and d.store.pending() == {}
    assert d.store.audit_log()[-1].action == "converge"


def test_a_new_change_carries_a_pending_change_along():
    """While web1 still owes alice's commit, bob's submit to web1 prepares both owners,
    so the newer transaction supersedes the older one."""
    d = make_dispatcher()
    d.links["web1"].drop = {"commit"}
    d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    d.links["web1"].drop = set()
    d.slaves["web1"].restart()
    out = d.run(BOB, "submit", files=files(bob_org='dom "bob.org" with end;'))
    assert out["applied"] and out["hosts"]["web1"]["status"] == "applied"
    prepare = [a for op, a in d.links["web1"].calls if op == "prepare"][-1]
    assert sorted(prepare["changes"]) == ["alice", "bob"]
    assert sorted(v.owner for v in d.slaves["web1"].state.vhosts) == ["alice", "bob"]
    assert d.store.pending() == {}


def test_an_unchanged_resubmit_reloads_nothing():
    """The same source again: no host is contacted and no daemon reloads."""
    d = make_dispatcher()
    d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    reloads = {h: s.reloads for h, s in d.slaves.items()}
    d.forget_calls()
    out = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] and out["hosts"] == {}
    assert d.ops() == {"ns1": [], "web1": []}
    assert {h: s.reloads for h, s in d.slaves.items()} == reloads


def test_the_fake_link_reports_unreachable_as_a_link_error():
    """FakeLink down fails with LinkError, like the TLS link when a slave is away."""
    link = FakeLink("x", FakeSlave("x"), up=False)
    failures = []
    link.call("status", {}).addErrback(failures.append)
    assert failures and failures[0].check(LinkError)


def _real_agent_dispatcher():
    """A site whose DNS node ``local`` is the real slave agent (over the real engine with
    a fake backend and daemon) and whose web node is a FakeSlave."""
    host = make_host()
    site = Site(nodes=(Node("local", ("dns",)), Node("web1", ("web", "mail"))))
    base = make_dispatcher()
    web1 = FakeSlave("web1")
    links = {"local": AgentLink("local", host.agent), "web1": FakeLink("web1", web1)}
    coordinator = Coordinator(base.store, links, base.clock)
    controller = Controller(base.store, site, coordinator, site_domains=SITE_DOMAINS)
    return host, web1, links, controller


def test_submit_through_the_real_agent():
    """alice's submit prepares and commits on the real agent (her zone goes live in the
    daemon, the agent's verified probes come back) and on the fake web node."""
    host, web1, links, controller = _real_agent_dispatcher()
    out = result_of(
        controller.handle(ALICE, "submit", {"files": files(example_org=example("example.org"))})
    )
    assert out["applied"], out
    assert out["hosts"]["local"]["status"] == "applied" and out["hosts"]["local"]["generation"] == 1
    assert [v["target"][2] for v in out["hosts"]["local"]["verified"]] == ["example.org"]
    assert set(host.daemon.loaded) == {"zone:example.org"}
    assert [v.fqdn for v in web1.state.vhosts] == ["www.example.org"]
    again = result_of(
        controller.handle(ALICE, "submit", {"files": files(example_org=example("example.org"))})
    )
    assert again["hosts"] == {} and host.daemon.reloads == 1


def test_the_real_agents_checker_refusal_changes_nothing_anywhere():
    """A zone the real agent's daemon checker refuses (a BROKEN record) aborts the web
    node too; the agent's message reaches alice."""
    host, web1, links, controller = _real_agent_dispatcher()
    text = 'dom "example.org" with dnsTXT "@" "BROKEN"; end;'
    out = result_of(controller.handle(ALICE, "submit", {"files": files(example_org=text)}))
    assert out["applied"] is False
    assert len(out["refused"]) == 1 and out["refused"][0].startswith("local: alice: ")
    assert "BROKEN" in out["refused"][0]
    assert host.engine.current_generation() == 0 and web1.generation == 0
    assert host.agent.pending_txid is None


# -- the fake slave against the real agent -----------------------------------------


def _zone_json(name: str, owner: str, ip: str = "192.0.2.1") -> dict:
    return {
        "kind": "Zone",
        "name": name,
        "owner": owner,
        "records": [{"kind": "Record", "name": "@", "rtype": "A", "data": [ip], "ttl": None}],
        "nodes": ["local"],
        "ttl": 3600,
    }


def _change(*zones: dict) -> dict:
    return {"state": {"kind": "DesiredState", "zones": list(zones), "vhosts": [], "mail": []}}


def _links():
    host = make_host()
    return {"fake": FakeLink("local", FakeSlave("local")), "agent": AgentLink("local", host.agent)}


@pytest.mark.parametrize("which", ["fake", "agent"])
def test_the_fake_slave_behaves_like_the_real_agent(which):
    """The same op sequence gives the same answers from FakeSlave and the real agent:
    prepare/commit makes generation 1 live; one transaction at a time; an unchanged part
    commits as unchanged; an unknown transaction is refused; abort and status agree."""
    link = _links()[which]

    def call(op, args):
        return result_of(link.call(op, args))

    def refused(op, args):
        failures = []
        link.call(op, args).addErrback(failures.append)
        assert failures and failures[0].check(RemoteError)
        return failures[0].value

    a = _zone_json("alice.example", "alice")
    p = call("prepare", {"txid": "t1", "changes": {"alice": _change(a)}})
    assert (p["base_generation"], p["staged_generation"]) == (0, 1)
    assert p["owners"] == {"alice": {"ok": True, "message": ""}}
    assert refused("prepare", {"txid": "t2", "changes": {"bob": _change()}}).kind == "refused"
    c = call("commit", {"txid": "t1"})
    assert (c["status"], c["generation"]) == ("applied", 1)
    assert call("commit", {"txid": "t1"})["generation"] == 1  # a repeated commit: same answer
    call("prepare", {"txid": "t3", "changes": {"alice": _change(a)}})
    assert call("commit", {"txid": "t3"})["status"] == "unchanged"
    assert refused("commit", {"txid": "nope"}).kind == "refused"
    call("prepare", {"txid": "t4", "changes": {"alice": _change()}})
    assert call("abort", {"txid": "t4"})["aborted"] is True
    assert call("abort", {"txid": "t4"})["aborted"] is False
    status = call("status", {})
    assert (status["generation"], status["owners"], status["pending_txid"]) == (1, ["alice"], None)
    described = call("describe", {"domain": "alice.example"})
    assert [z["name"] for z in described["zones"]] == ["alice.example"]
    call("prepare", {"txid": "t5", "changes": {"alice": _change()}})
    assert call("commit", {"txid": "t5"})["generation"] == 2
    assert call("status", {})["owners"] == []


def test_a_host_that_rolls_back_is_reported_and_its_record_kept():
    """web1's daemon dies after the switch and the slave rolls back: the member is told,
    web1's record of alice stays the old one (so the next submit tries again), ns1's
    commit stands, and nothing is left pending."""
    d = make_dispatcher()
    d.slaves["web1"].roll_back = "apache2 did not answer after reload; back on generation 0"
    out = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] is False
    assert out["refused"] == [
        "web1 rolled back: apache2 did not answer after reload; back on generation 0"
    ]
    assert out["hosts"]["web1"]["status"] == "rolled_back"
    assert out["hosts"]["ns1"]["status"] == "applied"
    assert "web1" not in d.controller.current("alice") and d.store.pending() == {}
    d.slaves["web1"].roll_back = None
    again = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert again["applied"] and list(again["hosts"]) == ["web1"]
