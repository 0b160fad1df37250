"""Benchmark: another member's latency while one member's worst-case file is evaluated.

Runs ``tests/dispatcher/eval_isolation.py`` (the real ``DispatcherService`` over loopback
TLS, in-memory slaves) in both modes: ``pool`` (evaluation in ``dispatcher.evalpool``'s
worker processes, what the service does) and ``inline`` (in the reactor thread, the
floor to compare with: what happened before issue 13). alice sends a ``check`` and a
``submit`` of a 240 KB file appending a 16,000-item list 2**15 times; with a work budget
of BUDGET units each lasts seconds. Until both are answered bob asks ``whoami`` again and
again and submits every fifth time (at most 4). Printed: bob's latencies alone and during
alice's requests (count, median, max), and how long alice's requests took.

    .venv/bin/python bench/bench_eval_isolation.py [--budget 5000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(mode: str, budget: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, str(ROOT / "tests/dispatcher/eval_isolation.py"), tmp, mode]
            + [str(budget)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ms(xs) -> str:
    if not xs:
        return "none"
    xs = sorted(xs)
    return f"n={len(xs)} median {xs[len(xs) // 2] * 1000:.0f} max {xs[-1] * 1000:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=5_000_000)
    args = parser.parse_args()
    print(f"work budget per request: {args.budget} units; latencies in ms")
    for mode in ("pool", "inline"):
        r = run(mode, args.budget)
        print(
            f"{mode:6}  bob whoami alone {ms(r['alone']['whoami'])}"
            f"  during {ms(r['during']['whoami'])}\n"
            f"        bob submit alone {ms(r['alone']['submit'])}"
            f"  during {ms(r['during']['submit'])}\n"
            f"        alice's check and submit {ms(r['alice_check_seconds'])}"
            f"  bob done after {r['bob_finished_after'] * 1000:.0f}"
        )


if __name__ == "__main__":
    main()
