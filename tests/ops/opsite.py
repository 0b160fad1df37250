"""A one-host site as an operator builds it, for the operations tests: ``domtool-admin
init`` makes the CAs, certificates and first admin; the real ``domtool-dispatcher`` and
``domtool-slave`` mains run as child processes on free loopback ports (the slave with no
backends); helpers call the real clients. ``wrap`` puts a prefix (setpriv/unshare) in
front of each service's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import attrs

from domtool.client import site_init
from domtool.devsite.localdaemons import Daemon, free_port, spawn, wait_for

DISPATCHER = "dispatcher.example.coop"
SLAVE = "ns1.example.coop"


@attrs.define
class OpSite:
    root: Path
    state: Path
    slave_state: Path
    dport: int
    sport: int
    dispatcher_conf: Path
    slave_conf: Path
    daemons: list[Daemon] = attrs.field(factory=list)

    @property
    def ca_dir(self) -> Path:
        return self.state / "ca"

    @property
    def admin_config(self) -> Path:
        return self.state / "admin" / "client.toml"

    def start(self, wrap_dispatcher=(), wrap_slave=(), env=None) -> None:
        py = [sys.executable, "-m"]
        self.daemons.append(
            spawn(
                "slave",
                [*wrap_slave, *py, "domtool.slave.service", "--config", str(self.slave_conf)],
                self.root / "slave.log",
                cwd=Path("/"),
                env=env,
            )
        )
        self.daemons.append(
            spawn(
                "dispatcher",
                [
                    *wrap_dispatcher,
                    *py,
                    "domtool.dispatcher.service",
                    "--config",
                    str(self.dispatcher_conf),
                ],
                self.root / "dispatcher.log",
                cwd=Path("/"),
                env=env,
            )
        )
        try:
            wait_for(lambda: self._up(), timeout=30, what="the site's ping")
        except TimeoutError:
            raise AssertionError(self.logs()) from None

    def _up(self) -> bool:
        code, out = self.admin("ping")
        return code == 0 and "ns1: up" in out

    def admin(self, *argv: str) -> tuple[int, str]:
        """``domtool-admin ARGV --config <admin's>`` in a child process: (exit, output)."""
        return run_cli("domtool-admin", *argv, "--config", str(self.admin_config))

    def logs(self) -> str:
        return "\n".join(
            f"--- {d.name}:\n{d.log.read_text(errors='replace')}" for d in self.daemons
        )

    def stop(self) -> None:
        for d in reversed(self.daemons):
            d.stop()


def run_cli(prog: str, *argv: str, config: str | None = None) -> tuple[int, str]:
    import subprocess

    module = {"domtool-admin": "domtool.client.admin_cli", "domtool": "domtool.client.domtool_cli"}
    args = [sys.executable, "-m", module[prog], *argv]
    if config:
        args += ["--config", config]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd="/")
    return p.returncode, p.stdout + p.stderr


def make(
    root: Path, tls_poll: float = 0.3, roles: tuple[str, ...] = ("dns",), slave_extra: str = ""
) -> OpSite:
    """CAs, certificates and the first admin by ``init``; the two services' configs (the
    node's ``roles``; ``slave_extra``: more slave.toml, e.g. a backend table)."""
    root.mkdir(parents=True, exist_ok=True)
    state, slave_state = root / "state", root / "slave"
    slave_state.mkdir()
    dport, sport = free_port(), free_port()
    site_init.init_site(
        state, "example.coop", DISPATCHER, address=f"127.0.0.1:{dport}", hosts=(SLAVE,)
    )
    tls = state / "tls"
    # The slave's renewable files live in its state dir (the dispatcher sends renewals).
    stls = slave_state / "tls"
    stls.mkdir()
    for src, dst in (
        (f"hosts/{SLAVE}.pem", "slave.pem"),
        (f"hosts/{SLAVE}.key", "slave.key"),
        ("hosts/host-crl.pem", "host-crl.pem"),
    ):
        (stls / dst).write_bytes((tls / src).read_bytes())
    (stls / "slave.key").chmod(0o600)
    dconf = root / "dispatcher.toml"
    dconf.write_text(
        f"""[dispatcher]
host = "{DISPATCHER}"
state_dir = "{state}"
ca_dir = "{state}/ca"
listen_address = "127.0.0.1"
listen_port = {dport}
site_domains = ["example.coop"]
tls_poll = {tls_poll}
tls_push = 30

[tls]
certificate = "{tls}/dispatcher.pem"
key = "{tls}/dispatcher.key"
member_ca = "{state}/ca/member/ca.pem"
member_crl = "{state}/ca/member/crl.pem"
host_ca = "{state}/ca/host/ca.pem"
host_crl = "{state}/ca/host/crl.pem"
hosts_dir = "{tls}/hosts"

[site]
nameservers = ["{SLAVE}"]
hostmaster = "hostmaster.example.coop"

[[nodes]]
name = "ns1"
roles = {json.dumps(list(roles))}
ipv4 = "127.0.0.1"
host = "{SLAVE}"
address = "127.0.0.1"
port = {sport}
"""
    )
    sconf = root / "slave.toml"
    sconf.write_text(
        f"""[slave]
host = "{SLAVE}"
node = "ns1"
dispatcher = ["{DISPATCHER}"]
state_dir = "{slave_state}"
listen_address = "127.0.0.1"
listen_port = {sport}
tls_poll = {tls_poll}

[tls]
certificate = "{stls}/slave.pem"
key = "{stls}/slave.key"
ca = "{tls}/hosts/host-ca.pem"
crl = "{stls}/host-crl.pem"
{slave_extra}"""
    )
    return OpSite(root, state, slave_state, dport, sport, dconf, sconf)


def served_serial(site: OpSite, port: int, name: str) -> int:
    """The serial of the certificate the listener on ``port`` presents now (a handshake
    with the admin's certificate)."""
    import socket

    from OpenSSL import SSL

    from domtool.net import tls

    admin = site.state / "admin"
    own = tls.KeyPair.from_files(admin / "admin.pem", admin / "admin.key")
    ctx = tls.client_context(own, tls.Trust.from_files(admin / "host-ca.pem"), name)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(None)
        conn = SSL.Connection(ctx, sock)
        conn.set_tlsext_host_name(name.encode())
        conn.set_connect_state()
        conn.do_handshake()
        cert = conn.get_peer_certificate()
        return cert.get_serial_number()
