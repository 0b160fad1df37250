"""Signed grant records: what an administrator granted a member, verifiable without the dispatcher.

A slave must not take a member's grants on the dispatcher's word: a buggy or compromised
dispatcher could make it write one member's names into another's zone or vhost (issue
13, finding 2). So an administrator signs each member's complete grant set with a
signing key the dispatcher never holds (Ed25519; the private key stays with the admin,
``domtool-admin sign-grants``); the dispatcher only stores and relays the signed record;
each slave trusts the public key(s) in its configuration and checks every unit of a
member against the member's verified grants (``domtool.slave.verified``).

A :class:`GrantRecord` is ``(member, serial, grants)``; its signed bytes are a fixed
prefix and the canonical JSON (sorted keys, no spaces, grants sorted) so any change of a
value, the member or the serial breaks the signature. ``serial`` grows with each new
record of a member; a slave refuses a record older than the newest it has seen for that
member (a dispatcher cannot replay a larger, since revoked, grant set once the slave has
seen the newer one).

Pure: no file or network access; keys come in as PEM bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domtool.perms import Permissions, PermsError

__all__ = [
    "GrantRecord",
    "GrantSigError",
    "SignedGrants",
    "key_id",
    "load_public_keys",
    "new_signing_key",
    "public_key_of",
    "sign",
    "verify",
]

PREFIX = b"domtool signed grants v1\n"
MAX_GRANTS = 10_000


class GrantSigError(ValueError):
    """A signed grant record that does not verify or is malformed."""


@attrs.frozen
class GrantRecord:
    """A member's complete grant set at ``serial``: (class, value) pairs, validated and
    sorted (``Permissions.from_grants``)."""

    member: str
    serial: int
    grants: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, member: str, serial: int, grants: Iterable[tuple[str, str]]) -> GrantRecord:
        try:
            perms = Permissions.from_grants(member, [(str(c), str(v)) for c, v in grants])
        except (PermsError, TypeError, ValueError) as e:
            raise GrantSigError(f"grants of {member!r}: {e}") from None
        if not isinstance(serial, int) or isinstance(serial, bool) or not 0 < serial < 2**63:
            raise GrantSigError(f"serial must be a positive integer, not {serial!r}")
        return cls(perms.user, serial, perms.grants())

    def permissions(self) -> Permissions:
        return Permissions.from_grants(self.member, self.grants)

    def signed_bytes(self) -> bytes:
        body = {
            "member": self.member,
            "serial": self.serial,
            "grants": [list(g) for g in self.grants],
        }
        return PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "serial": self.serial,
            "grants": [list(g) for g in self.grants],
        }


@attrs.frozen
class SignedGrants:
    """A record, its Ed25519 signature (base64) and the id of the key that made it."""

    record: GrantRecord
    signature: str
    key: str

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record.to_json(), "signature": self.signature, "key": self.key}

    @classmethod
    def from_json(cls, obj: Any) -> SignedGrants:
        try:
            rec = obj["record"]
            grants = rec["grants"]
            if not isinstance(grants, list) or len(grants) > MAX_GRANTS:
                raise GrantSigError("grants must be a list of at most 10,000 pairs")
            pairs = []
            for g in grants:
                if not (isinstance(g, list) and len(g) == 2 and all(isinstance(x, str) for x in g)):
                    raise GrantSigError("each grant is a [class, value] pair of strings")
                pairs.append((g[0], g[1]))
            if not isinstance(rec["member"], str):
                raise GrantSigError("member must be a string")
            record = GrantRecord.of(rec["member"], rec["serial"], pairs)
            signature, key = obj["signature"], obj["key"]
        except (KeyError, TypeError) as e:
            raise GrantSigError(f"malformed signed grants: {e}") from None
        if not isinstance(signature, str) or not isinstance(key, str) or len(signature) > 200:
            raise GrantSigError("malformed signed grants: signature and key are strings")
        return cls(record, signature, key[:64])


def new_signing_key() -> tuple[bytes, bytes]:
    """A new Ed25519 signing key: (private PEM, public PEM)."""
    k = Ed25519PrivateKey.generate()
    private = k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return private, public_key_of(private)


def _private(pem: bytes) -> Ed25519PrivateKey:
    k = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(k, Ed25519PrivateKey):
        raise GrantSigError("the signing key is not an Ed25519 key")
    return k


def public_key_of(private_pem: bytes) -> bytes:
    return (
        _private(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def key_id(public_pem: bytes) -> str:
    """A short id of a public key: sha256 of its raw bytes, 16 hex digits."""
    k = serialization.load_pem_public_key(public_pem)
    raw = k.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_keys(pems: Iterable[bytes]) -> dict[str, Ed25519PublicKey]:
    """Trusted keys by id; anything but an Ed25519 public key is refused."""
    out: dict[str, Ed25519PublicKey] = {}
    for pem in pems:
        try:
            k = serialization.load_pem_public_key(pem)
        except ValueError as e:
            raise GrantSigError(f"not a PEM public key: {e}") from None
        if not isinstance(k, Ed25519PublicKey):
            raise GrantSigError("a grant signing key must be an Ed25519 public key")
        out[key_id(pem)] = k
    return out


def sign(record: GrantRecord, private_pem: bytes) -> SignedGrants:
    k = _private(private_pem)
    sig = k.sign(record.signed_bytes())
    return SignedGrants(record, base64.b64encode(sig).decode(), key_id(public_key_of(private_pem)))


def verify(signed: SignedGrants, trusted: dict[str, Ed25519PublicKey]) -> GrantRecord:
    """The record if a trusted key signed exactly it; else :class:`GrantSigError`."""
    k = trusted.get(signed.key)
    if k is None:
        raise GrantSigError(f"signed by key {signed.key[:16]!r}, which this host does not trust")
    try:
        sig = base64.b64decode(signed.signature, validate=True)
        k.verify(sig, signed.record.signed_bytes())
    except (InvalidSignature, ValueError):
        raise GrantSigError(
            f"the signature of {signed.record.member}'s grants (serial {signed.record.serial}) "
            "does not verify"
        ) from None
    return signed.record
