"""Benchmark one alias change end to end on the local site with mail, beside Exim's floors.

Builds the quickstart's local site (``LocalSite``: real ``domtool-dispatcher`` and
``domtool-slave`` processes, real ``named``, ``apache2``, Exim and Courier on loopback),
registers alice and submits her ``example.net`` (mail with aliases). ``--others N`` first
puts N other members' domains on the host (``dom`` domains of 50 per member: a zone, a
mail domain with a default alias and a vhost each), so Exim's index holds N+2 domains.

1. end to end, as alice over mutual TLS (a fresh connection per change, as ``domtool
   FILE`` does): N changes of one alias (``emailAlias "sales" "alice+K@example.org"``),
   timed from connect until the submit's answer (which carries the slave's verification:
   ``exim -bt`` of the changed unit, ``exim -bV`` of the staged generation, SIGHUP, the
   SMTP EXPN probe). Each answer must say applied and verified; then, independently, an
   SMTP ``EXPN sales@example.net`` on the running Exim must name the new target.
2. Exim's own costs on the live generation (median of 5, the backend's argv): ``exim -bV``
   (the whole-config check), ``exim -bt`` of example.net's unit (the per-unit routing
   check), and SIGHUP until Exim answers SMTP again.

    .venv/bin/python bench/bench_mail.py [--changes 20] [--others 1000] [--keep DIR]

Needs root, named, apache2, exim4-daemon-heavy and courier-imap.
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import ms, percentile, populate, start_site, timed  # noqa: E402

from domtool.client import config as client_config  # noqa: E402
from domtool.client.connection import call  # noqa: E402
from domtool.devsite.quickstart import examples_dir  # noqa: E402
from domtool.slave.backends.exim import unit_addresses  # noqa: E402

DOMAIN = "example.net"


def source(k: int) -> str:
    text = (examples_dir() / "alice" / DOMAIN).read_text()
    old = 'emailAlias "sales" "alice@example.org";'
    assert old in text
    return text.replace(old, f'emailAlias "sales" "alice+{k}@example.org";')


def expn(port: int, rcpt: str) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("bench.invalid")
        return s.expn(rcpt)[1].decode()


def end_to_end(site, n: int) -> dict:
    member = client_config.load(site.member_config)
    port = site.ports["smtp"]
    lat, confirm, failures = [], [], []
    for k in range(n):
        t0 = time.perf_counter()
        answer = call(member, "submit", {"files": [{"name": DOMAIN, "text": source(k)}]})
        dt = time.perf_counter() - t0
        host = (answer.get("hosts") or {}).get("local", {})
        if not (answer.get("applied") and host.get("status") == "applied" and host.get("verified")):
            failures.append(f"{k}: {str(answer)[:300]}")
            continue
        lat.append(dt)
        t1 = time.perf_counter()
        got = expn(port, f"sales@{DOMAIN}")
        confirm.append(time.perf_counter() - t1)
        if f"<alice+{k}@example.org>" not in got:
            failures.append(f"{k}: EXPN says {got!r}")
    return {"lat": lat, "confirm": confirm, "failures": failures}


def floors(site) -> dict[str, float]:
    c = site.mail["exim"]
    current = (site.state_dir / "current").resolve()
    unit = None
    for line in (current / "exim" / "domains").read_text().splitlines():
        if line.startswith(f"{DOMAIN}: "):
            unit = line.split(": ", 1)[1]
    assert unit, f"{DOMAIN} is not in the live exim index"
    from domtool.lang.api import check_source
    from domtool.perms import parse_perms

    perms = parse_perms((examples_dir() / "alice.perms").read_text(), "alice")
    (m,) = check_source([(DOMAIN, source(0))], perms).state.mail
    umap = Path(tempfile.mkdtemp()) / "units.map"  # the batch check's map, of one domain
    umap.write_text(f"{DOMAIN}: {unit}\n")
    bt = c.argv(f"-DUNIT_MAP={umap}", "-bt", *unit_addresses(m))
    out = {
        "exim -bV (whole config, staged GEN)": timed(c.argv("-bV", generation=str(current))),
        f"exim -bt (the unit, {len(unit_addresses(m))} addresses)": timed(bt),
    }
    shutil.rmtree(umap.parent, ignore_errors=True)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(list(c.reload_argv()), capture_output=True, timeout=30, check=True)
        time.sleep(0.05)  # the daemon re-executes itself; then it must answer SMTP
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                expn(site.ports["smtp"], f"sales@{DOMAIN}")
                break
            except OSError:
                time.sleep(0.01)
        times.append(time.perf_counter() - t0)
        time.sleep(0.3)
    out["SIGHUP until answering SMTP"] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--others", type=int, default=0)
    ap.add_argument("--keep", help="build the site in this directory and leave it there")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-mail-"))
    t0 = time.perf_counter()
    site = start_site(root / "site")
    if not site.mail:
        site.stop()
        sys.exit("no Exim/Courier in this site (root and exim4-daemon-heavy, courier-imap needed)")
    print(f"local site up in {time.perf_counter() - t0:.1f} s ({root / 'site'})")
    try:
        if args.others:
            took = populate(site, args.others)
            print(f"{args.others} other domains (zone, mail, vhost each) applied in {took:.1f} s")
        call(
            client_config.load(site.member_config),
            "submit",
            {"files": [{"name": DOMAIN, "text": source(999)}]},
        )
        r = end_to_end(site, args.changes)
        fl = floors(site)
    finally:
        site.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lat = r["lat"] or [float("nan")]
    print(f"\none alias change, submit -> routed live ({args.changes}, fresh TLS each):")
    print(
        f"  p50 {ms(percentile(lat, 50))}  p99 {ms(percentile(lat, 99))}  max {ms(max(lat))}"
        f"  failures {len(r['failures'])}"
    )
    for f in r["failures"][:5]:
        print(f"    {f}")
    if r["confirm"]:
        print(f"  (then EXPN on the running Exim, median {ms(statistics.median(r['confirm']))})")
    print("\nExim's own costs on the same site (median of 5, the backend's argv):")
    for k, v in fl.items():
        print(f"  {k:<44} {ms(v)}")


if __name__ == "__main__":
    main()
