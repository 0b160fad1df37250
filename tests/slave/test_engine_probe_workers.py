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
