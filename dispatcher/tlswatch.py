"""Picking up renewed TLS files while running: the listener's own certificate and key.

:class:`KeyPairWatch` polls a certificate and its key (every ``interval`` seconds) and,
when either file changed, reads both and hands the new :class:`tls.KeyPair` to
``on_change`` (which rebuilds the TLS contexts). A pair that does not load or does not
match (the renewal job replaces the key and then the certificate, so a poll may fall
between the two) keeps the old one in force and is tried again at the next poll. New
handshakes use the renewed pair; open connections keep theirs. The CRL's counterpart is
``session.CrlWatch``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet import task
from twisted.logger import Logger

from domtool.dispatcher import tls

__all__ = ["KeyPairWatch"]


class KeyPairWatch:
    """Calls ``on_change(KeyPair)`` when the files at ``cert`` and ``key`` change."""

    log = Logger()

    def __init__(
        self,
        cert: str | os.PathLike,
        key: str | os.PathLike,
        on_change: Callable[[tls.KeyPair], None],
        clock: Any,
        interval: float = 60.0,
    ) -> None:
        self.cert, self.key = cert, key
        self.on_change = on_change
        self.clock = clock
        self.interval = interval
        self._seen = self._stat()
        self._poll: task.LoopingCall | None = None

    def _stat(self) -> tuple[float, float] | None:
        try:
            return os.stat(self.cert).st_mtime_ns, os.stat(self.key).st_mtime_ns
        except OSError:
            return None

    def check(self) -> bool:
        """Load the pair if a file changed; True when a new pair is in force."""
        seen = self._stat()
        if seen is None or seen == self._seen:
            return False
        try:
            pair = tls.KeyPair.from_files(self.cert, self.key)
            self.on_change(pair)
        except (OSError, ValueError, SSL.Error) as e:
            self.log.warn("kept the old certificate: {cert}: {e}", cert=self.cert, e=e)
            return False
        self._seen = seen
        self.log.info("loaded the renewed certificate {cert}", cert=self.cert)
        return True

    def start(self) -> None:
        self._poll = task.LoopingCall(self.check)
        self._poll.clock = self.clock
        self._poll.start(self.interval, now=False)

    def stop(self) -> None:
        if self._poll is not None and self._poll.running:
            self._poll.stop()
