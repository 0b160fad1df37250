"""The dispatcher's member authentication, backed by its store (the twisted.cred way:
portal, checker, realm). The shared pieces (credentials, principal, the host side) are
``domtool.net.cred``.

- ``MemberCertificateChecker`` maps a verified member certificate to a member name via
  ``domtool.identity`` (the subjectAltName URI), then consults the store: an unknown or
  REMOVED member is refused even though their certificate is still cryptographically
  valid, and if the store pins the member's current certificate serial, any other
  certificate of theirs is refused too.
- ``MemberRealm`` turns the member name into the avatar the controller works with:
  ``Member(name, is_admin)``, admin status read from the store at login.

``login_member(portal, certificate)`` is the one call a protocol makes after its
handshake.
"""

from __future__ import annotations

from attrs import frozen
from cryptography import x509
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import Attribute, Interface, implementer

from domtool import identity
from domtool.dispatcher.store import Store
from domtool.net.cred import IPeerCertificate, Refused, login, principal


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
        name = principal(credentials, identity.MEMBER).name
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


def member_portal(store: Store) -> Portal:
    """The dispatcher's portal for members."""
    return Portal(MemberRealm(store), [MemberCertificateChecker(store)])


async def login_member(portal: Portal, certificate: x509.Certificate | None) -> Member:
    """The Member a verified certificate logs in as (raises UnauthorizedLogin if none)."""
    return await login(portal, certificate, IMember)
