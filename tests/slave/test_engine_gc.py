"""Garbage by change: after random changes, rollbacks, aborts and restarts, the unit
files on disk are exactly those the kept generations name.

The store counts, per unit file, the runs of kept generations naming it and updates
the counts from each switch's moved keys (``GenerationStore.collect_garbage``); a
restart counts afresh. Two backends: the fake one (a file per zone) and a "twin" whose
unit is the zone's records alone, so two zones with the same text share one file (a
file named by two keys, moved by one of them only)."""

from __future__ import annotations

import random

import pytest

from domtool.slave.backend import Unit
from domtool.slave.engine import Engine
from domtool.slave.generations import GenerationStore
from domtool.slave.seams import FakeClock, FakeFileSystem, FakeProcessRunner, makedirs
from tests.slave.fake_backend import FakeBackend, FakeDaemon, state, zone
from tests.slave.test_engine import STATE_DIR

MEMBERS = ("alice", "bob", "carol", "dave", "erin", "frank")


class TwinBackend(FakeBackend):
    """The fake backend, but a unit holds the records only (equal texts: one file)."""

    def units(self, state, previous, now):
        return [
            Unit(u.key, u.owner, u.ext, u.content.split(b"\n", 1)[1], u.checks)
            for u in super().units(state, previous, now)
        ]


def host(fs: FakeFileSystem, keep: int) -> tuple[Engine, FakeDaemon]:
    makedirs(fs, STATE_DIR)
    daemon = FakeDaemon(fs, STATE_DIR).boot()
    for g in (
        fs.listdir(f"{STATE_DIR}/generations") if fs.is_dir(f"{STATE_DIR}/generations") else ()
    ):
        try:  # (boot remembers the fake backend's generations only)
            daemon.good.append(daemon.read_index(f"{STATE_DIR}/generations/{g}/twin/index"))
        except OSError:
            pass
    backends = {"fake": FakeBackend(), "twin": TwinBackend(name="twin")}
    engine = Engine(
        STATE_DIR, backends, fs, FakeProcessRunner(handler=daemon), FakeClock(), daemon, keep=keep
    )
    return engine, daemon


def named_by_kept(fs: FakeFileSystem, engine: Engine) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {"fake": set(), "twin": set()}
    for g in engine.generations():
        for b, body in engine.manifest(g)["backends"].items():
            out[b] |= {f"{u['sha']}.{u['ext']}" for u in body["units"]}
    return out


def on_disk(fs: FakeFileSystem) -> dict[str, set[str]]:
    d = f"{STATE_DIR}/units"
    return {
        b: set(fs.listdir(f"{d}/{b}")) if fs.is_dir(f"{d}/{b}") else set() for b in ("fake", "twin")
    }


def random_state(rng: random.Random, texts: dict[str, str]):
    for who in MEMBERS:
        roll = rng.random()
        if roll < 0.15:
            texts.pop(who, None)  # the member's zone goes
        elif roll < 0.45:
            # few distinct texts, so twin units share files and old ones come back
            texts[who] = rng.choice(["v1", "v2", "v3", "v4"])
            if rng.random() < 0.08:
                texts[who] += rng.choice([" NORELOAD", " DEAD", " BROKEN", " CONFLICT"])
    return state(*(zone(f"{who}.example", who, texts[who]) for who in sorted(texts)))


@pytest.mark.parametrize("seed", range(12))
def test_the_unit_files_are_those_of_the_kept_generations(seed: int):
    rng = random.Random(f"gc:{seed}")
    keep = rng.choice([2, 3, 5])
    fs = FakeFileSystem()
    engine, _daemon = host(fs, keep)
    texts: dict[str, str] = {}
    checked = 0
    for _step in range(70):
        roll = rng.random()
        if roll < 0.1:  # a restart: a fresh engine (empty caches and counts) recovers
            engine, _daemon = host(fs, keep)
            engine.recover()
            continue
        want = random_state(rng, texts)
        if roll < 0.2:  # prepared, then aborted: its units stay until a collection
            engine.abort(engine.prepare(want))
            continue
        out = engine.apply(want)
        if out.status == "applied":
            assert on_disk(fs) == named_by_kept(fs, engine)
            assert len(engine.generations()) <= keep
            checked += 1
        # the marked texts do not stay: the next state starts from clean ones
        for who, text in list(texts.items()):
            texts[who] = text.split(" ")[0]
    assert checked > 10


def test_a_one_unit_change_does_not_count_the_kept_generations_whole(monkeypatch):
    """After the first collection, a commit updates the counts from its moved keys:
    the whole count (``_count``) runs again only after a restart."""
    fs = FakeFileSystem()
    engine, _ = host(fs, 3)
    whole = []
    real = GenerationStore._count

    def spy(self, kept):
        whole.append(list(kept))
        return real(self, kept)

    monkeypatch.setattr(GenerationStore, "_count", spy)
    for i in range(6):
        assert engine.apply(state(zone("a.example", "alice", f"v{i}"))).status == "applied"
    assert whole == [[1]]
    assert on_disk(fs) == named_by_kept(fs, engine)
    engine, _ = host(fs, 3)
    engine.recover()
    assert engine.apply(state(zone("a.example", "alice", "v9"))).status == "applied"
    assert whole == [[1], [5, 6, 7]]
    assert on_disk(fs) == named_by_kept(fs, engine)
