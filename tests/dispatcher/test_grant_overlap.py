"""Grants cannot overlap another member's unless an admin says ``--shared`` (issue 13).

Before: ``Store.grant`` gave example.org to alice and to bob, and the slaves' "live holder
keeps" rule locked the later one out (seen failing first: every refusal test below).
"""

from __future__ import annotations

import pytest

from domtool.dispatcher.store import GrantOverlap, Store
from domtool.policies.grant_overlap import overlaps
from tests.dispatcher.harness import ROOT, make_dispatcher


@pytest.fixture
def store():
    s = Store.connect(":memory:")
    for m in ("alice", "bob"):
        s.add_member(m)
    s.grant("alice", "domain", "example.org")
    s.grant("alice", "domain", "sub.example.net")
    s.grant("alice", "path", "/home/alice")
    s.grant("alice", "user", "alice")
    s.grant("alice", "group", "www")
    return s


@pytest.mark.parametrize(
    "cls,value,shown",
    [
        ("domain", "example.org", "alice holds domain example.org (the same domain)"),
        ("domain", "EXAMPLE.org", "alice holds domain example.org (the same domain)"),
        ("domain", "shop.example.org", "alice holds domain example.org (inside example.org)"),
        ("domain", "a.shop.example.org", "alice holds domain example.org (inside example.org)"),
        (
            "domain",
            "example.net",
            "alice holds domain sub.example.net (sub.example.net is inside it)",
        ),
        ("path", "/home/alice/www", "alice holds path /home/alice (inside /home/alice)"),
        ("path", "/home/alice/", "alice holds path /home/alice (the same path)"),
        ("path", "/home", "alice holds path /home/alice (/home/alice is inside it)"),
        ("user", "alice", "alice holds user alice (the same name)"),
        ("group", "www", "alice holds group www (the same name)"),
    ],
)
def test_an_overlapping_grant_is_refused_showing_the_overlap(store, cls, value, shown):
    with pytest.raises(GrantOverlap) as e:
        store.grant("bob", cls, value)
    assert e.value.overlaps == [shown]
    assert "--shared" in str(e.value)
    assert store.grants_of("bob").grants() == ()


def test_non_overlapping_grants_pass(store):
    for cls, value in (
        ("domain", "notexample.org"),
        ("domain", "other.example.net"),
        ("path", "/home/alicex"),
        ("path", "/home/bob"),
        ("user", "bob"),
        ("group", "bob"),
    ):
        assert store.grant("bob", cls, value) is True


def test_shared_grants_and_removed_members(store):
    assert store.grant("bob", "group", "www", shared=True) is True
    assert store.whohas("group", "www") == ["alice", "bob"]
    store.remove_member("alice")  # a removed member's grants no longer overlap
    store.add_member("carol")
    assert store.grant("carol", "domain", "example.org") is True


def test_the_admin_op_refuses_with_the_overlaps_and_shows_them_when_shared():
    d = make_dispatcher()  # alice holds example.org and example.net
    e = d.refusal(ROOT, "grant", user="bob", **{"class": "domain", "value": "www.example.org"})
    assert e.failure.details == ("alice holds domain example.org (inside example.org)",)
    out = d.run(
        ROOT, "grant", user="bob", shared=True, **{"class": "domain", "value": "www.example.org"}
    )
    assert out["changed"] is True and out["shared"] is True
    assert out["overlaps"] == ["alice holds domain example.org (inside example.org)"]


def test_overlaps_is_pure_and_lists_each_holder():
    assert overlaps("domain", "a.b.org", [("x", "b.org"), ("y", "c.org"), ("z", "a.b.org")]) == [
        "x holds domain b.org (inside b.org)",
        "z holds domain a.b.org (the same domain)",
    ]
