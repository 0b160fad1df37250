"""Benchmark the slave's own work for a one-zone change as the host grows.

The real agent (``domtool.slave.agent.Agent``) over the real engine, the real BIND
backend and the real file system (a temporary directory, real fsyncs), with a runner and
a prober that answer at once: what is measured is the slave's own share of a prepare and
a commit (re-check, clash check, render bookkeeping, hashing, index, manifest, state
records, writes and fsyncs, switch, live files, garbage collection), not named's. Members
own 50 zones each (as ``bench_e2e.py --others`` builds them); one member changes one
record of one zone, five times; the median of prepare + commit is reported per size, and
the ratio of the largest size to the smallest.

    .venv/bin/python bench/bench_slave_scale.py [--sizes 100,10000] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs  # noqa: E402
from bench_bind import make_zone  # noqa: E402
from benchjson import add_option, emit  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from domtool.model import DesiredState  # noqa: E402
from domtool.slave.agent import Agent  # noqa: E402
from domtool.slave.backends.bind import BindBackend  # noqa: E402
from domtool.slave.engine import Engine  # noqa: E402
from domtool.slave.ops import Grants, OwnerChange, PrepareArgs, TxArgs  # noqa: E402
from domtool.slave.seams import (  # noqa: E402
    FakeClock,
    FakeProcessRunner,
    RealFileSystem,
    Result,
    makedirs,
)
from tests.slave.named_daemon import bind_config  # noqa: E402


class Yes:
    def probe(self, probe) -> bool:
        return True


def run(n: int, repeat: int = 5) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-slave-"))
    try:
        backend = BindBackend(bind_config(tmp / "cfg", 5353, 9953))
        fs, state_dir = RealFileSystem(), str(tmp / "state")
        makedirs(fs, state_dir)
        runner = FakeProcessRunner(handler=lambda cmd: Result(0))
        engine = Engine(state_dir, {"bind": backend}, fs, runner, FakeClock(), Yes())
        agent = Agent(engine, host="bench", state_dir=state_dir, clock=Clock())

        def call(op, args):
            out: list = []
            agent.handle(op, args).addBoth(out.append)
            if hasattr(out[0], "raiseException"):
                out[0].raiseException()
            return out[0]

        agent.start()

        def zone(i: int, a: str = "192.0.2.1"):
            return attrs.evolve(make_zone(i, a=a), owner=f"bg{i // 50:03d}")

        owners: dict[str, list] = {}
        for i in range(n):
            owners.setdefault(f"bg{i // 50:03d}", []).append(zone(i))
        grants = Grants()
        parts = {
            o: OwnerChange(DesiredState(zones=tuple(zs)).normalised(), grants)
            for o, zs in owners.items()
        }
        t0 = time.perf_counter()
        call("prepare", PrepareArgs("t0", parts))
        assert call("commit", TxArgs("t0"))["status"] == "applied"
        first = time.perf_counter() - t0
        times, prepares = [], []
        for k in range(1, repeat + 2):
            zs = list(owners["bg000"])
            zs[7] = zone(7, a=f"192.0.2.{100 + k}")
            owners["bg000"] = zs
            change = {"bg000": OwnerChange(DesiredState(zones=tuple(zs)).normalised(), grants)}
            t0 = time.perf_counter()
            call("prepare", PrepareArgs(f"t{k}", change))
            t1 = time.perf_counter()
            assert call("commit", TxArgs(f"t{k}"))["status"] == "applied"
            if k > 1:  # the first change after the first apply warms the memos
                times.append(time.perf_counter() - t0)
                prepares.append(t1 - t0)
        ran = [c.argv[0].rsplit("/", 1)[-1] for c in runner.ran[-2:]]
        return {
            "zones": n,
            "first_apply_s": first,
            "one_zone_change_s": statistics.median(times),
            "of_which_prepare_s": statistics.median(prepares),
            "commands": ran,
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,10000")
    ap.add_argument("--repeat", type=int, default=5)
    add_option(ap)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = [run(n, args.repeat) for n in sizes]
    print(f"{'zones':>7} {'first apply':>12} {'one-zone change':>16} {'of which prepare':>17}")
    for r in results:
        print(
            f"{r['zones']:>7,} {r['first_apply_s']:>10.2f} s {r['one_zone_change_s'] * 1e3:>13.1f} ms"
            f" {r['of_which_prepare_s'] * 1e3:>14.1f} ms"
        )
    ratio = results[-1]["one_zone_change_s"] / results[0]["one_zone_change_s"]
    print(
        f"(median of {args.repeat}; commands a change ran: {', '.join(results[-1]['commands'])};"
        f" {sizes[-1]:,} / {sizes[0]:,} zones: {ratio:.2f}x)"
    )
    emit(args, {"sizes": results, "ratio": ratio})


if __name__ == "__main__":
    main()
