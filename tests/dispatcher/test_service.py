"""The dispatcher's member listener over real TLS handshakes in memory: alice submits and
gets her result (with progress frames), bad frames and arguments are refused before any
logic, a non-admin's admin op is refused and an admin's is answered; the TLS link to a
real slave listener and agent; the configuration file and the command line."""

from __future__ import annotations

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.protocols.basic import Int32StringReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from domtool import wire
from domtool.dispatcher import auth, ca, config, service
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.links import RemoteError, TLSLink
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.net import cred, tls
from domtool.slave.service import SlaveFactory
from domtool.slave.service import tls_factory as slave_tls_factory

from .conftest import DISPATCHER
from .harness import SITE, SITE_DOMAINS, example, files, result_of


class Client(Int32StringReceiver):
    """A member's side: send request frames, collect every frame that comes back."""

    MAX_LENGTH = wire.MAX_FRAME

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.lost = False

    def stringReceived(self, frame: bytes) -> None:  # noqa: N802 (Twisted API)
        self.frames.append(wire.decode_response(frame))

    def connectionLost(self, reason) -> None:  # noqa: N802 (Twisted API)
        self.lost = True


@attrs.define
class Session:
    """One member connection to the dispatcher's listener, pumped in memory."""

    client: Client
    pump: object
    slaves: dict

    def ask(self, rid: int, op: str, args: dict | None = None) -> dict:
        """Send one request and return its final (non-progress) frame."""
        self.client.sendString(wire.request(rid, op, args or {}))
        self.pump.flush()
        finals = [f for f in self.client.frames if f["id"] == rid and "progress" not in f]
        assert len(finals) == 1, self.client.frames
        return finals[0]


@pytest.fixture
def dispatcher(site):
    """The dispatcher's listener (real front door, real portal) over fake slaves; alice
    owns example.org; root is an admin."""
    store = site.store
    for cls, value in (("domain", "example.org"), ("path", "/home/alice")):
        store.grant("alice", cls, value)
    store.grant("alice", "user", "alice")
    store.grant("alice", "group", "alice")
    store.add_member("root", is_admin=True)
    clock = Clock()
    slaves = {n.name: FakeSlave(n.name) for n in SITE.nodes}
    links = {h: FakeLink(h, s) for h, s in slaves.items()}
    controller = service.Controller(
        store, SITE, Coordinator(store, links, clock), site_domains=SITE_DOMAINS
    )
    factory = service.MemberFactory(controller, auth.member_portal(store), clock)

    def connect(user: str) -> Session:
        pair = ca.issue_member(site.ca_dir, user)
        client = Client()
        server_side = service.tls_factory(site.server, factory, clock)
        client_side = TLSMemoryBIOFactory(
            site.client(pair), True, Factory.forProtocol(lambda: client), clock
        )
        _c, _s, pump = iosim.connectedServerAndClient(
            lambda: server_side.buildProtocol(None),
            lambda: client_side.buildProtocol(None),
            greet=False,
            clock=clock,
        )
        pump.flush()
        return Session(client, pump, slaves)

    return connect


def test_alice_submits_over_tls_and_gets_her_result(dispatcher):
    """alice's submit goes through the real front door and login, and comes back applied
    with each host's generation, after progress frames."""
    alice = dispatcher("alice")
    answer = alice.ask(1, "submit", {"files": files(example_org=example("example.org"))})
    assert answer["ok"] is True, answer
    result = answer["result"]
    assert result["applied"] is True and set(result["hosts"]) == {"ns1", "web1"}
    assert result["hosts"]["ns1"]["generation"] == 1
    assert [f["progress"]["what"] for f in alice.client.frames if "progress" in f] == [
        "ns1 prepared",
        "web1 prepared",
        "ns1 applied",
        "web1 applied",
    ]
    assert alice.ask(2, "whoami") == {
        "id": 2,
        "ok": True,
        "result": {"user": "alice", "admin": False},
    }


def test_a_non_admins_admin_op_is_refused(dispatcher):
    """alice asking for regen (or any admin op) is refused as unauthorized; root's is answered."""
    alice = dispatcher("alice")
    for rid, op in enumerate(sorted(wire.ADMIN_OPS), start=1):
        answer = alice.ask(rid, op)
        assert answer["ok"] is False and answer["error"]["kind"] == "unauthorized", answer
        assert answer["error"]["message"] == f"{op} is for administrators only"
    root = dispatcher("root")
    answer = root.ask(1, "regen", {})
    assert answer["ok"] and answer["result"]["apply"] is False


def test_bad_frames_and_arguments_are_refused_before_any_logic(dispatcher):
    """An unknown op, a malformed frame and arguments that fail their schema are each
    refused as bad_request, naming every problem; no slave is contacted."""
    alice = dispatcher("alice")
    alice.client.sendString(b"not json")
    alice.pump.flush()
    assert alice.client.frames[-1]["error"]["kind"] == "bad_request"
    assert alice.ask(5, "format_disk")["error"]["kind"] == "bad_request"
    bad = alice.ask(6, "submit", {"files": [{"name": "../etc", "text": 3}], "extra": 1})
    assert bad["error"]["kind"] == "bad_request"
    assert sorted(bad["error"]["details"]) == [
        "files[0].name: not a valid name",
        "files[0].text: expected str, got int",
        "unknown field(s): 'extra'",
    ]
    assert alice.slaves["ns1"].generation == 0


def test_a_removed_member_gets_nothing(dispatcher, site):
    """A member the store no longer holds is refused at login; no request is answered."""
    bob = ca.issue_member(site.ca_dir, "carol")
    site.store.add_member("carol")
    site.store.remove_member("carol")
    client = Client()
    clock = Clock()
    store = site.store
    controller = service.Controller(store, SITE, Coordinator(store, {}, clock))
    server_side = service.tls_factory(
        site.server, service.MemberFactory(controller, auth.member_portal(store), clock), clock
    )
    client_side = TLSMemoryBIOFactory(
        site.client(bob), True, Factory.forProtocol(lambda: client), clock
    )
    _c, _s, pump = iosim.connectedServerAndClient(
        lambda: server_side.buildProtocol(None),
        lambda: client_side.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    client.sendString(wire.request(1, "whoami", {}))
    pump.flush()
    assert [f["id"] for f in client.frames] == [0]
    assert client.frames[0]["error"] == {
        "kind": "unauthorized",
        "message": "carol was removed",
        "details": [],
    }


# -- the TLS link to a real slave ----------------------------------------------------


@attrs.define
class MemoryEndpoint:
    """A client endpoint whose connections reach ``server_factory`` through iosim."""

    server_factory: object
    clock: Clock
    pumps: list = attrs.field(factory=list)

    def connect(self, factory) -> defer.Deferred:
        client = factory.buildProtocol(None)
        server = self.server_factory.buildProtocol(None)
        pump = iosim.connect(
            server,
            iosim.makeFakeServer(server),
            client,
            iosim.makeFakeClient(client),
            greet=False,
            clock=self.clock,
        )
        self.pumps.append(pump)
        return defer.succeed(client)

    def flush(self) -> None:
        for p in self.pumps:
            p.flush()


def test_the_tls_link_drives_a_real_slave_listener_and_agent(site):
    """Over TLS to the slave's own listener (host CA, dispatcher name checked), the link's
    prepare and commit make alice's zone live on the real agent; a bad request comes back
    as RemoteError."""
    from tests.slave.test_agent import make_host

    host = make_host()
    clock = Clock()
    slave_name = "ns1.example.coop"
    host_trust = tls.Trust(
        ca.ca_certificate(site.ca_dir, ca.HOST), ca.current_crl(site.ca_dir, ca.HOST)
    )
    listener = tls.slave_listener(tls.KeyPair(*ca.issue_host(site.ca_dir, slave_name)), host_trust)
    slave = SlaveFactory(host.agent, cred.host_portal({DISPATCHER}), clock)
    endpoint = MemoryEndpoint(slave_tls_factory(listener, slave, clock), clock)
    link = TLSLink(
        slave_name, endpoint, tls.slave_client(site.dispatcher, host_trust, slave_name), clock
    )

    def call(op, args):
        d = link.call(op, args)
        endpoint.flush()
        return result_of(d)

    assert call("status", {})["generation"] == 0
    zone = {
        "kind": "Zone",
        "name": "example.org",
        "owner": "alice",
        "records": [
            {"kind": "Record", "name": "@", "rtype": "A", "data": ["192.0.2.1"], "ttl": None}
        ],
        "nodes": ["local"],
        "ttl": 3600,
    }
    state = {"kind": "DesiredState", "zones": [zone], "vhosts": [], "mail": []}
    prepared = call("prepare", {"txid": "t1", "changes": {"alice": {"state": state}}})
    assert prepared["owners"] == {"alice": {"ok": True, "message": ""}}
    committed = call("commit", {"txid": "t1"})
    assert committed["status"] == "applied" and committed["generation"] == 1
    assert set(host.daemon.loaded) == {"zone:example.org"}
    with pytest.raises(RemoteError) as e:
        call("commit", {"txid": "../x"})
    assert e.value.kind == "bad_request"
    assert len(endpoint.pumps) == 1  # one connection, reused


# -- configuration and command line -------------------------------------------------

CONFIG = """
[dispatcher]
host = "dispatcher.example.coop"
state_dir = "state"
site_domains = ["example.coop"]

[tls]
certificate = "d.pem"
key = "d.key"
member_ca = "ca/member/ca.pem"
member_crl = "ca/member/crl.pem"
host_ca = "ca/host/ca.pem"
host_crl = "ca/host/crl.pem"  # required (issue 13)

[[nodes]]
name = "ns1"
roles = ["dns"]
host = "ns1.example.coop"

[[nodes]]
name = "web1"
roles = ["web", "mail"]
address = "192.0.2.7"
port = 4000

[quotas]
domains = 3
"""


def test_config_reads_nodes_slaves_and_quotas(tmp_path):
    """The TOML file gives the site's nodes, each slave's address and the quota defaults;
    relative paths are taken from the file's directory."""
    path = tmp_path / "dispatcher.toml"
    path.write_text(CONFIG)
    c = config.load(path)
    assert [(n.name, n.roles) for n in c.site.nodes] == [
        ("ns1", ("dns",)),
        ("web1", ("web", "mail")),
    ]
    assert [(s.node, s.host, s.address, s.port) for s in c.slaves] == [
        ("ns1", "ns1.example.coop", "ns1.example.coop", 1235),
        ("web1", "web1", "192.0.2.7", 4000),
    ]
    assert c.state_dir == str(tmp_path / "state") and c.quotas["domains"] == 3
    assert c.site_domains == ("example.coop",)


def test_config_reports_every_problem(tmp_path):
    """Unknown keys, missing settings and bad roles are all reported at once."""
    path = tmp_path / "bad.toml"
    path.write_text('[dispatcher]\nhots = "x"\n[[nodes]]\nname = "a"\nroles = ["ftp"]\n')
    with pytest.raises(config.ConfigError) as e:
        config.load(path)
    problems = e.value.problems
    assert "[dispatcher] unknown key 'hots'" in problems and "host is required" in problems
    assert any("roles must be among" in p for p in problems)


def test_main_refuses_a_bad_config(tmp_path, capsys):
    """domtool-dispatcher --config with an unusable file exits 2 and says why."""
    assert service.main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_frames_before_login_are_ignored_and_idle_connections_closed(site):
    """While the login has not completed, a frame gets no answer (nothing acts on it);
    the handshake-and-login timeout then closes the connection. A logged-in connection
    idle for idle_timeout is closed too."""
    from twisted.cred.portal import Portal

    class SlowChecker(auth.MemberCertificateChecker):
        def requestAvatarId(self, credentials):  # noqa: N802 (twisted.cred API)
            return defer.Deferred()  # never decides

    clock = Clock()
    store = site.store
    controller = service.Controller(store, SITE, Coordinator(store, {}, clock))
    slow = Portal(auth.MemberRealm(store), [SlowChecker(store)])
    for portal, idle in ((slow, False), (auth.member_portal(store), True)):
        factory = service.MemberFactory(
            controller, portal, clock, handshake_timeout=5, idle_timeout=50
        )
        client = Client()
        server_side = service.tls_factory(site.server, factory, clock)
        client_side = TLSMemoryBIOFactory(
            site.client(ca.issue_member(site.ca_dir, "alice")),
            True,
            Factory.forProtocol(lambda c=client: c),
            clock,
        )
        _c, _s, pump = iosim.connectedServerAndClient(
            lambda s=server_side: s.buildProtocol(None),
            lambda c=client_side: c.buildProtocol(None),
            greet=False,
            clock=clock,
        )
        client.sendString(wire.request(1, "whoami", {}))
        pump.flush()
        if idle:
            assert [f["id"] for f in client.frames] == [1]
            clock.advance(49)
            pump.flush()
            assert not client.lost
            clock.advance(2)
        else:
            assert client.frames == []
            clock.advance(6)
        pump.flush()
        assert client.lost


def test_the_service_binds_with_a_large_backlog_in_privileged_start(tmp_path, site):
    """privilegedStartService listens on the configured address with backlog 1024; stop
    releases it."""
    from twisted.internet.testing import MemoryReactorClock

    reactor = MemoryReactorClock()
    cfg = attrs.make_class(
        "Cfg", ["listen_port", "listen_address", "handshake_timeout", "idle_timeout", "member_crl"]
    )(4321, "127.0.0.1", 30.0, 600.0, str(tmp_path / "crl.pem"))
    controller = service.Controller(site.store, SITE, Coordinator(site.store, {}, reactor))
    svc = service.DispatcherService(cfg, controller, site.server, reactor)
    svc.privilegedStartService()
    port, _factory, backlog, interface = reactor.tcpServers[0]
    assert (port, backlog, interface) == (4321, 1024, "127.0.0.1")
    svc.startService()
    svc.stopService()


def test_membership_and_admin_status_are_read_at_each_request(dispatcher, site):
    """A member removed while connected gets no more answers and is disconnected; admin
    status granted while connected is in force at the next request."""
    alice = dispatcher("alice")
    assert alice.ask(1, "hosts")["error"]["kind"] == "unauthorized"
    site.store.set_admin("alice", True)
    assert alice.ask(2, "hosts")["ok"] is True
    site.store.remove_member("alice")
    answer = alice.ask(3, "whoami")
    assert answer["error"] == {
        "kind": "unauthorized",
        "message": "alice is no longer a member",
        "details": [],
    }
    assert alice.client.lost


def test_the_tls_link_retries_a_refused_connection_with_backoff(site):
    """Connection attempts that are refused are retried after 0.5 s, then 1 s; a link
    whose every attempt fails reports LinkError naming the host."""
    from domtool.dispatcher.links import LinkError
    from tests.slave.test_agent import make_host

    host = make_host()
    clock = Clock()
    slave_name = "ns1.example.coop"
    host_trust = tls.Trust(
        ca.ca_certificate(site.ca_dir, ca.HOST), ca.current_crl(site.ca_dir, ca.HOST)
    )
    listener = tls.slave_listener(tls.KeyPair(*ca.issue_host(site.ca_dir, slave_name)), host_trust)
    slave = SlaveFactory(host.agent, cred.host_portal({DISPATCHER}), clock)
    inner = MemoryEndpoint(slave_tls_factory(listener, slave, clock), clock)

    @attrs.define
    class Flaky:
        refusals: int
        tries: int = 0

        def connect(self, factory):
            self.tries += 1
            if self.tries <= self.refusals:
                return defer.fail(ConnectionRefusedError("connection refused"))
            return inner.connect(factory)

    client = tls.slave_client(site.dispatcher, host_trust, slave_name)
    flaky = Flaky(2)
    link = TLSLink(slave_name, flaky, client, clock)
    d = link.call("status", {})
    assert flaky.tries == 1 and not d.called
    clock.advance(0.5)
    assert flaky.tries == 2 and not d.called
    clock.advance(1.0)
    inner.flush()
    assert flaky.tries == 3 and result_of(d)["generation"] == 0

    dead = TLSLink("web1.example.coop", Flaky(99), client, clock)
    d = dead.call("status", {})
    clock.advance(0.5)
    clock.advance(1.0)
    with pytest.raises(LinkError) as e:
        result_of(d)
    assert str(e.value).startswith("cannot connect to web1.example.coop")


def test_the_real_service_over_real_sockets_holds_many_members_at_once(tmp_path):
    """The real DispatcherService under the real reactor on 127.0.0.1 (in a subprocess):
    300 alice clients connected at once are each logged in and answered while all are
    open, and a submit over a socket is applied on both hosts. (1,000 at once: 2.2 s on
    this machine, run the script by hand with N=1000.)"""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("dispatcher_sockets.py")
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "300"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["answered"] == 300 and report["open_at_once"] == 300
    assert report["submit"]["result"]["applied"] is True
    assert report["generations"] == {"ns1": 1, "web1": 1}


def test_the_tls_link_gives_up_on_a_slave_that_does_not_answer(site):
    """A slave that logs the dispatcher in but never answers: the call fails with
    LinkError after the link's timeout (on the Clock), naming the host and the op."""
    from domtool.dispatcher.links import LinkError

    class Silent:
        def handle(self, op, args):
            return defer.Deferred()

    clock = Clock()
    slave_name = "ns1.example.coop"
    host_trust = tls.Trust(
        ca.ca_certificate(site.ca_dir, ca.HOST), ca.current_crl(site.ca_dir, ca.HOST)
    )
    listener = tls.slave_listener(tls.KeyPair(*ca.issue_host(site.ca_dir, slave_name)), host_trust)
    slave = SlaveFactory(Silent(), cred.host_portal({DISPATCHER}), clock)
    endpoint = MemoryEndpoint(slave_tls_factory(listener, slave, clock), clock)
    client = tls.slave_client(site.dispatcher, host_trust, slave_name)
    link = TLSLink(slave_name, endpoint, client, clock, timeout=10)
    d = link.call("status", {})
    endpoint.flush()
    assert not d.called
    clock.advance(10)
    with pytest.raises(LinkError) as e:
        result_of(d)
    assert str(e.value) == "ns1.example.coop did not answer status within 10 s"
