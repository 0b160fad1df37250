"""Authentication after the TLS handshake, split the twisted.cred way: portal, checker, realm.

TLS (``tls.py``) has already verified the chain against the pinned CA, the dates and
the CRL. What remains is who the certificate names and whether that party may still
act:

- ``MemberCertificateChecker`` maps a verified member certificate to a member name via
  ``domtool.identity`` (the subjectAltName URI), then consults the store: an unknown or
  REMOVED member is refused even though their certificate is still cryptographically
  valid, and if the store pins the member's current certificate serial, any other
  certificate of theirs is refused too.
- ``MemberRealm`` turns the member name into the avatar the controller works with:
  ``Member(name, is_admin)``, admin status read from the store at login.
- ``HostCertificateChecker`` is the slave's side: only the named dispatcher host(s).

``login_member(portal, certificate)`` is the one call a protocol makes after its
handshake.
"""

from __future__ import annotations

from attrs import frozen
from cryptography import x509
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from domtool import identity
from domtool.dispatcher.store import Store


class IPeerCertificate(ICredentials):
    """Credentials: the peer certificate a TLS handshake has already verified."""

    certificate = Attribute("the verified cryptography.x509.Certificate")


@implementer(IPeerCertificate)
@frozen
class PeerCertificate:
    """A verified peer certificate, offered to a portal as credentials."""

    certificate: x509.Certificate


class IMember(Interface):
    """The avatar interface of an authenticated member."""

    name = Attribute("the member's Unix user name")
    is_admin = Attribute("whether the member may use admin requests")


@implementer(IMember)
@frozen
class Member:
    """An authenticated member: what every request handler is given."""

    name: str
    is_admin: bool = False


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


def _principal(credentials: IPeerCertificate, kind: str) -> identity.Principal:
    try:
        principal = identity.principal_of(credentials.certificate)
    except identity.IdentityError as e:
        raise Refused(str(e)) from None
    if principal.kind != kind:
        raise Refused(f"a {principal.kind} certificate cannot act as a {kind}")
    return principal


@implementer(ICredentialsChecker)
class MemberCertificateChecker:
    """Member certificate -> member name, refusing members the store does not hold active."""

    credentialInterfaces = (IPeerCertificate,)

    def __init__(self, store: Store) -> None:
        self._store = store

    def requestAvatarId(self, credentials):  # noqa: N802 (twisted.cred API)
        """Deferred firing with the member's name, or failing with Refused."""
        try:
            return defer.succeed(self._check(credentials))
        except UnauthorizedLogin:
            return defer.fail()

    def _check(self, credentials) -> str:
        name = _principal(credentials, identity.MEMBER).name
        record = self._store.member(name)
        if record is None:
            raise Refused(f"{name} is not a member")
        if not record.active:
            raise Refused(f"{name} was removed")
        serial = credentials.certificate.serial_number
        if record.cert_serial is not None and record.cert_serial != serial:
            raise Refused(f"{name}'s certificate {serial:x} is not their current one")
        return name


@implementer(IRealm)
class MemberRealm:
    """Member name -> Member avatar, with admin status from the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def requestAvatar(self, avatarId, mind, *interfaces):  # noqa: N802,N803 (twisted.cred API)
        """The IMember avatar for ``avatarId`` (no logout action is needed)."""
        if IMember not in interfaces:
            raise NotImplementedError("MemberRealm only provides IMember")
        record = self._store.member(avatarId)
        if record is None or not record.active:
            raise Refused(f"{avatarId} is not an active member")
        return IMember, Member(record.name, record.is_admin), lambda: None


@implementer(ICredentialsChecker)
class HostCertificateChecker:
    """Host certificate -> host name, for the hosts listed (a slave lists its dispatcher)."""

    credentialInterfaces = (IPeerCertificate,)

    def __init__(self, allowed: frozenset[str] | set[str]) -> None:
        self._allowed = frozenset(allowed)

    def requestAvatarId(self, credentials):  # noqa: N802 (twisted.cred API)
        """Deferred firing with the host's name, or failing with Refused."""
        try:
            name = _principal(credentials, identity.HOST).name
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


def member_portal(store: Store) -> Portal:
    """The dispatcher's portal for members."""
    return Portal(MemberRealm(store), [MemberCertificateChecker(store)])


def host_portal(allowed: frozenset[str] | set[str]) -> Portal:
    """A slave's portal: only the listed dispatcher host(s)."""
    return Portal(HostRealm(), [HostCertificateChecker(allowed)])


async def login_member(portal: Portal, certificate: x509.Certificate | None) -> Member:
    """The Member a verified certificate logs in as (raises UnauthorizedLogin if none)."""
    if certificate is None:
        raise Refused("no client certificate")
    _iface, avatar, _logout = await portal.login(PeerCertificate(certificate), None, IMember)
    return avatar


async def login_host(portal: Portal, certificate: x509.Certificate | None) -> Host:
    """The Host a verified certificate logs in as (raises UnauthorizedLogin if none)."""
    if certificate is None:
        raise Refused("no client certificate")
    _iface, avatar, _logout = await portal.login(PeerCertificate(certificate), None, IHost)
    return avatar
