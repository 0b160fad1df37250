"""The slave's check-and-bisect search: which owners' changes a whole-config check refuses.

A whole-configuration checker (``named-checkconf -z``, ``apache2 -t``) says only that the
staged configuration fails, not whose change broke it. The :class:`Bisector` is given one
callable, ``stage_and_check(owners)``, which stages the changes of exactly those owners on
top of the live generation and runs the checkers: None when they pass, else the checker's
message. It knows nothing else of the engine (no files, no backends, no daemons).

The search halves: a group that fails on top of the owners accepted so far is split in
two and each half tried in turn (in owner-name order); an owner that fails alone on top of
them is refused. With k culprits among n owners this costs about 2·k·log2(n) checks, not
n (``tests/slave/test_engine_bisect.py`` bounds it). An owner refused while others were accepted
is tried once more alone on the live generation: if it passes there, its change only
conflicts with the others of the batch, and it is told so.

The caller makes sure that no change at all (``stage_and_check(set())``) passes; the
engine refuses the whole prepare otherwise (``CheckFailed``), since no member is to blame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

StageAndCheck = Callable[[set[str]], "str | None"]


@attrs.frozen
class Bisection:
    """The outcome of a search: the owners whose changes pass together, and each refused
    owner with the checker's message."""

    accepted: frozenset[str]
    refused: dict[str, str]


class Bisector:
    """Finds the largest set of owners whose changes pass ``stage_and_check`` together
    (see the module docstring). ``checks`` counts the calls made so far."""

    def __init__(self, stage_and_check: StageAndCheck):
        self.stage_and_check = stage_and_check
        self.checks = 0

    def _check(self, owners: set[str]) -> str | None:
        self.checks += 1
        return self.stage_and_check(owners)

    def search(self, owners: Iterable[str], failure: str | None = None) -> Bisection:
        """Search among ``owners``. ``failure`` is the message of a check of all of them
        already run (it is then not run again); without it, that check runs first."""
        owners = set(owners)
        if failure is None:
            failure = self._check(owners)
            if failure is None:
                return Bisection(frozenset(owners), {})
        accepted: set[str] = set()
        failures: dict[str, str] = {}

        def settle(group: list[str], known: str | None) -> None:
            failed = known if known is not None else self._check(accepted | set(group))
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
        refused: dict[str, str] = {}
        for owner, failed in sorted(failures.items()):
            alone = self._check({owner}) if accepted else failed
            if alone is None:
                refused[owner] = f"conflicts with other changes in this batch: {failed}"
            else:
                refused[owner] = alone
        return Bisection(frozenset(accepted), refused)
