"""What the agent holds (issue 12, slave memory): a prepare whose parts are decoded afresh
keeps the live unit objects for the units that did not change (no second copy of the
host's state, the backends' memos see the objects they know), and the holder index lets
go of the previous parts at commit."""

from __future__ import annotations

import gc
import json
import weakref

from domtool import model
from domtool.model import DesiredState
from domtool.slave.holders import HolderIndex
from domtool.slave.ops import Grants, OwnerChange, PrepareArgs
from tests.slave.fake_backend import zone
from tests.slave.test_agent import host, tx  # noqa: F401  (the fixture)


def fresh(*zones) -> OwnerChange:
    """An owner's part as the wire gives it: decoded from JSON, so every object is new."""
    data = json.loads(json.dumps(model.to_json(DesiredState(zones=zones).normalised())))
    return OwnerChange(model.from_json(data), Grants())


def test_a_complete_prepare_of_the_same_parts_keeps_the_live_objects(host):  # noqa: F811
    host.run(
        "prepare",
        PrepareArgs(
            "t1",
            {
                "alice": fresh(zone("alice.example", "alice"), zone("a2.example", "alice")),
                "bob": fresh(zone("bob.example", "bob")),
            },
        ),
    )
    host.run("commit", tx("t1"))
    live = {z.name: z for z in host.agent.state.zones}
    host.run(
        "prepare",
        PrepareArgs(
            "t2",
            {
                # alice changes one zone of two; bob sends the same part again
                "alice": fresh(zone("alice.example", "alice", "v2"), zone("a2.example", "alice")),
                "bob": fresh(zone("bob.example", "bob")),
            },
            complete=True,
        ),
    )
    host.run("commit", tx("t2"))
    now = {z.name: z for z in host.agent.state.zones}
    assert now["bob.example"] is live["bob.example"]
    assert now["a2.example"] is live["a2.example"]
    assert now["alice.example"] != live["alice.example"]
    assert now["alice.example"].records[0].data == ("v2",)
    assert host.daemon.loaded["zone:alice.example"] != host.daemon.loaded.get("zone:a2.example")


def test_the_holder_index_lets_the_previous_parts_go_when_told_the_live_ones():
    index = HolderIndex()
    old = DesiredState(zones=(zone("a.example", "alice"),))
    new = DesiredState(zones=(zone("a.example", "alice"), zone("b.example", "alice")))
    assert index.conflicts({"alice": old}, {"alice"}, {}) == {}
    index.live({"alice": old})
    assert index.conflicts({"alice": new}, {"alice"}, {"alice": old}) == {}
    gone = weakref.ref(old)
    del old
    index.live({"alice": new})
    gc.collect()
    assert gone() is None
    # and the index still answers from the live part
    bob = DesiredState(zones=(zone("b.example", "bob"),))
    assert index.conflicts({"alice": new, "bob": bob}, {"bob"}, {"alice": new}) == {
        "bob": ["bob: zone b.example: already held by alice"]
    }


def test_names_held_by_two_owners_are_released_one_owner_at_a_time():
    index = HolderIndex()
    a = DesiredState(zones=(zone("x.example", "alice"),))
    b = DesiredState(zones=(zone("x.example", "bob"),))
    index.live({"alice": a, "bob": b})  # (a clash the live state should never have)
    c = DesiredState(zones=(zone("x.example", "carol"),))
    found = index.conflicts({"alice": a, "bob": b, "carol": c}, {"carol"}, {"alice": a, "bob": b})
    assert found == {"carol": ["carol: zone x.example: already held by alice, bob"]}
    index.live({"bob": b})
    found = index.conflicts({"bob": b, "carol": c}, {"carol"}, {"bob": b})
    assert found == {"carol": ["carol: zone x.example: already held by bob"]}
    index.live({})
    assert index.conflicts({"carol": c}, {"carol"}, {}) == {}
