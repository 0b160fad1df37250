"""The slave's re-check that a member path really lies under the member's granted paths.

The language checks paths lexically (``domtool.perms``); on a real host
``/home/alice/www`` may be a symlink to ``/home/bob`` or ``/etc``. Before the slave uses a
member path it calls :func:`check_member_path`, which validates the text
(``validate.check_abs_path``), then resolves symlinks one component at a time (``lstat``
and ``readlink``, at most 40 links, loops refused) and requires the real location to be
one of the granted paths or under one, each granted path resolved the same way. When the
slave must itself read a member file (an htpasswd file, a certificate or key), it uses
:func:`open_nofollow`, which walks from ``/`` with ``openat(O_NOFOLLOW)`` for every
component, so the file it opens is the one it checked, whatever happens to symlinks.

Limits (time of check to time of use): :func:`check_member_path` answers for the moment
it runs. The member owns the tree and can swap a directory for a symlink afterwards, so
a path handed to a daemon (a DocumentRoot) is only as safe as the daemon's own rules:
Apache serves member trees as the member through suexec and with ``SymLinksIfOwnerMatch``
rather than ``FollowSymLinks``. Re-checks at every apply narrow the window; they do not
close it. :func:`open_nofollow` has no such window for the file it returns, but a parent
directory already opened may be renamed by its owner while the walk goes on; within a
granted tree that only moves the member's own files.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import BinaryIO

from domtool import validate
from domtool.validate import Invalid

__all__ = ["PathRefused", "check_member_path", "open_nofollow", "resolve"]

MAX_LINKS = 40


class PathRefused(ValueError):
    """A member path does not really lie under the member's granted paths (or cannot be
    checked); the message says which path and why."""


def resolve(path: str) -> tuple[str, bool]:
    """Resolve an absolute path's symlinks component by component.

    Returns (real path, exists). A missing component ends the walk: the remainder is
    joined lexically and ``exists`` is False. Loops, more than :data:`MAX_LINKS` links, a
    non-directory in the middle and unreadable directories raise :class:`PathRefused`.
    """
    pending = [p for p in reversed(path.split("/")) if p]
    cur = "/"
    links = 0
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            cur = os.path.dirname(cur)
            continue
        candidate = os.path.join(cur, name)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            rest = "/".join(reversed(pending))
            return validate.normalise_path(candidate + "/" + rest), False
        except NotADirectoryError:
            raise PathRefused(f"{path!r}: {cur!r} is not a directory") from None
        except OSError as e:
            raise PathRefused(f"{path!r}: cannot check {candidate!r}: {e.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise PathRefused(f"{path!r}: too many levels of symbolic links (a loop?)")
            try:
                target = os.readlink(candidate)
            except OSError as e:  # replaced between lstat and readlink
                raise PathRefused(
                    f"{path!r}: cannot read link {candidate!r}: {e.strerror}"
                ) from None
            if target.startswith("/"):
                cur = "/"
            pending.extend(p for p in reversed(target.split("/")) if p)
            continue
        if pending and not stat.S_ISDIR(st.st_mode):
            raise PathRefused(f"{path!r}: {candidate!r} is not a directory")
        cur = candidate
    return cur, True


def _under(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip("/") + "/")


def check_member_path(path: str, granted: Iterable[str], *, must_exist: bool = False) -> str:
    """The real (symlink-free) location of ``path``, if it lies under a granted path.

    ``path`` must pass ``validate.check_abs_path`` and lie lexically under a granted path,
    and its resolved location must lie under one of the granted paths, each resolved
    too (so a granted directory may itself be a symlink). A resolved grant of ``/`` is
    ignored. With ``must_exist`` the path must exist. Raises :class:`PathRefused`.
    """
    try:
        lexical = validate.check_abs_path(path)
    except Invalid as e:
        raise PathRefused(str(e)) from None
    grants = []
    for g in granted:
        try:
            grants.append(validate.check_abs_path(g))
        except Invalid:
            continue
    grants = [g for g in grants if g != "/"]
    if not any(_under(lexical, g) for g in grants):
        raise PathRefused(f"{path!r} is not under any granted path")
    real_grants = []
    for g in grants:
        try:
            real_g, _ = resolve(g)
        except PathRefused:
            continue  # a broken grant grants nothing
        if real_g != "/":
            real_grants.append(real_g)
    real, exists = resolve(lexical)
    if must_exist and not exists:
        raise PathRefused(f"{path!r} does not exist")
    try:
        real = validate.check_abs_path(real)
    except Invalid as e:
        raise PathRefused(f"{path!r} resolves to an unusable path: {e}") from None
    if not any(_under(real, g) for g in real_grants):
        raise PathRefused(f"{path!r} resolves to {real!r}, which is not under any granted path")
    return real


def open_nofollow(path: str, granted: Iterable[str] | None = None) -> BinaryIO:
    """Open a regular file for reading without following any symlink.

    With ``granted``, the path is first checked (and resolved) by
    :func:`check_member_path`; the resolved path is then opened by walking from ``/`` with
    ``O_NOFOLLOW`` (and ``O_DIRECTORY`` for directories) on every component, so a symlink
    anywhere, including one swapped in after the check, is refused. Without ``granted``
    any symlink on the path is refused. FIFOs, devices and directories are refused.
    """
    if granted is not None:
        target = check_member_path(path, granted, must_exist=True)
    else:
        try:
            target = validate.check_abs_path(path)
        except Invalid as e:
            raise PathRefused(str(e)) from None
    names = [p for p in target.split("/") if p]
    if not names:
        raise PathRefused(f"{path!r} is not a file")
    cloexec = getattr(os, "O_CLOEXEC", 0)
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | cloexec
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | cloexec)
    try:
        for i, name in enumerate(names[:-1]):
            try:
                nfd = os.open(name, dir_flags, dir_fd=fd)
            except OSError as e:
                where = "/" + "/".join(names[: i + 1])
                raise PathRefused(
                    f"{path!r}: {where!r} is a symbolic link or not a directory ({e.strerror})"
                ) from None
            os.close(fd)
            fd = nfd
        try:
            ffd = os.open(
                names[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | cloexec, dir_fd=fd
            )
        except OSError as e:
            raise PathRefused(
                f"{path!r}: cannot open without following links ({e.strerror})"
            ) from None
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(ffd).st_mode):
        os.close(ffd)
        raise PathRefused(f"{path!r} is not a regular file")
    os.set_blocking(ffd, True)
    return os.fdopen(ffd, "rb")
