"""``Store.batch()``: the writes of a group-commit round in one transaction; a step that
fails inside it undoes only itself; an error out of the batch undoes all of it."""

from __future__ import annotations

import pytest

from domtool.dispatcher.store import Store, StoreError


def _store() -> Store:
    store = Store.connect(":memory:")
    store.add_member("alice")
    return store


def test_a_batch_keeps_every_step_and_a_failed_step_undoes_only_itself():
    store = _store()
    with store.batch():
        assert store.put_source("alice", "example.org", "one", accepted=True) == 1
        with pytest.raises(StoreError):
            store.put_source("nobody", "example.net", "x", accepted=True)
        assert store.put_source("alice", "example.org", "two", accepted=True) == 2
        store.audit("alice", "submit", {"n": 2}, "applied")
    assert [s.text for s in store.history("example.org")] == ["one", "two"]
    assert store.history("example.net") == []
    assert [e.action for e in store.audit_log(who="alice")] == ["submit"]


def test_an_error_out_of_a_batch_undoes_all_of_it():
    store = _store()
    with pytest.raises(RuntimeError), store.batch():
        store.put_source("alice", "example.org", "one", accepted=True)
        raise RuntimeError("the round failed")
    assert store.history("example.org") == []
    store.put_source("alice", "example.org", "after", accepted=True)
    assert [s.version for s in store.history("example.org")] == [1]
