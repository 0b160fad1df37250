"""A minimal SMTP server for tests: the "rest of the Internet" Exim's smarthost delivers to.

It accepts every message and records (envelope recipients, data); a recipient whose
local part is ``tempfail`` gets ``451`` so its message stays in Exim's queue. After
``LHLO`` it speaks LMTP (one reply per recipient after the data), standing in for
Mailman's LMTP runner.
"""

from __future__ import annotations

import socketserver
import threading

import attrs


@attrs.define
class Received:
    sender: str
    rcpts: list[str]
    data: bytes


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        sink: SmtpSink = self.server.sink  # type: ignore[attr-defined]
        w = self.wfile.write
        w(b"220 sink ESMTP\r\n")
        sender, rcpts, lmtp = "", [], False
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.strip().decode(errors="replace")
            up = cmd.upper()
            if up.startswith(("EHLO", "HELO", "LHLO")):
                lmtp = up.startswith("LHLO")
                w(b"250 sink\r\n")
            elif up.startswith("MAIL FROM:"):
                sender, rcpts = cmd[10:].strip().strip("<>"), []
                w(b"250 ok\r\n")
            elif up.startswith("RCPT TO:"):
                rcpt = cmd[8:].strip().split()[0].strip("<>")
                if rcpt.lower().startswith("tempfail@"):
                    w(b"451 try later\r\n")
                else:
                    rcpts.append(rcpt)
                    w(b"250 ok\r\n")
            elif up == "DATA":
                w(b"354 go\r\n")
                data = b""
                while True:
                    chunk = self.rfile.readline(65536)
                    if not chunk or chunk == b".\r\n":
                        break
                    data += chunk
                with sink.lock:
                    sink.messages.append(Received(sender, rcpts, data))
                w(b"250 queued\r\n" * (len(rcpts) if lmtp else 1))
            elif up == "QUIT":
                w(b"221 bye\r\n")
                return
            else:
                w(b"250 ok\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@attrs.define
class SmtpSink:
    port: int = 0
    messages: list[Received] = attrs.Factory(list)
    lock: threading.Lock = attrs.Factory(threading.Lock)
    _server: _Server | None = None

    def start(self) -> SmtpSink:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.sink = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def for_rcpt(self, rcpt: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if rcpt.lower() in (r.lower() for r in m.rcpts)]
