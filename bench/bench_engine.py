"""Benchmark the slave's apply engine: does a one-unit change stay cheap as a host grows?

A trivial backend renders one unit per domain (a few hundred bytes, as a small zone or
vhost would be), with one unit check, one whole check, one reload and one probe per
unit; the runner and the prober answer at once, so what is measured is the engine's own
share: render bookkeeping, hashing, the index, the manifest, writes and fsyncs, the
symlink switch and garbage collection. For 1,000 and 10,000 units it reports the first
apply, a one-unit change (median of 7, prepare + commit) and an unchanged re-apply, over
the real file system (a temporary directory, real fsyncs) and the in-memory fake.

    .venv/bin/python bench/bench_engine.py [--sizes 1000,10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchjson import add_option, emit  # noqa: E402

from domtool.model import DesiredState, Record, Zone  # noqa: E402
from domtool.slave.backend import Command, Probe, Unit  # noqa: E402
from domtool.slave.engine import Engine  # noqa: E402
from domtool.slave.seams import (  # noqa: E402
    FakeClock,
    FakeFileSystem,
    FakeProcessRunner,
    RealFileSystem,
    Result,
    makedirs,
)


class BenchBackend:
    """One unit per zone; every command is a no-op the fake runner answers."""

    name = "bench"

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        check = (Command(("check-unit", "{path}")),)
        out = []
        for z in state.zones:
            body = "".join(f"{r.name} {r.rtype} {r.data[0]}\n" for r in z.records)
            content = f"$ORIGIN {z.name}.\n{body}".encode()
            out.append(Unit(f"zone:{z.name}", z.owner, "zone", content, check))
        return out

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        lines = (f'zone "{k[5:]}" {{ type master; file "{units[k]}"; }};\n' for k in sorted(units))
        return {"zones.conf": "".join(lines).encode()}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        return (Command(("check-all", str(generation_dir))),)

    def reload(self) -> tuple[Command, ...]:
        return (Command(("reload",)),)

    def probes(self, state: DesiredState) -> list[Probe]:
        return [Probe("dns", ("127.0.0.1", 53, z.name, "SOA", None), z.owner) for z in state.zones]


class YesProber:
    def probe(self, probe: Probe) -> bool:
        return True


def zones(n: int, version: int = 0) -> DesiredState:
    out = []
    for i in range(n):
        records = tuple(Record(f"host{j}", "A", (f"192.0.2.{j + 1}",)) for j in range(8))
        if i == 0:
            records += (Record("@", "TXT", (f"version {version}",)),)
        out.append(Zone(f"d{i:05}.example", f"member{i % 500}", records, ("local",)))
    return DesiredState(zones=tuple(out))


def run(fs_kind: str, n: int, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        if fs_kind == "real":
            fs, state_dir = RealFileSystem(), str(Path(tmp) / "state")
        else:
            fs, state_dir = FakeFileSystem(), "/var/lib/domtool"
        makedirs(fs, state_dir)
        runner = FakeProcessRunner(handler=lambda cmd: Result(0))
        engine = Engine(state_dir, {"bench": BenchBackend()}, fs, runner, FakeClock(), YesProber())
        states = [zones(n, v) for v in range(repeat + 1)]
        t0 = time.perf_counter()
        assert engine.apply(states[0]).status == "applied"
        first = time.perf_counter() - t0
        changes, cpu = [], []
        for v in range(1, repeat + 1):
            runner.ran.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            out = engine.commit(engine.prepare(states[v]))
            changes.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            assert out.status == "applied", out
            assert [c.argv[0] for c in runner.ran] == ["check-unit", "check-all", "reload"]
        t0 = time.perf_counter()
        assert engine.apply(states[repeat]).status == "unchanged"
        same = time.perf_counter() - t0
        # A one-unit change whose reload fails: switch, failed reload, switch back, reload.
        reloads: list[Command] = []

        def fail_first_reload(cmd: Command) -> Result:
            if cmd.argv == ("reload",):
                reloads.append(cmd)
                return Result(1, "", "reload failed") if len(reloads) == 1 else Result(0)
            return Result(0)

        runner.handler = fail_first_reload
        bad = zones(n, repeat + 1)
        t0 = time.perf_counter()
        out = engine.apply(bad)
        rollback = time.perf_counter() - t0
        assert out.status == "rolled back" and len(reloads) == 2
        return {
            "first": first,
            "change": statistics.median(changes),
            "cpu": statistics.median(cpu),
            "same": same,
            "rollback": rollback,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=7)
    add_option(ap)
    args = ap.parse_args()
    figures: dict = {}
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'fs':<5} {'units':>7} {'first apply':>12} {'1-unit change':>14} {'(cpu)':>9}"
        f" {'unchanged':>10} {'rollback':>9}"
    )
    for fs_kind in ("real", "fake"):
        for n in sizes:
            r = run(fs_kind, n, args.repeat)
            figures[f"{fs_kind} {n}"] = {
                "first_apply_s": r["first"],
                "one_unit_change_s": r["change"],
                "one_unit_change_cpu_s": r["cpu"],
                "unchanged_s": r["same"],
                "rollback_s": r["rollback"],
            }
            print(
                f"{fs_kind:<5} {n:>7,} {r['first']:>10.3f} s {r['change'] * 1000:>11.1f} ms"
                f" {r['cpu'] * 1000:>6.1f} ms {r['same'] * 1000:>7.1f} ms"
                f" {r['rollback'] * 1000:>6.1f} ms"
            )
    print(
        "(1-unit change: median wall and CPU time of prepare+commit, no-op runner and"
        " prober; the backend's render of every unit included. rollback: a one-unit"
        " change whose reload fails, until the old generation is live and reloaded)"
    )
    emit(args, figures)


if __name__ == "__main__":
    main()
