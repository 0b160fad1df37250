"""The apply engine: generations, idempotence, isolation of members, rollback, recovery.

All of it runs over the fake file system and a fake daemon (``fake_backend.py``), and
one cycle over the real file system in ``tmp_path``.
"""

from __future__ import annotations

import json
import threading

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.slave.engine import BackendFailed, CheckFailed, Engine, EngineBusy, StalePrepare
from domtool.slave.probes import FakeProber
from domtool.slave.seams import (
    Crash,
    FakeClock,
    FakeFileSystem,
    FakeProcessRunner,
    RealFileSystem,
    makedirs,
)
from tests.slave.fake_backend import FakeBackend, FakeDaemon, RenderRefusedFake, state, zone

STATE_DIR = "/var/lib/domtool"


@attrs.define
class Host:
    """An engine over fakes, with handles on each fake."""

    engine: Engine
    fs: FakeFileSystem
    runner: FakeProcessRunner
    daemon: FakeDaemon
    clock: FakeClock
    backend: FakeBackend

    def live(self) -> dict[str, bytes]:
        """What the daemon would load from ``current``: unit key -> content."""
        return self.daemon.read_index(f"{STATE_DIR}/current/fake/index")

    def reset(self) -> None:
        self.runner.ran.clear()
        self.fs.ops.clear()


def make_host(fs=None, state_dir=STATE_DIR, **kw) -> Host:
    fs = fs if fs is not None else FakeFileSystem()
    makedirs(fs, state_dir)
    daemon = FakeDaemon(fs, state_dir).boot()
    runner = FakeProcessRunner(handler=daemon)
    clock = FakeClock()
    backend = FakeBackend()
    engine = Engine(state_dir, {"fake": backend}, fs, runner, clock, daemon, **kw)
    return Host(engine, fs, runner, daemon, clock, backend)


def abc(**texts: str):
    """alice, bob and carol each with one zone; ``texts`` override a member's record."""
    return state(
        *(
            zone(f"{who}.example", who, texts.get(who, f"{who} v1"))
            for who in ("alice", "bob", "carol")
        )
    )


@pytest.fixture
def host() -> Host:
    return make_host()


def test_first_apply_makes_generation_one_live(host: Host):
    """A first apply writes three units, stages, checks each unit and the whole, switches
    ``current`` to generation 1, reloads once and the daemon serves all three zones."""
    out = host.engine.apply(abc())
    assert out.status == "applied" and out.generation == 1 and out.previous == 0
    assert out.applied == ("alice", "bob", "carol")
    assert host.fs.readlink(f"{STATE_DIR}/current") == "generations/1"
    assert host.engine.current_generation() == 1
    assert sorted(host.daemon.loaded) == [
        "zone:alice.example",
        "zone:bob.example",
        "zone:carol.example",
    ]
    verbs = [c.argv[0] for c in host.runner.ran]
    assert verbs == ["fake-check-unit"] * 3 + ["fake-check-all", "fake-reload"]
    for cmd in host.runner.ran[:3]:
        assert cmd.argv[1].startswith(f"{STATE_DIR}/units/fake/") and cmd.argv[1].endswith(".zone")
    assert host.fs.listdir(f"{STATE_DIR}/staging") == []
    manifest = json.loads(host.fs.read(f"{STATE_DIR}/current/manifest.json"))
    assert [u["owner"] for u in manifest["backends"]["fake"]["units"]] == ["alice", "bob", "carol"]


def test_applying_the_same_state_twice_writes_and_runs_nothing(host: Host):
    """The second apply of an equal state says "unchanged at generation 1": the fake
    file system saw no mutating operation and the fake runner no command."""
    host.engine.apply(abc())
    host.reset()
    out = host.engine.apply(abc())
    assert out.status == "unchanged" and out.generation == 1
    assert out.message == "unchanged at generation 1"
    assert host.fs.ops == []
    assert host.runner.ran == []
    # A fresh engine over the same disk (a restarted agent) agrees.
    again = Engine(STATE_DIR, {"fake": host.backend}, host.fs, host.runner, host.clock, host.daemon)
    assert again.apply(abc()).status == "unchanged"
    assert host.fs.ops == [] and host.runner.ran == []


def test_one_change_writes_one_unit_and_the_index(host: Host):
    """Changing alice's zone writes her new unit, the index and the manifest (and the
    verified mark after the probes), checks only her unit, and leaves bob's and carol's unit files alone."""
    host.engine.apply(abc())
    host.reset()
    out = host.engine.apply(abc(alice="alice v2"))
    assert out.status == "applied" and out.generation == 2 and out.applied == ("alice",)
    written = [p for k, p in host.fs.ops if k == "write"]
    assert len(written) == 4
    assert written[0].startswith(f"{STATE_DIR}/units/fake/") and written[0].endswith(".zone.tmp")
    assert written[1:] == [
        f"{STATE_DIR}/staging/2/fake/index",
        f"{STATE_DIR}/staging/2/manifest.json",
        f"{STATE_DIR}/generations/2/verified",
    ]
    assert [c.argv[0] for c in host.runner.ran] == [
        "fake-check-unit",
        "fake-check-all",
        "fake-reload",
    ]
    assert b"alice v2" in host.daemon.loaded["zone:alice.example"]


def test_a_broken_unit_refuses_only_its_owner(host: Host):
    """bob's new unit fails its own check: alice's and carol's changes go live, bob keeps
    his previous zone, and the outcome names bob with the checker's message (unit file
    paths shown as unit keys). No whole check or reload ever saw bob's broken unit."""
    host.engine.apply(abc())
    host.daemon.checked_all.clear()
    out = host.engine.apply(abc(alice="alice v2", bob="bob BROKEN", carol="carol v2"))
    assert out.status == "applied" and out.applied == ("alice", "carol")
    assert list(out.refused) == ["bob"]
    # The checker's own words, with the unit file's path shown as the unit's key.
    assert (
        out.refused["bob"] == "fake zone:bob.example: zone:bob.example:2: BROKEN record: bad rdata"
    )
    live = host.live()
    assert b"alice v2" in live["zone:alice.example"] and b"carol v2" in live["zone:carol.example"]
    assert b"bob v1" in live["zone:bob.example"]
    assert host.daemon.loaded == live
    assert not any(b"BROKEN" in d for seen in host.daemon.checked_all for d in seen.values())


def test_a_broken_new_member_is_left_out_of_the_first_generation(host: Host):
    """On an empty host, dave's broken zone is refused and the others go live without it."""
    out = host.engine.apply(
        state(zone("a.example", "alice", "ok"), zone("d.example", "dave", "BROKEN"))
    )
    assert out.status == "applied" and out.applied == ("alice",) and list(out.refused) == ["dave"]
    assert list(host.live()) == ["zone:a.example"]


def test_whole_check_failure_is_bisected_by_owner(host: Host):
    """bob's unit passes its own check but the whole-configuration check refuses it:
    bisection by owner finds bob, alice's and carol's changes go live, bob keeps v1 and
    gets the whole check's own message."""
    host.engine.apply(abc())
    out = host.engine.apply(abc(alice="alice v2", bob="bob CONFLICT", carol="carol v2"))
    assert out.applied == ("alice", "carol") and list(out.refused) == ["bob"]
    assert "refused by the whole-configuration check" in out.refused["bob"]
    live = host.live()
    assert b"bob v1" in live["zone:bob.example"]
    assert b"alice v2" in live["zone:alice.example"] and b"carol v2" in live["zone:carol.example"]
    assert host.daemon.reloads == 2


def test_changes_that_pass_alone_but_conflict_together_keep_the_first(host: Host):
    """alice and carol each claim "x": each passes alone on top of the live generation,
    together they fail; the first (by name) is kept and carol is told she conflicts."""
    host.engine.apply(abc())
    out = host.engine.apply(abc(alice="CLAIM:x", bob="bob v2", carol="CLAIM:x"))
    assert out.applied == ("alice", "bob")
    assert "conflicts with other changes" in out.refused["carol"]
    assert "x already claimed" in out.refused["carol"]
    live = host.live()
    assert b"CLAIM:x" in live["zone:alice.example"] and b"carol v1" in live["zone:carol.example"]


def test_every_owner_refused_means_unchanged(host: Host):
    """When the only change is refused, the generation does not move and staging is
    cleaned; the outcome still names the refused owner."""
    host.engine.apply(abc())
    out = host.engine.apply(abc(bob="bob CONFLICT"))
    assert out.status == "unchanged" and out.generation == 1
    assert list(out.refused) == ["bob"]
    assert host.fs.listdir(f"{STATE_DIR}/staging") == []
    assert host.engine.generations() == [1]


def test_render_refusal_refuses_those_owners_and_renders_the_rest(host: Host):
    """A backend whose ``units()`` raises an error naming owners (as Apache's
    RenderRefused does): those owners keep their previous units with the renderer's
    message, the backend renders again without them, and the others go live."""
    host.backend.refuse_marker = "EVIL"
    host.engine.apply(abc())
    out = host.engine.apply(abc(alice="alice v2", bob="EVIL"))
    assert out.applied == ("alice",) and list(out.refused) == ["bob"]
    assert out.refused["bob"] == "fake: bob: zone text holds a forbidden byte"
    assert b"bob v1" in host.live()["zone:bob.example"]


def test_a_backend_that_cannot_render_changes_nothing(host: Host):
    """A render error that names no owner is a BackendFailed; nothing live changes."""
    host.engine.apply(abc())
    before = host.fs.snapshot(f"{STATE_DIR}/generations")

    class Boom(FakeBackend):
        def units(self, state, previous, now):
            raise RuntimeError("template missing")

    host.engine.backends["fake"] = Boom()
    with pytest.raises(BackendFailed, match="template missing"):
        host.engine.apply(abc(alice="v2"))
    assert host.fs.snapshot(f"{STATE_DIR}/generations") == before
    assert host.engine.current_generation() == 1


def test_a_failed_reload_rolls_back(host: Host):
    """The daemon refuses to reload generation 2: ``current`` goes back to generation 1,
    the daemon reloads it, generation 2 is removed and the outcome quotes the daemon."""
    host.engine.apply(abc())
    out = host.engine.apply(abc(alice="NORELOAD"))
    assert out.status == "rolled back" and out.generation == 1
    assert out.message == (
        "rolled back to generation 1: fake reload failed: rndc: 'reload' failed: failure"
    )
    assert host.fs.readlink(f"{STATE_DIR}/current") == "generations/1"
    assert host.engine.generations() == [1]
    assert [c.argv[0] for c in host.runner.ran[-2:]] == ["fake-reload", "fake-reload"]
    assert b"alice v1" in host.daemon.loaded["zone:alice.example"]
    assert {o.owner: o.status for o in out.owners} == {"alice": "rolled back"}
    # The next good change goes ahead as generation 2.
    assert host.engine.apply(abc(alice="alice v3")).generation == 2


def test_a_failing_probe_rolls_back_after_retrying(host: Host):
    """The daemon loads generation 2 but alice's zone never answers: the engine retries
    until the probe timeout (on the fake clock), then rolls back to generation 1."""
    host.engine.apply(abc())
    t0 = host.clock.time()
    out = host.engine.apply(abc(alice="DEAD"))
    assert out.status == "rolled back"
    assert "probe" in out.message and "alice.example" in out.message and "timed out" in out.message
    assert host.clock.time() - t0 >= host.engine.probe_timeout
    assert b"alice v1" in host.daemon.loaded["zone:alice.example"]
    assert host.engine.current_generation() == 1


def test_probes_skip_refused_owners(host: Host):
    """A refused new member's zone is not live, so it is not probed (its absence would
    otherwise roll back everyone)."""
    host.engine.apply(abc())
    out = host.engine.apply(state(*abc().zones, zone("d.example", "dave", "BROKEN")))
    assert out.status == "unchanged" and list(out.refused) == ["dave"]
    out = host.engine.apply(
        state(*abc(alice="alice v2").zones, zone("d.example", "dave", "BROKEN"))
    )
    assert out.status == "applied" and list(out.refused) == ["dave"]


def test_a_removed_zone_leaves_the_live_generation(host: Host):
    """Dropping bob's zone from the state removes it from the next generation."""
    host.engine.apply(abc())
    out = host.engine.apply(state(zone("alice.example", "alice", "alice v1")))
    assert out.applied == ("bob", "carol")
    assert list(host.live()) == ["zone:alice.example"]


def test_old_generations_and_unreferenced_units_are_collected(host: Host):
    """After eight changes with keep=5, five generations remain and every unit file on
    disk is named by one of them."""
    for i in range(8):
        host.engine.apply(abc(alice=f"alice v{i}"))
    assert host.engine.generations() == [4, 5, 6, 7, 8]
    named = set()
    for g in host.engine.generations():
        m = host.engine.manifest(g)
        named |= {f"{u['sha']}.{u['ext']}" for u in m["backends"]["fake"]["units"]}
    assert set(host.fs.listdir(f"{STATE_DIR}/units/fake")) == named
    assert len(named) == 5 + 2  # alice's last five versions, bob's and carol's


def test_prepare_is_refused_after_the_live_generation_moved(host: Host):
    """A prepared generation cannot be committed over a newer live one."""
    host.engine.apply(abc())
    stale = host.engine.prepare(abc(alice="a2"))
    host.engine.abort(stale)
    host.engine.apply(abc(bob="b2"))
    with pytest.raises(StalePrepare):
        host.engine.commit(stale)


def test_recover_repairs_a_dangling_current_and_leftovers(host: Host):
    """recover() removes staging leftovers, temporary files and generations newer than
    the live one, and points a dangling ``current`` at the highest complete generation
    (skipping one whose unit file is missing)."""
    host.engine.apply(abc())
    host.engine.apply(abc(alice="alice v2"))
    host.engine.apply(abc(alice="alice v3"))
    fs = host.fs
    # Generation 3 loses a unit file; current dangles; leftovers lie around.
    m3 = host.engine.manifest(3)
    alice3 = next(u for u in m3["backends"]["fake"]["units"] if u["owner"] == "alice")
    fs.remove(f"{STATE_DIR}/units/fake/{alice3['sha']}.zone")
    fs.remove(f"{STATE_DIR}/current")
    fs.symlink("generations/9", f"{STATE_DIR}/current")
    fs.mkdir(f"{STATE_DIR}/staging/4")
    fs.write(f"{STATE_DIR}/units/fake/abc.zone.tmp", b"half")
    fs.symlink("generations/1", f"{STATE_DIR}/current.tmp")
    rebooted = make_host(fs)
    engine = rebooted.engine
    assert engine.recover() == 2
    assert engine.recovery == "current moved from generation 9 to 2; reloaded"
    assert b"alice v2" in rebooted.daemon.loaded["zone:alice.example"]
    assert fs.readlink(f"{STATE_DIR}/current") == "generations/2"
    assert engine.generations() == [1, 2]
    assert fs.listdir(f"{STATE_DIR}/staging") == []
    assert not fs.is_symlink(f"{STATE_DIR}/current.tmp")
    assert not any(f.endswith(".tmp") for f in fs.listdir(f"{STATE_DIR}/units/fake"))


def test_recover_removes_a_generation_that_never_went_live(host: Host):
    """A generation renamed into place whose switch never happened is removed, so the
    live one stays and the next apply does not reuse a stale directory."""
    host.engine.apply(abc())
    prepared = host.engine.prepare(abc(alice="a2"))
    host.fs.rename(f"{STATE_DIR}/staging/2", f"{STATE_DIR}/generations/2")
    engine = make_host(host.fs).engine
    assert engine.recover() == 1
    assert engine.generations() == [1]
    assert prepared.generation == 2


def test_backends_left_out_of_the_registry_are_carried_over():
    """A backend in the live generation but not in this engine's registry keeps its
    index and units in the next generation (its daemon still includes them)."""
    host = make_host()
    host.engine.apply(abc())
    index = host.fs.read(f"{STATE_DIR}/current/fake/index")

    class Other(FakeBackend):
        pass

    other = Other(name="other")
    engine = Engine(STATE_DIR, {"other": other}, host.fs, host.runner, host.clock, host.daemon)
    out = engine.apply(abc(alice="a2"))
    assert out.status == "applied" and out.generation == 2
    assert host.fs.read(f"{STATE_DIR}/current/fake/index") == index
    assert sorted(engine.manifest()["backends"]) == ["fake", "other"]
    assert engine.recover() == 2


def test_state_dir_must_be_absolute():
    """``{path}`` substitutions are absolute paths, never an argument starting with "-"."""
    with pytest.raises(ValueError, match="absolute"):
        Engine("-rf", {}, FakeFileSystem(), FakeProcessRunner(), FakeClock())


def test_apply_and_rollback_on_the_real_file_system(tmp_path):
    """One apply, one idempotent apply, one rollback and one more apply over the real
    file system seam in tmp_path: ``current`` is a real symlink, unit files are real,
    staging is empty, and a fresh engine's recover() agrees."""
    state_dir = str(tmp_path / "state")
    fs = RealFileSystem()
    host = make_host(fs, state_dir=state_dir)
    out = host.engine.apply(abc())
    assert out.status == "applied" and out.generation == 1
    assert (tmp_path / "state" / "current").is_symlink()
    assert (tmp_path / "state" / "current" / "fake" / "index").read_bytes().count(b"\n") == 3
    assert host.engine.apply(abc()).status == "unchanged"
    out = host.engine.apply(abc(bob="NORELOAD", carol="carol v2"))
    assert out.status == "rolled back" and "rndc" in out.message
    assert fs.readlink(f"{state_dir}/current") == "generations/1"
    assert sorted((tmp_path / "state" / "generations").iterdir()) == [
        tmp_path / "state/generations/1"
    ]
    out = host.engine.apply(abc(bob="bob BROKEN", carol="carol v2"))
    assert out.status == "applied" and out.generation == 2 and list(out.refused) == ["bob"]
    assert b"carol v2" in host.daemon.loaded["zone:carol.example"]
    assert list((tmp_path / "state" / "staging").iterdir()) == []
    units = sorted(p.name for p in (tmp_path / "state" / "units" / "fake").iterdir())
    assert len(units) == 4 and not any(u.endswith(".tmp") for u in units)
    assert make_host(fs, state_dir=state_dir).engine.recover() == 2


def many(n: int, **texts: str):
    return state(
        *(zone(f"m{i:02}.example", f"m{i:02}", texts.get(f"m{i:02}", "v1")) for i in range(n))
    )


@pytest.mark.parametrize("culprits", [("m13",), ("m03", "m27")])
def test_bisection_costs_logarithmically_many_whole_checks(culprits):
    """32 owners change at once, per-unit checks are off (as for a big Apache regen) and
    the whole check refuses one or two of them: only those are refused, the others go
    live, and the whole check ran at most 1 + 2·k·log2(32) + k times, not 32."""
    host = make_host()
    host.backend.unit_checks = False
    host.engine.apply(many(32))
    host.runner.ran.clear()
    out = host.engine.apply(
        many(32, **{f"m{i:02}": "CONFLICT" if f"m{i:02}" in culprits else "v2" for i in range(32)})
    )
    assert sorted(out.refused) == sorted(culprits)
    assert len(out.applied) == 32 - len(culprits)
    checks = sum(1 for c in host.runner.ran if c.argv[0] == "fake-check-all")
    k = len(culprits)
    assert checks <= 1 + 2 * k * 5 + k, checks
    live = host.live()
    assert all(
        b"v2" in live[f"zone:m{i:02}.example"] for i in range(32) if f"m{i:02}" not in culprits
    )
    assert all(b"v1" in live[f"zone:{c}.example"] for c in culprits)


def test_an_unverified_live_generation_is_checked_reloaded_and_probed_again():
    """A crash after the first switch but before the verified mark (no older generation
    to go back to): recover() keeps it, and the next apply of the same state is not
    "unchanged": it checks, reloads and probes it as a new generation; then a third
    apply is unchanged."""
    host = make_host()
    host.fs.arm()
    host.engine.apply(abc())
    mark = next(i for i, (k, p) in enumerate(host.fs.ops) if p.endswith("/verified"))
    host = make_host()
    host.fs.arm(crash_at=mark)
    with pytest.raises(Crash):
        host.engine.apply(abc())
    fs = host.fs.reboot("visible")
    again = make_host(fs)
    assert again.engine.recover() == 1
    assert not again.engine.verified(1)
    again.daemon.boot()
    again.daemon.good.clear()  # it must be checked again before a reload
    out = again.engine.apply(abc())
    assert out.status == "applied" and out.generation == 2
    assert [c.argv[0] for c in again.runner.ran] == ["fake-check-all", "fake-reload"]
    assert again.engine.verified(2)
    assert again.engine.apply(abc()).status == "unchanged"


def test_abort_leaves_nothing_staged():
    """A prepared generation the dispatcher abandons (another host failed its prepare)
    is removed; nothing live changed and the next prepare reuses the number."""
    host = make_host()
    host.engine.apply(abc())
    prepared = host.engine.prepare(abc(alice="a2"))
    assert prepared.changed and prepared.generation == 2
    assert host.fs.listdir(f"{STATE_DIR}/staging") == ["2"]
    host.engine.abort(prepared)
    assert host.fs.listdir(f"{STATE_DIR}/staging") == []
    assert host.engine.current_generation() == 1 and host.daemon.reloads == 1
    assert host.engine.prepare(abc(alice="a3")).generation == 2


def test_a_failed_first_generation_rolls_back_to_nothing(host: Host):
    """The very first generation fails its reload: there is nothing to go back to, so
    ``current`` is removed ("generation 0"), the outcome says so with both daemon
    messages, and a good apply afterwards starts again at generation 1."""
    out = host.engine.apply(abc(alice="NORELOAD"))
    assert out.status == "rolled back" and out.generation == 0
    assert out.message.startswith("rolled back to generation 0: fake reload failed: rndc")
    assert "reloading generation 0 also failed" in out.message
    assert not host.fs.is_symlink(f"{STATE_DIR}/current")
    assert host.engine.generations() == []
    assert host.engine.apply(abc()).generation == 1


def test_a_prober_that_raises_still_rolls_back(host: Host):
    """A bug in the prober (an exception instead of an answer) after the switch rolls
    back like a failed probe, naming the exception."""
    host.engine.apply(abc())

    class Broken:
        def probe(self, probe):
            raise RuntimeError("resolver exploded")

    host.engine.prober = Broken()
    out = host.engine.apply(abc(alice="a2"))
    assert out.status == "rolled back"
    assert out.message == "rolled back to generation 1: RuntimeError: resolver exploded"
    assert host.engine.current_generation() == 1


def test_a_site_wide_index_change_goes_live_without_member_changes(host: Host):
    """A change only in the index (a site setting of the backend) is a new generation
    with no member named; the daemon reloads it."""
    host.engine.apply(abc())
    host.backend.index_header = "log format v2"
    out = host.engine.apply(abc())
    assert out.status == "applied" and out.generation == 2 and out.applied == ()
    assert out.message == "applied generation 2 (no member changes)"
    assert host.fs.read(f"{STATE_DIR}/current/fake/index").startswith(b"# log format v2\n")


@pytest.mark.parametrize("with_member_change", [False, True])
def test_a_broken_site_wide_change_is_refused_as_a_whole(host: Host, with_member_change):
    """When the configuration fails its check even without any member's change (a
    broken site setting), prepare raises CheckFailed with the checker's message instead
    of blaming members or committing: nothing live changes and nothing reloads."""
    host.engine.apply(abc())
    host.backend.index_header = "BROKEN setting"
    with pytest.raises(CheckFailed, match="without any member's change.*whole-configuration"):
        host.engine.apply(abc(alice="a2") if with_member_change else abc())
    assert host.engine.current_generation() == 1
    assert host.fs.listdir(f"{STATE_DIR}/staging") == []
    assert host.daemon.reloads == 1


def test_unit_checks_in_parallel_give_the_same_verdicts():
    """With check_workers=4 the per-unit checks run concurrently; the verdicts are the
    same as one at a time: bob refused with his checker's message, the others live."""
    host = make_host(check_workers=4)
    host.engine.apply(many(12))
    out = host.engine.apply(
        many(12, **{f"m{i:02}": "BROKEN" if i == 5 else "v2" for i in range(12)})
    )
    assert list(out.refused) == ["m05"] and "BROKEN record" in out.refused["m05"]
    assert len(out.applied) == 11
    assert sum(1 for c in host.runner.ran if c.argv[0] == "fake-check-unit") == 12 + 12
    assert b"v1" in host.live()["zone:m05.example"]


TEXTS = ("v1", "v2", "v3", "BROKEN", "CONFLICT", "NORELOAD", "DEAD", None)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries({o: st.sampled_from(TEXTS) for o in ("alice", "bob", "carol")}),
        min_size=1,
        max_size=6,
    )
)
def test_the_live_configuration_follows_a_simple_model(steps):
    """Against a model: each member's live zone is their last change that passed its
    checks and its probe; a reload failure rolls back the whole apply, and so does a
    probe failure when no other member changed anything; a refused member keeps their
    previous zone (or none). After every apply the daemon serves exactly what
    ``current`` holds, and applying the same state again changes nothing (or, when a
    zone was refused for its probe, tries that zone alone and rolls back again)."""
    host = make_host()
    live: dict[str, str] = {}
    for step in steps:
        desired = state(*(zone(f"{o}.example", o, t) for o, t in step.items() if t is not None))
        ok = {o: t for o, t in step.items() if t not in ("BROKEN", "CONFLICT")}
        changed = {o: t for o, t in ok.items() if live.get(o) != t}
        dead = {o for o, t in changed.items() if t == "DEAD"}
        refused = {o for o, t in step.items() if t in ("BROKEN", "CONFLICT")}
        out = host.engine.apply(desired)
        if any(t == "NORELOAD" for t in changed.values()) or (dead and dead == set(changed)):
            assert out.status == "rolled back", out
            assert set(out.culprits) == (dead if dead == set(changed) else set())
        else:
            for o, t in changed.items():
                if o in dead:
                    continue
                if t is None:
                    live.pop(o, None)
                else:
                    live[o] = t
            assert out.status in ("applied", "unchanged"), out
            assert set(out.applied) == set(changed) - dead
            refused |= dead
            assert all(out.refused[o].startswith("rolled back: dns probe") for o in dead)
        assert set(out.refused) == refused
        expected = {
            u.key: u.content
            for u in FakeBackend().units(
                state(*(zone(f"{o}.example", o, t) for o, t in live.items())), {}, 0
            )
        }
        if host.engine.current_generation():
            assert host.live() == expected
            assert host.daemon.loaded == expected
        else:
            # Nothing to go back to: the daemon keeps whatever it last loaded.
            assert expected == {}
        if out.status != "rolled back" and not dead:
            assert host.engine.apply(desired).status == "unchanged"
        elif out.status != "rolled back":  # the dead zone is tried again, alone
            assert host.engine.apply(desired).status == "rolled back"


def test_a_probe_that_answers_after_a_while_passes():
    """Right after a reload a daemon may not answer yet: probes are retried every
    probe_interval (on the fake clock) until they pass, within probe_timeout; only the
    probes of the changed backend are asked, and only failing ones are asked again."""
    host = make_host()
    host.engine.apply(abc())
    t0 = host.clock.time()
    answers = iter(["SERVFAIL", "SERVFAIL", True])

    def answer(probe):
        return next(answers) if probe.target[2] == "alice.example" else True

    host.engine.prober = prober = FakeProber(answer)
    out = host.engine.apply(abc(alice="a2"))
    assert out.status == "applied"
    asked = [p.target[2] for p in prober.probed]
    assert asked == ["alice.example", "alice.example", "alice.example"]
    assert host.clock.time() - t0 == pytest.approx(2 * host.engine.probe_interval)


def test_only_the_changed_owners_are_probed():
    """A change of one member probes that member's units, not every unit of the host
    (which would grow with unrelated members); a change that moves no member's unit
    (here: a site-wide index header) still probes one unit to show the daemon answers."""
    host = make_host()
    host.engine.prober = prober = FakeProber(lambda probe: True)
    host.engine.apply(abc())
    assert sorted(p.owner for p in prober.probed) == ["alice", "bob", "carol"]
    prober.probed.clear()
    assert host.engine.apply(abc(bob="b2")).status == "applied"
    assert [p.owner for p in prober.probed] == ["bob"]
    prober.probed.clear()
    host.backend.index_header = "site-wide change"
    assert host.engine.apply(abc(bob="b2")).status == "applied"
    assert len(prober.probed) == 1


@pytest.mark.parametrize(
    "bad", [{"ext": "../x"}, {"ext": ""}, {"owner": ""}, {"content": "text, not bytes"}]
)
def test_a_malformed_unit_is_a_backend_failure(host: Host, bad):
    """A unit whose extension could leave the units directory, or with no owner, or
    with text instead of bytes, is refused as a backend bug before anything is
    written."""

    class Bad(FakeBackend):
        def units(self, state, previous, now):
            return [attrs.evolve(u, **bad) for u in super().units(state, previous, now)]

    host.engine.backends["fake"] = Bad()
    host.fs.arm()
    with pytest.raises(BackendFailed, match="bad unit"):
        host.engine.apply(abc())
    assert host.fs.ops == []


class WebBackend(FakeBackend):
    """A second backend over the same zones, whose units' own check refuses "WEBBAD".
    When ``frozen``, it keeps every live unit as it is (nothing to change)."""

    frozen = False

    def units(self, state, previous, now):
        if self.frozen:
            return [previous[k] for k in previous]
        return [
            attrs.evolve(u, content=u.content.replace(b"WEBBAD", b"BROKEN"))
            for u in super().units(state, previous, now)
        ]


def test_an_owner_refused_by_one_backend_keeps_their_old_units_in_every_backend():
    """alice's change breaks only her web unit: she is refused in both backends (her
    dns change does not go live alone), bob's change goes live in both, and each
    backend reloads once; a later change touching only dns reloads only dns."""
    fs = FakeFileSystem()
    makedirs(fs, STATE_DIR)
    daemon = FakeDaemon(fs, STATE_DIR).boot()
    runner = FakeProcessRunner(handler=daemon)
    backends = {"dns": FakeBackend(name="dns"), "web": WebBackend(name="web")}
    engine = Engine(STATE_DIR, backends, fs, runner, FakeClock(), daemon)
    engine.apply(abc())
    runner.ran.clear()
    out = engine.apply(abc(alice="WEBBAD", bob="bob v2"))
    assert out.applied == ("bob",) and list(out.refused) == ["alice"]
    assert out.refused["alice"].startswith("web zone:alice.example: ")
    for b in ("dns", "web"):
        live = daemon.read_index(f"{STATE_DIR}/current/{b}/index")
        assert b"alice v1" in live["zone:alice.example"] and b"bob v2" in live["zone:bob.example"]
        assert daemon.loaded_by[b] == live
    assert [c.argv for c in runner.ran if c.argv[0] == "fake-reload"] == [
        ("fake-reload", "dns"),
        ("fake-reload", "web"),
    ]
    backends["web"].frozen = True
    runner.ran.clear()
    assert engine.apply(abc(bob="bob v3")).applied == ("bob",)
    assert [c.argv for c in runner.ran if c.argv[0] == "fake-reload"] == [("fake-reload", "dns")]


def test_a_members_dead_zone_does_not_hold_back_the_others(host: Host):
    """alice's new zone loads but never answers its probe while bob's change is fine:
    the first commit rolls back, then apply refuses alice (with her probe's message)
    and commits bob's change alone; alice keeps her previous zone."""
    host.engine.apply(abc())
    out = host.engine.apply(abc(alice="DEAD", bob="bob v2"))
    assert out.status == "applied" and out.generation == 2 and out.applied == ("bob",)
    assert out.refused["alice"].startswith("rolled back: dns probe")
    assert "timed out" in out.refused["alice"]
    live = host.live()
    assert b"alice v1" in live["zone:alice.example"] and b"bob v2" in live["zone:bob.example"]
    assert host.daemon.loaded == live


def test_concurrent_calls_are_refused_not_interleaved(host: Host):
    """While one apply runs (here: inside its whole-configuration check), a call from
    another thread is refused with EngineBusy instead of interleaving with it."""
    host.engine.apply(abc())
    seen: list[BaseException] = []
    daemon = host.runner.handler

    def meddle(cmd):
        if cmd.argv[0] == "fake-check-all" and not seen:

            def other():
                try:
                    host.engine.prepare(abc(bob="b3"))
                except EngineBusy as exc:
                    seen.append(exc)

            t = threading.Thread(target=other)
            t.start()
            t.join()
        return daemon(cmd)

    host.runner.handler = meddle
    assert host.engine.apply(abc(alice="a2")).status == "applied"
    assert len(seen) == 1 and "another call is running" in str(seen[0])


def test_units_shows_what_each_generation_holds(host: Host):
    """units() gives the live (or an older kept) generation's units by key with their
    owner and content, read back from the unit files."""
    host.engine.apply(abc())
    host.engine.apply(abc(alice="alice v2"))
    live = host.engine.units("fake")
    assert sorted(live) == ["zone:alice.example", "zone:bob.example", "zone:carol.example"]
    assert live["zone:alice.example"].owner == "alice"
    assert live["zone:alice.example"].content == b"zone alice.example\n@ TXT alice v2\n"
    assert b"alice v1" in host.engine.units("fake", 1)["zone:alice.example"].content
    assert host.engine.units("other") == {}


def test_a_renderer_that_refuses_one_owner_at_a_time_is_asked_again():
    """A renderer that names only the first refused owner each time: the engine keeps
    leaving owners out until it renders, so bob and carol are both refused with their
    own messages and alice's change goes live."""

    class OneAtATime(FakeBackend):
        def units(self, state, previous, now):
            for z in state.zones:
                if any("EVIL" in str(r.data) for r in z.records):
                    raise RenderRefusedFake((z.owner,))
            return super().units(state, previous, now)

    host = make_host()
    host.engine.backends["fake"] = OneAtATime()
    host.engine.apply(abc())
    out = host.engine.apply(abc(alice="a2", bob="EVIL", carol="EVIL"))
    assert out.applied == ("alice",)
    assert out.refused == {
        "bob": "fake: bob: zone text holds a forbidden byte",
        "carol": "fake: carol: zone text holds a forbidden byte",
    }
