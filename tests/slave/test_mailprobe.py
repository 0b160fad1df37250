"""The grouped SMTP probe (``mailprobe.smtp_probe_many``) against a small in-process SMTP
server that, like Exim with its default ``smtp_accept_max_nonmail``, closes a session
after 10 EXPN: many probes share a session, a closed session is followed by another for
the rest, each answer is what the probe alone says, and a daemon that does not answer
fails every probe, each naming its address."""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from domtool.slave.mailprobe import smtp_probe, smtp_probe_many


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        with server.lock:
            server.sessions += 1
        w = self.wfile.write
        w(b"220 fake ESMTP\r\n")
        nonmail = 0
        while True:
            line = self.rfile.readline(4096)
            if not line:
                return
            cmd = line.strip().decode()
            up = cmd.upper()
            if up.startswith("EHLO"):
                w(b"250 fake\r\n")
            elif up.startswith("EXPN"):
                nonmail += 1
                if nonmail > server.max_nonmail:
                    w(b"421 too many non-mail commands\r\n")
                    return
                rcpt = cmd[5:].strip()
                if rcpt.startswith("drop"):
                    w(b"250 <" + rcpt.encode() + b"> is discarded\r\n")
                else:
                    w(b"250 <target-of-" + rcpt.encode() + b">\r\n")
            elif up.startswith("MAIL"):
                w(b"250 OK\r\n")
            elif up.startswith("RCPT"):
                rcpt = cmd[8:].strip().strip("<>")
                w(b"550 unknown user\r\n" if rcpt.startswith("nobody") else b"250 Accepted\r\n")
            elif up.startswith("RSET"):
                w(b"250 Reset OK\r\n")
            elif up.startswith("QUIT"):
                w(b"221 bye\r\n")
                return
            else:
                w(b"500 what\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def smtp():
    server = _Server(("127.0.0.1", 0), _Handler)
    server.lock = threading.Lock()
    server.sessions = 0
    server.max_nonmail = 10
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def asks(n: int):
    out = []
    for i in range(n):
        out += [
            ("expn", f"info@d{i}.example", (f"target-of-info@d{i}.example",)),
            ("expn", f"drop@d{i}.example", ()),
            ("refused", f"nobody@d{i}.example", ()),
            ("accepted", f"someone@d{i}.example", ()),
        ]
    return out


def test_many_probes_share_sessions_and_answer_as_alone(smtp):
    port = smtp.server_address[1]
    todo = asks(10) + [
        ("expn", "info@bad.example", ("else@where.example",)),
        ("refused", "someone@bad.example", ()),
        ("accepted", "nobody@bad.example", ()),
    ]
    grouped = smtp_probe_many("127.0.0.1", port, todo, timeout=5)
    sessions = smtp.sessions
    assert sessions == 3  # 21 EXPN, 10 a session: two more sessions
    alone = [smtp_probe("127.0.0.1", port, *ask, timeout=5) for ask in todo]
    assert grouped == alone
    assert grouped[:40] == [True] * 40
    expn, refused, accepted = grouped[40:]
    assert "info@bad.example" in expn and "routes to" in expn
    assert "someone@bad.example" in refused and "expected a refusal" in refused
    assert "nobody@bad.example" in accepted and "expected acceptance" in accepted
    smtp.max_nonmail = 1000
    smtp.sessions = 0
    assert smtp_probe_many("127.0.0.1", port, todo, timeout=5) == grouped
    assert smtp.sessions == 1


def test_a_daemon_that_does_not_answer_fails_every_probe_by_name():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    answers = smtp_probe_many("127.0.0.1", port, asks(2), timeout=2)
    assert len(answers) == 8
    for (mode, rcpt, _), answer in zip(asks(2), answers, strict=True):
        assert isinstance(answer, str) and f"smtp {mode} {rcpt} at 127.0.0.1:{port}" in answer
    bad = smtp_probe_many("127.0.0.1", port, [("expn", "a b@c", ()), ("nope", "x@y", ())])
    assert all(a.endswith("bad probe") for a in bad)
