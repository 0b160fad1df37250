"""Virtual mailboxes at the slave's privileged edge: Courier userdb, maildirs, Exim's map.

The ``vmail`` operation (``domtool.wire.SLAVE_OPS``) is a typed action, not a config
unit: ``{action: add|passwd|rm|list, owner, domain?, user?, hash?, mail_user?, purge?,
grants: {users}}``. The slave decides for itself before it touches anything:

- the domain is a mail domain this host handles *for that owner* (its live state);
- the mailbox name is an email user name, the address fits 254 characters;
- the password arrives only as a SHA-512 crypt hash (``domtool.mailhash.check_hash``),
  never in clear; it is written to ``systempw`` of the userdb line and nowhere else;
- the maildir belongs to the owner's mail Unix user: one of the owner's granted users,
  never root or a system account, known to this host (uid and gid from its passwd);
- a mailbox of another owner is never changed, listed or removed.

Mail users: uid and gid come from the host's passwd, or, when the site gives Exim a local
users file (``EximConfig.local_users_file``, as the local quickstart site does), from it.

Files: a registry ``state_dir/vmail/mailboxes.json`` (address -> owner, mail user, uid,
gid, maildir, hash) is the source of truth; from it the userdb text file (mode 0600,
``ADDRESS<TAB>uid=..|gid=..|home=..|mail=..|systempw=..``; when ``userdb`` is a
directory, its file ``domtool-vmail``) and Exim's lsearch map
(``ADDRESS: uid=N gid=N dir=MAILDIR``) are rewritten whole and renamed into place, then
``makeuserdb -f USERDB`` builds the ``.dat`` files authdaemond reads. A maildir is
``vmail_root/DOMAIN/USER`` (``cur``, ``new``, ``tmp``), created 0700 and owned by the mail
user; ``rm`` keeps it unless ``purge``.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from domtool import validate
from domtool.mailhash import BadHash, check_hash
from domtool.protocol import Mailbox, VmailAnswer, VmailArgs
from domtool.util.files import atomic_write
from domtool.validate import Invalid

ACTIONS = ("add", "passwd", "rm", "list")
MAX_ADDRESS = 254


class VmailRefused(ValueError):
    """The operation was refused; nothing changed."""


def _passwd(name: str) -> tuple[int, int] | None:
    try:
        ent = pwd.getpwnam(name)
    except KeyError:
        return None
    return ent.pw_uid, ent.pw_gid


@attrs.define
class Mailboxes:
    """The host's virtual mailboxes. ``accounts(name) -> (uid, gid) | None`` looks up a
    Unix user (the passwd database by default; tests give their own). ``run(argv)``
    runs makeuserdb (argv list; returns (status, output))."""

    state_dir: str
    vmail_root: str
    vmail_map: str
    userdb: str
    makeuserdb: str = "/usr/sbin/makeuserdb"
    min_id: int = 1000
    accounts: Callable[[str], tuple[int, int] | None] = _passwd
    run: Callable[[list[str]], tuple[int, str]] | None = None

    @property
    def userdb_file(self) -> str:
        """Where the mailboxes' userdb lines go: ``userdb`` itself, or, when it is a
        directory (Courier's makeuserdb reads every file in it, so a site can keep other
        accounts beside them), the file ``domtool-vmail`` in it."""
        if os.path.isdir(self.userdb):
            return os.path.join(self.userdb, "domtool-vmail")
        return self.userdb

    @property
    def registry_path(self) -> str:
        return os.path.join(self.state_dir, "vmail", "mailboxes.json")

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            with open(self.registry_path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{self.registry_path}: not a mailbox registry")
        return data

    # -- the operation -------------------------------------------------------

    def handle(self, a: VmailArgs, handled: Mapping[str, str]) -> dict[str, Any]:
        """Carry out ``a``; ``handled`` maps each mail domain this host serves to its
        owner (from the live state). Raises :class:`VmailRefused`."""
        boxes = self.load()
        if a.action == "list":
            mine = {k: v for k, v in boxes.items() if v["owner"] == a.owner}
            if a.domain is not None:
                mine = {k: v for k, v in mine.items() if k.endswith("@" + a.domain)}
            boxes_out = tuple(self._public(k, v) for k, v in sorted(mine.items()))
            return VmailAnswer(mailboxes=boxes_out).to_json()
        if a.action not in ACTIONS:
            raise VmailRefused(f"unknown vmail action {a.action!r}")
        domain, user = self._address(a)
        if handled.get(domain) != a.owner:
            raise VmailRefused(
                f"{domain} is not a mail domain of {a.owner} on this host "
                "(add handleMail to the domain and submit it first)"
            )
        address = f"{user}@{domain}"
        have = boxes.get(address)
        if have is not None and have["owner"] != a.owner:
            raise VmailRefused(f"{address} belongs to another member")
        if a.action == "add":
            if have is not None:
                raise VmailRefused(f"{address} already exists (use vmail passwd)")
            uid, gid, mail_user = self._mail_user(a)
            maildir = os.path.join(self.vmail_root, domain, user)
            boxes[address] = {
                "owner": a.owner,
                "mail_user": mail_user,
                "uid": uid,
                "gid": gid,
                "maildir": maildir,
                "hash": self._hash(a),
            }
            self._make_maildir(maildir, uid, gid)
            self._write(boxes)
            return VmailAnswer(added=address, maildir=maildir).to_json()
        if have is None:
            raise VmailRefused(f"{address} does not exist")
        if a.action == "passwd":
            have["hash"] = self._hash(a)
            self._write(boxes)
            return VmailAnswer(changed=address).to_json()
        del boxes[address]
        self._write(boxes)
        if a.purge:
            self._purge(have["maildir"], domain)
            return VmailAnswer(removed=address, purged=have["maildir"]).to_json()
        return VmailAnswer(removed=address, kept=have["maildir"]).to_json()

    # -- checks ----------------------------------------------------------------

    @staticmethod
    def _public(address: str, v: Mapping[str, Any]) -> Mailbox:
        return Mailbox(address, v["mail_user"], v["maildir"])

    @staticmethod
    def _address(a: VmailArgs) -> tuple[str, str]:
        try:
            domain = validate.check_domain(a.domain)
            user = validate.check_email_user(a.user).lower()
        except Invalid as e:
            raise VmailRefused(str(e)) from None
        if len(user) + 1 + len(domain) > MAX_ADDRESS:
            raise VmailRefused(f"the address is longer than {MAX_ADDRESS} characters")
        return domain, user

    @staticmethod
    def _hash(a: VmailArgs) -> str:
        try:
            return check_hash(a.hash)
        except BadHash as e:
            raise VmailRefused(f"password: {e}") from None

    def _mail_user(self, a: VmailArgs) -> tuple[int, int, str]:
        name = a.mail_user or (a.owner if a.owner in a.users else None)
        if name is None:
            raise VmailRefused(f"{a.owner} has no mail user: give one of your users")
        try:
            validate.check_unix_name(name)
        except Invalid as e:
            raise VmailRefused(str(e)) from None
        if name not in a.users:
            raise VmailRefused(f"{name!r} is not one of {a.owner}'s granted users")
        if name == "root":
            raise VmailRefused("the mail user cannot be the superuser")
        ids = self.accounts(name)
        if ids is None:
            raise VmailRefused(f"{name!r} is not a user of this host")
        uid, gid = ids
        if uid == 0 or gid == 0:
            raise VmailRefused(f"{name!r} is the superuser on this host")
        if uid < self.min_id:
            raise VmailRefused(f"{name!r} is a system account (uid {uid} on this host)")
        return uid, gid, name

    # -- effects ---------------------------------------------------------------

    def _make_maildir(self, maildir: str, uid: int, gid: int) -> None:
        root = os.path.realpath(self.vmail_root)
        domain_dir = os.path.dirname(maildir)
        os.makedirs(domain_dir, mode=0o755, exist_ok=True)
        if os.path.realpath(domain_dir) != os.path.join(root, os.path.basename(domain_dir)):
            raise VmailRefused(f"{domain_dir} is not inside the mailbox root")
        if os.path.lexists(maildir):
            st = os.lstat(maildir)
            if not os.path.isdir(maildir) or os.path.islink(maildir) or st.st_uid != uid:
                raise VmailRefused(f"{maildir} exists and is not this mail user's maildir")
        else:
            os.mkdir(maildir, 0o700)
        for d in (maildir, *(os.path.join(maildir, s) for s in ("cur", "new", "tmp"))):
            if not os.path.lexists(d):
                os.mkdir(d, 0o700)
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchown(fd, uid, gid)
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)

    def _purge(self, maildir: str, domain: str) -> None:
        root = os.path.realpath(self.vmail_root)
        real = os.path.realpath(maildir)
        if os.path.dirname(os.path.dirname(real)) != root or os.path.islink(maildir):
            raise VmailRefused(f"{maildir} is not inside the mailbox root; not purged")
        shutil.rmtree(real)

    def _write(self, boxes: dict[str, dict[str, Any]]) -> None:
        os.makedirs(os.path.dirname(self.registry_path), mode=0o700, exist_ok=True)
        userdb, vmap = [], []
        for address, v in sorted(boxes.items()):
            d = v["maildir"]
            userdb.append(
                f"{address}\tuid={v['uid']}|gid={v['gid']}|home={d}|mail={d}|systempw={v['hash']}\n"
            )
            vmap.append(f"{address}: uid={v['uid']} gid={v['gid']} dir={d}\n")
        atomic_write(
            self.registry_path, json.dumps(boxes, indent=1, sort_keys=True).encode(), 0o600
        )
        atomic_write(self.userdb_file, "".join(userdb).encode(), 0o600)
        status, out = self._makeuserdb()
        if status != 0:
            raise VmailRefused(f"makeuserdb failed: {out.strip()[:500]}")
        atomic_write(self.vmail_map, "".join(vmap).encode(), 0o644)

    def _makeuserdb(self) -> tuple[int, str]:
        argv = [self.makeuserdb, "-f", self.userdb]
        if self.run is not None:
            return self.run(argv)
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"},
        )
        return done.returncode, done.stdout + done.stderr


def mailboxes_for(backends: Mapping[str, Any], state_dir: str) -> Mailboxes | None:
    """The host's mailboxes from its exim backend's settings (None without one)."""
    exim = backends.get("exim")
    c = getattr(exim, "config", None)
    if c is None:
        return None
    accounts = _passwd
    if c.local_users_file:
        path = c.local_users_file

        def accounts(name: str) -> tuple[int, int] | None:
            return local_account(path, name)

    return Mailboxes(
        state_dir=state_dir,
        vmail_root=c.vmail_root,
        vmail_map=c.vmail_map,
        userdb=c.userdb,
        makeuserdb=c.makeuserdb,
        accounts=accounts,
    )


def local_account(path: str, name: str) -> tuple[int, int] | None:
    """(uid, gid) of ``name`` in the site's local users file (``USER: uid=N gid=N
    dir=...``, the one Exim reads for members' local mailboxes), or None."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key.strip() != name:
                    continue
                fields = dict(p.split("=", 1) for p in rest.split() if "=" in p)
                return int(fields["uid"]), int(fields["gid"])
    except (OSError, KeyError, ValueError):
        return None
    return None
