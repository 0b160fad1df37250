"""The slave's apply engine: stage, check, switch, reload, probe, roll back.

A host must never run a half-written or broken configuration, and one member's mistake
must never stop another member's site or zone. The engine turns a host's desired state
into a new *generation* (layout in ``domtool.slave.backend``) and makes it live only
once the daemons' own checkers accept it:

``prepare(state)``
    Each backend renders its units, given the live generation's units as ``previous``.
    Only new or changed unit files are written (content-addressed, immutable, skipped
    when present), then generation N+1 is staged under ``staging/N+1/`` (index files and
    ``manifest.json``). Each changed unit's own checks run (``{path}`` replaced by the
    unit file's absolute path), then every changed backend's ``check_all``. When checks
    fail, the culprits are found by owner: per-unit checks name themselves; a failing
    ``check_all`` is bisected by owner (halving the owners with changes, each half tried
    on top of those already accepted), so k culprits among n owners cost about
    2·k·log2(n) whole checks.
    Refused owners keep their previous units; the others go ahead. If nothing changes
    (same units by key and sha, same index bytes), nothing is written or run.

    A backend's ``units()`` may raise an exception carrying ``owners`` (and optionally
    ``errors``, each with an ``owner``), as the Apache backend's ``RenderRefused`` does:
    those owners are refused with that message and the backend renders again without
    their objects.

``commit(prepared)``
    Renames ``staging/N+1`` to ``generations/N+1`` (fsync), swaps ``current`` to it
    (symlink ``current.tmp``, rename over ``current``, fsync), runs each changed
    backend's reload commands, then its probes (retried until ``probe_timeout``). If a
    reload or a probe fails, ``current`` goes back to generation N, the daemons reload
    again and the outcome says "rolled back to generation N: <the daemon's message>".
    ``apply`` goes one step further when only some changed owners' probes failed: it
    refuses those owners and prepares and commits the others' changes once more.
    On success the generation is marked ``verified`` (an empty file in its directory,
    fsynced), then generations beyond the last ``keep`` are removed, and unit files no
    kept generation names.

``recover()``
    At start-up: removes staging leftovers and temporary files; if ``current`` is
    missing, dangling or incomplete, points it at the highest complete verified
    generation (complete: its manifest parses and its index files and units all exist);
    if it points at a generation that was switched to but never verified (a crash
    between the switch and the probes), points it back at the last verified one. Removes
    generations newer than the live one and incomplete ones. If ``current`` moved, it
    reloads every backend (a daemon may have started on the old target). If the only
    generation is unverified it stays live, and the next apply checks, reloads and probes
    it again even if nothing changed.

Rolling back the very first generation leaves no ``current`` at all ("generation 0").
Before ``current`` moves, an ``undo.tmp`` symlink to the old generation is made, so the
switch back is one rename that needs no new space on a full disk.

Also: ``current_generation()``, ``generations()``, ``manifest(gen)``, ``units(backend,
gen)`` (what a generation holds), ``verified(gen)``, ``abort(prepared)``,
``reload_all()``. Options: ``keep`` generations, ``probe_timeout``/``probe_interval``,
``check_workers`` (per-unit checks run concurrently), ``probe_workers`` (probes asked
concurrently: a round of 1,000 new vhosts and zones is 2,000 probes). Public calls are serialised:
a second concurrent call raises :class:`EngineBusy`.

Commands run only through the process seam with argv lists. The only substitution the
engine makes is ``{path}``, always an absolute path under the (absolute) state
directory, so no argument the engine builds starts with ``-``. All file operations go
through the file system seam, so crashes and full disks are tested at every step
(``tests/slave/test_engine_crash.py``). The engine is synchronous; the agent runs it in
a thread and serialises calls (one prepare/commit at a time).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Protocol

import attrs

from domtool.model import DesiredState
from domtool.slave.backend import Backend, Command, Probe, Unit
from domtool.slave.seams import (
    Clock,
    FileSystem,
    ProcessRunner,
    Result,
    makedirs,
    replace_symlink,
)
from domtool.states import without_owners

MANIFEST = "manifest.json"
UNDO = "undo.tmp"  # in state_dir during a commit: a symlink to the generation before
VERIFIED = "verified"  # in a generation directory: it reloaded and answered its probes
FORMAT = 1
KEEP = 5
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_EXT = re.compile(r"[a-z0-9]{1,16}")
_INDEX_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_GEN = re.compile(r"[1-9][0-9]{0,17}")
_LIVE_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,254}")
LIVE = "live"  # state_dir/live/<backend>/<name>: stable copies of live units
# More changed units than this in one backend whose check_all covers units: check_all only.
UNIT_CHECKS_MAX = 8
SWEEP_EVERY = 32  # commits between whole sweeps of the unit directories


class EngineError(Exception):
    """The apply could not be carried out; each subclass says what it left live."""


class DiskFull(EngineError):
    """Disk full (ENOSPC): the apply was abandoned, staging removed, nothing live changed."""


class StalePrepare(EngineError):
    """The live generation moved since this prepare; prepare again."""


class RollbackFailed(EngineError):
    """A reload or probe failed and switching back failed too; the new generation stays
    live until ``recover()`` (which goes back to the last verified generation)."""


class CheckFailed(EngineError):
    """The staged configuration fails its checker even with no member change applied."""


class BackendFailed(EngineError):
    """A backend could not render the state at all (not attributable to an owner)."""


class EngineBusy(EngineError):
    """Another call is running on this engine; the agent must serialise them."""


def _exclusive(method):
    """One public call at a time (re-entrant within the calling thread)."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if not self._busy.acquire(blocking=False):
            raise EngineBusy(f"{method.__name__}: another call is running on this engine")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy.release()

    return call


class Prober(Protocol):
    """Checks one probe against the running daemon: True, or False / a reason string."""

    def probe(self, probe: Probe) -> bool | str: ...


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


@attrs.frozen
class OwnerResult:
    """What happened to one member's changes: "applied", "refused" or "rolled back"."""

    owner: str
    status: str
    message: str = ""


@attrs.frozen
class Prepared:
    """A staged generation (``generation`` is None when nothing changed)."""

    base: int
    generation: int | None
    owners: tuple[OwnerResult, ...]
    changed_backends: tuple[str, ...] = ()
    probes: tuple[Probe, ...] = ()
    message: str = ""
    manifest: Mapping = attrs.field(factory=dict, eq=False, repr=False)
    selection: Mapping = attrs.field(factory=dict, eq=False, repr=False)
    # backend -> the unit keys to reload alone (``reload_units``), when that is enough
    narrow: Mapping = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def changed(self) -> bool:
        return self.generation is not None

    @property
    def refused(self) -> dict[str, str]:
        return {o.owner: o.message for o in self.owners if o.status == "refused"}

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(o.owner for o in self.owners if o.status == "applied")


@attrs.frozen
class Outcome:
    """The result of a commit: "applied", "unchanged" or "rolled back"."""

    status: str
    generation: int
    previous: int
    message: str
    owners: tuple[OwnerResult, ...] = ()
    # On a rollback after probes failed: each owner whose probe failed, with its message.
    culprits: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def refused(self) -> dict[str, str]:
        return {o.owner: o.message for o in self.owners if o.status == "refused"}

    @property
    def applied(self) -> tuple[str, ...]:
        return tuple(o.owner for o in self.owners if o.status == "applied")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _PreviousUnits(Mapping):
    """A generation's units of one backend, read from disk only when asked for."""

    def __init__(self, engine: Engine, backend: str, refs: Mapping[str, UnitRef]):
        self._engine, self._backend, self._refs = engine, backend, refs
        self._made = engine._previous_units.setdefault(backend, {})  # ref -> Unit

    def __getitem__(self, key: str) -> Unit:
        ref = self._refs[key]
        unit = self._made.get(ref)
        if unit is None:
            content = self._engine._unit_content(self._backend, ref)
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


Selection = dict[str, dict[str, UnitRef]]  # backend -> key -> unit


@attrs.define
class _Plan:
    """Working state of one prepare."""

    base: int
    current: dict  # the live manifest (or an empty one)
    previous: Selection
    proposed: Selection
    units: dict[str, dict[str, Unit]]  # backend -> key -> rendered unit
    changes: dict[str, list[tuple[str, str]]]  # owner -> [(backend, key)]
    refused: dict[str, str]
    carried: dict[str, dict[str, bytes]]  # backends not in the registry: their index files
    reverify: bool = False  # the live generation was never verified: check and reload all
    covered: set = attrs.field(factory=set)  # backends whose unit checks check_all does
    bodies: dict = attrs.field(factory=dict)  # frozenset(owners) -> _body() of them


class Engine:
    """Applies desired states to one host's daemons (see the module docstring)."""

    def __init__(
        self,
        state_dir: str,
        backends: Mapping[str, Backend],
        fs: FileSystem,
        runner: ProcessRunner,
        clock: Clock,
        prober: Prober | None = None,
        *,
        keep: int = KEEP,
        probe_timeout: float = 10.0,
        probe_interval: float = 0.1,
        check_workers: int = 1,
        probe_workers: int = 1,
    ):
        state_dir = str(state_dir).rstrip("/")
        if not state_dir.startswith("/") or "\0" in state_dir:
            raise ValueError(f"state_dir must be an absolute path, not {state_dir!r}")
        for name, backend in backends.items():
            if not _NAME.fullmatch(name) or getattr(backend, "name", name) != name:
                raise ValueError(f"bad backend registry entry {name!r}")
        if keep < 2:
            raise ValueError("keep at least 2 generations (the live one and the one before)")
        self.state_dir = state_dir
        self.backends = dict(backends)
        self.fs, self.runner, self.clock, self.prober = fs, runner, clock, prober
        self.keep, self.probe_timeout, self.probe_interval = keep, probe_timeout, probe_interval
        self.check_workers = check_workers  # units checked at once (the runner is threadsafe)
        self.probe_workers = probe_workers  # probes asked at once (the prober is threadsafe)
        self._manifests: dict[int, dict] = {}
        self._contents: dict[tuple[str, str], bytes] = {}
        self._previous_units: dict[str, dict[UnitRef, Unit]] = {}  # live units, as Units
        # backend -> (id(unit) -> unit, key -> ref, key -> unit) of its latest render: the
        # units a backend's memo returns again need no validation or hash (see _refs)
        self._rendered: dict[str, tuple[dict[int, Unit], dict, dict]] = {}
        self._staged: tuple | None = None  # (generation, body, durable) in staging now
        self._selections: dict[int, tuple[dict, Selection]] = {}
        self._paths: dict[tuple[str, str], PurePosixPath] = {}
        self._files: dict[int, tuple[dict, dict[str, frozenset[str]]]] = {}
        self.recovery = ""  # what the last recover() did, if anything
        self._commits = 0  # commits garbage-collected since start (full sweep every Nth)
        self._written: dict[str, set[str]] = {}  # unit files written since the last GC
        self._exts: set[str] = set()  # unit extensions already validated
        # One manifest entry (dict) per distinct unit, shared by every generation's
        # manifest and selection that names it, with its JSON text: at 10,000 domains a
        # manifest is 30,000 entries, so each generation building, comparing, dumping and
        # caching its own copies cost ~0.1 s and ~20 MB per cached manifest.
        self._entries: dict[UnitRef, tuple[dict, UnitRef]] = {}
        self._entry_text: dict[int, tuple[dict, str]] = {}  # id(entry) -> (entry, JSON)
        # backend -> its latest (units, paths, live paths, sorted keys, entries, index
        # files, manifest part, key -> position) (see _backend_body)
        self._bodies: dict[str, tuple] = {}
        self._list_text: dict[int, tuple[list, str]] = {}  # id(units list) -> (it, JSON)
        self._busy = threading.RLock()

    # -- paths ----------------------------------------------------------------

    def _p(self, *parts: str | int) -> str:
        return "/".join([self.state_dir, *map(str, parts)])

    def unit_path(self, backend: str, ref: UnitRef) -> str:
        return self._p("units", backend, ref.filename)

    # -- reading the live state ------------------------------------------------

    def current_generation(self) -> int:
        """The live generation's number, 0 when there is none."""
        try:
            target = self.fs.readlink(self._p("current"))
        except OSError:
            return 0
        m = re.fullmatch(r"generations/([1-9][0-9]{0,17})", target)
        return int(m.group(1)) if m else 0

    def _manifest(self, gen: int) -> dict:
        if gen == 0:
            return {"format": FORMAT, "generation": 0, "backends": {}}
        cached = self._manifests.get(gen)
        if cached is None:
            raw = self.fs.read(self._p("generations", gen, MANIFEST))
            cached = json.loads(raw)
            if cached.get("format") != FORMAT or cached.get("generation") != gen:
                raise ValueError(f"generation {gen}: manifest format or number mismatch")
            for body in cached.get("backends", {}).values():
                if isinstance(body, dict) and isinstance(body.get("units"), list):
                    body["units"] = [self._intern(u) for u in body["units"]]
            self._manifests[gen] = cached
        return cached

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
        return got[0] if got[0] == u else u

    def _register(self, entry: dict, ref: UnitRef) -> dict:
        self._entries[ref] = (entry, ref)
        self._entry_text[id(entry)] = (entry, _dumps(entry))
        return entry

    def _entry(self, ref: UnitRef) -> dict:
        """The manifest entry of ``ref`` (shared; do not mutate)."""
        got = self._entries.get(ref)
        if got is not None:
            return got[0]
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
        self._entries = {i: e for i, e in self._entries.items() if id(e[0]) in named}
        self._entry_text = {i: t for i, t in self._entry_text.items() if i in named}

    def _dump(self, manifest: dict) -> bytes:
        """``_dump(manifest)``, with each shared entry's JSON text made once."""
        texts, lists = self._entry_text, self._list_text

        def enc(v: object) -> str:
            if isinstance(v, dict):
                known = texts.get(id(v))
                if known is not None and known[0] is v:
                    return known[1]
                return "{" + ",".join(f"{_dumps(k)}:{enc(v[k])}" for k in sorted(v)) + "}"
            if isinstance(v, list):
                known = lists.get(id(v))
                if known is not None and known[0] is v:  # a backend's unchanged units
                    return known[1]
                try:  # the common case: every item a shared entry (which the registry
                    # keeps alive, so an id found there is that very object)
                    text = "[" + ",".join([texts[id(x)][1] for x in v]) + "]"
                except KeyError:
                    return "[" + ",".join(map(enc, v)) + "]"
                if len(v) > 100:
                    if len(lists) > 4 * len(self.backends) + 4:
                        lists.clear()
                    lists[id(v)] = (v, text)
                return text
            return _dumps(v)

        return (enc(manifest) + "\n").encode()

    def manifest(self, gen: int | None = None) -> dict:
        """A generation's manifest (the live one by default)."""
        return self._manifest(self.current_generation() if gen is None else gen)

    def _selection(self, manifest: dict) -> Selection:
        """The units a manifest names, by backend and key (cached per generation; do not
        mutate the result)."""
        gen = manifest["generation"]
        cached = self._selections.get(gen)
        if cached is None or cached[0] is not manifest:
            cached = self._selections[gen] = (manifest, self._read_selection(manifest))
        return cached[1]

    def _unit_files(self, manifest: dict) -> dict[str, frozenset[str]]:
        """The unit file names a manifest needs, by backend (cached per generation)."""
        gen = manifest["generation"]
        cached = self._files.get(gen)
        if cached is None or cached[0] is not manifest:
            sel = self._selection(manifest)
            files = {b: frozenset(r.filename for r in units.values()) for b, units in sel.items()}
            cached = self._files[gen] = (manifest, files)
        return cached[1]

    def units(self, backend: str, gen: int | None = None) -> Mapping[str, Unit]:
        """A generation's units of one backend by key (the live one by default), read
        from disk when asked for: what a member's domain became on this host."""
        manifest = self.manifest(gen)
        return _PreviousUnits(self, backend, self._selection(manifest).get(backend, {}))

    def _read_selection(self, manifest: dict) -> Selection:
        out: Selection = {}
        for b, body in manifest["backends"].items():
            refs = out[b] = {}
            for u in body["units"]:
                ref = UnitRef(u["key"], u["owner"], u["sha"], u["ext"], u.get("live"))
                got = self._entries.get(ref)
                # the same UnitRef as every other generation's, when the entry is shared
                refs[u["key"]] = got[1] if got is not None and got[0] is u else ref
        return out

    def _unit_content(self, backend: str, ref: UnitRef) -> bytes:
        got = self._contents.get((backend, ref.sha))
        if got is None:
            got = self.fs.read(self.unit_path(backend, ref))
            self._contents[(backend, ref.sha)] = got
        return got

    # -- prepare -----------------------------------------------------------------

    @_exclusive
    def prepare(self, state: DesiredState, refuse: Mapping[str, str] | None = None) -> Prepared:
        """Render, stage and check the next generation (see the module docstring).
        Owners in ``refuse`` are refused up front with the given message."""
        plan = self._plan(state, dict(refuse or {}))
        everyone = set(plan.changes) - set(plan.refused)
        gen = self._next_generation(plan.base)
        body, indexes = self._body(plan, everyone)
        if body == self._strip(plan.current) and not plan.reverify:
            return self._unchanged(plan)
        try:
            self._write_units(plan, everyone)
            self._unit_checks(plan, everyone)
            accepted, message = self._check_and_bisect(plan, gen, everyone - set(plan.refused))
            body, indexes = self._body(plan, accepted)
            if body == self._strip(plan.current) and not plan.reverify:
                self._remove_staging(gen)
                return self._unchanged(plan, message)
            self._stage(gen, body, indexes, final=True)
            changed = tuple(
                b
                for b in body["backends"]
                if plan.reverify or body["backends"][b] != plan.current["backends"].get(b)
            )
            kept = without_owners(state, set(plan.refused)) if plan.refused else state
            probes = self._select_probes(plan, changed, kept, accepted)
            if probes and self.prober is None:
                raise EngineError("backends named probes but the engine has no prober")
        except OSError as exc:
            self._remove_staging(gen)
            raise self._fs_error(exc, "staging") from exc
        except Exception:
            # (A simulated Crash is a BaseException: it passes through untouched.)
            self._remove_staging(gen)
            raise
        manifest = {"format": FORMAT, "generation": gen, **body}
        selection = plan.bodies[frozenset(accepted)][2]
        return Prepared(
            base=plan.base,
            generation=gen,
            owners=self._owner_results(plan, accepted),
            changed_backends=changed,
            probes=probes,
            message=message,
            manifest=manifest,
            selection=selection,
            narrow=self._narrow(plan, body, selection),
        )

    def _plan(self, state: DesiredState, refused: dict[str, str]) -> _Plan:
        base = self.current_generation()
        current = self._manifest(base)
        previous = self._selection(current)
        now = int(self.clock.time())
        proposed: Selection = {}
        units: dict[str, dict[str, Unit]] = {}
        for name, backend in self.backends.items():
            prev = previous.get(name, {})
            rendered = self._render(
                name, backend, state, _PreviousUnits(self, name, prev), now, refused
            )
            proposed[name], units[name] = self._refs(name, rendered, prev)
        carried = {}
        for name in previous:
            if name not in self.backends:
                proposed[name] = previous[name]
                carried[name] = {
                    f: self.fs.read(self._p("generations", base, name, f))
                    for f in current["backends"][name]["index"]
                }
        changes: dict[str, list[tuple[str, str]]] = {}
        for name in self.backends:
            prev, new = previous.get(name, {}), proposed[name]
            try:  # (C speed: 10,000 units, a few changed)
                keys = {k for k, _ in prev.items() ^ new.items()}
            except TypeError:  # a manifest entry that is not a plain value
                keys = prev.keys() | new.keys()
            for key in sorted(keys):
                a, b = prev.get(key), new.get(key)
                if a is not b and a != b:
                    owner = b.owner if b is not None else a.owner
                    changes.setdefault(owner, []).append((name, key))
        for owner_changes in changes.values():
            owner_changes.sort()  # deterministic order of writes and checks
        return _Plan(
            base,
            current,
            previous,
            proposed,
            units,
            changes,
            refused,
            carried,
            reverify=not self.verified(base),
        )

    def _refs(
        self, name: str, rendered: list[Unit], prev: Mapping[str, UnitRef]
    ) -> tuple[dict[str, UnitRef], dict[str, Unit]]:
        """The refs (by key) of a backend's rendered units, and the units by key.

        A backend's memo hands back the very unit objects it rendered before: those were
        validated and hashed then, so only the units not in the backend's previous render
        are looked at (10,000 units, one changed: one hashed, not 10,000)."""
        last = self._rendered.get(name)
        by_id = dict(zip(map(id, rendered), rendered, strict=True))
        if last is None or len(by_id) != len(rendered):  # first time, or a unit twice
            refs, by_key = self._check_units(name, rendered, prev, {}, {})
        else:
            old_ids, old_refs, old_keys = last
            refs, by_key = dict(old_refs), dict(old_keys)
            for i in old_ids.keys() - by_id.keys():  # no longer rendered
                key = old_ids[i].key
                del refs[key], by_key[key]
            fresh = [by_id[i] for i in by_id.keys() - old_ids.keys()]
            if fresh:
                try:
                    fresh.sort(key=lambda u: u.key)
                except TypeError:
                    pass  # a bad key: refused below
                refs, by_key = self._check_units(name, fresh, prev, refs, by_key)
        self._rendered[name] = (by_id, refs, by_key)
        return refs, by_key

    def _check_units(
        self,
        name: str,
        rendered: list[Unit],
        prev: Mapping[str, UnitRef],
        refs: dict[str, UnitRef],
        by_key: dict[str, Unit],
    ) -> tuple[dict[str, UnitRef], dict[str, Unit]]:
        """Validate and hash these units, adding them to ``refs`` and ``by_key``."""
        for u in rendered:
            if (
                not isinstance(u.key, str)
                or not isinstance(u.content, bytes)
                or not isinstance(u.ext, str)
                or (u.ext not in self._exts and not _EXT.fullmatch(u.ext))
                or not isinstance(u.owner, str)
                or not u.owner
            ):
                raise BackendFailed(f"backend {name}: bad unit {u.key!r} ({u.ext!r}, {u.owner!r})")
            if u.key in refs:
                raise BackendFailed(f"backend {name} rendered unit {u.key!r} twice")
            live = getattr(u, "live", None)
            if live is not None and (
                not isinstance(live, str) or not _LIVE_NAME.fullmatch(live) or live.endswith(".tmp")
            ):
                raise BackendFailed(f"backend {name}: bad live file name {live!r}")
            self._exts.add(u.ext)
            sha = sha256(u.content)
            old = prev.get(u.key)
            if old is not None and (old.sha, old.owner, old.ext, old.live) == (
                sha,
                u.owner,
                u.ext,
                live,
            ):
                refs[u.key] = old  # the common case: unchanged, no new object
            else:
                refs[u.key] = UnitRef(u.key, u.owner, sha, u.ext, live)
            by_key[u.key] = u
        return refs, by_key

    def _render(self, name, backend, state, previous, now, refused) -> list[Unit]:
        """``backend.units``; when it refuses some owners (an exception with ``owners``),
        those are refused and it renders again without their objects."""
        excluded: set[str] = set()
        for _ in range(8):
            todo = without_owners(state, excluded) if excluded else state
            try:
                return list(backend.units(todo, previous, now))
            except Exception as exc:
                owners = getattr(exc, "owners", None) or ()
                new = {o for o in owners if isinstance(o, str) and o} - excluded
                if not new:
                    raise BackendFailed(f"backend {name} could not render: {exc}") from exc
                for owner in sorted(new):
                    mine = [
                        str(e)
                        for e in getattr(exc, "errors", ())
                        if getattr(e, "owner", None) == owner
                    ]
                    msg = f"{name}: " + ("; ".join(mine) if mine else str(exc))
                    refused[owner] = f"{refused[owner]}; {msg}" if owner in refused else msg
                excluded |= new
        raise BackendFailed(f"backend {name} kept refusing owners: {sorted(excluded)}")

    def _select(self, plan: _Plan, owners: set[str]) -> Selection:
        sel = {b: dict(units) for b, units in plan.previous.items() if b in plan.proposed}
        for b in plan.proposed:
            sel.setdefault(b, {})
        for owner in owners:
            for b, key in plan.changes.get(owner, ()):
                new = plan.proposed[b].get(key)
                if new is None:
                    sel[b].pop(key, None)
                else:
                    sel[b][key] = new
        return sel

    def _body(self, plan: _Plan, owners: set[str]) -> tuple[dict, dict[str, dict[str, bytes]]]:
        """The manifest (without its number) and the index files for these owners' changes."""
        memo = frozenset(owners)
        if memo not in plan.bodies:
            plan.bodies[memo] = self._make_body(plan, owners)
        body, indexes, _ = plan.bodies[memo]
        return body, indexes

    def _path(self, backend: str, ref: UnitRef) -> PurePosixPath:
        path = self._paths.get((backend, ref.sha, ref.ext))
        if path is None:
            path = self._paths[(backend, ref.sha, ref.ext)] = PurePosixPath(
                self.unit_path(backend, ref)
            )
        return path

    def _live_path(self, backend: str, name: str) -> PurePosixPath:
        path = self._paths.get((backend, LIVE, name))
        if path is None:
            path = self._paths[(backend, LIVE, name)] = PurePosixPath(self._p(LIVE, backend, name))
        return path

    def _make_body(self, plan: _Plan, owners: set[str]) -> tuple[dict, dict, Selection]:
        sel = self._select(plan, owners)
        backends, indexes = {}, {}
        for b in sorted(sel):
            units = sel[b]
            if b in plan.carried:
                files = plan.carried[b]
                indexes[b] = files
                backends[b] = {
                    "units": [self._entry(units[k]) for k in sorted(units)],
                    "index": {f: sha256(data) for f, data in sorted(files.items())},
                }
            else:
                indexes[b], backends[b] = self._backend_body(b, units)
        return {"backends": backends}, indexes, sel

    def _backend_body(self, b: str, units: dict[str, UnitRef]) -> tuple[dict, dict]:
        """One backend's index files and manifest part for these units. The latest one
        is kept: a few changed units update it instead of building the paths and entries
        of 10,000 units again, and for a backend with ``pure_index`` (its index files
        depend on nothing but the units: its config is frozen) the same units (a backend
        the change does not touch) give the same objects back at once. Otherwise its
        index() runs again (its files name every unit)."""
        last = self._bodies.get(b)
        backend = self.backends[b]
        same = last is not None and last[0] == units  # (identical refs compare at once)
        if same and getattr(backend, "pure_index", False):
            return last[5], last[6]
        with_live = getattr(backend, "live_files", False)
        if same:
            paths, live, keys, entries = last[1], last[2], last[3], last[4]
        elif last is None:
            paths = {k: self._path(b, r) for k, r in units.items()}
            live = {k: self._live_path(b, r.live) for k, r in units.items() if r.live is not None}
            keys = sorted(units)
            entries = [self._entry(units[k]) for k in keys]
        else:
            old, paths, live, keys, entries = (
                dict(x) if isinstance(x, dict) else x for x in last[:5]
            )
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
                paths[k] = self._path(b, r)
                if r.live is not None:
                    live[k] = self._live_path(b, r.live)
                else:
                    live.pop(k, None)
            if units.keys() == old.keys():
                entries = list(entries)
                pos = last[7]
                for k in moved:
                    entries[pos[k]] = self._entry(units[k])
            else:
                keys = sorted(units)
                entries = [self._entry(units[k]) for k in keys]
        try:
            files = dict(backend.index(paths, live=live) if with_live else backend.index(paths))
        except Exception as exc:
            raise BackendFailed(f"backend {b} could not render its index: {exc}") from exc
        for f in files:
            if not _INDEX_NAME.fullmatch(f) or f == MANIFEST or f.endswith(".tmp"):
                raise BackendFailed(f"backend {b}: bad index file name {f!r}")
        body = {"units": entries, "index": {f: sha256(data) for f, data in sorted(files.items())}}
        pos = (
            last[7] if last is not None and keys is last[3] else {k: i for i, k in enumerate(keys)}
        )
        self._bodies[b] = (dict(units), paths, live, keys, entries, files, body, pos)
        return files, body

    @staticmethod
    def _strip(manifest: dict) -> dict:
        return {"backends": manifest["backends"]}

    def _narrow(self, plan: _Plan, body: dict, sel: Selection) -> dict[str, tuple[str, ...]]:
        """The backends whose change the daemon can take unit by unit: the index files it
        reads are unchanged and every changed unit has a live file (so the daemon reads
        the new content at the path it already knows). Backend -> the changed keys."""
        out: dict[str, tuple[str, ...]] = {}
        if plan.reverify:
            return out
        for b, new in body["backends"].items():
            backend = self.backends.get(b)
            old = plan.current["backends"].get(b)
            if backend is None or old is None or new == old:
                continue
            watched = tuple(getattr(backend, "live_index_files", ()) or ())
            if not watched or not callable(getattr(backend, "reload_units", None)):
                continue
            if any(new["index"].get(f) != old["index"].get(f) for f in watched):
                continue
            before, after = plan.previous.get(b, {}), sel.get(b, {})
            if before.keys() != after.keys():
                continue
            keys = tuple(k for k in _moved(after, before) if after[k] != before[k])
            if keys and all(after[k].live is not None for k in keys):
                out[b] = keys
        return out

    def _unchanged(self, plan: _Plan, message: str = "") -> Prepared:
        return Prepared(
            base=plan.base,
            generation=None,
            owners=self._owner_results(plan, set()),
            message=message or f"unchanged at generation {plan.base}",
        )

    def _select_probes(
        self, plan: _Plan, changed: tuple[str, ...], kept: DesiredState, accepted: set[str]
    ) -> tuple[Probe, ...]:
        """The probes worth running after this switch: those of the owners whose change
        goes live (all of them when re-verifying), and at least one per changed backend
        so the daemon is shown to answer. Probing every unit of a host on every change
        would grow with unrelated members (seconds at 10,000 vhosts)."""
        moved = set(plan.changes) & accepted
        out: list[Probe] = []
        for b in changed:
            if b not in self.backends:
                continue
            candidates = [p for p in self.backends[b].probes(kept) if p.owner not in plan.refused]
            chosen = [p for p in candidates if plan.reverify or p.owner in moved]
            out.extend(chosen or candidates[:1])
        return tuple(out)

    def _owner_results(self, plan: _Plan, accepted: set[str]) -> tuple[OwnerResult, ...]:
        out = []
        for owner in sorted(set(plan.changes) | set(plan.refused)):
            if owner in plan.refused:
                out.append(OwnerResult(owner, "refused", plan.refused[owner]))
            elif owner in accepted:
                out.append(OwnerResult(owner, "applied"))
        return tuple(out)

    def _next_generation(self, base: int) -> int:
        names = self._listdir(self._p("generations"))
        nums = [int(n) for n in names if _GEN.fullmatch(n)]
        return max([base, *nums]) + 1

    def _listdir(self, path: str) -> list[str]:
        try:
            return self.fs.listdir(path)
        except FileNotFoundError:
            return []

    def _write_units(self, plan: _Plan, owners: set[str]) -> None:
        """Write the changed units of these owners that are not on disk yet: every
        temporary file, then all their fsyncs (in parallel on a real disk), then the
        renames, then one fsync of each backend's unit directory."""
        todo: dict[str, tuple[str, UnitRef, bytes]] = {}
        for owner in sorted(owners):
            for b, key in plan.changes[owner]:
                ref = plan.proposed[b].get(key)
                if ref is None:
                    continue
                path = self.unit_path(b, ref)
                if path in todo or (self.fs.exists(path) and sha256(self.fs.read(path)) == ref.sha):
                    continue
                todo[path] = (b, ref, plan.units[b][key].content)
        touched = sorted({b for b, _, _ in todo.values()})
        for b in touched:
            makedirs(self.fs, self._p("units", b))
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
            self.fs.fsync_dir(self._p("units", b))

    def _run(self, cmd: Command) -> Result:
        return self.runner.run(cmd)

    def _unit_checks(self, plan: _Plan, owners: set[str]) -> None:
        """Each changed unit's own checks (``check_workers`` units at a time); a failing
        one refuses its owner with the checker's message."""
        jobs = []
        for owner in sorted(owners):
            for b, key in plan.changes[owner]:
                ref = plan.proposed[b].get(key)
                if ref is not None and plan.units[b][key].checks:
                    jobs.append((owner, b, key, self.unit_path(b, ref)))
        # Many changed units of a backend whose whole check validates every unit anyway
        # (named-checkconf -z) and will run: that one check replaces theirs (a round of 200
        # new zones is one named-checkconf -z, not 200 named-checkzone); culprits are found
        # by bisection. Such a backend's whole check then always runs.
        body, _ = self._body(plan, owners)
        narrow = self._narrow(plan, body, plan.bodies[frozenset(owners)][2])
        count: dict[str, int] = {}
        for job in jobs:
            count[job[1]] = count.get(job[1], 0) + 1
        for b, n in count.items():
            if (
                n > UNIT_CHECKS_MAX
                and b not in narrow
                and getattr(self.backends.get(b), "check_all_covers_units", False)
            ):
                plan.covered.add(b)
        jobs = [job for job in jobs if job[1] not in plan.covered]

        def check(job) -> str | None:
            owner, b, key, path = job
            if owner in plan.refused:
                return None  # already refused (sequential runs stop at the first failure)
            for cmd in plan.units[b][key].checks:
                argv = tuple(a.replace("{path}", path) for a in cmd.argv)
                result = self._run(attrs.evolve(cmd, argv=argv))
                if not result.ok:
                    said = result.output() or f"exit status {result.returncode}"
                    return f"{b} {key}: {self._readable(plan, said)}"
            return None

        if self.check_workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=self.check_workers) as pool:
                results = list(pool.map(check, jobs))
            for job, failed in zip(jobs, results, strict=True):
                if failed and job[0] not in plan.refused:
                    plan.refused[job[0]] = failed
        else:
            for job in jobs:
                failed = check(job)
                if failed:
                    plan.refused[job[0]] = failed

    def _readable(self, plan: _Plan, text: str) -> str:
        """Checker output with each unit file's path replaced by its key (what a member
        knows: "zone:example.org", not a content hash)."""
        unit = re.compile(re.escape(self.state_dir) + r"/units/([a-z0-9_-]+)/([0-9a-f]{64})\.\w+")

        def key(m: re.Match) -> str:
            b, sha = m.group(1), m.group(2)
            for sel in (plan.proposed, plan.previous):
                for ref in sel.get(b, {}).values():
                    if ref.sha == sha:
                        return ref.key
            return m.group(0)

        return unit.sub(key, text)

    def _check_staged(self, plan: _Plan, gen: int, owners: set[str]) -> str | None:
        """Stage these owners' changes as ``gen`` and run check_all of each changed
        backend; None if all pass, else the failing checker's message."""
        body, indexes = self._body(plan, owners)
        narrow = self._narrow(plan, body, plan.bodies[frozenset(owners)][2])
        todo = [
            b
            for b in body["backends"]
            if b in self.backends
            and (b not in narrow or b in plan.covered)
            and (plan.reverify or body["backends"][b] != plan.current["backends"].get(b))
        ]
        if not todo:
            return None  # only units changed, each passed its own check
        self._stage(gen, body, indexes, final=False)
        gen_dir = PurePosixPath(self._p("staging", gen))
        for b in todo:
            for cmd in self.backends[b].check_all(gen_dir):
                result = self._run(cmd)
                if not result.ok:
                    said = result.output() or f"exit status {result.returncode}"
                    return f"{b}: {self._readable(plan, said)}"
        return None

    def _check_and_bisect(self, plan: _Plan, gen: int, owners: set[str]) -> tuple[set[str], str]:
        """A largest set of owners whose changes pass check_all together, found by
        halving: a group that fails on top of the owners accepted so far is split in two
        and each half tried in turn (in owner-name order); an owner that fails alone on
        top of them is refused. With k culprits among n owners this runs about
        2·k·log2(n) checks, not n. A refused owner whose change passes on the live
        generation alone is told it conflicts with others in the batch."""
        failure = self._check_staged(plan, gen, owners)
        if failure is None:
            return owners, ""
        # Bisection starts from "no member change": that must pass (it differs from the
        # live generation when an index or the backend set changed, or on re-verify).
        baseline = failure if not owners else None
        if owners and (plan.reverify or self._body(plan, set())[0] != self._strip(plan.current)):
            baseline = self._check_staged(plan, gen, set())
        if baseline is not None:
            raise CheckFailed(
                "the configuration fails its check even without any member's change "
                f"(a site or backend problem; nothing was applied): {baseline}"
            )
        accepted: set[str] = set()
        failures: dict[str, str] = {}

        def settle(group: list[str], known: str | None) -> None:
            failed = (
                known if known is not None else self._check_staged(plan, gen, accepted | set(group))
            )
            if failed is None:
                accepted.update(group)
            elif len(group) == 1:
                failures[group[0]] = failed
            else:
                half = len(group) // 2
                before = len(accepted)
                settle(group[:half], None)
                # If the whole first half went in, the second half on top is exactly the
                # group that failed: no need to check it again.
                settle(group[half:], failed if len(accepted) == before + half else None)

        settle(sorted(owners), failure)
        for owner, failed in sorted(failures.items()):
            alone = self._check_staged(plan, gen, {owner}) if accepted else failed
            if alone is None:
                plan.refused[owner] = f"conflicts with other changes in this batch: {failed}"
            else:
                plan.refused[owner] = alone
        return accepted, ""

    def _stage(
        self, gen: int, body: dict, indexes: dict[str, dict[str, bytes]], *, final: bool
    ) -> None:
        """Write ``staging/<gen>/``: each backend's index files, enough for its checker.
        ``final`` makes it durable (fsyncs) and adds the manifest; bisection attempts
        skip both, since staging is never live and is renamed only once final."""
        d = self._p("staging", gen)
        if self._staged is None or self._staged[:2] != (gen, body):
            self._staged = None
            makedirs(self.fs, self._p("staging"))
            if self.fs.is_dir(d):
                self.fs.rmtree(d)
            self.fs.mkdir(d)
            for b in sorted(indexes):
                self.fs.mkdir(f"{d}/{b}")
                for f, data in sorted(indexes[b].items()):
                    self.fs.write(f"{d}/{b}/{f}", data)
            self._staged = (gen, body, False)
        if final and not self._staged[2]:
            for b in sorted(indexes):
                for f in sorted(indexes[b]):
                    self.fs.fsync(f"{d}/{b}/{f}")
                self.fs.fsync_dir(f"{d}/{b}")
            manifest = {"format": FORMAT, "generation": gen, **body}
            self.fs.write(f"{d}/{MANIFEST}", self._dump(manifest))
            self.fs.fsync(f"{d}/{MANIFEST}")
            self.fs.fsync_dir(d)
            self._staged = (gen, body, True)

    def _remove_staging(self, gen: int) -> None:
        self._staged = None
        d = self._p("staging", gen)
        try:
            if self.fs.is_dir(d):
                self.fs.rmtree(d)
        except OSError:
            pass
        self._manifests.pop(gen, None)

    @staticmethod
    def _fs_error(exc: OSError, doing: str) -> EngineError:
        where = f" at {exc.filename}" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return DiskFull(
                f"disk full (ENOSPC){where} while {doing}: the apply was abandoned; "
                "the live configuration is unchanged"
            )
        return EngineError(
            f"file system error{where} while {doing}: {exc.strerror or exc}; "
            "the live configuration is unchanged"
        )

    @_exclusive
    def abort(self, prepared: Prepared) -> None:
        """Drop a prepared generation that will not be committed."""
        if prepared.generation is not None:
            self._remove_staging(prepared.generation)

    # -- commit --------------------------------------------------------------------

    @_exclusive
    def commit(self, prepared: Prepared) -> Outcome:
        """Make the prepared generation live; roll back if a reload or probe fails."""
        base = prepared.base
        if not prepared.changed:
            return Outcome("unchanged", base, base, prepared.message, prepared.owners)
        if self.current_generation() != base:
            raise StalePrepare(
                f"generation {self.current_generation()} is live, this was prepared on {base}"
            )
        gen = prepared.generation
        try:
            makedirs(self.fs, self._p("generations"))
            self.fs.rename(self._p("staging", gen), self._p("generations", gen))
            self._staged = None
            self.fs.fsync_dir(self._p("generations"))
            manifest = self._manifests[gen] = dict(prepared.manifest)
            self._selections[gen] = (manifest, prepared.selection)
            if base:  # how to undo, made before the switch (certbot's reverter idea)
                if self.fs.is_symlink(self._p(UNDO)):
                    self.fs.remove(self._p(UNDO))
                self.fs.symlink(f"generations/{base}", self._p(UNDO))
            replace_symlink(self.fs, f"generations/{gen}", self._p("current"))
        except OSError as exc:
            self._switch_back(base, gen)
            raise self._fs_error(exc, "switching generations") from exc
        old_sel = self._selection(self._manifest(base))
        try:
            self._sync_live(prepared.selection, old_sel, prepared.changed_backends)
        except OSError as exc:
            self._switch_back(base, gen)
            try:
                self._sync_live(old_sel, prepared.selection, prepared.changed_backends)
            except OSError:
                pass  # recover() at the next start repairs the live files
            raise self._fs_error(exc, "writing live files") from exc

        culprits: dict[str, str] = {}
        try:
            failure = self._reload(prepared.changed_backends, prepared.narrow)
            if failure is None:
                probed = self._probe(prepared.probes)
                if probed is not None:
                    failure, culprits = probed
        except Exception as exc:  # a backend, runner or prober bug: still roll back
            failure = f"{type(exc).__name__}: {exc}"
        if failure is not None:
            return self._rollback(prepared, failure, culprits)
        try:
            self._mark_verified(gen)
        except OSError as exc:
            try:
                self._switch_back(base, gen)
            except OSError as again:
                raise RollbackFailed(
                    f"recording generation {gen} as verified failed ({exc}) and so did "
                    f"switching back to generation {base} ({again}); recover() at the next "
                    f"start goes back to generation {base}"
                ) from again
            try:
                self._sync_live(
                    self._selection(self._manifest(base)),
                    prepared.selection,
                    prepared.changed_backends,
                )
            except OSError:
                pass  # recover() at the next start repairs the live files
            again = self._reload(prepared.changed_backends, prepared.narrow)
            error = self._fs_error(exc, "recording the generation as verified")
            if again is not None:
                error = type(error)(f"{error}; reloading generation {base} failed: {again}")
            raise error from exc
        try:
            if self.fs.is_symlink(self._p(UNDO)):
                self.fs.remove(self._p(UNDO))
        except OSError:
            pass  # a leftover undo link is harmless; recover() removes it
        self._collect_garbage()
        applied = ", ".join(prepared.applied) or "no member changes"
        refused = prepared.refused
        message = f"applied generation {gen} ({applied})"
        if refused:
            message += "; refused: " + ", ".join(sorted(refused))
        return Outcome("applied", gen, base, message, prepared.owners)

    @_exclusive
    def apply(self, state: DesiredState) -> Outcome:
        """``prepare`` then ``commit``. If the commit rolled back because the probes of
        some changed owners failed while other owners' changes were innocent, those
        owners are refused and the rest is prepared and committed once more (so one
        member's zone that does not answer does not hold back everyone else's)."""
        first = self.prepare(state)
        out = self.commit(first)
        changed = {o.owner for o in out.owners if o.status == "rolled back"}
        if out.status != "rolled back" or not out.culprits or not set(out.culprits) < changed:
            return out
        refuse = {o: f"rolled back: {why}" for o, why in out.culprits.items()}
        return self.commit(self.prepare(state, refuse=refuse))

    def _mark_verified(self, gen: int) -> None:
        """Record durably that generation ``gen`` reloaded and answered its probes."""
        marker = self._p("generations", gen, VERIFIED)
        self.fs.write(marker, b"")
        self.fs.fsync(marker)
        self.fs.fsync_dir(self._p("generations", gen))

    def verified(self, gen: int) -> bool:
        """Whether generation ``gen`` went live, reloaded and passed its probes."""
        return gen == 0 or self.fs.exists(self._p("generations", gen, VERIFIED))

    def _switch_back(self, base: int, gen: int) -> None:
        """Undo a switch: ``current`` back to ``base`` (by renaming the undo link made
        before the switch, which needs no new space), then drop generation ``gen``."""
        current, undo = self._p("current"), self._p(UNDO)
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
            for path in (self._p("current.tmp"), undo):
                if self.fs.is_symlink(path):
                    self.fs.remove(path)
            if self.fs.is_dir(self._p("staging", gen)):
                self.fs.rmtree(self._p("staging", gen))
            if self.current_generation() != gen and self.fs.is_dir(self._p("generations", gen)):
                self.fs.rmtree(self._p("generations", gen))
                self._manifests.pop(gen, None)
            self._staged = None

    def _sync_live(self, new: Selection, old: Selection, backends) -> bool:
        """Make the live files of ``backends`` hold ``new``'s units (``old``: what they
        hold now): write each changed one (temporary file, fsync, rename; one directory
        fsync), remove those ``new`` no longer names. Nothing at all for backends without
        live files. Returns whether anything changed."""
        moved = False
        for b in backends:
            after, before = new.get(b, {}), old.get(b, {})
            d = self._p(LIVE, b)
            moved = _moved(after, before)
            todo = [
                after[k]
                for k in moved
                if k in after
                and after[k].live is not None
                and (
                    before.get(k) is None
                    or (before[k].sha, before[k].live) != (after[k].sha, after[k].live)
                )
            ]
            gone = {
                before[k].live
                for k in moved
                if k in before
                and before[k].live is not None
                and (k not in after or after[k].live != before[k].live)
            }
            if gone:  # (a live name might have moved to another key)
                gone -= {r.live for r in after.values() if r.live is not None}
            if not todo and not gone:
                continue
            makedirs(self.fs, d)
            for r in todo:
                path = f"{d}/{r.live}"
                self.fs.write(path + ".tmp", self._unit_content(b, r))
                self.fs.fsync(path + ".tmp")
                self.fs.rename(path + ".tmp", path)
            for name in sorted(gone):
                if self.fs.exists(f"{d}/{name}"):
                    self.fs.remove(f"{d}/{name}")
            self.fs.fsync_dir(d)
            moved = True
        return moved

    def _repair_live(self, gen: int) -> bool:
        """At start-up: make every live file the live generation's unit again (a crash
        may have left some of the next or the previous generation's)."""
        sel = self._selection(self._manifest(gen)) if gen else {}
        moved = False
        for b in sorted(set(sel) | set(self._listdir(self._p(LIVE)))):
            d = self._p(LIVE, b)
            wanted = {r.live: r for r in sel.get(b, {}).values() if r.live is not None}
            for name in self._listdir(d):
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
                    self.fs.write(path + ".tmp", self._unit_content(b, r))
                    self.fs.fsync(path + ".tmp")
                    self.fs.rename(path + ".tmp", path)
                    moved = True
            if moved and self.fs.is_dir(d):
                self.fs.fsync_dir(d)
        return moved

    def _reload(self, backends: tuple[str, ...], narrow: Mapping | None = None) -> str | None:
        for b in backends:
            if b not in self.backends:
                continue
            keys = (narrow or {}).get(b)
            cmds = self.backends[b].reload_units(keys) if keys else self.backends[b].reload()
            for cmd in cmds:
                result = self._run(cmd)
                if not result.ok:
                    return f"{b} reload failed: {result.output() or f'exit status {result.returncode}'}"
        return None

    @_exclusive
    def reload_all(self) -> str | None:
        """Reload every backend of the registry (after :meth:`recover` at start-up);
        None, or the first failure."""
        return self._reload(tuple(self.backends))

    def _probe(self, probes: tuple[Probe, ...]) -> tuple[str, dict[str, str]] | None:
        """None when every probe passes (retried until ``probe_timeout``); else the
        reason and, per owner whose probe failed, that probe's own message."""
        if not probes:
            return None
        if self.prober is None:
            return "no prober to run the backends' probes", {}
        deadline = self.clock.time() + self.probe_timeout
        pending = list(probes)
        while True:
            failed = []
            if self.probe_workers > 1 and len(pending) > 1:
                with ThreadPoolExecutor(max_workers=min(self.probe_workers, len(pending))) as pool:
                    answers = list(pool.map(self.prober.probe, pending))
            else:
                answers = [self.prober.probe(p) for p in pending]
            for p, answer in zip(pending, answers, strict=True):
                if answer is not True:
                    failed.append((p, answer))
            if not failed:
                return None
            if self.clock.time() >= deadline:
                culprits: dict[str, str] = {}
                for p, answer in failed:
                    why = answer if isinstance(answer, str) and answer else "no answer"
                    culprits.setdefault(p.owner, f"{p.kind} probe {p.target!r} failed: {why}")
                p = failed[0][0]
                more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
                return f"{culprits[p.owner]} (owner {p.owner}){more}", culprits
            self.clock.sleep(self.probe_interval)
            pending = [p for p, _ in failed]

    def _rollback(self, prepared: Prepared, reason: str, culprits: dict[str, str]) -> Outcome:
        base, gen = prepared.base, prepared.generation
        try:
            self._switch_back(base, gen)
        except OSError as exc:
            raise RollbackFailed(
                f"rolling back to generation {base} failed ({self._fs_error(exc, 'rolling back')}"
                f"); generation {gen} stays live, unverified: {reason}. recover() at the next "
                f"start goes back to generation {base}"
            ) from exc
        try:
            self._sync_live(
                self._selection(self._manifest(base)), prepared.selection, prepared.changed_backends
            )
        except OSError as exc:
            raise RollbackFailed(
                f"rolling back to generation {base}: its live files could not be written back "
                f"({self._fs_error(exc, 'rolling back')}); recover() at the next start does it"
            ) from exc
        try:
            again = self._reload(prepared.changed_backends, prepared.narrow)
        except Exception as exc:
            again = f"{type(exc).__name__}: {exc}"
        message = f"rolled back to generation {base}: {reason}"
        if again is not None:
            message += f"; reloading generation {base} also failed: {again}"
        owners = tuple(
            OwnerResult(o.owner, "rolled back", culprits.get(o.owner, reason))
            if o.status == "applied"
            else o
            for o in prepared.owners
        )
        return Outcome("rolled back", base, base, message, owners, culprits)

    # -- garbage and recovery ---------------------------------------------------------

    def generations(self) -> list[int]:
        """Generation numbers present on disk, ascending."""
        return sorted(int(n) for n in self._listdir(self._p("generations")) if _GEN.fullmatch(n))

    def _collect_garbage(self) -> None:
        """Keep the last ``keep`` generations (and the live one); remove unit files none
        of them names. Removals are not fsynced: one that comes back after a crash is
        removed again next time."""
        try:
            live = self.current_generation()
            gens = self.generations()
            kept = set(gens[-self.keep :]) | {live}
            # Usually only the units of the generations dropped now can have become
            # garbage: check those against the kept generations. Every SWEEP_EVERY commits
            # (and the first after start) the unit directories are swept whole, which also
            # finds units a refused or aborted prepare left (10,000 files listed per commit
            # would cost more than the change).
            self._commits += 1
            sweep = self._commits % SWEEP_EVERY == 1 or SWEEP_EVERY == 1
            dropped: dict[str, set[str]] = self._written  # a refused or aborted change's too
            self._written = {}
            for g in gens:
                if g not in kept:
                    if not sweep:
                        try:
                            for b, names in self._unit_files(self._manifest(g)).items():
                                dropped.setdefault(b, set()).update(names)
                        except (OSError, ValueError, KeyError):
                            sweep = True
                    self.fs.rmtree(self._p("generations", g))
                    self._manifests.pop(g, None)
                    self._files.pop(g, None)
            kept_files = []
            for g in sorted(kept):
                try:
                    kept_files.append(self._unit_files(self._manifest(g)))
                except (OSError, ValueError, KeyError):
                    sweep = True  # cannot tell what a kept generation needs: look at all
            if not sweep:
                for b, names in dropped.items():
                    garbage = set(names)
                    for files in kept_files:  # (set differences: C speed at 10,000 units)
                        garbage -= files.get(b, frozenset())
                    for f in sorted(garbage):
                        try:
                            self.fs.remove(self._p("units", b, f))
                        except FileNotFoundError:
                            pass
                        sha, _, ext = f.partition(".")
                        self._contents.pop((b, sha), None)
                        self._paths.pop((b, sha, ext), None)
                names_kept = None
            else:
                names_kept = {}
                for files in kept_files:
                    for b, names in files.items():
                        names_kept.setdefault(b, set()).update(names)
            for b in self._listdir(self._p("units")) if names_kept is not None else ():
                keep = names_kept.get(b, set())
                for f in self._listdir(self._p("units", b)):
                    if f not in keep:
                        self.fs.remove(self._p("units", b, f))
                        sha, _, ext = f.partition(".")
                        self._contents.pop((b, sha), None)
                        self._paths.pop((b, sha, ext), None)
            live_units = sum(len(units) for units in self._selection(self._manifest(live)).values())
            if sum(map(len, self._previous_units.values())) > 2 * live_units + 100:
                self._previous_units.clear()
            if len(self._entries) > 2 * live_units + 1000:
                self._prune_entries()
        except OSError:
            pass  # garbage is harmless; the next commit tries again

    def _complete(self, gen: int) -> bool:
        """Whether a generation's manifest parses and every file it names is there."""
        try:
            manifest = self._manifest(gen)
            for b, body in manifest["backends"].items():
                for f, sha in body["index"].items():
                    if sha256(self.fs.read(self._p("generations", gen, b, f))) != sha:
                        return False
                for u in body["units"]:
                    if not self.fs.exists(self._p("units", b, f"{u['sha']}.{u['ext']}")):
                        return False
        except (OSError, ValueError, KeyError, TypeError):
            self._manifests.pop(gen, None)
            return False
        return True

    @_exclusive
    def recover(self, *, reload: bool = True) -> int:
        """Start-up repair (see the module docstring); returns the live generation.

        If ``current`` had to move, every backend is reloaded (unless ``reload`` is
        false), since a daemon may already be running what ``current`` named before;
        :attr:`recovery` says what was done."""
        self._manifests.clear()
        self._contents.clear()
        self._previous_units.clear()
        self._staged = None
        for name in self._listdir(self._p("staging")):
            self.fs.rmtree(self._p("staging", name))
        for link in ("current.tmp", UNDO):
            if self.fs.is_symlink(self._p(link)) or self.fs.exists(self._p(link)):
                self.fs.remove(self._p(link))
        for b in self._listdir(self._p("units")):
            for f in self._listdir(self._p("units", b)):
                if f.endswith(".tmp"):
                    self.fs.remove(self._p("units", b, f))
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
                replace_symlink(self.fs, f"generations/{live}", self._p("current"))
            elif self.fs.is_symlink(self._p("current")):
                self.fs.remove(self._p("current"))
                self.fs.fsync_dir(self.state_dir)
        for g in self.generations():
            if g > live or g not in complete:
                self.fs.rmtree(self._p("generations", g))
                self._manifests.pop(g, None)
        repaired = self._repair_live(live)
        self.recovery = ""
        if live != current or repaired:
            self.recovery = (
                f"current moved from generation {current} to {live}"
                if live != current
                else f"live files repaired to generation {live}"
            )
            if reload:
                try:
                    failed = self.reload_all()
                except Exception as exc:
                    failed = f"{type(exc).__name__}: {exc}"
                self.recovery += f"; reload failed: {failed}" if failed else "; reloaded"
        return live


def _dump(manifest: dict) -> bytes:
    return (json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _moved(a: Mapping, b: Mapping) -> list:
    """The keys whose values differ between two selections (or that only one has), sorted:
    a set difference at C speed (10,000 units, a few changed)."""
    try:
        keys = {k for k, _ in a.items() ^ b.items()}
    except TypeError:  # a value that does not hash: compare one by one
        keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return sorted(keys)


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
