"""Who a certificate names: the subjectAltName scheme shared by the CA, the dispatcher and slaves.

Every certificate the site's CAs issue carries exactly one ``domtool-<kind>:`` URI in its
subjectAltName, and that URI (never the CN, never the issuer) decides the principal:

- a member: ``URI:domtool-member:<name>`` (``name`` is a Unix user name);
- a host: ``URI:domtool-host:<fqdn>``, plus ``DNS:<fqdn>`` so that ordinary hostname
  verification (``service_identity``) works when a client checks the server.

One colon only: ``service_identity`` reads every URI SAN of a server certificate as
``<scheme>:<dns name>`` and cannot parse ``domtool:host:<fqdn>``.

A member certificate and a host certificate come from different CAs, so a TLS listener
pinned to one CA refuses the other's certificates before this module is consulted; the
``kind`` check here is a second, independent wall.

Pure: this module parses data it is given and touches no file or socket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from attrs import frozen
from cryptography import x509

MEMBER = "member"
HOST = "host"
KINDS = (MEMBER, HOST)

URI_PREFIX = "domtool-"

# A Unix user name as Debian's adduser accepts it by default (lower case, 32 at most).
MEMBER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# A fully qualified host name: dot-separated LDH labels, 253 characters at most.
HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)


class IdentityError(ValueError):
    """The certificate does not name exactly one well-formed domtool principal."""


@frozen
class Principal:
    """A party the site knows: a member (by user name) or a host (by FQDN)."""

    kind: str
    name: str

    def uri(self) -> str:
        """The subjectAltName URI that names this principal."""
        return f"{URI_PREFIX}{self.kind}:{self.name}"


def valid_name(kind: str, name: str) -> bool:
    """Whether ``name`` is well formed for a principal of ``kind``."""
    if kind == MEMBER:
        return MEMBER_NAME.fullmatch(name) is not None
    if kind == HOST:
        return HOST_NAME.fullmatch(name) is not None
    return False


def member(name: str) -> Principal:
    """The member principal called ``name`` (raises IdentityError if malformed)."""
    return _checked(MEMBER, name)


def host(name: str) -> Principal:
    """The host principal called ``name`` (raises IdentityError if malformed)."""
    return _checked(HOST, name)


def _checked(kind: str, name: str) -> Principal:
    if not valid_name(kind, name):
        raise IdentityError(f"{name!r} is not a valid {kind} name")
    return Principal(kind, name)


def principal_from_uris(uris: Iterable[str]) -> Principal:
    """The one principal named by a certificate's URI SANs.

    URIs of other schemes are ignored; none, or more than one ``domtool-`` URI, or a
    malformed one, is an IdentityError (fail closed: an ambiguous certificate names no one).
    """
    found = [u for u in uris if u.startswith(URI_PREFIX)]
    if not found:
        raise IdentityError("the certificate carries no domtool- subjectAltName URI")
    if len(found) > 1:
        raise IdentityError(
            f"the certificate names {len(found)} principals; exactly one is allowed"
        )
    scheme, colon, name = found[0].partition(":")
    kind = scheme[len(URI_PREFIX) :]
    if not colon or kind not in KINDS:
        raise IdentityError(f"unknown principal URI {found[0]!r}")
    return _checked(kind, name)


def principal_of(certificate: x509.Certificate) -> Principal:
    """The principal a (verified) certificate names, from its subjectAltName only."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise IdentityError("the certificate has no subjectAltName") from None
    principal = principal_from_uris(san.value.get_values_for_type(x509.UniformResourceIdentifier))
    if principal.kind == HOST:
        dns = san.value.get_values_for_type(x509.DNSName)
        if principal.name not in dns:
            raise IdentityError(f"host certificate for {principal.name!r} lacks its DNS name")
    return principal
