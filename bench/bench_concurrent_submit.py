"""Benchmark many members submitting at once to the real dispatcher of the local site.

Builds the local site of ``bench_e2e.py`` (real ``domtool-dispatcher`` and ``domtool-slave``
processes, real ``named`` and ``apache2`` on loopback), then creates N members through the
admin ops over TLS (``adduser``, then ``grant`` of their own domain ``mNNN.example``, a path,
a user and a group), each with its own certificate. One thread per member opens its own
mutual-TLS connection (the blocking client, ``domtool.client.connection``); when all are
connected they submit ``dom "mNNN.example" with end;`` (a zone, a mail domain and a www
vhost) at the same moment. Reported: throughput (answers per second from the start to
the last answer), p50/p99/max latency from send to answer, failures (an error, or an answer
that is not applied and verified: must be 0), and afterwards how many of the zones named
serves and how many vhosts apache2 answers as themselves.

The dispatcher groups the submits that wait into rounds (``domtool.dispatcher.rounds``:
one prepare and one commit per host for all of them), so the last member waits for the
round in flight and its own, not for every apply before it.

    .venv/bin/python bench/bench_concurrent_submit.py [--members 200] [--keep DIR] [--json]

Needs named, apache2 and root; about a minute and a half at 200 members.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_e2e import percentile, start_site  # noqa: E402
from benchjson import add_option, emit  # noqa: E402

from domtool.client import config as client_config  # noqa: E402
from domtool.client.connection import Connection  # noqa: E402
from domtool.client.grant_signing import sign_held  # noqa: E402
from domtool.devsite import localdaemons as L  # noqa: E402
from domtool.devsite import quickmail  # noqa: E402


def add_members(site, n: int) -> list[tuple[str, Path]]:
    """N members, each owning mNNN.example; their client configs."""
    admin = client_config.load(site.admin_config)
    key = (site.root / "admin" / "grant-signing.key").read_bytes()
    out = []
    with Connection(admin) as conn:
        for i in range(n):
            user = f"m{i:03}"
            added = conn.call("adduser", {"user": user})
            for cls, value in (
                ("domain", f"{user}.example"),
                ("path", f"/home/{user}"),
                ("user", user),
                ("group", user),
            ):
                conn.call("grant", {"user": user, "class": cls, "value": value})
            # What domtool-admin sign-grants does (the slave checks units against it).
            sign_held(conn.call, user, key, serial=1)
            quickmail.add_local_user(site, user)  # their `dom` mail goes to their local mailbox
            cfg = site._member_files(user, added["cert_pem"].encode(), added["key_pem"].encode())
            out.append((user, cfg))
    return out


def run(site, members: list[tuple[str, Path]]) -> dict:
    n = len(members)
    connected = threading.Barrier(n + 1)
    go = threading.Event()
    results: dict[str, tuple[float, float, str | None]] = {}
    connect_times: list[float] = []
    lock = threading.Lock()

    def member(user: str, cfg_path: Path) -> None:
        cfg = client_config.load(cfg_path)
        conn = Connection(cfg)
        t0 = time.perf_counter()
        try:
            conn.open()
        except Exception as e:  # noqa: BLE001 - counted as a failure
            with lock:
                results[user] = (0.0, 0.0, f"connect: {e}")
            connected.wait()
            return
        with lock:
            connect_times.append(time.perf_counter() - t0)
        connected.wait()
        go.wait()
        text = f'dom "{user}.example" with end;\n'
        t1 = time.perf_counter()
        problem = None
        try:
            answer = conn.call("submit", {"files": [{"name": f"{user}.example", "text": text}]})
            host = (answer.get("hosts") or {}).get("local", {})
            if not (answer.get("applied") and host.get("status") == "applied"):
                problem = f"not applied: {answer.get('message')}"
            elif not host.get("verified"):
                problem = "applied but nothing verified"
        except Exception as e:  # noqa: BLE001 - counted as a failure
            problem = f"{type(e).__name__}: {e}"
        t2 = time.perf_counter()
        conn.close()
        with lock:
            results[user] = (t1, t2, problem)

    threads = [threading.Thread(target=member, args=m, daemon=True) for m in members]
    t_connect = time.perf_counter()
    for t in threads:
        t.start()
    connected.wait()
    all_connected = time.perf_counter() - t_connect
    start = time.perf_counter()
    go.set()
    for t in threads:
        t.join(timeout=900)
    ok = [(t1, t2) for t1, t2, p in results.values() if p is None]
    failures = [f"{u}: {p}" for u, (_a, _b, p) in sorted(results.items()) if p is not None]
    failures += [f"{u}: no answer" for u, _c in members if u not in results]
    lat = [t2 - t1 for t1, t2 in ok]
    end = max((t2 for _t1, t2 in ok), default=start)
    # What the daemons serve afterwards.
    zones = vhosts = 0
    for user, _cfg in members:
        try:
            if L.dns_records(site.ports["dns"], f"{user}.example", "SOA"):
                zones += 1
        except Exception:  # noqa: BLE001, S110 - counted as not served
            pass
        try:
            status, _ = L.http_get(site.ports["http"], f"www.{user}.example")
            vhosts += status != 421
        except OSError:
            pass
    return {
        "n": n,
        "connect_all": all_connected,
        "connect_median": statistics.median(connect_times) if connect_times else float("nan"),
        "elapsed": end - start,
        "lat": lat,
        "failures": failures,
        "zones": zones,
        "vhosts": vhosts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--keep", help="build the site in this directory and leave it there")
    add_option(ap)
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-submit-"))
    site = start_site(root / "site")
    try:
        t0 = time.perf_counter()
        members = add_members(site, args.members)
        print(
            f"{len(members)} members added (adduser + 4 grants each, signed) in {time.perf_counter() - t0:.1f} s"
        )
        r = run(site, members)
    finally:
        site.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lat = r["lat"] or [float("nan")]
    print(
        f"{r['n']} members connected (mutual TLS, one thread each) in {r['connect_all']:.2f} s,"
        f" median handshake {r['connect_median'] * 1000:.1f} ms"
    )
    print(
        f"{'members':>8} {'answers/s':>10} {'p50':>9} {'p99':>9} {'max':>9} {'failures':>9} {'zones served':>13} {'vhosts':>7}"
    )
    print(
        f"{r['n']:>8} {len(r['lat']) / r['elapsed'] if r['elapsed'] else 0:>10.2f}"
        f" {percentile(lat, 50):>7.2f} s {percentile(lat, 99):>7.2f} s {max(lat):>7.2f} s"
        f" {len(r['failures']):>9} {r['zones']:>13} {r['vhosts']:>7}"
    )
    print(
        f"(all answered in {r['elapsed']:.1f} s; each submit: one zone, one mail domain, one vhost)"
    )
    for f in r["failures"][:10]:
        print(f"  {f}")
    emit(
        args,
        {
            "members": r["n"],
            "failures": len(r["failures"]),
            "answers_per_s": len(r["lat"]) / r["elapsed"] if r["elapsed"] else 0,
            "p50_s": percentile(lat, 50),
            "p99_s": percentile(lat, 99),
            "max_s": max(lat),
            "zones_served": r["zones"],
            "vhosts_served": r["vhosts"],
            "connect_all_s": r["connect_all"],
        },
    )


if __name__ == "__main__":
    main()
