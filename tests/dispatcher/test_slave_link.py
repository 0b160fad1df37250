"""The dispatcher-to-slave link: the same TLS pieces with the host CA on both ends, and the
slave accepting only its dispatcher by name."""

from __future__ import annotations

from domtool.dispatcher import ca
from domtool.net import cred, tls
from domtool.net.cred import Host

from .conftest import DISPATCHER
from .loopback import connect, host_login

SLAVE = "ns1.example.coop"


def _slave(site, errors=None):
    host_ca = tls.Trust(
        ca.ca_certificate(site.ca_dir, ca.HOST), ca.current_crl(site.ca_dir, ca.HOST)
    )
    listener = tls.slave_listener(
        tls.KeyPair(*ca.issue_host(site.ca_dir, SLAVE)),
        host_ca,
        None if errors is None else errors.append,
    )
    return listener, host_ca, host_login(cred.host_portal({DISPATCHER}))


def test_dispatcher_is_accepted_by_its_slave(site):
    """The dispatcher's host certificate logs in to the slave as Host(dispatcher)."""
    listener, host_ca, login = _slave(site)
    out = connect(listener, tls.slave_client(site.dispatcher, host_ca, SLAVE), login)
    assert out.avatar == Host(DISPATCHER)
    assert out.received == DISPATCHER.encode() + b"\n"


def test_another_host_is_refused_by_the_slave(site):
    """A valid host certificate that is not the dispatcher's passes TLS but not the checker."""
    listener, host_ca, login = _slave(site)
    other = tls.KeyPair(*ca.issue_host(site.ca_dir, "www.example.coop"))
    out = connect(listener, tls.slave_client(other, host_ca, SLAVE), login)
    assert out.avatar is None and out.received == b""
    assert out.refusal == "host www.example.coop may not give orders here"


def test_member_certificate_is_refused_by_the_slave(site):
    """A member certificate never verifies against the host CA: refused in the handshake."""
    errors: list = []
    listener, host_ca, login = _slave(site, errors)
    alice = tls.KeyPair(*ca.issue_member(site.ca_dir, "alice"))
    out = connect(listener, tls.slave_client(alice, host_ca, SLAVE), login)
    assert out.avatar is None and out.received == b""
    assert [e.code for e in errors] in ([20], [19])


def test_revoked_dispatcher_certificate_is_refused_by_the_slave(site):
    """The host CA's CRL is checked too: a revoked dispatcher certificate is refused."""
    errors: list = []
    listener, host_ca, login = _slave(site, errors)
    ca.revoke(site.ca_dir, DISPATCHER, kind=ca.HOST)
    listener.reload_crl(ca.current_crl(site.ca_dir, ca.HOST))
    out = connect(listener, tls.slave_client(site.dispatcher, host_ca, SLAVE), login)
    assert out.avatar is None
    assert [e.code for e in errors] == [23]
