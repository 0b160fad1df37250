"""The real dispatcher service over real loopback TCP with the real reactor: N members
connected at once, each logged in and answered over the wire protocol while all are open.

Run as a script (the reactor runs once per process, so the test starts it in a
subprocess)::

    python dispatcher_sockets.py STATE_DIR N

It makes a site in STATE_DIR, starts ``DispatcherService`` (bound by
``privilegedStartService`` with its backlog, on 127.0.0.1 port 0) over in-memory slaves,
connects N alice clients concurrently, has each ask ``whoami`` and keeps every
connection open until all have answered; then alice submits a file; it prints a JSON
report.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import attrs
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory
from twisted.protocols.basic import Int32StringReceiver

from domtool import wire
from domtool.dispatcher import ca, service
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.controller import Controller
from domtool.dispatcher.store import Store
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.model import Node, Site
from domtool.net import tls

DISPATCHER = "dispatcher.example.coop"
SITE = Site(nodes=(Node("ns1", ("dns",)), Node("web1", ("web", "mail"))))


class Client(Int32StringReceiver):
    """Send one request when connected; fire ``done`` with the first final answer."""

    MAX_LENGTH = wire.MAX_FRAME

    def __init__(self, op: str, args: dict) -> None:
        self.op, self.args = op, args
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:  # noqa: N802
        self.sendString(wire.request(1, self.op, self.args))

    def stringReceived(self, frame: bytes) -> None:  # noqa: N802
        obj = wire.decode_response(frame)
        if "progress" not in obj and not self.done.called:
            self.done.callback(obj)

    def connectionLost(self, reason) -> None:  # noqa: N802
        if not self.done.called:
            self.done.callback(None)


@attrs.frozen
class Cfg:
    listen_port: int = 0
    listen_address: str = "127.0.0.1"
    handshake_timeout: float = 30.0
    idle_timeout: float = 600.0
    member_crl: str = "/nonexistent"


async def ask(reactor, port: int, creator, op: str, args: dict, held: list) -> dict | None:
    endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    proto = await endpoint.connect(Factory.forProtocol(lambda: Client(op, args)))
    answer = await proto.done
    held.append(proto)
    return answer


async def main(reactor, state_dir: str, n: str) -> None:
    state = Path(state_dir)
    ca_dir = state / "ca"
    ca.init_ca(ca_dir, "example.coop")
    store = Store.open(state)
    store.add_member("alice")
    for cls, value in (("domain", "example.org"), ("path", "/home/alice")):
        store.grant("alice", cls, value)
    store.grant("alice", "user", "alice")
    store.grant("alice", "group", "alice")
    server = tls.member_front_door(
        tls.KeyPair(*ca.issue_host(ca_dir, DISPATCHER)),
        tls.Trust(ca.ca_certificate(ca_dir), ca.current_crl(ca_dir)),
    )
    slaves = {node.name: FakeSlave(node.name) for node in SITE.nodes}
    links = {h: FakeLink(h, s) for h, s in slaves.items()}
    controller = Controller(store, SITE, Coordinator(store, links, reactor))
    svc = service.DispatcherService(Cfg(), controller, server, reactor)
    svc.privilegedStartService()
    svc.startService()
    port = svc.port.getHost().port
    alice = tls.member_client(
        tls.KeyPair(*ca.issue_member(ca_dir, "alice")),
        tls.Trust(ca.ca_certificate(ca_dir, ca.HOST)),
        DISPATCHER,
    )
    start = time.perf_counter()
    held: list[Client] = []
    answers = await defer.gatherResults(
        [defer.ensureDeferred(ask(reactor, port, alice, "whoami", {}, held)) for _ in range(int(n))]
    )
    elapsed = time.perf_counter() - start
    open_at_once = sum(1 for p in held if p.transport.connected)
    for p in held:
        p.transport.loseConnection()
    files = [{"name": "example.org", "text": 'dom "example.org" with end;'}]
    submitted = await ask(reactor, port, alice, "submit", {"files": files}, [])
    await svc.stopService()
    report = {
        "concurrent": int(n),
        "answered": sum(
            1 for a in answers if a and a.get("result") == {"user": "alice", "admin": False}
        ),
        "open_at_once": open_at_once,
        "seconds": round(elapsed, 3),
        "submit": submitted,
        "generations": {h: s.generation for h, s in slaves.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
