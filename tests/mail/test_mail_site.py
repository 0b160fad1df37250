"""Mail through the real dispatcher and slave: ``domtool-quickstart --serve`` (Exim and
Courier IMAP beside named and apache2), then the member's own commands over TLS:
``domtool vmail add`` (password on stdin), SMTP to the mailbox and to the example's
aliases, IMAP read back, ``vmail list``, ``vmail rm`` (a dry run, then ``--doit``
keeping the maildir), relaying refused, a broken mail change refused by the slave's
``exim -bt`` while the live aliases keep delivering, and a second member (bob, added with
``domtool-admin``) whose broken change is refused while alice's mail flows, and who cannot
point an alias at alice's local mailbox. Then SIGTERM leaves nothing behind."""

from __future__ import annotations

import imaplib
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from domtool.devsite import maildaemons as md
from domtool.devsite.localdaemons import wait_for
from tests.mail.conftest import need_mail_daemons
from tests.served_site import served_site

pytestmark = [pytest.mark.daemons, pytest.mark.slow]
BIN = Path(sys.executable).parent


def domtool(ep, *args, stdin=None):
    return subprocess.run(
        [str(BIN / "domtool"), "--config", ep["client_config"], *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
    )


imap_subjects = md.imap_subjects


def send(port, rcpt, subject):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail("x@outside.example", [rcpt], f"Subject: {subject}\r\n\r\nbody\r\n")


def test_vmail_and_aliases_through_the_dispatcher_and_slave():
    need_mail_daemons(courier=True)
    with served_site("domtool-mailsite-", "--quiet", timeout=120) as s:
        d, site, ep = s.dir, s.site, s.endpoints
        smtp = int(ep["smtp"].rsplit(":", 1)[1])
        imap = int(ep["imap"].rsplit(":", 1)[1])
        assert ep["vmail_root"] == str(site / "mail" / "vmail")
        # the quickstart's own demo: sales@example.net reached alice@example.org over IMAP
        summary = s.log_text()
        assert "IMAP INBOX holds Subject: hello sales" in summary, summary
        # team@example.net -> "alice" (her local mailbox), read over IMAP as alice
        assert "(IMAP login alice): Subject: hello team" in summary, summary
        pw = (site / "mail" / "alice-imap-password").read_text().strip()
        # the default alias -> "alice" too; the drop alias is accepted and lands nowhere
        send(smtp, "whoever@example.net", "to-default")
        send(smtp, "noreply@example.net", "to-noreply")
        assert wait_for(
            lambda: "Subject: to-default" in imap_subjects(imap, "alice", pw),
            timeout=20,
            what="the default alias in alice's local mailbox over IMAP",
        )
        for login in ("alice", "alice@example.org"):
            assert "Subject: to-noreply" not in imap_subjects(imap, login, pw)

        added = domtool(
            ep, "vmail", "add", "example.net", "info", "--password-stdin", stdin="s3 cret\n"
        )
        assert added.returncode == 0, added.stderr + added.stdout
        assert "s3 cret" not in added.stdout + added.stderr
        listed = domtool(ep, "vmail", "list")
        assert listed.returncode == 0 and "info@example.net" in listed.stdout
        assert "alice@example.org" in listed.stdout
        send(smtp, "info@example.net", "to-info")
        assert wait_for(
            lambda: "Subject: to-info" in imap_subjects(imap, "info@example.net", "s3 cret"),
            timeout=20,
            what="to-info over IMAP",
        )
        # relaying for a domain nobody here handles is refused at RCPT
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.ehlo("test.invalid")
            s.mail("x@outside.example")
            code, text = s.rcpt("someone@not-handled.example")
        assert code == 550 and b"relay not permitted" in text

        # a broken mail change (an alias that routes nowhere) is refused by the slave's
        # exim -bt; the live aliases keep delivering
        example = (
            Path(__file__).resolve().parents[1] / "data" / "examples" / "alice" / "example.net"
        ).read_text()
        broken = d / "example.net"
        broken.write_text(
            example.replace(
                'aliasDrop "noreply";', 'aliasDrop "noreply";\n  emailAlias "x" "zed@localhost";'
            )
        )
        done = domtool(ep, str(broken))
        assert done.returncode == 1, done.stdout + done.stderr
        assert "zed@localhost" in done.stdout + done.stderr
        send(smtp, "sales@example.net", "after-broken")
        assert wait_for(
            lambda: (
                "Subject: after-broken"
                in imap_subjects(
                    imap,
                    "alice@example.org",
                    (site / "mail" / "alice-imap-password").read_text().strip(),
                )
            ),
            timeout=20,
            what="sales still delivered",
        )

        # a second member: bob's broken mail change is refused at the slave, alice's mail
        # keeps flowing; bob cannot point an alias at alice's local mailbox
        bob_dir = d / "bob"
        admin = [str(BIN / "domtool-admin"), "--config", ep["admin_config"]]
        for argv in (
            ["adduser", "bob", "--out", str(bob_dir)],
            ["grant", "bob", "domain", "bob.example"],
            ["grant", "bob", "user", "bob"],
            # the slave checks bob's units against grants an administrator signed
            ["sign-grants", "bob", "--key", str(site / "admin" / "grant-signing.key")],
        ):
            done = subprocess.run(admin + argv, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr + done.stdout
        bob_ep = {"client_config": str(bob_dir / "client.toml")}
        bob_file = d / "bob.example"

        def bob_submits(body: str):
            bob_file.write_text(
                'domain "bob.example" with\n  nameserver "ns1.coop.example";\n'
                f"  handleMail;\n{body}\nend;\n"
            )
            return domtool(bob_ep, str(bob_file))

        stolen = bob_submits('  defaultAlias "alice";')
        assert (
            stolen.returncode == 1
            and "'alice' is not your_user for bob" in stolen.stdout + stolen.stderr
        )
        broken_bob = bob_submits('  emailAlias "x" "ghost@bob.example";')  # no such user
        assert broken_bob.returncode == 1, broken_bob.stdout + broken_bob.stderr
        said = broken_bob.stdout + broken_bob.stderr
        # refused by Exim's own check of bob's staged aliases on the slave, for bob alone
        assert (
            "ghost@bob.example" in said and "Unrouteable" in said and "refused: local: bob" in said
        ), said
        assert "grants" not in said, said
        send(smtp, "sales@example.net", "while-bob-broken")
        alice_pw = (site / "mail" / "alice-imap-password").read_text().strip()
        assert wait_for(
            lambda: (
                "Subject: while-bob-broken" in imap_subjects(imap, "alice@example.org", alice_pw)
            ),
            timeout=20,
            what="alice's mail while bob's change is refused",
        )
        fine = bob_submits('  emailAlias "info" "alice@example.org";')  # an address: fine
        assert fine.returncode == 0, fine.stdout + fine.stderr
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as s:
            s.ehlo("test.invalid")
            s.mail("x@outside.example")
            assert s.rcpt("info@bob.example")[0] == 250
            assert s.rcpt("nobody@bob.example")[0] == 550

        dry = domtool(ep, "vmail", "rm", "example.net", "info")
        assert dry.returncode == 0 and "again with --doit" in dry.stdout, dry.stdout + dry.stderr
        assert imap_subjects(imap, "info@example.net", "s3 cret")
        gone = domtool(ep, "vmail", "rm", "example.net", "info", "--doit")
        assert gone.returncode == 0, gone.stderr
        assert (site / "mail" / "vmail" / "example.net" / "info" / "new").is_dir()  # kept
        with pytest.raises(imaplib.IMAP4.error):
            imap_subjects(imap, "info@example.net", "s3 cret")
