"""``domtool vmail`` without daemons: the client (password never in argv, hashed before it
leaves), the dispatcher op (ownership, quota, dry-run rm, schema), and the slave's
``Mailboxes`` with a stand-in for makeuserdb (the real one: test_vmail_daemon.py)."""

from __future__ import annotations

import io
import os

import pytest

from domtool import protocol
from domtool.client import vmail_cli
from domtool.client.domtool_cli import command_parser
from domtool.mailhash import HASH, sha512_crypt, verify
from domtool.model import Alias, MailDomain
from domtool.slave import ops
from domtool.slave.vmail import Mailboxes, VmailArgs, VmailRefused
from tests.dispatcher.harness import ALICE, BOB, ROOT, example, files, make_dispatcher

H = sha512_crypt("pw")


# -- the client ------------------------------------------------------------------


def parse(*argv):
    return command_parser("vmail").parse_args(list(argv))


def test_the_password_comes_from_stdin_or_the_prompt_and_only_its_hash_is_sent():
    args = parse("add", "example.net", "info", "--password-stdin")
    req = vmail_cli.op_args(args, stdin=io.StringIO("s3cret pass\nignored\n"))
    assert set(req) == {"action", "domain", "user", "hash"} and HASH.fullmatch(req["hash"])
    assert verify("s3cret pass", req["hash"]) and "s3cret" not in repr(req)
    answers = iter(["typed", "typed"])
    req = vmail_cli.op_args(parse("passwd", "example.net", "info"), prompt=lambda _: next(answers))
    assert verify("typed", req["hash"])
    answers = iter(["a", "b"])
    with pytest.raises(vmail_cli.PasswordError, match="differ"):
        vmail_cli.op_args(parse("add", "example.net", "x"), prompt=lambda _: next(answers))
    with pytest.raises(vmail_cli.PasswordError, match="empty"):
        vmail_cli.op_args(
            parse("add", "example.net", "x", "--password-stdin"), stdin=io.StringIO("")
        )
    with pytest.raises(SystemExit):  # there is no way to give it on the command line
        parse("add", "example.net", "x", "--password", "p")


def test_rm_is_a_dry_run_unless_doit():
    assert vmail_cli.op_args(parse("rm", "example.net", "x")) == {
        "action": "rm",
        "domain": "example.net",
        "user": "x",
        "purge": False,
        "doit": False,
    }
    assert vmail_cli.op_args(parse("rm", "example.net", "x", "--purge", "--doit"))["doit"]


def test_the_dispatcher_schema_refuses_a_clear_password_and_odd_names():
    ok = {"action": "add", "domain": "example.net", "user": "info", "hash": H}
    assert protocol.validate_args("vmail", ok).args == ok
    for bad in ({"hash": "plain"}, {"user": "a|b"}, {"action": "drop"}, {"password": "x"}):
        with pytest.raises(protocol.SchemaError):
            protocol.validate_args("vmail", {**ok, **bad})


# -- the dispatcher ----------------------------------------------------------------


@pytest.fixture
def d():
    d = make_dispatcher()
    assert d.run(ALICE, "submit", files=files(example_net=example("example.net")))["applied"]
    return d


def test_add_list_rm_through_the_dispatcher(d):
    out = d.run(ALICE, "vmail", action="add", domain="example.net", user="info", hash=H)
    assert out["address"] == "info@example.net" and list(out["hosts"]) == ["web1"]
    listed = d.run(ALICE, "vmail", action="list")["mailboxes"]
    assert [b["address"] for b in listed] == ["info@example.net"]
    assert d.run(BOB, "vmail", action="list")["mailboxes"] == []
    d.forget_calls()
    dry = d.run(ALICE, "vmail", action="rm", domain="example.net", user="info")
    assert dry["dry_run"] and "kept" in dry["would"]
    assert d.ops() == {"ns1": [], "web1": []}  # a dry run asks no host to change anything
    d.run(ALICE, "vmail", action="rm", domain="example.net", user="info", doit=True)
    assert d.slaves["web1"].mailboxes == {}


def test_ownership_mail_handling_and_quota(d):
    e = d.refusal(BOB, "vmail", action="add", domain="example.net", user="x", hash=H)
    assert e.failure.kind == "refused" and "bob does not own example.net" in e.failure.message
    e = d.refusal(ALICE, "vmail", action="add", domain="example.org", user="x", hash=H)
    assert "does not handle mail here" in e.failure.message  # example.org not submitted
    d.run(ROOT, "set_quota", user="alice", resource="mailboxes", value=1)
    d.run(ALICE, "vmail", action="add", domain="example.net", user="one", hash=H)
    e = d.refusal(ALICE, "vmail", action="add", domain="example.net", user="two", hash=H)
    assert e.failure.kind == "policy" and "over the quota of 1" in e.failure.message
    assert list(d.slaves["web1"].mailboxes) == ["one@example.net"]


# -- the slave -------------------------------------------------------------------


def boxes(tmp_path, uids=None):
    calls = []

    def run(argv):
        calls.append(argv)
        return 0, ""

    b = Mailboxes(
        state_dir=str(tmp_path / "state"),
        vmail_root=str(tmp_path / "vmail"),
        vmail_map=str(tmp_path / "vmail.map"),
        userdb=str(tmp_path / "userdb"),
        accounts=lambda n: (uids or {"alice": (os.getuid() or 1000, os.getgid() or 1000)}).get(n),
        run=run,
        min_id=0 if os.getuid() != 0 else 1000,
    )
    os.makedirs(b.vmail_root)
    return b, calls


HANDLED = {"example.net": "alice", "bob.example": "bob"}


@pytest.mark.skipif(os.getuid() != 0, reason="chowns maildirs to the member's uid")
def test_slave_mailboxes_write_userdb_and_map(tmp_path):
    b, calls = boxes(tmp_path, {"alice": (2001, 2001)})
    b.handle(VmailArgs("add", "alice", "example.net", "Info", H, users=("alice",)), HANDLED)
    userdb = (tmp_path / "userdb").read_text()
    md = str(tmp_path / "vmail" / "example.net" / "info")
    assert userdb == f"info@example.net\tuid=2001|gid=2001|home={md}|mail={md}|systempw={H}\n"
    assert oct((tmp_path / "userdb").stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "vmail.map").read_text() == f"info@example.net: uid=2001 gid=2001 dir={md}\n"
    assert calls == [["/usr/sbin/makeuserdb", "-f", str(tmp_path / "userdb")]]
    assert os.stat(md).st_uid == 2001 and os.stat(os.path.join(md, "new")).st_uid == 2001
    with pytest.raises(VmailRefused, match="already exists"):
        b.handle(VmailArgs("add", "alice", "example.net", "info", H, users=("alice",)), HANDLED)
    with pytest.raises(VmailRefused, match="not a mail domain of bob"):
        b.handle(VmailArgs("rm", "bob", "example.net", "info"), HANDLED)
    b.handle(VmailArgs("rm", "alice", "example.net", "info"), HANDLED)
    assert (tmp_path / "userdb").read_text() == "" and os.path.isdir(md)


def test_the_slave_op_schema():
    a = ops.parse(
        "vmail",
        {
            "action": "add",
            "owner": "alice",
            "domain": "Example.NET",
            "user": "x",
            "hash": H,
            "grants": {"users": ["alice"]},
        },
    )
    assert (a.domain, a.user, a.users) == ("example.net", "x", ("alice",))
    with pytest.raises(ops.BadArgs):
        ops.parse("vmail", {"action": "add", "owner": "alice", "hash": "x\ny"})


def test_mail_domain_model_round_trip_keeps_the_spam_fields():
    from domtool.model import from_json, to_json

    m = MailDomain(
        "x.example",
        "alice",
        ("local",),
        aliases=(Alias(("default",), ()),),
        spam_filter=True,
        spam_threshold=7,
        spam_action="refuse",
    )
    assert from_json(to_json(m)) == m
