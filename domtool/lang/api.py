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

#: The standard library's files, in load order (later files use earlier ones).
LIBRARY_FILES = ("base.dtl", "dns.dtl", "web.dtl", "mail.dtl", "dom.dtl")


class LibraryError(Exception):
    """The standard library itself does not parse or check (a bug in the package)."""


@attrs.frozen
class CheckResult:
    """Every diagnostic of the submitted files, and their merged desired state (None as
    soon as any file has an error: nothing of a refused submission reaches a host)."""

    diagnostics: tuple[Diagnostic, ...]
    state: DesiredState | None

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
) -> CheckResult:
    """Parse, check and evaluate ``(file name, text)`` pairs for the member ``perms``.
    All the files' evaluations share one work ``budget`` (one request, one budget)."""
    from domtool.lang.parser import parse_file

    shared = Budget(budget)
    loaded = _load()
    diags: list[Diagnostic] = []
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
        diags.extend(ev.diagnostics)
        if ev.state is not None:
            diags.extend(_clashes(state, ev.state, name))
            state = state.merge(ev.state)
    diags.sort(key=Diagnostic.sort_key)
    return CheckResult(tuple(diags), None if diags else state)


def _clashes(have: DesiredState, new: DesiredState, file: str) -> list[Diagnostic]:
    """A domain or virtual host configured by two of the submitted files."""
    out = []
    zones = {z.name for z in have.zones}
    vhosts = {v.fqdn for v in have.vhosts}
    for z in new.zones:
        if z.name in zones:
            out.append(
                Diagnostic(file, None, f"Domain {z.name} is also configured in another file.")
            )
    for v in new.vhosts:
        if v.fqdn in vhosts:
            out.append(
                Diagnostic(file, None, f"Virtual host {v.fqdn} is also configured in another file.")
            )
    return out
