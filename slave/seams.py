"""The slave's seams: every process it runs, every file it touches and the time it reads.

The apply engine (``domtool.slave.engine``) acts on the world only through three small
protocols, each with a real implementation and a tested fake shipped here:

- :class:`ProcessRunner` runs one :class:`~domtool.slave.backend.Command` (an argv list,
  never a shell string) with a time limit, no stdin and a scrubbed environment.
  :class:`FakeProcessRunner` answers commands a test declared (buildbot's ``ExpectShell``
  idea) or a handler the test gives; anything else fails the test, and it records what ran.
- :class:`FileSystem` holds exactly the operations the engine needs: write, fsync a file
  (or many at once) or a directory, rename, symlink, readlink, listdir, remove, remove a tree, read, exists.
  :func:`atomic_write` and :func:`replace_symlink` build the durable patterns from them.
  :class:`FakeFileSystem` is an in-memory tree that can inject ``ENOSPC`` at the Nth
  write / fsync / rename and raise :class:`Crash` at the Nth mutating operation, after
  which a test "reboots" from what was durable (see the durability model there).
- :class:`Clock`: ``time()`` and ``sleep()``; :class:`FakeClock` advances on sleep.

One interface test suite (``tests/slave/test_seams.py``) runs over the real and the fake
file system and process runner.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import attrs

from domtool.slave.backend import Command

# ---------------------------------------------------------------------------
# Processes


@attrs.frozen
class Result:
    """What a finished command gave: its exit status and its output (decoded, lossy)."""

    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output(self, limit: int = 2000) -> str:
        """stdout and stderr together, stripped and trimmed to ``limit`` characters."""
        text = "\n".join(s.strip() for s in (self.stdout, self.stderr) if s.strip())
        if len(text) > limit:
            text = text[:limit] + " ...(trimmed)"
        return text


TIMED_OUT = 124  # returncode when a command ran past its time limit (as timeout(1))
NOT_FOUND = 127  # returncode when argv[0] cannot be executed (as a shell would say)


class ProcessRunner(Protocol):
    """Runs one command and waits for it. Never raises for the command's own failure."""

    def run(self, cmd: Command) -> Result: ...


def check_argv(cmd: Command) -> None:
    """Refuse what is not a plain argument list: empty, non-str or NUL-carrying items."""
    if not isinstance(cmd.argv, tuple) or not cmd.argv:
        raise ValueError(f"a command is a non-empty tuple of arguments, not {cmd.argv!r}")
    for arg in cmd.argv:
        if not isinstance(arg, str) or "\0" in arg:
            raise ValueError(f"bad argument {arg!r} in {cmd.argv!r}")


DEFAULT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


@attrs.define
class SubprocessRunner:
    """The real runner: ``subprocess`` with an argv list (no shell), stdin from /dev/null,
    only the environment given (by default PATH and a C locale), its own process group
    so that a timeout kills every child, and output decoded as UTF-8 with replacement."""

    env: dict[str, str] = attrs.field(factory=lambda: dict(DEFAULT_ENV))
    cwd: str = "/"

    def run(self, cmd: Command) -> Result:
        check_argv(cmd)
        try:
            proc = subprocess.Popen(
                list(cmd.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(self.env),
                cwd=self.cwd,
                close_fds=True,
                start_new_session=True,
                shell=False,
            )
        except (FileNotFoundError, PermissionError) as exc:
            return Result(NOT_FOUND, "", f"cannot run {cmd.argv[0]}: {exc.strerror}")
        try:
            out, err = proc.communicate(timeout=cmd.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            return Result(
                TIMED_OUT,
                out.decode("utf-8", "replace"),
                err.decode("utf-8", "replace") + f"\ntimed out after {cmd.timeout:g} s",
            )
        return Result(
            proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )


class UnexpectedCommand(AssertionError):
    """The code under test ran a command the test did not declare."""


@attrs.frozen
class Expect:
    """One declared command and the result the fake gives for it."""

    argv: tuple[str, ...]
    result: Result = Result(0)


@attrs.define
class FakeProcessRunner:
    """A runner for tests. Declared expectations are consumed in order (the argv must be
    equal); when none is pending, ``handler`` (if any) answers; otherwise the command is
    unexpected and :class:`UnexpectedCommand` is raised. ``ran`` records every command.
    (Ordered expectations assume one caller at a time; with concurrent callers, such as
    the engine's ``check_workers`` > 1, answer through a handler.)"""

    handler: Callable[[Command], Result] | None = None
    ran: list[Command] = attrs.field(factory=list)
    _expected: deque[Expect] = attrs.field(factory=deque)

    def expect(self, *argv: str, returncode: int = 0, stdout: str = "", stderr: str = ""):
        self._expected.append(Expect(tuple(argv), Result(returncode, stdout, stderr)))
        return self

    def run(self, cmd: Command) -> Result:
        check_argv(cmd)
        self.ran.append(cmd)
        if self._expected:
            want = self._expected.popleft()
            if want.argv != cmd.argv:
                raise UnexpectedCommand(f"expected {want.argv!r}, got {cmd.argv!r}")
            return want.result
        if self.handler is not None:
            return self.handler(cmd)
        raise UnexpectedCommand(f"unexpected command {cmd.argv!r}")

    def assert_all_ran(self) -> None:
        if self._expected:
            raise AssertionError(f"expected commands never ran: {[e.argv for e in self._expected]}")

    @property
    def argvs(self) -> list[tuple[str, ...]]:
        return [c.argv for c in self.ran]


# ---------------------------------------------------------------------------
# Clock


class Clock(Protocol):
    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RealClock:
    """Wall time and a real sleep."""

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@attrs.define
class FakeClock:
    """A clock that only moves when told to or when something sleeps on it."""

    now: float = 1_700_000_000.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------
# Files


class FileSystem(Protocol):
    """What the engine does to files. Paths are absolute strings.

    ``write`` creates or truncates a regular file (not following a symlink at ``path``)
    and writes all of ``data``; it is not durable until ``fsync(path)``. Directory
    changes (create, rename, symlink, remove) are durable once ``fsync_dir`` of the
    directory holding the entry has returned. ``rename`` replaces ``dst`` atomically.
    ``link`` makes ``dst`` a second name of the regular file ``src`` (a hard link, not
    following a symlink at ``src``): the same content, durable as ``src``'s is, the
    new name durable once its directory is fsynced; a file with two names must never be
    written in place.
    """

    def write(self, path: str, data: bytes) -> None: ...

    def fsync(self, path: str) -> None: ...

    def fsync_dir(self, path: str) -> None: ...

    def fsync_many(self, paths: list[str]) -> None:
        """``fsync`` each of ``paths`` (in any order, possibly concurrently)."""

    def rename(self, src: str, dst: str) -> None: ...

    def mkdir(self, path: str) -> None: ...

    def symlink(self, target: str, path: str) -> None: ...

    def link(self, src: str, dst: str) -> None: ...

    def readlink(self, path: str) -> str: ...

    def is_symlink(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def exists(self, path: str) -> bool: ...

    def read(self, path: str) -> bytes: ...

    def listdir(self, path: str) -> list[str]: ...

    def remove(self, path: str) -> None: ...

    def rmtree(self, path: str) -> None: ...


def atomic_write(fs: FileSystem, path: str, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``path`` so that it holds either its old content or all of ``data``: write a
    temporary sibling, fsync it, rename it over ``path``, fsync the directory."""
    tmp = path + ".tmp"
    fs.write(tmp, data)
    fs.fsync(tmp)
    fs.rename(tmp, path)
    if sync_dir:
        fs.fsync_dir(os.path.dirname(path))


def replace_symlink(fs: FileSystem, target: str, path: str) -> None:
    """Point the symlink ``path`` at ``target`` atomically and durably: create
    ``path.tmp``, rename it over ``path``, fsync the directory."""
    tmp = path + ".tmp"
    if fs.is_symlink(tmp) or fs.exists(tmp):
        fs.remove(tmp)
    fs.symlink(target, tmp)
    fs.rename(tmp, path)
    fs.fsync_dir(os.path.dirname(path))


def makedirs(fs: FileSystem, path: str) -> bool:
    """Create ``path`` and missing parents, fsyncing each parent that gained an entry.
    Returns whether anything was created."""
    if fs.is_dir(path):
        return False
    parent = os.path.dirname(path)
    if parent != path:
        makedirs(fs, parent)
    fs.mkdir(path)
    fs.fsync_dir(parent)
    return True


@attrs.define
class RealFileSystem:
    """The file system seam over ``os``. Writes never follow a symlink at the path."""

    mode: int = 0o644

    def write(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, self.mode)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)

    def fsync(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def fsync_many(self, paths: list[str]) -> None:
        """Concurrent fsyncs: the file system commits them in far fewer journal commits
        than one after the other (10,000 new units: seconds instead of tens)."""
        if len(paths) <= 4:
            for path in paths:
                self.fsync(path)
            return
        with ThreadPoolExecutor(max_workers=min(32, len(paths))) as pool:
            for _ in pool.map(self.fsync, paths):
                pass

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o755)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, path)

    def link(self, src: str, dst: str) -> None:
        os.link(src, dst, follow_symlinks=False)

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def is_symlink(self, path: str) -> bool:
        return os.path.islink(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path) and not os.path.islink(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def remove(self, path: str) -> None:
        os.unlink(path)

    def rmtree(self, path: str) -> None:
        if os.path.islink(path):
            os.unlink(path)
        else:
            shutil.rmtree(path)


class Crash(BaseException):
    """The fake file system's simulated power cut. A BaseException, so that the code
    under test cannot catch it by accident with ``except Exception``."""


def disk_full(path: str) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


@attrs.define(eq=False)
class _File:
    data: bytes = b""
    durable: bytes = b""


@attrs.define(eq=False)
class _Dir:
    entries: dict = attrs.field(factory=dict)
    durable: dict = attrs.field(factory=dict)


@attrs.frozen
class _Link:
    target: str


MUTATING = (
    "write",
    "fsync",
    "fsync_dir",
    "rename",
    "mkdir",
    "symlink",
    "link",
    "remove",
    "rmtree",
)


@attrs.define
class FakeFileSystem:
    """An in-memory file system with faults and crashes, for tests.

    Durability model (deliberately pessimistic, and simple):

    - a file's *content* is durable as of its last ``fsync``; a file never fsynced
      comes back empty;
    - a directory's *entries* (names created, renamed in or out, removed, symlinks) are
      durable as of the last ``fsync_dir`` of that directory. Entries are inodes, so a
      durable name keeps pointing at the file even if it is renamed later;
    - :meth:`crash_images` gives images a real machine could come back with: only
      what was synced (``"synced"``), everything done so far (``"visible"``), and on
      request seeded "mixed" images where every directory's entries and every file's
      content independently come back synced or visible (more pessimistic than a
      journalling file system, which keeps metadata operations in order). Images that
      keep some but not all unsynced operations *within* one directory, or a prefix of
      a file's unsynced writes, are not modelled.

    Faults: ``fail`` maps an operation kind ("write", "fsync", "rename", "mkdir",
    "symlink", "link", "fsync_dir") to the 1-based count at which that kind raises ENOSPC once
    (a failing write leaves half the data behind). ``crash_at`` raises :class:`Crash`
    instead of performing the mutating operation with that 0-based index. ``ops``
    records every mutating operation as (kind, path); :meth:`arm` resets the counts.
    """

    root: _Dir = attrs.field(factory=_Dir)
    fail: dict[str, int] = attrs.field(factory=dict)
    crash_at: int | None = None
    ops: list[tuple[str, str]] = attrs.field(factory=list)
    _counts: dict[str, int] = attrs.field(factory=dict)

    def arm(self, *, fail: dict[str, int] | None = None, crash_at: int | None = None) -> None:
        """Start counting afresh (``ops`` emptied) with these faults armed."""
        self.ops.clear()
        self._counts.clear()
        self.fail = dict(fail or {})
        self.crash_at = crash_at

    # -- internals ----------------------------------------------------------

    def _op(self, kind: str, path: str) -> None:
        if self.crash_at is not None and len(self.ops) >= self.crash_at:
            raise Crash(f"crash before operation {len(self.ops)} ({kind} {path})")
        self.ops.append((kind, path))
        n = self._counts[kind] = self._counts.get(kind, 0) + 1
        if self.fail.get(kind) == n:
            raise disk_full(path)

    @staticmethod
    def _parts(path: str) -> list[str]:
        if not path.startswith("/"):
            raise ValueError(f"not an absolute path: {path!r}")
        return [p for p in path.split("/") if p and p != "."]

    def _resolve_dir(self, parts: list[str], depth: int = 0) -> _Dir:
        """The directory named by ``parts``, following symlinks."""
        node = self._lookup(parts, follow=True, depth=depth)
        if not isinstance(node, _Dir):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/" + "/".join(parts))
        return node

    def _lookup(self, parts: list[str], *, follow: bool, depth: int = 0):
        if depth > 20:
            raise OSError(errno.ELOOP, "too many symlinks", "/" + "/".join(parts))
        node: object = self.root
        walked: list[str] = []
        for i, name in enumerate(parts):
            if name == "..":
                walked = walked[:-1]
                node = self._lookup(walked, follow=True, depth=depth + 1)
                continue
            if not isinstance(node, _Dir):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/" + "/".join(walked))
            child = node.entries.get(name)
            if child is None:
                raise FileNotFoundError(
                    errno.ENOENT, "no such file or directory", "/" + "/".join(parts)
                )
            last = i == len(parts) - 1
            if isinstance(child, _Link) and (follow or not last):
                target = child.target
                base = [] if target.startswith("/") else walked
                resolved = base + [p for p in target.split("/") if p and p != "."]
                child = self._lookup(self._norm(resolved), follow=True, depth=depth + 1)
                walked = self._norm(resolved)
            else:
                walked = walked + [name]
            node = child
        return node

    @staticmethod
    def _norm(parts: list[str]) -> list[str]:
        out: list[str] = []
        for p in parts:
            if p == "..":
                out = out[:-1]
            else:
                out.append(p)
        return out

    def _parent(self, path: str) -> tuple[_Dir, str]:
        parts = self._parts(path)
        if not parts:
            raise OSError(errno.EBUSY, "the root", path)
        return self._resolve_dir(parts[:-1]), parts[-1]

    # -- the FileSystem protocol ---------------------------------------------

    def write(self, path: str, data: bytes) -> None:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        if isinstance(node, _Link):
            raise OSError(errno.ELOOP, "a symlink (not followed)", path)
        try:
            self._op("write", path)
        except OSError:
            if node is None:
                node = parent.entries[name] = _File()
            node.data = bytes(data[: len(data) // 2])
            raise
        if node is None:
            node = parent.entries[name] = _File()
        node.data = bytes(data)

    def fsync(self, path: str) -> None:
        node = self._lookup(self._parts(path), follow=False)
        if not isinstance(node, _File):
            raise OSError(errno.EINVAL, "fsync of a non-file", path)
        self._op("fsync", path)
        node.durable = node.data

    def fsync_many(self, paths: list[str]) -> None:
        for path in paths:
            self.fsync(path)

    def fsync_dir(self, path: str) -> None:
        node = self._resolve_dir(self._parts(path))
        self._op("fsync_dir", path)
        node.durable = dict(node.entries)

    def rename(self, src: str, dst: str) -> None:
        sparent, sname = self._parent(src)
        dparent, dname = self._parent(dst)
        node = sparent.entries.get(sname)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", src)
        old = dparent.entries.get(dname)
        if isinstance(old, _Dir) and (old.entries or not isinstance(node, _Dir)):
            raise OSError(errno.ENOTEMPTY, "directory not empty", dst)
        if isinstance(node, _Dir) and old is not None and not isinstance(old, _Dir):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", dst)
        self._op("rename", f"{src} -> {dst}")
        del sparent.entries[sname]
        dparent.entries[dname] = node

    def mkdir(self, path: str) -> None:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        self._op("mkdir", path)
        parent.entries[name] = _Dir()

    def symlink(self, target: str, path: str) -> None:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        self._op("symlink", path)
        parent.entries[name] = _Link(target)

    def link(self, src: str, dst: str) -> None:
        node = self._lookup(self._parts(src), follow=False)
        if isinstance(node, _Dir):
            raise OSError(errno.EPERM, "hard link of a directory", src)
        parent, name = self._parent(dst)
        if name in parent.entries:
            raise FileExistsError(errno.EEXIST, "file exists", dst)
        self._op("link", dst)
        parent.entries[name] = node  # the same inode: its content and durability

    def readlink(self, path: str) -> str:
        node = self._lookup(self._parts(path), follow=False)
        if not isinstance(node, _Link):
            raise OSError(errno.EINVAL, "not a symlink", path)
        return node.target

    def is_symlink(self, path: str) -> bool:
        try:
            return isinstance(self._lookup(self._parts(path), follow=False), _Link)
        except OSError:
            return False

    def is_dir(self, path: str) -> bool:
        try:
            return isinstance(self._lookup(self._parts(path), follow=False), _Dir)
        except OSError:
            return False

    def exists(self, path: str) -> bool:
        try:
            self._lookup(self._parts(path), follow=True)
        except OSError:
            return False
        return True

    def read(self, path: str) -> bytes:
        node = self._lookup(self._parts(path), follow=True)
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return node.data

    def listdir(self, path: str) -> list[str]:
        return sorted(self._resolve_dir(self._parts(path)).entries)

    def remove(self, path: str) -> None:
        parent, name = self._parent(path)
        node = parent.entries.get(name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        self._op("remove", path)
        del parent.entries[name]

    def rmtree(self, path: str) -> None:
        parent, name = self._parent(path)
        if name not in parent.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        self._op("rmtree", path)
        del parent.entries[name]

    # -- test helpers --------------------------------------------------------

    def crash_images(self, mixed: int = 0) -> Iterator[tuple[str, FakeFileSystem]]:
        """The states a machine could come back with after a crash now (see above),
        plus ``mixed`` images where each directory and each file independently keeps
        its synced or its visible state (seeded, so a failure can be replayed)."""
        yield "synced", self.reboot(keep="synced")
        yield "visible", self.reboot(keep="visible")
        for seed in range(mixed):
            yield f"mixed-{seed}", self.reboot(keep="mixed", seed=seed)

    def reboot(self, keep: str = "synced", seed: int = 0) -> FakeFileSystem:
        """A fresh, fault-free file system holding what survives a crash now."""
        if keep not in ("synced", "visible", "mixed"):
            raise ValueError(keep)
        rng = random.Random(seed)

        def synced() -> bool:
            return keep == "synced" or (keep == "mixed" and rng.random() < 0.5)

        def copy(d: _Dir) -> _Dir:
            entries = d.durable if synced() else d.entries
            out = _Dir()
            for name, node in sorted(entries.items()):
                if isinstance(node, _Dir):
                    out.entries[name] = copy(node)
                elif isinstance(node, _File):
                    data = node.durable if synced() else node.data
                    out.entries[name] = _File(data, data)
                else:
                    out.entries[name] = node
            out.durable = dict(out.entries)
            return out

        # The root directory itself always exists; its entries follow the same rule.
        return FakeFileSystem(root=copy(self.root))

    def snapshot(self, path: str = "/") -> dict[str, bytes | str]:
        """Every file (bytes) and symlink ("-> target") under ``path``, by absolute path."""
        out: dict[str, bytes | str] = {}

        def walk(d: _Dir, prefix: str) -> None:
            for name, node in sorted(d.entries.items()):
                p = f"{prefix}/{name}"
                if isinstance(node, _Dir):
                    walk(node, p)
                elif isinstance(node, _File):
                    out[p] = node.data
                else:
                    out[p] = "-> " + node.target

        start = self._lookup(self._parts(path), follow=False)
        walk(start, path.rstrip("/"))
        return out

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.ops if k == kind)
