"""The contract between the apply engine and the per-daemon backends.

A backend is pure where it can be: it renders a host's part of the desired state into
*units* (one unit per zone, per vhost, per mail domain...), each owned by one member, and
an *index* (the small files that name every unit, such as the list of zones for
``named.conf`` or the ``Include`` lines for Apache). It names the argv lists that check a
staged tree, reload the daemon and probe that it answers. It never runs anything itself;
the engine does that through the process seam (``domtool.slave.seams``).

On-disk layout on a host (``state_dir`` is the slave's state directory)::

    state_dir/units/<backend>/<sha256>.<ext>     immutable unit files, content-addressed
    state_dir/generations/<N>/<backend>/...      the index files of generation N
    state_dir/generations/<N>/manifest.json      which units generation N holds, per owner
    state_dir/current -> generations/<N>         the live generation (atomic symlink swap)

The daemon's own top-level config (written once by the site setup, not by members)
includes ``state_dir/current/<backend>/<index file>``; the index names unit files by
absolute path under ``state_dir/units``. A generation therefore costs one small index
rewrite plus only the units that changed.

Live files (optional). A daemon that treats a unit whose path changed as a new one (BIND
drops and re-adds a zone whose file moved: it answers SERVFAIL meanwhile) can have each
unit at a stable path: a backend whose units carry a ``live`` name and which sets
``live_files = True`` gets ``index(paths, live=...)`` with each such unit's stable path
``state_dir/live/<backend>/<live>`` (what the daemon's index names) beside its content
path (what a checker of the staged generation reads). The engine keeps each live file a
copy of the live generation's unit (written after the switch, put back on a rollback,
repaired by ``recover()``). A backend that also names ``live_index_files`` (the index
files the daemon reads) and ``reload_units(keys)`` is reloaded narrowly: when those index
files are unchanged and every changed unit has a live file, only the changed units are
reloaded (``rndc reload ZONE``) and the whole-config check is skipped (each changed unit
passed its own check).

A backend whose whole check validates every unit as its unit checks would
(``check_all_covers_units``: BIND's ``named-checkconf -z``) has more than a few changed
units checked by that one whole check instead of one checker each; that whole check then
always runs, and a culprit is found by the engine's bisection.

Batched unit checks (optional). A backend whose checker can check many units in one run
(Exim: one ``exim -bt`` over every changed domain of a round) offers
``check_units(units, paths)``: given the changed units by key and their unit files'
absolute paths, a :class:`UnitsCheck` (or None: nothing to check). Its units' own
``checks`` are then not run; the engine runs one batch over every owner's changed units
of a round and, if it fails, finds the owners to refuse by bisection (as for a whole
check). A backend without it has each changed unit checked by its own ``checks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Protocol

import attrs

from domtool import validate
from domtool.model import DesiredState


@attrs.frozen
class Command:
    """One process to run: an argument list (never a shell string) and a time limit."""

    argv: tuple[str, ...]
    timeout: float = 60.0


@attrs.frozen
class Unit:
    """One independently owned piece of a backend's configuration.

    ``key`` is unique within the backend ("zone:example.org", "vhost:www.example.org").
    ``content`` is the rendered file. ``checks`` are the commands that validate this unit
    on its own once it is staged at ``path`` (e.g. ``named-checkzone``); ``{path}`` in an
    argument is replaced by the unit's staged absolute path.
    """

    key: str
    owner: str
    ext: str
    content: bytes
    checks: tuple[Command, ...] = ()
    # A stable file name for this unit (``state_dir/live/<backend>/<live>``), for daemons
    # that must read a changed unit at the same path (see "Live files" below); None: the
    # daemon reads the content-addressed unit file.
    live: str | None = None


@attrs.frozen
class UnitsCheck:
    """One check of many units together (``check_units``): the engine writes ``files``
    (plain names -> bytes) into a fresh directory of its own, then runs ``commands``;
    ``{dir}`` in an argument is replaced by that directory's absolute path. Any command
    failing fails the batch."""

    files: Mapping[str, bytes]
    commands: tuple[Command, ...]


@attrs.frozen
class Probe:
    """After a reload, something the engine verifies the daemon now serves.

    kind "dns": ``target`` is (server, port, qname, rtype, expected SOA serial or None).
    kind "http": ``target`` is (address, port, host header, expected status) or, with a
    fifth element, (address, port, host header, expected status, URL path); the path is
    "/" when absent. GET it without following redirects.
    """

    kind: str
    target: tuple
    owner: str


class Backend(Protocol):
    """What every daemon backend provides. All methods are pure."""

    name: str

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        """Render every unit of this host's state for this daemon.

        ``previous`` holds the units of the live generation by key, so a backend can keep
        a unit byte-identical when nothing in it changed (and so skip its checks and
        writes), and keep counters such as a zone's SOA serial increasing. ``now`` is the
        time in seconds from the engine's clock seam.
        """

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        """Render the index files, given each unit key's absolute unit-file path.

        A backend whose index files depend on nothing but ``units`` (its config frozen)
        says so with a class attribute ``pure_index = True``: the engine then reuses
        the files of the same units instead of rendering them again."""

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        """Commands that check the whole staged configuration of this generation."""

    def reload(self) -> tuple[Command, ...]:
        """Commands that make the running daemon load the current generation."""

    def probes(self, state: DesiredState) -> list[Probe]:
        """What to verify after a reload."""


class UnitRefused(ValueError):
    """A member-controlled value of one unit failed its grammar; nothing of it was rendered.

    Backends subclass it to name the kind of unit (``kind``: "vhost", "zone", ...).
    """

    kind = "unit"

    def __init__(self, owner: str, name: str, field: str, value: object, reason: str):
        self.owner, self.name, self.field, self.value, self.reason = (
            owner,
            name,
            field,
            value,
            reason,
        )
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{owner}: {self.kind} {name!r}: {field}: {reason} (value {shown})")


class RenderRefused(ValueError):
    """Some units were refused; ``errors`` holds each refusal and ``owners`` whose they were.

    The engine drops those owners' changes and renders the rest again.
    """

    def __init__(self, errors: Iterable[UnitRefused]):
        self.errors = tuple(errors)
        self.owners = tuple(sorted({e.owner for e in self.errors}))
        super().__init__("; ".join(str(e) for e in self.errors))


class BadValue(ValueError):
    """A renderer's grammar check failed: the reason only (the renderer adds owner, unit
    and field when it turns it into a :class:`UnitRefused`)."""


def renderer_check(checker):
    """A ``domtool.validate.check_*`` turned into a renderer check (``Invalid`` ->
    :class:`BadValue`): defence in depth, the same grammars the dispatcher applied."""

    def check(value: object):
        try:
            return checker(value)
        except validate.Invalid as exc:
            raise BadValue(str(exc)) from None

    check.__name__ = checker.__name__
    return check


def memo_get(memo: Mapping, obj: object) -> Unit | None:
    """The unit rendered earlier for an equal model object, if any. Model values are
    frozen attrs objects, so equal content hashes equal; a value that cannot be hashed
    (hostile input with a list in it) is simply rendered again."""
    try:
        return memo.get(obj)
    except TypeError:
        return None


def memo_put(memo: dict, obj: object, unit: Unit) -> None:
    try:
        memo[obj] = unit
    except TypeError:
        pass
