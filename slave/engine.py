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
    unit file's absolute path); a backend that offers a batched ``check_units`` instead
    has one check over every owner's changed units (its files written to
    ``staging/check-N+1/``, ``{dir}`` replaced by that directory), bisected by owner when
    it fails. Then every changed backend's ``check_all``. When checks
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
concurrently: a round of 1,000 new vhosts and zones is 2,000 probes; a prober with
``probe_many(probes, workers)`` is handed them all at once, so it can group them, as the
real prober puts a round's SMTP probes into a few sessions). Public calls are serialised:
a second concurrent call raises :class:`EngineBusy`.

Commands run only through the process seam with argv lists. The only substitutions the
engine makes are ``{path}`` and ``{dir}``, always absolute paths under the (absolute) state
directory, so no argument the engine builds starts with ``-``. All file operations go
through the file system seam, so crashes and full disks are tested at every step
(``tests/slave/test_engine_crash.py``). The engine is synchronous; the agent runs it in
a thread and serialises calls (one prepare/commit at a time).

The engine composes two objects and keeps the orchestration (prepare, commit, abort,
apply, recover): the generation store (``domtool.slave.generations``: the layout,
manifests and caches, staging, the switch and switch back, live files, garbage, the file
part of recovery) and the bisector (``domtool.slave.bisect``: given one
``stage_and_check(owners)`` callable, which owners' changes the whole check refuses). It
never learns a daemon's name: everything daemon-specific is behind ``backend.py``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import NamedTuple, Protocol

import attrs

from domtool.model import DesiredState
from domtool.slave.backend import Backend, Command, Probe, Unit
from domtool.slave.bisect import Bisector
from domtool.slave.engine_errors import (
    BackendFailed,
    CheckFailed,
    DiskFull,
    EngineBusy,
    EngineError,
    RollbackFailed,
    StalePrepare,
    fs_error,
)
from domtool.slave.generations import (
    FORMAT,
    KEEP,
    GenerationStore,
    PreviousUnits,
    Selection,
    UnitRef,
    moved_keys,
    sha256,
)
from domtool.slave.seams import Clock, FileSystem, ProcessRunner, Result, makedirs
from domtool.states import without_owners

__all__ = [
    "UNIT_CHECKS_MAX",
    "BackendFailed",
    "CheckFailed",
    "DiskFull",
    "Engine",
    "EngineBusy",
    "EngineError",
    "OwnerResult",
    "Outcome",
    "Prepared",
    "Prober",
    "RollbackFailed",
    "StalePrepare",
    "UnitRef",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_EXT = re.compile(r"[a-z0-9]{1,16}")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a batch check's own files
_LIVE_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,254}")
# More changed units than this in one backend whose check_all covers units: check_all only.
UNIT_CHECKS_MAX = 8


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
    # backend -> the keys whose units differ from the base generation's (None: unknown)
    moved: Mapping | None = attrs.field(default=None, eq=False, repr=False)

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


class UnitKey(NamedTuple):
    """One unit of one backend (a change is attributed to its owner by these)."""

    backend: str
    key: str


@attrs.frozen
class Candidate:
    """A generation for one set of owners' changes: its manifest body (without its
    number), each backend's index files, and the units it selects."""

    body: dict
    indexes: dict[str, dict[str, bytes]]
    selection: Selection


@attrs.frozen(slots=True)
class _LastRender:
    """A backend's latest render: its units by id, and the refs and units by key made of
    them (the units its memo hands back again need no validation or hash; see _refs)."""

    by_id: dict[int, Unit]
    refs: dict[str, UnitRef]
    by_key: dict[str, Unit]


class _UnitCheck(NamedTuple):
    owner: str
    backend: str
    key: str
    path: str


@attrs.define
class _Plan:
    """Working state of one prepare."""

    base: int
    current: dict  # the live manifest (or an empty one)
    previous: Selection
    proposed: Selection
    units: dict[str, dict[str, Unit]]  # backend -> key -> rendered unit
    changes: dict[str, list[UnitKey]]  # owner -> the units its change touches, sorted
    refused: dict[str, str]
    carried: dict[str, dict[str, bytes]]  # backends not in the registry: their index files
    reverify: bool = False  # the live generation was never verified: check and reload all
    covered: set = attrs.field(factory=set)  # backends whose unit checks check_all does
    candidates: dict[frozenset, Candidate] = attrs.field(factory=dict)  # owners -> it


class Engine:
    """Applies desired states to one host's daemons (see the module docstring): it
    composes a :class:`~domtool.slave.generations.GenerationStore` (the files) and a
    :class:`~domtool.slave.bisect.Bisector` (whose change fails the whole check)."""

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
        self.store = GenerationStore(state_dir, fs, self.backends, keep=keep)
        self._rendered: dict[str, _LastRender] = {}  # backend -> its latest render
        self._exts: set[str] = set()  # unit extensions already validated
        self.recovery = ""  # what the last recover() did, if anything
        self._busy = threading.RLock()

    # -- reading the live state ------------------------------------------------

    def unit_path(self, backend: str, ref: UnitRef) -> str:
        return self.store.unit_path(backend, ref)

    def current_generation(self) -> int:
        """The live generation's number, 0 when there is none."""
        return self.store.current_generation()

    def generations(self) -> list[int]:
        """Generation numbers present on disk, ascending."""
        return self.store.generations()

    def verified(self, gen: int) -> bool:
        """Whether generation ``gen`` went live, reloaded and passed its probes."""
        return self.store.verified(gen)

    def manifest(self, gen: int | None = None) -> dict:
        """A generation's manifest (the live one by default)."""
        return self.store.manifest(self.current_generation() if gen is None else gen)

    def units(self, backend: str, gen: int | None = None) -> Mapping[str, Unit]:
        """A generation's units of one backend by key (the live one by default), read
        from disk when asked for: what a member's domain became on this host."""
        return self.store.units(backend, self.current_generation() if gen is None else gen)

    # -- prepare -----------------------------------------------------------------

    @_exclusive
    def prepare(self, state: DesiredState, refuse: Mapping[str, str] | None = None) -> Prepared:
        """Render, stage and check the next generation (see the module docstring).
        Owners in ``refuse`` are refused up front with the given message."""
        plan = self._plan(state, dict(refuse or {}))
        everyone = set(plan.changes) - set(plan.refused)
        gen = self.store.next_generation(plan.base)
        body = self._candidate(plan, everyone).body
        if body == _strip(plan.current) and not plan.reverify:
            return self._unchanged(plan)
        try:
            self._write_units(plan, everyone)
            self._unit_checks(plan, gen, everyone)
            accepted = self._check_and_bisect(plan, gen, everyone - set(plan.refused))
            candidate = self._candidate(plan, accepted)
            body = candidate.body
            if body == _strip(plan.current) and not plan.reverify:
                self.store.remove_staging(gen)
                return self._unchanged(plan)
            self.store.stage(gen, body, candidate.indexes, final=True, base=plan.base)
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
            self.store.remove_staging(gen)
            raise fs_error(exc, "staging") from exc
        except Exception:
            # (A simulated Crash is a BaseException: it passes through untouched.)
            self.store.remove_staging(gen)
            raise
        manifest = {"format": FORMAT, "generation": gen, **body}
        return Prepared(
            base=plan.base,
            generation=gen,
            owners=self._owner_results(plan, accepted),
            changed_backends=changed,
            probes=probes,
            manifest=manifest,
            selection=candidate.selection,
            narrow=self._narrow(plan, body, candidate.selection),
            moved=_moved(plan, accepted),
        )

    def _plan(self, state: DesiredState, refused: dict[str, str]) -> _Plan:
        base = self.current_generation()
        current = self.store.manifest(base)
        previous = self.store.selection(current)
        now = int(self.clock.time())
        proposed: Selection = {}
        units: dict[str, dict[str, Unit]] = {}
        for name, backend in self.backends.items():
            prev = previous.get(name, {})
            rendered = self._render(
                name, backend, state, PreviousUnits(self.store, name, prev), now, refused
            )
            proposed[name], units[name] = self._refs(name, rendered, prev)
        carried = {}
        for name in previous:
            if name not in self.backends:
                proposed[name] = previous[name]
                carried[name] = {
                    f: self.store.index_file(base, name, f)
                    for f in current["backends"][name]["index"]
                }
        changes: dict[str, list[UnitKey]] = {}
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
                    changes.setdefault(owner, []).append(UnitKey(name, key))
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
            refs, by_key = dict(last.refs), dict(last.by_key)
            for i in last.by_id.keys() - by_id.keys():  # no longer rendered
                key = last.by_id[i].key
                del refs[key], by_key[key]
            fresh = [by_id[i] for i in by_id.keys() - last.by_id.keys()]
            if fresh:
                try:
                    fresh.sort(key=lambda u: u.key)
                except TypeError:
                    pass  # a bad key: refused below
                refs, by_key = self._check_units(name, fresh, prev, refs, by_key)
        self._rendered[name] = _LastRender(by_id, refs, by_key)
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

    def _candidate(self, plan: _Plan, owners: set[str]) -> Candidate:
        """The manifest body, index files and selection for these owners' changes (made
        once per set of owners in a prepare)."""
        memo = frozenset(owners)
        got = plan.candidates.get(memo)
        if got is None:
            got = plan.candidates[memo] = self._make_candidate(plan, owners)
        return got

    def _make_candidate(self, plan: _Plan, owners: set[str]) -> Candidate:
        sel = self._select(plan, owners)
        backends, indexes = {}, {}
        for b in sorted(sel):
            units = sel[b]
            if b in plan.carried:
                files = plan.carried[b]
                indexes[b] = files
                backends[b] = {
                    "units": [self.store.entry(units[k]) for k in sorted(units)],
                    "index": {f: sha256(data) for f, data in sorted(files.items())},
                }
            else:
                indexes[b], backends[b] = self.store.backend_body(b, units)
        return Candidate({"backends": backends}, indexes, sel)

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
            keys = tuple(k for k in moved_keys(after, before) if after[k] != before[k])
            if keys and all(after[k].live is not None for k in keys):
                out[b] = keys
        return out

    def _unchanged(self, plan: _Plan) -> Prepared:
        return Prepared(
            base=plan.base,
            generation=None,
            owners=self._owner_results(plan, set()),
            message=f"unchanged at generation {plan.base}",
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

    def _write_units(self, plan: _Plan, owners: set[str]) -> None:
        """Write the changed units of these owners that are not on disk yet."""
        self.store.write_units(
            (b, ref, plan.units[b][key].content)
            for owner in sorted(owners)
            for b, key in plan.changes[owner]
            if (ref := plan.proposed[b].get(key)) is not None
        )

    def _run(self, cmd: Command) -> Result:
        return self.runner.run(cmd)

    def _batched(self, b: str) -> bool:
        """Whether backend ``b`` checks many changed units in one run (``check_units``)."""
        return callable(getattr(self.backends.get(b), "check_units", None))

    def _unit_checks(self, plan: _Plan, gen: int, owners: set[str]) -> None:
        """Each changed unit's own checks (``check_workers`` units at a time); a failing
        one refuses its owner with the checker's message. Then the batched backends' one
        check over every remaining owner's changed units (:meth:`_batch_checks`)."""
        self._single_unit_checks(plan, owners)
        self._batch_checks(plan, gen, owners)

    def _batch_check(self, plan: _Plan, gen: int, owners: set[str]) -> str | None:
        """One ``check_units`` run per batched backend over these owners' changed units;
        None if all pass, else the first failing checker's message."""
        for b in sorted(self.backends):
            if not self._batched(b):
                continue
            units: dict[str, Unit] = {}
            paths: dict[str, PurePosixPath] = {}
            for owner in sorted(owners):
                for ub, key in plan.changes.get(owner, ()):
                    ref = plan.proposed[ub].get(key) if ub == b else None
                    if ref is not None:
                        units[key] = plan.units[b][key]
                        paths[key] = PurePosixPath(self.unit_path(b, ref))
            if not units:
                continue
            try:
                check = self.backends[b].check_units(units, paths)
            except Exception as exc:  # a backend bug: the prepare fails, naming it
                raise BackendFailed(f"backend {b} could not build its unit check: {exc}") from exc
            if check is None or not check.commands:
                continue
            d = self.store.path("staging", f"check-{gen}")
            try:
                if self.fs.is_dir(d):
                    self.fs.rmtree(d)
                makedirs(self.fs, d)
                for name in sorted(check.files):
                    if not _FILE_NAME.fullmatch(name):
                        raise BackendFailed(f"backend {b}: bad check file name {name!r}")
                    self.fs.write(f"{d}/{name}", check.files[name])
                for cmd in check.commands:
                    argv = tuple(a.replace("{dir}", d) for a in cmd.argv)
                    result = self._run(attrs.evolve(cmd, argv=argv))
                    if not result.ok:
                        said = result.output() or f"exit status {result.returncode}"
                        return f"{b}: {self._readable(plan, said)}"
            finally:
                if self.fs.is_dir(d):
                    self.fs.rmtree(d)
        return None

    def _batch_checks(self, plan: _Plan, gen: int, owners: set[str]) -> None:
        """The batched backends' check of every owner's changed units at once; when it
        fails, the owners are bisected (``domtool.slave.bisect``) so that exactly the
        offenders are refused and the others go ahead in the same prepare."""
        if not any(self._batched(b) for b in self.backends):
            return
        todo = {o for o in owners if o not in plan.refused}
        if not todo:
            return
        failure = self._batch_check(plan, gen, todo)
        if failure is None:
            return
        found = Bisector(lambda group: self._batch_check(plan, gen, group)).search(todo, failure)
        plan.refused.update(found.refused)

    def _single_unit_checks(self, plan: _Plan, owners: set[str]) -> None:
        jobs = []
        for owner in sorted(owners):
            for b, key in plan.changes[owner]:
                ref = plan.proposed[b].get(key)
                if ref is not None and plan.units[b][key].checks and not self._batched(b):
                    jobs.append(_UnitCheck(owner, b, key, self.unit_path(b, ref)))
        # Many changed units of a backend whose whole check validates every unit anyway
        # (named-checkconf -z) and will run: that one check replaces theirs (a round of 200
        # new zones is one named-checkconf -z, not 200 named-checkzone); culprits are found
        # by bisection. Such a backend's whole check then always runs.
        candidate = self._candidate(plan, owners)
        narrow = self._narrow(plan, candidate.body, candidate.selection)
        count: dict[str, int] = {}
        for job in jobs:
            count[job.backend] = count.get(job.backend, 0) + 1
        for b, n in count.items():
            if (
                n > UNIT_CHECKS_MAX
                and b not in narrow
                and getattr(self.backends.get(b), "check_all_covers_units", False)
            ):
                plan.covered.add(b)
        jobs = [job for job in jobs if job.backend not in plan.covered]

        def check(job: _UnitCheck) -> str | None:
            if job.owner in plan.refused:
                return None  # already refused (sequential runs stop at the first failure)
            for cmd in plan.units[job.backend][job.key].checks:
                argv = tuple(a.replace("{path}", job.path) for a in cmd.argv)
                result = self._run(attrs.evolve(cmd, argv=argv))
                if not result.ok:
                    said = result.output() or f"exit status {result.returncode}"
                    return f"{job.backend} {job.key}: {self._readable(plan, said)}"
            return None

        if self.check_workers > 1 and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=self.check_workers) as pool:
                results = list(pool.map(check, jobs))
            for job, failed in zip(jobs, results, strict=True):
                if failed and job.owner not in plan.refused:
                    plan.refused[job.owner] = failed
        else:
            for job in jobs:
                failed = check(job)
                if failed:
                    plan.refused[job.owner] = failed

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

    def _stage_and_check(self, plan: _Plan, gen: int, owners: set[str]) -> str | None:
        """Stage these owners' changes as ``gen`` and run check_all of each changed
        backend; None if all pass, else the failing checker's message."""
        candidate = self._candidate(plan, owners)
        body = candidate.body
        narrow = self._narrow(plan, body, candidate.selection)
        todo = [
            b
            for b in body["backends"]
            if b in self.backends
            and (b not in narrow or b in plan.covered)
            and (plan.reverify or body["backends"][b] != plan.current["backends"].get(b))
        ]
        if not todo:
            return None  # only units changed, each passed its own check
        self.store.stage(gen, body, candidate.indexes, final=False, base=plan.base)
        gen_dir = self.store.staging_dir(gen)
        for b in todo:
            for cmd in self.backends[b].check_all(gen_dir):
                result = self._run(cmd)
                if not result.ok:
                    said = result.output() or f"exit status {result.returncode}"
                    return f"{b}: {self._readable(plan, said)}"
        return None

    def _check_and_bisect(self, plan: _Plan, gen: int, owners: set[str]) -> set[str]:
        """The owners whose changes pass check_all together; the others are refused
        (``domtool.slave.bisect``). Refuses the whole prepare (CheckFailed) when even no
        member change passes."""
        failure = self._stage_and_check(plan, gen, owners)
        if failure is None:
            return owners
        # Bisection starts from "no member change": that must pass (it differs from the
        # live generation when an index or the backend set changed, or on re-verify).
        baseline = failure if not owners else None
        if owners and (plan.reverify or self._candidate(plan, set()).body != _strip(plan.current)):
            baseline = self._stage_and_check(plan, gen, set())
        if baseline is not None:
            raise CheckFailed(
                "the configuration fails its check even without any member's change "
                f"(a site or backend problem; nothing was applied): {baseline}"
            )
        found = Bisector(lambda group: self._stage_and_check(plan, gen, group)).search(
            owners, failure
        )
        plan.refused.update(found.refused)
        return set(found.accepted)

    @_exclusive
    def abort(self, prepared: Prepared) -> None:
        """Drop a prepared generation that will not be committed."""
        if prepared.generation is not None:
            self.store.remove_staging(prepared.generation)

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
        store = self.store
        try:
            store.switch(base, gen, prepared.manifest, prepared.selection, prepared.moved)
        except OSError as exc:
            store.switch_back(base, gen)
            raise fs_error(exc, "switching generations") from exc
        old_sel = store.selection(store.manifest(base))
        try:
            store.sync_live(prepared.selection, old_sel, prepared.changed_backends)
        except OSError as exc:
            store.switch_back(base, gen)
            try:
                store.sync_live(old_sel, prepared.selection, prepared.changed_backends)
            except OSError:
                pass  # recover() at the next start repairs the live files
            raise fs_error(exc, "writing live files") from exc

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
            store.mark_verified(gen)
        except OSError as exc:
            try:
                store.switch_back(base, gen)
            except OSError as again:
                raise RollbackFailed(
                    f"recording generation {gen} as verified failed ({exc}) and so did "
                    f"switching back to generation {base} ({again}); recover() at the next "
                    f"start goes back to generation {base}"
                ) from again
            try:
                store.live_back(base, prepared.selection, prepared.changed_backends)
            except OSError:
                pass  # recover() at the next start repairs the live files
            again = self._reload(prepared.changed_backends, prepared.narrow)
            error = fs_error(exc, "recording the generation as verified")
            if again is not None:
                error = type(error)(f"{error}; reloading generation {base} failed: {again}")
            raise error from exc
        store.drop_undo()
        store.collect_garbage()
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
            many = getattr(self.prober, "probe_many", None)
            if callable(many):  # the prober groups what it can (one SMTP session, many RCPT)
                answers = list(many(pending, self.probe_workers))
                if len(answers) != len(pending):
                    raise EngineError(f"the prober gave {len(answers)} answers to {len(pending)}")
            elif self.probe_workers > 1 and len(pending) > 1:
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
        store = self.store
        try:
            store.switch_back(base, gen)
        except OSError as exc:
            raise RollbackFailed(
                f"rolling back to generation {base} failed ({fs_error(exc, 'rolling back')}"
                f"); generation {gen} stays live, unverified: {reason}. recover() at the next "
                f"start goes back to generation {base}"
            ) from exc
        try:
            store.live_back(base, prepared.selection, prepared.changed_backends)
        except OSError as exc:
            raise RollbackFailed(
                f"rolling back to generation {base}: its live files could not be written back "
                f"({fs_error(exc, 'rolling back')}); recover() at the next start does it"
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

    # -- recovery ---------------------------------------------------------------------

    @_exclusive
    def recover(self, *, reload: bool = True) -> int:
        """Start-up repair (see the module docstring); returns the live generation.

        If ``current`` had to move, every backend is reloaded (unless ``reload`` is
        false), since a daemon may already be running what ``current`` named before;
        :attr:`recovery` says what was done."""
        found = self.store.recover()
        current, live = found.before, found.live
        self.recovery = ""
        if live != current or found.repaired:
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


def _moved(plan: _Plan, accepted: set[str]) -> dict[str, tuple[str, ...]]:
    """The keys by backend whose units the accepted owners' changes move (every other
    key of the candidate selects the live generation's unit)."""
    out: dict[str, list[str]] = {}
    for owner in accepted:
        for b, key in plan.changes.get(owner, ()):
            out.setdefault(b, []).append(key)
    return {b: tuple(keys) for b, keys in out.items()}


def _strip(manifest: dict) -> dict:
    """A manifest without its format and number: what two generations compare by."""
    return {"backends": manifest["backends"]}
