"""Bench: the per-member log splitter (slave/logsplit.py) against the floor of Apache's
own single CustomLog file (one write per line to one file).

    python bench/bench_logsplit.py --lines 200000 --vhosts 1000 [--zipf 1.1]

Lines are ``%v``-first access lines spread over VHOSTS vhosts of VHOSTS/2 members; the
splitter runs in-process with member accounts mapped to the current user (no real
accounts needed); it holds at most MAX_OPEN files. Prints lines/s for both.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from domtool.slave import logsplit


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--vhosts", type=int, default=1000)
    p.add_argument(
        "--zipf",
        type=float,
        metavar="S",
        help="vhost of each line drawn from a Zipf law of exponent S (real traffic is "
        "skewed); default: round-robin, the worst case once vhosts > MAX_OPEN",
    )
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-logsplit-"))
    gen = root / "state" / "generations" / "1"
    gen.mkdir(parents=True)
    units = [
        {"key": f"vhost:www.v{i}.example", "owner": f"m{i // 2}", "sha": "0", "ext": "conf"}
        for i in range(a.vhosts)
    ]
    (gen / "manifest.json").write_text(json.dumps({"backends": {"apache": {"units": units}}}))
    os.symlink("generations/1", root / "state" / "current")
    if a.zipf:
        import random

        rng = random.Random(1)
        weights = [1 / (k + 1) ** a.zipf for k in range(a.vhosts)]
        which = rng.choices(range(a.vhosts), weights, k=a.lines)
    else:
        which = [i % a.vhosts for i in range(a.lines)]
    lines = [
        f'www.v{which[i]}.example 127.0.0.1 - - [03/Dec/2026:08:00:00 +0000] "GET /p{i} '
        f'HTTP/1.1" 200 512 "-" "bench"\n'.encode()
        for i in range(a.lines)
    ]
    logsplit.Splitter._account = lambda self, m: (os.getuid(), os.getgid())
    s = logsplit.Splitter("access", root / "state", root / "members", str(root / "site.log"))
    t0 = time.perf_counter()
    for line in lines:
        s.write(line)
    split = time.perf_counter() - t0
    s.close()
    fd = os.open(root / "floor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t0 = time.perf_counter()
    for line in lines:
        os.write(fd, line)
    floor = time.perf_counter() - t0
    os.close(fd)
    files = sum(1 for _ in (root / "members").rglob("*.log"))
    law = f"Zipf {a.zipf}" if a.zipf else "round-robin"
    print(
        f"{a.lines} lines over {a.vhosts} vhosts, {law} ({files} files, at most {logsplit.MAX_OPEN} open):"
        f" splitter {a.lines / split:,.0f} lines/s ({split:.2f} s);"
        f" one-file floor {a.lines / floor:,.0f} lines/s ({floor:.2f} s)"
    )
    import shutil

    shutil.rmtree(root)


if __name__ == "__main__":
    main()
