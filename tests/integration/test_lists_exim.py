"""List mail through the real Exim to the real Mailman: the routing issue 10 asks for.

One Exim (the mail tests' helpers, ``tests.mail.conftest``) and the session's Mailman 3
core, driven by ONE engine with both backends, as a host with the mail and lists roles
runs them. alice's config (parsed, checked and evaluated by the language) declares a list;
after the apply the list exists in Mailman with its owner, Exim's ``dt_lists`` router
sends its addresses to Mailman's LMTP port (``lists_lmtp``), and a message to the list
address over SMTP reaches Mailman: from a non-member it is held for moderation, which
Mailman's REST API shows. An address of no list is refused at RCPT.
"""

from __future__ import annotations

import shutil
import smtplib

import pytest

from domtool.devsite import maildaemons as md
from domtool.devsite.localdaemons import free_port, wait_for
from domtool.lang.api import check_source
from domtool.perms import parse_perms
from domtool.slave.backends.exim import EximBackend
from domtool.slave.backends.mailman import MailmanBackend, MailmanConfig
from domtool.slave.engine import Engine
from domtool.slave.mailman_rest import list_id
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.mail.conftest import bootstrap, need_mail_daemons, public_root
from tests.mail.sink import SmtpSink
from tests.mailman_site import unique_domain

pytestmark = [pytest.mark.daemons, pytest.mark.slow]


@pytest.fixture
def host(mailman_site):
    need_mail_daemons()
    root = public_root("domtool-lists-exim-")
    sink = SmtpSink().start()
    state_dir = root / "state"
    bootstrap(state_dir)
    config = md.exim_config(
        root,
        free_port(),
        state_dir,
        smarthost=f"127.0.0.1:{sink.port}",
        lists_lmtp=f"127.0.0.1:{mailman_site.lmtp_port}",
    )
    md.prepare_exim(config)
    exim = md.start_exim(config, root / "log" / "daemon.log")
    mailman = MailmanBackend(
        MailmanConfig(
            rest_config=str(mailman_site.rest_config),
            live_index=str(state_dir / "current" / "mailman" / "lists.json"),
        )
    )
    engine = Engine(
        str(state_dir),
        {"exim": EximBackend(config), "mailman": mailman},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(timeout=5.0),
        probe_timeout=10.0,
        probe_interval=0.1,
    )
    try:
        yield engine, config
    finally:
        exim.stop()
        sink.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_a_message_to_the_list_address_over_smtp_reaches_mailmans_queue(host, mailman_site):
    engine, config = host
    d = unique_domain("exim")
    perms = parse_perms(f"domain: {d}\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice")
    source = (
        f'domain "{d}" with\n  handleMail;\n'
        '  mailingList "team" with owner "alice@example.org" end\nend;\n'
    )
    checked = check_source([(d, source)], perms)
    assert checked.diagnostics == ()
    out = engine.apply(checked.state)
    assert out.status == "applied", out.message
    rest = mailman_site.client()
    assert sorted(rest.owners(f"team@{d}")) == ["alice@example.org"]

    subject = f"to the list {d}"
    msg = f"From: stranger@outside.example\r\nTo: team@{d}\r\nSubject: {subject}\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", config.port, timeout=10) as s:
        assert s.sendmail("stranger@outside.example", [f"team@{d}"], msg) == {}
        s.ehlo("test.invalid")
        s.mail("someone@outside.example")
        assert s.rcpt(f"nolist@{d}")[0] == 550
        s.rset()
        s.mail("someone@outside.example")
        assert s.rcpt(f"team-request@{d}")[0] == 250

    def held():
        entries = rest.get(f"/lists/{list_id('team@' + d)}/held").get("entries", [])
        return [e for e in entries if e.get("subject") == subject]

    (entry,) = wait_for(held, timeout=60, what="the message held in Mailman's queue")
    assert entry["sender"] == "stranger@outside.example"
