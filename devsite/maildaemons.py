"""Run the real mail daemons of a local site (Exim, Courier IMAP, spamd) on loopback.

Used by the daemon tests (and usable by ``domtool-quickstart``), as ``localdaemons`` does
for named and apache2. Each daemon gets a root of its own:

- Exim reads its config from ``/etc/exim4/exim4.conf`` when it is started without ``-C``,
  and only then keeps the root privilege it needs to deliver as a member's mail user
  (``-C`` drops it unless the file is in the compiled ``/etc/exim4/trusted_configs``).
  So the daemon runs in a private mount namespace (``unshare -m``) where ``ROOT/etc/exim4``
  is bind-mounted over ``/etc/exim4``; nothing on the host changes. Checks (``exim -C``)
  need no privilege and read the same file directly. A production site writes its config
  to ``/etc/exim4/exim4.conf`` itself (see docs/deploy.md).
- Courier's authdaemond and imapd have their paths compiled in (``/etc/courier``,
  ``/run/courier``): they run together in one private mount namespace with
  ``ROOT/etc/courier`` and ``ROOT/run/courier`` bind-mounted there, so the userdb the
  vmail operations write under ``ROOT/etc/courier`` is what they read.
- spamd (Debian's ``spamd`` package) listens on a loopback port with no user configs.

Every daemon is a child process (foreground) of its own session, started and waited for by
``localdaemons.start``; its :meth:`~localdaemons.Daemon.stop` signals the whole process
group, so nothing is left behind.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import attrs

from domtool.devsite.localdaemons import Daemon, binary, connects, start
from domtool.slave.backends.exim import EximConfig, site_config

__all__ = [
    "CourierSite",
    "courier_available",
    "exim_available",
    "exim_config",
    "imap_subjects",
    "prepare_courier",
    "prepare_exim",
    "spamd_binary",
    "start_courier",
    "start_exim",
    "start_spamd",
]

EXIM = "/usr/sbin/exim4"
EXIM_USER = "Debian-exim"
AUTHDAEMOND = "/usr/lib/courier/courier-authlib/authdaemond"
IMAPLOGIN = "/usr/lib/courier/courier/imaplogin"
IMAPD = "/usr/bin/imapd"
COURIERTCPD = "/usr/sbin/couriertcpd"


_NAMESPACES: list[bool] = []


def private_mounts_work() -> bool:
    """Whether this process may make a private mount namespace (root, not in a locked-down
    container): both daemons need one. Asked once."""
    if not _NAMESPACES:
        try:
            done = subprocess.run(
                ["unshare", "-m", "--propagation", "private", "true"],
                capture_output=True,
                timeout=10,
            )
            _NAMESPACES.append(done.returncode == 0)
        except (OSError, subprocess.TimeoutExpired):
            _NAMESPACES.append(False)
    return _NAMESPACES[0]


def exim_available() -> bool:
    return os.path.exists(EXIM) and shutil.which("unshare") is not None


def courier_available() -> bool:
    return all(os.path.exists(p) for p in (AUTHDAEMOND, IMAPLOGIN, IMAPD, COURIERTCPD))


def spamd_binary() -> str | None:
    """spamd from $DOMTOOL_SPAMD, else the PATH and the sbin directories."""
    env = os.environ.get("DOMTOOL_SPAMD")
    if env and os.access(env, os.X_OK):
        return env
    return binary("spamd")


# ---------------------------------------------------------------------------
# Exim


def exim_config(root: Path, port: int, state_dir: Path, **kw) -> EximConfig:
    """The backend configuration of an Exim rooted at ``root`` (see :func:`prepare_exim`)."""
    root = Path(root)
    defaults = dict(
        live_config=str(root / "etc" / "exim4" / "exim4.conf"),
        state_dir=str(state_dir),
        spool_dir=str(root / "spool"),
        log_dir=str(root / "log"),
        pid_file=str(root / "run" / "exim.pid"),
        vmail_map=str(root / "vmail.map"),
        vmail_root=str(root / "vmail"),
        port=port,
        primary_hostname="mail.test.invalid",
        postmaster="postmaster@localhost",
        binary=EXIM,
    )
    defaults.update(kw)
    return EximConfig(**defaults)


def prepare_exim(config: EximConfig) -> None:
    """Write the site config and make the spool, log and run directories (the spool and
    log owned by Exim's user, as Exim requires)."""
    live = Path(config.live_config)
    live.parent.mkdir(parents=True, exist_ok=True)
    live.write_bytes(site_config(config))
    live.chmod(0o644)
    try:
        ent = pwd.getpwnam(config.exim_user)
        uid, gid = ent.pw_uid, ent.pw_gid
    except KeyError:
        uid = gid = -1
    for d in (config.spool_dir, config.log_dir):
        Path(d).mkdir(parents=True, exist_ok=True)
        if uid >= 0 and os.geteuid() == 0:
            os.chown(d, uid, gid)
    Path(config.pid_file).parent.mkdir(parents=True, exist_ok=True)
    Path(config.vmail_root).mkdir(parents=True, exist_ok=True)
    Path(config.vmail_root).chmod(0o755)
    vmap = Path(config.vmail_map)
    if not vmap.exists():
        vmap.write_text("")
    vmap.chmod(0o644)


def start_exim(config: EximConfig, log: Path, *, queue_interval: str = "5m") -> Daemon:
    """Start ``exim -bdf`` (foreground daemon, queue runs every ``queue_interval``) in a
    private mount namespace where its own ``etc/exim4`` is ``/etc/exim4``."""
    etc = str(Path(config.live_config).parent)
    if Path(config.live_config).name != "exim4.conf":
        raise ValueError("the live config must be named exim4.conf (Exim's default name)")
    script = 'mount --bind "$0" /etc/exim4 && exec "$1" -bdf -q"$2"'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    return start(
        "exim",
        [*argv, etc, config.binary, queue_interval],
        log,
        lambda: connects(config.port, config.address),
        what=f"exim on {config.port}",
        whole_group=True,
    )


# ---------------------------------------------------------------------------
# Courier IMAP (authdaemond with userdb, couriertcpd + imapd)


@attrs.frozen
class CourierSite:
    """Where a Courier rooted at ``root`` keeps its files: ``etc`` (bound to
    /etc/courier: authdaemonrc, userdb), ``run`` (bound to /run/courier)."""

    root: Path
    port: int
    address: str = "127.0.0.1"

    @property
    def etc(self) -> Path:
        return self.root / "etc" / "courier"

    @property
    def run(self) -> Path:
        return self.root / "run" / "courier"

    @property
    def userdb(self) -> Path:
        """A directory: makeuserdb reads every file in it (the vmail operations write
        ``domtool-vmail``; the local site adds its members' local accounts beside it)."""
        return self.etc / "userdb"


AUTHDAEMONRC = """\
authmodulelist="authuserdb"
authmodulelistorig="authuserdb"
daemons=3
authdaemonvar=/run/courier/authdaemon
DEBUG_LOGIN=0
DEFAULTOPTIONS=""
LOGGEROPTS=""
"""


def prepare_courier(root: Path, port: int) -> CourierSite:
    site = CourierSite(Path(root), port)
    site.etc.mkdir(parents=True, exist_ok=True)
    (site.run / "authdaemon").mkdir(parents=True, exist_ok=True)
    (site.etc / "authdaemonrc").write_text(AUTHDAEMONRC)
    site.userdb.mkdir(exist_ok=True)
    site.userdb.chmod(0o700)
    subprocess.run(
        ["makeuserdb", "-f", str(site.userdb)], check=True, capture_output=True, timeout=30
    )
    return site


def start_courier(site: CourierSite, log: Path) -> Daemon:
    """authdaemond and imapd (through couriertcpd) in one private mount namespace."""
    script = (
        'mount --bind "$0" /etc/courier && mount --bind "$1" /run/courier && '
        '"$2" & exec "$3" -address="$4" -maxprocs=20 -maxperip=20 -nodnslookup '
        '-noidentlookup "$5" "$6" "$7" Maildir'
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "IMAP_CAPABILITY": "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE",
        "IMAP_TLS_REQUIRED": "0",
        "IMAP_EMPTYTRASH": "",
        "IMAP_USELOCKS": "1",
        "IMAP_TRASHFOLDERNAME": "Trash",
        "HEADERFROM": "X-IMAP-Sender",
        "MAILDIRPATH": "Maildir",
    }
    argv = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(site.etc),
        str(site.run),
        AUTHDAEMOND,
        COURIERTCPD,
        site.address,
        str(site.port),
        IMAPLOGIN,
        IMAPD,
    ]
    return start(
        "courier-imap",
        argv,
        log,
        lambda: connects(site.port, site.address) and (site.run / "authdaemon" / "socket").exists(),
        what=f"imapd on {site.port}",
        env=env,
        whole_group=True,
    )


def imap_subjects(port: int, login: str, password: str, address: str = "127.0.0.1") -> list[str]:
    """The Subject lines of ``login``'s INBOX, read over IMAP (read-only)."""
    with imaplib.IMAP4(address, port) as im:
        im.login(login, password)
        im.select("INBOX", readonly=True)
        _, data = im.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, msg = im.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            out.append(msg[0][1].decode().strip())
        return out


# ---------------------------------------------------------------------------
# spamd


def start_spamd(root: Path, port: int, log: Path, spamd: str | None = None) -> Daemon:
    """spamd on 127.0.0.1:port, no user preferences, no network tests."""
    spamd = spamd or spamd_binary()
    if spamd is None:
        raise RuntimeError("spamd is not installed (Debian package spamd)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    argv = [
        "perl",
        "-T",
        spamd,
        "--listen-ip=127.0.0.1",
        f"--port={port}",
        "--allowed-ips=127.0.0.1",
        "--nouser-config",
        "--max-children=2",
        "--min-children=1",
        f"--pidfile={root / 'spamd.pid'}",
        "--syslog=stderr",
        "--local",
        "--username=nobody",
    ]
    return start(
        "spamd",
        argv,
        log,
        lambda: connects(port),
        what=f"spamd on {port}",
        timeout=60,
        cwd=root,
        whole_group=True,
    )
