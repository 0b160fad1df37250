"""The mail part of ``domtool-quickstart``: Exim and Courier IMAP on loopback, and a demo.

Started only as root (Exim must deliver as the member's mail user, both daemons run in
private mount namespaces: ``domtool.devsite.maildaemons``) and when the packages are
installed; otherwise the site says so and runs without mail. Everything lives under
``DIR/mail``: Exim's config, spool and logs, Courier's ``etc/courier`` (the userdb the
slave's vmail operation writes) and the maildirs (``DIR/mail/vmail``). alice's local
mailbox (a bare ``"alice"`` alias target) is ``DIR/home/alice/Maildir``; her mail user is
a uid no account of this machine has (``DIR/mail/local-users`` maps it), so nothing outside
``DIR`` is written. Remote mail (carol@elsewhere.example) stays in Exim's queue: the site
asks no DNS.

After alice's examples are submitted, :func:`demo` makes the mailbox
``alice@example.org`` with the ``vmail`` operation (as ``domtool vmail add`` does, over
TLS as alice), sends one message to ``sales@example.net`` (whose alias points there) and
one to ``team@example.net`` over SMTP, and reads both back over IMAP: the first as
``alice@example.org``, the second from alice's local mailbox as ``alice`` (the site's own
userdb file ``local-accounts`` stands in for a real host's system-account login).
"""

from __future__ import annotations

import os
import pwd
import secrets
import smtplib
from pathlib import Path
from typing import Any

from domtool.devsite import maildaemons as md
from domtool.devsite import quickstart_lists
from domtool.devsite.localdaemons import free_port, wait_for
from domtool.slave.backends import exim
from domtool.slave.sitefiles import bootstrap_state

DEMO_DOMAIN = "example.org"
DEMO_USER = "alice"


def available() -> str | None:
    """Why the site runs without mail, or None."""
    if os.geteuid() != 0:
        return "not root: no Exim/Courier in this site (mail needs root)"
    if not md.exim_available():
        return "exim4-daemon-heavy (or unshare) is not installed: no mail in this site"
    if not md.courier_available():
        return "courier-imap/courier-authdaemon are not installed: no mail in this site"
    if not md.private_mounts_work():
        return "cannot make a private mount namespace (unshare -m): no mail in this site"
    return None


def free_uid(start: int = 20000) -> int:
    """A uid (and gid) no account of this machine has."""
    used = {p.pw_uid for p in pwd.getpwall()}
    uid = start
    while uid in used:
        uid += 1
    return uid


def start(site: Any, member: str) -> None:
    """Start Exim and Courier for ``site`` (a quickstart LocalSite); sets ``site.mail``."""
    root = site.root / "mail"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    # what Exim reads before the first apply
    bootstrap_state(site.state_dir, {"exim": (exim.DOMAINS_INDEX, exim.LISTS_INDEX)})
    uid = free_uid()
    maildir = site.root / "home" / member / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for p in (site.root / "home", site.root / "home" / member):
        p.chmod(0o755)
    for p in (maildir, *(maildir / s for s in ("cur", "new", "tmp"))):
        os.chown(p, uid, uid)
        p.chmod(0o700)
    users = root / "local-users"
    users.write_text(f"{member}: uid={uid} gid={uid} dir={maildir}\n")
    site.mail_uid = uid
    courier = md.prepare_courier(root / "courier", free_port())
    config = md.exim_config(
        root,
        free_port(),
        site.state_dir,
        local_users_file=str(users),
        userdb=str(courier.userdb),
        primary_hostname="mail.coop.example",
        # list mail goes to the site's Mailman over LMTP (started before Exim)
        lists_lmtp=quickstart_lists.lists_lmtp(site),
    )
    md.prepare_exim(config)
    site.progress.note(f"exim on 127.0.0.1:{config.port} (config {config.live_config})")
    site.daemons.append(md.start_exim(config, root / "log" / "daemon.log"))
    site.progress.note(f"courier imapd on 127.0.0.1:{courier.port} (userdb {courier.userdb})")
    site.daemons.append(md.start_courier(courier, root / "courier.log"))
    site.mail = {"exim": config, "courier": courier, "maildir": maildir}
    site.ports["smtp"], site.ports["imap"] = config.port, courier.port


def add_local_user(site: Any, user: str) -> None:
    """Give ``user`` a local mailbox on the site (``DIR/home/USER/Maildir``, the same mail
    uid as alice's): without one, an alias to the bare name ``user`` does not route and
    Exim's check refuses it."""
    if not getattr(site, "mail", None):
        return
    uid = site.mail_uid
    maildir = site.root / "home" / user / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    (site.root / "home" / user).chmod(0o755)
    for p in (maildir, *(maildir / s for s in ("cur", "new", "tmp"))):
        os.chown(p, uid, uid)
        p.chmod(0o700)
    with open(site.mail["exim"].local_users_file, "a", encoding="utf-8") as f:
        f.write(f"{user}: uid={uid} gid={uid} dir={maildir}\n")


def slave_lines(config) -> list[str]:
    """The ``[backends.exim]`` table of the local slave."""
    c = config
    lmtp = [f'lists_lmtp = "{c.lists_lmtp}"'] if c.lists_lmtp else []
    return [
        "",
        "[backends.exim]",
        f'live_config = "{c.live_config}"',
        f'spool_dir = "{c.spool_dir}"',
        f'log_dir = "{c.log_dir}"',
        f'pid_file = "{c.pid_file}"',
        f'vmail_map = "{c.vmail_map}"',
        f'vmail_root = "{c.vmail_root}"',
        f'address = "{c.address}"',
        f"port = {c.port}",
        f'primary_hostname = "{c.primary_hostname}"',
        f'postmaster = "{c.postmaster}"',
        f'local_users_file = "{c.local_users_file}"',
        f'userdb = "{c.userdb}"',
        f'binary = "{c.binary}"',
        *lmtp,
    ]


def demo(site: Any, member_config: Any) -> dict:
    """Make alice@example.org, send to two of example.net's aliases, read one back."""
    from domtool.client.connection import call
    from domtool.mailhash import sha512_crypt

    password = secrets.token_urlsafe(12)
    # alice's local account logs in too (as "alice"): on a real host that is Courier's
    # authpam; here the site's own userdb file beside the vmail operations' one.
    local = site.mail["maildir"]
    accounts = site.mail["courier"].userdb / "local-accounts"
    accounts.write_text(
        f"{DEMO_USER}\tuid={site.mail_uid}|gid={site.mail_uid}|home={local.parent}"
        f"|mail={local}|systempw={sha512_crypt(password)}\n"
    )
    accounts.chmod(0o600)
    call(
        member_config,
        "vmail",
        {
            "action": "add",
            "domain": DEMO_DOMAIN,
            "user": DEMO_USER,
            "hash": sha512_crypt(password),
        },
    )
    (site.root / "mail" / "alice-imap-password").write_text(password + "\n")
    os.chmod(site.root / "mail" / "alice-imap-password", 0o600)
    port, imap_port = site.ports["smtp"], site.ports["imap"]
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.sendmail(
            "carol@elsewhere.example",
            ["sales@example.net"],
            "From: carol@elsewhere.example\r\nSubject: hello sales\r\n\r\nA first order.\r\n",
        )
        s.sendmail(
            "carol@elsewhere.example",
            ["team@example.net"],
            "From: carol@elsewhere.example\r\nSubject: hello team\r\n\r\nLunch?\r\n",
        )
    login = f"{DEMO_USER}@{DEMO_DOMAIN}"
    subjects = wait_for(
        lambda: md.imap_subjects(imap_port, login, password),
        timeout=20,
        what=f"the message in {login} over IMAP",
    )
    local_subjects = wait_for(
        lambda: md.imap_subjects(imap_port, DEMO_USER, password),
        timeout=20,
        what="team@ in alice's local mailbox over IMAP",
    )
    return {
        "imap_login": f"{DEMO_USER}@{DEMO_DOMAIN}",
        "password_file": str(site.root / "mail" / "alice-imap-password"),
        "imap_subjects": subjects,
        "local_mailbox": str(local),
        "local_subjects": local_subjects,
    }


def report_lines(site: Any, mail: dict | None) -> list[str]:
    if not mail:
        return []
    return [
        f"== exim on 127.0.0.1:{site.ports['smtp']} delivered; courier imapd on "
        f"127.0.0.1:{site.ports['imap']} reads it:",
        f"  sales@example.net -> {mail['imap_login']}: IMAP INBOX holds "
        + "; ".join(mail["imap_subjects"]),
        "  team@example.net -> alice's local mailbox (IMAP login alice): "
        + "; ".join(mail["local_subjects"])
        + ", and carol@elsewhere.example (queued: no DNS)",
        f"  IMAP logins {mail['imap_login']} and alice, password in {mail['password_file']}",
    ]


def endpoints(site: Any) -> dict:
    mail = getattr(site, "mail", None)
    if not mail:
        return {"smtp": None, "imap": None, "vmail_root": None}
    return {
        "smtp": f"127.0.0.1:{site.ports['smtp']}",
        "imap": f"127.0.0.1:{site.ports['imap']}",
        "vmail_root": str(Path(mail["exim"].vmail_root).resolve()),
    }
