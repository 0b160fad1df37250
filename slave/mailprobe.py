"""The SMTP probe: ask the running Exim on loopback how it now treats one address.

Target ``(address, port, mode, rcpt, expected)``:

- ``"expn"``: ``EXPN rcpt`` must answer 250 and name exactly ``expected`` (the alias's
  targets, in any order), or say "is discarded" when ``expected`` is empty (a drop);
- ``"refused"``: ``RCPT TO:<rcpt>`` must be refused with a 5xx code (an unknown user);
- ``"accepted"``: ``RCPT TO:<rcpt>`` must be accepted (a default or catch-all rule).

Standard library ``smtplib`` only; no DNS; the session ends with RSET and QUIT so nothing
is ever sent.
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


def smtp_probe(address: str, port: int, mode: str, rcpt: str, expected, timeout: float = 5.0):
    """True, or why the running daemon does not do what the config says."""
    where = f"smtp {mode} {rcpt} at {address}:{port}"
    if any(c in rcpt for c in "\r\n <>") or mode not in ("expn", "refused", "accepted"):
        return f"{where}: bad probe"
    s = smtplib.SMTP(timeout=timeout)
    try:
        s.connect(address, int(port))
        s.ehlo("probe.domtool.invalid")
        if mode == "expn":
            code, text = s.expn(rcpt)
            reply = text.decode(errors="replace")
            if code != 250:
                return f"{where}: answered {code} {reply}"
            if not expected:
                return True if "discarded" in reply else f"{where}: {reply!r}, not discarded"
            got = sorted(a.lower() for a in _ADDR.findall(reply))
            want = sorted(str(a).lower() for a in expected)
            return True if got == want else f"{where}: routes to {got}, expected {want}"
        s.mail("")
        code, text = s.rcpt(rcpt)
        s.rset()
    except (OSError, smtplib.SMTPException) as exc:
        return f"{where}: {exc or type(exc).__name__}"
    finally:
        _quit(s)
    reply = f"{code} {text.decode(errors='replace')}"
    if mode == "refused":
        return True if 500 <= code < 600 else f"{where}: answered {reply}, expected a refusal"
    return True if code == 250 else f"{where}: answered {reply}, expected acceptance"
