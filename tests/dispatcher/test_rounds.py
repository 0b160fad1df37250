"""Group commit of concurrent submits (``domtool.dispatcher.rounds``): the submits that
arrive while a round is in flight go together into the next one, with one prepare and one
commit per host; a member the checker refuses is isolated and the others go live; two
submits of one domain in a round apply in arrival order and both are in the history."""

from __future__ import annotations

import attrs
from twisted.internet import defer

from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.auth import Member
from domtool.dispatcher.controller import Controller
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.model import Node, Site
from tests.agent_link import AgentLink
from tests.slave.test_agent import make_host

from .harness import ALICE, SITE_DOMAINS, make_dispatcher, result_of


@attrs.define
class GateLink:
    """A link whose calls wait while ``held`` (the slave is busy), then run in order."""

    link: object
    held: bool = False
    waiting: list = attrs.field(factory=list)

    def call(self, op, args):
        if not self.held:
            return self.link.call(op, args)
        d = defer.Deferred()
        self.waiting.append((op, args, d))
        return d

    def release(self):
        self.held = False
        while self.waiting:
            op, args, d = self.waiting.pop(0)
            self.link.call(op, args).chainDeferred(d)

    def ops(self):
        return self.link.ops()


def _members(store, n):
    names = [f"m{i:02d}" for i in range(n)]
    for name in names:
        store.add_member(name)
        store.grant(name, "domain", f"{name}.example")
        store.grant(name, "path", f"/home/{name}")
        store.grant(name, "user", name)
        store.grant(name, "group", name)
    return names


def _submit(controller, who: str, text: str, domain: str):
    return controller.handle(
        Member(who), "submit", {"files": [{"name": domain, "text": text}]}
    ).addErrback(lambda f: f)


def test_a_batched_round_isolates_one_bad_member_among_ten_good_ones():
    """alice's submit holds the hosts; eleven members submit meanwhile and go in ONE next
    round: ns1 sees one prepare and one commit, web1 (which had accepted the offender too)
    is prepared again without it and commits once. Only the offender is refused, with the
    host's message; each of the ten has its own answer, version 1 and audit line."""
    d = make_dispatcher()
    names = _members(d.store, 11)
    bad = names[4]
    d.slaves["ns1"].refuse[bad] = f"zone {bad}.example: named-checkzone: bad record"
    gates = {h: GateLink(link) for h, link in d.links.items()}
    coordinator = Coordinator(d.store, gates, d.clock)
    controller = Controller(d.store, d.controller.site, coordinator, site_domains=SITE_DOMAINS)
    for g in gates.values():
        g.held = True
    first = _submit(controller, "alice", 'dom "example.org" with end;', "example.org")
    answers = {
        n: _submit(controller, n, f'dom "{n}.example" with end;', f"{n}.example") for n in names
    }
    assert controller.rounds.waiting == 11
    d.forget_calls()
    for g in gates.values():
        g.release()
    assert result_of(first)["applied"]
    assert controller.rounds.sizes == [1, 11]
    ops = d.ops()
    assert ops["ns1"] == ["prepare", "commit", "prepare", "commit"]
    assert ops["web1"] == ["prepare", "commit", "prepare", "abort", "prepare", "commit"]
    out = {n: result_of(a) for n, a in answers.items()}
    assert out[bad]["applied"] is False
    assert out[bad]["refused"] == [f"ns1: {bad}: zone {bad}.example: named-checkzone: bad record"]
    assert out[bad]["hosts"] == {}
    for n in names:
        if n != bad:
            assert out[n]["applied"], out[n]
            assert out[n]["versions"] == {f"{n}.example": 1}
            assert set(out[n]["hosts"]) == {"ns1", "web1"}
            # each member hears of its own probes only, not the whole round's
            assert [v["target"] for v in out[n]["hosts"]["ns1"]["verified"]] == [[f"{n}.example"]]
    # Everyone's changes went live together: one generation per host for the round.
    assert {o["hosts"]["ns1"]["generation"] for n, o in out.items() if n != bad} == {2}
    zones = {z.name for z in d.slaves["ns1"].state.zones}
    assert zones == {"example.org"} | {f"{n}.example" for n in names if n != bad}
    assert f"{bad}.example" not in {v.domain for v in d.slaves["web1"].state.vhosts}
    audit = [e for e in d.store.audit_log() if e.who in names]
    assert sorted((e.who, e.outcome) for e in audit) == sorted(
        (n, "refused" if n == bad else "applied") for n in names
    )
    assert d.store.history(f"{bad}.example")[0].accepted is False
    assert d.store.deployed(member=bad) == {}


def test_a_batched_round_through_the_real_agent_isolates_the_checkers_offender():
    """The same with the real slave agent and engine on the DNS node: the daemon's checker
    refuses one member's zone (a BROKEN record); the engine isolates it and the ten other
    zones go live in one generation with one reload."""
    host = make_host()
    site = Site(nodes=(Node("local", ("dns",)), Node("web1", ("web", "mail"))))
    base = make_dispatcher()
    names = _members(base.store, 11)
    web1 = FakeSlave("web1")
    links = {"local": AgentLink("local", host.agent), "web1": FakeLink("web1", web1)}
    gates = {h: GateLink(link) for h, link in links.items()}
    coordinator = Coordinator(base.store, gates, base.clock)
    controller = Controller(base.store, site, coordinator, site_domains=SITE_DOMAINS)
    for g in gates.values():
        g.held = True
    first = _submit(controller, "alice", 'dom "example.org" with end;', "example.org")
    bad = names[7]
    answers = {}
    for n in names:
        record = 'dnsTXT "@" "BROKEN";' if n == bad else 'dnsA "www" "192.0.2.7";'
        answers[n] = _submit(controller, n, f'dom "{n}.example" with {record} end;', f"{n}.example")
    for g in gates.values():
        g.release()
    assert result_of(first)["applied"]
    assert controller.rounds.sizes == [1, 11]
    out = {n: result_of(a) for n, a in answers.items()}
    assert out[bad]["applied"] is False and "BROKEN" in out[bad]["refused"][0]
    assert all(out[n]["applied"] for n in names if n != bad)
    assert host.engine.current_generation() == 2
    assert host.daemon.reloads == 2  # alice's round, then the ten together
    assert set(host.daemon.loaded) == {"zone:example.org"} | {
        f"zone:{n}.example" for n in names if n != bad
    }
    assert host.agent.pending_txid is None


def test_same_domain_submits_in_one_round_apply_in_arrival_order():
    """Two submits of example.org wait for the same round: both are accepted versions in
    arrival order, the later one is what the host serves, and the round prepared once."""
    d = make_dispatcher()
    gates = {h: GateLink(link) for h, link in d.links.items()}
    coordinator = Coordinator(d.store, gates, d.clock)
    controller = Controller(d.store, d.controller.site, coordinator, site_domains=SITE_DOMAINS)
    for g in gates.values():
        g.held = True
    first = _submit(controller, "alice", 'dom "example.net" with end;', "example.net")
    one = 'dom "example.org" with dnsA "app" "192.0.2.1"; end;'
    two = 'dom "example.org" with dnsA "app" "192.0.2.2"; end;'
    a = _submit(controller, "alice", one, "example.org")
    b = _submit(controller, "alice", two, "example.org")
    d.forget_calls()
    for g in gates.values():
        g.release()
    result_of(first)
    assert controller.rounds.sizes == [1, 2]
    ra, rb = result_of(a), result_of(b)
    assert ra["applied"] and rb["applied"]
    assert ra["versions"] == {"example.org": 1} and rb["versions"] == {"example.org": 2}
    assert d.ops()["ns1"] == ["prepare", "commit", "prepare", "commit"]
    history = d.store.history("example.org")
    assert [(s.version, s.text, s.accepted) for s in history] == [(1, one, True), (2, two, True)]
    zone = next(z for z in d.slaves["ns1"].state.zones if z.name == "example.org")
    assert [r.data for r in zone.records if r.name == "app"] == [("192.0.2.2",)]
    shown = result_of(controller.handle(ALICE, "history", {"domain": "example.org"}))
    assert [v["version"] for v in shown["versions"]] == [1, 2]


def test_a_later_submit_that_does_not_check_leaves_the_earlier_one_of_its_round():
    """alice's second submit of the round does not type-check: it alone is refused (a
    refused version after the accepted one), the first goes live."""
    d = make_dispatcher()
    gates = {h: GateLink(link) for h, link in d.links.items()}
    coordinator = Coordinator(d.store, gates, d.clock)
    controller = Controller(d.store, d.controller.site, coordinator, site_domains=SITE_DOMAINS)
    for g in gates.values():
        g.held = True
    first = _submit(controller, "alice", 'dom "example.net" with end;', "example.net")
    a = _submit(controller, "alice", 'dom "example.org" with end;', "example.org")
    b = _submit(controller, "alice", 'dom "example.org" with bogus end;', "example.org")
    for g in gates.values():
        g.release()
    result_of(first)
    ra, rb = result_of(a), result_of(b)
    assert ra["applied"] and rb["applied"] is False and rb["diagnostics"]
    assert [(s.version, s.accepted) for s in d.store.history("example.org")] == [
        (1, True),
        (2, False),
    ]
    assert "example.org" in {z.name for z in d.slaves["ns1"].state.zones}
