"""What the dispatcher's member listener and the slave's listener share: one authenticated,
framed connection behind mutual TLS, its factory, the listening TLS factory, and the
listener service that watches its CRL and key pair (``tlswatch.CrlWatch``,
``tlswatch.KeyPairWatch``).

:class:`AuthenticatedFrameProtocol` (``Int32StringReceiver``, ``MAX_LENGTH =
wire.MAX_FRAME``): after the TLS handshake it logs the peer in (:meth:`login`, through a
cred portal); a refused peer gets one ``unauthorized`` error frame and the connection is
closed. Frames that arrive before a successful login are ignored (with TLS 1.3 a client
may write before the server has judged its certificate); after it, each frame resets the
idle timer and goes to :meth:`frame_received` with the avatar. A handshake and login that
take longer than ``handshake_timeout`` are aborted; a connection idle for
``idle_timeout`` with no request in flight is closed. :meth:`respond` answers a request
from a Deferred: its result as an ``ok`` frame, an expected error (``known_errors``) as
the error frame :meth:`known_failure` makes of it, anything else as
``internal_failure``.

Subclasses: ``dispatcher.service.MemberProtocol`` and ``slave.service.SlaveProtocol``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar

from twisted.application import service
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from domtool import wire
from domtool.net import tls
from domtool.net.tlswatch import CRL_POLL, CrlWatch, KeyPairWatch

__all__ = [
    "CRL_POLL",
    "AuthenticatedFrameProtocol",
    "CrlWatch",
    "ListenerService",
    "SessionFactory",
    "request_id",
    "serve",
    "tls_factory",
]


def request_id(frame: bytes) -> int:
    """The id of a frame that failed to decode, if it has a usable one; else 0."""
    try:
        rid = json.loads(frame.decode("utf-8")).get("id")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return 0
    if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**53:
        return rid
    return 0


@implementer(IHandshakeListener)
class AuthenticatedFrameProtocol(Int32StringReceiver):
    """One connection: log in after the handshake, then hand each frame to
    :meth:`frame_received`. Subclasses implement :meth:`login`, :meth:`frame_received` and
    :meth:`known_failure`, and set ``known_errors`` and ``internal_failure``."""

    MAX_LENGTH = wire.MAX_FRAME

    log = Logger()  # namespaced by the subclass
    peer_noun: ClassVar[str] = "peer"  # "refused a <peer_noun>: why"
    log_sessions: ClassVar[bool] = False  # log logins and timeouts at info level
    known_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    internal_failure: ClassVar[wire.Failure] = wire.Failure("failed", "internal error")
    login_fault: ClassVar[str] = "internal error (see the server's log)"

    def __init__(self, factory: SessionFactory) -> None:
        self.factory = factory
        self.avatar: Any = None
        self._timer: IDelayedCall | None = None
        self._inflight = 0
        self._closed = False

    # -- hooks -----------------------------------------------------------------

    def login(self, certificate: Any) -> defer.Deferred:
        """The avatar for the peer's certificate; fails with ``UnauthorizedLogin``."""
        raise NotImplementedError

    def frame_received(self, avatar: Any, frame: bytes) -> None:
        """One frame from the logged-in ``avatar``."""
        raise NotImplementedError

    def known_failure(self, error: BaseException) -> wire.Failure:
        """The error frame's failure for an instance of ``known_errors``."""
        raise NotImplementedError

    # -- connection life -------------------------------------------------------

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self._timer = self.factory.clock.callLater(
            self.factory.handshake_timeout, self._timed_out, "handshake and login"
        )

    def handshakeCompleted(self) -> None:  # noqa: N802 (Twisted API)
        certificate = tls.peer_certificate(self.transport)
        d = defer.ensureDeferred(self.login(certificate))
        d.addCallbacks(self._welcome, self._refuse)
        d.addErrback(self._login_broke)

    def _welcome(self, avatar: Any) -> None:
        if self._closed:
            return
        self.avatar = avatar
        if self.log_sessions:
            self.log.info("{host} logged in", host=avatar.name)
        self._idle()

    def _refuse(self, failure) -> None:
        failure.trap(UnauthorizedLogin)
        self.log.warn("refused a {noun}: {why}", noun=self.peer_noun, why=str(failure.value))
        self.send_error(0, wire.Failure("unauthorized", str(failure.value)))
        self.transport.loseConnection()

    def _login_broke(self, failure) -> None:
        # Not a refusal but a fault (the store unreadable...): say so at once and close,
        # rather than leave the peer waiting for the handshake timeout.
        self.log.failure("the login failed", failure)
        self.send_error(0, wire.Failure("unauthorized", "the login failed: " + self.login_fault))
        self.transport.loseConnection()

    def _idle(self) -> None:
        self._cancel_timer()
        self._timer = self.factory.clock.callLater(
            self.factory.idle_timeout, self._timed_out, "idle"
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self, what: str) -> None:
        self._timer = None
        if what == "idle" and self._inflight:
            self._idle()  # a long request is not idleness
            return
        if self.log_sessions:
            self.log.info("closing a connection: {what} timeout", what=what)
        if what == "idle":
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:  # noqa: N802 (Twisted API)
        self._closed = True
        self._cancel_timer()

    # -- frames ------------------------------------------------------------------

    def stringReceived(self, frame: bytes) -> None:  # noqa: N802 (Twisted API)
        if self.avatar is None:
            return  # nothing is acted on before a successful login
        self._idle()
        self.frame_received(self.avatar, frame)

    def lengthLimitExceeded(self, length: int) -> None:  # noqa: N802 (Twisted API)
        if self.avatar is not None:
            self.send_error(
                0, wire.Failure("bad_request", f"frame of {length} bytes exceeds {wire.MAX_FRAME}")
            )
        self.transport.loseConnection()

    def respond(self, rid: int, d: defer.Deferred) -> None:
        """Answer request ``rid`` when ``d`` fires; the connection is not idle meanwhile."""
        self._inflight += 1
        d.addCallbacks(self._answer, self._failed, (rid,), None, (rid,))
        d.addErrback(self._internal, rid)
        d.addBoth(self._done)

    def _done(self, _: Any) -> None:
        self._inflight -= 1

    def _answer(self, result: Any, rid: int) -> None:
        try:
            frame = wire.ok(rid, result)
        except wire.WireError as e:
            frame = wire.error(rid, wire.Failure("failed", str(e)))
        self.send(frame)

    def _failed(self, failure, rid: int) -> None:
        failure.trap(*self.known_errors)
        self.send_error(rid, self.known_failure(failure.value))

    def _internal(self, failure, rid: int) -> None:
        self.log.failure("request {rid} failed", failure, rid=rid)
        self.send_error(rid, self.internal_failure)

    def send_error(self, rid: int, failure: wire.Failure) -> None:
        self.send(wire.error(rid, failure))

    def send(self, frame: bytes) -> None:
        """Send one frame, unless the connection is gone."""
        if not self._closed:
            self.sendString(frame)


class SessionFactory(Factory):
    """Builds ``protocol(self)`` for each connection; the protocols share the portal, the
    clock and the timeouts."""

    protocol: ClassVar[type[AuthenticatedFrameProtocol]]

    def __init__(
        self,
        portal: Portal,
        clock: IReactorTime,
        *,
        handshake_timeout: float = 30.0,
        idle_timeout: float = 600.0,
    ) -> None:
        self.portal = portal
        self.clock = clock
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout

    def buildProtocol(self, addr) -> AuthenticatedFrameProtocol:  # noqa: N802 (Twisted API)
        return self.protocol(self)


def tls_factory(
    server_tls: tls.ServerTLS, factory: Factory, clock: IReactorTime | None = None
) -> TLSMemoryBIOFactory:
    """The listening factory: ``factory`` behind the server side of ``server_tls``."""
    return tls.memory_bio_factory(server_tls, False, factory, clock)


def serve(
    prog: str, make_service: Callable[[Any], Any], errors: tuple[type[Exception], ...]
) -> int:
    """The rest of a ``main``: build the service with the global reactor (one of
    ``errors`` -> exit 2), log to stderr, bind (cannot -> exit 1), run until stopped."""
    from twisted.internet import reactor

    try:
        svc = make_service(reactor)
    except errors as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    try:
        svc.privilegedStartService()
    except Exception as e:  # cannot bind: say so and stop
        print(f"{prog}: cannot listen: {e}", file=sys.stderr)
        return 1
    reactor.callWhenRunning(svc.startService)
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    reactor.run()
    return 0


class ListenerService(service.Service):
    """Listens on ``config.listen_address``/``listen_port`` with :meth:`listen_factory`
    behind ``server_tls`` (bound in ``privilegedStartService``), and reloads the CRL file
    at ``crl_path`` when it changes while running."""

    backlog: ClassVar[int] = 50

    def __init__(
        self, config: Any, server_tls: tls.ServerTLS, reactor: Any, crl_path: str | os.PathLike
    ) -> None:
        self.config = config
        self.server_tls = server_tls
        self.reactor = reactor
        self.port: Any = None
        poll = getattr(config, "tls_poll", CRL_POLL)
        self.crl = CrlWatch(crl_path, server_tls, reactor, poll)
        # A renewed certificate of this host (domtool-admin ca renew) is picked up too.
        self.own = KeyPairWatch(
            getattr(config, "certificate", ""),
            getattr(config, "key", ""),
            self.reload_own,
            reactor,
            poll,
        )

    def reload_own(self, own: tls.KeyPair) -> None:
        """Use this host's renewed certificate and key (``tlswatch.KeyPairWatch``)."""
        self.server_tls.reload_own(own)

    def listen_factory(self) -> Factory:
        """The factory of the connections this service accepts."""
        raise NotImplementedError

    def timeouts(self) -> dict[str, float]:
        """The configured connection timeouts, as :class:`SessionFactory` takes them."""
        return {
            "handshake_timeout": self.config.handshake_timeout,
            "idle_timeout": self.config.idle_timeout,
        }

    def privilegedStartService(self) -> None:  # noqa: N802 (Twisted API)
        """Bind the listening port (may need privileges the service later does without)."""
        super().privilegedStartService()
        if self.port is None:
            self.port = self.reactor.listenTCP(
                self.config.listen_port,
                tls_factory(self.server_tls, self.listen_factory()),
                backlog=self.backlog,
                interface=self.config.listen_address,
            )

    def startService(self) -> None:  # noqa: N802 (Twisted API)
        if self.port is None:
            self.privilegedStartService()
        super().startService()
        self.crl.start()
        self.own.start()

    def stopService(self) -> defer.Deferred | None:  # noqa: N802 (Twisted API)
        super().stopService()
        self.crl.stop()
        self.own.stop()
        port, self.port = self.port, None
        if port is not None:
            return defer.maybeDeferred(port.stopListening)
        return None

    def check_crl(self) -> bool:
        """Reload the CRL file if it changed; True when a new CRL is in force."""
        return self.crl.check()
