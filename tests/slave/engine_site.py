"""A real apache2 on free loopback ports driven by the real engine (for daemons tests).

``engine_site(tmp_path)`` is a context manager giving a :class:`EngineSite` whose
engine has applied the empty state (generation 1: the catch-all only, with a default
certificate on the TLS listener); the server is stopped at the end.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import attrs

from domtool.model import DesiredState
from domtool.slave.backends.apache import ApacheBackend
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.conftest import require_binary
from tests.slave.apache_daemon import APACHE, ApacheProcess, free_port, prepare_site


@attrs.define
class EngineSite:
    engine: Engine
    proc: ApacheProcess
    port: int
    tls_port: int

    def apache_t(self) -> subprocess.CompletedProcess:
        c = self.proc.config
        return subprocess.run(
            [APACHE, "-t", "-f", c.live_config, "-d", c.server_root],
            capture_output=True,
            text=True,
            timeout=30,
        )


@contextlib.contextmanager
def engine_site(tmp_path: Path, default_cert: tuple[str, str]):
    require_binary("apache2")
    port, tls_port = free_port(), free_port()
    state_dir = tmp_path / "state"
    root = tmp_path / "apache"
    sites = str(state_dir / "current" / "apache" / "sites.conf")
    cert, key = default_cert
    config = prepare_site(
        root, port, sites, tls_port=tls_port, default_certificate=cert, default_key=key
    )
    engine = Engine(
        str(state_dir),
        {"apache": ApacheBackend(config)},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(),
        probe_timeout=10.0,
        probe_interval=0.02,
    )
    site = EngineSite(engine, ApacheProcess(config, root), port, tls_port)
    try:
        assert engine.apply(DesiredState()).status == "applied"
        yield site
    finally:
        site.proc.stop()
