"""Benchmark the BIND backend against the brief's measured floors.

Generates N member zones of 20 records (A, AAAA, MX, TXT, SRV, CAA, CNAMEs), renders them
with ``BindBackend``, lays them out as the slave does (content-addressed units, a
generation's ``zones.conf`` and ``check.conf``), and measures:

- render: our time for one zone (mean over 10,000) and for the index at 10,000 zones;
- ``named-checkzone`` on one zone of 20 records and of 100,000 records (best of 3);
- ``named-checkconf -z`` (and without ``-z``) over the staged generation at 1,000 and
  10,000 zones (best of 3, or once at 10,000 with ``-z``);
- ``rndc reload`` with 1,000 zones: from the reload command until a zone changed in the
  new generation answers with its new serial (best of 3);
- the whole slave apply through ``domtool.slave.engine`` at 1,000 zones when one member
  changes one zone: render, write, named-checkzone, switch, ``rndc reload ZONE`` (the
  zone is at its stable live path), SOA probe; and when a zone is added (named-checkconf
  -z and a whole ``rndc reload``);
- the SERVFAIL window: a thread queries the changing zone all the time while it is
  changed and reloaded ``--servfail-reloads`` times (default 1,000) through the engine,
  counting every answer that is not NOERROR; and, for comparison, 10 reloads of the old
  layout (each zone file content-addressed, so its path changes with every change).

Runs a real named on 127.0.0.1 with its own config root under a temporary directory.

    .venv/bin/python bench/bench_bind.py [--check-sizes 1000,10000] [--reload-size 1000]
        [--servfail-reloads 1000] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchjson import add_option, emit  # noqa: E402
from domtool.devsite.localdaemons import wait_for  # noqa: E402
from domtool.model import DesiredState, Record, Zone  # noqa: E402
from domtool.slave.backends.bind import BindBackend, serial_of  # noqa: E402
from domtool.slave.engine import Engine  # noqa: E402
from domtool.slave.probes import RealProber  # noqa: E402
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner  # noqa: E402
from tests.slave.named_daemon import (  # noqa: E402
    CHECKCONF,
    CHECKZONE,
    bind_config,
    free_port,
    soa_serial,
    start_named,
)

NOW = int(time.time())


def make_zone(i: int, extra: int = 0, a: str = "192.0.2.1") -> Zone:
    """Zone i: 20 records (plus ``extra`` A records), owned by one of 500 members."""
    records = [
        Record("@", "A", (a,)),
        Record("@", "AAAA", ("2001:db8::1",)),
        Record("@", "NS", ("ns1.coop.example",)),
        Record("@", "NS", ("ns2.coop.example",)),
        Record("@", "MX", (10, f"mail.site{i}.example")),
        Record("@", "TXT", (f'v=spf1 mx a:"site{i}" -all',)),
        Record("@", "CAA", (0, "issue", "letsencrypt.org")),
        Record("mail", "A", ("192.0.2.25",)),
        Record("_sip._tcp", "SRV", (10, 60, 5060, f"sip.site{i}.example")),
        Record("sip", "A", ("192.0.2.26",)),
    ]
    records += [Record(f"h{j}", "A", (f"192.0.2.{j + 30}",)) for j in range(5)]
    records += [Record(f"w{j}", "CNAME", (f"site{i}.example",)) for j in range(5)]
    records += [
        Record(f"x{j}", "A", (f"10.{j >> 16 & 255}.{j >> 8 & 255}.{j & 255}",))
        for j in range(extra)
    ]
    return Zone(f"site{i}.example", f"member{i % 500}", tuple(records), ("local",), 3600)


def best(f, n: int = 3) -> float:
    return min(f() for _ in range(n))


def timed(argv) -> float:
    t = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}"[:2000])
    return took


class Layout:
    """Content-addressed zone units and numbered generations, as the slave writes them."""

    def __init__(self, backend: BindBackend, state_dir: Path):
        self.backend, self.state_dir = backend, state_dir
        self.n = 0

    def stage(self, zones: list[Zone], previous: dict | None = None) -> tuple[Path, dict]:
        units = self.backend.units(DesiredState(zones=tuple(zones)), previous or {}, NOW)
        udir = self.state_dir / "units" / "bind"
        udir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for u in units:
            p = udir / f"{hashlib.sha256(u.content).hexdigest()}.zone"
            if not p.exists():
                p.write_bytes(u.content)
            paths[u.key] = PurePosixPath(p)
        self.n += 1
        gen = self.state_dir / "generations" / str(self.n)
        (gen / "bind").mkdir(parents=True)
        for name, data in self.backend.index(paths).items():
            (gen / "bind" / name).write_bytes(data)
        return gen, {u.key: u for u in units}

    def switch(self, gen: Path) -> None:
        tmp = self.state_dir / "current.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(os.path.relpath(gen, self.state_dir), tmp)
        os.replace(tmp, self.state_dir / "current")


def servfail_window(
    named, change, changes: int = 10, zone: str = "site7.example", label: str = ""
) -> tuple[str, str, str, dict]:
    """Query the changing zone in a loop while ``changes`` changes are reloaded: a zone
    whose file name changed is re-created by named and answers SERVFAIL until the new one
    has loaded. Returns the table row (the longest run of SERVFAILs) and its figures."""
    import dns.message
    import dns.query
    import dns.rcode

    stop = threading.Event()
    answers: list[tuple[float, int]] = []

    def hammer() -> None:
        q = dns.message.make_query(zone, "A")
        while not stop.is_set():
            try:
                r = dns.query.udp(q, "127.0.0.1", port=named.port, timeout=0.5)
                answers.append((time.perf_counter(), r.rcode()))
            except Exception:
                answers.append((time.perf_counter(), -1))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for _ in range(changes):
            change()
            if changes <= 10:
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    longest, start = 0.0, None
    for t, rcode in answers:
        if rcode != dns.rcode.NOERROR:
            start = t if start is None else start
            longest = max(longest, t - start)
        else:
            start = None
    bad = sum(1 for _, r in answers if r != dns.rcode.NOERROR)
    return (
        f"SERVFAIL window of a changed zone, {label} ({changes:,} reloads)",
        f"{longest * 1e3:.1f} ms",
        f"longest run; {bad} of {len(answers):,} queries failed",
        {"reloads": changes, "queries": len(answers), "not_noerror": bad, "longest_s": longest},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check-sizes", default="1000,10000")
    ap.add_argument("--reload-size", type=int, default=1000)
    ap.add_argument("--servfail-reloads", type=int, default=1000)
    add_option(ap)
    args = ap.parse_args()
    rows: list[tuple[str, str, str]] = []
    figures: dict = {"zones": args.reload_size}
    tmp = Path(tempfile.mkdtemp(prefix="bench-bind-"))
    try:
        # -- render --------------------------------------------------------------
        cfg = bind_config(tmp / "cfg", 5353, 9953)
        backend = BindBackend(cfg)
        zones = [make_zone(i) for i in range(10_000)]
        t = time.perf_counter()
        units = backend.units(DesiredState(zones=tuple(zones)), {}, NOW)
        took = time.perf_counter() - t
        rows.append(
            ("render one zone (20 records)", f"{took / 1e4 * 1e6:.0f} us", "mean of 10,000")
        )
        rows.append(("render 10,000 zones", f"{took:.2f} s", ""))
        prev = {u.key: u for u in units}
        t = time.perf_counter()
        again = backend.units(DesiredState(zones=tuple(zones)), prev, NOW)
        took = time.perf_counter() - t
        assert all(a is prev[a.key] for a in again)
        rows.append(
            ("re-render 10,000 unchanged zones", f"{took:.2f} s", "previous units returned")
        )
        paths = {
            u.key: PurePosixPath(f"/var/lib/domtool/units/bind/{i:064x}.zone")
            for i, u in enumerate(units)
        }
        t = time.perf_counter()
        backend.index(paths)
        rows.append(
            (
                "index at 10,000 zones",
                f"{(time.perf_counter() - t) * 1e3:.0f} ms",
                "zones.conf + check.conf",
            )
        )

        # -- named-checkzone -----------------------------------------------------
        zdir = tmp / "zones"
        zdir.mkdir()
        for extra, label in ((0, "20 records"), (100_000, "100,020 records")):
            (u,) = backend.units(DesiredState(zones=(make_zone(0, extra),)), {}, NOW)
            path = zdir / f"z{extra}.zone"
            path.write_bytes(u.content)
            argv = [a.replace("{path}", str(path)) for a in u.checks[0].argv]
            rows.append(
                (
                    f"named-checkzone, one zone of {label}",
                    f"{best(lambda a=argv: timed(a)):.3f} s",
                    "best of 3",
                )
            )

        # -- named-checkconf over a generation -------------------------------------
        for n in [int(x) for x in args.check_sizes.split(",") if x]:
            root = tmp / f"check{n}"
            root.mkdir()
            c = bind_config(root, 5353, 9953)
            (root / "base.conf").write_text(f'options {{ directory "{root}"; }};\n')
            layout = Layout(BindBackend(c), root / "state")
            gen, _ = layout.stage([make_zone(i) for i in range(n)])
            conf = gen / "bind" / "check.conf"
            rows.append(
                (
                    f"named-checkconf (syntax) at {n:,} zones",
                    f"{best(lambda c=conf: timed([CHECKCONF, str(c)])):.2f} s",
                    "best of 3",
                )
            )
            reps = 1 if n > 5000 else 3
            took = best(lambda c=conf: timed([CHECKCONF, "-z", str(c)]), reps)
            rows.append((f"named-checkconf -z at {n:,} zones", f"{took:.2f} s", f"best of {reps}"))

        # -- rndc reload with N zones ----------------------------------------------
        n = args.reload_size
        root = tmp / "live"
        state = root / "state"
        layout = None
        state.mkdir(parents=True)
        (state / "bootstrap" / "bind").mkdir(parents=True)
        (state / "bootstrap" / "bind" / "zones.conf").write_text("")
        os.symlink("bootstrap", state / "current")
        named = start_named(root / "named", free_port(), state / "current" / "bind" / "zones.conf")
        try:
            b = BindBackend(named.config)
            layout = Layout(b, state)
            live = [make_zone(i) for i in range(n)]
            gen, prev = layout.stage(live)
            layout.switch(gen)
            t = time.perf_counter()
            named.reload()
            wait_for(lambda: soa_serial(named.port, f"site{n - 1}.example"), timeout=120)
            rows.append(
                (
                    f"first load of {n:,} zones (rndc reload)",
                    f"{time.perf_counter() - t:.2f} s",
                    "until the last zone answers",
                )
            )

            counter = itertools.count(100)

            def one_change() -> float:
                nonlocal prev
                live[7] = make_zone(7, a=f"192.0.2.{next(counter)}")
                gen, prev = layout.stage(live, prev)
                want = serial_of(prev["zone:site7.example"].content)
                layout.switch(gen)
                t = time.perf_counter()
                named.reload()
                wait_for(lambda: soa_serial(named.port, "site7.example") == want, timeout=60)
                return time.perf_counter() - t

            rows.append(
                (
                    f"rndc reload at {n:,} zones, one changed",
                    f"{best(one_change):.3f} s",
                    "until its new serial answers; best of 3",
                )
            )
            *row, fig = servfail_window(named, one_change, label="old layout: path changes")
            rows.append(tuple(row))
            figures["servfail_old_layout"] = fig
        finally:
            named.stop()

        # -- the whole apply through the engine --------------------------------------
        root = tmp / "engine"
        state = root / "state"
        (state / "bootstrap" / "bind").mkdir(parents=True)
        (state / "bootstrap" / "bind" / "zones.conf").write_text("")
        os.symlink("bootstrap", state / "current")
        named = start_named(root / "named", free_port(), state / "current" / "bind" / "zones.conf")
        try:

            def engine(unit_checks: bool) -> Engine:
                import attrs

                b = BindBackend(attrs.evolve(named.config, unit_checks=unit_checks))
                return Engine(
                    str(state),
                    {"bind": b},
                    RealFileSystem(),
                    SubprocessRunner(),
                    RealClock(),
                    RealProber(),
                    probe_timeout=30,
                    probe_interval=0.02,  # as the slave's service builds it
                )

            live = [make_zone(i) for i in range(n)]
            t = time.perf_counter()
            out = engine(False).apply(DesiredState(zones=tuple(live)))
            assert out.status == "applied", out.message
            rows.append(
                (
                    f"engine: first apply of {n:,} zones",
                    f"{time.perf_counter() - t:.2f} s",
                    f"no per-unit checks; checkconf -z, reload, {n:,} SOA probes",
                )
            )
            eng = engine(True)
            ran: list = []
            runner = eng.runner

            class Recording:
                def run(self, cmd):
                    ran.append(
                        cmd.argv[0].rsplit("/", 1)[1] + "".join(f" {a}" for a in cmd.argv[7:8])
                    )
                    return runner.run(cmd)

            eng.runner = Recording()
            times = []
            for k in range(5):
                live[9] = make_zone(9, a=f"192.0.2.{200 + k}")
                ran.clear()
                t = time.perf_counter()
                out = eng.apply(DesiredState(zones=tuple(live)))
                times.append(time.perf_counter() - t)
                assert out.status == "applied", out.message
            times.sort()
            rows.append(
                (
                    f"engine: one zone changed at {n:,} zones",
                    f"{times[2]:.3f} s",
                    f"median of 5: render, write, {', '.join(ran)}, switch, SOA probe",
                )
            )
            figures["engine_one_zone_changed_s"] = times[2]
            figures["engine_one_zone_commands"] = list(ran)
            extra = list(live)
            ran.clear()
            t = time.perf_counter()
            extra.append(make_zone(n + 1))
            out = eng.apply(DesiredState(zones=tuple(extra)))
            took = time.perf_counter() - t
            assert out.status == "applied", out.message
            rows.append(
                (
                    f"engine: one zone added at {n:,} zones",
                    f"{took:.3f} s",
                    f"{', '.join(ran)}",
                )
            )
            figures["engine_one_zone_added_s"] = took
            live = extra
            counter = itertools.count(1)

            def engine_change() -> None:
                i = next(counter)
                live[7] = make_zone(7, a=f"10.9.{i >> 8 & 255}.{i & 255}")
                done = eng.apply(DesiredState(zones=tuple(live)))
                assert done.status == "applied", done.message

            t = time.perf_counter()
            *row, fig = servfail_window(
                named, engine_change, args.servfail_reloads, label="engine, stable path"
            )
            fig["wall_s"] = time.perf_counter() - t
            rows.append(tuple(row))
            figures["servfail_engine"] = fig
            # The floor of a one-zone reload: rndc reload ZONE until its new serial answers.
            live_file = state / "live" / "bind" / "site7.example.zone"
            old = live_file.read_bytes()
            serial = serial_of(old)

            def floor() -> float:
                nonlocal old, serial
                new = old.replace(f" {serial} ".encode(), f" {serial + 1} ".encode(), 1)
                assert new != old
                live_file.write_bytes(new)
                old, serial = new, serial + 1
                t = time.perf_counter()
                named.rndc("reload", "site7.example")
                want = serial
                wait_for(lambda: soa_serial(named.port, "site7.example") == want, timeout=60)
                return time.perf_counter() - t

            took = best(floor)
            rows.append(
                (
                    f"floor: rndc reload ZONE at {n:,} zones",
                    f"{took:.3f} s",
                    "until its new serial answers; best of 3",
                )
            )
            figures["floor_rndc_reload_zone_s"] = took
            t = time.perf_counter()
            out = eng.apply(DesiredState(zones=tuple(live)))
            assert out.status == "unchanged", out.message
            rows.append(
                (
                    f"engine: same state again at {n:,} zones",
                    f"{time.perf_counter() - t:.3f} s",
                    "nothing written, checked or reloaded",
                )
            )
        finally:
            named.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"named: {shutil.which('named')}  named-checkzone: {CHECKZONE}")
    print(f"{'measure':<{width}}  {'time':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    for name, value, _note in rows:
        if name not in figures and value.endswith((" s", " ms", " us")):
            number, unit = value.split()
            figures[name] = float(number) * {"s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    emit(args, figures)


if __name__ == "__main__":
    main()
