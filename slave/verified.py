"""The slave's own view of each member's grants: signed by an administrator, verified here.

The dispatcher relays, with each owner's part in ``prepare``, the owner's grant record
signed by an administrator's Ed25519 key (``domtool.grantsig``). A slave configured with
trusted keys (``grant_keys``) builds a :class:`GrantBook`; for every owner with units it
then

1. requires a signed record for that owner, made by a trusted key, for that owner, with a
   serial not older than the newest it has accepted for that owner (kept in
   ``state_dir/agent/grant-serials.json``, so a dispatcher cannot replay a bigger grant
   set the admin has since replaced);
2. takes the owner's paths, users and groups from the verified record, NOT from the
   dispatcher's ``grants`` field (which it ignores), for ``ops.recheck``;
3. refuses every unit that names a domain outside the verified domains
   (:meth:`VerifiedGrants.unit_problems`: zone names, vhost fqdn, domain and aliases,
   mail domain names), comparing names lower-cased and without a trailing dot.

The API for other backends (mail aliases and mailboxes, lists, databases, firewall
rules): :meth:`GrantBook.verified` gives a :class:`VerifiedGrants`; its
:meth:`VerifiedGrants.problems` ``(what, field, kind, value)`` with ``kind`` one of
``domain``, ``path``, ``user``, ``group`` returns the refusal lines (``owner: what:
field: reason``), empty when the value is the owner's. A path is resolved on this host
(``slave.pathcheck``), so a symlink out of the owner's tree is refused.

Without trusted keys the slave falls back to the dispatcher's grants (and does not
re-check domain ownership); ``domtool-slave`` logs that at start-up.

Limits: a record has no expiry, so a revocation reaches a slave only when the re-signed
record is relayed; a dispatcher that withholds it keeps the old (larger) grants in force
there until it does (the serial floor stops a replay only after the newer record was seen).
A removal (an owner's empty part) needs no grants, so a dispatcher can still take an
owner's units off a host, though it cannot put anything of anyone's in their place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from domtool import grantsig, validate
from domtool.model import DesiredState, Vhost
from domtool.perms import Permissions
from domtool.slave import ops
from domtool.slave.pathcheck import PathRefused, check_member_path
from domtool.slave.seams import RealFileSystem
from domtool.states import unit_names, units
from domtool.util.files import atomic_write
from domtool.validate import Invalid

__all__ = ["GrantBook", "VerifiedGrants", "normal_domain", "recheck_signed"]

KINDS = ("domain", "path", "user", "group")


def normal_domain(name: str) -> str:
    """``name`` lower-cased, without one trailing dot, checked as a domain name."""
    if isinstance(name, str) and name.endswith("."):
        name = name[:-1]
    return validate.check_domain(name)


@attrs.frozen
class VerifiedGrants:
    """One owner's grants as an administrator signed them (``serial``)."""

    owner: str
    serial: int
    perms: Permissions

    def grants(self) -> ops.Grants:
        p = self.perms
        return ops.Grants(tuple(sorted(p.paths)), tuple(sorted(p.users)), tuple(sorted(p.groups)))

    def reason(self, kind: str, value: Any) -> str | None:
        """Why ``value`` (of ``kind``) is not the owner's, or None when it is."""
        p, who = self.perms, f"{self.owner}'s signed grants (serial {self.serial})"
        if kind == "domain":
            try:
                name = normal_domain(value)
            except Invalid as e:
                return str(e)
            if not p.owns_domain(name):
                return f"{str(value)[:253]!r} is not under any domain in {who}"
            return None
        if kind == "path":
            try:
                check_member_path(value, tuple(sorted(p.paths)))
            except PathRefused as e:
                return f"{e} ({who})"
            return None
        if kind == "user":
            return None if p.owns_user(value) else f"{str(value)[:32]!r} is not a user in {who}"
        if kind == "group":
            return None if p.owns_group(value) else f"{str(value)[:32]!r} is not a group in {who}"
        raise ValueError(f"unknown grant kind {kind!r}; one of {', '.join(KINDS)}")

    def problems(self, what: str, field: str, kind: str, value: Any) -> list[str]:
        """The refusal line for one value (``[]`` when it is the owner's)."""
        why = self.reason(kind, value)
        return [] if why is None else [f"{self.owner}: {what}: {field}: {why}"]

    def unit_problems(self, state: DesiredState) -> list[str]:
        """Every domain name ``state`` configures (``states.names``, and the domain each
        vhost is declared in) outside the verified domains (paths, users and groups are
        ``ops.recheck``'s, given :meth:`grants`)."""
        out: list[str] = []
        for _kind, unit in units(state):
            for n in unit_names(unit):
                if n.kind != "list":  # an address: its list domain is checked
                    out += self.problems(n.what, n.field, "domain", n.name)
                if isinstance(unit, Vhost) and n.field == "fqdn":
                    out += self.problems(n.what, "domain", "domain", unit.domain)
        return out


class GrantBook:
    """Trusted grant-signing keys and the newest serial accepted per owner."""

    def __init__(self, public_keys: Iterable[bytes], serials_path: str | None = None) -> None:
        self.trusted = grantsig.load_public_keys(public_keys)
        if not self.trusted:
            raise grantsig.GrantSigError("no trusted grant signing key")
        self.serials_path = serials_path
        self.serials: dict[str, int] = {}
        self._batch_depth = 0
        self._dirty = False  # serials accepted inside a batch, not yet saved
        # Inside a batch: each owner's last record and its verified grants (the agent
        # asks twice per owner: the re-check, then the snapshot's paths).
        self._memo: dict[str, tuple[grantsig.SignedGrants, VerifiedGrants]] = {}
        if serials_path is not None and os.path.exists(serials_path):
            with open(serials_path, encoding="utf-8") as f:
                data = json.load(f)
            self.serials = {str(k): int(v) for k, v in data.items()}

    @classmethod
    def from_files(cls, paths: Iterable[str], serials_path: str | None = None) -> GrantBook:
        pems = []
        for p in paths:
            with open(p, "rb") as f:
                pems.append(f.read())
        return cls(pems, serials_path)

    def verified(self, owner: str, signed: grantsig.SignedGrants | None) -> VerifiedGrants:
        """The owner's verified grants, or :class:`grantsig.GrantSigError` saying why not."""
        if signed is None:
            raise grantsig.GrantSigError(
                "no signed grants: this host checks every unit against grants an "
                "administrator signed (domtool-admin sign-grants)"
            )
        hit = self._memo.get(owner)
        if hit is not None and hit[0] is signed and hit[1].serial >= self.serials.get(owner, 0):
            return hit[1]  # (the same record again in this batch: verified already)
        record = grantsig.verify(signed, self.trusted)
        if record.member != owner:
            raise grantsig.GrantSigError(
                f"the signed grants are {record.member[:32]}'s, not {owner}'s"
            )
        floor = self.serials.get(owner, 0)
        if record.serial < floor:
            raise grantsig.GrantSigError(
                f"the signed grants (serial {record.serial}) are older than serial {floor}, "
                "which this host has already accepted"
            )
        if record.serial > floor:
            self.serials[owner] = record.serial
            if self._batch_depth:
                self._dirty = True
            else:
                self._save()
        vg = VerifiedGrants(owner, record.serial, record.permissions())
        if self._batch_depth:
            self._memo[owner] = (signed, vg)
        return vg

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Accept serials in memory and write the serial file once, when the block
        ends (a prepare of 1,000 members' first serials: one write and fsync, not 1,000).

        The caller must act on nothing these serials allowed until the block has ended:
        the agent re-checks a whole prepare inside one block, before it stages, answers
        or commits anything, so a serial accepted is on disk before what it allowed goes
        live, and a replayed older serial is still refused after a restart. When the
        block ends by an exception the serials accepted so far are written all the same
        (a floor only rises); a failing write raises ``OSError`` out of the block."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if not self._batch_depth:
                self._memo.clear()
            if not self._batch_depth and self._dirty:
                self._save()
                self._dirty = False

    def _save(self) -> None:
        if self.serials_path is None:
            return
        os.makedirs(os.path.dirname(self.serials_path), exist_ok=True)
        atomic_write(self.serials_path, json.dumps(self.serials, sort_keys=True).encode())
        # The rename durable too (once a prepare, not once a member): after a power loss
        # the file is this one, not the one before it with lower floors.
        fsync_dir(os.path.dirname(self.serials_path))


# The seam's directory fsync (a module name, so a test can count the calls).
fsync_dir = RealFileSystem().fsync_dir


def recheck_signed(
    book: GrantBook, owner: str, change: ops.OwnerChange, node: str | None = None
) -> list[str]:
    """``ops.recheck`` with the owner's VERIFIED grants, plus the domain check of every
    unit. An owner whose part is empty (removed from this host) needs no grants."""
    if change.state == DesiredState():
        return ops.recheck(owner, attrs.evolve(change, grants=ops.Grants()), node)
    try:
        vg = book.verified(owner, change.signed)
    except grantsig.GrantSigError as e:
        return [f"{owner}: grants: {e}"]
    checked = attrs.evolve(change, grants=vg.grants())
    return ops.recheck(owner, checked, node) + vg.unit_problems(change.state)
