"""Test helpers that run a real apache2 on loopback with a config root of its own.

``start_apache(root, port, include)`` writes the site's base config (through the
backend's own :func:`site_config`, so tests exercise what a site runs) and a top-level
config that includes ``include`` (a sites index or a glob), starts
``apache2 -f CONF -d ROOT -k start`` and returns an :class:`ApacheProcess`; its ``stop()``
waits until the server is gone. Run as root, Apache's children become www-data, so
files they serve must live in a world-readable directory (:func:`public_dir`).
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import attrs

from domtool.devsite import localdaemons
from domtool.devsite.localdaemons import connects, wait_for
from domtool.devsite.localdaemons import free_port as free_port  # for the daemon tests, benches
from domtool.slave.backends.apache import ApacheConfig

APACHE = shutil.which("apache2", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/apache2"


def public_dir(prefix: str = "domtool-web-") -> Path:
    """A fresh directory under /tmp that Apache's unprivileged children can read."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def apache_config(
    root: Path, port: int, *, tls_port: int | None = None, suexec: bool = False, **kw
) -> ApacheConfig:
    """The backend configuration matching a server started by :func:`start_apache`."""
    return localdaemons.apache_config(
        root, port, tls_port=tls_port, binary=APACHE, suexec=suexec, **kw
    )


@attrs.define
class ApacheProcess:
    """A running apache2: its config, and how to reload and stop it."""

    config: ApacheConfig
    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "apache2.pid"

    def _ctl(self, verb: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [APACHE, "-f", self.config.live_config, "-d", self.config.server_root, "-k", verb],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def graceful(self) -> None:
        done = self._ctl("graceful")
        if done.returncode != 0:
            raise RuntimeError(f"apache2 -k graceful failed: {done.stderr}{done.stdout}")

    def error_log(self) -> str:
        p = Path(self.config.log_dir) / "error.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self) -> None:
        """Stop the server and wait (up to 10 s) until its parent process is gone."""
        pid = None
        if self.pid_file.exists():
            pid = int(self.pid_file.read_text().strip() or 0) or None
        self._ctl("stop")
        deadline = time.monotonic() + 10
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        if pid is not None:
            os.kill(pid, 9)


def prepare_site(
    root: Path,
    port: int,
    include: str,
    *,
    tls_port: int | None = None,
    suexec: bool = False,
    **config_kw,
) -> ApacheConfig:
    """Write the site's base and live configs under ``root``; return the backend config."""
    return localdaemons.prepare_apache(
        root, port, include, tls_port=tls_port, binary=APACHE, suexec=suexec, **config_kw
    )


def start_apache(root: Path, port: int, include: str, **kw) -> ApacheProcess:
    """Start apache2 on 127.0.0.1:port (and ``tls_port``) loading ``include`` as its sites;
    keyword arguments go to :func:`prepare_site`."""
    config = prepare_site(root, port, include, **kw)
    proc = ApacheProcess(config, root)
    done = proc._ctl("start")
    if done.returncode != 0:
        raise RuntimeError(f"apache2 did not start: {done.stderr}{done.stdout}{proc.error_log()}")
    try:
        wait_for(lambda: connects(port), what=f"apache2 listening on {port}")
    except Exception:
        proc.stop()
        raise
    return proc


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    peer_cert: bytes | None = None


def get(
    port: int, host: str, path: str = "/", *, tls: bool = False, timeout: float = 5.0
) -> Response:
    """One GET to 127.0.0.1:port with a Host header (and SNI when ``tls``); no redirects."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ctx
        )
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    # Connect to loopback whatever the name says; the name still goes out as the Host
    # header and (for TLS) as SNI.
    conn._create_connection = lambda _addr, *a, **k: socket.create_connection(  # type: ignore[attr-defined]
        ("127.0.0.1", port), *a, **k
    )
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        body = r.read()
        cert = conn.sock.getpeercert(binary_form=True) if tls else None  # type: ignore[union-attr]
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, body, cert)
    finally:
        conn.close()
