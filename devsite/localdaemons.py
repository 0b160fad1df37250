"""Run the real daemons of a local site on loopback, each with a config root of its own.

Used by ``domtool-quickstart`` (and usable by tests): ``named`` and ``apache2`` are
started in the foreground as child processes (``named -g``, ``apache2 -DFOREGROUND``), so
the site that started them owns them and :meth:`Daemon.stop` (SIGTERM, wait, SIGKILL)
really leaves nothing behind. Their top-level configs are written through the backends'
own ``site_config`` functions, so the local site runs exactly what a production site
runs, including the live config that includes ``state_dir/current/<backend>/<index>``.

The slave's state directory gets its empty first generation from the production
``domtool.slave.sitefiles.bootstrap_state``, as on a real slave host, so both daemons can
start before the first apply.

:func:`start` is the one start of every daemon of the local site, the tests and the
benches (here, ``maildaemons``, ``mailman_daemon``, ``localdb``): :func:`spawn` the process,
wait until it is ready (:meth:`Daemon.wait_ready`), and if it exits or time runs out, stop
it and raise with its log; :meth:`Daemon.stop` stops it, or with ``whole_group`` its whole
process group.

Also here: :func:`free_port`, :func:`wait_for`, :func:`http_get` (a GET with a Host
header to a loopback port) and :func:`dns_records` (dnspython query). Run as root, named
keeps root (``-u root``) over its private tree and Apache's children become ``www-data``,
so anything Apache serves must be world-readable.
"""

from __future__ import annotations

import base64
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "Daemon",
    "apache_binary",
    "apache_config",
    "bind_config",
    "dns_records",
    "free_port",
    "http_get",
    "prepare_apache",
    "prepare_named",
    "spawn",
    "start",
    "start_apache",
    "start_named",
    "wait_for",
]

SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def binary(name: str) -> str | None:
    """The absolute path of a daemon binary (also looked up in the sbin directories)."""
    return shutil.which(name) or shutil.which(name, path=SBIN)


def apache_binary() -> str | None:
    return binary("apache2")


def free_port(udp: bool = False, address: str = "127.0.0.1") -> int:
    """A port on ``address`` nothing uses right now (for TCP, and UDP too when ``udp``)."""
    while True:
        with socket.socket() as t:
            t.bind((address, 0))
            port = t.getsockname()[1]
            if not udp:
                return port
            with socket.socket(type=socket.SOCK_DGRAM) as u:
                try:
                    u.bind((address, port))
                except OSError:
                    continue
                return port


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a true value; return it, or TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def connects(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False when nothing of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


@attrs.define
class Daemon:
    """A child process of the site: its name, process, log file. With ``whole_group``,
    :meth:`stop` signals its whole process group (``spawn`` starts a new session, so the
    group is the daemon and what it forked: Mailman's runners, Exim's deliveries, Courier's
    authdaemond) and waits for all of it; ``stop_timeout`` is how long stop waits by
    default before SIGKILL."""

    name: str
    proc: subprocess.Popen
    log: Path
    whole_group: bool = False
    stop_timeout: float = 10.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20, also: tuple[Path, ...] = ()) -> str:
        """The last ``lines`` of its log, then the end of each file of ``also`` that exists
        (a daemon's own error log)."""
        try:
            text = "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            text = ""
        for extra in also:
            try:
                text += f"\n--- {extra}:\n" + extra.read_text(errors="replace")[-2000:]
            except OSError:
                pass
        return text

    def wait_ready(
        self,
        ready: Callable[[], Any],
        *,
        what: str,
        timeout: float = 15.0,
        also_logs: tuple[Path, ...] = (),
    ) -> Daemon:
        """Poll ``ready`` until it is true (see :func:`wait_for`). If the process exits
        first (RuntimeError) or time runs out (TimeoutError), the daemon is stopped and the
        error carries its log (and the end of each of ``also_logs``)."""

        def check():
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}):\n"
                    + self.log_tail(also=also_logs)
                )
            return ready()

        try:
            wait_for(check, timeout=timeout, what=what)
        except TimeoutError as e:
            self.stop()
            raise TimeoutError(
                f"{e}; {self.name}'s log:\n{self.log_tail(also=also_logs)}"
            ) from None
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, wait up to ``timeout`` s (default ``stop_timeout``), then SIGKILL; the
        exit status. With ``whole_group``, to the process group, until all of it is gone."""
        timeout = self.stop_timeout if timeout is None else timeout
        if self.whole_group:
            pgid, deadline = self.proc.pid, time.monotonic() + timeout
            if _signal_group(pgid, signal.SIGTERM):
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
                while time.monotonic() < deadline and _group_alive(pgid):
                    time.sleep(0.1)
                _signal_group(pgid, signal.SIGKILL)
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.poll() is None:
            self.proc.wait(timeout=5)
        return self.proc.returncode


def spawn(
    name: str,
    argv: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env=None,
    uid: int | None = None,
    gid: int | None = None,
    whole_group: bool = False,
    stop_timeout: float = 10.0,
) -> Daemon:
    """Start ``argv`` with stdout and stderr to ``log``; in its own process group so a
    Ctrl-C at the terminal reaches only the site, which then stops it in order. With
    ``uid``/``gid``, as that user and group (and no supplementary groups)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            **as_user(uid, gid),
        )
    return Daemon(name, proc, log, whole_group, stop_timeout)


def as_user(uid: int | None, gid: int | None) -> dict[str, Any]:
    """``subprocess`` keywords running a child as ``uid``/``gid`` with no supplementary
    groups (None: as we are)."""
    return {"user": uid, "group": gid, "extra_groups": [] if uid is not None else None}


def start(
    name: str,
    argv: list[str],
    log: Path,
    ready: Callable[[], Any],
    *,
    what: str,
    timeout: float = 15.0,
    also_logs: tuple[Path, ...] = (),
    **spawn_kw,
) -> Daemon:
    """:func:`spawn` a daemon and :meth:`Daemon.wait_ready` for it: running and ready
    when it returns, else stopped, with its log in the error. The one start of every
    daemon of the local site, the tests and the benches."""
    return spawn(name, argv, log, **spawn_kw).wait_ready(
        ready, what=what, timeout=timeout, also_logs=also_logs
    )


# ---------------------------------------------------------------------------
# Apache


def apache_config(root: Path, port: int, address: str = "127.0.0.1", **kw):
    """The backend's :class:`ApacheConfig` for a server whose files live under ``root``
    and which listens on ``address``:``port``; ``kw`` sets other fields (or overrides)."""
    from domtool.slave.backends.apache import ApacheConfig

    settings: dict[str, Any] = {
        "base_config": str(root / "base.conf"),
        "live_config": str(root / "apache2.conf"),
        "server_root": str(root),
        "log_dir": str(root / "logs"),
        "address": address,
        "port": port,
        "tls_port": None,
        "binary": apache_binary() or "/usr/sbin/apache2",
    }
    return ApacheConfig(**(settings | kw))


def prepare_apache(
    root: Path, port: int, sites_include: Path | str, address: str = "127.0.0.1", **kw
):
    """Write ``root/base.conf`` and ``root/apache2.conf`` (through the backend's
    ``site_config``); return the backend's :class:`ApacheConfig` for this server, which
    listens on ``address``:``port`` (``kw``: other fields, see :func:`apache_config`)."""
    from domtool.slave.backends.apache import site_config

    root.mkdir(parents=True, exist_ok=True)
    for sub in ("run", "logs"):
        (root / sub).mkdir(exist_ok=True)
    config = apache_config(root, port, address, **kw)
    as_root = os.geteuid() == 0
    files = site_config(
        config,
        str(sites_include),
        run_dir=str(root / "run"),
        user="www-data" if as_root else None,
        group="www-data" if as_root else None,
    )
    for path, content in files.items():
        Path(path).write_bytes(content)
    return config


def start_apache(config, timeout: float = 15.0) -> Daemon:
    """Run apache2 in the foreground on its config; wait until it accepts connections."""
    root = Path(config.server_root)
    argv = [config.binary, "-f", config.live_config, "-d", config.server_root, "-DFOREGROUND"]
    return start(
        "apache2",
        argv,
        root / "logs" / "stdout.log",
        lambda: connects(config.port, config.address),
        what=f"apache2 listening on {config.port}",
        timeout=timeout,
        also_logs=(root / "logs" / "error.log",),
        cwd=root,
    )


# ---------------------------------------------------------------------------
# BIND


def bind_config(root: Path, port: int, control_port: int, address: str = "127.0.0.1", **kw):
    """The backend's :class:`BindConfig` for a named whose files live under ``root``,
    answering on ``address``:``port`` and taking rndc commands on ``control_port``; ``kw``
    sets other fields (or overrides)."""
    from domtool.slave.backends.bind import BindConfig

    settings: dict[str, Any] = {
        "base_config": str(root / "base.conf"),
        "live_config": str(root / "named.conf"),
        "rndc_config": str(root / "rndc.conf"),
        "address": address,
        "port": port,
        "control_address": address,
        "control_port": control_port,
        "checkzone": binary("named-checkzone") or "named-checkzone",
        "checkconf": binary("named-checkconf") or "named-checkconf",
        "rndc": binary("rndc") or "rndc",
    }
    return BindConfig(**(settings | kw))


def prepare_named(
    root: Path,
    port: int,
    control_port: int,
    zones_include: Path | str,
    address: str = "127.0.0.1",
    **kw,
):
    """Write ``root/base.conf``, ``named.conf`` and ``rndc.conf`` (a fresh rndc key)
    through the backend's ``site_config``; return the backend's :class:`BindConfig`.
    named answers and takes rndc commands on ``address`` (``kw``: see :func:`bind_config`)."""
    from domtool.slave.backends.bind import site_config

    root.mkdir(parents=True, exist_ok=True)
    config = bind_config(root, port, control_port, address, **kw)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    files = site_config(config, str(zones_include), directory=str(root), rndc_secret=secret)
    for path, content in files.items():
        Path(path).write_bytes(content)
        if path == config.rndc_config or path == config.base_config:
            os.chmod(path, 0o600)  # they hold the rndc key
    return config


def start_named(config, timeout: float = 15.0, named: str | None = None) -> Daemon:
    """Run ``named -g`` (the binary ``named``, default the installed one) on its config;
    wait until rndc answers."""
    root = Path(config.live_config).parent
    argv = [named or binary("named") or "/usr/sbin/named", "-g", "-c", config.live_config]
    if os.geteuid() == 0:
        argv += ["-u", "root"]

    def ready() -> bool:
        done = subprocess.run(
            list(config.rndc_argv("status")), capture_output=True, timeout=10, check=False
        )
        return done.returncode == 0

    return start(
        "named",
        argv,
        root / "named.log",
        ready,
        what=f"named answering rndc on {config.control_port}",
        timeout=timeout,
        cwd=root,
    )


# ---------------------------------------------------------------------------
# Looking at what is served


def http_get(
    port: int, host: str, path: str = "/", timeout: float = 5.0, address: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """GET ``path`` from address:port with ``Host: host``; (status, body). No redirects."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def dns_records(
    port: int, name: str, rtype: str = "ANY", timeout: float = 2.0, address: str = "127.0.0.1"
) -> list[str]:
    """The answer records for (name, rtype) from address:port as zone-file lines
    (TCP, so a large answer is whole). Raises dns.exception.DNSException or OSError."""
    import dns.message
    import dns.query
    import dns.rdatatype

    q = dns.message.make_query(name, dns.rdatatype.from_text(rtype))
    r = dns.query.tcp(q, address, port=port, timeout=timeout)
    out = []
    for rrset in r.answer:
        for rd in rrset:
            out.append(
                f"{rrset.name.to_text()} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} "
                f"{rd.to_text()}"
            )
    return out
