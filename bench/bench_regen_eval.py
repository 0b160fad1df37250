"""Benchmark regen's evaluation of a site's stored files in the dispatcher's pool.

``domtool-admin regen`` replays every member's stored files (each on its own, as
``Controller.regen_state`` does: ``EvalPool.check_each``, one job per member) in the
real evaluation pool (``dispatcher/evalpool.py``, its default 2 worker processes). This
bench times that for members of 50 ``dom`` files each, one member at a time (as regen
did) and ``--at-once`` members at a time (as ``Controller._regen_states`` does now), and
gives the CPU seconds of the dispatcher's process and of the workers.

    .venv/bin/python bench/bench_regen_eval.py [--domains 10000] [--at-once 2] [--json]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchjson import add_option, emit  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from domtool.dispatcher.evalpool import EvalPool  # noqa: E402
from domtool.model import DEFAULT_SITE  # noqa: E402
from domtool.perms import Permissions  # noqa: E402

PER_MEMBER = 50


def members(n: int):
    out = []
    for k in range((n + PER_MEMBER - 1) // PER_MEMBER):
        user = f"bg{k:03}"
        names = [f"{user}d{j:02}.example" for j in range(min(PER_MEMBER, n - k * PER_MEMBER))]
        perms = Permissions(
            user=user,
            domains=frozenset(names),
            paths=frozenset({f"/home/{user}"}),
            users=frozenset({user}),
            groups=frozenset({user}),
        )
        out.append((user, perms, [[(d, f'dom "{d}" with end;\n')] for d in names]))
    return out


def cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=10_000)
    ap.add_argument("--at-once", type=int, default=2)
    add_option(ap)
    args = ap.parse_args()
    site = members(args.domains)
    figures: dict = {"domains": args.domains}

    async def run(reactor):
        pool = EvalPool(reactor)
        pool.warm()
        await pool.check_each(
            "warm", [[("w.example", 'dom "w.example" with end;\n')]], site[0][1], DEFAULT_SITE
        )
        for label, width in (("one_at_a_time", 1), ("at_once", args.at_once)):
            todo = list(reversed(site))
            t0, c0 = (
                time.perf_counter(),
                cpu(resource.RUSAGE_SELF),
            )

            async def worker(todo=todo):
                while todo:
                    user, perms, batches = todo.pop()
                    results = await pool.check_each(user, batches, perms, DEFAULT_SITE)
                    assert all(r.ok for r in results)

            await defer.gatherResults([defer.ensureDeferred(worker()) for _ in range(width)])
            figures[label] = {
                "wall_s": time.perf_counter() - t0,
                "dispatcher_cpu_s": cpu(resource.RUSAGE_SELF) - c0,
                "loadavg": os.getloadavg(),
            }
            print(
                f"{label:<14} {figures[label]['wall_s']:7.2f} s (dispatcher CPU {figures[label]['dispatcher_cpu_s']:.2f} s, load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        pool.close()

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    figures["speedup"] = figures["one_at_a_time"]["wall_s"] / figures["at_once"]["wall_s"]
    print(f"{args.at_once} members at once: {figures['speedup']:.2f}x faster")
    emit(args, figures)


if __name__ == "__main__":
    main()
