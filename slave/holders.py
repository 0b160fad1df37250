"""Who holds each served name on this host, kept up to date per owner, so that a prepare
checks only the changed owners' names for clashes (not every name of 10,000 domains).

``HolderIndex.conflicts(parts, changed, current)`` answers exactly what the agent's
original scan over every owner's part did: for each changed owner, the names it claims
that another owner in ``parts`` claims too; the owner who holds a name live (in
``current``) keeps it, only the others claiming it are refused. The index of the live
names is updated per owner: an owner whose part is the same as last time (the same unit
objects) costs one comparison.
"""

from __future__ import annotations

from collections.abc import Mapping

from domtool.model import DesiredState
from domtool.states import unit_names, units

Key = tuple[str, str]

#: the names one owner's units hold apart from everyone else's: a vhost's aliases share
#: the vhosts' namespace; a list domain's web host is not a held name of its own
_HELD_AS = {"vhost alias": "vhost"}
_NOT_HELD = frozenset({"list host"})


def _lower(name: str) -> str:
    """``name`` lower-cased, the same string when it already is (a key per name of
    10,000 domains: no second copy of each)."""
    low = name.lower()
    return name if low == name else low


def holders(state: DesiredState) -> dict[Key, str]:
    """Who holds each name a daemon serves (``states.names``): (kind, name) -> owner, the
    first unit to name it winning. A vhost holds its fqdn and every alias, a list domain its name and each
    list's address; names are compared lower-cased."""
    out: dict[Key, str] = {}
    for _field, unit in units(state):
        owner = unit.owner
        for kind, name, _f, _u in unit_names(unit):
            if kind not in _NOT_HELD:
                out.setdefault((_HELD_AS.get(kind, kind), _lower(name)), owner)
    return out


class HolderIndex:
    """The live names by owner and by name (see the module docstring).

    Memory: the owners of a name are a tuple (nearly always one owner; a set per name
    of 10,000 domains cost 8 MB), and the names of parts that are not live (the parts
    a prepare asked about: refused, or replaced at commit) are forgotten when the agent
    says which parts are live (:meth:`live`, at commit), so the index never holds a
    second copy of the host's state."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[DesiredState, frozenset[Key]]] = {}
        self._by_key: dict[Key, tuple[str, ...]] = {}
        # id(part) -> (part, its names): the live parts', and those asked about since
        self._keys: dict[int, tuple[DesiredState, frozenset[Key]]] = {}
        self._asked: dict[int, tuple[DesiredState, frozenset[Key]]] = {}

    def keys_of(self, part: DesiredState) -> frozenset[Key]:
        """The names one part holds (remembered per part object)."""
        hit = self._keys.get(id(part)) or self._asked.get(id(part))
        if hit is not None and hit[0] is part:
            return hit[1]
        keys = frozenset(holders(part))
        self._asked[id(part)] = (part, keys)
        return keys

    def live(self, current: Mapping[str, DesiredState]) -> None:
        """The live parts are now ``current`` (by owner): the agent says so at commit,
        so the previous parts and those only asked about are let go then."""
        self._sync(current)
        self._asked = {}

    def _sync(self, current: Mapping[str, DesiredState]) -> None:
        for owner in [o for o in self._parts if o not in current]:
            self._drop(owner)
        for owner, part in current.items():
            known = self._parts.get(owner)
            if known is not None and known[0] is part:
                continue
            if known is not None and known[0] == part:  # the same names: hold this object
                del self._keys[id(known[0])]
                self._parts[owner] = self._keys[id(part)] = (part, known[1])
                continue
            if known is not None:
                self._drop(owner)
            keys = self.keys_of(part)
            self._parts[owner] = self._keys[id(part)] = (part, keys)
            by_key = self._by_key
            for key in keys:
                held = by_key.get(key)
                if held is None:
                    by_key[key] = (owner,)
                elif owner not in held:
                    by_key[key] = (*held, owner)

    def _drop(self, owner: str) -> None:
        part, keys = self._parts.pop(owner)
        self._keys.pop(id(part), None)
        for key in keys:
            held = self._by_key.get(key)
            if held is not None and owner in held:
                rest = tuple(o for o in held if o != owner)
                if rest:
                    self._by_key[key] = rest
                else:
                    del self._by_key[key]

    def conflicts(
        self,
        parts: Mapping[str, DesiredState],
        changed: set[str],
        current: Mapping[str, DesiredState] | None = None,
    ) -> dict[str, list[str]]:
        current = current or {}
        self._sync(current)
        order = {o: i for i, o in enumerate(current)}
        claims: dict[Key, set[str]] = {}
        for owner in changed:
            if owner in parts:
                for key in self.keys_of(parts[owner]):
                    claims.setdefault(key, set()).add(owner)
        out: dict[str, list[str]] = {}
        for key in sorted(claims):
            live = self._by_key.get(key, ())
            # Unchanged owners still in ``parts`` with their live part claim it too.
            owners = set(claims[key])
            owners |= {
                o for o in live if o not in changed and o in parts and parts[o] is current[o]
            }
            owners |= {
                o
                for o in live
                if o not in changed
                and o in parts
                and parts[o] is not current[o]
                and key in self.keys_of(parts[o])
            }
            if len(owners) < 2:
                continue
            holder = min(live, key=order.__getitem__) if live else None
            kind, name = key
            for o in sorted((owners & changed) - {holder}):
                others = ", ".join(sorted(owners - {o}))
                out.setdefault(o, []).append(f"{o}: {kind} {name}: already held by {others}")
        return out
