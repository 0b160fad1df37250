"""Benchmark the limits backend's check and enforcement on this host's kernel.

For N members (no Unix accounts needed: the cgroup v1 mechanism names cgroups by member):
renders N units, then times ``limits_enforce check`` (N ``systemd-analyze verify`` runs,
the dominant cost) and ``limits_enforce apply`` (N x 3 cgroup directories created, values
written and read back, N limits.d files) from nothing, again with nothing changed, and
after one member's change; and the usage collection of one member. Cleans up its cgroups.
Needs root and the v1 controllers (the test machines).

    .venv/bin/python bench/bench_limits.py [--members 1000] [--check-members 100] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchjson import add_option, emit  # noqa: E402

from domtool.policies.limits import DEFAULT_BOUNDS, RESOURCES, MemberLimits  # noqa: E402
from tests.slave.member_users import limits_site, write_index  # noqa: E402


def members(n: int, bump: int | None = None) -> list[MemberLimits]:
    values = {r: DEFAULT_BOUNDS[r].default for r in RESOURCES}
    out = []
    for i in range(n):
        v = dict(values)
        if i == bump:
            v["processes"] = 123
        out.append(MemberLimits(member=f"m{i:05d}", **v))
    return out


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{argv[3]} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--check-members", type=int, default=100)
    add_option(ap)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="domtool-bench-limits-"))
    figures: dict = {"members": args.members}
    with limits_site(tmp) as (config, conf):

        def cmd(verb: str, index: str) -> list[str]:
            return [
                sys.executable,
                "-m",
                "domtool.slave.limits_enforce",
                verb,
                "--config",
                conf,
                index,
            ]

        small = write_index(tmp / "small", members(args.check_members))
        figures[f"check_{args.check_members}"] = timed(cmd("check", small))
        index = write_index(tmp / "all", members(args.members))
        figures["apply_first"] = timed(cmd("apply", index))
        figures["apply_unchanged"] = timed(cmd("apply", index))
        one = write_index(tmp / "one", members(args.members, bump=7))
        figures["apply_one_changed"] = timed(cmd("apply", one))
        figures["cgroup_dirs"] = sum(
            1
            for c in ("pids", "memory", "cpu")
            for _ in Path(config.cgroup_root, c, config.prefix).iterdir()
            if _.is_dir()
        )
        from domtool.model import DesiredState
        from domtool.slave.usage import collect

        t0 = time.perf_counter()
        collect(DesiredState(), "m00007", enforce_config=config)
        figures["usage_one_member"] = time.perf_counter() - t0
        empty = write_index(tmp / "none", [])
        figures["apply_remove_all"] = timed(cmd("apply", empty))
    print(f"limits backend, {args.members} members (cgroup v1 on this kernel)")
    for k, v in figures.items():
        print(f"  {k:22} {v:.3f} s" if isinstance(v, float) else f"  {k:22} {v}")
    emit(args, figures)


if __name__ == "__main__":
    main()
