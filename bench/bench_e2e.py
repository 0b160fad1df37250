"""Benchmark a member's change end to end on the local site, against the daemons' floors.

Builds a whole local site under a temporary directory with the quickstart's building
blocks (``domtool.devsite.quickstart.LocalSite``): CAs, a real ``domtool-dispatcher``
process, a real ``domtool-slave`` process, real ``named`` and ``apache2`` on loopback
high ports, and the member alice (added through the admin ops over TLS). Then:

1. end to end, as alice over mutual TLS with a fresh connection per change (what
   ``domtool FILE`` does): N changes of ``example.org`` of each kind, timed from connect
   until the submit's answer (which already carries the slave's verification):
   - ``dns``: a new A record each time (named-checkzone, named-checkconf -z, rndc reload,
     SOA probe; Apache is not touched);
   - ``web``: a new vhost each time (both daemons checked, reloaded and probed).
   Each answer must say applied and verified; then, independently, named is asked for
   the new record and a higher SOA serial, and (``web``) apache2 for the new vhost.
2. the daemons' own floors for the same site, measured directly on the live generation
   (median of 5): ``named-checkzone`` on example.org's zone file, ``named-checkconf -z``,
   ``rndc reload``, ``apache2 -t``, ``apache2 -k graceful``: exactly the argv the
   backends run.
3. the dispatcher's own share: the dispatcher process is stopped and its service is
   built in this process from the same config and store (``service.make_service``); M
   submits go straight to ``Controller.handle`` with the real ``TLSLink`` to the real
   slave process, each link call timed. Own share = handle's wall time minus the time
   spent waiting on the slave (prepare, commit); the language's ``evaluate`` is shown
   separately.

``--others N`` first puts N other members' domains on the host (members of 50 domains
each, added by the admin ops, one submit each, ``--populate-threads`` of them at once so
the dispatcher's rounds take several together), so the daemons reload a host of that size.
With ``--baseline B`` (default 100 when N > 100) the dns change is first measured with B
other domains, then the host grows to N and everything is measured: the ratio of the two
dns p50s is the "costs what it changes" figure. At the end (N > 0): the slave process's
resident memory (VmRSS, VmHWM), and ``regen`` with apply (as ``domtool-admin regen
--doit``) of the whole site from the store, beside the daemons' own full check + reload.

Goals (design brief): p50 < 1 s with real reloads; the dispatcher's own share < 50 ms.
Issue 12 at 10,000 domains: dns p50 within 1.5x of the same change at 100; a new vhost
p50 <= 1.2x (apache2 -t + graceful until answering); own share p99 < 20 ms; slave RSS
< 300 MB; regen <= 1.5x the daemons' full check + reload.

    .venv/bin/python bench/bench_e2e.py [--changes 30] [--own 20] [--others 1000]
        [--baseline 100] [--keep DIR] [--json]

Needs named, apache2 and root (Apache's children run as www-data); about a minute.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchjson import add_option, emit  # noqa: E402

from domtool.client import config as client_config  # noqa: E402
from domtool.client.connection import call  # noqa: E402
from domtool.devsite import localdaemons as L  # noqa: E402
from domtool.devsite.quickstart import LocalSite, Progress  # noqa: E402

DOMAIN = "example.org"


def start_site(root: Path, *, with_member: bool = True) -> LocalSite:
    """The quickstart's site under ``root`` (created), running; alice registered."""
    root.mkdir(parents=True, exist_ok=True)
    for p in (root, *root.parents):  # Apache's children (www-data) must reach DIR/home
        if p.stat().st_mode & 0o005 != 0o005:
            p.chmod(p.stat().st_mode | 0o005)
    site = LocalSite(root, Progress(8, quiet=True))
    try:
        site.prepare_dir()
        site.build_pki()
        site.start_daemons()
        site.start_slave()
        site.start_dispatcher()
        if with_member:
            site.register_members()
    except BaseException:
        site.stop()
        raise
    return site


def other_members(domains: int, per_member: int = 50, start: int = 0):
    """The generated other members of ``--others``: ``(user, grants, names)`` for members
    ``bgNNN`` of up to ``per_member`` domains ``bgNNNdMM.example`` each, domains ``start`` ..
    ``domains`` - 1; ``grants`` are (class, value) pairs (their home, user, group and
    every domain). Also used by ``bench_regen.py``."""
    k = start // per_member
    while k * per_member < domains:
        user = f"bg{k:03}"
        first = max(start, k * per_member)
        names = [
            f"{user}d{j % per_member:02}.example"
            for j in range(first, min(domains, (k + 1) * per_member))
        ]
        grants = [("path", f"/home/{user}"), ("user", user), ("group", user)]
        yield user, grants + [("domain", n) for n in names], names
        k += 1


def other_source(name: str) -> str:
    """The file each generated domain is submitted with (a zone, mail and a www vhost)."""
    return f'dom "{name}" with end;\n'


def populate(
    site: LocalSite, domains: int, per_member: int = 50, start: int = 0, threads: int = 8
) -> float:
    """Other members' domains on the host before measuring: members ``bgNNN`` (added by
    the admin ops) each submit up to ``per_member`` files ``dom "bgNNNdMM.example" with
    end;`` (a zone, a mail domain and a www vhost each) in one submit, ``threads`` members
    at once. Domains ``start`` .. ``domains`` - 1 (so a site can grow in steps). Seconds."""
    from concurrent.futures import ThreadPoolExecutor

    from domtool.client.connection import Connection
    from domtool.client.grant_signing import sign_held
    from domtool.devsite import quickmail

    t0 = time.perf_counter()
    admin = client_config.load(site.admin_config)
    key = (site.root / "admin" / "grant-signing.key").read_bytes()
    todo = []
    with Connection(admin) as conn:
        for user, grants, names in other_members(domains, per_member, start):
            added = conn.call("adduser", {"user": user})
            for cls, value in grants:
                conn.call("grant", {"user": user, "class": cls, "value": value})
            # What domtool-admin sign-grants does (the slave checks units against it).
            sign_held(conn.call, user, key, serial=1)
            cfg = site._member_files(user, added["cert_pem"].encode(), added["key_pem"].encode())
            quickmail.add_local_user(site, user)  # their `dom` mail goes to their local mailbox
            todo.append((user, cfg, names))

    def submit(job) -> None:
        user, cfg, names = job
        files = [{"name": n, "text": other_source(n)} for n in names]
        answer = call(patient(client_config.load(cfg)), "submit", {"files": files})
        if not answer.get("applied"):
            raise RuntimeError(f"{user}'s domains were not applied: {answer.get('message')}")

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(submit, todo))
    return time.perf_counter() - t0


def patient(config):
    """A client config that waits up to an hour for an answer (big sites, long applies)."""
    import attrs

    return attrs.evolve(config, timeout=3600.0)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def source(www: Path, kind: str, i: int) -> str:
    extra = f'  dnsA "v{i}" "127.0.0.1";\n' if kind == "dns" else f'  web "w{i}" with end;\n'
    return (
        f'dom "{DOMAIN}" where\n  DocumentRoot = "{www}"\nwith\n'
        f'  dnsA "hello" "127.0.0.1";\n{extra}end;\n'
    )


def soa_serial(port: int) -> int:
    for line in L.dns_records(port, DOMAIN, "SOA"):
        return int(line.split()[5])
    return -1


def end_to_end(site: LocalSite, kind: str, n: int, offset: int = 0) -> dict:
    member = client_config.load(site.member_config)
    www = site.home / "public_html"
    dns, http = site.ports["dns"], site.ports["http"]
    latencies, confirm, failures = [], [], []
    serial = soa_serial(dns)
    for i in range(offset, offset + n):
        text = source(www, kind, i)
        t0 = time.perf_counter()
        answer = call(member, "submit", {"files": [{"name": DOMAIN, "text": text}]})
        dt = time.perf_counter() - t0
        host = (answer.get("hosts") or {}).get("local", {})
        if not (answer.get("applied") and host.get("status") == "applied" and host.get("verified")):
            failures.append(f"{kind} {i}: {json.dumps(answer)[:300]}")
            continue
        latencies.append(dt)
        # Independently: what the daemons serve now (no waiting: it must already be live).
        t1 = time.perf_counter()
        new_serial = soa_serial(dns)
        name = f"v{i}" if kind == "dns" else f"w{i}"
        records = L.dns_records(dns, f"{name}.{DOMAIN}", "A")
        ok = new_serial > serial and any(r.endswith(" A 127.0.0.1") for r in records)
        if kind == "web":
            status, _body = L.http_get(http, f"w{i}.{DOMAIN}")
            ok = ok and status == 200
        confirm.append(time.perf_counter() - t1)
        if not ok:
            failures.append(f"{kind} {i}: not served (serial {serial}->{new_serial}, {records})")
        serial = new_serial
    return {"lat": latencies, "confirm": confirm, "failures": failures}


def timed(argv, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(list(argv), capture_output=True, timeout=60, check=False)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout!r} {done.stderr!r}")
    return statistics.median(times)


def floors(site: LocalSite) -> dict[str, float]:
    """The daemons' own check and reload times on the live generation."""
    b, a = site.bind_config, site.apache_config
    current = (site.state_dir / "current").resolve()
    zone_file = None
    for line in (current / "bind" / "zones.conf").read_text().splitlines():
        if line.startswith(f'zone "{DOMAIN}"'):
            zone_file = line.split('file "', 1)[1].split('"', 1)[0]
    assert zone_file, "example.org is not in the live zones.conf"
    out = {
        "named-checkzone (one zone)": timed(b.checkzone_argv(DOMAIN, zone_file)),
        "named-checkconf -z (all zones)": timed(
            b.checkconf_argv(str(current / "bind" / "check.conf"))
        ),
        "rndc reload": timed(b.rndc_argv("reload")),
        "apache2 -t": timed(a.check_argv(str(current / "apache" / "sites.conf"))),
    }
    # graceful: the command, then until a vhost answers again
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(list(a.reload_argv()), capture_output=True, timeout=60, check=True)
        L.wait_for(lambda: _answers(site), timeout=10, what="apache2 after graceful")
        times.append(time.perf_counter() - t0)
        time.sleep(0.3)
    out["apache2 -k graceful (until answering)"] = statistics.median(times)
    out["named-checkzone + rndc reload"] = (
        out["named-checkzone (one zone)"]
        + out["named-checkconf -z (all zones)"]
        + out["rndc reload"]
    )
    out["apache2 -t + graceful"] = out["apache2 -t"] + out["apache2 -k graceful (until answering)"]
    return out


def _answers(site: LocalSite) -> bool:
    try:
        return L.http_get(site.ports["http"], f"www.{DOMAIN}", timeout=1)[0] == 200
    except OSError:
        return False


def own_share(site: LocalSite, m: int) -> dict:
    """Stop the dispatcher process; drive its controller in-process with the real TLS link
    to the real slave process, timing every link call."""
    from twisted.internet import defer, task

    from domtool.dispatcher import config as dispatcher_config
    from domtool.dispatcher import service
    from domtool.dispatcher.auth import Member

    for d in list(site.daemons):
        if d.name == "domtool-dispatcher":
            d.stop()
            site.daemons.remove(d)
    config = dispatcher_config.load(site.root / "dispatcher" / "dispatcher.toml")
    www = site.home / "public_html"
    rows: list[dict] = []

    async def main(reactor):
        svc = service.make_service(config, reactor)
        controller = svc.controller
        waits: list[tuple[str, float]] = []
        for link in controller.coordinator.links.values():
            real = link.call

            def timed_call(op, args, real=real):
                t0 = time.perf_counter()
                d = real(op, args)

                def done(r):
                    waits.append((op, time.perf_counter() - t0))
                    return r

                return d.addBoth(done)

            link.call = timed_call
        evals: list[float] = []
        real_eval = controller.evaluate

        def timed_eval(*a, **kw):
            t0 = time.perf_counter()
            try:
                return real_eval(*a, **kw)
            finally:
                evals.append(time.perf_counter() - t0)

        controller.evaluate = timed_eval
        alice = Member("alice", False)
        for i in range(m + 1):  # the first warms the link (TLS connect to the slave)
            waits.clear()
            evals.clear()
            text = source(www, "dns", 1000 + i)
            t0 = time.perf_counter()
            answer = await controller.handle(
                alice, "submit", {"files": [{"name": DOMAIN, "text": text}]}
            )
            total = time.perf_counter() - t0
            assert answer["applied"] and answer["hosts"]["local"]["verified"], answer
            if i == 0:
                continue
            slave = sum(w for _op, w in waits)
            rows.append(
                {
                    "total": total,
                    "slave": slave,
                    "prepare": sum(w for op, w in waits if op == "prepare"),
                    "commit": sum(w for op, w in waits if op == "commit"),
                    "own": total - slave,
                    "evaluate": sum(evals),
                }
            )
        controller.store.close()

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as e:  # react() always ends with sys.exit
        if e.code not in (0, None):
            raise
    return {k: [r[k] for r in rows] for k in rows[0]}


def ms(x: float) -> str:
    return f"{x * 1000:8.1f} ms"


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (its children's not counted)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def full_floor(site: LocalSite) -> dict[str, float]:
    """The daemons' own full check and reload of the live generation (median of 3):
    named-checkconf -z, rndc reload until the last zone's serial answers again, apache2 -t,
    graceful until a vhost answers."""
    b, a = site.bind_config, site.apache_config
    current = (site.state_dir / "current").resolve()
    out = {
        "named-checkconf -z": timed(b.checkconf_argv(str(current / "bind" / "check.conf")), 3),
        "rndc reload": timed(b.rndc_argv("reload"), 3),
        "apache2 -t": timed(a.check_argv(str(current / "apache" / "sites.conf")), 3),
    }
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(list(a.reload_argv()), capture_output=True, timeout=120, check=True)
        L.wait_for(lambda: _answers(site), timeout=60, what="apache2 after graceful")
        times.append(time.perf_counter() - t0)
        time.sleep(0.3)
    out["apache2 -k graceful (until answering)"] = statistics.median(times)
    out["full check + reload"] = sum(out.values())
    return out


def regen(site: LocalSite) -> dict[str, object]:
    """``regen`` with apply, as ``domtool-admin regen --doit``: seconds and what it did."""
    admin = client_config.load(site.admin_config)
    t0 = time.perf_counter()
    answer = call(patient(admin), "regen", {"apply": True})
    took = time.perf_counter() - t0
    return {
        "seconds": took,
        "hosts_changed": len(answer.get("hosts") or {}),
        "dropped": len(answer.get("dropped") or []),
        "message": answer.get("message", ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=30, help="changes of each kind (default 30)")
    ap.add_argument("--own", type=int, default=20, help="in-process submits for the own share")
    ap.add_argument(
        "--others",
        type=int,
        default=0,
        help="other members' domains on the host first (zone + mail + vhost each; default 0)",
    )
    ap.add_argument("--keep", help="build the site in this directory and leave it there")
    ap.add_argument(
        "--baseline",
        type=int,
        default=None,
        help="measure the dns change first at this many other domains (default 100 if --others > 100)",
    )
    ap.add_argument("--populate-threads", type=int, default=8)
    add_option(ap)
    args = ap.parse_args()
    if args.baseline is None:
        args.baseline = 100 if args.others > 100 else 0
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    t0 = time.perf_counter()
    site = start_site(root / "site")
    print(f"local site up in {time.perf_counter() - t0:.1f} s ({root / 'site'})")
    own = None
    base = None
    slave_mem: dict = {}
    full: dict = {}
    regen_out: dict = {}
    try:
        call(
            client_config.load(site.member_config),
            "submit",
            {"files": [{"name": DOMAIN, "text": source(site.home / "public_html", "dns", 999)}]},
        )
        if args.baseline:
            took = populate(site, args.baseline, threads=args.populate_threads)
            print(f"{args.baseline} other domains applied in {took:.1f} s", flush=True)
            slave = next(d for d in site.daemons if d.name == "domtool-slave")
            c0 = cpu_seconds(slave.pid)
            base = end_to_end(site, "dns", args.changes, offset=5000)
            base["slave_cpu_per_change_s"] = (cpu_seconds(slave.pid) - c0) / args.changes
            base["loadavg"] = __import__("os").getloadavg()
            print(
                f"dns p50 at {args.baseline} others: {ms(percentile(base['lat'] or [float('nan')], 50))}",
                flush=True,
            )
        if args.others > args.baseline:
            took = populate(site, args.others, start=args.baseline, threads=args.populate_threads)
            print(
                f"{args.others} other domains (zone, mail, www vhost each) applied in {took:.1f} s",
                flush=True,
            )
        results = {}
        for kind in ("dns", "web"):
            slave = next(d for d in site.daemons if d.name == "domtool-slave")
            c0 = cpu_seconds(slave.pid)
            results[kind] = end_to_end(site, kind, args.changes)
            results[kind]["slave_cpu_per_change_s"] = (cpu_seconds(slave.pid) - c0) / args.changes
            results[kind]["loadavg"] = __import__("os").getloadavg()
        fl = floors(site)
        if args.others:
            slave = next(d for d in site.daemons if d.name == "domtool-slave")
            disp = next(d for d in site.daemons if d.name == "domtool-dispatcher")
            slave_mem = memory(slave.pid)
            cpu0 = (cpu_seconds(slave.pid), cpu_seconds(disp.pid), __import__("os").getloadavg())
            regen_out = regen(site)
            regen_out["slave_cpu_s"] = cpu_seconds(slave.pid) - cpu0[0]
            regen_out["dispatcher_cpu_s"] = cpu_seconds(disp.pid) - cpu0[1]
            regen_out["loadavg_before"] = cpu0[2]
            regen_out["loadavg_after"] = __import__("os").getloadavg()
            full = full_floor(site)
            slave_mem.update({f"after regen {k}": v for k, v in memory(slave.pid).items()})
        own = own_share(site, args.own)
    finally:
        site.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print(
        f"\nend to end, submit -> verified live, fresh TLS connection each ({args.changes} each):"
    )
    print(f"{'change':<28} {'n':>3} {'p50':>11} {'p99':>11} {'max':>11} {'failures':>9}")
    for kind, label in (("dns", "dns: one new A record"), ("web", "web: one new vhost")):
        r = results[kind]
        lat = r["lat"] or [float("nan")]
        print(
            f"{label:<28} {len(r['lat']):>3} {ms(percentile(lat, 50))} {ms(percentile(lat, 99))}"
            f" {ms(max(lat))} {len(r['failures']):>9}"
        )
        for f in r["failures"][:5]:
            print(f"    {f}")
    conf = results["dns"]["confirm"] + results["web"]["confirm"]
    if conf:
        print(
            f"(then confirmed independently from named/apache2, median {ms(statistics.median(conf))})"
        )
    print("\nthe daemons' own floors on the same site (median of 5, the backends' argv):")
    for k, v in fl.items():
        print(f"  {k:<40} {ms(v)}")
    if own:
        print(
            f"\ndispatcher's own share, Controller.handle in-process, real TLSLink ({args.own} dns changes):"
        )
        print(f"  {'':<26} {'p50':>11} {'p99':>11}")
        labels = (
            ("total", "handle (wall)"),
            ("slave", "waiting on the slave"),
            ("prepare", "  prepare"),
            ("commit", "  commit"),
            ("own", "dispatcher's own share"),
            ("evaluate", "  of which evaluate"),
        )
        for k, label in labels:
            print(f"  {label:<26} {ms(percentile(own[k], 50))} {ms(percentile(own[k], 99))}")
    figures: dict = {"others": args.others, "changes": args.changes}
    for kind in ("dns", "web"):
        lat = results[kind]["lat"] or [float("nan")]
        figures[f"{kind}_p50_s"] = percentile(lat, 50)
        figures[f"{kind}_p99_s"] = percentile(lat, 99)
        figures[f"{kind}_failures"] = len(results[kind]["failures"])
        figures[f"{kind}_slave_cpu_per_change_s"] = results[kind]["slave_cpu_per_change_s"]
        figures[f"{kind}_loadavg"] = results[kind]["loadavg"]
    figures["floors_s"] = fl
    if base is not None:
        lat = base["lat"] or [float("nan")]
        figures["baseline_others"] = args.baseline
        figures["baseline_dns_p50_s"] = percentile(lat, 50)
        figures["baseline_dns_failures"] = len(base["failures"])
        figures["baseline_dns_slave_cpu_per_change_s"] = base["slave_cpu_per_change_s"]
        figures["baseline_loadavg"] = base["loadavg"]
        figures["dns_p50_ratio"] = figures["dns_p50_s"] / figures["baseline_dns_p50_s"]
        print(
            f"\ndns p50 at {args.others:,} others / at {args.baseline:,}: "
            f"{ms(figures['dns_p50_s'])} / {ms(figures['baseline_dns_p50_s'])}"
            f" = {figures['dns_p50_ratio']:.2f}x (goal <= 1.5x)"
        )
    web_floor = fl.get("apache2 -t + graceful")
    if web_floor:
        figures["web_p50_over_floor"] = figures["web_p50_s"] / web_floor
        print(
            f"web p50 / (apache2 -t + graceful until answering): {ms(figures['web_p50_s'])} /"
            f" {ms(web_floor)} = {figures['web_p50_over_floor']:.2f}x (goal <= 1.2x)"
        )
    if slave_mem:
        figures["slave_mb"] = slave_mem
        print(
            "slave resident memory: "
            + ", ".join(f"{k} {v:.1f} MB" for k, v in slave_mem.items())
            + " (goal < 300 MB)"
        )
    if regen_out:
        figures["regen_s"] = regen_out["seconds"]
        figures["regen"] = regen_out
        figures["full_floor_s"] = full
        figures["regen_over_floor"] = regen_out["seconds"] / full["full check + reload"]
        print(
            f"regen --doit: {regen_out['seconds']:.2f} s ({regen_out['message']}); the daemons'"
            f" full check + reload {full['full check + reload']:.2f} s ="
            f" {figures['regen_over_floor']:.2f}x (goal <= 1.5x)"
        )
        for k, v in full.items():
            print(f"  {k:<40} {ms(v)}")
    if own:
        figures["own_p50_s"] = percentile(own["own"], 50)
        figures["own_p99_s"] = percentile(own["own"], 99)
        figures["evaluate_p50_s"] = percentile(own["evaluate"], 50)
    print("\ngoals: p50 < 1 s with real reloads; dispatcher's own share < 50 ms per request")
    emit(args, figures)


if __name__ == "__main__":
    main()
