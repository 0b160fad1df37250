"""The dispatcher's side of TLS renewal for slaves on other hosts: every slave gets the
current host CRL, and its own certificate and key once ``domtool-admin ca renew`` has
reissued them, over its link (op ``tls_update``; the slave checks and installs them:
``slave/tlsupdate.py``). Nobody copies files by hand, and a slave never lapses.

Sent when the host CRL or a file under ``hosts_dir`` (``<state>/tls/hosts``, where
``init`` and ``ca renew`` keep ``<fqdn>.pem``/``.key``) changes, and every ``interval``
seconds besides (a slave that was down catches up; an unchanged file is not rewritten).
A slave that cannot be reached or refuses is logged and tried again at the next round.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from domtool.protocol import TlsUpdateArgs

__all__ = ["TlsPush"]

PUSH_INTERVAL = 3600.0


class TlsPush:
    log = Logger()

    def __init__(
        self,
        links: Mapping[str, Any],
        crl_path: str | None,
        hosts_dir: str | None,
        clock: Any,
        interval: float = PUSH_INTERVAL,
    ) -> None:
        self.links = links
        self.crl_path = crl_path
        self.hosts_dir = hosts_dir
        self.clock = clock
        self.interval = interval
        self._loop: task.LoopingCall | None = None

    def files(self) -> list[str]:
        """The files whose change should trigger a push now."""
        found = [self.crl_path] if self.crl_path else []
        if self.hosts_dir and os.path.isdir(self.hosts_dir):
            found += sorted(
                os.path.join(self.hosts_dir, n)
                for n in os.listdir(self.hosts_dir)
                if n.endswith((".pem", ".key"))
            )
        return found

    def args_for(self, host: str) -> TlsUpdateArgs | None:
        """The ``tls_update`` message for ``host`` (None: no CRL to send)."""
        if not self.crl_path:
            return None
        with open(self.crl_path) as f:
            crl = f.read()
        if self.hosts_dir:
            cert = os.path.join(self.hosts_dir, f"{host}.pem")
            key = os.path.join(self.hosts_dir, f"{host}.key")
            if os.path.exists(cert) and os.path.exists(key):
                with open(cert) as c, open(key) as k:
                    return TlsUpdateArgs(crl, c.read(), k.read())
        return TlsUpdateArgs(crl)

    def push(self) -> defer.Deferred:
        """Send every slave its files; fires (with None) when every answer is in."""
        calls = []
        for node, link in sorted(self.links.items()):
            host = getattr(link, "host", node)
            try:
                args = self.args_for(host)
            except OSError as e:
                self.log.warn("cannot read the TLS files for {host}: {e}", host=host, e=e)
                continue
            if args is None:
                continue
            d = link.call("tls_update", args.to_json())
            d.addCallbacks(self._sent, self._failed, (host,), None, (host,))
            calls.append(d)
        return defer.DeferredList(calls).addCallback(lambda _: None)

    def _sent(self, result: Any, host: str) -> None:
        if isinstance(result, dict) and "updated" in result.values():
            self.log.info("{host} installed renewed TLS files: {r}", host=host, r=result)

    def _failed(self, failure, host: str) -> None:
        self.log.warn("{host} did not take the TLS files: {why}", host=host, why=failure.value)

    def start(self) -> None:
        if not self.crl_path or not self.links:
            return
        self._loop = task.LoopingCall(self.push)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
