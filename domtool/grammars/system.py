"""Grammars of host-level values: ports (``port``, ``member_port``), Unix user and group
names (``unix_name``), absolute paths (``abs_path``, with :func:`normalise_path`), file
names (``file_name``)."""

from __future__ import annotations

import re
from typing import Any

from domtool.grammars.base import Invalid, at_most, need_int, need_str, only

__all__ = [
    "check_abs_path",
    "check_file_name",
    "check_member_port",
    "check_port",
    "check_unix_name",
    "normalise_path",
]


def check_port(value: Any) -> int:
    """A TCP/UDP port, 1..65535."""
    return need_int("a port", value, 1, 65535)


def check_member_port(value: Any) -> int:
    """An unprivileged port a member's own daemon listens on, 1024..65535."""
    return need_int("a member port", value, 1024, 65535)


_UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")


def check_unix_name(value: Any) -> str:
    """A Unix user or group name: ``[a-z_][a-z0-9_-]{0,31}`` (``root`` is refused by the
    slave, not here)."""
    kind = "a Unix user or group name"
    value = need_str(kind, value)
    if not _UNIX_NAME.match(value):
        raise Invalid(
            kind,
            value,
            "expected a lower-case letter or '_' then up to 31 lower-case letters, digits, '_' or '-'",
        )
    return value


_PATH_CHAR = re.compile(r"[A-Za-z0-9._+@=,-]")
_PATH_MAX = 4096
_NAME_MAX = 255


def normalise_path(path: str) -> str:
    """Lexically normalise an absolute path: drop empty and ``.`` segments, resolve ``..``
    without ever going above ``/``. No grammar check; see :func:`check_abs_path`."""
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out)


def check_abs_path(value: Any) -> str:
    """An absolute POSIX path over ``[A-Za-z0-9._+@=,-]`` and ``/``, at most 4096
    characters (255 per segment); returned lexically normalised (``/home/alice/../bob``
    gives ``/home/bob``; ``/../../etc`` gives ``/etc``)."""
    kind = "an absolute path"
    value = need_str(kind, value)
    if not value.startswith("/"):
        raise Invalid(kind, value, "it must start with '/'")
    at_most(kind, value, _PATH_MAX)
    for seg in value.split("/"):
        if len(seg) > _NAME_MAX:
            raise Invalid(kind, value, f"a path segment is longer than {_NAME_MAX} characters")
        only(
            kind,
            value,
            seg,
            _PATH_CHAR,
            "only letters, digits, '/' and '.', '_', '+', '@', '=', ',', '-' are allowed",
        )
    return normalise_path(value)


_FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")


def check_file_name(value: Any) -> str:
    """A single file name such as ``index.html``: ``[A-Za-z0-9._-]{1,255}``, not ``.``/``..``."""
    kind = "a file name"
    value = need_str(kind, value)
    if not _FILE_NAME.match(value) or value in (".", ".."):
        raise Invalid(
            kind, value, "expected 1-255 letters, digits, '.', '_' or '-', and not '.' or '..'"
        )
    return value
