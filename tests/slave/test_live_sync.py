"""Live files (``GenerationStore.sync_live``) written in one batch, with fake seams.

A round that adds many zones writes each live file's temporary copy, fsyncs them all in
one ``fsync_many`` (concurrent on a real disk: 1,000 new zones are not 1,000 fsyncs one
after the other), then renames them. The crash guarantees of live files: a crash before
any operation of such an apply, in every durability image, leaves after ``recover()``
every live file a copy of the live generation's unit (the old or the new generation,
never a mix, no temporary file left), and the same apply converges afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

import attrs
import pytest

from domtool.model import DesiredState
from domtool.slave.backend import Command, Unit
from domtool.slave.engine import DiskFull
from domtool.slave.seams import Crash, FakeFileSystem
from tests.slave.fake_backend import FakeBackend, state, zone
from tests.slave.test_engine import STATE_DIR, make_host

LIVE_DIR = f"{STATE_DIR}/live/fake"


@attrs.define
class LiveBackend(FakeBackend):
    """The fake backend with a stable live file per zone: the daemon's ``index`` names
    the live files, ``staged`` the content-addressed unit files (what the whole check
    reads, as BIND's ``check.conf``)."""

    live_files = True

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        return [
            attrs.evolve(u, live=u.key.split(":", 1)[1] + ".zone")
            for u in super().units(state, previous, now)
        ]

    def index(
        self, units: Mapping[str, PurePosixPath], live: Mapping[str, PurePosixPath] | None = None
    ) -> dict[str, bytes]:
        at = {k: (live or {}).get(k, p) for k, p in units.items()}
        return {
            "index": "".join(f"{k} {at[k]}\n" for k in sorted(at)).encode(),
            "staged": "".join(f"{k} {units[k]}\n" for k in sorted(units)).encode(),
        }

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        return (Command(("fake-check-all", str(generation_dir / self.name / "staged"))),)


@attrs.define
class SpyFileSystem(FakeFileSystem):
    """Remembers each ``fsync_many`` batch."""

    batches: list[list[str]] = attrs.field(factory=list)

    def fsync_many(self, paths: list[str]) -> None:
        self.batches.append(list(paths))
        super().fsync_many(paths)


def live_host(fs=None, **kw):
    host = make_host(fs if fs is not None else SpyFileSystem(), **kw)
    host.engine.backends["fake"] = host.backend = LiveBackend()
    return host


def zones(n: int, text: str = "v1", first: int = 0) -> list:
    return [zone(f"m{i:03}.example", f"m{i:03}", f"m{i:03} {text}") for i in range(first, n)]


def live_files(fs: FakeFileSystem) -> dict[str, bytes]:
    """What the daemon reads after ``recover()``: every live file, each checked to be a
    copy of the live generation's unit for its zone; no other file in the live dir."""
    index = fs.read(f"{STATE_DIR}/current/fake/index").decode().splitlines()
    staged = fs.read(f"{STATE_DIR}/current/fake/staged").decode().splitlines()
    at = dict(line.split(" ", 1) for line in index)
    units = dict(line.split(" ", 1) for line in staged)
    assert at.keys() == units.keys()
    out = {}
    for key, path in sorted(at.items()):
        assert path == f"{LIVE_DIR}/{key.split(':', 1)[1]}.zone", path
        out[key] = fs.read(path)
        assert out[key] == fs.read(units[key]), key
    names = fs.listdir(LIVE_DIR) if fs.is_dir(LIVE_DIR) else []
    assert sorted(names) == sorted(p.rsplit("/", 1)[1] for p in at.values())
    return out


def test_many_new_live_files_are_fsynced_in_one_batch():
    """50 new zones: their 50 live files' temporary copies are fsynced in one
    ``fsync_many``, none alone, and each live file holds its unit afterwards."""
    host = live_host()
    fs = host.fs
    fs.batches.clear()
    fs.arm()
    out = host.engine.apply(state(*zones(50)))
    assert out.status == "applied", out.message
    live_batches = [b for b in fs.batches if any(p.startswith(LIVE_DIR + "/") for p in b)]
    assert len(live_batches) == 1
    assert sorted(live_batches[0]) == [f"{LIVE_DIR}/m{i:03}.example.zone.tmp" for i in range(50)]
    # (FakeFileSystem.fsync_many logs one fsync per file: exactly the batch's.)
    alone = [p for k, p in fs.ops if k == "fsync" and p.startswith(LIVE_DIR + "/")]
    assert sorted(alone) == sorted(live_batches[0])
    assert len(live_files(fs)) == 50
    assert host.daemon.loaded == live_files(fs)


def test_one_changed_zone_rewrites_one_live_file():
    host = live_host()
    assert host.engine.apply(state(*zones(5))).status == "applied"
    host.fs.batches.clear()
    changed = [zone("m002.example", "m002", "m002 v2"), *zones(5)[:2], *zones(5)[3:]]
    assert host.engine.apply(state(*changed)).status == "applied"
    live_batches = [b for b in host.fs.batches if any(p.startswith(LIVE_DIR + "/") for p in b)]
    assert live_batches == [[f"{LIVE_DIR}/m002.example.zone.tmp"]]
    assert b"m002 v2" in live_files(host.fs)["zone:m002.example"]


OLD = state(*zones(3))
NEW = state(
    zone("m001.example", "m001", "m001 v2"), *zones(3)[:1], *zones(3)[2:], *zones(9, first=3)
)


def old_live_host(fs=None):
    host = live_host(fs)
    assert host.engine.apply(OLD).status == "applied"
    host.fs.arm()
    return host


def test_a_crash_at_any_step_leaves_every_live_file_the_old_or_the_new_generations():
    """For every operation k of an apply changing one zone and adding six, crash before
    k, reboot into each durability image, recover: every live file is a copy of the live
    generation's unit, the whole live set is the old or the new one, and the same apply
    then converges to the uncrashed result."""
    ref = old_live_host()
    old = live_files(ref.fs)
    assert ref.engine.apply(NEW).status == "applied"
    new, ops = live_files(ref.fs), list(ref.fs.ops)
    assert new != old and len(ops) > 20
    assert any(k == "rename" and p.startswith(LIVE_DIR + "/") for k, p in ops)
    reached = set()
    for k in range(len(ops)):
        host = old_live_host()
        host.fs.arm(crash_at=k)
        with pytest.raises(Crash):
            host.engine.apply(NEW)
        for image, fs in host.fs.crash_images(mixed=4):
            rebooted = live_host(fs)
            rebooted.engine.recover()
            where = f"crash before op {k} {ops[k]}, image {image}"
            got = live_files(fs)
            assert got in (old, new), where
            reached.add("new" if got == new else "old")
            assert rebooted.engine.apply(NEW).status in ("applied", "unchanged"), where
            assert live_files(fs) == new, where
    assert reached == {"old", "new"}


@pytest.mark.parametrize("kind", ["write", "fsync"])
def test_a_full_disk_while_writing_live_files_leaves_the_old_ones_and_no_temporary(kind):
    """ENOSPC at each write and fsync of an apply (the live files' among them): the old
    live files stay, with no temporary file beside them."""
    ref = old_live_host()
    old = live_files(ref.fs)
    assert ref.engine.apply(NEW).status == "applied"
    count = sum(1 for k, _ in ref.fs.ops if k == kind)
    hit_live = 0
    for i in range(1, count + 1):
        host = old_live_host()
        host.fs.arm(fail={kind: i})
        with pytest.raises(DiskFull):
            host.engine.apply(NEW)
        hit_live += any(k == kind and p.startswith(LIVE_DIR + "/") for k, p in host.fs.ops)
        assert live_files(host.fs) == old, (kind, i)
    assert hit_live > 0
