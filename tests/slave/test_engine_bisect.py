"""The engine's bisector on its own (``domtool.slave.bisect``): exact culprits, bounded checks.

The checker here is a model of a whole-configuration check: a set of owners' changes fails
when it holds a culprit (its message names the first one), or both owners of a
conflicting pair. No engine, files or daemons are involved.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.slave.bisect import Bisector


def owners(n: int) -> list[str]:
    return [f"member{i:04d}" for i in range(n)]


class Checker:
    """Fails a group holding a culprit or a whole conflicting pair; records every call."""

    def __init__(self, culprits=(), pairs=()):
        self.culprits = set(culprits)
        self.pairs = [set(p) for p in pairs]
        self.calls: list[frozenset[str]] = []

    def __call__(self, group: set[str]) -> str | None:
        self.calls.append(frozenset(group))
        hit = sorted(group & self.culprits)
        if hit:
            return f"{hit[0]}: broken"
        for pair in self.pairs:
            if pair <= group:
                return f"{' and '.join(sorted(pair))} clash"
        return None


def bound(n: int, k: int) -> int:
    """2·k·⌈log2 n⌉ halving checks, one check of all owners, and one check alone per
    culprit (to tell a broken change from one that conflicts with the batch)."""
    return 2 * k * math.ceil(math.log2(n)) + k + 1 if n > 1 else k + 1


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_it_finds_exactly_the_culprits_in_bounded_checks(case):
    n, picked = case
    everyone = owners(n)
    culprits = {everyone[i] for i in picked}
    check = Checker(culprits)
    bisector = Bisector(check)
    found = bisector.search(everyone)
    assert found.accepted == set(everyone) - culprits
    assert set(found.refused) == culprits
    for owner, message in found.refused.items():
        assert message == f"{owner}: broken"  # each culprit gets its own checker message
    assert bisector.checks == len(check.calls) <= bound(n, len(culprits))
    assert frozenset() not in check.calls  # "no change" is the caller's precondition


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 300), st.data())
def test_a_known_failure_is_not_checked_again(n, data):
    everyone = owners(n)
    culprits = set(data.draw(st.sets(st.sampled_from(everyone), min_size=1)))
    told = Checker(culprits)
    found = Bisector(told).search(everyone, told(set(everyone)))
    fresh = Checker(culprits)
    again = Bisector(fresh).search(everyone)
    assert (found.accepted, found.refused) == (again.accepted, again.refused)
    assert told.calls == fresh.calls  # the same search, the first check not repeated


def test_the_bound_is_logarithmic_not_linear():
    check = Checker({"member0500"})
    bisector = Bisector(check)
    found = bisector.search(owners(1000))
    assert set(found.refused) == {"member0500"}
    assert bisector.checks <= bound(1000, 1) == 22  # not 1,000


def test_no_culprit_costs_one_check():
    check = Checker()
    found = Bisector(check).search(owners(50))
    assert found.accepted == set(owners(50)) and found.refused == {}
    assert check.calls == [frozenset(owners(50))]


def test_owners_that_pass_alone_but_clash_are_told_they_conflict():
    everyone = owners(8)
    a, b = everyone[2], everyone[6]
    check = Checker(pairs=[(a, b)])
    found = Bisector(check).search(everyone)
    assert found.accepted == set(everyone) - {b}  # the first in name order goes in
    assert found.refused == {b: f"conflicts with other changes in this batch: {a} and {b} clash"}


def test_every_owner_broken_is_refused_with_its_own_message():
    everyone = owners(5)
    check = Checker(set(everyone))
    found = Bisector(check).search(everyone)
    assert found.accepted == frozenset()
    assert found.refused == {o: f"{o}: broken" for o in everyone}
