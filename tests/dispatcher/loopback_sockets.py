"""Real sockets end to end: the member front door listening on 127.0.0.1 with the real
reactor, and N member clients connecting at once over TCP.

Run as a script (the reactor runs once per process, so tests start it in a subprocess)::

    python loopback_sockets.py STATE_DIR N

It makes a site in STATE_DIR, connects N clients concurrently as alice plus one revoked
client and one client without a certificate, and prints a JSON report: what each kind of
client received, how many were welcomed, and the wall-clock time of the concurrent batch.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from OpenSSL import SSL
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory

sys.path.insert(0, str(Path(__file__).parent))

from loopback import Outcome, RawClient, WhoAmI, member_login  # noqa: E402

from domtool.dispatcher import auth, ca  # noqa: E402
from domtool.dispatcher.store import Store  # noqa: E402
from domtool.net import tls  # noqa: E402

DISPATCHER = "dispatcher.example.coop"


class Collect(Protocol):
    """Collect what the server sends; fire ``done`` with it when a full line arrives (the
    connection stays open) or the connection closes."""

    def __init__(self) -> None:
        self.data = b""
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data
        if self.data.endswith(b"\n") and not self.done.called:
            self.done.callback(self.data)

    def connectionLost(self, reason) -> None:  # noqa: N802
        if not self.done.called:
            self.done.callback(self.data)


async def one(reactor, port: int, creator, keep: list | None = None) -> bytes:
    """Connect, wait for the server's line (or hang-up); close unless ``keep`` collects it."""
    endpoint = wrapClientTLS(creator, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    proto = await endpoint.connect(Factory.forProtocol(Collect))
    data = await proto.done
    if keep is None:
        proto.transport.loseConnection()
    else:
        keep.append(proto)
    return data


async def main(reactor, state_dir: str, n: str) -> None:
    state = Path(state_dir)
    ca_dir = state / "ca"
    ca.init_ca(ca_dir, "example.coop")
    store = Store.open(state)
    store.add_member("alice")
    store.add_member("mallory")
    verify_errors: list[tls.VerifyError] = []
    server = tls.member_front_door(
        tls.KeyPair(*ca.issue_host(ca_dir, DISPATCHER)),
        tls.Trust(ca.ca_certificate(ca_dir), ca.current_crl(ca_dir)),
        verify_errors.append,
    )
    portal = auth.member_portal(store)
    outcomes: list[Outcome] = []

    def build():
        outcome = Outcome()
        outcomes.append(outcome)
        return WhoAmI(member_login(portal), outcome)

    port = reactor.listenTCP(
        0,
        TLSMemoryBIOFactory(server, False, Factory.forProtocol(build)),
        backlog=1024,
        interface="127.0.0.1",
    )
    number = port.getHost().port
    host_trust = tls.Trust(ca.ca_certificate(ca_dir, ca.HOST))
    alice = tls.member_client(
        tls.KeyPair(*ca.issue_member(ca_dir, "alice")), host_trust, DISPATCHER
    )
    mallory = tls.member_client(
        tls.KeyPair(*ca.issue_member(ca_dir, "mallory")), host_trust, DISPATCHER
    )
    ca.revoke(ca_dir, "mallory")
    server.reload_crl(ca.current_crl(ca_dir))

    start = time.perf_counter()
    held: list[Collect] = []
    answers = await defer.gatherResults(
        [defer.ensureDeferred(one(reactor, number, alice, held)) for _ in range(int(n))]
    )
    elapsed = time.perf_counter() - start
    # Every one of the n connections is open at this point.
    open_at_once = sum(1 for p in held if p.transport.connected)
    for p in held:
        p.transport.loseConnection()
    revoked = await one(reactor, number, mallory)
    anonymous = await one(reactor, number, RawClient(SSL.Context(SSL.TLS_METHOD)))
    await port.stopListening()
    report = {
        "concurrent": int(n),
        "welcomed": sum(1 for a in answers if a == b"alice\n"),
        "open_at_once": open_at_once,
        "seconds": round(elapsed, 3),
        "revoked": revoked.decode(),
        "anonymous": anonymous.decode(),
        "server_logins": sum(1 for o in outcomes if o.avatar is not None),
        "verify_errors": [e.code for e in verify_errors],
        "server_lost": sorted({o.server_lost for o in outcomes if o.server_lost}),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
