"""Revocation takes effect at once (issue 13, finding 4).

Before: an open member session survived the revocation of its certificate and a re-pin
to another serial; the host CRL was optional and read once, and an open link to a
revoked slave kept carrying prepares (every test here failed first: seen).
"""

from __future__ import annotations

import attrs
import pytest
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from domtool.dispatcher import auth, ca, config, service
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.links import LinkError, TLSLink
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.net import cred, tls
from domtool.net.revocation import CrlGroup
from domtool.net.session import CrlWatch
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
    return Slave(link, endpoint, creator, name, listener)


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


def test_a_revoked_slave_is_refused_on_its_open_link_once_the_host_crl_changes(site, tmp_path):
    """The host CRL file is watched (session.CrlWatch over every link's TLS creator); a
    renewed CRL revoking the slave stops the open link at its next call, and a new
    connection is refused by the handshake."""
    clock = Clock()
    s = _slave(site, clock)
    assert s.call("status", {})["generation"] == 0
    crl_file = tmp_path / "host-crl.pem"
    crl_file.write_bytes(ca.current_crl(site.ca_dir, ca.HOST))
    watch = CrlWatch(crl_file, CrlGroup([s.creator]), clock)
    ca.revoke(site.ca_dir, s.name, kind=ca.HOST)
    crl_file.write_bytes(ca.current_crl(site.ca_dir, ca.HOST))
    import os

    st = os.stat(crl_file)
    os.utime(crl_file, (st.st_atime, st.st_mtime + 5))
    assert watch.check() is True
    with pytest.raises(LinkError, match="has been revoked"):
        s.call("status", {})
    with pytest.raises(LinkError):  # a new handshake fails against the new CRL
        s.call("status", {})


def test_a_crl_group_keeps_every_old_crl_when_the_new_file_is_bad(site, tmp_path):
    clock = Clock()
    s = _slave(site, clock)
    before = s.creator.trust
    bad = tmp_path / "bad.pem"
    bad.write_bytes(ca.current_crl(site.ca_dir, ca.MEMBER))  # signed by the wrong CA
    with pytest.raises(tls.CRLError):
        CrlGroup([s.creator]).reload_crl_file(bad)
    assert s.creator.trust == before
