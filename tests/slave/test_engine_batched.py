"""The engine's batched unit checks (``check_units``, the Exim backend's one ``exim -bt``
per round): one batch check for the changed units of many owners, a bad owner among
good ones found by bisection and refused alone while the others go live in the same
round, and the per-unit checks of a backend that offers no batch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath

import attrs
import pytest

from domtool.slave.backend import Command, Unit, UnitsCheck
from domtool.slave.seams import Result
from tests.slave.fake_backend import FakeBackend, state, zone
from tests.slave.test_engine import STATE_DIR, abc, make_host


@attrs.define
class BatchBackend(FakeBackend):
    """The fake backend, its units checked together: a list file of the units' paths."""

    asked: list[tuple[str, ...]] = attrs.field(factory=list)  # unit keys of each batch

    def check_units(
        self, units: Mapping[str, Unit], paths: Mapping[str, PurePosixPath]
    ) -> UnitsCheck | None:
        self.asked.append(tuple(sorted(units)))
        listing = "".join(f"{paths[k]}\n" for k in sorted(units)).encode()
        return UnitsCheck({"list": listing}, (Command(("fake-check-batch", "{dir}/list")),))


def _host(fs=None, **kw):
    host = make_host(fs, **kw)
    backend = BatchBackend()
    host.engine.backends["fake"] = host.backend = backend
    batches: list[list[str]] = []
    daemon = host.daemon

    def handler(cmd: Command) -> Result:
        if cmd.argv[0] != "fake-check-batch":
            return daemon(cmd)
        listing = cmd.argv[1]
        assert listing.startswith(f"{STATE_DIR}/staging/check-"), listing  # its {dir}
        paths = host.fs.read(listing).decode().split()
        batches.append(paths)
        for p in paths:
            assert p.startswith(f"{STATE_DIR}/units/fake/"), p
            if b"BROKEN" in host.fs.read(p):
                return Result(1, "", f"{p}:2: BROKEN record")
        return Result(0, "routed\n")

    host.runner.handler = handler
    return host, backend, batches


def _zones(n: int, broken: str | None = None, text: str = "v1"):
    return state(
        *(
            zone(f"m{i:02d}.example", f"m{i:02d}", "BROKEN" if f"m{i:02d}" == broken else text)
            for i in range(n)
        )
    )


def test_one_batch_check_covers_many_owners():
    host, backend, batches = _host()
    out = host.engine.apply(_zones(11))
    assert out.status == "applied", out.message
    assert len(out.applied) == 11 and not out.refused
    ran = [c.argv[0] for c in host.runner.ran]
    assert "fake-check-unit" not in ran  # the units' own checks gave way to the batch
    assert ran.count("fake-check-batch") == 1 and len(batches[0]) == 11
    assert backend.asked == [tuple(f"zone:m{i:02d}.example" for i in range(11))]
    assert len(host.live()) == 11
    # The check's files are gone afterwards.
    assert not [n for n in host.fs.listdir(f"{STATE_DIR}/staging") if n.startswith("check-")]
    # A change of two owners: a batch of just those two units.
    again = host.engine.apply(
        state(
            *(
                zone(f"m{i:02d}.example", f"m{i:02d}", "v2" if i in (3, 7) else "v1")
                for i in range(11)
            )
        )
    )
    assert again.applied == ("m03", "m07"), again.message
    assert backend.asked[-1] == ("zone:m03.example", "zone:m07.example")


def test_one_bad_owner_among_ten_good_is_refused_alone():
    host, backend, batches = _host()
    out = host.engine.apply(_zones(11, broken="m04"))
    assert out.status == "applied", out.message
    assert out.refused.keys() == {"m04"}
    assert "BROKEN record" in out.refused["m04"]
    assert "zone:m04.example" in out.refused["m04"]  # the unit named by its key, not a hash
    assert set(out.applied) == {f"m{i:02d}" for i in range(11)} - {"m04"}
    live = host.live()
    assert "zone:m04.example" not in live and len(live) == 10
    assert "BROKEN" not in str(host.daemon.loaded)
    # Bisection, not one check per owner: far fewer batches than 11 singles plus one.
    assert 2 <= len(batches) < 11
    assert "fake-check-unit" not in [c.argv[0] for c in host.runner.ran]


def test_a_backend_without_a_batch_check_keeps_its_per_unit_checks():
    host = make_host()
    out = host.engine.apply(_zones(11, broken="m04"))
    assert out.refused.keys() == {"m04"} and len(out.applied) == 10
    ran = [c.argv[0] for c in host.runner.ran]
    assert ran.count("fake-check-unit") == 11 and "fake-check-batch" not in ran


def test_a_backend_whose_batch_check_breaks_fails_the_prepare_cleanly():
    from domtool.slave.engine import BackendFailed

    class Broken(BatchBackend):
        def check_units(self, units, paths):
            raise ValueError("no map for you")

    host, _, _ = _host()
    host.engine.backends["fake"] = Broken()
    try:
        host.engine.apply(_zones(3))
    except BackendFailed as exc:
        assert "fake" in str(exc) and "no map for you" in str(exc)
    else:
        raise AssertionError("the prepare went ahead without its check")
    assert host.engine.current_generation() == 0
    staging = f"{STATE_DIR}/staging"
    assert not host.fs.is_dir(staging) or host.fs.listdir(staging) == []


@pytest.mark.parametrize("scenario", ["batch-broken", "change-add-remove"])
def test_crashes_and_full_disks_in_a_batched_check_leave_old_or_new(monkeypatch, scenario):
    """The crash and disk-full enumerations of ``test_engine_crash`` with the batched
    backend (its check files are written, read and removed at every kill point)."""
    from tests.slave import test_engine_crash as crash

    monkeypatch.setattr(crash, "make_host", lambda fs=None, **kw: _host(fs, **kw)[0])
    monkeypatch.setitem(
        crash.SCENARIOS, "batch-broken", abc(alice="alice v2", bob="bob BROKEN", carol="c v2")
    )
    ops, _, _ = crash.reference(scenario)
    assert any(op[1].startswith(f"{STATE_DIR}/staging/check-") for op in ops if len(op) > 1)
    crash.test_a_crash_at_any_step_leaves_the_old_or_the_new_generation(scenario)
    for kind in ("write", "mkdir", "rename", "fsync"):
        crash.test_disk_full_at_each_operation_changes_nothing_live(kind, scenario)
