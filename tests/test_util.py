"""The shared helpers with side effects (``domtool.util``): the one atomic write and the
one lock runner."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from domtool.util.files import atomic_write
from domtool.util.locks import run_locked


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    old=st.none() | st.binary(max_size=200),
    new=st.binary(max_size=5000),
    mode=st.sampled_from([0o600, 0o640, 0o644]),
)
def test_atomic_write_replaces_with_the_data_and_mode(tmp_path, old, new, mode):
    path = tmp_path / "f"
    if old is not None:
        path.write_bytes(old)
    prev = os.umask(0o077)  # the mode is the one asked for whatever the umask
    try:
        atomic_write(path, new, mode)
    finally:
        os.umask(prev)
    assert path.read_bytes() == new and stat.S_IMODE(path.stat().st_mode) == mode
    assert sorted(os.listdir(tmp_path)) == ["f"]  # no temporary file left


def test_atomic_write_takes_str_paths(tmp_path):
    atomic_write(str(tmp_path / "k"), b"key", 0o600)
    assert (tmp_path / "k").read_bytes() == b"key"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    """The rename fails (the target is a directory): nothing half-written stays."""
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "d", b"x")
    assert os.listdir(tmp_path) == ["d"] and os.listdir(tmp_path / "d") == []


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    os.symlink(victim, tmp_path / f".f.tmp{os.getpid()}")
    with pytest.raises(OSError):
        atomic_write(tmp_path / "f", b"evil")
    assert victim.read_bytes() == b"keep" and not (tmp_path / "f").exists()


def test_run_locked_runs_one_at_a_time_in_order_and_releases_on_error():
    lock = defer.DeferredLock()
    gates = [defer.Deferred(), defer.Deferred(), defer.Deferred()]
    log: list[str] = []

    async def job(i: int) -> int:
        log.append(f"start {i}")
        await gates[i]
        log.append(f"end {i}")
        if i == 1:
            raise ValueError("boom")
        return i

    runs = [defer.ensureDeferred(run_locked(lock, job, i)) for i in range(3)]
    assert log == ["start 0"] and lock.locked
    gates[0].callback(None)
    assert log == ["start 0", "end 0", "start 1"]
    gates[1].callback(None)
    assert log[-2:] == ["end 1", "start 2"]  # the error released the lock
    gates[2].callback(None)
    results = []
    runs[0].addCallback(results.append)
    runs[2].addCallback(results.append)
    failures = []
    runs[1].addErrback(lambda f: failures.append(f.trap(ValueError)))
    assert results == [0, 2] and failures == [ValueError] and not lock.locked
