"""The per-member Apache log splitter: ONE piped logger for the whole site's access log
(and one for its error log), never a ``CustomLog`` per vhost (each costs a descriptor in
every Apache process: see docs/design.md "scale traps").

Apache runs it as root (``CustomLog "||python3 -m domtool.slave.logsplit access ..."``,
``ErrorLog "||... error ..."``: see ``backends/apache.py``). Each line names its vhost:
the access format starts with ``%v``, the error format's third bracket is ``[%v]``. The
vhost's owner comes from the live generation's manifest (``<state>/current/manifest.json``,
re-read when ``current`` moves), the owner's uid and gid from the password database. The
line goes to::

    <root>/<member>/                    root:<member's group> 0750
    <root>/<member>/<fqdn>.access.log   <member>:<member's group> 0600
    <root>/<member>/<fqdn>.error.log

so a member reads its own logs and nobody else's. A line of no member's vhost (the
catch-all, server messages), of a member without a Unix account, root or a system
account, or a name that is not a plain host name goes to the site's own log (``--site``).
Files are opened with ``O_NOFOLLOW`` in directories only root can write, so a member
cannot point its log anywhere else. A log moved away by logrotate is noticed (its path no
longer names the open file) and opened anew at the next line. At most ``MAX_OPEN`` files
are held open (least recently used closed first), whatever the number of vhosts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pwd
import re
import stat
import sys
import time
from pathlib import Path

__all__ = ["Splitter", "main"]

_ERROR_VHOST = re.compile(rb"^\[[^\]]*\] \[[^\]]*\] \[([^\]]*)\]")
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
MIN_UID = 1000  # below: system accounts, never given a member's logs
RECHECK = 1.0  # seconds between checks that the manifest or a log file moved
MAX_OPEN = 1024  # log files held open at once (least recently used closed first): a site
# of 20,000 vhosts must not need 20,000 descriptors in one process (main raises the soft
# descriptor limit to fit)


class Splitter:
    """Routes each log line to its member's file (see the module docstring)."""

    def __init__(
        self, kind: str, state_dir: str | os.PathLike, root: str | os.PathLike, site_log: str
    ) -> None:
        if kind not in ("access", "error"):
            raise ValueError(f"kind must be access or error, not {kind!r}")
        self.kind = kind
        self.state = Path(state_dir)
        self.root = Path(root)
        self.site_log = site_log
        self._owners: dict[str, str] = {}
        self._current: str | None = None
        self._checked = 0.0
        # path -> (fd, last check), least recently used first
        self._files: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()
        self._ids: dict[str, tuple[int, int] | None] = {}
        self._targets: dict[bytes, tuple[str, tuple[int, int] | None]] = {}  # by vhost field
        self._dirs: set[str] = set()  # member directories already checked

    # -- who owns what ---------------------------------------------------------

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RECHECK and self._current is not None:
            return
        self._checked = now
        try:
            current = os.path.realpath(self.state / "current")
            if current == self._current:
                return
            manifest = json.loads((Path(current) / "manifest.json").read_text())
            units = manifest.get("backends", {}).get("apache", {}).get("units", [])
            owners = {}
            for u in units:
                kind, _, name = str(u.get("key", "")).partition(":")
                if kind == "vhost" and name:
                    owners[name.lower()] = str(u.get("owner"))
        except (OSError, ValueError, AttributeError):
            return  # keep what we had; try again later
        self._owners, self._current = owners, current
        self._ids.clear()
        self._targets.clear()
        self._dirs.clear()

    def _account(self, member: str) -> tuple[int, int] | None:
        if member not in self._ids:
            try:
                pw = pwd.getpwnam(member)
                ok = pw.pw_uid >= MIN_UID and pw.pw_uid != 65534
                self._ids[member] = (pw.pw_uid, pw.pw_gid) if ok else None
            except KeyError:
                self._ids[member] = None
        return self._ids[member]

    def _head(self, line: bytes) -> bytes:
        if self.kind == "access":
            return line.split(b" ", 1)[0]
        m = _ERROR_VHOST.match(line)
        return m.group(1) if m else b""

    def vhost(self, line: bytes) -> str | None:
        """The vhost a line names (lower case), or None."""
        return self._name(self._head(line))

    def _name(self, head: bytes) -> str | None:
        try:
            name = head.decode("ascii").lower()
        except UnicodeDecodeError:
            return None
        return name if _HOST.match(name) and ".." not in name else None

    def target(self, line: bytes) -> tuple[str, tuple[int, int] | None]:
        """The file the line goes to, and the (uid, gid) it belongs to (None: root's)."""
        self._refresh()
        head = self._head(line)
        hit = self._targets.get(head)
        if hit is not None:
            return hit
        name = self._name(head)
        member = self._owners.get(name) if name else None
        ids = self._account(member) if member else None
        if name is None or ids is None:
            found: tuple[str, tuple[int, int] | None] = (self.site_log, None)
        else:
            found = (f"{self.root}/{member}/{name}.{self.kind}.log", ids)
        if len(self._targets) < 100_000:
            self._targets[head] = found
        return found

    # -- files -------------------------------------------------------------------

    def _open(self, path: str, ids: tuple[int, int] | None) -> int:
        d = os.path.dirname(path)
        if ids is not None and d not in self._dirs:
            os.makedirs(self.root, mode=0o755, exist_ok=True)
            try:
                os.mkdir(d, 0o750)
            except FileExistsError:
                pass
            st = os.lstat(d)
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(f"{d} is not a directory")
            if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (0, ids[1], 0o750):
                os.chown(d, 0, ids[1], follow_symlinks=False)
                os.chmod(d, 0o750)
            self._dirs.add(d)  # checked once per manifest: only root can change it
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600 if ids is not None else 0o640)
        if ids is not None:
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != ids or stat.S_IMODE(st.st_mode) != 0o600:
                os.fchown(fd, *ids)
                os.fchmod(fd, 0o600)
        return fd

    def _fd(self, path: str, ids: tuple[int, int] | None) -> int:
        now = time.monotonic()
        have = self._files.get(path)
        if have is not None:
            self._files.move_to_end(path)
            fd, checked = have
            if now - checked < RECHECK:
                return fd
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
            except OSError:
                same = False
            if same:
                self._files[path] = (fd, now)
                return fd
            os.close(fd)  # rotated away: a new file at the path
            del self._files[path]
        while len(self._files) >= MAX_OPEN:
            _, (old, _) = self._files.popitem(last=False)
            os.close(old)
        fd = self._open(path, ids)
        self._files[path] = (fd, now)
        return fd

    def write(self, line: bytes) -> None:
        """Write one line (with its newline) where it belongs."""
        path, ids = self.target(line)
        try:
            fd = self._fd(path, ids)
        except OSError as e:
            print(f"domtool-logsplit: {path}: {e}", file=sys.stderr)
            if path == self.site_log:
                return
            fd = self._fd(self.site_log, None)
        os.write(fd, line if line.endswith(b"\n") else line + b"\n")

    def run(self, stream) -> None:
        for line in stream:
            self.write(line)

    def close(self) -> None:
        for fd, _ in self._files.values():
            os.close(fd)
        self._files.clear()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="domtool-logsplit", description="Split Apache's site log per member (piped log)."
    )
    p.add_argument("kind", choices=("access", "error"))
    p.add_argument("--state", required=True, help="the slave's state directory")
    p.add_argument("--root", required=True, help="the members' log root, e.g. /var/log/domtool")
    p.add_argument("--site", required=True, help="the site's own log for every other line")
    args = p.parse_args(argv)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_OPEN + 64 if hard == resource.RLIM_INFINITY else min(MAX_OPEN + 64, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    splitter = Splitter(args.kind, args.state, args.root, args.site)
    try:
        splitter.run(sys.stdin.buffer)
    finally:
        splitter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
