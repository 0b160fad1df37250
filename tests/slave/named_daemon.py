"""Test helpers that run a real named on loopback with a config root of its own.

``start_named(root, port, include)`` writes the site's BIND files through the backend's
own :func:`~domtool.slave.backends.bind.site_config` (so tests exercise what a site runs:
base options with a fresh rndc key and ``controls`` on a second free port, a live
``named.conf`` including ``include``, an ``rndc.conf``), starts ``named -g`` in the
foreground (its log goes to ``root/named.log``) and returns a :class:`NamedProcess`
once rndc answers. ``reload()`` runs ``rndc reload``; ``stop()`` sends SIGTERM and waits.
Named runs as the invoking user (``-u`` is only given when running as root, so it keeps
root's rights over the temporary tree: ``-u root``).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from domtool.devsite import localdaemons
from domtool.slave.backends.bind import BindConfig

NAMED = shutil.which("named", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/named"
CHECKZONE = shutil.which("named-checkzone", path="/usr/bin:/usr/sbin") or "named-checkzone"
CHECKCONF = shutil.which("named-checkconf", path="/usr/bin:/usr/sbin") or "named-checkconf"
RNDC = shutil.which("rndc", path="/usr/sbin:/usr/bin:/sbin") or "/usr/sbin/rndc"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing uses right now, for both UDP and TCP."""
    return localdaemons.free_port(udp=True)


def bind_config(root: Path, port: int, control_port: int, **kw) -> BindConfig:
    """The backend configuration matching a server started by :func:`start_named`."""
    return localdaemons.bind_config(
        root, port, control_port, checkzone=CHECKZONE, checkconf=CHECKCONF, rndc=RNDC, **kw
    )


def prepare_site(root: Path, port: int, include: Path | str, **config_kw) -> BindConfig:
    """Write base.conf, named.conf and rndc.conf under ``root``; return the backend config."""
    return localdaemons.prepare_named(
        root,
        port,
        free_port(),
        include,
        checkzone=CHECKZONE,
        checkconf=CHECKCONF,
        rndc=RNDC,
        **config_kw,
    )


def query(
    port: int, qname: str, rtype: str, *, server: str = "127.0.0.1", timeout: float = 2.0
) -> dns.message.Message:
    """One UDP query to server:port (TCP again if the answer was truncated)."""
    q = dns.message.make_query(qname, dns.rdatatype.from_text(rtype))
    r = dns.query.udp(q, server, port=port, timeout=timeout)
    if r.flags & dns.flags.TC:
        r = dns.query.tcp(q, server, port=port, timeout=timeout)
    return r


def soa_serial(port: int, zone: str) -> int | None:
    """The serial named serves for ``zone``, or None if it does not answer for it."""
    try:
        r = query(port, zone, "SOA", timeout=1.0)
    except (dns.exception.DNSException, OSError):
        return None
    for rrset in r.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return rrset[0].serial
    return None


@attrs.define
class NamedProcess:
    """A running named: its backend config, root, and how to reload and stop it."""

    config: BindConfig
    root: Path
    daemon: localdaemons.Daemon

    @property
    def proc(self) -> subprocess.Popen:
        return self.daemon.proc

    @property
    def port(self) -> int:
        return self.config.port

    def log(self) -> str:
        p = self.root / "named.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def rndc(self, *verb: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            list(self.config.rndc_argv(*verb)), capture_output=True, text=True, timeout=30
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"rndc {' '.join(verb)} failed: {done.stderr}{done.stdout}")
        return done

    def reload(self) -> str:
        """``rndc reload``; returns rndc's answer."""
        return self.rndc("reload").stdout

    def stop(self) -> None:
        """SIGTERM, then wait (up to 10 s; then SIGKILL) until named is gone."""
        self.daemon.stop()


def start_named(root: Path, port: int, include: Path | str, **config_kw) -> NamedProcess:
    """Start named on 127.0.0.1:port with its config under ``root``, loading ``include``
    as its zones index; wait until rndc answers. Keyword arguments go to BindConfig."""
    config = prepare_site(root, port, include, **config_kw)
    return NamedProcess(config, root, localdaemons.start_named(config, named=NAMED))
