"""Benchmark idle member TLS connections held open to the real dispatcher process.

Builds the local site of ``bench_e2e.py`` (a real ``domtool-dispatcher`` process behind its
mutual-TLS member listener, a real slave with named and apache2), then, as alice, opens N
connections with the blocking client (``domtool.client.connection``), has each answer
``whoami`` (so each is logged in) and keeps all of them open and idle. Reported: the
dispatcher process's RSS (``VmRSS`` from ``/proc``) before, with all N held, and after they
are closed; memory per held connection; its open file descriptors and its open-file limit;
and, while all N are held, how long a new connection takes to answer ``whoami`` and to
apply a one-record ``submit`` (median of 5 each).

File descriptors: this process raises its own soft RLIMIT_NOFILE to the hard limit. The
dispatcher inherits the limit of whatever starts it; ``--dispatcher-nofile 1024`` starts
the site with a soft limit of 1024 (systemd's default ``LimitNOFILE=1024:524288``) to show
what happens then.

    .venv/bin/python bench/bench_connections.py [--connections 1000] [--dispatcher-nofile N]

Needs named, apache2 and root; about half a minute. Goal: 1,000 connections < 150 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_e2e import DOMAIN, source, start_site  # noqa: E402
from benchjson import add_option, emit  # noqa: E402

from domtool.client import config as client_config  # noqa: E402
from domtool.client.connection import Connection, call  # noqa: E402


def status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of a process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def nofile(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft}/{hard}"
    return "?"


def mb(kb: int) -> str:
    return f"{kb / 1024:7.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument(
        "--dispatcher-nofile",
        type=int,
        help="soft RLIMIT_NOFILE the site's processes start with (default: this process's)",
    )
    add_option(ap)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        sys.exit(f"the hard open-file limit ({hard}) is below {want}; raise it (ulimit -Hn)")
    if args.dispatcher_nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.dispatcher_nofile, hard))
    root = Path(tempfile.mkdtemp(prefix="bench-conn-"))
    site = start_site(root / "site")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this process: as many as allowed
    held: list[Connection] = []
    try:
        pid = next(d.pid for d in site.daemons if d.name == "domtool-dispatcher")
        alice = client_config.load(site.member_config)
        text = source(site.home / "public_html", "dns", 0)
        call(alice, "submit", {"files": [{"name": DOMAIN, "text": text}]})
        time.sleep(0.5)
        before, fd_before = status(pid), fds(pid)
        t0 = time.perf_counter()
        failures: list[str] = []
        for _ in range(args.connections):
            conn = Connection(alice)
            try:
                conn.open()
                if conn.call("whoami", {}) != {"user": "alice", "admin": False}:
                    failures.append("whoami answered wrongly")
                held.append(conn)
            except Exception as e:  # noqa: BLE001 - counted and shown
                failures.append(f"{type(e).__name__}: {e}")
                conn.close()
                if len(failures) > 20:
                    break
        opened = time.perf_counter() - t0
        time.sleep(1.0)
        # All still open? Each answers whoami again.
        still = 0
        for conn in held:
            try:
                still += conn.call("whoami", {})["user"] == "alice"
            except Exception:  # noqa: BLE001, S110 - counted as lost
                pass
        time.sleep(0.5)
        during, fd_during = status(pid), fds(pid)
        new_whoami, new_submit, new_failed = [], [], []
        for i in range(5):
            try:
                t1 = time.perf_counter()
                call(alice, "whoami", {})
                new_whoami.append(time.perf_counter() - t1)
                text = source(site.home / "public_html", "dns", i + 1)
                t1 = time.perf_counter()
                answer = call(alice, "submit", {"files": [{"name": DOMAIN, "text": text}]})
                new_submit.append(time.perf_counter() - t1)
                assert answer["applied"] and answer["hosts"]["local"]["verified"], answer
            except Exception as e:  # noqa: BLE001 - shown
                new_failed.append(f"{type(e).__name__}: {e}")
        log = Path(site.root / "dispatcher" / "dispatcher.log").read_text(errors="replace")
        emfile = log.count("EMFILE") + log.count("Too many open files")
        limit = nofile(pid)
        for conn in held:
            conn.close()
        held.clear()
        time.sleep(1.5)
        after, fd_after = status(pid), fds(pid)
    finally:
        for conn in held:
            conn.close()
        site.stop()
        shutil.rmtree(root, ignore_errors=True)

    n = args.connections
    per = (during["VmRSS"] - before["VmRSS"]) / max(1, still) if still else float("nan")
    print(
        f"{n} alice connections opened one after another, each logged in (whoami): {opened:.2f} s"
    )
    print(
        f"held open and answering whoami again after 1 s: {still} of {n}; failures: {len(failures)}"
    )
    for f in failures[:5]:
        print(f"  {f}")
    print(f"dispatcher pid {pid}, open-file limit (soft/hard) {limit}")
    print(f"{'dispatcher':<26} {'VmRSS':>10} {'fds':>6}")
    print(f"{'before':<26} {mb(before['VmRSS'])} {fd_before:>6}")
    print(f"{f'{still} connections held':<26} {mb(during['VmRSS'])} {fd_during:>6}")
    print(f"{'all closed again':<26} {mb(after['VmRSS'])} {fd_after:>6}")
    print(f"peak (VmHWM) {mb(after['VmHWM']).strip()}; per held connection {per:.1f} kB")
    if new_whoami and new_submit:
        print(
            f"while held, a new connection: whoami {statistics.median(new_whoami) * 1000:.1f} ms,"
            f" one-record submit {statistics.median(new_submit) * 1000:.1f} ms"
            f" (median of {len(new_submit)})"
        )
    for f in new_failed[:3]:
        print(f"  while held, a new request failed: {f}")
    if emfile:
        print(f"the dispatcher's log mentions running out of file descriptors {emfile} times")
    print("goal: 1,000 connections < 150 MB")
    emit(
        args,
        {
            "connections": n,
            "held": still,
            "failures": len(failures),
            "open_all_s": opened,
            "rss_before_mb": before["VmRSS"] / 1024,
            "rss_held_mb": during["VmRSS"] / 1024,
            "rss_after_mb": after["VmRSS"] / 1024,
            "hwm_mb": after["VmHWM"] / 1024,
            "new_whoami_s": statistics.median(new_whoami) if new_whoami else None,
            "new_submit_s": statistics.median(new_submit) if new_submit else None,
        },
    )


if __name__ == "__main__":
    main()
