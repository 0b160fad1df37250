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


def test_a_render_of_mostly_the_same_zone_objects_is_what_a_whole_render_gives(monkeypatch):
    """Random zone changes, additions, removals and duplicates among the same zone
    objects, each render committed (``previous`` becomes it) or not (an abort, a roll
    back): units() (which looks only at new objects and at the zones its latest render
    changed) gives what a fresh backend rendering every zone against the same live units
    gives, and refuses what it refuses; so do probes() and index() (its text kept in
    pieces, here of 8 lines, so a change lands in one of many)."""
    import random

    from domtool.slave.backends import bind

    monkeypatch.setattr(bind, "PIECE_LINES", 8)

    import attrs

    from domtool.slave.backend import RenderRefused

    rng = random.Random(3)
    config = BindConfig("/b.conf", "/named.conf", "/rndc.conf")
    backend = BindBackend(config)
    zones = [
        Zone(f"d{i}.example", f"m{i % 5}", (Record("www", "A", ("192.0.2.1",)),), ("local",))
        for i in range(150)
    ]
    live: dict = {}
    for step in range(80):
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(zones))
            what = rng.random()
            if what < 0.4:
                z = zones[i]
                zones[i] = attrs.evolve(z, records=(Record("v", "TXT", (f"s{step}",)),))
            elif what < 0.55 and len(zones) > 20:
                del zones[i]
            elif what < 0.9:
                zones.append(Zone(f"n{step}-{i}.example", "m9", (), ("local",)))
            else:  # a name twice: refused, then taken out again
                zones.append(attrs.evolve(zones[i], owner="m8"))
        st = DesiredState(zones=tuple(zones))
        now = 1_700_000_000 + 100 * step
        fresh = BindBackend(config)
        try:
            expected = fresh.units(st, dict(live), now)
        except RenderRefused as exc:
            expected = [str(e) for e in exc.errors]
        try:
            got = backend.units(st, dict(live), now)
        except RenderRefused as exc:
            got = [str(e) for e in exc.errors]
        assert got == expected, step
        if got and isinstance(got[0], str):
            zones = [z for z in zones if z.owner != "m8"]
            continue
        assert backend.probes(st) == fresh.probes(st), step
        # the index of these units (as the engine names them): as a fresh backend's
        import hashlib
        from pathlib import PurePosixPath

        paths = {
            u.key: PurePosixPath(f"/s/units/bind/{hashlib.sha256(u.content).hexdigest()}.zone")
            for u in got
        }
        live_at = {u.key: PurePosixPath(f"/s/live/bind/{u.live}") for u in got}
        assert backend.index(paths, live=live_at) == BindBackend(config).index(
            paths, live=live_at
        ), step
        if rng.random() < 0.7:  # committed: the live units are these
            live = {u.key: u for u in got}
    assert backend._inc, "the last renders went the incremental way"
