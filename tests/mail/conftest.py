"""Shared real mail daemons for the mail tests: one Exim (and, when asked, one Courier
IMAP and one spamd) per test session, on loopback high ports, with roots of their own.

``mail_site`` is an Exim driven by the slave's engine with the exim backend, delivering
remote mail to an in-process SMTP sink (``smarthost``) and members' local mailboxes into
maildirs under its root. Tests share it: each applies the complete state it needs (the
engine replaces the previous one), so test order does not matter.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import attrs
import pytest

from domtool.devsite import maildaemons as md
from domtool.devsite.localdaemons import Daemon, free_port
from domtool.model import DesiredState
from domtool.slave.backends.exim import DOMAINS_INDEX, LISTS_INDEX, EximBackend, EximConfig
from domtool.slave.engine import Engine, Outcome
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from domtool.slave.sitefiles import bootstrap_state
from tests.conftest import IN_CI
from tests.mail.sink import SmtpSink

MEMBER_UID = 2001  # alice's mail user in these tests (no passwd entry needed)
MEMBER_GID = 2001


def need_mail_daemons(*, courier: bool = False, spamd: bool = False) -> None:
    missing = []
    if not md.exim_available():
        missing.append("exim4 (exim4-daemon-heavy) and unshare")
    if courier and not md.courier_available():
        missing.append("courier-imap/courier-authdaemon")
    if spamd and md.spamd_binary() is None:
        missing.append("spamd")
    if os.geteuid() != 0:
        missing.append("root (to deliver as a member's mail user)")
    elif not md.private_mounts_work():
        missing.append("a private mount namespace (unshare -m) for Exim's and Courier's roots")
    if missing:
        msg = "missing: " + ", ".join(missing)
        if IN_CI:
            pytest.fail(msg + " (CI must install them: see scripts/setup)")
        pytest.skip(msg)


def public_root(prefix: str) -> Path:
    """A fresh root under /tmp that Exim (as Debian-exim and as the member) can traverse."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def member_maildir(root: Path, user: str, uid: int = MEMBER_UID, gid: int = MEMBER_GID) -> Path:
    d = root / "home" / user / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for p in (d.parent, d, *(d / s for s in ("cur", "new", "tmp"))):
        os.chown(p, uid, gid)
        p.chmod(0o700)
    return d


def messages(maildir: Path) -> list[bytes]:
    out = []
    for sub in ("new", "cur"):
        p = maildir / sub
        if p.exists():
            out += [f.read_bytes() for f in sorted(p.iterdir())]
    return out


@attrs.define
class MailSite:
    root: Path
    config: EximConfig
    backend: EximBackend
    engine: Engine
    exim: Daemon
    sink: SmtpSink
    state_dir: Path
    alice_maildir: Path
    spamd: Daemon | None = None
    lmtp: SmtpSink | None = None  # stands in for Mailman's LMTP runner (lists tests)

    def apply(self, state: DesiredState) -> Outcome:
        return self.engine.apply(state)

    def log(self) -> str:
        p = Path(self.config.log_dir) / "mainlog"
        return p.read_text(errors="replace") if p.exists() else ""


def bootstrap(state_dir: Path) -> None:
    bootstrap_state(state_dir, {"exim": (DOMAINS_INDEX, LISTS_INDEX)})


def make_site(prefix: str, *, spamd_port: int | None = None, **config_kw) -> MailSite:
    root = public_root(prefix)
    sink = SmtpSink().start()
    lmtp = SmtpSink().start()
    state_dir = root / "state"
    bootstrap(state_dir)
    alice = member_maildir(root, "alice")
    users = root / "local-users"
    users.write_text(f"alice: uid={MEMBER_UID} gid={MEMBER_GID} dir={alice}\n")
    config = md.exim_config(
        root,
        free_port(),
        state_dir,
        smarthost=f"127.0.0.1:{sink.port}",
        lists_lmtp=f"127.0.0.1:{lmtp.port}",
        local_users_file=str(users),
        spamd=None if spamd_port is None else f"127.0.0.1 {spamd_port}",
        **config_kw,
    )
    md.prepare_exim(config)
    exim = md.start_exim(config, root / "log" / "daemon.log")
    backend = EximBackend(config)
    engine = Engine(
        str(state_dir),
        {"exim": backend},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(),
        probe_timeout=5.0,
    )
    return MailSite(root, config, backend, engine, exim, sink, state_dir, alice, lmtp=lmtp)


def close_site(site: MailSite) -> None:
    site.exim.stop()
    if site.spamd is not None:
        site.spamd.stop()
    site.sink.stop()
    if site.lmtp is not None:
        site.lmtp.stop()
    shutil.rmtree(site.root, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_site():
    need_mail_daemons()
    site = make_site("domtool-mail-")
    try:
        yield site
    finally:
        close_site(site)


@pytest.fixture(scope="session")
def spam_site():
    """An Exim whose config scans with a real spamd (started once per session)."""
    need_mail_daemons(spamd=True)
    spam_root = public_root("domtool-spamd-")
    port = free_port()
    spamd = md.start_spamd(spam_root, port, spam_root / "spamd.log")
    try:
        site = make_site("domtool-mail-spam-", spamd_port=port)
    except Exception:
        spamd.stop()
        shutil.rmtree(spam_root, ignore_errors=True)
        raise
    site.spamd = spamd
    try:
        yield site
    finally:
        close_site(site)
        shutil.rmtree(spam_root, ignore_errors=True)


@attrs.define
class CourierSite:
    site: md.CourierSite
    daemon: Daemon
    mailboxes: object  # domtool.slave.vmail.Mailboxes over the shared Exim's map


@pytest.fixture(scope="session")
def courier(mail_site):
    """Courier authdaemond (userdb) and imapd for the shared Exim's virtual mailboxes."""
    need_mail_daemons(courier=True)
    from domtool.slave.vmail import Mailboxes

    site = md.prepare_courier(mail_site.root / "courier", free_port())
    daemon = md.start_courier(site, mail_site.root / "log" / "courier.log")
    boxes = Mailboxes(
        state_dir=str(mail_site.state_dir),
        vmail_root=mail_site.config.vmail_root,
        vmail_map=mail_site.config.vmail_map,
        userdb=str(site.userdb),
        accounts=lambda name: {"alice": (MEMBER_UID, MEMBER_GID), "bob": (2002, 2002)}.get(name),
    )
    try:
        yield CourierSite(site, daemon, boxes)
    finally:
        daemon.stop()
