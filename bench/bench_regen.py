"""Benchmark the dispatcher's own ``regen`` of a whole site, in process, against a fake slave.

``domtool-admin regen --doit`` replays every member's stored files with today's
permissions, compares each member's evaluated state with what the hosts hold and applies
what differs. This bench runs exactly that (``Controller.handle(admin, "regen",
{"apply": True})``) in this process, with the real evaluation pool
(``dispatcher/evalpool.py``, its default workers) and the real two-phase coordinator,
against the dispatcher's in-memory slave (``dispatcher/testing.py`` ``FakeSlave``), so
the figure is the dispatcher's own work, not the daemons'.

The site is ``bench_e2e.py --others N``'s (its generator, ``other_members``): members
``bgNNN`` of 50 domains each, one file ``dom "D" with end;`` per domain (a zone, a mail
domain and a www vhost), on one node with every role. Its store (members, grants,
sources) is written directly (the overlap check of ``Store.grant`` is O(site) per grant:
populating through it would be quadratic); ``--store DIR`` keeps it between runs.

Two regens are measured (``--repeat`` times each, alternating):

- ``new``: the store has no record of any host (``deployed`` emptied), so every member's
  part is new and the one host gets everything in one prepare and commit;
- ``unchanged``: right after, nothing differs from what is deployed (the common case):
  no host is contacted.

Per phase (wrapped around the controller's methods, not inside them): ``eval_s``
(``_regen_states``: the pool's evaluation and the dispatcher's per-member policy checks
while it waits), ``apply_s`` (``coordinator.apply``), of which ``fake_slave_s`` is the
fake slave's own work, and ``plan_s`` (the rest: reading what the hosts hold, ``split``,
the per-member comparison, the answer). ``cpu_s`` is this process's CPU time (the
workers not counted).

    .venv/bin/python bench/bench_regen.py [--domains 10000] [--repeat 1] [--store DIR]
        [--only new|unchanged] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_e2e import other_members, other_source  # noqa: E402
from benchjson import add_option, emit  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from domtool.dispatcher.apply import Coordinator  # noqa: E402
from domtool.dispatcher.auth import Member  # noqa: E402
from domtool.dispatcher.controller import Controller  # noqa: E402
from domtool.dispatcher.evalpool import EvalPool  # noqa: E402
from domtool.dispatcher.store import Store  # noqa: E402
from domtool.dispatcher.testing import FakeLink, FakeSlave  # noqa: E402
from domtool.model import DEFAULT_SITE  # noqa: E402

ADMIN = Member("root", True)
SITE_DOMAINS = ("coop.example",)  # the quickstart's


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_store(path: Path, domains: int) -> tuple[Store, float]:
    """The store in ``path`` with the site's ``domains`` (reused if it has them)."""
    path.mkdir(parents=True, exist_ok=True)
    store = Store.open(path)
    (have,) = store._db.execute("SELECT COUNT(DISTINCT domain) FROM sources").fetchone()
    if have == domains:
        return store, 0.0
    if have:
        raise SystemExit(f"{path} holds a site of {have} domains, not {domains}")
    t0 = time.perf_counter()
    with store.batch():
        store.add_member("root", is_admin=True)
        for user, grants, names in other_members(domains):
            store.add_member(user)
            store._db.executemany(
                "INSERT INTO grants (member, class, value) VALUES (?, ?, ?)",
                [(user, c, v) for c, v in grants],
            )
            for n in names:
                store.put_source(user, n, other_source(n), accepted=True)
    return store, time.perf_counter() - t0


def forget_hosts(store: Store) -> None:
    """As if no host had ever been given anything (the ``new`` regen)."""
    with store.batch():
        for table in ("deployed", "pending", "generations"):
            store._db.execute(f"DELETE FROM {table}")


class Timed:
    """Seconds spent in wrapped calls, by phase."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def wrap_async(self, obj, name: str, phase: str) -> None:
        fn = getattr(obj, name)

        async def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return await fn(*a, **kw)
            finally:
                self.t[phase] = self.t.get(phase, 0.0) + time.perf_counter() - t0

        setattr(obj, name, timed)


class _TimedSlave:
    def __init__(self, slave: FakeSlave, timed: Timed) -> None:
        self.slave, self.timed = slave, timed

    def handle(self, op, args):
        t0 = time.perf_counter()
        try:
            return self.slave.handle(op, args)
        finally:
            t = self.timed.t
            t["fake_slave_s"] = t.get("fake_slave_s", 0.0) + time.perf_counter() - t0


def make(store: Store, reactor, pool: EvalPool) -> tuple[Controller, FakeSlave, Timed]:
    """A controller over ``store`` with the pool and a fresh fake slave, phases timed."""
    slave = FakeSlave("local")
    link = FakeLink("local", slave)
    coordinator = Coordinator(store, {"local": link}, reactor)
    controller = Controller(
        store,
        DEFAULT_SITE,
        coordinator,
        site_domains=SITE_DOMAINS,
        check_source=pool.check,
        check_each=pool.check_each,
    )
    timed = Timed()
    timed.wrap_async(controller, "_regen_states", "eval_s")
    link.slave = _TimedSlave(slave, timed)  # (FakeSlave has slots: wrap it whole)
    return controller, slave, timed


async def run_one(kind: str, store: Store, reactor, pool: EvalPool, profile) -> dict:
    if kind == "new":
        forget_hosts(store)
    controller, slave, timed = make(store, reactor, pool)
    apply = controller.coordinator.apply

    def apply_timed(changes, progress=None):
        t0 = time.perf_counter()
        d = apply(changes, progress)

        def done(r):
            timed.t["apply_s"] = timed.t.get("apply_s", 0.0) + time.perf_counter() - t0
            return r

        return d.addBoth(done)

    controller.coordinator.apply = apply_timed
    if profile is not None:
        profile.enable()
    c0, t0 = cpu(), time.perf_counter()
    out = await controller.handle(ADMIN, "regen", {"apply": True})
    wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    if profile is not None:
        profile.disable()
    if not out.get("applied"):
        raise SystemExit(f"regen ({kind}) was not applied: {out.get('message')}")
    changed = sorted(out.get("hosts") or {})
    planned = len(out.get("plan") or {})
    if kind == "unchanged" and (planned or slave.generation):
        raise SystemExit(f"an unchanged regen planned {planned} member(s)")
    if kind == "new" and not (changed and slave.generation == 1):
        raise SystemExit("the new regen did not change the host")
    t = timed.t
    phases = {
        "eval_s": t.get("eval_s", 0.0),
        "apply_s": t.get("apply_s", 0.0),
        "fake_slave_s": t.get("fake_slave_s", 0.0),
    }
    phases["plan_s"] = wall - phases["eval_s"] - phases["apply_s"]
    return {
        "wall_s": wall,
        "cpu_s": cpu_s,
        "members_planned": planned,
        "hosts_changed": changed,
        "dropped": len(out.get("dropped") or []),
        "loadavg": os.getloadavg()[0],
        **phases,
    }


def show_profile(profile: cProfile.Profile) -> str:
    out = io.StringIO()
    for key in ("cumulative", "tottime"):
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(25)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each regen (alternating)")
    ap.add_argument("--store", type=Path, help="keep the populated store in this directory")
    ap.add_argument("--only", choices=("new", "unchanged"), help="measure one regen only")
    ap.add_argument("--profile", action="store_true", help="cProfile of the dispatcher")
    add_option(ap)
    args = ap.parse_args()
    tmp = None
    if args.store is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-regen-"))
    store, populate_s = build_store(args.store or tmp, args.domains)
    figures: dict = {"domains": args.domains, "populate_s": populate_s, "runs": {}}
    print(f"store: {args.domains:,} domains ({populate_s:.1f} s to populate)", flush=True)
    kinds = [args.only] if args.only else ["new", "unchanged"]
    profiles = {k: cProfile.Profile() for k in kinds} if args.profile else {}

    async def run(reactor):
        pool = EvalPool(reactor)
        pool.warm()
        try:
            for _ in range(args.repeat):
                for kind in kinds:
                    r = await run_one(kind, store, reactor, pool, profiles.get(kind))
                    figures["runs"].setdefault(kind, []).append(r)
                    print(
                        f"{kind:<10} wall {r['wall_s']:6.2f} s  cpu {r['cpu_s']:6.2f} s  "
                        f"eval {r['eval_s']:5.2f}  plan {r['plan_s']:5.2f}  "
                        f"apply {r['apply_s']:5.2f} (fake slave {r['fake_slave_s']:.2f})  "
                        f"load {r['loadavg']:.1f}",
                        flush=True,
                    )
        finally:
            pool.close()

    try:
        task.react(lambda reactor: defer.ensureDeferred(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        store.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    for kind, p in profiles.items():
        print(f"\n--- profile: {kind} regen (dispatcher process) ---")
        print(show_profile(p))
    for kind, runs in figures["runs"].items():  # the best of the repeats
        figures[kind] = min(runs, key=lambda r: r["wall_s"])
    emit(args, figures)


if __name__ == "__main__":
    main()
