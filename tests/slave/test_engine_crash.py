"""Kill points and full disks at every step of an apply.

With the fake file system, a full apply is run once to count its mutating operations;
then for every index k the apply is run again with a crash before operation k, the host
"reboots" into each image the durability model allows (only what was synced; everything
done so far; a few seeded mixes of the two per directory and file), a fresh engine runs ``recover()``, and the live configuration (what
``current`` points at and every file reachable from it) must be exactly the old
generation's or exactly a generation the uncrashed apply made live: never a mix, never
dangling. Then the same apply must converge.

Disk full (ENOSPC) is injected at each write, fsync, directory fsync, rename, mkdir and
symlink of the apply: it must fail with a clear error naming the full disk, the live
configuration byte-identical, staging and temporary files cleaned up, no reload run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domtool.slave.engine import DiskFull, RollbackFailed
from domtool.slave.seams import Crash, FakeFileSystem
from tests.slave.fake_backend import state, zone
from tests.slave.test_engine import STATE_DIR, Host, abc, make_host


def live_config(fs: FakeFileSystem) -> dict:
    """Everything the daemon can reach from ``current``; fails if anything dangles or
    a unit file's content does not match its name."""
    target = fs.readlink(f"{STATE_DIR}/current")
    manifest = json.loads(fs.read(f"{STATE_DIR}/current/manifest.json"))
    out = {"target": target, "manifest": manifest, "files": {}}
    for backend, body in manifest["backends"].items():
        for f in body["index"]:
            out["files"][f"{backend}/{f}"] = fs.read(f"{STATE_DIR}/current/{backend}/{f}")
        named = {f"{STATE_DIR}/units/{backend}/{u['sha']}.{u['ext']}" for u in body["units"]}
        index = fs.read(f"{STATE_DIR}/current/{backend}/index").decode().splitlines()
        reachable = {line.split(" ", 1)[1] for line in index}
        assert reachable == named
        for path in sorted(reachable):
            out["files"][path] = fs.read(path)
    return out


def content(config: dict) -> dict:
    """A live configuration without its generation number."""
    return {"files": config["files"], "backends": config["manifest"]["backends"]}


# (name, state to apply over abc(), whether it should end applied)
SCENARIOS = {
    "change-add-remove": state(
        zone("alice.example", "alice", "alice v2"),
        zone("carol.example", "carol", "carol v1"),
        zone("dave.example", "dave", "dave v1"),
    ),
    "bisection": abc(alice="alice v2", bob="bob CONFLICT", carol="carol v2"),
    "rollback": abc(alice="NORELOAD", carol="carol v2"),
    # alice's zone never answers: rolled back, then committed again without her.
    "probe-retry": abc(alice="DEAD", bob="bob v2"),
    # Over two generations with keep=2: the commit removes generation 1 and its units.
    "gc": abc(alice="alice v2", carol="carol v2"),
}


MIXED = 4  # seeded mixed durability images per kill point, besides synced and visible

# Before the scenario's apply: the states applied, and how many generations to keep.
SETUP = {"gc": ([abc(), abc(alice="alice v0")], 2)}


def old_host(scenario: str) -> Host:
    history, keep = SETUP.get(scenario, ([abc()], 5))
    host = make_host(keep=keep)
    for i, past in enumerate(history, 1):
        assert host.engine.apply(past).generation == i
    host.fs.arm()
    return host


def reboot(scenario: str, fs: FakeFileSystem) -> Host:
    return make_host(fs, keep=SETUP.get(scenario, ([], 5))[1])


def reference(scenario: str) -> tuple[list, list[dict], dict]:
    """The uncrashed apply: its operations, every configuration a reload saw live, and
    the final live configuration."""
    new = SCENARIOS[scenario]
    host = old_host(scenario)
    seen: list[dict] = []
    daemon = host.runner.handler

    def spy(cmd):
        if cmd.argv[0] == "fake-reload":
            seen.append(live_config(host.fs))
        return daemon(cmd)

    host.runner.handler = spy
    host.engine.apply(new)
    return list(host.fs.ops), seen, live_config(host.fs)


def assert_clean(fs: FakeFileSystem) -> None:
    assert fs.listdir(f"{STATE_DIR}/staging") == []
    assert not fs.is_symlink(f"{STATE_DIR}/current.tmp")
    assert not fs.is_symlink(f"{STATE_DIR}/undo.tmp")
    assert not any(f.endswith(".tmp") for f in fs.listdir(f"{STATE_DIR}/units/fake"))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_crash_at_any_step_leaves_the_old_or_the_new_generation(scenario: str):
    """For every mutating operation k of the apply, crash before it, reboot into both
    durability images, recover: the live configuration is the old generation's or one
    the apply made live, byte for byte; staging is clean; applying again converges to
    what the uncrashed apply reached."""
    new = SCENARIOS[scenario]
    ops, seen, final = reference(scenario)
    old = live_config(old_host(scenario).fs)
    allowed = [old, *seen]
    assert len(ops) > 15  # the enumeration covers a real apply
    if scenario == "gc":
        assert ("rmtree", f"{STATE_DIR}/generations/1") in ops
    outcomes = set()
    for k in range(len(ops)):
        host = old_host(scenario)
        host.fs.arm(crash_at=k)
        with pytest.raises(Crash):
            host.engine.apply(new)
        for image, fs in host.fs.crash_images(mixed=MIXED):
            rebooted = reboot(scenario, fs)
            live = rebooted.engine.recover()
            rebooted.daemon.boot()  # the daemons start on what recover() left live
            config = live_config(fs)
            where = f"crash before op {k} {ops[k]}, image {image}"
            assert config in allowed, where
            assert config["target"] == f"generations/{live}", where
            assert_clean(fs)
            outcomes.add(allowed.index(config))
            again = rebooted.engine.apply(new)
            assert content(live_config(fs)) == content(final), where
            assert again.status in ("applied", "unchanged", "rolled back"), where
    # Both sides of the switch were reached by some kill point; a generation that
    # never passed its reload and probes never survives a crash (recover goes back).
    reached = [allowed[i] for i in sorted(outcomes)]
    assert old in reached
    if scenario == "rollback":
        assert reached == [old]
    else:
        assert content(final) != content(old) and final in reached


def test_the_fake_really_loses_unsynced_data():
    """Sanity of the model the crash test relies on: a file written and renamed but not
    fsynced comes back empty in the synced image, and a rename whose directory was not
    fsynced is undone."""
    fs = FakeFileSystem()
    fs.mkdir("/d")
    fs.fsync_dir("/")
    fs.write("/d/a", b"data")
    fs.rename("/d/a", "/d/b")
    fs.fsync_dir("/d")
    fs.write("/d/c", b"synced")
    fs.fsync("/d/c")
    fs.fsync_dir("/d")
    fs.rename("/d/c", "/d/e")
    synced = fs.reboot("synced")
    assert synced.read("/d/b") == b""
    assert synced.read("/d/c") == b"synced" and not synced.exists("/d/e")
    visible = fs.reboot("visible")
    assert visible.read("/d/b") == b"data" and visible.read("/d/e") == b"synced"


@pytest.mark.parametrize("scenario", ["change-add-remove", "bisection", "gc"])
@pytest.mark.parametrize(
    "kind", ["write", "fsync", "fsync_dir", "rename", "mkdir", "symlink", "link"]
)
def test_disk_full_at_each_operation_changes_nothing_live(kind: str, scenario: str):
    """ENOSPC at the i-th operation of this kind, for every i the apply performs: the
    apply raises DiskFull naming the full disk, the live configuration (and every
    generation on disk) is byte-identical, staging and temporary files are gone, no
    reload ran; once space is back the same apply goes through."""
    new = SCENARIOS[scenario]
    ops, _, final = reference(scenario)
    count = sum(1 for k, _ in ops if k == kind)
    if kind in ("write", "fsync", "fsync_dir", "rename"):
        assert count > 0
    for i in range(1, count + 1):
        host = old_host(scenario)
        old_units = dict(host.daemon.loaded)
        before = live_config(host.fs)
        generations = host.fs.snapshot(f"{STATE_DIR}/generations")
        host.runner.ran.clear()
        host.fs.arm(fail={kind: i})
        with pytest.raises(DiskFull) as info:
            host.engine.apply(new)
        message = str(info.value)
        assert message.startswith("disk full (ENOSPC)"), message
        assert "live configuration is unchanged" in message
        assert live_config(host.fs) == before, (kind, i)
        assert host.fs.snapshot(f"{STATE_DIR}/generations") == generations, (kind, i)
        assert_clean(host.fs)
        # No reload, or (disk full when recording the verified mark) one back to the old.
        reloads = [c for c in host.runner.ran if c.argv[0] == "fake-reload"]
        assert len(reloads) in (0, 2), (kind, i)
        assert host.daemon.loaded == old_units, (kind, i)
        assert host.engine.apply(new).status == "applied"
        assert content(live_config(host.fs)) == content(final)


@pytest.mark.parametrize(
    "kind", ["write", "fsync", "fsync_dir", "rename", "mkdir", "symlink", "link"]
)
def test_disk_full_during_a_rollback_is_reported_and_recovered(kind: str):
    """The new generation fails to reload and the disk is full at the i-th operation of
    this kind (for every i, including the rollback's own): the apply ends as DiskFull,
    "rolled back", or RollbackFailed saying the new generation stays live until
    recover(); after recover() the old generation is live, byte-identical."""
    new = SCENARIOS["rollback"]
    ops, _, _ = reference("rollback")
    seen = set()
    for i in range(1, sum(1 for k, _ in ops if k == kind) + 1):
        host = old_host("rollback")
        before = live_config(host.fs)
        host.fs.arm(fail={kind: i})
        try:
            out = host.engine.apply(new)
            seen.add(out.status)
            assert out.status == "rolled back" and "rndc" in out.message
        except DiskFull as exc:
            seen.add("disk full")
            assert "disk full (ENOSPC)" in str(exc)
        except RollbackFailed as exc:
            seen.add("rollback failed")
            assert "stays live" in str(exc) and "disk full" in str(exc)
        engine = reboot("rollback", host.fs).engine
        assert engine.recover() == 1
        assert live_config(host.fs) == before, (kind, i)
        assert_clean(host.fs)
    if kind in ("rename", "fsync_dir"):  # the switch back itself was hit
        assert {"disk full", "rollback failed"} <= seen


def test_a_crash_during_recover_is_recovered_by_the_next_recover():
    """recover() has work to do (the host died just after switching to a generation
    that was never verified, leaving the undo link, plus a staging leftover); crash it
    at each of its own mutating operations, reboot into both images, run recover()
    again: the old generation is live, byte for byte, and everything is clean."""
    new = SCENARIOS["rollback"]
    ops, _, _ = reference("rollback")
    switched = next(i for i, (k, p) in enumerate(ops) if k == "fsync_dir" and p == STATE_DIR)
    host = old_host("rollback")
    old = live_config(host.fs)
    host.fs.arm(crash_at=switched + 1)  # just after the switch became durable
    with pytest.raises(Crash):
        host.engine.apply(new)
    wrecked = host.fs.reboot("synced")
    assert wrecked.readlink(f"{STATE_DIR}/current") == "generations/2"
    assert wrecked.is_symlink(f"{STATE_DIR}/undo.tmp")
    wrecked.mkdir(f"{STATE_DIR}/staging/7")
    wrecked.fsync_dir(f"{STATE_DIR}/staging")
    counting = reboot("rollback", wrecked.reboot("synced"))
    counting.fs.arm()
    assert counting.engine.recover() == 1
    n = len(counting.fs.ops)
    assert n >= 5
    for k in range(n):
        h = reboot("rollback", wrecked.reboot("synced"))
        h.fs.arm(crash_at=k)
        with pytest.raises(Crash):
            h.engine.recover()
        for image, fs in h.fs.crash_images(mixed=MIXED):
            again = reboot("rollback", fs)
            assert again.engine.recover() == 1, (k, image)
            assert live_config(fs) == old, (k, image)
            assert_clean(fs)
            assert again.engine.generations() == [1]


def test_a_crash_during_the_very_first_apply_leaves_nothing_or_generation_one():
    """On an empty host, a crash at any step of the first apply comes back with no
    configuration at all (no ``current``, no generation) or exactly generation 1; the
    same apply then converges."""
    reference_host = make_host()
    reference_host.fs.arm()
    reference_host.engine.apply(abc())
    ops = list(reference_host.fs.ops)
    final = live_config(reference_host.fs)
    reached = set()
    for k in range(len(ops)):
        host = make_host()
        host.fs.arm(crash_at=k)
        with pytest.raises(Crash):
            host.engine.apply(abc())
        for image, fs in host.fs.crash_images(mixed=MIXED):
            rebooted = make_host(fs)
            live = rebooted.engine.recover()
            where = f"crash before op {k} {ops[k]}, image {image}"
            if live == 0:
                assert not fs.is_symlink(f"{STATE_DIR}/current"), where
                assert rebooted.engine.generations() == [], where
                reached.add("nothing")
            else:
                assert live_config(fs) == final, where
                reached.add("generation 1")
            rebooted.daemon.boot()
            rebooted.engine.apply(abc())
            assert content(live_config(fs)) == content(final), where
    assert reached == {"nothing", "generation 1"}


KILLER = r"""
import os, sys
from domtool.slave.engine import Engine
from domtool.slave.seams import MUTATING, FakeClock, FakeProcessRunner, RealFileSystem
from tests.slave.fake_backend import FakeBackend, FakeDaemon
from tests.slave.test_engine import abc

state_dir, kill_at = sys.argv[1], int(sys.argv[2])


class Killing(RealFileSystem):
    done = 0

    def tick(self):
        if self.done == kill_at:
            os._exit(137)  # no cleanup, no flush of Python buffers: a killed process
        self.done += 1


for name in MUTATING:
    def wrapped(self, *args, _name=name):
        self.tick()
        return getattr(RealFileSystem, _name)(self, *args)
    setattr(Killing, name, wrapped)

fs = Killing()
daemon = FakeDaemon(fs, state_dir).boot()
engine = Engine(state_dir, {"fake": FakeBackend()}, fs, FakeProcessRunner(handler=daemon), FakeClock(), daemon)
out = engine.apply(abc(alice="alice v2", carol="carol v2"))
assert out.status == "applied", out
print(fs.done)
"""


def test_a_killed_process_on_the_real_file_system_comes_back_old_or_new(tmp_path):
    """The same apply over the real file system in a child process that kills itself
    (os._exit, no cleanup) before its k-th mutating operation, for every third k (the
    fake file system covers every k; this shows the real calls behave alike): a fresh
    engine's recover() leaves exactly the old or the new generation live, byte for
    byte, with nothing dangling, and the apply then converges."""
    import shutil
    import subprocess
    import sys

    from domtool.slave.seams import RealFileSystem

    root = Path(__file__).resolve().parents[2]
    fs = RealFileSystem()

    def setup(name: str) -> Path:
        """Generation 1 in a fresh state directory (the index names absolute paths,
        so a state directory cannot be copied)."""
        state_dir = tmp_path / name
        assert make_host(fs, state_dir=str(state_dir)).engine.apply(abc()).generation == 1
        return state_dir

    def run(state_dir: Path, kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", KILLER, str(state_dir), str(kill_at)],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def config(state_dir: Path) -> dict:
        fs.readlink(f"{state_dir}/current")
        live = {}
        index = (state_dir / "current" / "fake" / "index").read_text()
        for line in index.splitlines():
            key, path = line.split(" ", 1)
            live[key] = Path(path).read_bytes()  # fails if dangling
        return {"index": index.replace(str(state_dir), "S"), "units": live}

    old = config(setup("old"))
    whole = setup("whole")
    done = run(whole, -1)
    assert done.returncode == 0, done.stderr
    count = int(done.stdout)
    new = config(whole)
    assert count > 15 and new != old
    reached = []
    for k in range(0, count, 3):
        state_dir = setup(f"k{k}")
        killed = run(state_dir, k)
        assert killed.returncode == 137, killed.stderr
        rebooted = make_host(fs, state_dir=str(state_dir))
        rebooted.engine.recover()
        live = config(state_dir)
        assert live in (old, new), k
        reached.append(live == new)
        assert list((state_dir / "staging").iterdir()) == []
        rebooted.daemon.boot()
        rebooted.engine.apply(abc(alice="alice v2", carol="carol v2"))
        assert config(state_dir) == new, k
        shutil.rmtree(state_dir)
    assert any(reached) and not all(reached)
