"""One member's worst-case file evaluating while another member works: the real service.

Run as a script (the reactor runs once per process)::

    python eval_isolation.py STATE_DIR MODE BUDGET

MODE is ``pool`` (the service's way: ``dispatcher.evalpool.EvalPool``) or ``inline``
(``check_source`` in the reactor thread, as before issue 13). BUDGET is the work budget
of each request (larger than the default so the worst case lasts seconds). It starts the
real ``DispatcherService`` on 127.0.0.1 over in-memory slaves, measures bob's ``whoami``
and ``submit`` alone, then has alice send a ``check`` and a ``submit`` of the worst-case
file and, until both are answered, has bob ask ``whoami`` again and again (and
``submit`` every fifth time, at most 4); prints a JSON report with every latency in
seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from twisted.internet import defer, task

from domtool.dispatcher import ca, service
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.controller import Controller
from domtool.dispatcher.evalpool import EvalPool
from domtool.dispatcher.store import Store
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.net import tls
from tests.dispatcher.dispatcher_sockets import DISPATCHER, SITE, Cfg, ask


def worst_case(depth: int = 15, items: int = 16_000) -> str:
    """A 240 KB file appending a 16,000-item list 2**depth times."""
    names = ", ".join(f'"i{i}.html"' for i in range(items))
    lines = [f"val big = [{names}]", "val f0 = directoryIndex big"]
    lines += [f"val f{i} = (f{i - 1}; f{i - 1})" for i in range(1, depth + 1)]
    lines.append(f'dom "alice.example" with web "w" with f{depth} end end')
    return "\n".join(lines)


async def timed(reactor, port, creator, op, args) -> tuple[float, dict | None]:
    t0 = time.perf_counter()
    answer = await ask(reactor, port, creator, op, args, [])
    return time.perf_counter() - t0, answer


async def main(reactor, state_dir: str, mode: str, budget: str) -> None:
    state = Path(state_dir)
    ca_dir = state / "ca"
    ca.init_ca(ca_dir, "example.coop")
    store = Store.open(state)
    for m in ("alice", "bob"):
        store.add_member(m)
        store.grant(m, "domain", f"{m}.example")
        store.grant(m, "path", f"/home/{m}")
        store.grant(m, "user", m)
        store.grant(m, "group", m)
    server = tls.member_front_door(
        tls.KeyPair(*ca.issue_host(ca_dir, DISPATCHER)),
        tls.Trust(ca.ca_certificate(ca_dir), ca.current_crl(ca_dir)),
    )
    slaves = {node.name: FakeSlave(node.name) for node in SITE.nodes}
    links = {h: FakeLink(h, s) for h, s in slaves.items()}
    pool = None
    if mode == "pool":
        pool = EvalPool(reactor, budget=int(budget))
        controller = Controller(
            store, SITE, Coordinator(store, links, reactor), check_source=pool.check
        )
    else:
        from domtool.lang import api

        def inline(member, files, perms, site):
            return api.check_source(files, perms, site, budget=int(budget))

        controller = Controller(
            store, SITE, Coordinator(store, links, reactor), check_source=inline
        )
    svc = service.DispatcherService(Cfg(), controller, server, reactor, eval_pool=pool)
    svc.privilegedStartService()
    svc.startService()
    port = svc.port.getHost().port
    trust = tls.Trust(ca.ca_certificate(ca_dir, ca.HOST))
    alice = tls.member_client(tls.KeyPair(*ca.issue_member(ca_dir, "alice")), trust, DISPATCHER)
    bob = tls.member_client(tls.KeyPair(*ca.issue_member(ca_dir, "bob")), trust, DISPATCHER)

    def bob_file(n: int) -> dict:
        text = f'dom "bob.example" with web "w{n}" with directoryIndex ["index.html"] end end'
        return {"files": [{"name": "bob.example", "text": text}]}

    # Warm up (the pool's workers start and load the library), then bob alone.
    await timed(reactor, port, bob, "check", bob_file(0))
    alone_whoami = [(await timed(reactor, port, bob, "whoami", {}))[0] for _ in range(5)]
    alone_submit = [(await timed(reactor, port, bob, "submit", bob_file(i)))[0] for i in (1, 2)]

    big = {"files": [{"name": "alice.example", "text": worst_case()}]}
    t0 = time.perf_counter()
    # alice: a worst-case check and a worst-case submit (evaluated before the lock).
    alices = [
        defer.ensureDeferred(timed(reactor, port, alice, op, big)) for op in ("check", "submit")
    ]
    # bob starts at once and goes on until alice has both answers: whichever request the
    # reactor takes first, some of bob's are in flight while alice's files evaluate.
    during_whoami, during_submit, submit_answers = [], [], []
    n = 3
    while (not during_whoami or not all(d.called for d in alices)) and len(during_whoami) < 400:
        during_whoami.append((await timed(reactor, port, bob, "whoami", {}))[0])
        if len(during_whoami) % 5 == 0 and len(during_submit) < 4:
            seconds, answer = await timed(reactor, port, bob, "submit", bob_file(n))
            n += 1
            during_submit.append(seconds)
            submit_answers.append(bool(answer and answer.get("result", {}).get("applied")))
    bob_done = time.perf_counter() - t0
    alice_results = await defer.gatherResults(alices)
    alice_seconds = [s for s, _ in alice_results]
    alice_diags = [
        (a or {}).get("result", {}).get("diagnostics", [""])[0][:200] for _, a in alice_results
    ]
    await svc.stopService()
    report = {
        "mode": mode,
        "budget": int(budget),
        "alone": {"whoami": alone_whoami, "submit": alone_submit},
        "during": {"whoami": during_whoami, "submit": during_submit},
        "bob_submits_applied": submit_answers,
        "bob_finished_after": bob_done,
        "alice_check_seconds": alice_seconds,
        "alice_diagnostics": alice_diags,
        "pool_pids_left": [] if pool is None else pool.pids(),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
