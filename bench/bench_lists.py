"""Benchmark a mailing list change end to end on the local site, beside Mailman's floor.

Builds the quickstart's local site (``bench_e2e.start_site``: CAs, real dispatcher and
slave processes, named, apache2 and Mailman 3 core on loopback, the member alice), then:

1. end to end, as alice over mutual TLS (what ``domtool FILE`` does): N changes of
   ``lists.example.org``, each giving the list team@ a new owner set (and, with
   ``--add``, a new list each time), timed from connect until the submit's answer, which
   already carries the slave's verification (the sync's check, switch, REST apply and the
   ``mailman_list`` probes). Each answer must say applied and verified; then Mailman's
   REST API is asked, independently, for the list's owners.
2. Mailman's floor for the same change, over REST directly (median of 5): replacing one
   owner (POST /members, DELETE /members/ID) and reading the roster back; and the sync
   command the backend runs (``python -m domtool.slave.mailman_sync apply`` on the live
   index, nothing to do: process start-up plus one GET /lists).

    .venv/bin/python bench/bench_lists.py [--changes 20] [--add] [--keep DIR]

Needs named, apache2, mailman3 and root (like bench_e2e); about a minute.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import percentile, start_site  # noqa: E402

from domtool.client import config as client_config  # noqa: E402
from domtool.client.connection import call  # noqa: E402
from domtool.devsite.quickstart_lists import LIST_DOMAIN  # noqa: E402


def source(i: int, add: bool) -> str:
    extra = "".join(
        f'  mailingList "l{j}" with owner "alice@example.org" end;\n' for j in range(i + 1)
    )
    return (
        f'dom "{LIST_DOMAIN}" with\n'
        f'  mailingList "team" with owner "alice@example.org"; owner "o{i}@example.net" end;\n'
        + (extra if add else "")
        + "end;\n"
    )


def end_to_end(site, n: int, add: bool) -> dict:
    member = client_config.load(site.member_config)
    rest = site.mailman.client()
    latencies, failures = [], []
    for i in range(n):
        t0 = time.perf_counter()
        answer = call(member, "submit", {"files": [{"name": LIST_DOMAIN, "text": source(i, add)}]})
        dt = time.perf_counter() - t0
        host = (answer.get("hosts") or {}).get("local", {})
        if not (answer.get("applied") and host.get("status") == "applied" and host.get("verified")):
            failures.append(f"{i}: {str(answer)[:300]}")
            continue
        owners = sorted(rest.owners(f"team@{LIST_DOMAIN}"))
        if owners != sorted(["alice@example.org", f"o{i}@example.net"]):
            failures.append(f"{i}: Mailman holds owners {owners}")
        if add and f"l{i}@{LIST_DOMAIN}" not in rest.lists():
            failures.append(f"{i}: list l{i} missing in Mailman")
        latencies.append(dt)
    return {"latencies": latencies, "failures": failures}


def floors(site) -> dict[str, float]:
    rest = site.mailman.client()
    fq = f"team@{LIST_DOMAIN}"
    times = []
    for k in range(5):
        t0 = time.perf_counter()
        rest.add_owner(fq, f"floor{k}@example.net")
        have = rest.owners(fq)
        rest.remove_member(have[f"floor{k}@example.net"])
        rest.owners(fq)
        times.append(time.perf_counter() - t0)
    sync = []
    argv = [
        sys.executable,
        "-m",
        "domtool.slave.mailman_sync",
        "apply",
        "--config",
        str(site.mailman.rest_config),
        str(site.state_dir / "current" / "mailman" / "lists.json"),
    ]
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        sync.append(time.perf_counter() - t0)
    return {
        "REST: replace one owner and read the roster": statistics.median(times),
        "mailman_sync apply, nothing to do": statistics.median(sync),
    }


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--add", action="store_true", help="also add a new list with each change")
    p.add_argument("--keep", help="build the site here and keep it")
    a = p.parse_args()
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="domtool-bench-lists-"))
    site = start_site(root / "site")
    try:
        if site.mailman is None:
            raise SystemExit("Mailman 3 is not installed")
        first = call(
            client_config.load(site.member_config),
            "submit",
            {"files": [{"name": LIST_DOMAIN, "text": source(-1, False)}]},
        )
        assert first.get("applied"), first
        out = end_to_end(site, a.changes, a.add)
        lat = out["latencies"]
        print(f"list change ({'owner + new list' if a.add else 'owner set'}), n={len(lat)}:")
        if lat:
            print(f"  p50 {ms(percentile(lat, 50))}  p99 {ms(percentile(lat, 99))}")
        for f in out["failures"]:
            print("  FAILED", f)
        for what, t in floors(site).items():
            print(f"  floor: {what}: {ms(t)}")
    finally:
        site.stop()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
