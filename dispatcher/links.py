"""Links from the dispatcher to its slaves.

A :class:`SlaveLink` is anything with ``host`` and ``call(op, args) -> Deferred[result]``:
the coordinator (``apply.py``) and the controller only use that. It fails with
:class:`LinkError` when the slave cannot be reached (or the connection is lost before
the answer), and with :class:`RemoteError` when the slave answered with an error frame.

:class:`TLSLink` is the real one: a mutual-TLS connection (``tls.slave_client``: the
dispatcher's host certificate out, the host CA pinned, the slave's name checked), frames
of ``domtool.wire``, requests pipelined by id. It connects on first use and after a loss;
a failed connection attempt is retried with exponential backoff (``retry_initial``
doubling, ``attempts`` times) on the injected clock before the call fails, and each call
has a timeout. In-memory links for tests live in ``domtool.dispatcher.testing`` (and ``tests/agent_link.py``).
"""

from __future__ import annotations

import itertools
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

from domtool import wire
from domtool.net import tls

log = Logger()


class LinkError(Exception):
    """The slave could not be reached, or the connection was lost before it answered."""


class RemoteError(Exception):
    """The slave answered with an error (``kind``, ``message``, ``details``)."""

    def __init__(self, kind: str, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = tuple(details)


class SlaveLink(Protocol):
    """What the dispatcher needs of a connection to one slave."""

    host: str

    def call(self, op: str, args: dict[str, Any]) -> defer.Deferred: ...


class _LinkProtocol(Int32StringReceiver):
    """Client side of one slave connection: send requests, match answers by id."""

    MAX_LENGTH = wire.MAX_FRAME

    def __init__(self, link: TLSLink) -> None:
        self.link = link
        self.waiting: dict[int, defer.Deferred] = {}
        self.ready: defer.Deferred = defer.Deferred()
        self.lost = False

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        if not self.ready.called:
            self.ready.callback(self)

    def stringReceived(self, frame: bytes) -> None:  # noqa: N802 (Twisted API)
        try:
            obj = wire.decode_response(frame)
        except wire.WireError as e:
            log.warn("{host} sent a bad frame: {e}", host=self.link.host, e=e)
            return
        d = self.waiting.pop(obj["id"], None)
        if d is None:
            if obj.get("ok") is False:  # e.g. the slave refused our login (id 0)
                self._fail_all(LinkError(str(obj.get("error", {}).get("message", "refused"))))
            return
        if "progress" in obj:
            self.waiting[obj["id"]] = d
            return
        if obj.get("ok"):
            d.callback(obj.get("result"))
        else:
            err = obj.get("error") or {}
            d.errback(
                RemoteError(
                    str(err.get("kind", "failed")),
                    str(err.get("message", "")),
                    tuple(str(x) for x in err.get("details") or ()),
                )
            )

    def _fail_all(self, error: Exception) -> None:
        waiting, self.waiting = self.waiting, {}
        for d in waiting.values():
            d.errback(error)

    def connectionLost(self, reason) -> None:  # noqa: N802 (Twisted API)
        self.lost = True
        self.link._lost(self)
        self._fail_all(LinkError(f"connection to {self.link.host} lost: {reason.value}"))


class TLSLink:
    """A mutual-TLS link to one slave. ``endpoint`` is a client endpoint to the slave's
    address (plain TCP: TLS is layered here, with ``client_tls`` = ``tls.slave_client``)."""

    def __init__(
        self,
        host: str,
        endpoint: Any,
        client_tls: Any,
        clock: IReactorTime,
        *,
        timeout: float = 120.0,
        attempts: int = 3,
        retry_initial: float = 0.5,
    ) -> None:
        self.host = host
        self.endpoint = endpoint
        self.client_tls = client_tls
        self.clock = clock
        self.timeout = timeout
        self.attempts = attempts
        self.retry_initial = retry_initial
        self._proto: _LinkProtocol | None = None
        self._ids = itertools.count(1)

    def _lost(self, proto: _LinkProtocol) -> None:
        if self._proto is proto:
            self._proto = None

    async def _connect(self) -> _LinkProtocol:
        if self._proto is not None and not self._proto.lost:
            return self._proto
        delay = self.retry_initial
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                await _sleep(self.clock, delay)
                delay *= 2
            proto = _LinkProtocol(self)
            factory = tls.memory_bio_factory(
                self.client_tls, True, Factory.forProtocol(lambda p=proto: p), self.clock
            )
            try:
                await self.endpoint.connect(factory)
                await proto.ready
            except Exception as e:  # connection refused, DNS, TLS...
                last = e
                continue
            self._proto = proto
            return proto
        raise LinkError(f"cannot connect to {self.host}: {last}")

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        proto = await self._connect()
        trust = getattr(self.client_tls, "trust", None)
        if trust is not None:  # the current host CRL, also for a link opened before it
            from domtool.net.revocation import link_refusal

            why = link_refusal(tls.peer_certificate(proto.transport), trust.crl_pem)
            if why is not None:
                self._proto = None
                proto.transport.abortConnection()
                raise LinkError(f"{self.host}: {why}")
        rid = next(self._ids)
        d: defer.Deferred = defer.Deferred()
        proto.waiting[rid] = d
        proto.sendString(wire.request(rid, op, args))
        d.addTimeout(self.timeout, self.clock)
        try:
            return await d
        except defer.TimeoutError:
            proto.waiting.pop(rid, None)
            raise LinkError(f"{self.host} did not answer {op} within {self.timeout} s") from None

    def call(self, op: str, args: dict[str, Any]) -> defer.Deferred:
        """Deferred[result] of ``op`` on the slave (LinkError / RemoteError on failure)."""
        return defer.ensureDeferred(self._call(op, args))


def _sleep(clock: IReactorTime, seconds: float) -> defer.Deferred:
    d: defer.Deferred = defer.Deferred()
    clock.callLater(seconds, d.callback, None)
    return d
