"""Revocation that takes effect at once: every request re-checks the peer's certificate.

A CRL is consulted by OpenSSL only during a handshake, so a member whose certificate is
revoked (or re-pinned to a new serial) kept an open session, and a slave whose host
certificate is revoked kept its open link (issue 13, finding 4). Here:

- :func:`revoked` says whether a certificate's serial is on a CRL (parsed once per CRL);
- :func:`session_refusal` is what the member listener asks before each request: the
  session's certificate against the listener's CURRENT CRL and the store's CURRENT pin
  (``MemberRecord.cert_serial``); a refusal closes the session;
- :func:`link_refusal` is what a slave link asks before each call: the slave's
  certificate against the current host CRL (``tls.ClientTLS.trust``), which the
  dispatcher renews on every link when the host CRL file changes (its ``tlswatch.FileWatch``
  and ``relink``; a CRL the host CA did not sign changes no link).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography import x509

__all__ = ["link_refusal", "revoked", "session_refusal"]


@lru_cache(maxsize=8)
def _serials(crl_pem: bytes) -> frozenset[int]:
    crl = x509.load_pem_x509_crl(crl_pem)
    return frozenset(r.serial_number for r in crl)


def revoked(cert: x509.Certificate, crl_pem: bytes | None) -> bool:
    """Whether ``cert``'s serial is listed on the CRL (no CRL: False)."""
    return crl_pem is not None and cert.serial_number in _serials(crl_pem)


def session_refusal(
    cert: x509.Certificate | None, crl_pem: bytes | None, record: Any
) -> str | None:
    """Why an open member session may not make another request, or None."""
    if cert is None:
        return "the session has no certificate"
    if revoked(cert, crl_pem):
        return f"certificate {cert.serial_number:x} has been revoked"
    pin = getattr(record, "cert_serial", None)
    if pin is not None and pin != cert.serial_number:
        return f"certificate {cert.serial_number:x} is no longer {record.name}'s current one"
    return None


def link_refusal(cert: x509.Certificate | None, crl_pem: bytes | None) -> str | None:
    """Why an open link to a slave may not carry another call, or None. No certificate
    yet means the handshake is still running: it checks the current CRL itself."""
    if cert is not None and revoked(cert, crl_pem):
        return f"the slave's certificate {cert.serial_number:x} has been revoked"
    return None
