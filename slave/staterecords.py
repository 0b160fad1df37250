"""The slave agent's record of each staged generation's desired state, kept per owner so
that a change of one owner writes one small record, not the whole host's state.

Layout under the agent's ``states`` directory::

    owners/<sha256>.json   one owner's part ({"owner", "state"}), content-addressed and
                           immutable: written once (temporary file, fsync, rename, fsync
                           of the directory), then only ever read or pruned
    <N>.json               generation N's index: {"generation": N, "owners": {owner: sha}}

A generation's record is written as: every owner part it needs that is not on disk yet,
durably; then its index, atomically (temporary file, fsync, rename, fsync of the
directory). A kill at any point therefore leaves generation N's index either absent (the
previous generations' records are untouched) or complete with every part it names, so
whichever generation the engine comes back with, its state can be read. A part already
written is not serialised again: each owner's part is remembered with its hash while it
stays the same value. Records of the older format (``<N>.json`` holding the whole
``state``) are still read.

All file operations go through the engine's file system seam, so the crash and disk-full
tests cover this too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import attrs

from domtool import model
from domtool.model import DesiredState
from domtool.slave.seams import FileSystem, atomic_write, makedirs
from domtool.states import by_owner, compose

KEEP_STATES = 5
OWNERS = "owners"


def _dumps(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@attrs.define
class StateRecords:
    """The desired state of each staged generation (see the module docstring)."""

    fs: FileSystem
    directory: str
    # owner -> (part, sha) of the latest write or read: an unchanged part is not dumped
    _known: dict[str, tuple[DesiredState, str]] = attrs.field(factory=dict, init=False)
    # sha -> part read or written (parts are immutable values)
    _parts: dict[str, DesiredState] = attrs.field(factory=dict, init=False)
    # generation -> its owner index, as read or written
    _indexes: dict[int, dict[str, str]] = attrs.field(factory=dict, init=False)

    def path(self, generation: int) -> str:
        """Generation ``generation``'s index file."""
        return f"{self.directory}/{int(generation)}.json"

    def part_path(self, sha: str) -> str:
        return f"{self.directory}/{OWNERS}/{sha}.json"

    def _sha_of(self, owner: str, part: DesiredState) -> tuple[str, bytes | None]:
        known = self._known.get(owner)
        if known is not None and (known[0] is part or known[0] == part):
            return known[1], None
        data = _dumps({"owner": owner, "state": model.to_json(part)})
        return hashlib.sha256(data).hexdigest(), data

    def write(self, generation: int, state: DesiredState | Mapping[str, DesiredState]) -> None:
        """Record ``state`` (a host state, or its parts by owner) as ``generation``'s."""
        parts = by_owner(state) if isinstance(state, DesiredState) else dict(state)
        makedirs(self.fs, f"{self.directory}/{OWNERS}")
        index: dict[str, str] = {}
        fresh: dict[str, tuple[str, DesiredState, bytes | None]] = {}
        for owner in sorted(parts):
            sha, data = self._sha_of(owner, parts[owner])
            index[owner] = sha
            fresh[owner] = (sha, parts[owner], data)
        todo = [
            (sha, data)
            for sha, _part, data in fresh.values()
            if data is not None and not self.fs.exists(self.part_path(sha))
        ]
        # Every new part: temporary files, their fsyncs together (a round of 1,000 new
        # owners is not 1,000 fsyncs one after the other), renames, one directory fsync.
        tmps = [(self.part_path(sha) + ".tmp", self.part_path(sha), data) for sha, data in todo]
        try:
            for tmp, _path, data in tmps:
                self.fs.write(tmp, data)
            self.fs.fsync_many([tmp for tmp, _path, _data in tmps])
            for tmp, path, _data in tmps:
                self.fs.rename(tmp, path)
        except OSError:
            for tmp, _path, _data in tmps:
                if self.fs.exists(tmp):
                    self.fs.remove(tmp)
            raise
        if todo:
            self.fs.fsync_dir(f"{self.directory}/{OWNERS}")
        atomic_write(
            self.fs, self.path(generation), _dumps({"generation": generation, "owners": index})
        )
        for owner, (sha, part, _data) in fresh.items():
            self._known[owner] = (part, sha)
            self._parts[sha] = part
        for owner in set(self._known) - set(parts):
            del self._known[owner]
        self._indexes[int(generation)] = index

    def _read_index(self, generation: int) -> dict:
        raw = self.fs.read(self.path(generation))
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("generation") != generation:
            raise ValueError(f"{self.path(generation)} is not the state of generation {generation}")
        return data

    def _part(self, owner: str, sha: str) -> DesiredState:
        part = self._parts.get(sha)
        if part is None:
            raw = self.fs.read(self.part_path(sha))
            if hashlib.sha256(raw).hexdigest() != sha:
                raise ValueError(f"{self.part_path(sha)} does not hold what its name says")
            data = json.loads(raw)
            part = model.from_json(data["state"])
            if not isinstance(part, DesiredState) or data.get("owner") != owner:
                raise ValueError(f"{self.part_path(sha)} is not {owner}'s part")
            self._parts[sha] = part
        return part

    def read(self, generation: int) -> DesiredState | None:
        """The state recorded for ``generation``, or None when there is none."""
        try:
            data = self._read_index(generation)
        except FileNotFoundError:
            return None
        if "state" in data:  # the older format: the whole state in one record
            state = model.from_json(data["state"])
            if not isinstance(state, DesiredState):
                raise ValueError(f"{self.path(generation)} holds no state")
            return state
        owners = data.get("owners")
        if not isinstance(owners, dict):
            raise ValueError(f"{self.path(generation)} names no owners")
        try:
            parts = {o: self._part(o, sha) for o, sha in owners.items()}
        except FileNotFoundError as e:
            raise ValueError(f"generation {generation}: a recorded part is missing: {e}") from e
        self._known = {o: (parts[o], sha) for o, sha in owners.items()}
        self._indexes[int(generation)] = dict(owners)
        return compose(parts)

    def generations(self) -> list[int]:
        try:
            names = self.fs.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def prune(self, keep: set[int], newest: int = KEEP_STATES) -> None:
        """Remove records except ``keep`` and the ``newest`` highest generations, then
        the owner parts no remaining record names."""
        gens = self.generations()
        for g in gens[:-newest] if newest else gens:
            if g not in keep:
                try:
                    self.fs.remove(self.path(g))
                except FileNotFoundError:
                    pass
                self._indexes.pop(g, None)
        wanted: set[str] = set()
        for g in self.generations():
            index = self._indexes.get(g)
            if index is None:
                try:
                    data = self._read_index(g)
                except (OSError, ValueError):
                    return  # cannot tell what is needed: keep every part
                if "state" in data:
                    continue
                index = self._indexes[g] = dict(data.get("owners") or {})
            wanted.update(index.values())
        try:
            names = self.fs.listdir(f"{self.directory}/{OWNERS}")
        except FileNotFoundError:
            return
        for name in names:
            sha = name[:-5] if name.endswith(".json") else None
            if sha not in wanted:
                try:
                    self.fs.remove(f"{self.directory}/{OWNERS}/{name}")
                except FileNotFoundError:
                    pass
                if sha is not None:
                    self._parts.pop(sha, None)
