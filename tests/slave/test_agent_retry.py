"""The agent uses the engine's probe-failure retry: a commit that rolled back only because
one changed owner's probe failed refuses that owner and commits the others' changes once
more, recorded like any generation (a restarted agent knows the state)."""

from __future__ import annotations

from domtool.slave import ops
from tests.slave.test_agent import make_host, part, prepare, tx, zone


def test_one_dead_zone_does_not_hold_back_the_others():
    host = make_host()
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice", "v1"))))
    host.run("commit", tx("t1"))
    host.run(
        "prepare",
        prepare(
            "t2",
            alice=part(zone("alice.example", "alice", "v2")),
            bob=part(zone("bob.example", "bob", "DEAD")),
            carol=part(zone("carol.example", "carol", "v1")),
        ),
    )
    out = host.run("commit", tx("t2"))
    assert out["status"] == "applied", out
    assert out["owners"]["bob"]["ok"] is False and "rolled back" in out["owners"]["bob"]["message"]
    assert out["owners"]["alice"]["ok"] and out["owners"]["carol"]["ok"]
    assert set(host.daemon.loaded) == {"zone:alice.example", "zone:carol.example"}
    assert b"v2" in host.daemon.loaded["zone:alice.example"]
    assert {z.name for z in host.agent.state.zones} == {"alice.example", "carol.example"}
    gen = host.engine.current_generation()
    assert out["generation"] == gen and host.engine.verified(gen)
    again = host.restart()
    assert again.state == host.agent.state
    status = host.run("status", ops.StatusArgs())
    assert status["state_known"] and status["owners"] == ["alice", "carol"]


def test_when_every_changed_owner_fails_its_probe_the_commit_rolls_back():
    host = make_host()
    host.run("prepare", prepare("t1", bob=part(zone("bob.example", "bob", "DEAD"))))
    out = host.run("commit", tx("t1"))
    assert out["status"] == "rolled_back" and out["owners"]["bob"]["ok"] is False
    assert host.engine.current_generation() == 0 and host.agent.state.zones == ()
