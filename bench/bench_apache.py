"""Benchmark the Apache backend against the brief's measured floors.

Generates N member vhosts (aliases, a URL alias, a redirect, a rewrite, every fourth with
basic auth), renders them with ``ApacheBackend``, lays them out as the slave does
(content-addressed units, a generation's ``sites.conf``), and measures:

- render: our time for one vhost (mean over 10,000) and for the index at 10,000;
- ``apache2 -t`` over the whole staged config at 10, 1,000 and 5,000 vhosts (best of 3);
- a graceful reload at 1,000 vhosts: from ``apache2 -k graceful`` until a vhost added
  in the new generation answers as itself, not the 421 catch-all (best of 3);
- the whole slave apply through ``domtool.slave.engine`` at 1,000 vhosts when one member
  adds a vhost: render, write, unit check, ``apache2 -t``, switch, graceful, probe.

Runs a real apache2 on 127.0.0.1 with its own config root under a temporary directory.

    .venv/bin/python bench/bench_apache.py [--check-sizes 10,1000,5000] [--reload-size 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchjson import add_option, emit  # noqa: E402

from domtool.model import BasicAuth, DesiredState, Redirect, Rewrite, Vhost, WebSettings  # noqa: E402
from domtool.slave.backends.apache import ApacheBackend  # noqa: E402
from tests.slave.apache_daemon import (  # noqa: E402
    free_port,
    get,
    prepare_site,
    public_dir,
    start_apache,
    wait_for,
)


def make_vhost(i: int, web: Path) -> Vhost:
    member = f"member{i % 500}"
    root = web / f"site{i}"
    ws = WebSettings(
        directory_index=("index.html",),
        redirects=(Redirect("/old", f"https://site{i}.example/new", 301),),
        rewrites=(Rewrite("^/a/(.*)$", "/b/$1", ("L",)),),
        auth=BasicAuth("members", f"{root}/.htpasswd") if i % 4 == 0 else None,
    )
    return Vhost(
        fqdn=f"www.site{i}.example",
        owner=member,
        domain=f"site{i}.example",
        nodes=("local",),
        document_root=str(root),
        user=member,
        group=member,
        server_admin=f"{member}@site{i}.example",
        aliases=(f"site{i}.example",),
        url_aliases=(("/static", f"{root}/static"),),
        settings=ws,
    )


class Layout:
    """A slave-style state directory: unit files and numbered generations."""

    def __init__(self, backend: ApacheBackend, state_dir: Path):
        self.backend, self.state_dir, self.generation = backend, state_dir, 0
        (state_dir / "units" / "apache").mkdir(parents=True, exist_ok=True)

    def stage(self, vhosts: list[Vhost]) -> Path:
        self.generation += 1
        paths = {}
        for unit in self.backend.units(DesiredState(vhosts=tuple(vhosts)), {}, 0):
            p = (
                self.state_dir
                / "units"
                / "apache"
                / f"{hashlib.sha256(unit.content).hexdigest()}.conf"
            )
            if not p.exists():
                p.write_bytes(unit.content)
            paths[unit.key] = PurePosixPath(p)
        gen = self.state_dir / "generations" / str(self.generation)
        (gen / "apache").mkdir(parents=True)
        for name, content in self.backend.index(paths).items():
            (gen / "apache" / name).write_bytes(content)
        return gen

    def switch(self, gen: Path) -> None:
        tmp = self.state_dir / "current.new"
        tmp.symlink_to(gen)
        os.replace(tmp, self.state_dir / "current")


def timed(argv: list[str] | tuple[str, ...]) -> float:
    t = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check-sizes", default="10,1000,5000")
    ap.add_argument("--reload-size", type=int, default=1000)
    ap.add_argument("--render-count", type=int, default=10_000)
    add_option(ap)
    args = ap.parse_args()
    sizes = [int(s) for s in args.check_sizes.split(",")]
    biggest = max(sizes + [args.reload_size + 3])

    work = Path(tempfile.mkdtemp(prefix="domtool-bench-apache-"))
    web = public_dir("domtool-bench-web-")
    rows: list[tuple[str, str, str]] = []
    proc = None
    try:
        for i in range(max(biggest, args.render_count)):
            (web / f"site{i}").mkdir()
            if i < biggest:
                (web / f"site{i}" / "index.html").write_text(f"site {i}\n")
                (web / f"site{i}" / "index.html").chmod(0o644)
            (web / f"site{i}").chmod(0o755)
        vhosts = [make_vhost(i, web) for i in range(max(biggest, args.render_count))]

        port = free_port()
        root = work / "apache"
        state = work / "state"
        config = prepare_site(root, port, str(state / "current" / "apache" / "sites.conf"))
        backend = ApacheBackend(config)

        # Our render time: one vhost, and the index at render_count vhosts.
        n = args.render_count
        t = time.perf_counter()
        units = [backend.render_vhost(v) for v in vhosts[:n]]
        per_vhost = (time.perf_counter() - t) / n
        paths = {
            u.key: PurePosixPath(f"/var/lib/domtool/units/apache/{i:064x}.conf")
            for i, u in enumerate(units)
        }
        t = time.perf_counter()
        backend.index(paths)
        index_time = time.perf_counter() - t
        t = time.perf_counter()
        backend.units(DesiredState(vhosts=tuple(vhosts[:n])), {}, 0)
        all_units = time.perf_counter() - t
        rows.append(("render one vhost", f"{per_vhost * 1e6:.0f} us", f"(mean of {n:,})"))
        rows.append(
            (f"render all units, {n:,} vhosts", f"{all_units:.2f} s", "with duplicate-name check")
        )
        rows.append((f"render index, {n:,} vhosts", f"{index_time * 1e3:.1f} ms", ""))

        # apache2 -t over the whole staged configuration.
        floors = {10: "0.02 s", 1000: "0.12 s", 5000: "0.53 s", 20000: "2.2 s"}
        layout = Layout(backend, state)
        for size in sizes:
            gen = layout.stage(vhosts[:size])
            (check,) = backend.check_all(PurePosixPath(gen))
            best = min(timed(check.argv) for _ in range(3))
            rows.append(
                (f"apache2 -t, {size:,} vhosts", f"{best:.3f} s", f"floor {floors.get(size, '?')}")
            )

        # One unit's own check (base config plus that vhost): what a changed unit costs.
        unit = backend.render_vhost(vhosts[1])
        upath = work / "one-unit.conf"
        upath.write_bytes(unit.content)
        argv = backend.config.check_argv(str(upath))
        best = min(timed(argv) for _ in range(5))
        rows.append(("apache2 -t, one unit's own check", f"{best:.3f} s", "per changed unit"))

        # Graceful reload until a new vhost answers, at reload_size vhosts.
        size = args.reload_size
        layout.switch(layout.stage(vhosts[:size]))
        proc = start_apache(root, port, str(state / "current" / "apache" / "sites.conf"))
        wait_for(lambda: get(port, vhosts[1].fqdn).status == 200, what="first vhost")
        times = []
        for k in range(3):
            new = vhosts[size + k]
            layout.switch(layout.stage(vhosts[: size + k + 1]))
            assert get(port, new.fqdn).status == 421
            t = time.perf_counter()
            proc.graceful()
            wait_for(
                lambda new=new: get(port, new.fqdn).status != 421, timeout=60, what="new vhost"
            )
            times.append(time.perf_counter() - t)
        rows.append(
            (
                f"graceful until new vhost answers, {size:,}",
                f"{min(times):.3f} s",
                f"median {statistics.median(times):.3f} s; floor 0.17 s at 1,000",
            )
        )
        proc.stop()
        proc = None

        # The whole slave apply through the engine at reload_size vhosts: one member adds
        # a vhost (render, write, unit check, apache2 -t, switch, graceful, probe).
        from domtool.slave.engine import Engine
        from domtool.slave.probes import RealProber
        from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
        from tests.slave.apache_daemon import ApacheProcess

        estate = work / "engine-state"
        eroot = work / "engine-apache"
        eport = free_port()
        econfig = prepare_site(eroot, eport, str(estate / "current" / "apache" / "sites.conf"))
        ebackend = ApacheBackend(econfig)
        engine = Engine(
            str(estate),
            {"apache": ebackend},
            RealFileSystem(),
            SubprocessRunner(),
            RealClock(),
            RealProber(),
            probe_interval=0.01,
        )
        proc = ApacheProcess(econfig, eroot)
        t = time.perf_counter()
        first = engine.apply(DesiredState(vhosts=tuple(vhosts[:size])))
        initial = time.perf_counter() - t
        assert first.status == "applied", first.message
        rows.append(
            (f"engine: first apply of {size:,} vhosts", f"{initial:.2f} s", "starts apache2")
        )
        times, preps, probes = [], [], []
        for k in range(3):
            state = DesiredState(vhosts=tuple(vhosts[: size + k + 1]))
            t = time.perf_counter()
            prepared = engine.prepare(state)
            t_prep = time.perf_counter()
            out = engine.commit(prepared)
            times.append(time.perf_counter() - t)
            preps.append(t_prep - t)
            assert out.status == "applied", out.message
            t = time.perf_counter()
            prober = RealProber()
            assert all(prober.probe(p) is True for p in prepared.probes)
            probes.append((time.perf_counter() - t, len(prepared.probes)))
        rows.append(
            (
                f"engine: one vhost added at {size:,}",
                f"{min(times):.3f} s",
                f"median {statistics.median(times):.3f} s; until the probes answer",
            )
        )
        rows.append(
            (
                "  of which prepare (render, stage, -t)",
                f"{min(preps):.3f} s",
                "the rest: switch, graceful, probes",
            )
        )
        best_probe = min(probes)
        rows.append(
            (
                f"  one round of {best_probe[1]:,} http probes",
                f"{best_probe[0]:.3f} s",
                "every vhost is probed on every apply",
            )
        )
    finally:
        if proc is not None:
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(web, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'time':>10}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")
    figures: dict = {}
    for name, value, _note in rows:
        number, _, unit = value.partition(" ")
        try:
            figures[name.strip()] = float(number.replace(",", "")) * {
                "s": 1,
                "ms": 1e-3,
                "us": 1e-6,
                "µs": 1e-6,
            }.get(unit, 1)
        except ValueError:
            figures[name.strip()] = value
    emit(args, figures)


if __name__ == "__main__":
    main()
