"""regen's shortcuts (``AdminOps._regen_kept``'s one policy check per member and
``plan.same_as_stored``) give what the long way round gives: an unchanged member is not
decoded nor compared; a member whose stored part differs, or whose permissions changed
so that ownership now fails, still is; dry run and ``--doit`` answer and apply exactly
what regen without the shortcuts does."""

from __future__ import annotations

import json

import pytest

from domtool.dispatcher import plan as plan_mod
from domtool.lang import api

from .harness import ALICE, BOB, ROOT, example, files, make_dispatcher


def _site(shortcuts: bool = True):
    d = make_dispatcher()
    d.controller.REGEN_SHORTCUTS = shortcuts
    assert d.run(ALICE, "submit", files=files(example_org=example("example.org")))["applied"]
    assert d.run(ALICE, "submit", files=files(example_net=example("example.net")))["applied"]
    assert d.run(BOB, "submit", files=files(bob_org='dom "bob.org" with end;'))["applied"]
    return d


def _spy_current(d) -> list[str]:
    """The members whose held parts regen decodes (``Controller.current``)."""
    asked: list[str] = []
    real = d.controller.current

    def current(member):
        asked.append(member)
        return real(member)

    d.controller.current = current
    return asked


def _evaluate_with_old_perms(d, user: str) -> None:
    """The language checked against ``user``'s grants as they are now, whatever they
    become: a language that let through what the grants no longer allow (the ownership
    check after evaluation is the dispatcher's second line, and must still hold)."""
    old = d.controller._perms(user)
    site = d.controller.site

    async def check_source(perms, files):
        return api.check_source(list(files), old if perms.user == user else perms, site)

    d.controller.check_source = check_source


def test_an_unchanged_member_is_neither_decoded_nor_compared():
    d = _site()
    asked = _spy_current(d)
    d.forget_calls()
    out = d.run(ROOT, "regen", apply=True)
    assert out["applied"] and out["plan"] == {} and out["dropped"] == []
    assert asked == []  # every member was same_as_stored
    assert d.ops() == {"ns1": [], "web1": []}


def test_a_member_whose_stored_part_differs_is_not_skipped():
    """bob's record on ns1 says his zone has no records: his new part differs (regen
    plans and sends it); alice's does not (not decoded)."""
    d = _site()
    (text,) = d.store._db.execute(
        "SELECT state FROM deployed WHERE member = 'bob' AND host = 'ns1'"
    ).fetchone()
    state = json.loads(text)
    state["zones"][0]["records"] = []
    d.store.record_commit("ns1", 50, "applied", {"bob": state})
    asked = _spy_current(d)
    out = d.run(ROOT, "regen", apply=True)
    assert asked == ["bob"]
    assert out["plan"] == {
        "bob": {"ns1": {"added": [], "changed": ["zone:bob.org"], "removed": []}}
    }
    assert d.run(ROOT, "regen", apply=True)["plan"] == {}


def test_the_same_part_written_differently_is_decoded_and_found_equal():
    """A stored text that is not byte for byte what this code writes (an older
    dispatcher's spacing) is not same_as_stored: decoded, compared, and nothing changes."""
    d = _site()
    (text,) = d.store._db.execute(
        "SELECT state FROM deployed WHERE member = 'alice' AND host = 'web1'"
    ).fetchone()
    d.store._db.execute(
        "UPDATE deployed SET state = ? WHERE member = 'alice' AND host = 'web1'",
        (json.dumps(json.loads(text), indent=1),),
    )
    asked = _spy_current(d)
    d.forget_calls()
    out = d.run(ROOT, "regen", apply=True)
    assert asked == ["alice"] and out["plan"] == {}
    assert d.ops() == {"ns1": [], "web1": []}


def test_same_as_stored_compares_hosts_and_texts():
    d = _site()
    assert plan_mod.same_as_stored({}, {})
    texts = d.store.deployed_texts()
    held = {h: s for h, s in d.controller.current("alice").items()}
    alice = {h: t for (m, h), t in texts.items() if m == "alice"}
    assert set(alice) == {"ns1", "web1"}
    assert plan_mod.same_as_stored(held, alice)
    assert not plan_mod.same_as_stored({"ns1": held["ns1"]}, alice)  # a host fewer
    assert not plan_mod.same_as_stored(held, {**alice, "ns1": alice["web1"]})


def test_permissions_changed_so_ownership_fails_is_not_skipped():
    """alice's home is revoked and the language (stubbed) does not notice: her states
    are what the hosts hold, but the ownership check now refuses her vhosts' paths, so
    regen drops those files (exactly as without the shortcuts) instead of skipping her."""
    results = {}
    for shortcuts in (True, False):
        d = _site(shortcuts)
        _evaluate_with_old_perms(d, "alice")
        d.run(ROOT, "revoke", user="alice", **{"class": "path", "value": "/home/alice"})
        dry = d.run(ROOT, "regen")
        out = d.run(ROOT, "regen", apply=True)
        results[shortcuts] = (dry, out, d.slaves["ns1"].state, d.slaves["web1"].state)
    dry, out, _ns1, _web1 = results[True]
    assert "alice" in dry["plan"] and {x["member"] for x in dry["dropped"]} == {"alice"}
    assert any("does not own path /home/alice" in r for x in dry["dropped"] for r in x["reasons"])
    assert out["applied"] and out["plan"] == dry["plan"]
    assert results[True] == results[False]


@pytest.mark.parametrize(
    "change",
    ["nothing", "revoke_domain", "record_lost", "member_removed", "ownership", "bad_file"],
)
def test_dry_run_and_doit_are_those_of_regen_without_shortcuts(change):
    """The same site and change, regen with and without the shortcuts: the same dry run,
    the same --doit answer, the same ops sent to each host, the same hosts' states."""
    got = []
    for shortcuts in (True, False):
        d = _site(shortcuts)
        if change == "revoke_domain":
            d.run(ROOT, "revoke", user="alice", **{"class": "domain", "value": "example.net"})
        elif change == "record_lost":
            d.store.record_commit("web1", 99, "applied", {"alice": None})
        elif change == "member_removed":
            d.store.remove_member("bob")
        elif change == "ownership":
            _evaluate_with_old_perms(d, "bob")
            d.run(ROOT, "revoke", user="bob", **{"class": "user", "value": "bob"})
        elif change == "bad_file":
            d.store.put_source("bob", "bob.net", "dom nonsense", accepted=True)
        dry = d.run(ROOT, "regen")
        d.forget_calls()
        out = d.run(ROOT, "regen", apply=True)
        ops = d.ops()
        again = d.run(ROOT, "regen", apply=True)
        got.append((dry, out, ops, again["plan"], d.slaves["ns1"].state, d.slaves["web1"].state))
    assert got[0] == got[1]
    if change != "nothing":
        assert got[0][0]["plan"] or got[0][0]["dropped"]  # the change was seen
