"""The slave's side of TLS renewal: the dispatcher's ``tls_update`` hands it the renewed
host CRL and (when renewed) its own certificate and key, so a slave on another host
never runs on a stale CRL or an expired certificate and nobody copies files by hand.

Everything is checked before anything is written; a refusal changes nothing:

- the CRL must be signed by the pinned host CA (``tls.check_crl``) and not older than the
  one in force (its CRL number does not go back: an old CRL could drop a revocation);
- the certificate must be issued and signed by the pinned host CA, name this host
  (``domtool-host:<host>``), be valid now, not start before the one in force, not be
  revoked by the CRL, and match the key.

The files named by slave.toml (``[tls] crl``, ``certificate``, ``key``: in the package,
under the slave's state directory, its only writable path) are replaced atomically (key,
then certificate, then CRL) and put in force at once (``ServerTLS.reload_own``,
``reload_crl``); identical content is left alone.
"""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.logger import Logger

from domtool import identity
from domtool.net import tls
from domtool.slave.agent import Failed, Refused
from domtool.util.files import atomic_write

__all__ = ["TlsUpdater"]

log = Logger()


def _utc(obj: Any, name: str) -> datetime.datetime:
    if hasattr(obj, name + "_utc"):
        return getattr(obj, name + "_utc")
    return getattr(obj, name).replace(tzinfo=datetime.UTC)


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1


def _write(path: str, data: bytes, mode: int) -> bool:
    """Replace ``path`` atomically with ``data`` (False: it already held exactly that)."""
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    atomic_write(path, data, mode)
    return True


class TlsUpdater:
    """Checks and installs what ``tls_update`` brings (``config``: the SlaveConfig)."""

    def __init__(self, config: Any, server_tls: tls.ServerTLS) -> None:
        self.config = config
        self.server_tls = server_tls

    def update(self, args: Any) -> dict[str, str]:
        c = self.config
        with open(c.ca, "rb") as f:
            ca_pem = f.read()
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        crl_pem = args.crl_pem.encode()
        try:
            crl = tls.check_crl(ca_pem, crl_pem)
        except tls.CRLError as e:
            raise Refused(f"the CRL was refused: {e}") from None
        try:
            with open(c.crl, "rb") as f:
                old = x509.load_pem_x509_crl(f.read())
        except (OSError, ValueError):
            old = None
        if old is not None and _crl_number(crl) < _crl_number(old):
            raise Refused(
                f"the CRL (number {_crl_number(crl)}) is older than the one in force "
                f"(number {_crl_number(old)})"
            )
        now = datetime.datetime.now(datetime.UTC)
        pair = None
        if args.cert_pem is not None:
            pair = self._check_pair(
                args.cert_pem.encode(), args.key_pem.encode(), ca_cert, crl, now
            )
        try:
            return self._install(crl_pem, pair)
        except OSError as e:
            raise Failed(
                f"cannot write {e.filename}: {e.strerror} (slave.toml's [tls] crl, certificate "
                "and key must lie under the slave's state directory, its only writable path)"
            ) from None

    def _install(self, crl_pem: bytes, pair: tls.KeyPair | None) -> dict[str, str]:
        c = self.config
        done = {"crl": "unchanged", "certificate": "unchanged" if pair else "not sent"}
        if pair is not None:
            key_changed = _write(c.key, pair.key_pem, 0o600)
            if _write(c.certificate, pair.cert_pem, 0o644) or key_changed:
                self.server_tls.reload_own(pair)
                done["certificate"] = "updated"
                log.info("installed the renewed certificate from the dispatcher")
        if _write(c.crl, crl_pem, 0o644):
            self.server_tls.reload_crl(crl_pem)
            done["crl"] = "updated"
            log.info("installed the renewed host CRL from the dispatcher")
        return done

    def _check_pair(
        self,
        cert_pem: bytes,
        key_pem: bytes,
        ca_cert: x509.Certificate,
        crl: x509.CertificateRevocationList,
        now: datetime.datetime,
    ) -> tls.KeyPair:
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, None)
        except ValueError as e:
            raise Refused(f"the certificate or key does not load: {e}") from None
        if cert.issuer != ca_cert.subject:
            raise Refused("the certificate is not from this site's host CA")
        try:
            ca_cert.public_key().verify(
                cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
            )
        except Exception:  # InvalidSignature: another CA with the same name
            raise Refused("the certificate is not signed by this site's host CA") from None
        want = identity.host(self.config.host).uri()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if want not in uris:
            raise Refused(f"the certificate does not name {want}")
        if not _utc(cert, "not_valid_before") <= now < _utc(cert, "not_valid_after"):
            raise Refused("the certificate is not valid now")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise Refused("the certificate is revoked")
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise Refused("the key does not belong to the certificate")
        try:
            with open(self.config.certificate, "rb") as f:
                current = x509.load_pem_x509_certificate(f.read())
            if _utc(cert, "not_valid_before") < _utc(current, "not_valid_before"):
                raise Refused("the certificate is older than the one in force")
        except (OSError, ValueError):
            pass
        return tls.KeyPair(cert_pem, key_pem)
