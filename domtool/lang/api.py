"""The language's front door: parse, check and evaluate member files in one call.

:func:`check_source` is what the CLI (``domtool -tc``), the dispatcher and ``regen`` use:
it parses each file, checks it against the standard library with the member's
permissions (all errors of every file), evaluates the files that check, and merges their
desired states. The standard library is parsed, checked and evaluated once per process
(:func:`load_library`); it does not depend on any member's permissions.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files as _resources
from typing import Any

import attrs

from domtool.lang import ast
from domtool.lang.checker import Library, check_file, check_library
from domtool.lang.errors import Diagnostic
from domtool.lang.evaluator import STEP_BUDGET, Env, evaluate, library_env
from domtool.lang.primitives import Budget
from domtool.model import DEFAULT_SITE, DesiredState, Site
from domtool.states import configured

#: The standard library's files, in load order (later files use earlier ones).
LIBRARY_FILES = ("base.dtl", "dns.dtl", "web.dtl", "mail.dtl", "lists.dtl", "dom.dtl", "compat.dtl")


class LibraryError(Exception):
    """The standard library itself does not parse or check (a bug in the package)."""


@attrs.frozen
class CheckResult:
    """Every diagnostic of the submitted files, and their merged desired state (None as
    soon as any file has an error: nothing of a refused submission reaches a host)."""

    diagnostics: tuple[Diagnostic, ...]
    state: DesiredState | None
    #: ``offline`` checks only: files that type-check but were not evaluated, because they
    #: reach an ``extern val`` of their own (self-contained programs); severity "note".
    notes: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def library_sources() -> list[tuple[str, str]]:
    """The standard library's ``(file name, text)`` pairs, in load order."""
    pkg = _resources("domtool.stdlib")
    return [(name, pkg.joinpath(name).read_text(encoding="utf-8")) for name in LIBRARY_FILES]


@attrs.frozen
class _Loaded:
    library: Library
    env: Env


@lru_cache(maxsize=1)
def _load() -> _Loaded:
    from domtool.lang.parser import parse_file

    parsed: list[ast.File] = []
    sources = dict(library_sources())
    problems: list[Diagnostic] = []
    for name, text in sources.items():
        f, diags = parse_file(name, text)
        problems.extend(diags)
        if f is not None:
            parsed.append(f)
    if not problems:
        lib, problems = check_library(parsed, sources)
    if problems:
        raise LibraryError(
            "the standard library does not check:\n" + "\n".join(d.format() for d in problems)
        )
    return _Loaded(lib, library_env(lib))


def load_library() -> Library:
    """The checked standard library (parsed and checked once per process)."""
    return _load().library


def check_source(
    files: list[tuple[str, str]],
    perms: Any,
    site: Site = DEFAULT_SITE,
    *,
    budget: int = STEP_BUDGET,
    offline: bool = False,
) -> CheckResult:
    """Parse, check and evaluate ``(file name, text)`` pairs for the member ``perms``.

    ``offline`` (``domtool -tc``): a file whose evaluation reaches one of its own
    ``extern val`` declarations (a self-contained program: they have no implementation)
    is reported as checked but not evaluated (a note) instead of an error; submitting it
    is refused with the error at that use.

    All the files' evaluations share one work ``budget`` (one request, one budget)."""
    from domtool.lang.parser import parse_file

    shared = Budget(budget)
    loaded = _load()
    diags: list[Diagnostic] = []
    notes: list[Diagnostic] = []
    seen: dict[tuple[str, str], tuple[str, Any]] = {}  # (kind, name) -> (file, span)
    state = DesiredState()
    for name, text in files:
        f, parse_diags = parse_file(name, text)
        diags.extend(parse_diags)
        if f is None or parse_diags:
            continue
        try:
            check_diags = check_file(f, perms, loaded.library, site, text)
        except RecursionError:
            check_diags = [Diagnostic(name, None, "program too deeply nested to check")]
        diags.extend(check_diags)
        if check_diags:
            continue
        ev = evaluate(f, perms, loaded.library, loaded.env, site, budget=shared)
        if offline and ev.unimplemented is not None:
            notes.extend(_not_evaluated(d, ev.unimplemented) for d in ev.diagnostics)
            continue
        diags.extend(ev.diagnostics)
        if ev.state is not None:
            diags.extend(_clashes(seen, ev, name))
            state = state.merge(ev.state)
    diags.sort(key=Diagnostic.sort_key)
    return CheckResult(tuple(diags), None if diags else state, tuple(notes))


def _not_evaluated(d: Diagnostic, name: str) -> Diagnostic:
    return Diagnostic(
        d.file,
        d.span,
        f"type-checks; not evaluated: {name} is declared with `extern val` and has no "
        "implementation (submitting this file is refused here).",
        severity="note",
    )


def _clashes(seen: dict[tuple[str, str], tuple[str, Any]], ev: Any, file: str) -> list[Diagnostic]:
    """A unit of any kind (a domain's zone, a virtual host, a mail domain, a list domain:
    ``domtool.states.configured``) configured by two of the submitted files: an error at
    the second, with the span of the first."""
    assert ev.state is not None
    out = []
    for key, what in configured(ev.state):
        span = ev.spans.get(key)
        if key in seen:
            other, first = seen[key]
            where = f"{other}:{first}" if first is not None else other
            out.append(
                Diagnostic(
                    file,
                    span,
                    f"{what} is also configured in another file.",
                    (f"First configured at: {where}",),
                )
            )
        else:
            seen[key] = (file, span)
    return out
