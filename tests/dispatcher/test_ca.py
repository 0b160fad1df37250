"""The site's two CAs: layout, key modes, what issued certificates carry, revocation, CRLs."""

from __future__ import annotations

import datetime
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from domtool import identity
from domtool.dispatcher import ca

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


@pytest.fixture
def ca_dir(tmp_path):
    d = tmp_path / "ca"
    ca.init_ca(d, "example.coop", now=NOW)
    return d


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_two_cas_with_private_keys(ca_dir):
    """init_ca makes a member CA and a host CA with different keys, keys mode 0600."""
    member = _cert(ca.ca_certificate(ca_dir, ca.MEMBER))
    host = _cert(ca.ca_certificate(ca_dir, ca.HOST))
    assert member.public_key() != host.public_key()
    assert member.subject != host.subject
    for kind in (ca.MEMBER, ca.HOST):
        assert stat.S_IMODE(os.stat(ca_dir / kind / "ca.key").st_mode) == 0o600
        c = _cert(ca.ca_certificate(ca_dir, kind))
        assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert isinstance(c.public_key(), ec.EllipticCurvePublicKey)
        assert c.public_key().curve.name == "secp256r1"
    assert ca.site_name(ca_dir) == "example.coop"


def test_init_refuses_to_overwrite(ca_dir):
    """An existing CA is never overwritten (its members would all be locked out)."""
    before = ca.ca_certificate(ca_dir)
    with pytest.raises(ca.CAError, match="already holds a CA"):
        ca.init_ca(ca_dir, "example.coop")
    assert ca.ca_certificate(ca_dir) == before


def test_member_certificate_contents(ca_dir):
    """A member certificate: URI SAN naming the member, CN, clientAuth only, P-256,
    signed by the member CA and not by the host CA, valid for the days asked."""
    cert_pem, key_pem = ca.issue_member(ca_dir, "alice", days=30, now=NOW)
    c = _cert(cert_pem)
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["domtool-member:alice"]
    assert san.get_values_for_type(x509.DNSName) == []
    assert c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert c.public_key().curve.name == "secp256r1"
    c.verify_directly_issued_by(_cert(ca.ca_certificate(ca_dir, ca.MEMBER)))
    with pytest.raises(Exception):  # noqa: B017 (any failure: wrong issuer or signature)
        c.verify_directly_issued_by(_cert(ca.ca_certificate(ca_dir, ca.HOST)))
    assert c.not_valid_after_utc - NOW == datetime.timedelta(days=30)
    assert b"PRIVATE KEY" in key_pem
    assert identity.principal_of(c) == identity.Principal("member", "alice")


def test_host_certificate_contents(ca_dir):
    """A host certificate: URI and DNS SANs, serverAuth and clientAuth, signed by the host CA."""
    c = _cert(ca.issue_host(ca_dir, "ns1.example.coop", now=NOW)[0])
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "domtool-host:ns1.example.coop"
    ]
    assert san.get_values_for_type(x509.DNSName) == ["ns1.example.coop"]
    eku = set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    c.verify_directly_issued_by(_cert(ca.ca_certificate(ca_dir, ca.HOST)))


def test_serials_are_random_and_indexed(ca_dir):
    """Serials differ, are large (random, not counters), and the index lists them all."""
    serials = [_cert(ca.issue_member(ca_dir, "alice")[0]).serial_number for _ in range(5)]
    assert len(set(serials)) == 5
    assert all(s > 2**64 for s in serials)
    assert [i.serial for i in ca.issued(ca_dir)] == serials


@pytest.mark.parametrize("bad", ["Alice", "../etc", "a b", "al\nice", "", "x" * 33, "-rf"])
def test_malformed_member_names_are_refused(ca_dir, bad):
    """Names that are not Unix user names never get a certificate."""
    with pytest.raises(identity.IdentityError):
        ca.issue_member(ca_dir, bad)


def test_revoke_by_user_and_serial(ca_dir):
    """Revoking a user revokes all their certificates; the CRL lists exactly those; revoking
    again adds nothing; a name the CA never saw is an error."""
    a1 = _cert(ca.issue_member(ca_dir, "alice")[0]).serial_number
    a2 = _cert(ca.issue_member(ca_dir, "alice")[0]).serial_number
    b = _cert(ca.issue_member(ca_dir, "bob")[0]).serial_number
    assert sorted(ca.revoke(ca_dir, "alice", now=NOW)) == sorted([a1, a2])
    assert ca.revoke(ca_dir, "alice") == []
    crl = x509.load_pem_x509_crl(ca.current_crl(ca_dir))
    assert {r.serial_number for r in crl} == {a1, a2}
    assert crl.get_revoked_certificate_by_serial_number(b) is None
    assert crl.is_signature_valid(_cert(ca.ca_certificate(ca_dir)).public_key())
    assert ca.revoke(ca_dir, b) == [b]
    with pytest.raises(ca.CAError, match="never issued"):
        ca.revoke(ca_dir, "carol")


def test_crl_next_update_and_renewal_warning(ca_dir):
    """A CRL is good for 30 days; the renewal warning starts with 7 days left; each
    re-signing increases the CRL number."""
    pem = ca.crl(ca_dir, now=NOW)
    assert ca.crl_expires_in(pem, now=NOW) == datetime.timedelta(days=30)
    assert not ca.crl_needs_renewal(pem, now=NOW + datetime.timedelta(days=22))
    assert ca.crl_needs_renewal(pem, now=NOW + datetime.timedelta(days=24))
    assert ca.crl_expires_in(pem, now=NOW + datetime.timedelta(days=31)) < datetime.timedelta(0)
    n1 = x509.load_pem_x509_crl(pem).extensions.get_extension_for_class(x509.CRLNumber)
    n2 = x509.load_pem_x509_crl(ca.crl(ca_dir)).extensions.get_extension_for_class(x509.CRLNumber)
    assert n2.value.crl_number == n1.value.crl_number + 1


def test_host_revocation_is_separate(ca_dir):
    """Revoking a host touches the host CA's CRL only."""
    ca.issue_host(ca_dir, "ns1.example.coop")
    ca.revoke(ca_dir, "ns1.example.coop", kind=ca.HOST)
    assert len(list(x509.load_pem_x509_crl(ca.current_crl(ca_dir, ca.HOST)))) == 1
    assert len(list(x509.load_pem_x509_crl(ca.current_crl(ca_dir, ca.MEMBER)))) == 0


def test_expiring_lists_unrevoked_certificates_near_their_end(ca_dir):
    """expiring() lists what needs reissuing soon; revoked and long-lived ones are left out."""
    ca.issue_member(ca_dir, "alice", days=10, now=NOW)
    ca.issue_member(ca_dir, "bob", days=365, now=NOW)
    ca.issue_member(ca_dir, "carol", days=5, now=NOW)
    ca.revoke(ca_dir, "carol", now=NOW)
    assert [i.name for i in ca.expiring(ca_dir, now=NOW)] == ["alice"]
    assert [i.name for i in ca.expiring(ca_dir, now=NOW + datetime.timedelta(days=340))] == [
        "alice",
        "bob",
    ]


def test_concurrent_issuing_loses_no_index_entry(ca_dir):
    """Eight threads issuing at once: the index lists all 80 certificates (the lock works)."""
    import threading

    def work(n):
        for i in range(10):
            ca.issue_member(ca_dir, f"u{n}x{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ca.issued(ca_dir)) == 80
