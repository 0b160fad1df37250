"""The dispatcher's evaluation pool: members' files checked and evaluated off the reactor.

A member's ``check``, ``plan``, ``submit`` (and ``regen``'s replays) parse, type-check
and evaluate untrusted programs. Running that in the reactor thread lets one member's
slow file stop every other member's session (issue 13, finding 1). :class:`EvalPool`
runs :func:`domtool.lang.api.check_source` in a small pool of worker processes instead:

- a process, not a thread: the work is CPU-bound Python (a thread would still hold the
  GIL against the reactor) and a process can be given hard limits;
- each worker has an address-space limit (``memory_mb``, ``RLIMIT_AS``) and each job a
  CPU-time limit (``cpu_seconds``: the worker's soft ``RLIMIT_CPU`` is set to what it has
  used plus the limit, and ``SIGXCPU`` ends the job, not the worker); a job over either
  limit answers one diagnostic saying which limit it hit;
- one job per member at a time (a per-member lock): a member who sends many slow
  requests queues behind themself, and the other workers stay free for other members;
- a worker that dies anyway (killed) breaks the executor: the job fails with a clear
  error and the pool is rebuilt for the next job.

The language's own work budget (``domtool.lang.primitives.Budget``) is the first bound;
these limits are the backstop for work the budget does not count.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from twisted.internet import defer

from domtool.lang.errors import Diagnostic

WORKERS = 2
MEMORY_MB = 1024
CPU_SECONDS = 20

__all__ = ["CPU_SECONDS", "MEMORY_MB", "WORKERS", "EvalPool", "PoolBroken"]


class PoolBroken(Exception):
    """A worker process died during a job (the pool is rebuilt for the next one)."""


class _CpuLimit(BaseException):
    """Raised in a worker by SIGXCPU: the job used its CPU time."""


def _on_xcpu(signum, frame):  # pragma: no cover (runs in the worker)
    raise _CpuLimit()


def _init_worker(memory_mb: int) -> None:  # pragma: no cover (runs in the worker)
    from domtool.lang import api

    api.load_library()  # parse and check the standard library once per worker
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGXCPU, _on_xcpu)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _cpu_used() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _ping(delay: float) -> int:  # pragma: no cover (runs in the worker)
    import time

    time.sleep(delay)
    return os.getpid()


def _job(files, perms, site, budget, cpu_seconds):  # pragma: no cover (runs in the worker)
    from domtool.lang import api

    first = files[0][0] if files else "request"
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if cpu_seconds:
        want = int(_cpu_used() + cpu_seconds) + 1
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (want, hard))
    try:
        kw = {} if budget is None else {"budget": budget}
        return api.check_source(list(files), perms, site, **kw)
    except _CpuLimit:
        message = f"checking and evaluating these files used more than {cpu_seconds} s of CPU"
    except MemoryError:
        message = "checking and evaluating these files needed too much memory"
    except RecursionError:
        message = "program too deeply nested to check"
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))
    return api.CheckResult((Diagnostic(first, None, message),), None)


def _jobs(batches, perms, site, budget, cpu_seconds):  # pragma: no cover (in the worker)
    """``_job`` of each batch of files in turn (each with its own CPU limit): many small
    evaluations in one round trip to the worker (``regen``: 10,000 files one by one)."""
    return [_job(files, perms, site, budget, cpu_seconds) for files in batches]


class EvalPool:
    """``check(member, files, perms, site)`` -> Deferred[CheckResult], run in a worker.

    ``reactor`` is told of each result through ``callFromThread``. ``budget`` (None: the
    language's default) is the work budget of each request."""

    def __init__(
        self,
        reactor: Any,
        *,
        workers: int = WORKERS,
        memory_mb: int = MEMORY_MB,
        cpu_seconds: int = CPU_SECONDS,
        budget: int | None = None,
        start_method: str = "forkserver",
    ) -> None:
        self.reactor = reactor
        self.workers = workers
        self.memory_mb = memory_mb
        self.cpu_seconds = cpu_seconds
        self.budget = budget
        self._context = multiprocessing.get_context(start_method)
        self._executor: ProcessPoolExecutor | None = None
        self._locks: dict[str, defer.DeferredLock] = {}

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=self._context,
                initializer=_init_worker,
                initargs=(self.memory_mb,),
            )
        return self._executor

    def warm(self) -> None:
        """Start every worker now (they would otherwise start one by one on demand, and
        the first job to need a new worker would wait for its start-up)."""
        pool = self._pool()
        for _ in range(self.workers):
            pool.submit(_ping, 0.2)

    def _submit(self, files, perms, site, fn=_job) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        try:
            future = self._pool().submit(fn, files, perms, site, self.budget, self.cpu_seconds)
        except (BrokenProcessPool, RuntimeError):
            self._rebuild()
            future = self._pool().submit(fn, files, perms, site, self.budget, self.cpu_seconds)

        def done(f) -> None:
            self.reactor.callFromThread(self._fire, d, f)

        future.add_done_callback(done)
        return d

    def _fire(self, d: defer.Deferred, future) -> None:
        try:
            result = future.result()
        except BrokenProcessPool:
            self._rebuild()
            d.errback(PoolBroken("the evaluation process died; try again"))
        except BaseException as e:  # noqa: BLE001 (handed to the caller's errback)
            d.errback(e)
        else:
            d.callback(result)

    def _rebuild(self) -> None:
        old, self._executor = self._executor, None
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)

    async def check(self, member: str, files: Sequence[tuple[str, str]], perms, site):
        """The CheckResult of ``files`` for ``perms``; one job per member at a time."""
        lock = self._locks.setdefault(member, defer.DeferredLock())
        await lock.acquire()
        try:
            return await self._submit(tuple(files), perms, site)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(member, None)

    async def check_each(self, member: str, batches, perms, site) -> list:
        """``check`` of each batch of files on its own (as many ``check`` calls would
        give, each with its own CPU limit), in one job: one round trip for all."""
        lock = self._locks.setdefault(member, defer.DeferredLock())
        await lock.acquire()
        try:
            batches = tuple(tuple(files) for files in batches)
            return list(await self._submit(batches, perms, site, _jobs))
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(member, None)

    def close(self) -> None:
        """Stop the workers (pending jobs are cancelled)."""
        old, self._executor = self._executor, None
        if old is not None:
            old.shutdown(wait=True, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes' ids (tests check none is left)."""
        ex = self._executor
        return [] if ex is None else [p for p in getattr(ex, "_processes", {}) or {}]
