"""Mailing list names across members: no member may declare another member's list (pure).

The language already keeps a member's lists under that member's own domains; this is the
dispatcher's check for the rest: a domain granted to two members, or a list address some
other member's deployed state still holds. (The slave checks again against Mailman itself,
with its ledger of who created each list: ``domtool.slave.mailman_sync``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domtool.model import DesiredState


def held_by_others(member: str, deployed: Mapping[tuple[str, str], Any]) -> dict[str, str]:
    """list address -> member, for every list in another member's deployed state (model
    JSON per (member, host), as ``Store.deployed`` returns it)."""
    out: dict[str, str] = {}
    for (who, _host), state in sorted(deployed.items()):
        if who == member or not isinstance(state, dict):
            continue
        for d in state.get("lists") or ():
            for ml in d.get("lists") or ():
                out.setdefault(f"{ml.get('name')}@{d.get('name')}".lower(), who)
    return out


def check(member: str, state: DesiredState, deployed: Mapping[tuple[str, str], Any]) -> list[str]:
    """A refusal for each list of ``state`` another member holds (empty: none)."""
    if not state.lists:
        return []
    others = held_by_others(member, deployed)
    out = []
    for d in state.lists:
        for ml in d.lists:
            fq = f"{ml.name}@{d.name}".lower()
            if fq in others:
                out.append(f"mailing list {fq} is already member {others[fq]}'s list")
    return out
