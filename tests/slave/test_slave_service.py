"""The slave's network face: real TLS handshakes in memory (iosim) between the dispatcher's
client and the slave's listener, frames through the protocol to the agent and back; who
is refused; timeouts; the config file; and ``domtool-slave`` over real loopback TCP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from zope.interface import implementer

from domtool import model, wire
from domtool.dispatcher import ca
from domtool.model import DesiredState
from domtool.net import cred, tls
from domtool.slave import config as slave_config
from domtool.slave.agent import Agent
from domtool.slave.backends.apache import ApacheBackend
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from domtool.slave.service import SlaveFactory, SlaveService, tls_factory
from tests.conftest import require_binary
from tests.slave.apache_daemon import ApacheProcess, free_port, get, prepare_site, public_dir
from tests.slave.fake_backend import zone
from tests.slave.test_agent import STATE_DIR, make_host

SITE = "example.coop"
DISPATCHER = "dispatcher.example.coop"
SLAVE = "ns1.example.coop"


@attrs.define
class Site:
    """Both CAs, the dispatcher's and the slave's host certificates, the slave's listener."""

    ca_dir: str
    dispatcher: tls.KeyPair
    slave: tls.KeyPair
    listener: tls.ServerTLS
    verify_errors: list

    def host_trust(self) -> tls.Trust:
        return tls.Trust(
            ca.ca_certificate(self.ca_dir, ca.HOST), ca.current_crl(self.ca_dir, ca.HOST)
        )


@pytest.fixture
def site(tmp_path) -> Site:
    ca_dir = str(tmp_path / "ca")
    ca.init_ca(ca_dir, SITE)
    dispatcher = tls.KeyPair(*ca.issue_host(ca_dir, DISPATCHER))
    slave = tls.KeyPair(*ca.issue_host(ca_dir, SLAVE))
    errors: list = []
    trust = tls.Trust(ca.ca_certificate(ca_dir, ca.HOST), ca.current_crl(ca_dir, ca.HOST))
    return Site(ca_dir, dispatcher, slave, tls.slave_listener(slave, trust, errors.append), errors)


class FrameClient(Int32StringReceiver):
    """The dispatcher's side of the link, as far as these tests need: send requests,
    collect every decoded frame."""

    MAX_LENGTH = wire.MAX_FRAME

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.lost: str | None = None

    def stringReceived(self, frame: bytes) -> None:  # noqa: N802 (Twisted API)
        self.frames.append(wire.decode_response(frame))

    def connectionLost(self, reason) -> None:  # noqa: N802 (Twisted API)
        self.lost = str(reason.value)


@attrs.define
class Link:
    """One in-memory TLS connection to the slave."""

    client: FrameClient
    server: object  # the SlaveProtocol
    pump: iosim.IOPump
    clock: Clock

    def send(self, rid: int, op: str, args: dict) -> dict | None:
        """Send a request and pump; the response with that id, or None."""
        self.client.sendString(wire.request(rid, op, args))
        self.pump.flush()
        got = [f for f in self.client.frames if f["id"] == rid]
        return got[-1] if got else None


def connect(site: Site, host, client_tls, *, portal: Portal | None = None) -> Link:
    """Connect ``client_tls`` to a slave serving ``host``'s agent, in memory."""
    clock = host.clock
    factory = SlaveFactory(
        host.agent,
        portal or cred.host_portal({DISPATCHER}),
        clock,
        handshake_timeout=30,
        idle_timeout=300,
    )
    server_factory = tls_factory(site.listener, factory, clock)
    frame_client = FrameClient()
    client_factory = TLSMemoryBIOFactory(
        client_tls, True, Factory.forProtocol(lambda: frame_client), clock
    )
    client, server, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: client_factory.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    slave_protocol = server.wrappedProtocol  # (reset to None when the connection is lost)
    pump.flush()
    return Link(frame_client, slave_protocol, pump, clock)


def as_dispatcher(site: Site):
    return tls.slave_client(site.dispatcher, site.host_trust(), SLAVE)


def prepare_args(txid: str, **owners: DesiredState) -> dict:
    return {
        "txid": txid,
        "changes": {o: {"state": model.to_json(s)} for o, s in owners.items()},
    }


@pytest.fixture
def host():
    return make_host()


def test_the_dispatcher_prepares_and_commits_over_tls(site, host):
    """End to end: the dispatcher's certificate logs in; prepare stages generation 1,
    commit makes it live; status reports it."""
    link = connect(site, host, as_dispatcher(site))
    assert link.server.peer == cred.Host(DISPATCHER)
    alice = DesiredState(zones=(zone("alice.example", "alice"),))
    prepared = link.send(1, "prepare", prepare_args("t1", alice=alice))
    assert prepared == {
        "id": 1,
        "ok": True,
        "result": {
            "txid": "t1",
            "base_generation": 0,
            "staged_generation": 1,
            "owners": {"alice": {"ok": True, "message": ""}},
            "message": "",
        },
    }
    committed = link.send(2, "commit", {"txid": "t1"})
    assert committed["ok"] and committed["result"]["generation"] == 1
    assert committed["result"]["status"] == "applied"
    assert "zone:alice.example" in host.daemon.loaded
    status = link.send(3, "status", {})
    assert status["result"]["generation"] == 1 and status["result"]["owners"] == ["alice"]


def test_prepare_then_abort_over_tls_leaves_the_generation(site, host):
    """An abort over the wire discards the staged generation; nothing goes live."""
    link = connect(site, host, as_dispatcher(site))
    alice = DesiredState(zones=(zone("alice.example", "alice"),))
    assert link.send(1, "prepare", prepare_args("t1", alice=alice))["ok"]
    assert link.send(2, "abort", {"txid": "t1"})["result"]["aborted"] is True
    assert link.send(3, "status", {})["result"]["generation"] == 0
    refused = link.send(4, "commit", {"txid": "t1"})
    assert refused["ok"] is False and refused["error"]["kind"] == "refused"


def test_a_member_certificate_is_refused_in_the_handshake(site, host):
    """A member certificate never verifies against the host CA: the handshake fails, the
    connection is closed before any frame, nothing is logged in."""
    alice = tls.KeyPair(*ca.issue_member(site.ca_dir, "alice"))
    link = connect(site, host, tls.slave_client(alice, site.host_trust(), SLAVE))
    assert [e.code for e in site.verify_errors] in ([20], [19])
    assert link.client.frames == [] and link.client.lost is not None
    assert link.server.peer is None and host.agent.pending_txid is None


def test_another_host_is_refused_by_the_checker(site, host):
    """A valid host certificate that is not the dispatcher's gets one 'unauthorized' frame
    naming why, and the connection is closed; its request is not acted on."""
    other = tls.KeyPair(*ca.issue_host(site.ca_dir, "www.example.coop"))
    link = connect(site, host, tls.slave_client(other, site.host_trust(), SLAVE))
    state = DesiredState(zones=(zone("alice.example", "alice"),))
    link.client.sendString(wire.request(1, "prepare", prepare_args("t1", alice=state)))
    link.pump.flush()
    assert link.client.frames == [
        {
            "id": 0,
            "ok": False,
            "error": {
                "kind": "unauthorized",
                "message": "host www.example.coop may not give orders here",
                "details": [],
            },
        }
    ]
    assert link.client.lost is not None
    assert host.agent.pending_txid is None


def test_unknown_ops_and_bad_frames_are_refused_and_the_link_stays_up(site, host):
    """An op outside SLAVE_OPS, bad arguments and a non-JSON frame each get a bad_request
    error (with the request's id when it has one); the next good request is answered."""
    link = connect(site, host, as_dispatcher(site))
    unknown = link.send(5, "run_command", {"argv": ["sh"]})
    assert unknown["error"]["kind"] == "bad_request"
    assert unknown["error"]["message"] == "unknown operation 'run_command'"
    bad = link.send(6, "commit", {"txid": "a b", "path": "/etc/passwd"})
    assert bad["error"]["kind"] == "bad_request"
    assert sorted(bad["error"]["details"]) == [
        "txid: not a valid value here",
        "unknown field(s): 'path'",
    ]
    link.client.sendString(b"\xff not json")
    link.pump.flush()
    assert link.client.frames[-1]["id"] == 0
    assert link.client.frames[-1]["error"]["kind"] == "bad_request"
    assert link.send(7, "status", {})["ok"] is True
    assert link.client.lost is None


def test_an_oversize_frame_is_refused_and_the_link_closed(site, host):
    """A length prefix beyond wire.MAX_FRAME is answered with bad_request and a hang-up,
    before any of the body is read."""
    link = connect(site, host, as_dispatcher(site))
    link.client.transport.write(struct.pack("!I", wire.MAX_FRAME + 1) + b"{")
    link.pump.flush()
    assert link.client.frames[-1]["error"]["kind"] == "bad_request"
    assert "exceeds" in link.client.frames[-1]["error"]["message"]
    assert link.client.lost is not None


@implementer(ICredentialsChecker)
class SlowChecker:
    """A checker that answers only when the test says so (a slow directory, say)."""

    credentialInterfaces = (cred.IPeerCertificate,)

    def __init__(self) -> None:
        self.pending: list[defer.Deferred] = []

    def requestAvatarId(self, credentials):  # noqa: N802 (twisted.cred API)
        d = defer.Deferred()
        self.pending.append(d)
        return d


def test_frames_before_login_are_ignored(site, host):
    """Until the login has succeeded nothing is acted on: a prepare sent while the checker
    is still deciding is dropped; after the login, requests are answered."""
    checker = SlowChecker()
    link = connect(site, host, as_dispatcher(site), portal=Portal(cred.HostRealm(), [checker]))
    state = DesiredState(zones=(zone("alice.example", "alice"),))
    link.client.sendString(wire.request(1, "prepare", prepare_args("t1", alice=state)))
    link.pump.flush()
    assert link.client.frames == [] and host.agent.pending_txid is None
    checker.pending[0].callback(DISPATCHER)
    link.pump.flush()
    assert link.server.peer == cred.Host(DISPATCHER)
    assert link.send(2, "status", {})["result"]["pending_txid"] is None


def test_a_connection_that_never_logs_in_is_dropped(site, host):
    """A peer that never completes the handshake is cut off after handshake_timeout."""
    clock = host.clock
    factory = SlaveFactory(host.agent, cred.host_portal({DISPATCHER}), clock, handshake_timeout=30)
    server_factory = tls_factory(site.listener, factory, clock)

    class Silent(Protocol):
        lost = None

        def connectionLost(self, reason):  # noqa: N802 (Twisted API)
            Silent.lost = reason

    client, server, pump = iosim.connectedServerAndClient(
        lambda: server_factory.buildProtocol(None), Silent, greet=False, clock=clock
    )
    pump.flush()
    clock.advance(29)
    pump.flush()
    assert Silent.lost is None
    clock.advance(1)
    pump.flush()
    assert Silent.lost is not None


def test_an_idle_connection_is_closed(site, host):
    """After idle_timeout seconds without a frame the slave hangs up; a frame resets it."""
    link = connect(site, host, as_dispatcher(site))
    link.clock.advance(200)
    assert link.send(1, "status", {})["ok"]
    link.clock.advance(200)
    link.pump.flush()
    assert link.client.lost is None
    link.clock.advance(100)
    link.pump.flush()
    assert link.client.lost is not None


def test_a_renewed_crl_is_picked_up_and_refuses_a_revoked_dispatcher(site, host, tmp_path):
    """The service re-reads the CRL file when it changes: once the dispatcher's certificate
    is revoked and the CRL rewritten, its handshakes fail."""
    crl = tmp_path / "crl.pem"
    crl.write_bytes(ca.current_crl(site.ca_dir, ca.HOST))
    config = slave_config.SlaveConfig(
        host=SLAVE,
        dispatcher=(DISPATCHER,),
        state_dir=STATE_DIR,
        certificate="-",
        key="-",
        ca="-",
        crl=str(crl),
    )
    svc = SlaveService(config, host.agent, site.listener, host.clock)
    assert svc.check_crl() is False
    ca.revoke(site.ca_dir, DISPATCHER, kind=ca.HOST)
    crl.write_bytes(ca.current_crl(site.ca_dir, ca.HOST))
    os.utime(crl, (time.time() + 5, time.time() + 5))
    assert svc.check_crl() is True
    link = connect(site, host, as_dispatcher(site))
    assert link.server.peer is None
    assert [e.code for e in site.verify_errors] == [23]


# -- the config file ------------------------------------------------------------------

CONFIG = """
[slave]
host = "ns1.example.coop"
node = "local"
dispatcher = "dispatcher.example.coop"
state_dir = "state"
listen_address = "127.0.0.1"
listen_port = {port}

[tls]
certificate = "slave.pem"
key = "slave.key"
ca = "host-ca.pem"
crl = "host-crl.pem"
"""


def test_the_config_file_is_read_with_paths_relative_to_it(tmp_path):
    """Relative paths are taken from the config file's directory; defaults fill the rest."""
    path = tmp_path / "slave.toml"
    path.write_text(CONFIG.format(port=1999))
    cfg = slave_config.load(path)
    assert cfg.state_dir == str(tmp_path / "state")
    assert cfg.crl == str(tmp_path / "host-crl.pem")
    assert cfg.dispatcher == (DISPATCHER,) and cfg.node_name == "local"
    assert cfg.listen_port == 1999 and cfg.prepare_timeout == 60.0
    assert cfg.backends == {}


def test_every_config_problem_is_reported_at_once(tmp_path):
    """Unknown keys, a bad port, a missing section: all named in one ConfigError."""
    text = """
[slave]
host = "not a host"
dispatcher = []
state_dir = "s"
listen_port = 70000
colour = "blue"
"""
    with pytest.raises(slave_config.ConfigError) as e:
        slave_config.parse(text, str(tmp_path))
    problems = "\n".join(e.value.problems)
    for expected in (
        "[tls]: missing section",
        "[slave]: unknown key(s): colour",
        "[slave] host:",
        "[slave] dispatcher: required",
        "[slave] listen_port",
        "[tls] certificate: required",
    ):
        assert expected in problems


BACKENDS = """
[backends.apache]
base_config = "apache/base.conf"
live_config = "apache/apache2.conf"
server_root = "/etc/apache2"
log_dir = "/var/log/apache2"
port = 8080

[backends.bind]
base_config = "bind/options.conf"
live_config = "bind/named.conf"
rndc_config = "bind/rndc.conf"
nameservers = ["ns1.example.coop", "ns2.example.coop"]
"""


def test_backends_are_built_from_their_tables(tmp_path):
    """Each [backends.NAME] table becomes that backend's settings: relative config paths
    resolved from the file, arrays as tuples, the node defaulting to the slave's."""
    from domtool.slave.backends.apache import ApacheBackend
    from domtool.slave.backends.bind import BindBackend
    from domtool.slave.service import build_backends

    cfg = slave_config.parse(CONFIG.format(port=1) + BACKENDS, str(tmp_path))
    backends = build_backends(cfg)
    assert sorted(backends) == ["apache", "bind"]
    apache, bind = backends["apache"], backends["bind"]
    assert isinstance(apache, ApacheBackend) and isinstance(bind, BindBackend)
    assert apache.config.base_config == str(tmp_path / "apache" / "base.conf")
    assert apache.config.server_root == "/etc/apache2" and apache.config.port == 8080
    assert apache.config.node == "local" and bind.config.node == "local"
    assert bind.config.nameservers == ("ns1.example.coop", "ns2.example.coop")


def test_unknown_backends_and_settings_are_refused(tmp_path):
    """A backend outside the closed table, or a setting its class does not have, is a
    ConfigError naming it (nothing is looked up by a name from the file)."""
    from domtool.slave.service import build_backends

    unknown = slave_config.parse(
        CONFIG.format(port=1) + "[backends.sendmail]\nx = 1\n", str(tmp_path)
    )
    with pytest.raises(slave_config.ConfigError, match="unknown backend.*sendmail"):
        build_backends(unknown)
    typo = BACKENDS.replace("port = 8080", "prot = 8080")
    with pytest.raises(slave_config.ConfigError, match=r"\[backends.apache\].*prot"):
        build_backends(slave_config.parse(CONFIG.format(port=1) + typo, str(tmp_path)))


def test_domtool_slave_refuses_a_bad_config_file(tmp_path, capsys):
    """``domtool-slave --config`` with a missing or broken file exits 2 and says why."""
    from domtool.slave.service import main

    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[slave]\nhost = 1\n")
    assert main(["--config", str(tmp_path / "bad.toml")]) == 2
    assert "[tls]: missing section" in capsys.readouterr().err


# -- domtool-slave over real loopback TCP ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frame(sock: ssl.SSLSocket) -> dict:
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        assert chunk, "connection closed"
        head += chunk
    (n,) = struct.unpack("!I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        assert chunk, "connection closed"
        body += chunk
    return json.loads(body)


def test_domtool_slave_serves_the_dispatcher_over_loopback(site, tmp_path):
    """``domtool-slave --config`` binds 127.0.0.1, answers the dispatcher's status and
    prepare/abort over a real TLS socket (Python's ssl as the client), and refuses a
    member certificate."""
    d = tmp_path / "etc"
    d.mkdir()
    (d / "slave.pem").write_bytes(site.slave.cert_pem)
    (d / "slave.key").write_bytes(site.slave.key_pem)
    (d / "host-ca.pem").write_bytes(ca.ca_certificate(site.ca_dir, ca.HOST))
    (d / "host-crl.pem").write_bytes(ca.current_crl(site.ca_dir, ca.HOST))
    (d / "disp.pem").write_bytes(site.dispatcher.cert_pem)
    (d / "disp.key").write_bytes(site.dispatcher.key_pem)
    member = ca.issue_member(site.ca_dir, "alice")
    (d / "alice.pem").write_bytes(member[0])
    (d / "alice.key").write_bytes(member[1])
    port = _free_port()
    (d / "slave.toml").write_text(CONFIG.format(port=port))
    script = os.path.join(os.path.dirname(sys.executable), "domtool-slave")
    log = tmp_path / "slave.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [script, "--config", str(d / "slave.toml")], stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def dial(cert: str, key: str) -> ssl.SSLSocket:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(str(d / "host-ca.pem"))
            ctx.load_cert_chain(str(d / cert), str(d / key))
            deadline = time.monotonic() + 15
            while True:
                try:
                    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                    break
                except ConnectionRefusedError:
                    assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "domtool-slave did not listen"
                    time.sleep(0.05)
            return ctx.wrap_socket(raw, server_hostname=SLAVE)

        with dial("disp.pem", "disp.key") as s:

            def ask(rid: int, op: str, args: dict) -> dict:
                data = wire.request(rid, op, args)
                s.sendall(struct.pack("!I", len(data)) + data)
                return _frame(s)

            status = ask(1, "status", {})
            assert status["result"] == {
                "host": SLAVE,
                "generation": 0,
                "verified": True,
                "owners": [],
                "pending_txid": None,
                "state_known": True,
            }
            state = DesiredState(zones=(zone("alice.example", "alice"),))
            prepared = ask(2, "prepare", prepare_args("t1", alice=state))
            assert prepared["ok"] and prepared["result"]["base_generation"] == 0
            assert ask(3, "abort", {"txid": "t1"})["ok"]
        with dial("alice.pem", "alice.key") as s:
            with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
                data = wire.request(1, "status", {})
                s.sendall(struct.pack("!I", len(data)) + data)
                _frame(s)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "dispatcher.example.coop logged in" in log.read_text()


# -- a real apache2 behind the slave -------------------------------------------------------


@attrs.define
class Served:
    """An agent and the clock its connections use (what ``connect`` needs of a host)."""

    agent: Agent
    clock: Clock


@pytest.mark.daemons
def test_the_dispatcher_publishes_a_site_on_a_real_apache_through_the_slave(site, tmp_path):
    """Over the TLS link, prepare and commit alice's vhost: the slave renders it, apache2 -t
    accepts it, a graceful reload serves it and the probe sees it; bob's vhost whose
    document root is a symlink into alice's tree is refused by the slave's re-check and
    his name is not served."""
    require_binary("apache2")
    web = public_dir()
    try:
        for member in ("alice", "bob"):
            (web / member / "www").mkdir(parents=True)
        (web / "alice" / "www" / "index.html").write_text("<p>alice's site</p>\n")
        os.symlink(web / "alice" / "www", web / "bob" / "www" / "stolen")
        for p in web.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        port = free_port()
        state_dir = tmp_path / "state"
        root = tmp_path / "apache"
        sites = str(state_dir / "current" / "apache" / "sites.conf")
        config = prepare_site(root, port, sites, node="local")
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
        proc = ApacheProcess(config, root)
        try:
            clock = Clock()
            agent = Agent(engine, host=SLAVE, node="local", state_dir=state_dir, clock=clock)
            agent.start()
            link = connect(site, Served(agent, clock), as_dispatcher(site))

            def vhost(owner: str, fqdn: str, root: str) -> dict:
                v = model.Vhost(
                    fqdn=fqdn,
                    owner=owner,
                    domain=fqdn.split(".", 1)[1],
                    nodes=("local",),
                    document_root=root,
                    user=owner,
                    group=owner,
                    server_admin=f"{owner}@example.org",
                )
                return {
                    "state": model.to_json(DesiredState(vhosts=(v,))),
                    "grants": {
                        "paths": [str(web / owner)],
                        "users": [owner],
                        "groups": [owner],
                    },
                }

            changes = {
                "alice": vhost("alice", "www.alice.example", str(web / "alice" / "www")),
                "bob": vhost("bob", "www.bob.example", str(web / "bob" / "www" / "stolen")),
            }
            prepared = link.send(1, "prepare", {"txid": "t1", "changes": changes})
            owners = prepared["result"]["owners"]
            assert owners["alice"] == {"ok": True, "message": ""}
            assert owners["bob"]["ok"] is False and "document_root" in owners["bob"]["message"]
            committed = link.send(2, "commit", {"txid": "t1"})["result"]
            assert committed["status"] == "applied", committed["message"]
            assert [v["target"][2] for v in committed["verified"]] == ["www.alice.example"]
            page = get(port, "www.alice.example")
            assert (page.status, page.body) == (200, b"<p>alice's site</p>\n")
            assert get(port, "www.bob.example").status == 421
        finally:
            proc.stop()
    finally:
        shutil.rmtree(web)


# -- random frames --------------------------------------------------------------------------


def _logged_in(host) -> tuple:
    """A SlaveProtocol already past its login, over a StringTransport (no TLS needed to
    feed it frames)."""
    factory = SlaveFactory(host.agent, cred.host_portal({DISPATCHER}), host.clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto._welcome(cred.Host(DISPATCHER))
    return proto, transport


def _responses(data: bytes) -> list[dict]:
    out = []
    while data:
        (n,) = struct.unpack("!I", data[:4])
        out.append(wire.decode_response(data[4 : 4 + n]))
        data = data[4 + n :]
    return out


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=15,
)
envelopes = st.fixed_dictionaries(
    {
        "v": st.sampled_from([1, 1, 1, 2, "1"]),
        "id": st.integers(min_value=-1, max_value=2**53),
        "op": st.sampled_from([*sorted(wire.SLAVE_OPS), "run", "", "PREPARE"]),
        "args": json_values,
    }
)


@settings(max_examples=200)
@given(frame=envelopes.map(lambda e: json.dumps(e).encode()) | st.binary(max_size=64))
def test_every_frame_gets_exactly_one_answer_and_the_link_stays_up(frame):
    """Whatever a logged-in peer sends (random envelopes and random bytes), the slave
    answers with exactly one response frame, ok or an error of a wire kind, and keeps the
    connection open."""
    host = make_host()
    proto, transport = _logged_in(host)
    proto.stringReceived(frame)
    answers = _responses(transport.value())
    assert len(answers) == 1
    (answer,) = answers
    if answer["ok"] is False:
        assert answer["error"]["kind"] in {"bad_request", "refused", "failed"}
        assert answer["error"]["kind"] != "failed" or "internal" not in answer["error"]["message"]
    assert not transport.disconnecting


def test_the_service_binds_before_starting_and_starts_the_agent(site, host, tmp_path):
    """privilegedStartService binds the configured address and port (with a real backlog);
    startService starts the agent (engine recovery, state load) and the CRL poll;
    stopService stops listening."""
    reactor = MemoryReactorClock()
    config = slave_config.parse(CONFIG.format(port=1235), str(tmp_path))
    svc = SlaveService(config, host.agent, site.listener, reactor)
    svc.privilegedStartService()
    [(port, factory, backlog, interface)] = reactor.tcpServers
    assert (port, backlog, interface) == (1235, 64, "127.0.0.1")
    assert isinstance(factory, TLSMemoryBIOFactory)
    svc.startService()
    done: list = []
    svc.started.addBoth(done.append)
    assert done == [None]
    assert reactor.getDelayedCalls()  # the CRL poll
    svc.stopService()
    assert svc.port is None and not reactor.getDelayedCalls()
