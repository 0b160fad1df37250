"""Virtual mailboxes end to end with the real daemons: the slave's vmail operation writes
Courier's userdb (makeuserdb) and Exim's map; Exim delivers into the maildir as the
member's mail user; Courier's imapd (authdaemond with userdb) logs the mailbox in with
its full address and password and reads the message back (``imaplib``)."""

from __future__ import annotations

import imaplib
import os
from pathlib import Path

import pytest

from domtool.devsite import maildaemons as md
from domtool.mailhash import sha512_crypt
from domtool.model import DesiredState
from domtool.slave.vmail import VmailArgs, VmailRefused
from tests.mail.conftest import MEMBER_UID
from tests.mail.test_exim_daemon import alice_example_net, bob, rcpt_reply, send, wait_until

pytestmark = [pytest.mark.daemons, pytest.mark.slow]


def handled(state: DesiredState) -> dict[str, str]:
    return {m.name: m.owner for m in state.mail}


def imap_subjects(courier, address, password):
    return md.imap_subjects(courier.site.port, address, password)


def test_vmail_add_deliver_and_read_over_imap(mail_site, courier):
    from domtool.lang.api import check_source
    from domtool.perms import parse_perms
    from tests.mail.test_exim_daemon import EXAMPLES

    perms = parse_perms((EXAMPLES / "alice.perms").read_text(), "alice")
    org = check_source([("example.org", (EXAMPLES / "alice" / "example.org").read_text())], perms)
    state = alice_example_net().merge(DesiredState(mail=org.state.mail + (bob(),)))
    out = mail_site.apply(state)
    assert out.status in ("applied", "unchanged"), out.message
    boxes = courier.mailboxes
    add = VmailArgs(
        "add", "alice", "example.org", "alice", sha512_crypt("pa55 word"), users=("alice",)
    )
    done = boxes.handle(add, handled(state))
    maildir = done["maildir"]
    assert os.stat(maildir).st_uid == MEMBER_UID and os.stat(maildir).st_mode & 0o777 == 0o700
    # sales@example.net -> alice@example.org, now a virtual mailbox on this host
    send(mail_site, ["sales@example.net"], "sales-to-vmail")
    wait_until(lambda: os.listdir(os.path.join(maildir, "new")), what="delivery")
    assert "Subject: sales-to-vmail" in imap_subjects(courier, "alice@example.org", "pa55 word")
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(courier, "alice@example.org", "wrong")
    # passwd: the new password works, the old one no longer
    boxes.handle(
        VmailArgs("passwd", "alice", "example.org", "alice", sha512_crypt("n3w"), users=("alice",)),
        handled(state),
    )
    assert imap_subjects(courier, "alice@example.org", "n3w")
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(courier, "alice@example.org", "pa55 word")
    listed = boxes.handle(VmailArgs("list", "alice"), handled(state))["mailboxes"]
    assert [b["address"] for b in listed] == ["alice@example.org"]
    assert boxes.handle(VmailArgs("list", "bob"), handled(state))["mailboxes"] == []
    # rm keeps the maildir; the address is then the domain's default alias again
    boxes.handle(VmailArgs("rm", "alice", "example.org", "alice"), handled(state))
    assert os.path.isdir(maildir)
    with pytest.raises(imaplib.IMAP4.error):
        imap_subjects(courier, "alice@example.org", "n3w")
    # re-add over the kept maildir, then rm with purge removes it
    boxes.handle(add, handled(state))
    assert "Subject: sales-to-vmail" in imap_subjects(courier, "alice@example.org", "pa55 word")
    boxes.handle(VmailArgs("rm", "alice", "example.org", "alice", purge=True), handled(state))
    assert not os.path.exists(maildir)
    assert rcpt_reply(mail_site, "alice@example.org")[0] == 250  # default alias "alice"


def test_vmail_refusals_change_nothing(mail_site, courier):
    state = alice_example_net().merge(DesiredState(mail=(bob(),)))
    assert mail_site.apply(state).status in ("applied", "unchanged")
    boxes = courier.mailboxes
    h = sha512_crypt("x")
    before = Path(boxes.userdb_file).read_text()
    cases = [
        (
            VmailArgs("add", "bob", "example.net", "x", h, users=("bob",)),
            "not a mail domain of bob",
        ),
        (
            VmailArgs("add", "alice", "nothere.example", "x", h, users=("alice",)),
            "not a mail domain",
        ),
        (VmailArgs("add", "alice", "example.net", "a|b", h, users=("alice",)), "e-mail user"),
        (VmailArgs("add", "alice", "example.net", "x", "plain", users=("alice",)), "SHA-512"),
        (VmailArgs("add", "alice", "example.net", "x", h, "bob", users=("alice",)), "granted"),
        (
            VmailArgs("add", "alice", "example.net", "x", h, "root", users=("alice", "root")),
            "superuser",
        ),
        (VmailArgs("add", "alice", "example.net", "x", h + "\nevil", users=("alice",)), "SHA-512"),
        (VmailArgs("rm", "alice", "example.net", "nobody"), "does not exist"),
    ]
    for args, why in cases:
        with pytest.raises(VmailRefused) as info:
            boxes.handle(args, handled(state))
        assert why in str(info.value), (args, info.value)
    assert Path(boxes.userdb_file).read_text() == before
    # bob cannot touch alice's mailbox even in a domain he would hold
    boxes.handle(
        VmailArgs("add", "alice", "example.net", "box", h, users=("alice",)), handled(state)
    )
    stolen = {**handled(state), "example.net": "bob"}
    with pytest.raises(VmailRefused, match="belongs to another member"):
        boxes.handle(VmailArgs("rm", "bob", "example.net", "box", purge=True), stolen)
    boxes.handle(VmailArgs("rm", "alice", "example.net", "box", purge=True), handled(state))
