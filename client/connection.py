"""A member's (or admin's) blocking connection to the dispatcher, for the command-line tools.

One TLS implementation: the context is ``domtool.net.tls.client_context`` (the one
``member_client`` wraps for Twisted): our certificate out, the host CA as the only trust
root, the dispatcher's DNS subjectAltName checked against the expected name. The socket
is a plain non-blocking TCP socket driven by ``select`` with a deadline, so no reactor is
needed and a command can connect any number of times in one process (tests do).

Frames are ``domtool.wire``'s: a 4-byte big-endian length, then UTF-8 JSON (the framing
of Twisted's ``Int32StringReceiver``). :meth:`Connection.call` sends one request, hands
every progress frame to a callback, and returns the result of the response with the
request's id, or raises :class:`RemoteError` with the dispatcher's kind, message and
details.

Errors a person can act on:

- :class:`Unreachable` (exit status 3): "cannot reach the dispatcher at HOST:PORT: ...",
  for a refused or timed-out connection, a name that does not resolve, a dispatcher whose
  certificate we refuse (and why), or one that refused ours (which certificate, and the
  alert it sent: revoked, expired, unknown CA...).
- :class:`RemoteError` (exit status 1): the dispatcher answered and said no.
"""

from __future__ import annotations

import errno
import itertools
import json
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname

from domtool import protocol, wire
from domtool.client.config import ClientConfig
from domtool.net import tls

__all__ = ["Connection", "RemoteError", "Unreachable", "call", "describe_certificate"]

CONNECT_TIMEOUT = 10.0


class Unreachable(Exception):
    """Nothing reached the dispatcher's logic: the message says why and what to do."""


class RemoteError(Exception):
    """The dispatcher answered with an error frame."""

    def __init__(self, kind: str, message: str, details: list[str] | tuple[str, ...] = ()):
        self.kind = kind
        self.message = message
        self.details = list(details)
        super().__init__(f"{kind}: {message}")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "details": self.details}


def describe_certificate(pem: bytes) -> str:
    """Who a certificate names, its serial and expiry: for error messages."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return "(not a PEM certificate)"
    names = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        pass
    who = names[0] if names else cert.subject.rfc4514_string()
    # not_valid_after_utc is cryptography >= 42; Debian 12 ships 38 (naive UTC not_valid_after).
    until = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after
    return f"{who}, serial {cert.serial_number:x}, valid until {until:%Y-%m-%d}"


# What the dispatcher's alert means for the member (OpenSSL's alert text -> advice).
_ALERTS = {
    "certificate required": "it requires a client certificate and none was sent",
    "certificate revoked": "your certificate has been revoked; ask an admin for a new one",
    "certificate expired": "your certificate has expired; ask an admin for a new one",
    "unknown ca": "your certificate was not issued by this site's member CA",
    "bad certificate": "it does not accept your certificate (not yet valid, or wrong kind)",
    "unsupported certificate": "it does not accept your certificate's kind (a host certificate?)",
    "decrypt error": "your certificate and key do not belong together",
    "protocol version": "it and this client share no TLS version (1.2 or newer needed)",
}


def _ssl_reason(e: Exception) -> str:
    """OpenSSL's reason text from an SSL.Error (the last one), or the exception's text."""
    args = getattr(e, "args", ())
    if args and isinstance(args[0], list) and args[0]:
        last = args[0][-1]
        if isinstance(last, tuple) and len(last) >= 3:
            return str(last[2])
    return str(e) or type(e).__name__


class Connection:
    """One TLS connection to the dispatcher; use as a context manager."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._ids = itertools.count(1)
        self._buffer = b""
        self._server_problem: str | None = None
        self._conn: SSL.Connection | None = None
        self._sock: socket.socket | None = None
        self._cert_pem = b""

    # -- setup -----------------------------------------------------------------

    def _unreachable(self, why: str) -> Unreachable:
        return Unreachable(f"cannot reach the dispatcher at {self.config.address}: {why}")

    def _context(self) -> SSL.Context:
        c = self.config
        try:
            own = tls.KeyPair.from_files(c.certificate, c.key)
        except OSError as e:
            raise Unreachable(
                f"cannot read your certificate or key ({e.filename}: {e.strerror}); "
                f"check [tls] in {c.source}"
            ) from None
        try:
            trust = tls.Trust.from_files(c.ca)
        except OSError as e:
            raise Unreachable(
                f"cannot read the host CA ({e.filename}: {e.strerror}); check [tls] ca in {c.source}"
            ) from None
        self._cert_pem = own.cert_pem
        try:
            ctx = tls.client_context(own, trust, c.name)
        except (ValueError, SSL.Error) as e:
            raise Unreachable(
                f"cannot use your certificate {c.certificate} with key {c.key}: "
                f"{_ssl_reason(e)}; check [tls] in {c.source}"
            ) from None
        verify = ctx.get_verify_mode()

        # Same verdict as tls.client_context's own callback; we only remember why.
        def explain(conn, cert, errno_, depth, ok) -> bool:
            if not ok:
                self._server_problem = (
                    f"its certificate ({cert.to_cryptography().subject.rfc4514_string()}) "
                    f"was refused: {tls.VERIFY_ERRORS.get(errno_, f'X509 error {errno_}')} "
                    f"(is [tls] ca in {c.source} this site's host CA?)"
                )
                return False
            if depth == 0:
                try:
                    verify_certificate_hostname(cert.to_cryptography(), c.name)
                except VerificationError:
                    self._server_problem = (
                        f"its certificate does not name {c.name!r}; check [dispatcher] name "
                        f"in {c.source}"
                    )
                    return False
            return True

        ctx.set_verify(verify, explain)
        return ctx

    def open(self) -> Connection:
        c = self.config
        ctx = self._context()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        try:
            sock = socket.create_connection((c.host, c.port), timeout=CONNECT_TIMEOUT)
        except socket.gaierror as e:
            raise self._unreachable(f"cannot resolve {c.host!r} ({e.strerror})") from None
        except TimeoutError:
            raise self._unreachable(
                f"no answer within {CONNECT_TIMEOUT:g} s (is the address right, a firewall?)"
            ) from None
        except OSError as e:
            hint = (
                " (is the dispatcher running? is the port right?)"
                if e.errno == errno.ECONNREFUSED
                else ""
            )
            raise self._unreachable(f"{e.strerror or e}{hint}") from None
        sock.setblocking(False)
        conn = SSL.Connection(ctx, sock)
        conn.set_tlsext_host_name(c.name.encode("idna"))
        conn.set_connect_state()
        self._sock, self._conn = sock, conn
        try:
            self._io(conn.do_handshake, deadline, "the TLS handshake")
        except Unreachable:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.shutdown()
            except (SSL.Error, OSError):
                pass
        if self._sock is not None:
            self._sock.close()
        self._conn = self._sock = None

    def __enter__(self) -> Connection:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- I/O -------------------------------------------------------------------

    def _io(self, fn: Callable[[], Any], deadline: float, what: str) -> Any:
        """Run a pyOpenSSL call on the non-blocking socket until done or the deadline."""
        assert self._sock is not None
        while True:
            try:
                return fn()
            except SSL.WantReadError:
                wait = ([self._sock], [])
            except SSL.WantWriteError:
                wait = ([], [self._sock])
            except SSL.ZeroReturnError:
                raise self._unreachable("the dispatcher closed the connection") from None
            except SSL.SysCallError as e:
                raise self._unreachable(self._closed_why(e)) from None
            except SSL.Error as e:
                raise self._unreachable(self._tls_why(e)) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._unreachable(f"no answer within the time limit during {what}")
            select.select(wait[0], wait[1], [], remaining)

    def _closed_why(self, e: SSL.SysCallError) -> str:
        if e.args and e.args[0] in (-1, errno.ECONNRESET):
            return (
                "the dispatcher closed the connection without a word (it may have refused "
                f"your certificate: {describe_certificate(self._cert_pem)})"
            )
        return f"connection lost: {e.args[1] if len(e.args) > 1 else e}"

    def _tls_why(self, e: SSL.Error) -> str:
        if self._server_problem:
            return self._server_problem
        reason = _ssl_reason(e)
        for alert, advice in _ALERTS.items():
            if alert in reason:
                return (
                    f"it refused your certificate {self.config.certificate} "
                    f"({describe_certificate(self._cert_pem)}): {advice} [TLS alert: {reason}]"
                )
        return f"TLS failed: {reason}"

    def _send(self, data: bytes, deadline: float) -> None:
        assert self._conn is not None
        view = memoryview(struct.pack(">I", len(data)) + data)
        while view:
            chunk = view[:65536]
            n = self._io(lambda c=chunk: self._conn.send(c), deadline, "sending")
            view = view[n:]

    def _recv_frame(self, deadline: float) -> bytes:
        assert self._conn is not None
        while True:
            if len(self._buffer) >= 4:
                (length,) = struct.unpack(">I", self._buffer[:4])
                if length > wire.MAX_FRAME:
                    raise self._unreachable(f"the dispatcher sent a frame of {length} bytes")
                if len(self._buffer) >= 4 + length:
                    frame = self._buffer[4 : 4 + length]
                    self._buffer = self._buffer[4 + length :]
                    return frame
            chunk = self._io(lambda: self._conn.recv(262144), deadline, "waiting for the answer")
            if not chunk:
                raise self._unreachable("the dispatcher closed the connection")
            self._buffer += chunk

    def call(
        self,
        op: str,
        args: dict[str, Any],
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> Any:
        """Send one request; return its result or raise RemoteError / Unreachable."""
        rid = next(self._ids)
        deadline = time.monotonic() + self.config.timeout
        self._send(wire.request(rid, op, args), deadline)
        while True:
            try:
                msg = wire.decode_response(self._recv_frame(deadline))
            except wire.WireError as e:
                raise self._unreachable(f"the dispatcher sent a malformed frame: {e}") from None
            if "progress" in msg:
                if msg["id"] == rid and on_progress is not None:
                    on_progress(msg["progress"])
                deadline = time.monotonic() + self.config.timeout  # progress is not idleness
                continue
            if msg.get("ok") is True and msg["id"] == rid:
                return msg.get("result")
            if msg.get("ok") is False and msg["id"] in (rid, 0):
                err = msg.get("error") or {}
                raise RemoteError(
                    str(err.get("kind", "failed")),
                    str(err.get("message", "")),
                    [str(d) for d in err.get("details") or []],
                )


def call(
    config: ClientConfig,
    op: str,
    args: dict[str, Any],
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Connect, make one request given as JSON, close: the result, or RemoteError /
    Unreachable (for tools and tests; the CLIs send typed requests with :func:`ask`)."""
    with Connection(config) as conn:
        return conn.call(op, args, on_progress)


def ask(
    config: ClientConfig,
    request: Any,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Connect, send one request object (``domtool.protocol.REQUESTS``' classes, written
    by their encoder), close: the result's JSON, or RemoteError / Unreachable."""
    op, args = protocol.request_of(request)
    return call(config, op, args, on_progress)


def dumps(obj: Any) -> str:
    """JSON for ``--json`` output: stable and readable."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
