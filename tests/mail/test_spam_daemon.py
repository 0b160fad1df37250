"""SpamAssassin per domain, through a real spamd and Exim's ``spam =`` ACL: GTUBE is
tagged, refused at DATA, or filed in the Junk folder, as each domain's switches say;
ordinary mail passes untagged; a domain with the filter off is not scanned."""

from __future__ import annotations

import smtplib

import pytest

from domtool.model import Alias, DesiredState, MailDomain
from tests.mail.conftest import messages
from tests.mail.test_exim_daemon import wait_until

pytestmark = [pytest.mark.daemons, pytest.mark.slow]

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def dom(name, **kw):
    return MailDomain(
        name=name, owner="alice", nodes=("local",), aliases=(Alias(("default",), ("alice",)),), **kw
    )


def send(site, rcpt, subject, body):
    msg = f"From: a@outside.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    with smtplib.SMTP("127.0.0.1", site.config.port, timeout=60) as s:
        s.sendmail("a@outside.example", [rcpt], msg)


def box(site, subject, sub=""):
    d = site.alice_maildir / sub if sub else site.alice_maildir
    return [m for m in messages(d) if f"Subject: {subject}".encode() in m]


def test_gtube_is_tagged_refused_or_junked_as_configured(spam_site):
    site = spam_site
    state = DesiredState(
        mail=(
            dom("tag.example", spam_filter=True),
            dom("refuse.example", spam_filter=True, spam_action="refuse"),
            dom("junk.example", spam_filter=True, spam_action="junk"),
            dom("off.example"),
        )
    )
    out = site.apply(state)
    assert out.status == "applied", out.message
    send(site, "x@tag.example", "gtube-tag", GTUBE)
    (m,) = wait_until(lambda: box(site, "gtube-tag"), timeout=60, what="tagged GTUBE")
    assert b"X-Domtool-Spam: yes" in m and b"X-Domtool-Spam-Score: 100" in m  # GTUBE ~1000
    with pytest.raises(smtplib.SMTPDataError) as info:
        send(site, "x@refuse.example", "gtube-refuse", GTUBE)
    assert info.value.smtp_code == 550 and b"refused as spam" in info.value.smtp_error
    send(site, "x@junk.example", "gtube-junk", GTUBE)
    wait_until(lambda: box(site, "gtube-junk", ".Junk"), timeout=60, what="GTUBE in Junk")
    assert not box(site, "gtube-junk")
    send(site, "x@off.example", "gtube-off", GTUBE)
    (m,) = wait_until(lambda: box(site, "gtube-off"), timeout=60, what="unscanned GTUBE")
    assert b"X-Domtool-Spam" not in m
    send(site, "x@refuse.example", "ham", "Hello, this is an ordinary message about lunch.")
    (m,) = wait_until(lambda: box(site, "ham"), timeout=60, what="ham")
    assert b"X-Domtool-Spam:" not in m


def test_a_forged_spam_header_is_removed(spam_site):
    site = spam_site
    assert site.apply(DesiredState(mail=(dom("tag.example", spam_filter=True),))).status in (
        "applied",
        "unchanged",
    )
    msg = "From: a@b.example\r\nSubject: forged\r\nX-Domtool-Spam: yes\r\n\r\nlunch at noon\r\n"
    with smtplib.SMTP("127.0.0.1", site.config.port, timeout=60) as s:
        s.sendmail("a@b.example", ["y@tag.example"], msg)
    (m,) = wait_until(lambda: box(site, "forged"), timeout=60, what="forged")
    assert b"X-Domtool-Spam: yes" not in m


def test_one_spam_policy_per_message(spam_site):
    """Recipients of domains with different spam settings cannot share one message: the
    second policy's recipient is deferred (452) and the sender retries it separately."""
    site = spam_site
    state = DesiredState(mail=(dom("tag.example", spam_filter=True), dom("off.example")))
    assert site.apply(state).status in ("applied", "unchanged")
    with smtplib.SMTP("127.0.0.1", site.config.port, timeout=60) as s:
        s.ehlo("t.invalid")
        s.mail("a@outside.example")
        assert s.rcpt("x@tag.example")[0] == 250
        assert s.rcpt("z@tag.example")[0] == 250
        code, text = s.rcpt("y@off.example")
        assert code == 452 and b"one spam policy per message" in text
