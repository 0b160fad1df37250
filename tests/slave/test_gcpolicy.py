"""The slave's collector policy: off during blocking work, everything alive frozen after
it, and cyclic garbage frozen that way collected by the idle collection."""

from __future__ import annotations

import gc
import weakref

from domtool.slave.gcpolicy import GcPolicy


class Node:
    pass


def test_the_collector_is_off_during_work_and_what_survives_is_frozen():
    policy = GcPolicy()
    run = policy.wrap(lambda fn, *a: fn(*a))
    seen = []
    gc.unfreeze()
    try:
        kept = run(lambda: (seen.append(gc.isenabled()), [Node() for _ in range(100)])[1])
        assert seen == [False] and gc.isenabled()
        assert gc.get_freeze_count() >= 100 and len(kept) == 100
    finally:
        gc.unfreeze()


def test_frozen_cyclic_garbage_goes_at_the_idle_collection_unless_busy():
    policy = GcPolicy()
    run = policy.wrap(lambda fn, *a: fn(*a))
    gc.unfreeze()
    try:

        def make_cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        ref = run(make_cycle)  # the cycle is garbage, but frozen by the policy
        gc.collect()
        assert ref() is not None
        assert not policy.idle_collect(lambda: False)  # a transaction is pending
        assert ref() is not None
        assert policy.idle_collect() and policy.collections == 1
        assert ref() is None
    finally:
        gc.unfreeze()
