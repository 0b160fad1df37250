"""Real TLS handshakes in memory: a dispatcher-side server and a member-side client joined by
twisted's iosim, with a trivial protocol that writes the authenticated member's name.

Nothing is mocked: both ends are pyOpenSSL connections driven through
``TLSMemoryBIOProtocol`` exactly as over a socket; only the bytes travel through memory.
"""

from __future__ import annotations

import attrs
from OpenSSL import SSL
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from zope.interface import implementer

from domtool.dispatcher.auth import login_member
from domtool.net.cred import login_host
from domtool.net.tls import peer_certificate


@attrs.define
class Outcome:
    """What each side saw of one connection."""

    received: bytes = b""
    avatar: object = None
    refusal: str | None = None
    server_lost: str | None = None
    client_lost: str | None = None


@implementer(IHandshakeListener)
class WhoAmI(Protocol):
    """Server side: after the handshake, log in with the peer certificate and write the
    member's name, or hang up."""

    def __init__(self, login, outcome: Outcome) -> None:
        self.login = login
        self.outcome = outcome

    def handshakeCompleted(self) -> None:  # noqa: N802 (Twisted API)
        d = defer.ensureDeferred(self.login(peer_certificate(self.transport)))
        d.addCallbacks(self._welcome, self._refuse)

    def _welcome(self, member) -> None:
        self.outcome.avatar = member
        self.transport.write(member.name.encode() + b"\n")

    def _refuse(self, failure) -> None:
        failure.trap(UnauthorizedLogin)
        self.outcome.refusal = str(failure.value)
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:  # noqa: N802 (Twisted API)
        self.outcome.server_lost = str(reason.value)


class Listener(Protocol):
    """Client side: collect what the server writes."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.outcome.received += data

    def connectionLost(self, reason) -> None:  # noqa: N802 (Twisted API)
        self.outcome.client_lost = str(reason.value)


def member_login(portal):
    """The login a dispatcher's member listener does (``auth.login_member``)."""
    return lambda certificate: login_member(portal, certificate)


def host_login(portal):
    """The login a slave's listener does (``cred.login_host``)."""
    return lambda certificate: login_host(portal, certificate)


def connect(server_tls, client_tls, login) -> Outcome:
    """Handshake ``client_tls`` against ``server_tls`` in memory and report what happened.

    ``login(certificate)`` is awaited after the server's handshake (see member_login)."""
    outcome = Outcome()
    # TLS transports aggregate small writes with clock.callLater(0): the pump's clock runs them.
    clock = Clock()
    server_factory = TLSMemoryBIOFactory(
        server_tls, False, Factory.forProtocol(lambda: WhoAmI(login, outcome)), clock
    )
    client_factory = TLSMemoryBIOFactory(
        client_tls, True, Factory.forProtocol(lambda: Listener(outcome)), clock
    )
    client, server, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: client_factory.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    pump.flush()
    return outcome


@implementer(IOpenSSLClientConnectionCreator)
class RawClient:
    """A client built straight from a pyOpenSSL context: what a hostile or outdated client
    can do (no certificate, old TLS versions) without going through ``tls.ClientTLS``."""

    def __init__(self, context: SSL.Context) -> None:
        self.context = context
        self.session: SSL.Session | None = None  # offered for resumption if set
        self.last: SSL.Connection | None = None

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:  # noqa: N802
        conn = SSL.Connection(self.context, None)
        if self.session is not None:
            conn.set_session(self.session)
        conn.set_connect_state()
        self.last = conn
        return conn


@implementer(IOpenSSLServerConnectionCreator)
class RawServer:
    """A server built straight from a pyOpenSSL context (to show what a misconfigured one does)."""

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:  # noqa: N802
        return SSL.Connection(self.context, None)
