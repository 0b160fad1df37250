"""Probes asked concurrently (``probe_workers``) give the same verdicts as one by one: a
zone that never answers is still the one refused, the others go live."""

from __future__ import annotations

from tests.slave.fake_backend import state, zone
from tests.slave.test_engine import make_host


def test_concurrent_probes_find_the_dead_zone():
    host = make_host(probe_workers=4, probe_timeout=0.5)
    zones = [zone(f"m{i}.example", f"m{i}", "DEAD" if i == 6 else "v1") for i in range(12)]
    out = host.engine.apply(state(*zones))
    assert out.status == "applied", out.message
    assert out.refused.keys() == {"m6"}
    assert set(host.live()) == {f"zone:m{i}.example" for i in range(12) if i != 6}


class GroupingProber:
    """A prober that takes a round's probes at once (``probe_many``), as the real one does
    to share SMTP sessions; it answers through the fake daemon."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.calls: list[int] = []  # how many probes each probe_many call was given

    def probe(self, probe):
        raise AssertionError("probe_many is offered: the engine must not ask one by one")

    def probe_many(self, probes, workers):
        self.calls.append(len(probes))
        return [self.daemon.probe(p) for p in probes]


def test_a_grouping_prober_gets_the_round_at_once_and_retries_the_failed():
    host = make_host(probe_workers=4, probe_timeout=0.5)
    prober = host.engine.prober = GroupingProber(host.daemon)
    zones = [zone(f"m{i}.example", f"m{i}", "DEAD" if i == 6 else "v1") for i in range(12)]
    out = host.engine.apply(state(*zones))
    assert out.status == "applied", out.message
    assert out.refused.keys() == {"m6"} and "timed out" in out.refused["m6"]
    assert set(host.live()) == {f"zone:m{i}.example" for i in range(12) if i != 6}
    # First the whole round (12), then only the dead zone's probe until the deadline, then
    # the others' again after the retry without m6 (11).
    assert prober.calls[0] == 12 and set(prober.calls[1:-1]) == {1} and prober.calls[-1] == 11


def test_the_real_prober_groups_smtp_probes_by_daemon(monkeypatch):
    from domtool.slave import mailprobe
    from domtool.slave.backend import Probe
    from domtool.slave.probes import RealProber

    sessions = []

    def many(address, port, asks, timeout):
        sessions.append((address, port, list(asks)))
        return [True if rcpt.startswith("ok") else f"smtp {m} {rcpt}: no" for m, rcpt, _ in asks]

    monkeypatch.setattr(mailprobe, "smtp_probe_many", many)
    monkeypatch.setattr(mailprobe, "SESSION_MAX", 3)
    probes = [
        Probe("smtp", ("127.0.0.1", 25, "refused", f"ok{i}@d{i}.example", ()), f"m{i}")
        for i in range(7)
    ]
    probes.insert(2, Probe("smtp", ("127.0.0.1", 2525, "expn", "bad@e.example", ("x@y",)), "e"))
    probes.insert(4, Probe("weird", (), "w"))
    answers = RealProber().probe_many(probes, workers=2)
    assert answers[2] == "smtp expn bad@e.example: no"
    assert answers[4] == "unknown probe kind 'weird'"
    assert [a for i, a in enumerate(answers) if i not in (2, 4)] == [True] * 7
    by_port = sorted((port, len(asks)) for _, port, asks in sessions)
    assert by_port == [(25, 1), (25, 3), (25, 3), (2525, 1)]  # 7 probes of :25, 3 a session
