"""The Exim backend against a real Exim on loopback, through the slave's engine.

One Exim per session (``conftest.mail_site``): the engine renders each member's mail
domain into a lookup file, routes it with ``exim -bt`` and checks the staged generation
with ``exim -bV`` before the switch, sends the daemon SIGHUP, then probes it over SMTP
(EXPN of each changed alias, RCPT of an unknown user). The tests then talk SMTP to it
with ``smtplib`` and look where the mail went: a member's maildir, the smarthost sink, or
nowhere (a drop).
"""

from __future__ import annotations

import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from domtool.lang.api import check_source
from domtool.model import Alias, DesiredState, MailDomain
from domtool.perms import parse_perms
from tests.mail.conftest import messages

pytestmark = [pytest.mark.daemons, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"


def alice_example_net() -> DesiredState:
    perms = parse_perms((EXAMPLES / "alice.perms").read_text(), "alice")
    text = (EXAMPLES / "alice" / "example.net").read_text()
    r = check_source([("example.net", text)], perms)
    assert r.diagnostics == (), r.diagnostics
    return DesiredState(mail=r.state.mail)


BOB_INFO = (Alias(("user", "info"), ("bob@elsewhere.example",)),)


def bob(aliases=BOB_INFO, name="bob.example"):
    return MailDomain(name=name, owner="bob", nodes=("local",), aliases=tuple(aliases))


def send(site, rcpts, subject="hello", sender="someone@outside.example"):
    body = f"From: {sender}\r\nSubject: {subject}\r\n\r\n{subject} body\r\n"
    with smtplib.SMTP("127.0.0.1", site.config.port, timeout=10) as s:
        return s.sendmail(sender, rcpts, body)


def rcpt_reply(site, rcpt):
    with smtplib.SMTP("127.0.0.1", site.config.port, timeout=10) as s:
        s.ehlo("test.invalid")
        s.mail("someone@outside.example")
        return s.rcpt(rcpt)


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def with_subject(maildir, subject):
    return [m for m in messages(maildir) if f"Subject: {subject}".encode() in m]


def queue_count(site) -> int:
    out = subprocess.run(
        [site.config.binary, "-C", site.config.live_config, "-bpc"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return int(out.stdout.strip() or 0)


def test_alice_example_aliases_deliver_where_they_say(mail_site):
    site = mail_site
    state = alice_example_net().merge(DesiredState(mail=(bob(),)))
    out = site.apply(state)
    assert out.status == "applied", out.message
    assert set(out.applied) >= {"alice", "bob"}
    # sales -> alice@example.org (remote here: the smarthost sink)
    send(site, ["sales@example.net"], "to-sales")
    wait_until(lambda: site.sink.for_rcpt("alice@example.org"), what="sales at the sink")
    # team -> alice's local mailbox and carol@elsewhere.example
    send(site, ["team@example.net"], "to-team")
    wait_until(lambda: with_subject(site.alice_maildir, "to-team"), what="team in alice's box")
    wait_until(lambda: site.sink.for_rcpt("carol@elsewhere.example"), what="carol at the sink")
    # default alias -> alice
    send(site, ["whoever@example.net"], "to-default")
    wait_until(lambda: with_subject(site.alice_maildir, "to-default"), what="default delivery")
    # drop: accepted at RCPT, delivered nowhere
    assert rcpt_reply(site, "noreply@example.net")[0] == 250
    send(site, ["noreply@example.net"], "to-noreply")
    wait_until(lambda: "=> :blackhole: <noreply@example.net>" in site.log(), what="blackhole")
    assert not with_subject(site.alice_maildir, "to-noreply")
    assert not [m for m in site.sink.messages if b"to-noreply" in m.data]


def test_unknown_user_and_relay_are_refused_at_rcpt(mail_site):
    site = mail_site
    out = site.apply(alice_example_net().merge(DesiredState(mail=(bob(),))))
    assert out.status in ("applied", "unchanged"), out.message
    code, text = rcpt_reply(site, "nosuchuser@bob.example")
    assert code == 550 and b"unknown user" in text
    code, text = rcpt_reply(site, "someone@nobody-handles-this.example")
    assert code == 550 and b"relay not permitted" in text
    # A quoted local part cannot reach the special keys of a domain file.
    assert rcpt_reply(site, '"@default"@bob.example')[0] == 550
    assert rcpt_reply(site, "info@bob.example")[0] == 250


def test_a_broken_member_is_refused_and_the_others_keep_flowing(mail_site):
    """carol's alias points at a user of bob's domain that does not exist: ``exim -bt``
    refuses her unit with Exim's own message; bob's change still goes live."""
    site = mail_site
    base = alice_example_net().merge(DesiredState(mail=(bob(),)))
    assert site.apply(base).status in ("applied", "unchanged")
    carol = MailDomain(
        name="carol.example",
        owner="carol",
        nodes=("local",),
        aliases=(Alias(("user", "x"), ("ghost@bob.example",)),),
    )
    bob2 = bob(
        aliases=(
            Alias(("user", "info"), ("bob@elsewhere.example",)),
            Alias(("user", "new"), ("bob@elsewhere.example",)),
        )
    )
    state = alice_example_net().merge(DesiredState(mail=(bob2, carol)))
    out = site.apply(state)
    assert "carol" in out.refused, out.message
    assert "ghost@bob.example" in out.refused["carol"] and "Unrouteable" in out.refused["carol"]
    assert "bob" in out.applied
    assert rcpt_reply(site, "new@bob.example")[0] == 250
    assert rcpt_reply(site, "x@carol.example")[0] == 550  # carol's domain is not live
    send(site, ["team@example.net"], "after-broken")
    wait_until(lambda: with_subject(site.alice_maildir, "after-broken"), what="alice still")


def test_apply_and_sighup_keep_queued_mail(mail_site):
    """A message the next hop defers stays queued across an apply (which signals nothing:
    the next connection reads the new lookup files) and across Exim's own SIGHUP reload
    (the backend's reload_argv, as site setup sends after changing the site config)."""
    site = mail_site
    slow = Alias(("user", "slow"), ("tempfail@elsewhere.example",))
    st = DesiredState(mail=(bob(aliases=(slow,)),))
    assert site.apply(st).status == "applied"
    assert site.backend.reload() == ()
    before = queue_count(site)
    send(site, ["slow@bob.example"], "queued")
    wait_until(lambda: queue_count(site) == before + 1, what="the message in the queue")
    pid = site.exim.pid
    more = Alias(("user", "more"), ("bob@elsewhere.example",))
    out = site.apply(DesiredState(mail=(bob(aliases=(slow, more)),)))
    assert out.status == "applied", out.message
    assert site.exim.alive() and site.exim.pid == pid
    assert queue_count(site) == before + 1
    assert rcpt_reply(site, "more@bob.example")[0] == 250
    done = subprocess.run(list(site.config.reload_argv()), capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    wait_until(lambda: smtp_answers(site), timeout=30, what="exim after SIGHUP")
    assert site.exim.alive() and site.exim.pid == pid  # re-executed in place
    assert queue_count(site) == before + 1
    assert rcpt_reply(site, "more@bob.example")[0] == 250


def smtp_answers(site) -> bool:
    try:
        return rcpt_reply(site, "more@bob.example")[0] == 250
    except OSError:
        return False


def test_list_addresses_go_to_mailman_over_lmtp(mail_site, monkeypatch):
    """The hook the lists backend fills: list local parts per domain become a
    ``lists:DOMAIN`` unit; ``exim -bt`` and a real SMTP delivery show the ``dt_lists``
    router handing them to the LMTP transport (a sink stands in for Mailman here)."""
    from domtool.slave.backends import exim

    site = mail_site
    lists = {"example.net": ("alice", ("announce",)), "lists.bob.example": ("bob", ("dev",))}
    monkeypatch.setattr(exim, "list_local_parts", lambda state, node=None: lists)
    out = site.apply(alice_example_net().merge(DesiredState(mail=(bob(),))))
    assert (out.status, out.applied) == ("applied", ("alice", "bob")), out.message
    bt = subprocess.run(
        [site.config.binary, "-C", site.config.live_config, "-bt", "announce-request@example.net"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert "router = dt_lists, transport = dt_lists_lmtp" in bt.stdout, bt.stdout
    send(site, ["announce@example.net", "announce-bounces+x=y.example@example.net"], "to-list")
    send(site, ["dev-join@lists.bob.example"], "to-dev")
    wait_until(lambda: site.lmtp.for_rcpt("announce@example.net"), what="list post over LMTP")
    wait_until(lambda: site.lmtp.for_rcpt("announce-bounces+x=y.example@example.net"), what="VERP")
    wait_until(lambda: site.lmtp.for_rcpt("dev-join@lists.bob.example"), what="list-only domain")
    assert rcpt_reply(site, "nolist@lists.bob.example")[0] == 550
    monkeypatch.undo()
    assert site.apply(alice_example_net().merge(DesiredState(mail=(bob(),)))).status == "applied"
    assert rcpt_reply(site, "announce@example.net")[0] == 250  # the default alias now
    assert rcpt_reply(site, "dev@lists.bob.example")[0] == 550


def test_the_smtp_probe_sees_what_the_running_exim_routes(mail_site):
    """The convergence probe can fail: right targets pass, wrong ones and a live user
    probed as unknown are reported with what Exim said."""
    from domtool.slave.mailprobe import smtp_probe

    site = mail_site
    assert site.apply(alice_example_net().merge(DesiredState(mail=(bob(),)))).status in (
        "applied",
        "unchanged",
    )
    a, p = "127.0.0.1", site.config.port
    assert smtp_probe(a, p, "expn", "sales@example.net", ("alice@example.org",)) is True
    wrong = smtp_probe(a, p, "expn", "sales@example.net", ("bob@example.org",))
    assert "routes to ['alice@example.org'], expected ['bob@example.org']" in wrong
    assert smtp_probe(a, p, "expn", "noreply@example.net", ()) is True
    assert smtp_probe(a, p, "refused", "nobody@bob.example", ()) is True
    assert "expected a refusal" in smtp_probe(a, p, "refused", "info@bob.example", ())
    assert smtp_probe(a, p, "accepted", "anyone@example.net", ()) is True
