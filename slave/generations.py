"""The slave's generation store: the on-disk layout of generations, units and live files, and its caches.

Layout under the state directory (see ``domtool.slave.backend``)::

    units/<backend>/<sha256>.<ext>    immutable unit files, content-addressed
    staging/<N>/                      the generation being prepared (never live)
    generations/<N>/<backend>/...     its index files, once committed
    generations/<N>/manifest.json     which units it holds (``FORMAT``), per owner
    generations/<N>/verified          it reloaded and answered its probes
    current -> generations/<N>        the live generation (atomic symlink swap)
    undo.tmp -> generations/<N-1>     during a commit: the way back, made before the switch
    live/<backend>/<name>             stable copies of the live generation's units

The :class:`GenerationStore` owns that layout and every cache over it: manifests (one
shared entry per distinct unit, with its JSON text, so kept generations share them),
the selections (backend -> key -> :class:`UnitRef`) and unit file names derived from a
manifest, unit contents, each backend's latest index and manifest part, and what is in
staging now. It writes units, stages, switches ``current`` and back, keeps the live files,
collects garbage and does the file part of start-up recovery. It runs no command: the
engine (``domtool.slave.engine``) decides what to stage, check, switch and reload. All
file operations go through the file system seam.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import PurePosixPath

import attrs

from domtool.slave.backend import Backend, Unit
from domtool.slave.engine_errors import BackendFailed
from domtool.slave.seams import FileSystem, makedirs, replace_symlink

MANIFEST = "manifest.json"
UNDO = "undo.tmp"  # in state_dir during a commit: a symlink to the generation before
VERIFIED = "verified"  # in a generation directory: it reloaded and answered its probes
CURRENT = "current"
LIVE = "live"  # state_dir/live/<backend>/<name>: stable copies of live units
FORMAT = 1
KEEP = 5
PIECE = 256  # manifest entries per piece of a backend's cached JSON (see dump)
SWEEP_EVERY = 32  # commits between whole sweeps of the unit directories
_INDEX_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_GEN = re.compile(r"[1-9][0-9]{0,17}")
_CURRENT_TARGET = re.compile(r"generations/([1-9][0-9]{0,17})")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@attrs.frozen(cache_hash=True)
class UnitRef:
    """A unit as a manifest names it: its file is ``units/<backend>/<sha>.<ext>``."""

    key: str
    owner: str
    sha: str
    ext: str
    live: str | None = None  # the unit's stable file name, if its backend keeps live files

    @property
    def filename(self) -> str:
        return f"{self.sha}.{self.ext}"


Selection = dict[str, dict[str, UnitRef]]  # backend -> key -> unit


@attrs.frozen(slots=True)
class SharedEntry:
    """One manifest entry (a dict) shared by every manifest and selection that names its
    unit, with its ref and its JSON text (made once)."""

    entry: dict
    ref: UnitRef
    text: str


@attrs.frozen(slots=True)
class Pieces:
    """A backend's latest list of manifest entries and its JSON, in pieces of
    :data:`PIECE` entries (bytes, without the brackets; see :meth:`GenerationStore.dump`)."""

    entries: list
    pieces: list[bytes]


@attrs.frozen
class Staged:
    """What is in ``staging/<generation>`` now: that generation with this manifest body;
    ``durable`` once fsynced with its manifest written (the final staging); the index
    files ``linked`` from the base generation."""

    generation: int
    body: dict
    durable: bool
    linked: frozenset = frozenset()  # (backend, file) hard-linked from the base


@attrs.frozen
class BackendBody:
    """A backend's latest index and manifest part (see
    :meth:`GenerationStore.backend_body`): for these ``units``, the content ``paths`` and
    ``live`` paths the index was given, the sorted ``keys`` and their manifest
    ``entries``, the index ``files``, the manifest ``part`` and each key's position in
    ``entries``."""

    units: dict[str, UnitRef]
    paths: dict[str, PurePosixPath]
    live: dict[str, PurePosixPath]
    keys: list[str]
    entries: list[dict]
    files: dict[str, bytes]
    part: dict
    positions: dict[str, int]


@attrs.frozen
class _Derived:
    """Something computed from one manifest object (stale once the manifest is another)."""

    manifest: dict
    value: object


@attrs.frozen
class Recovered:
    """What :meth:`GenerationStore.recover` found and left: ``current`` pointed at
    generation ``before`` and now at ``live``; ``repaired``: live files were rewritten."""

    before: int
    live: int
    repaired: bool


class PreviousUnits(Mapping):
    """A generation's units of one backend, read from disk only when asked for."""

    def __init__(self, store: GenerationStore, backend: str, refs: Mapping[str, UnitRef]):
        self._store, self._backend, self._refs = store, backend, refs
        self._made = store.previous_units.setdefault(backend, {})  # ref -> Unit

    def __getitem__(self, key: str) -> Unit:
        ref = self._refs[key]
        unit = self._made.get(ref)
        if unit is None:
            content = self._store.unit_content(self._backend, ref)
            unit = Unit(key=ref.key, owner=ref.owner, ext=ref.ext, content=content, live=ref.live)
            self._made[ref] = unit
        return unit

    def get(self, key: str, default=None):  # (10,000 calls a render: no KeyError path)
        ref = self._refs.get(key)
        if ref is None:
            return default
        unit = self._made.get(ref)
        return unit if unit is not None else self[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)


class GenerationStore:
    """The generations, units and live files under ``state_dir`` (see the module
    docstring). ``backends`` is the engine's registry (for index files)."""

    def __init__(
        self, state_dir: str, fs: FileSystem, backends: Mapping[str, Backend], *, keep: int = KEEP
    ):
        self.state_dir = state_dir
        self.fs = fs
        self.backends = backends
        self.keep = keep
        self._manifests: dict[int, dict] = {}
        self._contents: dict[tuple[str, str], bytes] = {}
        self.previous_units: dict[str, dict[UnitRef, Unit]] = {}  # live units, as Units
        self.staged: Staged | None = None  # what is in staging now
        self._selections: dict[int, _Derived] = {}  # gen -> its manifest's Selection
        self._paths: dict[tuple[str, str, str], PurePosixPath] = {}
        self._commits = 0  # commits garbage-collected since start (full sweep every Nth)
        self._written: dict[str, set[str]] = {}  # unit files written since the last GC
        # Garbage by change (collect_garbage): the kept generations the counts cover,
        # ascending (None: count whole next time); per backend and unit file, how many
        # keys of the newest one name it and how many runs of consecutive covered
        # generations name it; per generation, the files whose run ended with it.
        self._chain: list[int] | None = None
        self._mult: dict[str, dict[str, int]] = {}
        self._spans: dict[str, dict[str, int]] = {}
        self._ends: dict[int, list[tuple[str, str]]] = {}
        self._switched: tuple | None = None  # the latest switch (base, gen, moved, sel)
        # One manifest entry (dict) per distinct unit, shared by every generation's
        # manifest and selection that names it, with its JSON text: at 10,000 domains a
        # manifest is 30,000 entries, so each generation building, comparing, dumping and
        # caching its own copies cost ~0.1 s and ~20 MB per cached manifest.
        self._entries: dict[UnitRef, SharedEntry] = {}
        self._entry_by_id: dict[int, SharedEntry] = {}  # id(entry) -> it
        self._bodies: dict[str, BackendBody] = {}  # backend -> its latest (backend_body)
        self._pieces: dict[str, Pieces] = {}  # backend -> its latest unit list's JSON

    # -- paths ----------------------------------------------------------------

    def path(self, *parts: str | int) -> str:
        """The absolute path of ``parts`` under the state directory."""
        return "/".join([self.state_dir, *map(str, parts)])

    def unit_path(self, backend: str, ref: UnitRef) -> str:
        return self.path("units", backend, ref.filename)

    def staging_dir(self, gen: int) -> PurePosixPath:
        return PurePosixPath(self.path("staging", gen))

    def _unit_file(self, backend: str, ref: UnitRef) -> PurePosixPath:
        path = self._paths.get((backend, ref.sha, ref.ext))
        if path is None:
            path = self._paths[(backend, ref.sha, ref.ext)] = PurePosixPath(
                self.unit_path(backend, ref)
            )
        return path

    def _live_file(self, backend: str, name: str) -> PurePosixPath:
        path = self._paths.get((backend, LIVE, name))
        if path is None:
            path = self._paths[(backend, LIVE, name)] = PurePosixPath(
                self.path(LIVE, backend, name)
            )
        return path

    def listdir(self, path: str) -> list[str]:
        try:
            return self.fs.listdir(path)
        except FileNotFoundError:
            return []

    # -- generations and manifests ------------------------------------------------

    def current_generation(self) -> int:
        """The live generation's number, 0 when there is none."""
        try:
            target = self.fs.readlink(self.path(CURRENT))
        except OSError:
            return 0
        m = _CURRENT_TARGET.fullmatch(target)
        return int(m.group(1)) if m else 0

    def generations(self) -> list[int]:
        """Generation numbers present on disk, ascending."""
        return sorted(int(n) for n in self.listdir(self.path("generations")) if _GEN.fullmatch(n))

    def next_generation(self, base: int) -> int:
        names = self.listdir(self.path("generations"))
        nums = [int(n) for n in names if _GEN.fullmatch(n)]
        return max([base, *nums]) + 1

    def verified(self, gen: int) -> bool:
        """Whether generation ``gen`` went live, reloaded and passed its probes."""
        return gen == 0 or self.fs.exists(self.path("generations", gen, VERIFIED))

    def mark_verified(self, gen: int) -> None:
        """Record durably that generation ``gen`` reloaded and answered its probes."""
        marker = self.path("generations", gen, VERIFIED)
        self.fs.write(marker, b"")
        self.fs.fsync(marker)
        self.fs.fsync_dir(self.path("generations", gen))

    def manifest(self, gen: int) -> dict:
        """Generation ``gen``'s manifest (cached; do not mutate)."""
        if gen == 0:
            return {"format": FORMAT, "generation": 0, "backends": {}}
        cached = self._manifests.get(gen)
        if cached is None:
            raw = self.fs.read(self.path("generations", gen, MANIFEST))
            cached = json.loads(raw)
            if cached.get("format") != FORMAT or cached.get("generation") != gen:
                raise ValueError(f"generation {gen}: manifest format or number mismatch")
            for body in cached.get("backends", {}).values():
                if isinstance(body, dict) and isinstance(body.get("units"), list):
                    body["units"] = [self._intern(u) for u in body["units"]]
            self._manifests[gen] = cached
        return cached

    def index_file(self, gen: int, backend: str, name: str) -> bytes:
        """One index file of a committed generation."""
        return self.fs.read(self.path("generations", gen, backend, name))

    def _intern(self, u: object) -> object:
        """The shared entry equal to ``u`` (a manifest's unit read from disk), so the
        generations kept in memory share one copy of each unit (anything unexpected is
        left as it is, for the callers' checks to refuse)."""
        if not isinstance(u, dict) or u.keys() - {"key", "owner", "sha", "ext", "live"}:
            return u
        try:
            ref = UnitRef(u["key"], u["owner"], u["sha"], u["ext"], u.get("live"))
            got = self._entries.get(ref)
        except (KeyError, TypeError):
            return u
        if got is None:
            if ("live" in u) != (ref.live is not None):
                return u  # ("live": null is not what a manifest of ours holds)
            return self._register(u, ref)
        return got.entry if got.entry == u else u

    def _register(self, entry: dict, ref: UnitRef) -> dict:
        shared = SharedEntry(entry, ref, _dumps(entry))
        self._entries[ref] = shared
        self._entry_by_id[id(entry)] = shared
        return entry

    def entry(self, ref: UnitRef) -> dict:
        """The manifest entry of ``ref`` (shared; do not mutate)."""
        got = self._entries.get(ref)
        if got is not None:
            return got.entry
        entry = {"key": ref.key, "owner": ref.owner, "sha": ref.sha, "ext": ref.ext}
        if ref.live is not None:
            entry["live"] = ref.live
        return self._register(entry, ref)

    def _prune_entries(self) -> None:
        """Forget the entries no manifest held in memory names (after garbage collection)."""
        named = {
            id(u)
            for m in self._manifests.values()
            for body in m["backends"].values()
            for u in body["units"]
        }
        self._entries = {r: e for r, e in self._entries.items() if id(e.entry) in named}
        self._entry_by_id = {i: e for i, e in self._entry_by_id.items() if i in named}

    def dump(self, manifest: dict) -> bytes:
        """The manifest's JSON (sorted keys, compact), as bytes. Each shared entry's JSON
        text is made once, and each backend's unit list is kept as bytes in pieces of
        :data:`PIECE` entries: a piece whose entries are the same as last time is reused,
        so a one-unit change encodes one piece, not 10,000 entries (the pieces are joined
        as bytes, never decoded again)."""
        out: list[bytes] = []
        self._enc(manifest, out, ())
        out.append(b"\n")
        return b"".join(out)

    def _enc(self, v: object, out: list[bytes], at: tuple) -> None:
        if isinstance(v, dict):
            known = self._entry_by_id.get(id(v))
            if known is not None and known.entry is v:
                out.append(known.text.encode())
                return
            out.append(b"{")
            for i, k in enumerate(sorted(v)):
                if i:
                    out.append(b",")
                out.append(_dumps(k).encode() + b":")
                self._enc(v[k], out, (*at, k) if len(at) < 3 else at)
            out.append(b"}")
        elif isinstance(v, list):
            if len(at) == 3 and at[0] == "backends" and at[2] == "units" and len(v) > PIECE:
                out.append(self._units_bytes(at[1], v))
                return
            out.append(b"[")
            for i, x in enumerate(v):
                if i:
                    out.append(b",")
                self._enc(x, out, ())
            out.append(b"]")
        else:
            out.append(_dumps(v).encode())

    def _units_bytes(self, backend: str, entries: list) -> bytes:
        """A backend's unit list as JSON bytes, from its pieces (see :meth:`dump`)."""
        last = self._pieces.get(backend)
        old, pieces = (last.entries, last.pieces) if last is not None else ([], [])
        made: list[bytes] = []
        by_id = self._entry_by_id
        for n, i in enumerate(range(0, len(entries), PIECE)):
            chunk = entries[i : i + PIECE]
            # (list equality: identical shared entries compare at once, in C)
            if n < len(pieces) and old[i : i + PIECE] == chunk:
                made.append(pieces[n])
                continue
            texts = []
            for x in chunk:
                known = by_id.get(id(x))
                if known is not None and known.entry is x:
                    texts.append(known.text)
                else:
                    part: list[bytes] = []
                    self._enc(x, part, ())
                    texts.append(b"".join(part).decode())
            made.append(",".join(texts).encode())
        self._pieces[backend] = Pieces(entries, made)
        return b"[" + b",".join(made) + b"]"

    def selection(self, manifest: dict) -> Selection:
        """The units a manifest names, by backend and key (cached per generation; do not
        mutate the result)."""
        gen = manifest["generation"]
        cached = self._selections.get(gen)
        if cached is None or cached.manifest is not manifest:
            cached = self._selections[gen] = _Derived(manifest, self._read_selection(manifest))
        return cached.value

    def _read_selection(self, manifest: dict) -> Selection:
        out: Selection = {}
        for b, body in manifest["backends"].items():
            refs = out[b] = {}
            for u in body["units"]:
                ref = UnitRef(u["key"], u["owner"], u["sha"], u["ext"], u.get("live"))
                got = self._entries.get(ref)
                # the same UnitRef as every other generation's, when the entry is shared
                refs[u["key"]] = got.ref if got is not None and got.entry is u else ref
        return out

    def units(self, backend: str, gen: int) -> Mapping[str, Unit]:
        """Generation ``gen``'s units of one backend by key, read from disk when asked for."""
        return PreviousUnits(self, backend, self.selection(self.manifest(gen)).get(backend, {}))

    def unit_content(self, backend: str, ref: UnitRef) -> bytes:
        got = self._contents.get((backend, ref.sha))
        if got is None:
            got = self.fs.read(self.unit_path(backend, ref))
            self._contents[(backend, ref.sha)] = got
        return got

    # -- a generation's body ------------------------------------------------------------

    def backend_body(self, b: str, units: dict[str, UnitRef]) -> tuple[dict[str, bytes], dict]:
        """One backend's index files and manifest part for these units. The latest one
        is kept: a few changed units update it instead of building the paths and entries
        of 10,000 units again, and for a backend with ``pure_index`` (its index files
        depend on nothing but the units: its config is frozen) the same units (a backend
        the change does not touch) give the same objects back at once. Otherwise its
        index() runs again (its files name every unit)."""
        last = self._bodies.get(b)
        backend = self.backends[b]
        same = last is not None and last.units == units  # (identical refs compare at once)
        if same and getattr(backend, "pure_index", False):
            return last.files, last.part
        with_live = getattr(backend, "live_files", False)
        if same:
            paths, live, keys, entries = last.paths, last.live, last.keys, last.entries
        elif last is None:
            paths = {k: self._unit_file(b, r) for k, r in units.items()}
            live = {k: self._live_file(b, r.live) for k, r in units.items() if r.live is not None}
            keys = sorted(units)
            entries = [self.entry(units[k]) for k in keys]
        else:
            old, paths, live = last.units, dict(last.paths), dict(last.live)
            keys, entries = last.keys, last.entries
            try:
                moved = {k for k, _ in units.items() ^ old.items()}
            except TypeError:
                moved = units.keys() | old.keys()
            for k in moved:
                r = units.get(k)
                if r is None:
                    paths.pop(k, None)
                    live.pop(k, None)
                    continue
                paths[k] = self._unit_file(b, r)
                if r.live is not None:
                    live[k] = self._live_file(b, r.live)
                else:
                    live.pop(k, None)
            if units.keys() == old.keys():
                entries = list(entries)
                pos = last.positions
                for k in moved:
                    entries[pos[k]] = self.entry(units[k])
            else:
                keys = sorted(units)
                entries = [self.entry(units[k]) for k in keys]
        try:
            files = dict(backend.index(paths, live=live) if with_live else backend.index(paths))
        except Exception as exc:
            raise BackendFailed(f"backend {b} could not render its index: {exc}") from exc
        for f in files:
            if not _INDEX_NAME.fullmatch(f) or f == MANIFEST or f.endswith(".tmp"):
                raise BackendFailed(f"backend {b}: bad index file name {f!r}")
        # (an index file the same as last time keeps its hash: comparing bytes is ~20
        # times faster than hashing them, and most of a change's index files are so)
        before = (last.files, last.part["index"]) if last is not None else ({}, {})
        shas = {}
        for f, data in sorted(files.items()):
            old_data = before[0].get(f)
            same_file = old_data is not None and (old_data is data or old_data == data)
            shas[f] = before[1][f] if same_file else sha256(data)
        part = {"units": entries, "index": shas}
        positions = (
            last.positions
            if last is not None and keys is last.keys
            else {k: i for i, k in enumerate(keys)}
        )
        self._bodies[b] = BackendBody(
            dict(units), paths, live, keys, entries, files, part, positions
        )
        return files, part

    # -- writing units and staging -------------------------------------------------------

    def write_units(self, candidates: Iterable[tuple[str, UnitRef, bytes]]) -> None:
        """Write those of these units (backend, ref, content) that are not on disk yet:
        every temporary file, then all their fsyncs (in parallel on a real disk), then
        the renames, then one fsync of each backend's unit directory."""
        todo: dict[str, tuple[str, UnitRef, bytes]] = {}
        for b, ref, content in candidates:
            path = self.unit_path(b, ref)
            if path in todo or (self.fs.exists(path) and sha256(self.fs.read(path)) == ref.sha):
                continue
            todo[path] = (b, ref, content)
        touched = sorted({b for b, _, _ in todo.values()})
        for b in touched:
            makedirs(self.fs, self.path("units", b))
        try:
            for path, (_, _, content) in todo.items():
                self.fs.write(path + ".tmp", content)
            self.fs.fsync_many([path + ".tmp" for path in todo])
            for path in todo:
                self.fs.rename(path + ".tmp", path)
        except OSError:
            for path in todo:
                if self.fs.exists(path + ".tmp"):
                    self.fs.remove(path + ".tmp")
            raise
        for b, ref, content in todo.values():
            self._contents[(b, ref.sha)] = content
            self._written.setdefault(b, set()).add(ref.filename)
        for b in touched:
            self.fs.fsync_dir(self.path("units", b))

    def stage(
        self,
        gen: int,
        body: dict,
        indexes: dict[str, dict[str, bytes]],
        *,
        final: bool,
        base: int = 0,
    ) -> None:
        """Write ``staging/<gen>/``: each backend's index files, enough for its checker.
        ``final`` makes it durable (fsyncs) and adds the manifest; bisection attempts
        skip both, since staging is never live and is renamed only once final. An index
        file the committed generation ``base`` holds with the same content (its
        manifest's hash) is hard-linked from there, not written: durable already, it
        needs no fsync (a one-zone change rewrote and fsynced the web and mail indexes
        of 10,000 domains). Committed generations are never written in place."""
        d = self.path("staging", gen)
        if self.staged is None or (self.staged.generation, self.staged.body) != (gen, body):
            self.staged = None
            makedirs(self.fs, self.path("staging"))
            if self.fs.is_dir(d):
                self.fs.rmtree(d)
            self.fs.mkdir(d)
            linked: set[tuple[str, str]] = set()
            before = self._base_index(base)
            for b in sorted(indexes):
                self.fs.mkdir(f"{d}/{b}")
                shas = body["backends"].get(b, {}).get("index", {})
                had = before.get(b, {})
                for f, data in sorted(indexes[b].items()):
                    if f in had and had[f] == shas.get(f) and self._link_index(base, b, f, d):
                        linked.add((b, f))
                    else:
                        self.fs.write(f"{d}/{b}/{f}", data)
            self.staged = Staged(gen, body, durable=False, linked=frozenset(linked))
        if final and not self.staged.durable:
            for b in sorted(indexes):
                for f in sorted(indexes[b]):
                    if (b, f) not in self.staged.linked:
                        self.fs.fsync(f"{d}/{b}/{f}")
                self.fs.fsync_dir(f"{d}/{b}")
            manifest = {"format": FORMAT, "generation": gen, **body}
            self.fs.write(f"{d}/{MANIFEST}", self.dump(manifest))
            self.fs.fsync(f"{d}/{MANIFEST}")
            self.fs.fsync_dir(d)
            self.staged = attrs.evolve(self.staged, durable=True)

    def _base_index(self, base: int) -> dict[str, Mapping[str, str]]:
        """The index file hashes of the committed generation ``base``, by backend (none
        when it is not the live one or its manifest cannot be read)."""
        if not base or base != self.current_generation():
            return {}
        try:
            backends = self.manifest(base)["backends"]
            return {b: body["index"] for b, body in backends.items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _link_index(self, base: int, b: str, f: str, d: str) -> bool:
        """Hard-link ``generations/<base>/<b>/<f>`` into staging ``d``; False (write it
        instead) if that cannot be done for any reason but a full disk."""
        try:
            self.fs.link(self.path("generations", base, b, f), f"{d}/{b}/{f}")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            return False
        return True

    def remove_staging(self, gen: int) -> None:
        self.staged = None
        d = self.path("staging", gen)
        try:
            if self.fs.is_dir(d):
                self.fs.rmtree(d)
        except OSError:
            pass
        self._manifests.pop(gen, None)

    # -- switching -------------------------------------------------------------------

    def switch(
        self,
        base: int,
        gen: int,
        manifest: Mapping,
        selection: Selection,
        moved: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        """Make the staged generation ``gen`` (this manifest and selection) live:
        rename ``staging/gen`` to ``generations/gen`` (fsync), write the undo link back
        to ``base`` (certbot's reverter idea), swap ``current``. On an OSError the
        caller switches back (:meth:`switch_back`). ``moved``: the keys by backend whose
        units differ from ``base``'s (every other key's unit is the same), for the
        garbage count (None: found by comparing the selections)."""
        self._switched = None
        makedirs(self.fs, self.path("generations"))
        self.fs.rename(self.path("staging", gen), self.path("generations", gen))
        self.staged = None
        self.fs.fsync_dir(self.path("generations"))
        manifest = self._manifests[gen] = dict(manifest)
        self._selections[gen] = _Derived(manifest, selection)
        if base:  # how to undo, made before the switch
            if self.fs.is_symlink(self.path(UNDO)):
                self.fs.remove(self.path(UNDO))
            self.fs.symlink(f"generations/{base}", self.path(UNDO))
        replace_symlink(self.fs, f"generations/{gen}", self.path(CURRENT))
        self._switched = (base, gen, moved, selection)

    def drop_undo(self) -> None:
        """After a verified switch: the undo link is not needed any more."""
        try:
            if self.fs.is_symlink(self.path(UNDO)):
                self.fs.remove(self.path(UNDO))
        except OSError:
            pass  # a leftover undo link is harmless; recover() removes it

    def switch_back(self, base: int, gen: int) -> None:
        """Undo a switch: ``current`` back to ``base`` (by renaming the undo link made
        before the switch, which needs no new space), then drop generation ``gen``."""
        self._switched = None
        current, undo = self.path(CURRENT), self.path(UNDO)
        try:
            if self.current_generation() != base:
                if base and self.fs.is_symlink(undo):
                    self.fs.rename(undo, current)
                    self.fs.fsync_dir(self.state_dir)
                elif base:
                    replace_symlink(self.fs, f"generations/{base}", current)
                elif self.fs.is_symlink(current):
                    self.fs.remove(current)
                    self.fs.fsync_dir(self.state_dir)
        finally:
            for path in (self.path("current.tmp"), undo):
                if self.fs.is_symlink(path):
                    self.fs.remove(path)
            if self.fs.is_dir(self.path("staging", gen)):
                self.fs.rmtree(self.path("staging", gen))
            if self.current_generation() != gen and self.fs.is_dir(self.path("generations", gen)):
                self.fs.rmtree(self.path("generations", gen))
                self._manifests.pop(gen, None)
            self.staged = None

    # -- live files ----------------------------------------------------------------

    def sync_live(self, new: Selection, old: Selection, backends: Iterable[str]) -> None:
        """Make the live files of ``backends`` hold ``new``'s units (``old``: what they
        hold now): write each changed one (temporary file, fsync, rename; one directory
        fsync), remove those ``new`` no longer names. Nothing at all for backends without
        live files."""
        for b in backends:
            after, before = new.get(b, {}), old.get(b, {})
            d = self.path(LIVE, b)
            keys = moved_keys(after, before)
            todo = [
                after[k]
                for k in keys
                if k in after
                and after[k].live is not None
                and (
                    before.get(k) is None
                    or (before[k].sha, before[k].live) != (after[k].sha, after[k].live)
                )
            ]
            gone = {
                before[k].live
                for k in keys
                if k in before
                and before[k].live is not None
                and (k not in after or after[k].live != before[k].live)
            }
            if gone:  # (a live name might have moved to another key)
                gone -= {r.live for r in after.values() if r.live is not None}
            if not todo and not gone:
                continue
            makedirs(self.fs, d)
            # Every temporary file, their fsyncs together (1,000 new zones in a round are
            # not 1,000 fsyncs one after the other), then the renames.
            paths = [f"{d}/{r.live}" for r in todo]
            try:
                for path, r in zip(paths, todo, strict=True):
                    self.fs.write(path + ".tmp", self.unit_content(b, r))
                self.fs.fsync_many([path + ".tmp" for path in paths])
            except OSError:  # (no temporary file left beside the live ones)
                for path in paths:
                    if self.fs.exists(path + ".tmp"):
                        self.fs.remove(path + ".tmp")
                raise
            for path in paths:
                self.fs.rename(path + ".tmp", path)
            for name in sorted(gone):
                if self.fs.exists(f"{d}/{name}"):
                    self.fs.remove(f"{d}/{name}")
            self.fs.fsync_dir(d)

    def live_back(self, base: int, now: Selection, backends: Iterable[str]) -> None:
        """After switching back to generation ``base``: its units in the live files of
        ``backends`` again (``now``: what they hold)."""
        self.sync_live(self.selection(self.manifest(base)), now, backends)

    def _repair_live(self, gen: int) -> bool:
        """At start-up: make every live file the live generation's unit again (a crash
        may have left some of the next or the previous generation's)."""
        sel = self.selection(self.manifest(gen)) if gen else {}
        moved = False
        for b in sorted(set(sel) | set(self.listdir(self.path(LIVE)))):
            d = self.path(LIVE, b)
            wanted = {r.live: r for r in sel.get(b, {}).values() if r.live is not None}
            for name in self.listdir(d):
                if name not in wanted:
                    self.fs.remove(f"{d}/{name}")
                    moved = True
            for name, r in sorted(wanted.items()):
                path = f"{d}/{name}"
                try:
                    ok = sha256(self.fs.read(path)) == r.sha
                except FileNotFoundError:
                    ok = False
                if not ok:
                    makedirs(self.fs, d)
                    self.fs.write(path + ".tmp", self.unit_content(b, r))
                    self.fs.fsync(path + ".tmp")
                    self.fs.rename(path + ".tmp", path)
                    moved = True
            if moved and self.fs.is_dir(d):
                self.fs.fsync_dir(d)
        return moved

    # -- garbage and recovery ---------------------------------------------------------

    def collect_garbage(self) -> None:
        """Keep the last ``keep`` generations (and the live one); remove unit files none
        of them names. Removals are not fsynced: one that comes back after a crash is
        removed again next time.

        By change: the store counts, per unit file, the runs of consecutive kept
        generations that name it (see :meth:`_advance`); a switch moves only the counts
        of the files its moved keys named or name, and dropping a generation looks only
        at the runs that ended with it. So a one-unit change costs a few dictionary
        updates, not a walk of 30,000 units per kept generation. The first collection
        after start (and any surprise: a generation on disk the counts do not know, a
        switch from another base) counts the kept generations whole and sweeps the unit
        directories; so does every ``SWEEP_EVERY``-th, which also finds what a crash left."""
        try:
            live = self.current_generation()
            gens = self.generations()
            kept = sorted(set(gens[-self.keep :]) | {live})
            self._commits += 1
            sweep = self._commits % SWEEP_EVERY == 1 or SWEEP_EVERY == 1
            written, self._written = self._written, {}  # a refused or aborted change's too
            switched, self._switched = self._switched, None
            if not self._advance(live, switched) or self._chain != gens:
                self._chain = None
                sweep = True
            candidates: list[tuple[str, str]] = []
            for g in gens:
                if g in kept:
                    continue
                if self._chain is not None:
                    if self._chain[0] != g:
                        self._chain = None
                        sweep = True
                    else:
                        self._chain.pop(0)
                        spans_gone = self._ends.pop(g, ())
                        for b, f in spans_gone:
                            left = self._spans[b][f] - 1
                            if left:
                                self._spans[b][f] = left
                            else:
                                del self._spans[b][f]
                                candidates.append((b, f))
                self.fs.rmtree(self.path("generations", g))
                self._manifests.pop(g, None)
                self._selections.pop(g, None)
            if self._chain is None:
                try:
                    self._count(kept)
                except (OSError, ValueError, KeyError, TypeError):
                    self._chain = None  # cannot tell what a kept generation needs: keep all
                    return
            spans = self._spans
            for b, names in written.items():
                named = spans.get(b, {})
                candidates.extend((b, f) for f in names if f not in named)
            for b, f in sorted(set(candidates)):
                if f in spans.get(b, ()):
                    continue  # (named again by a kept generation)
                try:
                    self.fs.remove(self.path("units", b, f))
                except FileNotFoundError:
                    pass
                self._forget_unit(b, f)
            for b in self.listdir(self.path("units")) if sweep else ():
                named = spans.get(b, {})
                for f in self.listdir(self.path("units", b)):
                    if f not in named:
                        self.fs.remove(self.path("units", b, f))
                        self._forget_unit(b, f)
            live_units = sum(len(units) for units in self.selection(self.manifest(live)).values())
            if sum(map(len, self.previous_units.values())) > 2 * live_units + 100:
                self.previous_units.clear()
            if len(self._entries) > 2 * live_units + 1000:
                self._prune_entries()
        except OSError:
            self._chain = None  # garbage is harmless; the next commit tries again, whole

    def _advance(self, live: int, switched: tuple | None) -> bool:
        """Add the generation just switched to (``switched``: base, generation, the moved
        keys by backend or None, its selection) to the counts: each file whose number of
        naming keys went from 0 starts a run (its span count +1); each that went to 0
        ends its run at the base generation. False (count whole) when the counts do not
        cover the base as their newest generation."""
        if self._chain is None or switched is None:
            return False
        base, gen, moved, after = switched
        if gen != live or not self._chain or self._chain[-1] != base:
            return False
        before = self.selection(self.manifest(base))
        if moved is None:
            moved = {
                b: moved_keys(after.get(b, {}), before.get(b, {})) for b in set(before) | set(after)
            }
        net: dict[tuple[str, str], int] = {}
        for b, keys in moved.items():
            old, new = before.get(b, {}), after.get(b, {})
            for k in keys:
                r = old.get(k)
                if r is not None:
                    f = (b, sys.intern(r.filename))
                    net[f] = net.get(f, 0) - 1
                r = new.get(k)
                if r is not None:
                    f = (b, sys.intern(r.filename))
                    net[f] = net.get(f, 0) + 1
        mult, spans = self._mult, self._spans
        if any(mult.get(b, {}).get(f, 0) + d < 0 for (b, f), d in net.items()):
            return False  # not the change the counts hold: count whole
        ended = self._ends.setdefault(base, [])
        for (b, f), d in net.items():
            if not d:
                continue
            m = mult.setdefault(b, {})
            was = m.get(f, 0)
            if was + d:
                m[f] = was + d
            else:
                del m[f]
                ended.append((b, f))
            if not was:
                s = spans.setdefault(b, {})
                s[f] = s.get(f, 0) + 1
        self._chain.append(gen)
        return True

    def _count(self, kept: list[int]) -> None:
        """The counts of :meth:`_advance` made afresh from these generations' manifests."""
        mult: dict[str, dict[str, int]] = {}
        spans: dict[str, dict[str, int]] = {}
        ends: dict[int, list[tuple[str, str]]] = {}
        prev: int | None = None
        for g in kept:
            now: dict[str, dict[str, int]] = {}
            for b, units in self.selection(self.manifest(g)).items():
                m = now.setdefault(b, {})
                for r in units.values():
                    f = sys.intern(r.filename)
                    m[f] = m.get(f, 0) + 1
            for b, m in now.items():
                s = spans.setdefault(b, {})
                for f in m.keys() - mult.get(b, {}).keys():
                    s[f] = s.get(f, 0) + 1
            if prev is not None:
                ends[prev] = [
                    (b, f) for b, m in mult.items() for f in m.keys() - now.get(b, {}).keys()
                ]
            mult, prev = now, g
        self._mult, self._spans, self._ends = mult, spans, ends
        self._chain = list(kept)

    def _forget_unit(self, backend: str, filename: str) -> None:
        sha, _, ext = filename.partition(".")
        self._contents.pop((backend, sha), None)
        self._paths.pop((backend, sha, ext), None)

    def _complete(self, gen: int) -> bool:
        """Whether a generation's manifest parses and every file it names is there."""
        try:
            manifest = self.manifest(gen)
            for b, body in manifest["backends"].items():
                for f, sha in body["index"].items():
                    if sha256(self.fs.read(self.path("generations", gen, b, f))) != sha:
                        return False
                for u in body["units"]:
                    if not self.fs.exists(self.path("units", b, f"{u['sha']}.{u['ext']}")):
                        return False
        except (OSError, ValueError, KeyError, TypeError):
            self._manifests.pop(gen, None)
            return False
        return True

    def recover(self) -> Recovered:
        """The file part of start-up repair: forget the caches; remove staging leftovers
        and temporary links and units; point ``current`` at the generation to keep live
        (see ``domtool.slave.engine``); remove newer and incomplete generations; repair
        the live files."""
        self._manifests.clear()
        self._contents.clear()
        self.previous_units.clear()
        self.staged = None
        self._chain, self._switched = None, None
        for name in self.listdir(self.path("staging")):
            self.fs.rmtree(self.path("staging", name))
        for link in ("current.tmp", UNDO):
            if self.fs.is_symlink(self.path(link)) or self.fs.exists(self.path(link)):
                self.fs.remove(self.path(link))
        for b in self.listdir(self.path("units")):
            for f in self.listdir(self.path("units", b)):
                if f.endswith(".tmp"):
                    self.fs.remove(self.path("units", b, f))
        current = self.current_generation()
        complete = [g for g in self.generations() if self._complete(g)]
        good = [g for g in complete if self.verified(g)]
        if current in complete and self.verified(current):
            live = current
        elif current in complete:
            # Switched to but never verified (a crash between switch and probes):
            # back to the last verified generation, if there is one.
            older = [g for g in good if g < current]
            live = older[-1] if older else current
        else:
            live = good[-1] if good else complete[-1] if complete else 0
        if live != current:
            if live:
                replace_symlink(self.fs, f"generations/{live}", self.path(CURRENT))
            elif self.fs.is_symlink(self.path(CURRENT)):
                self.fs.remove(self.path(CURRENT))
                self.fs.fsync_dir(self.state_dir)
        for g in self.generations():
            if g > live or g not in complete:
                self.fs.rmtree(self.path("generations", g))
                self._manifests.pop(g, None)
        return Recovered(current, live, self._repair_live(live))


def moved_keys(a: Mapping, b: Mapping) -> list:
    """The keys whose values differ between two selections (or that only one has), sorted:
    a set difference at C speed (10,000 units, a few changed)."""
    try:
        keys = {k for k, _ in a.items() ^ b.items()}
    except TypeError:  # a value that does not hash: compare one by one
        keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return sorted(keys)


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
