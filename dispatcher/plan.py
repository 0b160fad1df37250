"""The plan: per host, what one member's new desired state changes (pure; no I/O).

A member's state is split by host with ``DesiredState.for_node``; each host's part is
compared with what that host holds for the member now (the dispatcher's record of the
last committed part, see ``Store.deployed``). Units are keyed by kind and name:
``zone:example.org``, ``vhost:www.example.org``, ``mail:example.org``. A host whose part
is unchanged does not appear in the plan and is not contacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import attrs

from domtool import model
from domtool.model import DesiredState, Site

KINDS = (
    ("zone", "zones", "name"),
    ("vhost", "vhosts", "fqdn"),
    ("mail", "mail", "name"),
    ("lists", "lists", "name"),
    ("policy", "policies", "owner"),
)


@attrs.frozen
class HostDiff:
    """What changes on one host: keys added, changed and removed (each sorted)."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed)

    def to_json(self) -> dict[str, list[str]]:
        return {
            "added": list(self.added),
            "changed": list(self.changed),
            "removed": list(self.removed),
        }


def units(state: DesiredState) -> dict[str, object]:
    """Every unit of ``state`` by key (``kind:name``; a vhost on several nodes is one key)."""
    out: dict[str, object] = {}
    for kind, field, name in KINDS:
        for unit in getattr(state, field):
            out[f"{kind}:{getattr(unit, name)}"] = unit
    return out


def diff(old: DesiredState, new: DesiredState) -> HostDiff:
    """Keys added, changed and removed going from ``old`` to ``new``."""
    a, b = units(old), units(new)
    return HostDiff(
        added=tuple(sorted(k for k in b if k not in a)),
        changed=tuple(sorted(k for k in b if k in a and a[k] != b[k])),
        removed=tuple(sorted(k for k in a if k not in b)),
    )


def split(state: DesiredState, site: Site) -> dict[str, DesiredState]:
    """Each node's part of ``state`` (nodes with nothing to serve are left out)."""
    out = {}
    for node in site.nodes:
        part = state.for_node(node.name).normalised()
        if part != DesiredState():
            out[node.name] = part
    return out


def plan(
    current: Mapping[str, DesiredState], new: Mapping[str, DesiredState]
) -> dict[str, HostDiff]:
    """Per host (either side), the diff of one member's part; unchanged hosts left out."""
    out = {}
    for host in sorted(set(current) | set(new)):
        d = diff(current.get(host, DesiredState()), new.get(host, DesiredState()))
        if not d.empty:
            out[host] = d
    return out


def changed_hosts(
    current: Mapping[str, DesiredState], new: Mapping[str, DesiredState]
) -> dict[str, DesiredState]:
    """The hosts whose part differs, each with its complete new part (empty: remove all)."""
    return {
        host: new.get(host, DesiredState())
        for host in sorted(set(current) | set(new))
        if current.get(host, DesiredState()).normalised()
        != new.get(host, DesiredState()).normalised()
    }


def merge_all(states: Iterable[DesiredState]) -> DesiredState:
    """One state made of several (normalised): what merging them one by one gives (the
    sorts are stable, so one sort of everything orders ties the same), sorted once."""
    states = list(states)
    return DesiredState(
        zones=tuple(u for s in states for u in s.zones),
        vhosts=tuple(u for s in states for u in s.vhosts),
        mail=tuple(u for s in states for u in s.mail),
        lists=tuple(u for s in states for u in s.lists),
        policies=tuple(u for s in states for u in s.policies),
    ).normalised()


def state_json(state: DesiredState) -> dict:
    """Model JSON of a state (what the store and the slaves hold)."""
    return model.to_json(state.normalised())


def part_text(state: DesiredState) -> str:
    """The text the store keeps for a committed part (``Store.record_commit`` writes the
    part's :func:`state_json` with sorted keys; ``Store.deployed_texts`` reads it)."""
    return json.dumps(state_json(state), sort_keys=True)


def same_as_stored(new: Mapping[str, DesiredState], stored: Mapping[str, str]) -> bool:
    """Whether a member's new part on each host (``new``, host -> part, empty parts left
    out) is exactly what the store records as committed there (``stored``, host -> the
    stored text of the member's part), compared as text: the same hosts and, on each,
    the same text. True means :func:`plan` and :func:`changed_hosts` against the decoded
    parts would find nothing (equal texts decode to equal states); False only that the
    texts differ (the caller then decodes and compares, as without this)."""
    if set(new) != set(stored):
        return False
    return all(part_text(state) == stored[host] for host, state in new.items())


def state_from_json(data: object) -> DesiredState:
    """The DesiredState of model JSON (ValueError if it is anything else)."""
    state = model.from_json(data)
    if not isinstance(state, DesiredState):
        raise ValueError("not a DesiredState")
    return state
