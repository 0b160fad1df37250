"""The agent's clash check by index (``domtool.slave.holders``) gives exactly the answers
of the full scan it replaced (kept here as the reference), over random hosts whose live
state evolves from one prepare to the next (so the index is updated, not rebuilt)."""

from __future__ import annotations

import random
from collections.abc import Mapping

from domtool.model import DesiredState, MailDomain, Vhost, Zone
from domtool.slave.holders import HolderIndex, holders
from domtool.states import by_owner, compose


def reference(
    parts: Mapping[str, DesiredState],
    changed: set[str],
    current: Mapping[str, DesiredState] | None = None,
) -> dict[str, list[str]]:
    """For each changed owner, the names they claim that another owner holds too. The
    owner who holds a name live (in ``current``) keeps it: only the others claiming it
    are refused, even when the live holder's part is in the same prepare."""
    live: dict[tuple[str, str], str] = {}
    for part in (current or {}).values():
        for key, holder in holders(part).items():
            live.setdefault(key, holder)
    seen: dict[tuple[str, str], set[str]] = {}
    for owner, part in parts.items():
        for key in holders(part):
            seen.setdefault(key, set()).add(owner)
    out: dict[str, list[str]] = {}
    for (kind, name), owners in sorted(seen.items()):
        if len(owners) > 1:
            for o in sorted((owners & changed) - {live.get((kind, name))}):
                others = ", ".join(sorted(owners - {o}))
                out.setdefault(o, []).append(f"{o}: {kind} {name}: already held by {others}")
    return out


NAMES = [f"n{i}.example" for i in range(12)]


def _part(rng: random.Random, owner: str) -> DesiredState:
    zones = tuple(Zone(n, owner, (), ("local",)) for n in rng.sample(NAMES, rng.randint(0, 2)))
    vhosts = tuple(
        Vhost(
            fqdn=f"www.{n}",
            owner=owner,
            domain=n,
            nodes=("local",),
            document_root=f"/home/{owner}",
            user=owner,
            group=owner,
            server_admin=f"{owner}@example.org",
            aliases=tuple(f"{a}" for a in rng.sample(NAMES, rng.randint(0, 1))),
        )
        for n in rng.sample(NAMES, rng.randint(0, 1))
    )
    mail = tuple(MailDomain(n, owner, ("local",)) for n in rng.sample(NAMES, rng.randint(0, 1)))
    return DesiredState(zones=zones, vhosts=vhosts, mail=mail).normalised()


def test_the_index_agrees_with_the_full_scan():
    rng = random.Random(12)
    index = HolderIndex()
    owners = [f"o{i}" for i in range(6)]
    state = DesiredState()
    seen_clash = 0
    for _ in range(400):
        current = by_owner(state)
        changed = set(rng.sample(owners, rng.randint(1, 3)))
        parts = dict(current)
        for o in changed:
            parts[o] = _part(rng, o)
        got = index.conflicts(parts, changed, current)
        want = reference(parts, changed, current)
        assert got == want, (parts, changed)
        seen_clash += bool(want)
        # What would go live: the changed owners without a clash.
        for o in want:
            if o in current:
                parts[o] = current[o]
            else:
                parts.pop(o, None)
        state = compose({o: p for o, p in parts.items() if p != DesiredState()})
    assert seen_clash > 50
