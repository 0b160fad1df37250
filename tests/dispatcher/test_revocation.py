"""Revocation takes effect at once (issue 13, finding 4).

Before: an open member session survived the revocation of its certificate and a re-pin
to another serial; the host CRL was optional and read once, and an open link to a
revoked slave kept carrying prepares (every test here failed first: seen).
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from domtool.dispatcher import auth, ca, config, service
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.links import LinkError, TLSLink
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.net import cred, tls
from domtool.slave.service import SlaveFactory
from domtool.slave.service import tls_factory as slave_tls_factory
from tests.dispatcher.conftest import DISPATCHER
from tests.dispatcher.harness import SITE, result_of
from tests.dispatcher.test_service import CONFIG, Client, MemoryEndpoint, Session


@pytest.fixture
def connect(site):
    clock = Clock()
    store = site.store
    links = {n.name: FakeLink(n.name, FakeSlave(n.name)) for n in SITE.nodes}
    controller = service.Controller(store, SITE, Coordinator(store, links, clock))
    factory = service.MemberFactory(controller, auth.member_portal(store), clock, site.server)

    def connect(pair) -> Session:
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
        return Session(client, pump, {})

    return connect


def test_an_open_session_ends_at_its_next_request_once_the_certificate_is_revoked(site, connect):
    pair = ca.issue_member(site.ca_dir, "alice")
    alice = connect(pair)
    assert alice.ask(1, "whoami")["result"] == {"user": "alice", "admin": False}
    ca.revoke(site.ca_dir, "alice")
    site.reload_crl()  # what rmuser / the CRL watch do
    answer = alice.ask(2, "whoami")
    assert answer["error"]["kind"] == "unauthorized"
    assert "has been revoked" in answer["error"]["message"]
    assert alice.client.lost


def test_an_open_session_ends_once_the_member_is_pinned_to_another_certificate(site, connect):
    old = ca.issue_member(site.ca_dir, "alice")
    alice = connect(old)
    assert alice.ask(1, "whoami")["ok"] is True
    from cryptography import x509

    new = ca.issue_member(site.ca_dir, "alice")
    serial = x509.load_pem_x509_certificate(new[0]).serial_number
    site.store.set_cert_serial("alice", serial)  # the re-pin of a re-issued member
    answer = alice.ask(2, "whoami")
    assert answer["error"]["kind"] == "unauthorized"
    assert "no longer alice's current one" in answer["error"]["message"]
    assert alice.client.lost
    assert connect(new).ask(1, "whoami")["ok"] is True


def test_the_host_crl_is_required(tmp_path):
    path = tmp_path / "dispatcher.toml"
    path.write_text(CONFIG.replace('host_crl = "ca/host/crl.pem"  # required (issue 13)\n', ""))
    with pytest.raises(config.ConfigError, match="host_crl"):
        config.load(path)


@attrs.define
class Slave:
    link: TLSLink
    endpoint: MemoryEndpoint
    creator: tls.ClientTLS
    name: str
    listener: tls.ServerTLS
    factory: SlaveFactory

    def call(self, op, args):
        d = self.link.call(op, args)
        self.endpoint.flush()
        return result_of(d)


def _slave(site, clock) -> Slave:
    from tests.slave.test_agent import make_host

    host = make_host()
    name = "ns1.example.coop"
    trust = tls.Trust(ca.ca_certificate(site.ca_dir, ca.HOST), ca.current_crl(site.ca_dir, ca.HOST))
    listener = tls.slave_listener(tls.KeyPair(*ca.issue_host(site.ca_dir, name)), trust)
    slave = SlaveFactory(host.agent, cred.host_portal({DISPATCHER}), clock, listener)
    endpoint = MemoryEndpoint(slave_tls_factory(listener, slave, clock), clock)
    creator = tls.slave_client(site.dispatcher, trust, name)
    link = TLSLink(name, endpoint, creator, clock, attempts=1)
    return Slave(link, endpoint, creator, name, listener, slave)


def test_the_slave_refuses_an_open_connection_once_the_dispatchers_certificate_is_revoked(
    site,
):
    from domtool.dispatcher.links import RemoteError

    s = _slave(site, Clock())
    assert s.call("status", {})["generation"] == 0
    ca.revoke(site.ca_dir, DISPATCHER, kind=ca.HOST)
    s.listener.reload_crl(ca.current_crl(site.ca_dir, ca.HOST))  # the slave's CRL watch
    with pytest.raises(RemoteError) as e:
        s.call("status", {})
    assert e.value.kind == "unauthorized" and "has been revoked" in str(e.value)


@attrs.define
class Dispatcher:
    """The real dispatcher service (its host CRL watch and relink) over one slave link."""

    service: service.DispatcherService
    reactor: MemoryReactorClock
    crl_file: Path
    warnings: list[str]
    pushed: list  # what the slave was sent (tls_update: ops.TlsUpdateArgs)

    def renew_crl(self, pem: bytes) -> None:
        """Write the host CRL file as ``domtool-admin ca renew`` does, then one poll."""
        self.crl_file.write_bytes(pem)
        st = os.stat(self.crl_file)
        os.utime(self.crl_file, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        self.reactor.advance(self.service.config.tls_poll)


@pytest.fixture
def dispatcher_over(site, tmp_path):
    """``dispatcher_over(slave)``: a started DispatcherService whose coordinator holds the
    slave's link, with its files under ``tmp_path``; stopped at the end."""
    started = []
    names = ["listen_port", "listen_address", "handshake_timeout", "idle_timeout"]
    names += ["member_crl", "host_ca", "host_crl", "certificate", "key", "tls_poll", "tls_push"]
    cfg_class = attrs.make_class("Cfg", names)

    def make(s: Slave) -> Dispatcher:
        files = {
            "member_crl": ca.current_crl(site.ca_dir, ca.MEMBER),
            "host_ca": ca.ca_certificate(site.ca_dir, ca.HOST),
            "host_crl": ca.current_crl(site.ca_dir, ca.HOST),
            "certificate": site.dispatcher.cert_pem,
            "key": site.dispatcher.key_pem,
        }
        for name, data in files.items():
            (tmp_path / f"{name}.pem").write_bytes(data)
        paths = {name: str(tmp_path / f"{name}.pem") for name in files}
        cfg = cfg_class(4321, "127.0.0.1", 30.0, 600.0, tls_poll=60.0, tls_push=3600.0, **paths)
        coordinator = Coordinator(site.store, {s.name: s.link}, s.endpoint.clock)
        controller = service.Controller(site.store, SITE, coordinator)
        svc = service.DispatcherService(cfg, controller, site.server, s.endpoint.clock)
        warnings: list[str] = []

        def observe(event) -> None:
            if event.get("log_level") == LogLevel.warn:
                warnings.append(formatEvent(event))

        pushed: list = []

        def tls_update(args) -> dict:  # the slave's TlsUpdater is not under test here
            pushed.append(args)
            return {"crl": "unchanged"}

        s.factory.tls_update = tls_update
        globalLogPublisher.addObserver(observe)
        started.append((svc, observe))
        svc.startService()  # (its first push of the TLS files to the slave)
        s.endpoint.flush()
        assert [a.crl_pem for a in pushed] == [files["host_crl"].decode()], warnings
        return Dispatcher(svc, s.endpoint.clock, tmp_path / "host_crl.pem", warnings, pushed)

    yield make
    for svc, observe in started:
        svc.stopService()
        globalLogPublisher.removeObserver(observe)


def test_a_revoked_slave_is_refused_on_its_open_link_once_the_host_crl_changes(
    site, dispatcher_over
):
    """The dispatcher watches the host CRL file (``tlswatch.FileWatch``); a renewed CRL
    revoking the slave relinks every link (``DispatcherService._host_files_changed``):
    the open link is refused at its next call (``revocation.link_refusal``: here the push
    of the new CRL, the first call after the change), and a new connection is refused by
    the handshake."""
    s = _slave(site, MemoryReactorClock())
    d = dispatcher_over(s)
    assert s.call("status", {})["generation"] == 0
    ca.revoke(site.ca_dir, s.name, kind=ca.HOST)
    d.renew_crl(ca.current_crl(site.ca_dir, ca.HOST))
    assert s.link.client_tls.trust.crl_pem == ca.current_crl(site.ca_dir, ca.HOST)
    refused = [w for w in d.warnings if "did not take the TLS files" in w]
    assert len(refused) == 1 and "has been revoked" in refused[0], d.warnings
    assert len(d.pushed) == 1  # the revoked slave was not sent the new files
    with pytest.raises(LinkError) as e:  # a new handshake fails against the new CRL
        s.call("status", {})
    assert "certificate verify failed" in str(e.value)


def test_a_bad_host_crl_keeps_every_link_as_it_was_and_is_tried_again(site, dispatcher_over):
    """A host CRL the host CA did not sign changes no link (not even the first) and is
    tried again at each poll; once a good one is written, it is in force."""
    s = _slave(site, MemoryReactorClock())
    d = dispatcher_over(s)
    before = s.link.client_tls
    d.renew_crl(ca.current_crl(site.ca_dir, ca.MEMBER))  # signed by the wrong CA
    assert s.link.client_tls is before
    assert any("kept the old TLS files" in w for w in d.warnings)
    d.reactor.advance(d.service.config.tls_poll)  # tried again: still bad
    assert s.link.client_tls is before
    assert sum("kept the old TLS files" in w for w in d.warnings) == 2
    ca.revoke(site.ca_dir, s.name, kind=ca.HOST)
    d.renew_crl(ca.current_crl(site.ca_dir, ca.HOST))
    assert s.link.client_tls is not before
    assert s.link.client_tls.trust.crl_pem == ca.current_crl(site.ca_dir, ca.HOST)
