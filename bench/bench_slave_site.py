"""Benchmark the slave in-process as the local site builds it, at N domains: its own work.

The real agent (``domtool.slave.agent.Agent``) over the real engine and the four backends
the local site's slave runs (Apache with the CGI limits, BIND, Exim, Mailman; the
settings ``bench_e2e.py``'s site gives them), on the real file system (a temporary
directory, real fsyncs), with a process runner and a prober that answer at once: what is
measured is the slave's own share, not the daemons'. Every prepare goes through the wire's
decoding (JSON text, ``ops.parse``), as the slave process receives it.

The host is built as ``bench_e2e.py --others N`` builds it: members ``bgNNN`` of 50
domains each (``dom "bgNNNdMM.example" with end;``: a zone, a mail domain and a www vhost
each, evaluated by the language), ``--round`` members per prepare; alice holds
``example.org``. Then, at each size:

- ``dns``: alice adds one A record (median of ``--repeat`` prepare + commit);
- ``web``: alice adds one vhost;
- ``complete``: one complete prepare + commit of every owner's part, decoded afresh (what
  the slave does for ``domtool-admin regen --doit``; nothing changes);
- the process's memory (VmRSS, VmHWM, and Python's own allocations by tracemalloc
  when ``--tracemalloc``), and the CPU seconds of each phase.

``--profile-dns FILE`` writes a cProfile of the ``dns`` changes at the largest size (``pstats``
format); ``--profile-web``/``--profile-complete`` likewise.

    .venv/bin/python bench/bench_slave_site.py [--sizes 100,10000] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchjson import add_option, emit  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from domtool import model  # noqa: E402
from domtool.lang.api import check_source  # noqa: E402
from domtool.perms import Permissions  # noqa: E402
from domtool.slave import ops  # noqa: E402
from domtool.slave.agent import Agent  # noqa: E402
from domtool.slave.engine import Engine  # noqa: E402
from domtool.slave.seams import (  # noqa: E402
    FakeClock,
    FakeProcessRunner,
    RealFileSystem,
    Result,
    makedirs,
)

PER_MEMBER = 50
DOMAIN = "example.org"


class GcTime:
    """Seconds Python's cyclic garbage collector ran (``gc.callbacks``), and how often."""

    def __init__(self) -> None:
        self.seconds, self.runs, self._t0 = 0.0, [0, 0, 0], 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t0
            self.runs[info["generation"]] += 1

    def take(self) -> tuple[float, list[int]]:
        out = (self.seconds, list(self.runs))
        self.seconds, self.runs = 0.0, [0, 0, 0]
        return out


GC = GcTime()


class Yes:
    def probe(self, probe) -> bool:
        return True


def backends(root: Path, state_dir: str) -> dict:
    """The local site's four slave backends, with its settings (no daemon behind them)."""
    from domtool.devsite import localdaemons as L
    from domtool.slave.backends.apache import ApacheBackend
    from domtool.slave.backends.bind import BindBackend
    from domtool.slave.backends.exim import EximBackend, EximConfig
    from domtool.slave.backends.limits import cgi_limits
    from domtool.slave.backends.mailman import INDEX_FILE, MailmanBackend, MailmanConfig

    current = Path(state_dir) / "current"
    apache = L.apache_config(root / "apache", 8080, binary="/usr/sbin/apache2")
    bind = L.bind_config(root / "bind", 5353, 9953)
    exim = EximConfig(
        live_config=str(root / "exim" / "exim4.conf"),
        state_dir=state_dir,
        spool_dir=str(root / "exim" / "spool"),
        log_dir=str(root / "exim" / "log"),
        pid_file=str(root / "exim" / "exim.pid"),
        vmail_map=str(root / "exim" / "vmail"),
        vmail_root=str(root / "vmail"),
        port=2525,
        local_users_file=str(root / "exim" / "local_users"),
        node="local",
    )
    mailman = MailmanConfig(
        rest_config=str(root / "mailman" / "rest.json"),
        live_index=str(current / "mailman" / INDEX_FILE),
        node="local",
    )
    return {
        "apache": ApacheBackend(apache, cgi_limits_of=cgi_limits),
        "bind": BindBackend(bind),
        "exim": EximBackend(exim),
        "mailman": MailmanBackend(mailman),
    }


def member_part(user: str, names: list[str], text_of=None) -> dict:
    """One member's part as the dispatcher sends it: the state evaluated by the language
    (as JSON) and the grants."""
    perms = Permissions(
        user=user,
        domains=frozenset(names),
        paths=frozenset({f"/home/{user}"}),
        users=frozenset({user}),
        groups=frozenset({user}),
    )
    text_of = text_of or (lambda n: f'dom "{n}" with end;\n')
    result = check_source([(n, text_of(n)) for n in names], perms)
    if result.diagnostics:
        raise RuntimeError(result.diagnostics[0].format())
    return {
        "state": model.to_json(result.state),
        "grants": {"paths": [f"/home/{user}"], "users": [user], "groups": [user]},
    }


def alice_text(kind: str, i: int) -> str:
    extra = f'  dnsA "v{i}" "127.0.0.1";\n' if kind == "dns" else f'  web "w{i}" with end;\n'
    return (
        f'dom "{DOMAIN}" where\n  DocumentRoot = "/home/alice/public_html"\nwith\n'
        f'  dnsA "hello" "127.0.0.1";\n{extra}end;\n'
    )


def memory() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Slave:
    """The agent over the engine and backends, driven through the wire's decoding."""

    def __init__(self, tmp: Path, plain_gc: bool = False):
        self.fs, self.state_dir = RealFileSystem(), str(tmp / "state")
        makedirs(self.fs, self.state_dir)
        self.runner = FakeProcessRunner(handler=lambda cmd: Result(0))
        self.engine = Engine(
            self.state_dir,
            backends(tmp / "cfg", self.state_dir),
            self.fs,
            self.runner,
            FakeClock(),
            Yes(),
            probe_workers=16,
            check_workers=2,
        )
        from domtool.slave.gcpolicy import GcPolicy

        # as the slave's service runs it (slave/service.py): the collector's policy
        self.policy = None if plain_gc else GcPolicy()
        run = (lambda fn, *a: fn(*a)) if plain_gc else self.policy.wrap(lambda fn, *a: fn(*a))
        self.agent = Agent(
            self.engine, host="bench", state_dir=self.state_dir, clock=Clock(), run_blocking=run
        )
        self.tx = 0
        self.call("start", None)

    def call(self, op: str, args):
        out: list = []
        d = self.agent.start() if op == "start" else self.agent.handle(op, args)
        d.addBoth(out.append)
        if hasattr(out[0], "raiseException"):
            out[0].raiseException()
        return out[0]

    def apply(self, parts: dict[str, dict], complete: bool = False) -> tuple[float, float]:
        """prepare + commit of these owners' parts: (wall seconds, of which prepare)."""
        self.tx += 1
        txid = f"t{self.tx}"
        frame = json.dumps({"txid": txid, "changes": parts, "complete": complete})
        t0 = time.perf_counter()

        def decode():  # what the service's frame_received does, under the same policy
            return ops.parse("prepare", json.loads(frame))

        args = decode() if self.policy is None else self.policy.call(decode)
        answer = self.call("prepare", args)
        t1 = time.perf_counter()
        bad = {o: a["message"] for o, a in answer["owners"].items() if not a["ok"]}
        if bad:
            raise RuntimeError(f"refused: {bad}")
        result = self.call("commit", ops.parse("commit", {"txid": txid}))
        if result["status"] not in ("applied", "unchanged"):
            raise RuntimeError(f"commit: {result['message']}")
        return time.perf_counter() - t0, t1 - t0


def breakdown(slave: Slave) -> list[dict]:
    """What the slave holds, by structure (``bench/heapwalk.py``), printed to stderr: the
    agent's attributes first (its state), then the engine's generation store, then each
    backend's memos; an object shared by two holders counts under the first."""
    from heapwalk import attributes, walk

    agent, engine = slave.agent, slave.engine
    gc.collect()
    roots = [("agent._state", agent._state)]
    roots += [r for r in attributes("agent", agent) if r[0] not in ("agent.engine", "agent._state")]
    for name, backend in engine.backends.items():
        roots += attributes(name, backend)
    roots += attributes("store", engine.store)
    roots += attributes("engine", engine)
    rows = [r for r in walk(roots) if r["mb"] >= 0.1]
    print("held by (MB, objects; shared objects under the first holder):", file=sys.stderr)
    for r in rows:
        print(
            f"  {r['mb']:7.1f} MB {r['objects']:>9} {r['holder']} {r['types_mb']}", file=sys.stderr
        )
    print(f"  {sum(r['mb'] for r in rows):7.1f} MB in all", file=sys.stderr)
    sys._debugmallocstats()  # (to stderr: pymalloc's arenas, used and free blocks)
    return rows


def make_frames(n: int, repeat: int, path: str) -> None:
    """Evaluate the host's parts and alice's changes (in a child process, so the bench's
    own process holds only what the slave holds) and write them, one JSON line each:
    ``["member", owner, part]``, ``["dns"|"web", part]``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            json.dumps(["alice", member_part("alice", [DOMAIN], lambda d: alice_text("dns", 0))])
            + "\n"
        )
        k = 0
        while k * PER_MEMBER < n:
            user = f"bg{k:03}"
            names = [f"{user}d{j:02}.example" for j in range(min(PER_MEMBER, n - k * PER_MEMBER))]
            f.write(json.dumps(["member", user, member_part(user, names)]) + "\n")
            k += 1
        for kind, offset in (("dns", 100), ("web", 200)):
            for i in range(offset, offset + repeat + 1):
                part = member_part("alice", [DOMAIN], lambda d, i=i, kind=kind: alice_text(kind, i))
                f.write(json.dumps([kind, part]) + "\n")


def timed_changes(slave: Slave, changes: list[dict], profile=None) -> dict:
    walls, prepares, cpus = [], [], []
    gc_s, gc_runs = 0.0, [0, 0, 0]
    for i, part in enumerate(changes):
        if profile is not None and i:
            profile.enable()
        c0 = time.process_time()
        wall, prep = slave.apply({"alice": part})
        cpu = time.process_time() - c0
        if profile is not None:
            profile.disable()
        collected, runs = GC.take()
        if i:  # the first warms the memos
            gc_s += collected
            gc_runs = [a + b for a, b in zip(gc_runs, runs, strict=True)]
            walls.append(wall)
            prepares.append(prep)
            cpus.append(cpu)
    return {
        "p50_s": statistics.median(walls),
        "max_s": max(walls),
        "prepare_p50_s": statistics.median(prepares),
        "cpu_p50_s": statistics.median(cpus),
        "gc_mean_s": gc_s / len(walls),
        "gc_runs": gc_runs,
        "commands": [c.argv[0].rsplit("/", 1)[-1] for c in slave.runner.ran[-3:]],
    }


def run(n: int, args) -> dict:
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="bench-slave-site-"))
    try:
        t0 = time.perf_counter()
        frames = str(tmp / "frames.jsonl")
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--make-frames",
                str(n),
                frames,
                "--repeat",
                str(args.repeat),
            ],
            check=True,
        )
        evaluated = time.perf_counter() - t0
        changes: dict[str, list] = {"dns": [], "web": []}
        owners: list[str] = []
        slave = Slave(tmp, args.plain_gc)
        t0 = time.perf_counter()
        c0 = time.process_time()
        batch: dict[str, dict] = {}
        with open(frames, encoding="utf-8") as f:
            for line in f:
                item = json.loads(line)
                if item[0] == "alice":
                    slave.apply({"alice": item[1]})
                elif item[0] == "member":
                    batch[item[1]] = item[2]
                    owners.append(item[1])
                    if len(batch) == args.round:
                        slave.apply(batch)
                        batch = {}
                else:
                    changes[item[0]].append(item[1])
        if batch:
            slave.apply(batch)
        del batch
        populate, populate_cpu = time.perf_counter() - t0, time.process_time() - c0
        gc.collect()
        out: dict = {
            "domains": n,
            "evaluate_s": evaluated,
            "populate_s": populate,
            "populate_cpu_s": populate_cpu,
            "memory_after_populate_mb": memory(),
        }
        last = n == args.sizes[-1]
        for kind in ("dns", "web"):
            where = getattr(args, f"profile_{kind}")
            prof = cProfile.Profile() if last and where else None
            out[kind] = timed_changes(slave, changes[kind], prof)
            if prof is not None:
                prof.dump_stats(where)
        out["memory_after_changes_mb"] = memory()
        if args.breakdown and last:
            out["breakdown_after_changes"] = breakdown(slave)
        # regen: every owner's part again, decoded afresh, in one complete prepare
        everyone: dict[str, dict] = {"alice": changes["web"][-1]}
        with open(frames, encoding="utf-8") as f:
            for line in f:
                item = json.loads(line)
                if item[0] == "member":
                    everyone[item[1]] = item[2]
        prof = cProfile.Profile() if last and args.profile_complete else None
        if prof is not None:
            prof.enable()
        c0 = time.process_time()
        GC.take()
        wall, prep = slave.apply(everyone, complete=True)
        cpu = time.process_time() - c0
        gc_s, _runs = GC.take()
        if prof is not None:
            prof.disable()
            prof.dump_stats(args.profile_complete)
        del everyone
        out["complete"] = {"wall_s": wall, "prepare_s": prep, "cpu_s": cpu, "gc_s": gc_s}
        gc.collect()
        out["memory_mb"] = memory()
        if args.breakdown and last:
            out["breakdown_after_complete"] = breakdown(slave)
        if args.tracemalloc and last:
            import tracemalloc

            # Python's own allocations of the host a restarted slave holds, by line.
            del slave
            gc.collect()
            tracemalloc.start(1)
            slave = Slave(tmp)
            gc.collect()
            snap = tracemalloc.take_snapshot()
            out["restarted_python_mb"] = sum(s.size for s in snap.statistics("filename")) / 2**20
            print(
                f"restarted slave: {out['restarted_python_mb']:.1f} MB (tracemalloc)",
                file=sys.stderr,
            )
            for s in snap.statistics("lineno")[:30]:
                print(f"  {s.size / 2**20:7.1f} MB {s.count:>9} {s.traceback}", file=sys.stderr)
            tracemalloc.stop()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,10000")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--round", type=int, default=40, help="members per populate prepare")
    ap.add_argument("--profile-dns", help="cProfile of the dns changes at the largest size")
    ap.add_argument("--profile-web", help="cProfile of the web changes at the largest size")
    ap.add_argument("--profile-complete", help="cProfile of the complete prepare")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="what the slave holds by structure (agent, engine store, each backend), after"
        " the changes and after the complete prepare, at the largest size (bench/heapwalk.py)",
    )
    ap.add_argument(
        "--plain-gc", action="store_true", help="without the slave's GC policy (slave/gcpolicy.py)"
    )
    ap.add_argument("--make-frames", nargs=2, help=argparse.SUPPRESS)
    add_option(ap)
    args = ap.parse_args()
    if args.make_frames:
        make_frames(int(args.make_frames[0]), args.repeat, args.make_frames[1])
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    results = [run(n, args) for n in args.sizes]
    print(
        f"{'domains':>8} {'dns p50':>10} {'(cpu)':>9} {'web p50':>10} {'(cpu)':>9}"
        f" {'complete':>10} {'(cpu)':>9} {'VmRSS':>9} {'VmHWM':>9}"
    )
    for r in results:
        print(
            f"{r['domains']:>8,} {r['dns']['p50_s'] * 1e3:>7.1f} ms {r['dns']['cpu_p50_s'] * 1e3:>6.1f} ms"
            f" {r['web']['p50_s'] * 1e3:>7.1f} ms {r['web']['cpu_p50_s'] * 1e3:>6.1f} ms"
            f" {r['complete']['wall_s']:>8.2f} s {r['complete']['cpu_s']:>7.2f} s"
            f" {r['memory_mb']['VmRSS']:>6.0f} MB {r['memory_mb']['VmHWM']:>6.0f} MB"
        )
    import os

    print(f"(median of {args.repeat}; load average {os.getloadavg()})")
    figures = {"sizes": results, "loadavg": os.getloadavg()}
    if len(results) > 1:
        figures["dns_ratio"] = results[-1]["dns"]["p50_s"] / results[0]["dns"]["p50_s"]
        figures["web_ratio"] = results[-1]["web"]["p50_s"] / results[0]["web"]["p50_s"]
        print(f"dns {figures['dns_ratio']:.2f}x, web {figures['web_ratio']:.2f}x")
    emit(args, figures)


if __name__ == "__main__":
    main()
