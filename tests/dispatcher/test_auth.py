"""The cred pieces directly (no TLS): the checker maps certificates to principals and
refuses what TLS cannot know about; the realm builds avatars from the store."""

from __future__ import annotations

import pytest
from cryptography import x509
from twisted.cred.error import UnauthorizedLogin
from twisted.python.failure import Failure

from domtool.dispatcher import auth, ca
from domtool.dispatcher.auth import IMember, Member
from domtool.dispatcher.store import Store
from domtool.net import cred
from domtool.net.cred import Host, PeerCertificate


def result_of(d):
    """The result of a Deferred that has already fired (Failure if it failed)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    return out[0]


@pytest.fixture
def world(tmp_path):
    ca.init_ca(tmp_path / "ca", "example.coop")
    store = Store.open(tmp_path)
    store.add_member("alice")
    yield tmp_path / "ca", store
    store.close()


def _login(portal, pem, iface=IMember):
    cert = x509.load_pem_x509_certificate(pem)
    return result_of(portal.login(PeerCertificate(cert), None, iface))


def test_member_certificate_logs_in(world):
    """A member certificate of an active member yields Member(name, is_admin)."""
    ca_dir, store = world
    iface, avatar, logout = _login(auth.member_portal(store), ca.issue_member(ca_dir, "alice")[0])
    assert iface is IMember and avatar == Member("alice", False)
    logout()


def test_host_certificate_cannot_log_in_as_member(world):
    """Even past TLS (were the CAs confused), a host principal is not a member."""
    ca_dir, store = world
    r = _login(auth.member_portal(store), ca.issue_host(ca_dir, "alice.example.coop")[0])
    assert isinstance(r, Failure) and r.check(UnauthorizedLogin)
    assert "a host certificate cannot act as a member" in str(r.value)


def test_member_certificate_cannot_log_in_as_host(world):
    """A slave's portal refuses a member certificate even if its name were allowed."""
    ca_dir, _ = world
    r = _login(cred.host_portal({"alice"}), ca.issue_member(ca_dir, "alice")[0], cred.IHost)
    assert isinstance(r, Failure) and "a member certificate cannot act as a host" in str(r.value)


def test_host_portal_accepts_listed_hosts_only(world):
    """The slave portal admits the listed dispatcher and refuses other hosts."""
    ca_dir, _ = world
    portal = cred.host_portal({"dispatcher.example.coop"})
    ok = _login(portal, ca.issue_host(ca_dir, "dispatcher.example.coop")[0], cred.IHost)
    assert ok[1] == Host("dispatcher.example.coop")
    bad = _login(portal, ca.issue_host(ca_dir, "www.example.coop")[0], cred.IHost)
    assert isinstance(bad, Failure) and bad.check(UnauthorizedLogin)


def test_member_removed_between_check_and_realm_is_refused(world):
    """The realm re-reads the store: a member removed after the checker ran gets no avatar."""
    ca_dir, store = world
    cert = x509.load_pem_x509_certificate(ca.issue_member(ca_dir, "alice")[0])
    checker = auth.MemberCertificateChecker(store)
    assert result_of(checker.requestAvatarId(PeerCertificate(cert))) == "alice"
    store.remove_member("alice")
    with pytest.raises(UnauthorizedLogin, match="not an active member"):
        auth.MemberRealm(store).requestAvatar("alice", None, IMember)


def test_login_without_certificate_is_refused(world):
    """login_member refuses outright when the transport has no peer certificate."""
    _, store = world
    coro = auth.login_member(auth.member_portal(store), None)
    with pytest.raises(UnauthorizedLogin, match="no client certificate"):
        coro.send(None)
