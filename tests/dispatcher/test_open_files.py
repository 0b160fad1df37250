"""The dispatcher raises its soft open-file limit: at systemd's default soft limit of 1024
it would stop accepting member connections at about 1,010 (bench/bench_connections.py)."""

from __future__ import annotations

import resource
import subprocess
import sys

CODE = (
    "import resource; from domtool.dispatcher.service import raise_open_file_limit as r;"
    "print(r(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
)


def _run(soft: int) -> tuple[int, int]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run(
        [sys.executable, "-c", CODE],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_a_low_soft_limit_is_raised_up_to_the_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    assert _run(256) == (want, want)


def test_a_higher_soft_limit_is_never_lowered():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = 70000 if hard == resource.RLIM_INFINITY else hard
    assert _run(soft) == (soft, soft)
