"""Members' files evaluated off the reactor: the pool's limits, and other members unaffected.

Issue 13, finding 1: evaluation ran in the reactor thread, so one member's slow ``check``
stopped every other member's session. ``eval_isolation.py`` runs the real service; in
``inline`` mode (the old way, kept to show the test can fail) bob's first ``whoami``
during alice's worst-case check waited 4.7 s (seen failing first), in ``pool`` mode it
answers as fast as alone.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import defer

from domtool.dispatcher.evalpool import EvalPool, PoolBroken
from domtool.model import DEFAULT_SITE
from domtool.perms import parse_perms
from tests.dispatcher.eval_isolation import worst_case

ROOT = Path(__file__).resolve().parents[2]
ALICE = parse_perms(
    "domain: alice.example\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)
OK_FILE = ("alice.example", 'dom "alice.example" with web "w" with ssi end end')


class ThreadReactor:
    """Just enough reactor for the pool: ``callFromThread`` queues; :meth:`run` pumps."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def callFromThread(self, f, *a) -> None:  # noqa: N802 (Twisted API)
        self.calls.put((f, a))

    def run(self, d: defer.Deferred, timeout: float = 60.0):
        results: list = []
        d.addBoth(results.append)
        while not results:
            f, a = self.calls.get(timeout=timeout)
            f(*a)
        if isinstance(results[0], BaseException) or hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]


@pytest.fixture
def pool_of():
    pools = []

    def make(**kw) -> tuple[EvalPool, ThreadReactor]:
        reactor = ThreadReactor()
        pool = EvalPool(reactor, **kw)
        pools.append(pool)
        return pool, reactor

    yield make
    for p in pools:
        pids = p.pids()
        p.close()
        for pid in pids:  # every worker is gone
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def check(pool, reactor, files, member="alice", timeout=60.0):
    return reactor.run(
        defer.ensureDeferred(pool.check(member, files, ALICE, DEFAULT_SITE)), timeout
    )


def test_a_file_is_checked_in_a_worker_with_the_same_result(pool_of):
    pool, reactor = pool_of(workers=1)
    from domtool.lang.api import check_source

    r = check(pool, reactor, [OK_FILE])
    assert r.ok and r == check_source([OK_FILE], ALICE, DEFAULT_SITE)
    bad = check(pool, reactor, [("alice.example", 'dom "bob.example" with end')])
    assert not bad.ok and bad == check_source(
        [("alice.example", 'dom "bob.example" with end')], ALICE, DEFAULT_SITE
    )


def test_check_each_gives_what_one_check_per_batch_gives(pool_of):
    """regen's replays: many single-file checks in one job, each result exactly what its
    own ``check`` gives, a bad file's diagnostics only in its own result."""
    pool, reactor = pool_of(workers=1)
    batches = [[OK_FILE], [("alice.example", 'dom "bob.example" with end')], [OK_FILE], []]
    each = reactor.run(defer.ensureDeferred(pool.check_each("alice", batches, ALICE, DEFAULT_SITE)))
    assert each == [check(pool, reactor, b) for b in batches]
    assert [r.ok for r in each] == [True, False, True, True]


@pytest.mark.slow
def test_a_job_over_its_cpu_time_is_stopped_and_the_worker_serves_the_next(pool_of):
    """With the work budget out of the way (10**9 units), the CPU limit (1 s) ends the
    job with a diagnostic; the same worker then answers a normal file."""
    pool, reactor = pool_of(workers=1, cpu_seconds=1, budget=10**9)
    r = check(pool, reactor, [("alice.example", worst_case(15, 2000))])
    assert [d.message for d in r.diagnostics] == [
        "checking and evaluating these files used more than 1 s of CPU"
    ]
    assert check(pool, reactor, [OK_FILE]).ok


@pytest.mark.slow
def test_a_job_over_its_memory_is_stopped(pool_of):
    """A file whose lists outgrow the worker's 150 MiB address space gets a diagnostic."""
    pool, reactor = pool_of(workers=1, memory_mb=150, cpu_seconds=60, budget=10**10)
    r = check(pool, reactor, [("alice.example", worst_case(15, 16_000))], timeout=120)
    assert [d.message for d in r.diagnostics] == [
        "checking and evaluating these files needed too much memory"
    ]
    assert check(pool, reactor, [OK_FILE]).ok


def test_a_killed_worker_fails_its_job_clearly_and_the_pool_is_rebuilt(pool_of):
    pool, reactor = pool_of(workers=1, cpu_seconds=60, budget=10**9)
    assert check(pool, reactor, [OK_FILE]).ok
    d = defer.ensureDeferred(
        pool.check("alice", [("alice.example", worst_case(15, 2000))], ALICE, DEFAULT_SITE)
    )
    [pid] = pool.pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PoolBroken):
        reactor.run(d)
    assert check(pool, reactor, [OK_FILE]).ok


def _isolation(tmp_path: Path, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests/dispatcher/eval_isolation.py"), str(tmp_path), mode]
        + ["5000000"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_other_members_answer_in_their_usual_time_while_a_worst_case_file_evaluates(tmp_path):
    """Real service, real loopback TLS: while alice's worst-case check and submit run
    (seconds each, refused on the work budget), bob's whoami answers within 0.25 s (and
    within 10x its time alone) and his submits apply within his usual time plus 0.5 s."""
    r = _isolation(tmp_path / "pool", "pool")
    assert all("work budget" in d for d in r["alice_diagnostics"]), r
    assert len(r["during"]["whoami"]) >= 5 and len(r["during"]["submit"]) >= 1, r
    usual_whoami = max(r["alone"]["whoami"])
    assert max(r["during"]["whoami"]) < max(0.25, 10 * usual_whoami), r
    assert max(r["during"]["submit"]) < max(r["alone"]["submit"]) + 0.5, r
    assert all(r["bob_submits_applied"]), r
    assert r["pool_pids_left"] == []


@pytest.mark.slow
def test_the_isolation_check_fails_when_evaluation_runs_in_the_reactor(tmp_path):
    """The same run with check_source in the reactor thread (the old way): bob's whoami
    waits for alice's evaluation. Shows the test above can fail."""
    r = _isolation(tmp_path / "inline", "inline")
    assert max(r["during"]["whoami"]) > 1.0, r
