"""Picking up renewed TLS files while running: the listener's own certificate and key.

:class:`KeyPairWatch` polls a certificate and its key (every ``interval`` seconds) and,
when either file changed, reads both and hands the new :class:`tls.KeyPair` to
``on_change`` (which rebuilds the TLS contexts); :class:`FileWatch` is the general
poll, also used by the dispatcher for the host CRL its links check slaves against. A pair that does not load or does not
match (the renewal job replaces the key and then the certificate, so a poll may fall
between the two) keeps the old one in force and is tried again at the next poll. New
handshakes use the renewed pair; open connections keep theirs. :class:`CrlWatch` is the
same poll for a listener's CRL (``session.ListenerService``), except that a CRL that does
not load is tried again only once the file changes again (``retry=False``): the renewal
job writes a CRL in one rename, so the same bytes will not load at the next poll either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, ClassVar

from OpenSSL import SSL
from twisted.internet import task
from twisted.logger import Logger, LogLevel

from domtool.net import tls

__all__ = ["CRL_POLL", "CrlWatch", "FileWatch", "KeyPairWatch"]

CRL_POLL = 60.0  # seconds between checks of a CRL file


class FileWatch:
    """Calls ``on_change()`` when any of ``paths`` changed (mtime) since the last success;
    an ``on_change`` that raises OSError/ValueError/SSL.Error keeps the old files in force
    and is retried at the next poll (``retry``), or only once a file changes again
    (``retry=False``). ``what`` names the files in the log."""

    log = Logger()
    failure_level: ClassVar[LogLevel] = LogLevel.warn

    def __init__(
        self,
        paths,
        on_change: Callable[[], None],
        clock: Any,
        interval: float = 60.0,
        *,
        retry: bool = True,
        what: str = "TLS files",
    ):
        self.paths = [p for p in paths if p]
        self.on_change = on_change
        self.clock = clock
        self.interval = interval
        self.retry = retry
        self.what = what
        self._seen = self._stat()
        self._poll: task.LoopingCall | None = None

    def _stat(self) -> tuple[int, ...] | None:
        try:
            return tuple(os.stat(p).st_mtime_ns for p in self.paths)
        except OSError:
            return None

    def check(self) -> bool:
        """Run ``on_change`` if a file changed; True when it succeeded."""
        seen = self._stat()
        if seen is None or seen == self._seen:
            return False
        if not self.retry:
            self._seen = seen  # (a failure waits for the next change)
        try:
            self.on_change()
        except (OSError, ValueError, SSL.Error) as e:
            self.log.emit(
                self.failure_level,
                "kept the old {what}: {paths}: {e}",
                what=self.what,
                paths=", ".join(map(str, self.paths)),
                e=e,
            )
            return False
        self._seen = seen
        self.log.info(
            "loaded the renewed {what} {paths}",
            what=self.what,
            paths=", ".join(map(str, self.paths)),
        )
        return True

    def start(self) -> None:
        if not self.paths:
            return
        self._poll = task.LoopingCall(self.check)
        self._poll.clock = self.clock
        self._poll.start(self.interval, now=False)

    def stop(self) -> None:
        if self._poll is not None and self._poll.running:
            self._poll.stop()


class CrlWatch(FileWatch):
    """Reloads ``server_tls``'s CRL from ``path`` when the file changes (polled every
    ``interval`` seconds while started); a CRL that does not load keeps the old one and
    is tried again once the file changes again."""

    failure_level: ClassVar[LogLevel] = LogLevel.error

    def __init__(
        self, path: str | os.PathLike, server_tls: tls.ServerTLS, clock: Any, interval=CRL_POLL
    ) -> None:
        self.path = path
        self.server_tls = server_tls
        super().__init__(
            [path],
            lambda: server_tls.reload_crl_file(path),
            clock,
            interval,
            retry=False,
            what="CRL",
        )


class KeyPairWatch(FileWatch):
    """Calls ``on_change(KeyPair)`` when the files at ``cert`` or ``key`` change."""

    def __init__(
        self,
        cert: str | os.PathLike,
        key: str | os.PathLike,
        on_change: Callable[[tls.KeyPair], None],
        clock: Any,
        interval: float = 60.0,
    ) -> None:
        self.cert, self.key = cert, key
        super().__init__(
            [cert, key], lambda: on_change(tls.KeyPair.from_files(cert, key)), clock, interval
        )
