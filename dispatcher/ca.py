"""The site's two certificate authorities (members, hosts): creation, issuing, revocation, CRLs.

Layout of a CA directory (see docs/tls.md)::

    <ca_dir>/site.json              {"site": <site name>}
    <ca_dir>/member/ca.pem          member CA certificate (the dispatcher pins it)
    <ca_dir>/member/ca.key          its EC P-256 key, mode 0600
    <ca_dir>/member/crl.pem         current CRL (re-signed by crl())
    <ca_dir>/member/index.json      every certificate issued: serial, name, expiry, revocation
    <ca_dir>/host/...               the same for the host CA (dispatcher and slaves)

The two CAs have separate keys, so a member certificate never verifies against the host CA
and a host certificate never verifies against the member CA.

This is admin tooling: synchronous, file based, run by ``domtool-admin``; the clock is
passed in (``now``) so tests can issue expired and not-yet-valid certificates.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from domtool import identity
from domtool.util.files import atomic_write

MEMBER = identity.MEMBER
HOST = identity.HOST

CA_DAYS = 3650
CRL_DAYS = 30
# Admin tooling warns when the CRL has less than this left (a stale CRL refuses everyone).
CRL_WARN = datetime.timedelta(days=7)
# A certificate's notBefore is back-dated this much to tolerate clock skew between hosts.
SKEW = datetime.timedelta(minutes=5)


class CAError(Exception):
    """The certificate authority operation cannot be done (see the message for why)."""


@frozen
class Issued:
    """One certificate in a CA's index."""

    serial: int
    name: str
    not_after: datetime.datetime
    revoked_at: datetime.datetime | None


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


@contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Hold the CA directory's lock: two admin commands never lose each other's index updates."""
    fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _dir(ca_dir: str | os.PathLike, kind: str) -> Path:
    if kind not in (MEMBER, HOST):
        raise CAError(f"unknown CA kind {kind!r}")
    d = Path(ca_dir) / kind
    if not (d / "ca.pem").exists():
        raise CAError(f"no {kind} CA in {ca_dir} (run init_ca first)")
    return d


def site_name(ca_dir: str | os.PathLike) -> str:
    """The site name the CAs were created for."""
    return json.loads((Path(ca_dir) / "site.json").read_text())["site"]


def init_ca(
    directory: str | os.PathLike,
    site: str,
    *,
    days: int = CA_DAYS,
    now: datetime.datetime | None = None,
) -> Path:
    """Create the member CA and the host CA under ``directory`` (which must not hold one).

    Each gets its own key, a self-signed certificate valid ``days`` and an empty CRL.
    """
    root = Path(directory)
    if (root / "site.json").exists():
        raise CAError(f"{root} already holds a CA; refusing to overwrite it")
    now = _now(now)
    root.mkdir(parents=True, exist_ok=True)
    for kind in (MEMBER, HOST):
        d = root / kind
        d.mkdir(mode=0o700, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, site),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{site} domtool {kind} CA"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - SKEW)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        atomic_write(d / "ca.key", _key_pem(key), 0o600)
        atomic_write(d / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
        atomic_write(d / "index.json", json.dumps({"crl_number": 0, "issued": []}).encode())
    atomic_write(root / "site.json", json.dumps({"site": site}).encode())
    for kind in (MEMBER, HOST):
        crl(root, kind=kind, now=now)
    return root


def ca_certificate(ca_dir: str | os.PathLike, kind: str = MEMBER) -> bytes:
    """The PEM certificate of the ``kind`` CA (what listeners pin)."""
    return (_dir(ca_dir, kind) / "ca.pem").read_bytes()


def _load(d: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    return cert, key


def _index(d: Path) -> dict:
    return json.loads((d / "index.json").read_text())


def issued(ca_dir: str | os.PathLike, kind: str = MEMBER) -> list[Issued]:
    """Every certificate the ``kind`` CA issued, oldest first."""
    return [
        Issued(
            serial=int(e["serial"], 16),
            name=e["name"],
            not_after=datetime.datetime.fromisoformat(e["not_after"]),
            revoked_at=(
                datetime.datetime.fromisoformat(e["revoked_at"]) if e["revoked_at"] else None
            ),
        )
        for e in _index(_dir(ca_dir, kind))["issued"]
    ]


def _issue(
    ca_dir: str | os.PathLike,
    kind: str,
    principal: identity.Principal,
    days: int,
    now: datetime.datetime | None,
) -> tuple[bytes, bytes]:
    d = _dir(ca_dir, kind)
    ca_cert, ca_key = _load(d)
    now = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(principal.uri())]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if kind == HOST:
        sans.append(x509.DNSName(principal.name))
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, site_name(ca_dir)),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind + "s"),
                    x509.NameAttribute(NameOID.COMMON_NAME, principal.name),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    with _locked(d):
        index = _index(d)
        index["issued"].append(
            {
                "serial": format(serial, "x"),
                "name": principal.name,
                "not_after": _utc(cert, "not_valid_after").isoformat(),
                "revoked_at": None,
            }
        )
        atomic_write(d / "index.json", json.dumps(index, indent=1).encode())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue_member(
    ca_dir: str | os.PathLike,
    user: str,
    days: int = 365,
    *,
    now: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """Issue a member certificate for Unix user ``user``: (cert_pem, key_pem).

    SAN ``URI:domtool-member:<user>``, CN ``<user>``, extended key usage clientAuth.
    """
    return _issue(ca_dir, MEMBER, identity.member(user), days, now)


def issue_host(
    ca_dir: str | os.PathLike,
    host: str,
    days: int = 365,
    *,
    now: datetime.datetime | None = None,
) -> tuple[bytes, bytes]:
    """Issue a host certificate for ``host`` (an FQDN): (cert_pem, key_pem).

    SAN ``URI:domtool-host:<host>`` and ``DNS:<host>``, CN ``<host>``, serverAuth+clientAuth
    (the dispatcher is a server to members and a client to slaves).
    """
    return _issue(ca_dir, HOST, identity.host(host), days, now)


def revoke(
    ca_dir: str | os.PathLike,
    serial_or_user: int | str,
    *,
    kind: str = MEMBER,
    now: datetime.datetime | None = None,
) -> list[int]:
    """Revoke one certificate (by serial) or every certificate of a name; re-sign the CRL.

    Returns the serials newly revoked (already revoked ones are not repeated). A name or
    serial the CA never issued is a CAError, so a typo does not pass silently.
    """
    d = _dir(ca_dir, kind)
    now = _now(now)
    with _locked(d):
        index = _index(d)
        matched = [
            e
            for e in index["issued"]
            if (
                e["serial"] == format(serial_or_user, "x")
                if isinstance(serial_or_user, int)
                else e["name"] == serial_or_user
            )
        ]
        if not matched:
            raise CAError(f"the {kind} CA never issued a certificate for {serial_or_user!r}")
        newly = []
        for e in matched:
            if e["revoked_at"] is None:
                e["revoked_at"] = now.isoformat()
                newly.append(int(e["serial"], 16))
        atomic_write(d / "index.json", json.dumps(index, indent=1).encode())
        _sign_crl(d, CRL_DAYS, now)
    return newly


def crl(
    ca_dir: str | os.PathLike,
    *,
    kind: str = MEMBER,
    days: int = CRL_DAYS,
    now: datetime.datetime | None = None,
) -> bytes:
    """Re-sign the ``kind`` CA's CRL (nextUpdate ``days`` from now), write crl.pem, return it.

    This is the renewal: the admin tool runs it well before ``crl_expires_in`` reaches
    zero, and the dispatcher reloads the file (``tls.ServerTLS.reload_crl``).
    """
    d = _dir(ca_dir, kind)
    with _locked(d):
        return _sign_crl(d, days, _now(now))


def _sign_crl(d: Path, days: int, now: datetime.datetime) -> bytes:
    """Sign and write the CRL of the CA in ``d`` (the caller holds the lock)."""
    ca_cert, ca_key = _load(d)
    index = _index(d)
    index["crl_number"] += 1
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - SKEW)
        .next_update(now + datetime.timedelta(days=days))
        .add_extension(x509.CRLNumber(index["crl_number"]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
    )
    for e in index["issued"]:
        if e["revoked_at"] is not None:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(e["serial"], 16))
                .revocation_date(datetime.datetime.fromisoformat(e["revoked_at"]))
                .build()
            )
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    atomic_write(d / "index.json", json.dumps(index, indent=1).encode())
    atomic_write(d / "crl.pem", pem)
    return pem


def expiring(
    ca_dir: str | os.PathLike,
    kind: str = MEMBER,
    *,
    within: datetime.timedelta = datetime.timedelta(days=30),
    now: datetime.datetime | None = None,
) -> list[Issued]:
    """Unrevoked certificates that expire within ``within`` (already expired ones too), so
    admin tooling can reissue them before their holders are locked out."""
    limit = _now(now) + within
    return [i for i in issued(ca_dir, kind) if i.revoked_at is None and i.not_after <= limit]


def current_crl(ca_dir: str | os.PathLike, kind: str = MEMBER) -> bytes:
    """The CRL last written for the ``kind`` CA (without re-signing it)."""
    return (_dir(ca_dir, kind) / "crl.pem").read_bytes()


def crl_expires_in(crl_pem: bytes, *, now: datetime.datetime | None = None) -> datetime.timedelta:
    """How long until the CRL's nextUpdate (negative once stale: every handshake then fails)."""
    c = x509.load_pem_x509_crl(crl_pem)
    next_update = _utc(c, "next_update")
    if next_update is None:
        raise CAError("the CRL has no nextUpdate")
    return next_update - _now(now)


def _utc(obj: object, name: str) -> datetime.datetime | None:
    """``obj.<name>_utc`` (cryptography >= 42), or the naive ``obj.<name>`` made UTC on older
    releases (Debian 12 ships cryptography 38, which the packages run on)."""
    if hasattr(obj, name + "_utc"):
        return getattr(obj, name + "_utc")
    value = getattr(obj, name)
    return None if value is None else value.replace(tzinfo=datetime.UTC)


def crl_needs_renewal(
    crl_pem: bytes, *, warn: datetime.timedelta = CRL_WARN, now: datetime.datetime | None = None
) -> bool:
    """Whether the admin tooling should re-sign the CRL now (less than ``warn`` left)."""
    return crl_expires_in(crl_pem, now=now) < warn
