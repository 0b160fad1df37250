"""Mutual-TLS connection creators for the dispatcher's front door and the slave links.

Built on pyOpenSSL directly (not ``CertificateOptions``, which accepts clients without a
certificate unless a trust root is given), so every choice is visible here:

- server side (dispatcher for members, slave for the dispatcher): TLS 1.2 or newer; a
  client certificate is REQUIRED (``VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT``); the only
  trusted root is the one site CA given (no system CAs are loaded); the CA's CRL is
  loaded AND checking is switched on (``CRL_CHECK | CRL_CHECK_ALL``; a CRL loaded without
  those flags is silently ignored). The CRL can be replaced while running
  (``ServerTLS.reload_crl``): new handshakes use it, open connections are unaffected.
- client side (member to dispatcher, dispatcher to slave): presents its certificate,
  verifies the server against the host CA only, then checks the server's DNS
  subjectAltName against the expected host name with ``service_identity``.

Which principal a verified certificate names is decided later, by ``cred.py``
(``domtool.identity``); these creators only make sure the chain, dates and revocation
status are right.
"""

from __future__ import annotations

import inspect
import os

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

MIN_VERSION = SSL.TLS1_2_VERSION
CRL_FLAGS = crypto.X509StoreFlags.CRL_CHECK | crypto.X509StoreFlags.CRL_CHECK_ALL
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


@frozen
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, cert: str | os.PathLike, key: str | os.PathLike) -> KeyPair:
        """Read a certificate and key from files."""
        with open(cert, "rb") as c, open(key, "rb") as k:
            return cls(c.read(), k.read())


@frozen
class Trust:
    """The one CA a side accepts peers from, and that CA's CRL (PEM)."""

    ca_pem: bytes
    crl_pem: bytes | None = None

    @classmethod
    def from_files(cls, ca: str | os.PathLike, crl: str | os.PathLike | None = None) -> Trust:
        """Read a CA certificate and (optionally) its CRL from files."""
        with open(ca, "rb") as f:
            ca_pem = f.read()
        crl_pem = None
        if crl is not None:
            with open(crl, "rb") as f:
                crl_pem = f.read()
        return cls(ca_pem, crl_pem)


def _base_context(own: KeyPair, trust: Trust) -> SSL.Context:
    """TLS >= 1.2, our certificate and key, the pinned CA, the CRL with checking on."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(MIN_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_TICKET)
    ctx.set_cipher_list(CIPHERS)
    cert = x509.load_pem_x509_certificate(own.cert_pem)
    key = serialization.load_pem_private_key(own.key_pem, None)
    try:
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
    except TypeError:  # pyOpenSSL < 24 (Debian 12 ships 23.0) takes only its own types
        ctx.use_certificate(crypto.X509.from_cryptography(cert))
        ctx.use_privatekey(crypto.PKey.from_cryptography_key(key))
    ctx.check_privatekey()
    store = ctx.get_cert_store()
    assert store is not None
    # Only this CA: no set_default_verify_paths(), so system CAs are never consulted.
    store.add_cert(crypto.X509.from_cryptography(x509.load_pem_x509_certificate(trust.ca_pem)))
    if trust.crl_pem is not None:
        crl = x509.load_pem_x509_crl(trust.crl_pem)
        try:
            store.add_crl(crl)
        except (TypeError, AttributeError):  # pyOpenSSL < 24: only its own CRL type
            store.add_crl(crypto.CRL.from_cryptography(crl))
        store.set_flags(CRL_FLAGS)
    return ctx


# OpenSSL's X509_V_ERR_* codes a refused peer most often gets (stable across versions).
VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    3: "unable to get certificate CRL",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    11: "CRL is not yet valid",
    12: "CRL has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    26: "unsupported certificate purpose",
}


@frozen
class VerifyError:
    """Why OpenSSL refused a peer certificate: the X509_V_ERR code, chain depth, subject."""

    code: int
    depth: int
    subject: str

    @property
    def reason(self) -> str:
        """OpenSSL's reason, in words."""
        return VERIFY_ERRORS.get(self.code, f"X509 verify error {self.code}")


def _reporting(on_error):
    """A verify callback that keeps OpenSSL's verdict unchanged and reports each failure."""

    def verify(conn, cert, errno, depth, ok) -> bool:
        if not ok and on_error is not None:
            on_error(VerifyError(errno, depth, cert.to_cryptography().subject.rfc4514_string()))
        return bool(ok)

    return verify


class CRLError(ValueError):
    """The CRL is not one the pinned CA signed; it was not loaded."""


def check_crl(ca_pem: bytes, crl_pem: bytes) -> x509.CertificateRevocationList:
    """Parse a CRL and make sure the CA signed it (issuer and signature)."""
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError as e:
        raise CRLError(f"not a PEM CRL: {e}") from None
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_cert.public_key()):
        raise CRLError(f"the CRL was not signed by {ca_cert.subject.rfc4514_string()}")
    return crl


def server_context(own: KeyPair, trust: Trust, on_verify_error=None) -> SSL.Context:
    """A server context that requires a client certificate issued by ``trust.ca_pem``.

    The CRL is mandatory: a listener without revocation would accept revoked members.
    ``on_verify_error(VerifyError)`` is told why a peer was refused (for the audit log);
    it cannot change the verdict.
    """
    if trust.crl_pem is None:
        raise ValueError("a server context needs the CA's CRL (revocation cannot be off)")
    check_crl(trust.ca_pem, trust.crl_pem)
    ctx = _base_context(own, trust)
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _reporting(on_verify_error))
    ctx.set_verify_depth(1)
    # Sessions are not resumed: each connection shows its certificate to the current CRL.
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Server-side connection creator whose CRL can be replaced while listening."""

    def __init__(self, own: KeyPair, trust: Trust, on_verify_error=None) -> None:
        self._own = own
        self._trust = trust
        self._on_verify_error = on_verify_error
        self._context = server_context(own, trust, on_verify_error)

    @property
    def trust(self) -> Trust:
        """The CA and CRL new handshakes are checked against."""
        return self._trust

    def reload_crl(self, crl_pem: bytes) -> None:
        """Use a newly signed CRL for every handshake from now on.

        The new CRL must be signed by the pinned CA; otherwise CRLError is raised and the
        old one stays in force (a wrong file must not lock members out, or let anyone in).
        """
        check_crl(self._trust.ca_pem, crl_pem)
        trust = Trust(self._trust.ca_pem, crl_pem)
        self._context = server_context(self._own, trust, self._on_verify_error)
        self._trust = trust

    def reload_own(self, own: KeyPair) -> None:
        """Present a renewed certificate and key in every handshake from now on (a pair
        that does not load or match raises, and the old one stays in force)."""
        self._context = server_context(own, self._trust, self._on_verify_error)
        self._own = own

    def reload_crl_file(self, path: str | os.PathLike) -> None:
        """``reload_crl`` from a file (what the dispatcher does on SIGHUP or a timer)."""
        with open(path, "rb") as f:
            self.reload_crl(f.read())

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:  # noqa: N802 (Twisted API)
        """A connection for one accepted socket."""
        return SSL.Connection(self._context, None)


def _hostname_verifier(hostname: str):
    """OpenSSL verify callback: keep OpenSSL's verdict, and at the leaf require ``hostname``."""

    def verify(conn, cert, errno, depth, ok) -> bool:
        if not ok:
            return False
        if depth == 0:
            try:
                verify_certificate_hostname(cert.to_cryptography(), hostname)
            except VerificationError:
                return False
        return True

    return verify


def client_context(own: KeyPair, trust: Trust, hostname: str) -> SSL.Context:
    """A client context presenting ``own`` and accepting only ``hostname`` certified by trust."""
    ctx = _base_context(own, trust)
    ctx.set_verify(SSL.VERIFY_PEER, _hostname_verifier(hostname))
    ctx.set_verify_depth(1)
    return ctx


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """Client-side connection creator: our certificate out, the expected host's back."""

    def __init__(self, own: KeyPair, trust: Trust, hostname: str) -> None:
        if trust.crl_pem is not None:  # (CRLError: a CRL the pinned CA did not sign)
            check_crl(trust.ca_pem, trust.crl_pem)
        self.hostname = hostname
        self._trust = trust
        self._context = client_context(own, trust, hostname)

    @property
    def trust(self) -> Trust:
        """The CA and CRL new handshakes (and per-call re-checks) use."""
        return self._trust

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:  # noqa: N802 (Twisted API)
        """A connection for one outgoing socket, sending the host name (SNI)."""
        conn = SSL.Connection(self._context, None)
        conn.set_tlsext_host_name(self.hostname.encode("idna"))
        conn.set_connect_state()
        return conn


def peer_certificate(transport) -> x509.Certificate | None:
    """The verified peer certificate of a TLS transport (after the handshake), or None."""
    handle = transport.getHandle()
    if not isinstance(handle, SSL.Connection):
        return None
    try:
        return handle.get_peer_certificate(as_cryptography=True)
    except TypeError:  # pyOpenSSL < 24 (Debian 12 ships 23.0): its own X509 type only
        cert = handle.get_peer_certificate()
        return None if cert is None else cert.to_cryptography()


def member_front_door(own: KeyPair, member_ca: Trust, on_verify_error=None) -> ServerTLS:
    """The dispatcher's listener for members: host certificate out, member CA pinned."""
    return ServerTLS(own, member_ca, on_verify_error)


def slave_listener(own: KeyPair, host_ca: Trust, on_verify_error=None) -> ServerTLS:
    """A slave's listener: its host certificate out, the host CA pinned (the dispatcher's
    certificate is then checked by name in ``cred.HostCertificateChecker``)."""
    return ServerTLS(own, host_ca, on_verify_error)


def member_client(own: KeyPair, host_ca: Trust, dispatcher: str) -> ClientTLS:
    """A member's connection to the dispatcher called ``dispatcher``."""
    return ClientTLS(own, host_ca, dispatcher)


def slave_client(own: KeyPair, host_ca: Trust, slave: str) -> ClientTLS:
    """The dispatcher's connection to the slave called ``slave``."""
    return ClientTLS(own, host_ca, slave)


# Twisted >= 23.8 takes a clock (it batches small writes on it); Debian 12's 22.4 does not
# (it writes at once), and the Debian packages run on it.
_BIO_TAKES_CLOCK = "clock" in inspect.signature(TLSMemoryBIOFactory.__init__).parameters


def memory_bio_factory(
    creator: object, is_client: bool, factory: object, clock: object = None
) -> TLSMemoryBIOFactory:
    """``TLSMemoryBIOFactory(creator, is_client, factory, clock)``, without the clock on a
    Twisted that takes none."""
    if clock is not None and _BIO_TAKES_CLOCK:
        return TLSMemoryBIOFactory(creator, is_client, factory, clock)
    return TLSMemoryBIOFactory(creator, is_client, factory)
