"""The one atomic file write: a reader sees the old file or the new one, never half of
it, and a key is never readable with looser rights than ``mode``."""

from __future__ import annotations

import os

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` with ``mode``: a temporary file beside it
    (``.<name>.tmp<pid>``: a dot file, which directory scanners such as ``makeuserdb``
    skip, unique per process) created with that mode (``O_NOFOLLOW``: a link planted in
    its place is not followed), chmod-ed past the umask, written, fsync-ed and renamed
    over ``path``. On failure the temporary file is removed and ``path`` is untouched."""
    head, tail = os.path.split(os.fspath(path))
    tmp = os.path.join(head, f".{tail}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
