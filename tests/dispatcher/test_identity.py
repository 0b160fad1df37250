"""domtool.identity: which principal a certificate's subjectAltName names (fail closed)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from domtool.identity import IdentityError, Principal, principal_from_uris, principal_of


def _cert(*sans: x509.GeneralName, cn: str = "alice") -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return b.sign(key, hashes.SHA256())


def test_member_and_host_uris():
    """The two URI forms name a member and a host; other schemes are ignored."""
    assert principal_from_uris(["https://x.org", "domtool-member:alice"]) == Principal(
        "member", "alice"
    )
    assert principal_from_uris(["domtool-host:ns1.example.org"]) == Principal(
        "host", "ns1.example.org"
    )
    assert Principal("member", "alice").uri() == "domtool-member:alice"


@pytest.mark.parametrize(
    "uris,message",
    [
        ([], "no domtool- subjectAltName"),
        (["https://example.org"], "no domtool-"),
        (["domtool-member:alice", "domtool-member:bob"], "names 2 principals"),
        (["domtool-member:alice", "domtool-host:a.org"], "names 2 principals"),
        (["domtool-admin:alice"], "unknown principal"),
        (["domtool-member"], "unknown principal"),
        (["domtool-member:Alice"], "not a valid member name"),
        (["domtool-member:alice\n"], "not a valid member name"),
        (["domtool-member:../root"], "not a valid member name"),
        (["domtool-host:bad_host.org"], "not a valid host name"),
    ],
)
def test_ambiguous_or_malformed_identities_are_refused(uris, message):
    """Anything but exactly one well-formed domtool- URI names no one."""
    with pytest.raises(IdentityError, match=message):
        principal_from_uris(uris)


def test_the_common_name_alone_names_no_one():
    """A certificate with CN=alice but no subjectAltName is refused."""
    with pytest.raises(IdentityError, match="no subjectAltName"):
        principal_of(_cert(cn="alice"))


def test_principal_of_reads_the_san_not_the_cn():
    """The SAN decides: CN=root with a SAN for alice is alice."""
    cert = _cert(x509.UniformResourceIdentifier("domtool-member:alice"), cn="root")
    assert principal_of(cert) == Principal("member", "alice")


def test_host_certificate_needs_its_dns_name():
    """A host URI without the matching DNS SAN is refused (hostname checks would miss it)."""
    with pytest.raises(IdentityError, match="lacks its DNS name"):
        principal_of(_cert(x509.UniformResourceIdentifier("domtool-host:ns1.example.org")))
    ok = _cert(
        x509.UniformResourceIdentifier("domtool-host:ns1.example.org"),
        x509.DNSName("ns1.example.org"),
    )
    assert principal_of(ok) == Principal("host", "ns1.example.org")


@given(st.lists(st.text(max_size=60), max_size=4))
def test_random_uris_never_crash(uris):
    """Any list of strings names a principal or raises IdentityError; a principal it names
    round-trips through its URI."""
    try:
        p = principal_from_uris(uris)
    except IdentityError:
        return
    assert principal_from_uris([p.uri()]) == p
