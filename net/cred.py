"""The twisted.cred pieces both listeners share: a verified peer certificate as
credentials, the principal it names, the host avatar and the host portal.

TLS (``tls.py``) has already verified the chain against the pinned CA, the dates and
the CRL. What remains is who the certificate names (``domtool.identity``: the
subjectAltName URI) and whether that party may act here:

- :func:`principal` maps credentials to the :class:`~domtool.identity.Principal` of the
  expected kind (member or host), or refuses;
- :class:`HostCertificateChecker` and :class:`HostRealm` (:func:`host_portal`) are the
  slave's side: only the named dispatcher host(s) log in, as :class:`Host`;
- :func:`login` is the one call a protocol makes after its handshake (``login_host`` for
  hosts; the dispatcher's member side, backed by its store, is ``dispatcher/auth.py``).
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from cryptography import x509
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from domtool import identity


class IPeerCertificate(ICredentials):
    """Credentials: the peer certificate a TLS handshake has already verified."""

    certificate = Attribute("the verified cryptography.x509.Certificate")


@implementer(IPeerCertificate)
@frozen
class PeerCertificate:
    """A verified peer certificate, offered to a portal as credentials."""

    certificate: x509.Certificate


class IHost(Interface):
    """The avatar interface of an authenticated host (the dispatcher, seen by a slave)."""

    name = Attribute("the host's FQDN")


@implementer(IHost)
@frozen
class Host:
    """An authenticated host."""

    name: str


class Refused(UnauthorizedLogin):
    """The certificate is valid but does not name a party allowed in (see the reason)."""


def principal(credentials: IPeerCertificate, kind: str) -> identity.Principal:
    """The principal of ``kind`` the credentials' certificate names (else Refused)."""
    try:
        named = identity.principal_of(credentials.certificate)
    except identity.IdentityError as e:
        raise Refused(str(e)) from None
    if named.kind != kind:
        raise Refused(f"a {named.kind} certificate cannot act as a {kind}")
    return named


@implementer(ICredentialsChecker)
class HostCertificateChecker:
    """Host certificate -> host name, for the hosts listed (a slave lists its dispatcher)."""

    credentialInterfaces = (IPeerCertificate,)

    def __init__(self, allowed: frozenset[str] | set[str]) -> None:
        self._allowed = frozenset(allowed)

    def requestAvatarId(self, credentials):  # noqa: N802 (twisted.cred API)
        """Deferred firing with the host's name, or failing with Refused."""
        try:
            name = principal(credentials, identity.HOST).name
            if name not in self._allowed:
                raise Refused(f"host {name} may not give orders here")
        except UnauthorizedLogin:
            return defer.fail()
        return defer.succeed(name)


@implementer(IRealm)
class HostRealm:
    """Host name -> Host avatar."""

    def requestAvatar(self, avatarId, mind, *interfaces):  # noqa: N802,N803 (twisted.cred API)
        """The IHost avatar for ``avatarId``."""
        if IHost not in interfaces:
            raise NotImplementedError("HostRealm only provides IHost")
        return IHost, Host(avatarId), lambda: None


def host_portal(allowed: frozenset[str] | set[str]) -> Portal:
    """A slave's portal: only the listed dispatcher host(s)."""
    return Portal(HostRealm(), [HostCertificateChecker(allowed)])


async def login(portal: Portal, certificate: x509.Certificate | None, interface: Any) -> Any:
    """The ``interface`` avatar a verified certificate logs in as (raises
    UnauthorizedLogin if none)."""
    if certificate is None:
        raise Refused("no client certificate")
    _iface, avatar, _logout = await portal.login(PeerCertificate(certificate), None, interface)
    return avatar


async def login_host(portal: Portal, certificate: x509.Certificate | None) -> Host:
    """The Host a verified certificate logs in as (raises UnauthorizedLogin if none)."""
    return await login(portal, certificate, IHost)
