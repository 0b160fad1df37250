"""Benchmark the nftables backend: loading members' network policy for N members (default
1,000) and one member's rule change, on the real kernel.

Runs itself again under ``unshare --mount --net`` (root only): a network namespace of its
own (the host's firewall is never touched) and a private mount namespace in which a copy
of ``/etc`` with N member users added to its ``passwd`` is bind-mounted over ``/etc``
(nft resolves user names to uids when it parses; the machine's own user database is
never changed).

Measures (best and median of ``--repeat``):

- render: ``NftBackend.units`` + ``index`` for N members (5 rules each);
- ``nft -c -f`` of the staged ruleset (the check the engine runs before a switch);
- ``nft -f`` of the ruleset: first load (no table yet) and a replacement (the one
  transaction that deletes and rebuilds our table);
- one member's rule change through the slave engine: render, write the changed unit
  and the index, ``nft -c -f``, switch, ``nft -f``, the ``nft_table`` probe;
- the same change end to end from the dispatcher: ``policy_set`` (store, plan, prepare
  and commit over the in-process link to the real agent and engine).

    sudo .venv/bin/python bench/bench_nft.py [--members 1000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchjson import add_option, emit  # noqa: E402

UID0 = 200000


def users(n: int) -> list[str]:
    return [f"m{i:05d}" for i in range(n)]


def rules_of(i: int) -> list[str]:
    return [
        "client tcp 80,443",
        "client udp 53 to 10.0.0.53",
        f"server tcp {10000 + i}",
        f"local tcp {20000 + i}",
        f"proxied tcp {30000 + i % 30000}",
    ]


def reexec(args: argparse.Namespace) -> int:
    """Run this script again in its own network and mount namespaces."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("bench_nft: needs root and unshare (network and mount namespaces)", file=sys.stderr)
        return 2
    argv = ["unshare", "--mount", "--net", "--propagation", "private", sys.executable]
    argv += [__file__, "--inside", *sys.argv[1:]]
    return subprocess.call(argv)


def cpu() -> float:
    """CPU seconds of this process and its finished children (nft) so far: on a shared
    machine the wall time includes waiting for a core, this does not."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def best_median(times: list[float], cpus: list[float] | None = None) -> dict[str, float]:
    out = {"best": round(min(times), 4), "median": round(statistics.median(times), 4)}
    if cpus:
        out["cpu_median"] = round(statistics.median(cpus), 4)
    return out


def timed(fn, repeat: int) -> dict[str, float]:
    times, cpus = [], []
    for _ in range(repeat):
        c0, t0 = cpu(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
    return best_median(times, cpus)


def inside(args: argparse.Namespace) -> int:
    from twisted.internet.task import Clock

    from domtool.dispatcher.apply import Coordinator
    from domtool.dispatcher.auth import Member
    from domtool.dispatcher.controller import Controller
    from domtool.dispatcher.store import Store
    from domtool.model import DesiredState, Firewall, MemberPolicy, Node, Site
    from domtool.policies import member_policy as mp
    from domtool.slave.agent import Agent
    from domtool.slave.backends.nft import INDEX_FILE, NftBackend, NftConfig
    from domtool.slave.engine import Engine
    from domtool.slave.probes import RealProber
    from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
    from tests.agent_link import AgentLink
    from tests.dispatcher.harness import result_of

    n, repeat = args.members, args.repeat
    nft = shutil.which("nft") or "/usr/sbin/nft"
    tmp = Path(tempfile.mkdtemp(prefix="bench-nft-"))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    names = users(n)
    # A copy of /etc with the member users added, bind-mounted over /etc in this mount
    # namespace only (a directory: another process's useradd renaming /etc/passwd on the
    # host cannot detach it, as it would a bind mount of the file).
    etc = tmp / "etc"
    subprocess.run(["cp", "-a", "/etc", str(etc)], check=True)
    with open(etc / "passwd", "a") as f:
        f.writelines(
            f"{u}:x:{UID0 + i}:{UID0 + i}::/nonexistent:/usr/sbin/nologin\n"
            for i, u in enumerate(names)
        )
    subprocess.run(["mount", "--bind", str(etc), "/etc"], check=True)

    site = Site(nodes=(Node("h1", ("web", "dns"), ipv4="10.0.0.1"),))
    policies = []
    for i, u in enumerate(names):
        rules = tuple(sorted((mp.parse_rule(t, u) for t in rules_of(i)), key=mp.rule_key))
        policies.append(MemberPolicy(u, ("h1",), (u,), Firewall(rules, mp.web_servers(site))))
    state = DesiredState(policies=tuple(policies))
    figures: dict[str, object] = {"members": n, "rules_per_member": 5}

    # render (pure)
    def render():
        b = NftBackend(NftConfig(state_dir=str(tmp / "r")))
        units = b.units(state, {}, 0)
        b.index({u.key: PurePosixPath(f"/x/{u.key}.nft") for u in units})
        return units

    figures["render_s"] = timed(render, repeat)

    # a staged ruleset as the engine lays it out
    stage = tmp / "stage"
    (stage / "units").mkdir(parents=True)
    backend = NftBackend(NftConfig(state_dir=str(stage)))
    units = backend.units(state, {}, 0)
    paths = {}
    for u in units:
        p = stage / "units" / f"{u.key.split(':')[1]}.nft"
        p.write_bytes(u.content)
        paths[u.key] = PurePosixPath(p)
    index = stage / INDEX_FILE
    index.write_bytes(backend.index(paths)[INDEX_FILE])
    size = sum(len(u.content) for u in units)
    figures["ruleset_bytes"] = size

    def run(*argv):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)}: {proc.stderr[-2000:]}")

    figures["nft_check_s"] = timed(lambda: run(nft, "-c", "-f", str(index)), repeat)
    first, cpus = [], []
    for _ in range(repeat):
        subprocess.run([nft, "delete", "table", "inet", "domtool"], capture_output=True)
        c0, t0 = cpu(), time.perf_counter()
        run(nft, "-f", str(index))
        first.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
    figures["nft_load_first_s"] = best_median(first, cpus)
    figures["nft_load_replace_s"] = timed(lambda: run(nft, "-f", str(index)), repeat)
    subprocess.run([nft, "delete", "table", "inet", "domtool"], capture_output=True)

    # one member's change through the engine
    state_dir = tmp / "engine"
    engine = Engine(
        str(state_dir),
        {"nft": NftBackend(NftConfig(state_dir=str(state_dir), node="h1", nft=nft))},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(),
        probe_timeout=10.0,
    )
    t0 = time.perf_counter()
    assert engine.apply(state).status == "applied"
    figures["engine_first_apply_s"] = round(time.perf_counter() - t0, 4)
    times, cpus = [], []
    current = state
    for k in range(repeat):
        p0 = current.policies[0]
        extra = mp.parse_rule(f"client tcp {40000 + k}", p0.owner)
        fw = Firewall(
            tuple(sorted((*p0.firewall.rules, extra), key=mp.rule_key)), p0.firewall.web_servers
        )
        current = DesiredState(
            policies=(MemberPolicy(p0.owner, p0.nodes, p0.users, fw), *current.policies[1:])
        )
        c0, t0 = cpu(), time.perf_counter()
        out = engine.apply(current)
        times.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
        assert out.status == "applied", out
    figures["engine_one_change_s"] = best_median(times, cpus)

    # the same through the dispatcher (store, plan, two-phase over the in-process link)
    state_dir2 = tmp / "agent"
    engine2 = Engine(
        str(state_dir2),
        {"nft": NftBackend(NftConfig(state_dir=str(state_dir2), node="h1", nft=nft))},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(),
        probe_timeout=10.0,
    )
    agent = Agent(engine2, host="h1", state_dir=str(state_dir2), clock=Clock(), node="h1")
    result_of(agent.start())
    store = Store.connect(str(tmp / "store.sqlite3"))
    store.add_member("root", is_admin=True)
    with store.batch():
        for i, u in enumerate(names):
            store.add_member(u)
            store.grant(u, "user", u)
            store.set_policy(
                u,
                {
                    "firewall": {
                        "rules": [mp.rule_to_json(r) for r in policies[i].firewall.rules],
                        "rate": None,
                    }
                },
            )
    controller = Controller(
        store, site, Coordinator(store, {"h1": AgentLink("h1", agent)}, Clock())
    )
    admin = Member("root", True)
    t0 = time.perf_counter()
    out = result_of(controller.handle(admin, "regen", {"apply": True}))
    assert out["applied"], out["message"]
    figures["dispatcher_regen_all_s"] = round(time.perf_counter() - t0, 4)
    times, cpus = [], []
    for k in range(repeat):
        args_ = {
            "user": names[1],
            "part": "firewall",
            "action": "add",
            "value": f"client tcp {41000 + k}",
        }
        c0, t0 = cpu(), time.perf_counter()
        out = result_of(controller.handle(admin, "policy_set", args_))
        times.append(time.perf_counter() - t0)
        cpus.append(cpu() - c0)
        assert out["applied"], out["message"]
    figures["dispatcher_one_change_s"] = best_median(times, cpus)
    figures["load_average"] = os.getloadavg()[0]

    print(
        f"nftables policy for {n} members, 5 rules each ({size} bytes of units); best / median of {repeat}"
    )
    for k, v in figures.items():
        print(f"  {k:<28} {v}")
    emit(args, figures)
    subprocess.run(["umount", "/etc"], check=False)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    add_option(ap)
    args = ap.parse_args()
    return inside(args) if args.inside else reexec(args)


if __name__ == "__main__":
    sys.exit(main())
