"""The agent's state records per owner (``domtool.slave.staterecords``): a one-owner change
writes that owner's record and the small index only; records read back exactly; old
whole-state records still read; pruning drops parts no kept generation names."""

from __future__ import annotations

import json

from domtool import model
from domtool.model import DesiredState
from domtool.slave.seams import FakeFileSystem, makedirs
from domtool.slave.staterecords import StateRecords
from domtool.states import compose
from tests.slave.fake_backend import zone

DIR = "/var/lib/domtool-slave/agent/states"


def _parts(n: int, **changed: str) -> dict[str, DesiredState]:
    out = {}
    for i in range(n):
        owner = f"m{i:03d}"
        out[owner] = DesiredState(
            zones=(zone(f"{owner}.example", owner, changed.get(owner, "v1")),)
        )
    return out


def _writes(fs: FakeFileSystem) -> list[str]:
    return [path for kind, path in fs.ops if kind == "write"]


def test_a_one_owner_change_writes_one_record_and_the_index():
    fs = FakeFileSystem()
    makedirs(fs, DIR)
    records = StateRecords(fs, DIR)
    records.write(1, _parts(50))
    assert len(_writes(fs)) == 51  # 50 parts + the index (each through a temporary file)
    fs.arm()
    records.write(2, _parts(50, m007="v2"))
    writes = _writes(fs)
    assert len(writes) == 2
    assert writes[0].startswith(f"{DIR}/owners/") and writes[1] == f"{DIR}/2.json.tmp"
    index = json.loads(fs.read(f"{DIR}/2.json"))
    assert index["generation"] == 2 and len(index["owners"]) == 50


def test_records_read_back_in_a_fresh_process_and_old_records_still_read():
    fs = FakeFileSystem()
    makedirs(fs, DIR)
    parts = _parts(5, m002="v9")
    StateRecords(fs, DIR).write(3, parts)
    assert StateRecords(fs, DIR).read(3) == compose(parts)
    assert StateRecords(fs, DIR).read(4) is None
    old = {"generation": 7, "state": model.to_json(compose(parts))}
    fs.write(f"{DIR}/7.json", json.dumps(old).encode())
    assert StateRecords(fs, DIR).read(7) == compose(parts)


def test_a_damaged_or_missing_part_is_an_error_not_a_wrong_state():
    fs = FakeFileSystem()
    makedirs(fs, DIR)
    StateRecords(fs, DIR).write(1, _parts(3))
    name = sorted(fs.listdir(f"{DIR}/owners"))[0]
    fs.write(f"{DIR}/owners/{name}", b'{"owner": "m000", "state": null}')
    try:
        StateRecords(fs, DIR).read(1)
    except ValueError as e:
        assert "does not hold what its name says" in str(e)
    else:
        raise AssertionError("a damaged part was read")
    fs.remove(f"{DIR}/owners/{name}")
    try:
        StateRecords(fs, DIR).read(1)
    except ValueError as e:
        assert "missing" in str(e)
    else:
        raise AssertionError("a missing part was read")


def test_prune_keeps_the_parts_of_kept_generations_only():
    fs = FakeFileSystem()
    makedirs(fs, DIR)
    records = StateRecords(fs, DIR)
    for g in range(1, 9):
        records.write(g, _parts(3, m001=f"v{g}"))
    assert len(fs.listdir(f"{DIR}/owners")) == 2 + 8
    records.prune({8}, newest=2)
    assert records.generations() == [7, 8]
    assert len(fs.listdir(f"{DIR}/owners")) == 2 + 2
    assert StateRecords(fs, DIR).read(7) == compose(_parts(3, m001="v7"))


def test_an_owners_mailing_lists_are_composed_recorded_and_read_back():
    """Every field of a part goes into the host state and its record: a list domain too
    (composing only zones, vhosts and mail dropped every owner's lists)."""
    from domtool.model import ListDomain, MailingList

    lists = ListDomain(
        "alice.example", "alice", ("local",), "lists.alice.example",
        (MailingList("team", ("a@alice.example",)),), ("local",),
    )  # fmt: skip
    parts = {
        "alice": DesiredState(zones=(zone("alice.example", "alice", "v1"),), lists=(lists,)),
        "bob": DesiredState(zones=(zone("bob.example", "bob", "v1"),)),
    }
    state = compose(parts)
    assert state.lists == (lists,) and len(state.zones) == 2
    fs = FakeFileSystem()
    makedirs(fs, DIR)
    StateRecords(fs, DIR).write(1, parts)
    assert StateRecords(fs, DIR).read(1).lists == (lists,)
    StateRecords(fs, DIR).write(2, state)  # a whole host state is split by owner first
    assert StateRecords(fs, DIR).read(2) == state
