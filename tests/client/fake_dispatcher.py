"""A small stand-in dispatcher for the client's tests: a real mutual-TLS listener on
loopback (``net.tls.member_front_door``'s context: member CA pinned, CRL checked,
client certificate required) in a thread, speaking ``domtool.wire`` frames, answering
each op from a table of Python functions.

It exists so the client's connection, error messages and rendering are tested over real
TLS without the full dispatcher service; the quickstart test runs the real one.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from OpenSSL import SSL

from domtool import identity, wire
from domtool.client import config as client_config
from domtool.dispatcher import ca
from domtool.net import tls

DISPATCHER = "dispatcher.example.coop"


class Refuse(Exception):
    """Raised by a handler: answer with an error frame of this kind."""

    def __init__(self, kind: str, message: str, details: tuple[str, ...] = ()):
        super().__init__(message)
        self.failure = wire.Failure(kind, message, details)


Handler = Callable[[str, dict, Callable[[int, int, str], None]], Any]


@attrs.define
class FakeDispatcher:
    """Listens on 127.0.0.1:port; ``handlers[op](member, args, progress)`` answers."""

    ca_dir: Path
    handlers: dict[str, Handler]
    members: set[str]
    port: int = 0
    requests: list = attrs.field(factory=list)
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: bool = False
    _ctx: SSL.Context | None = None

    def start(self) -> FakeDispatcher:
        own = tls.KeyPair(*ca.issue_host(self.ca_dir, DISPATCHER))
        trust = tls.Trust(
            ca.ca_certificate(self.ca_dir, ca.MEMBER), ca.current_crl(self.ca_dir, ca.MEMBER)
        )
        self._ctx = tls.server_context(own, trust)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        while not self._stop:
            try:
                raw, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)  # pyOpenSSL wants a blocking socket
            try:
                self._one(raw)
            except (SSL.Error, OSError):
                pass
            finally:
                _drain(raw)  # an alert or refusal was sent: close cleanly so the client reads it
                raw.close()

    def _one(self, raw: socket.socket) -> None:
        conn = SSL.Connection(self._ctx, raw)
        conn.set_accept_state()
        conn.do_handshake()
        cert = conn.get_peer_certificate(as_cryptography=True)
        principal = identity.principal_of(cert)
        if principal.kind != "member" or principal.name not in self.members:
            send(conn, wire.error(0, wire.Failure("unauthorized", f"{principal.name} is unknown")))
            conn.shutdown()
            return
        buf = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except (SSL.ZeroReturnError, SSL.SysCallError):
                return
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                frame, buf = buf[4 : 4 + n], buf[4 + n :]
                req = wire.decode_request(frame, wire.MEMBER_OPS | wire.ADMIN_OPS)
                self.requests.append((principal.name, req.op, req.args))

                def progress(done: int, total: int, what: str, rid=req.id) -> None:
                    send(conn, wire.progress(rid, done, total, what))

                try:
                    handler = self.handlers[req.op]
                    send(conn, wire.ok(req.id, handler(principal.name, req.args, progress)))
                except Refuse as e:
                    send(conn, wire.error(req.id, e.failure))
                except KeyError:
                    send(conn, wire.error(req.id, wire.Failure("bad_request", "no such op")))


def _drain(raw: socket.socket) -> None:
    try:
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(1)
        while raw.recv(65536):
            pass
    except OSError:
        pass


def send(conn: SSL.Connection, frame: bytes) -> None:
    conn.sendall(struct.pack(">I", len(frame)) + frame)


def member_config(ca_dir: Path, out: Path, user: str, port: int, **kw) -> Path:
    """Issue ``user`` a certificate and write a client.toml for 127.0.0.1:port."""
    out.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue_member(ca_dir, user)
    (out / f"{user}.pem").write_bytes(cert)
    (out / f"{user}.key").write_bytes(key)
    (out / "host-ca.pem").write_bytes(ca.ca_certificate(ca_dir, ca.HOST))
    path = out / "client.toml"
    path.write_text(
        client_config.dump(
            kw.get("address", f"127.0.0.1:{port}"),
            kw.get("name", DISPATCHER),
            f"{user}.pem",
            f"{user}.key",
            "host-ca.pem",
        )
    )
    return path
