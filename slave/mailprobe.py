"""The SMTP probe: ask the running Exim on loopback how it now treats one address.

Target ``(address, port, mode, rcpt, expected)``:

- ``"expn"``: ``EXPN rcpt`` must answer 250 and name exactly ``expected`` (the alias's
  targets, in any order), or say "is discarded" when ``expected`` is empty (a drop);
- ``"refused"``: ``RCPT TO:<rcpt>`` must be refused with a 5xx code (an unknown user);
- ``"accepted"``: ``RCPT TO:<rcpt>`` must be accepted (a default or catch-all rule).

Standard library ``smtplib`` only; no DNS; the session ends with RSET and QUIT so nothing
is ever sent. :func:`smtp_probe_many` asks many probes of one daemon in one session (the
prober groups a round's SMTP probes so: one connection and one Exim process for up to
:data:`SESSION_MAX` probes, not one each).
"""

from __future__ import annotations

import re
import smtplib

_ADDR = re.compile(r"<([^<>\s]+)>")


def _quit(s: smtplib.SMTP) -> None:
    """QUIT without waiting for Exim's reply (it lingers ~200 ms before closing)."""
    try:
        if s.sock is not None:
            s.send(b"QUIT\r\n")
    except (OSError, smtplib.SMTPException):
        pass
    s.close()


# At most this many probes share one SMTP session (Exim accepts 1,000 MAIL commands per
# connection by default, smtp_accept_max_per_connection; each RCPT probe is one).
SESSION_MAX = 200


def smtp_probe(address: str, port: int, mode: str, rcpt: str, expected, timeout: float = 5.0):
    """True, or why the running daemon does not do what the config says."""
    return smtp_probe_many(address, port, [(mode, rcpt, expected)], timeout)[0]


def smtp_probe_many(address: str, port: int, asks, timeout: float = 5.0) -> list:
    """Many probes ``(mode, rcpt, expected)`` of one daemon in one SMTP session (one
    connection, one Exim process): each answer True or why not, in order, as
    :func:`smtp_probe` would give it alone. Each RCPT probe is its own transaction
    (``MAIL FROM:<>``, ``RCPT TO``, ``RSET``), so one probe's spam policy or refusal never
    bears on the next. If the session breaks, the probes not yet answered say so."""
    asks = list(asks)
    answers: list = [None] * len(asks)
    todo = []
    for i, (mode, rcpt, _expected) in enumerate(asks):
        if any(c in rcpt for c in "\r\n <>") or mode not in ("expn", "refused", "accepted"):
            answers[i] = f"smtp {mode} {rcpt} at {address}:{port}: bad probe"
        else:
            todo.append(i)
    if not todo:
        return answers
    while todo:
        done = _session(address, port, asks, todo, answers, timeout)
        if not done:  # not even one answer: the session itself fails; say so for each
            break
        todo = todo[done:]
    return answers


def _session(address: str, port: int, asks, todo: list[int], answers: list, timeout: float) -> int:
    """Ask ``todo`` in one session; how many were answered. When the daemon closes the
    session after some answers (a site config from before ``smtp_accept_max_nonmail_hosts``
    exempted loopback: Exim allows 10 EXPN a session), the caller opens another for the
    rest; any other failure answers every probe left with it."""
    s = smtplib.SMTP(timeout=timeout)
    done = 0
    try:
        s.connect(address, int(port))
        s.ehlo("probe.domtool.invalid")
        for i in todo:
            mode, rcpt, expected = asks[i]
            answers[i] = _ask(s, f"smtp {mode} {rcpt} at {address}:{port}", mode, rcpt, expected)
            done += 1
    except (OSError, smtplib.SMTPException) as exc:
        if done and isinstance(exc, smtplib.SMTPServerDisconnected):
            return done
        for i in todo[done:]:
            mode, rcpt, _ = asks[i]
            answers[i] = f"smtp {mode} {rcpt} at {address}:{port}: {exc or type(exc).__name__}"
        return len(todo)
    finally:
        _quit(s)
    return done


def _closing(reply: tuple[int, bytes]) -> tuple[int, bytes]:
    """A reply; 421 (the daemon closes the session, e.g. too many non-mail commands)
    raises, so the probes left go to a new session."""
    if reply[0] == 421:
        raise smtplib.SMTPServerDisconnected(reply[1].decode(errors="replace"))
    return reply


def _ask(s: smtplib.SMTP, where: str, mode: str, rcpt: str, expected) -> bool | str:
    if mode == "expn":
        code, text = _closing(s.expn(rcpt))
        reply = text.decode(errors="replace")
        if code != 250:
            return f"{where}: answered {code} {reply}"
        if not expected:
            return True if "discarded" in reply else f"{where}: {reply!r}, not discarded"
        got = sorted(a.lower() for a in _ADDR.findall(reply))
        want = sorted(str(a).lower() for a in expected)
        return True if got == want else f"{where}: routes to {got}, expected {want}"
    code, text = _closing(s.mail(""))
    if code != 250:
        raise smtplib.SMTPResponseException(code, text)  # the session is unusable
    code, text = _closing(s.rcpt(rcpt))
    s.rset()
    reply = f"{code} {text.decode(errors='replace')}"
    if mode == "refused":
        return True if 500 <= code < 600 else f"{where}: answered {reply}, expected a refusal"
    return True if code == 250 else f"{where}: answered {reply}, expected acceptance"
