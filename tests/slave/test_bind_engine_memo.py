"""Through the engine, a one-zone change renders one zone: the engine hands the backend
the live units read back from disk (without their checks), and the BIND backend's memo
must still recognise an unchanged zone (at 1,000 zones every zone was rendered again on
every prepare, ~0.1 s; found by bench/bench_e2e.py --others 1000)."""

from __future__ import annotations

from domtool.model import DesiredState, Record, Zone
from domtool.slave.backends.bind import BindBackend, BindConfig, serial_of
from domtool.slave.engine import Engine
from domtool.slave.seams import FakeClock, FakeProcessRunner, RealFileSystem, Result, makedirs


class Yes:
    def probe(self, probe) -> bool:
        return True


def state(version: int) -> DesiredState:
    zones = []
    for i in range(20):
        records = (Record("www", "A", ("192.0.2.1",)),)
        if i == 0:
            records += (Record("v", "TXT", (f"version {version}",)),)
        zones.append(Zone(f"d{i}.example", f"m{i % 4}", records, ("local",)))
    return DesiredState(zones=tuple(zones))


def test_a_one_zone_change_through_the_engine_renders_one_zone(tmp_path):
    calls: list[str] = []

    class Counting(BindBackend):
        def render_zone(self, z, previous, now):
            calls.append(z.name)
            return super().render_zone(z, previous, now)

    backend = Counting(BindConfig("/b.conf", "/named.conf", "/rndc.conf"))
    fs = RealFileSystem()
    state_dir = str(tmp_path / "state")
    makedirs(fs, state_dir)
    runner = FakeProcessRunner(handler=lambda cmd: Result(0))
    engine = Engine(state_dir, {"bind": backend}, fs, runner, FakeClock(), Yes())
    assert engine.apply(state(0)).status == "applied"
    assert len(calls) == 20
    first = dict(engine.units("bind"))
    for version in (1, 2):
        calls.clear()
        assert engine.apply(state(version)).status == "applied"
        assert calls == ["d0.example"]
    live = engine.units("bind")
    assert live["zone:d5.example"].content == first["zone:d5.example"].content
    assert serial_of(live["zone:d0.example"].content) > serial_of(first["zone:d0.example"].content)
