"""Kill points and full disks when index files are hard-linked from the base generation.

Two backends: "fake" holds alice's and bob's zones, "other" carol's. A change of alice's
zone changes fake's index only, so staging hard-links other's index file from the live
generation instead of writing it (``GenerationStore.stage``). For every mutating
operation of that apply: crash before it, reboot into each durability image, recover;
the live configuration (both backends' index files and every unit they name) is the old
generation's or the new one's, and the same apply converges. ENOSPC at the link fails
the apply with the live configuration unchanged."""

from __future__ import annotations

import json

import attrs
import pytest

from domtool.slave.engine import DiskFull, Engine
from domtool.slave.seams import Crash, FakeClock, FakeFileSystem, FakeProcessRunner, makedirs
from tests.slave.fake_backend import FakeBackend, FakeDaemon
from tests.slave.test_engine import STATE_DIR, abc


class OwnersBackend(FakeBackend):
    """The fake backend over some owners' zones only."""

    owners: tuple[str, ...] = ()

    def units(self, state, previous, now):
        return super().units(mine(state, self.owners), previous, now)

    def probes(self, state):
        return super().probes(mine(state, self.owners))


def mine(state, owners):
    return attrs.evolve(state, zones=tuple(z for z in state.zones if z.owner in owners))


def make(fs: FakeFileSystem | None = None):
    fs = fs if fs is not None else FakeFileSystem()
    makedirs(fs, STATE_DIR)
    daemon = FakeDaemon(fs, STATE_DIR).boot()
    gens = f"{STATE_DIR}/generations"
    for g in fs.listdir(gens) if fs.is_dir(gens) else ():
        try:  # (boot remembers the "fake" backend's generations only)
            daemon.good.append(daemon.read_index(f"{gens}/{g}/other/index"))
        except OSError:
            pass
    fake, other = OwnersBackend(), OwnersBackend(name="other")
    fake.owners, other.owners = ("alice", "bob"), ("carol",)
    engine = Engine(
        STATE_DIR,
        {"fake": fake, "other": other},
        fs,
        FakeProcessRunner(handler=daemon),
        FakeClock(),
        daemon,
    )
    return engine, fs, daemon


def old_host():
    engine, fs, daemon = make()
    assert engine.apply(abc()).generation == 1
    fs.arm()
    return engine, fs, daemon


NEW = abc(alice="alice v2")


def live(fs: FakeFileSystem) -> dict:
    """Everything reachable from ``current``: the manifest, both index files, the units
    they name (which must be those the manifest names)."""
    target = fs.readlink(f"{STATE_DIR}/current")
    manifest = json.loads(fs.read(f"{STATE_DIR}/current/manifest.json"))
    out = {"target": target, "files": {}}
    for b, body in manifest["backends"].items():
        index = fs.read(f"{STATE_DIR}/current/{b}/index")
        out["files"][b] = index
        named = {f"{STATE_DIR}/units/{b}/{u['sha']}.{u['ext']}" for u in body["units"]}
        reachable = {line.split(" ", 1)[1] for line in index.decode().splitlines()}
        assert reachable == named
        for path in sorted(reachable):
            out["files"][path] = fs.read(path)
    return out


def test_the_unchanged_index_is_linked_not_written():
    engine, fs, _ = old_host()
    assert engine.apply(NEW).status == "applied"
    assert ("link", f"{STATE_DIR}/staging/2/other/index") in fs.ops
    assert not any(k == "write" and p.endswith("/other/index") for k, p in fs.ops)
    assert not any(k == "fsync" and p.endswith("/other/index") for k, p in fs.ops)
    assert fs.read(f"{STATE_DIR}/generations/2/other/index") == fs.read(
        f"{STATE_DIR}/generations/1/other/index"
    )


def test_a_crash_at_any_step_of_a_linking_apply_leaves_old_or_new():
    engine, fs, daemon = old_host()
    old = live(fs)
    engine.apply(NEW)
    ops, new = list(fs.ops), live(fs)
    assert ("link", f"{STATE_DIR}/staging/2/other/index") in ops
    reached = set()
    for k in range(len(ops)):
        engine, fs, _ = old_host()
        fs.arm(crash_at=k)
        with pytest.raises(Crash):
            engine.apply(NEW)
        for image, img in fs.crash_images(mixed=4):
            again, _, daemon = make(img)
            gen = again.recover()
            daemon.boot()
            config = live(img)
            where = f"crash before op {k} {ops[k]}, image {image}"
            assert config["target"] == f"generations/{gen}", where
            assert config["files"] in (old["files"], new["files"]), where
            reached.add(config["files"] == new["files"])
            assert again.apply(NEW).status in ("applied", "unchanged"), where
            assert live(img)["files"] == new["files"], where
    assert reached == {False, True}


def test_disk_full_at_the_link_changes_nothing_live():
    engine, fs, _ = old_host()
    before = live(fs)
    fs.arm(fail={"link": 1})
    with pytest.raises(DiskFull):
        engine.apply(NEW)
    assert live(fs) == before
    assert fs.listdir(f"{STATE_DIR}/staging") == []
    assert engine.apply(NEW).status == "applied"
