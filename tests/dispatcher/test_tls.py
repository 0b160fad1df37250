"""The member front door: real TLS handshakes (in memory) against the dispatcher's listener.

Each negative case of reliability.md "Authentication (mutual TLS)" is refused by its own
test, and each refusal is checked for its REASON (OpenSSL's verify error on the server, or
the checker's message), so a test cannot pass because of some unrelated failure.
"""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from OpenSSL._util import lib as _ssl_lib  # SSL_session_reused: no public wrapper

from domtool.dispatcher import ca
from domtool.dispatcher.auth import Member
from domtool.net import tls

from .conftest import DISPATCHER, SITE
from .loopback import RawClient, RawServer, connect, member_login

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)

EXPIRED = 10
NOT_YET_VALID = 9
REVOKED = 23
CRL_EXPIRED = 12
NO_LOCAL_ISSUER = 20
SELF_SIGNED_IN_CHAIN = 19


def refused(outcome) -> bool:
    """Nothing reached the client and no one logged in."""
    return outcome.received == b"" and outcome.avatar is None


def test_alice_valid_certificate_is_welcomed(site):
    """The positive case: alice's valid member certificate logs her in as alice."""
    out = site.connect(ca.issue_member(site.ca_dir, "alice"))
    assert out.received == b"alice\n"
    assert out.avatar == Member("alice", is_admin=False)
    assert site.verify_errors == []


def test_admin_flag_comes_from_the_store(site):
    """The avatar's admin status is read from the store at login, not from the certificate."""
    pair = ca.issue_member(site.ca_dir, "alice")
    site.store.set_admin("alice", True)
    assert site.connect(pair).avatar == Member("alice", is_admin=True)


def _raw_client_context(site, max_version=None, min_version=None, cert=None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    if min_version is not None:
        ctx.set_min_proto_version(min_version)
    if max_version is not None:
        ctx.set_max_proto_version(max_version)
    if cert is not None:
        ctx.use_certificate(x509.load_pem_x509_certificate(cert[0]))
        ctx.use_privatekey(serialization.load_pem_private_key(cert[1], None))
    return ctx


def test_no_client_certificate_is_refused(site):
    """A client that presents no certificate fails the handshake (certificate required)."""
    out = site.connect_with(RawClient(_raw_client_context(site)))
    assert refused(out)
    assert "peer did not return a certificate" in out.server_lost
    assert "certificate required" in out.client_lost


def test_same_name_from_another_ca_is_refused(site, tmp_path):
    """A certificate for 'alice' signed by another CA (same site name, same layout) is refused:
    only the pinned member CA issues members."""
    other = tmp_path / "other-ca"
    ca.init_ca(other, SITE)
    out = site.connect(ca.issue_member(other, "alice"))
    assert refused(out)
    assert site.error_codes() == [NO_LOCAL_ISSUER]
    assert "unknown ca" in out.client_lost


def test_expired_certificate_is_refused(site):
    """A member certificate whose notAfter has passed is refused."""
    out = site.connect(ca.issue_member(site.ca_dir, "alice", days=1, now=NOW - 10 * DAY))
    assert refused(out)
    assert site.error_codes() == [EXPIRED]
    assert "certificate expired" in out.client_lost


def test_not_yet_valid_certificate_is_refused(site):
    """A member certificate whose notBefore is in the future is refused."""
    out = site.connect(ca.issue_member(site.ca_dir, "alice", now=NOW + 2 * DAY))
    assert refused(out)
    assert site.error_codes() == [NOT_YET_VALID]


def test_revoked_certificate_is_refused_and_accepted_before(site):
    """Control then refusal: the same certificate logs in, is revoked (CRL re-signed, the
    dispatcher reloads it), and is then refused as revoked."""
    pair = ca.issue_member(site.ca_dir, "alice")
    assert site.connect(pair).received == b"alice\n"
    serial = x509.load_pem_x509_certificate(pair[0]).serial_number
    assert ca.revoke(site.ca_dir, serial) == [serial]
    site.reload_crl()
    out = site.connect(pair)
    assert refused(out)
    assert site.error_codes() == [REVOKED]
    assert "certificate revoked" in out.client_lost


def test_revoking_one_certificate_leaves_the_others(site):
    """Revoking by serial refuses that certificate only; alice's new one still works."""
    old = ca.issue_member(site.ca_dir, "alice")
    new = ca.issue_member(site.ca_dir, "alice")
    ca.revoke(site.ca_dir, x509.load_pem_x509_certificate(old[0]).serial_number)
    site.reload_crl()
    assert refused(site.connect(old))
    assert site.connect(new).received == b"alice\n"


def test_a_crl_without_the_check_flag_is_silently_ignored(site):
    """Why the flag matters: a server that loads the CRL but does not switch CRL checking on
    accepts a revoked certificate (our server_context does switch it on: test above)."""
    pair = ca.issue_member(site.ca_dir, "alice")
    ca.revoke(site.ca_dir, "alice")
    ctx = tls._base_context(site.dispatcher, tls.Trust(ca.ca_certificate(site.ca_dir)))
    ctx.get_cert_store().add_crl(x509.load_pem_x509_crl(ca.current_crl(site.ca_dir)))
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, None)
    out = connect(RawServer(ctx), site.client(pair), member_login(_portal(site)))
    assert out.received == b"alice\n"
    site.reload_crl()
    assert refused(site.connect(pair))


def _portal(site):
    from domtool.dispatcher.auth import member_portal

    return member_portal(site.store)


def test_a_stale_crl_locks_everyone_out_until_renewed(site):
    """A CRL past its nextUpdate refuses every member (CRL has expired); re-signing it with
    ca.crl() and reloading lets them back in. This is why the admin tool renews it early."""
    pair = ca.issue_member(site.ca_dir, "alice")
    stale = ca.crl(site.ca_dir, days=30, now=NOW - 40 * DAY)
    assert ca.crl_expires_in(stale) < datetime.timedelta(0)
    site.server.reload_crl(stale)
    assert refused(site.connect(pair))
    assert site.error_codes() == [CRL_EXPIRED]
    fresh = ca.crl(site.ca_dir)
    assert not ca.crl_needs_renewal(fresh)
    site.server.reload_crl(fresh)
    assert site.connect(pair).received == b"alice\n"


def test_a_server_context_without_a_crl_is_refused(site):
    """Revocation cannot be switched off: building a listener without the CRL is an error."""
    with pytest.raises(ValueError, match="CRL"):
        tls.server_context(site.dispatcher, tls.Trust(ca.ca_certificate(site.ca_dir)))


def test_removed_member_is_refused_by_the_checker(site):
    """A cryptographically valid certificate whose member was removed: the handshake
    completes, the checker refuses, nothing is written and the connection is closed."""
    pair = ca.issue_member(site.ca_dir, "alice")
    site.store.remove_member("alice")
    out = site.connect(pair)
    assert refused(out)
    assert out.refusal == "alice was removed"
    assert site.verify_errors == []


def test_unknown_member_is_refused_by_the_checker(site):
    """A valid certificate for someone the store never had is refused."""
    out = site.connect(ca.issue_member(site.ca_dir, "mallory"))
    assert refused(out)
    assert out.refusal == "mallory is not a member"


def test_superseded_certificate_is_refused_when_the_store_pins_the_serial(site):
    """When the store records alice's current serial, her other (unrevoked) certificates
    stop working."""
    old = ca.issue_member(site.ca_dir, "alice")
    new = ca.issue_member(site.ca_dir, "alice")
    site.store.set_cert_serial("alice", x509.load_pem_x509_certificate(new[0]).serial_number)
    assert site.connect(new).received == b"alice\n"
    out = site.connect(old)
    assert refused(out)
    assert "not their current one" in out.refusal


def test_tls_1_1_client_is_refused(site):
    """A client limited to TLS 1.1 (security level 0, so the local OpenSSL will offer it) is
    refused by the server for its protocol version; a TLS 1.2-only client is accepted."""
    pair = ca.issue_member(site.ca_dir, "alice")
    old = _raw_client_context(
        site, min_version=SSL.TLS1_VERSION, max_version=SSL.TLS1_1_VERSION, cert=pair
    )
    old.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    out = site.connect_with(RawClient(old))
    assert refused(out)
    assert "unsupported protocol" in out.server_lost
    assert "protocol version" in out.client_lost

    tls12 = _raw_client_context(site, max_version=SSL.TLS1_2_VERSION, cert=pair)
    assert site.connect_with(RawClient(tls12)).received == b"alice\n"


def test_host_certificate_presented_as_member_is_refused(site):
    """A host certificate (from the host CA) is refused by the member listener: the member
    CA never signed it. (The client sends the host CA along, which the server then reports
    as an untrusted self-signed certificate in the chain.)"""
    out = site.connect(ca.issue_host(site.ca_dir, "ns1.example.coop"))
    assert refused(out)
    assert site.error_codes() in ([NO_LOCAL_ISSUER], [SELF_SIGNED_IN_CHAIN])


def test_member_refuses_a_server_with_the_wrong_name(site):
    """The member client checks the server's DNS subjectAltName: a valid host certificate
    for another host is refused on the client side."""
    pair = ca.issue_member(site.ca_dir, "alice")
    client = tls.member_client(tls.KeyPair(*pair), site.host_trust(), "other.example.coop")
    out = site.connect_with(client)
    assert refused(out)
    assert "certificate verify failed" in out.client_lost


def test_member_refuses_a_server_from_another_host_ca(site, tmp_path):
    """A dispatcher impostor with a certificate for the right name from another CA is refused."""
    other = tmp_path / "other-ca"
    ca.init_ca(other, SITE)
    impostor = tls.member_front_door(
        tls.KeyPair(*ca.issue_host(other, DISPATCHER)),
        tls.Trust(ca.ca_certificate(site.ca_dir), ca.current_crl(site.ca_dir)),
    )
    out = connect(
        impostor, site.client(ca.issue_member(site.ca_dir, "alice")), member_login(_portal(site))
    )
    assert refused(out)
    assert "certificate verify failed" in out.client_lost


def test_member_refuses_a_server_presenting_a_member_certificate(site):
    """A server that presents a member certificate (member CA) is not a host: refused."""
    fake = tls.member_front_door(
        tls.KeyPair(*ca.issue_member(site.ca_dir, "bob")),
        tls.Trust(ca.ca_certificate(site.ca_dir), ca.current_crl(site.ca_dir)),
    )
    out = connect(
        fake, site.client(ca.issue_member(site.ca_dir, "alice")), member_login(_portal(site))
    )
    assert refused(out)
    assert "certificate verify failed" in out.client_lost


def test_a_crl_from_another_ca_is_not_loaded(site, tmp_path):
    """Reloading a CRL the member CA did not sign fails and keeps the old CRL in force:
    a revoked certificate stays refused, valid ones stay accepted."""
    pair = ca.issue_member(site.ca_dir, "alice")
    other = tmp_path / "other-ca"
    ca.init_ca(other, SITE)
    with pytest.raises(tls.CRLError, match="not signed by"):
        site.server.reload_crl(ca.current_crl(other))
    with pytest.raises(tls.CRLError, match="not signed by"):
        site.server.reload_crl(ca.current_crl(site.ca_dir, ca.HOST))
    with pytest.raises(tls.CRLError, match="not a PEM CRL"):
        site.server.reload_crl(b"garbage")
    assert site.connect(pair).received == b"alice\n"


def test_reload_crl_file_applies_the_renewed_crl(site):
    """The dispatcher's reload path: the admin tool writes crl.pem, the server reads it."""
    pair = ca.issue_member(site.ca_dir, "alice")
    ca.revoke(site.ca_dir, "alice")
    assert site.connect(pair).received == b"alice\n"  # old CRL still loaded
    site.server.reload_crl_file(site.ca_dir / "member" / "crl.pem")
    assert refused(site.connect(pair))


@pytest.mark.parametrize("version", [SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION])
def test_sessions_are_never_resumed(site, version):
    """A client offering its previous session gets a full handshake again (no session cache,
    no tickets), so every connection's certificate meets the current CRL and clock."""
    client = RawClient(
        _raw_client_context(site, max_version=version, cert=ca.issue_member(site.ca_dir, "alice"))
    )
    assert site.connect_with(client).received == b"alice\n"
    client.session = client.last.get_session()
    assert client.session is not None
    assert site.connect_with(client).received == b"alice\n"
    assert _ssl_lib.SSL_session_reused(client.last._ssl) == 0
