"""A round of many members' first signed serials writes the serial file once.

The slave (a real :class:`Agent`, real engine and backends, fake seams, as in
``test_authz_matrix_signed``) re-checks a whole prepare inside one ``GrantBook.batch``:
every member's newly accepted serial is kept in memory and ``grant-serials.json`` is
written once, before the prepare answers (so before anything those serials allowed can
go live). A restarted slave still refuses a replayed older serial of every member.
"""

from __future__ import annotations

import json

import pytest

from domtool import grantsig
from domtool.model import DesiredState
from domtool.slave import ops, verified
from domtool.slave.ops import OwnerChange, PrepareArgs
from domtool.slave.verified import GrantBook
from tests.integration.test_authz_matrix_signed import KEY, PUB
from tests.integration.test_authz_matrix_slave import make_agent, run, zone

MEMBERS = [f"m{i:02}" for i in range(30)]


def signed(member: str, serial: int) -> grantsig.SignedGrants:
    record = grantsig.GrantRecord.of(member, serial, [("domain", f"{member}.example")])
    return grantsig.sign(record, KEY)


def change(member: str, serial: int) -> OwnerChange:
    part = DesiredState(zones=(zone(f"{member}.example", member),)).normalised()
    return OwnerChange(part, ops.Grants(), signed(member, serial))


@pytest.fixture
def writes(monkeypatch) -> list[dict]:
    """Each write of the serial file (what it held, through the module's atomic_write),
    and each fsync of its directory."""
    out: list[dict] = []
    real = verified.atomic_write

    def spy(path, data, *a, **kw):
        out.append(json.loads(data))
        return real(path, data, *a, **kw)

    monkeypatch.setattr(verified, "atomic_write", spy)
    real_dir = verified.fsync_dir

    def spy_dir(path):
        out.append({"fsync_dir": path})
        return real_dir(path)

    monkeypatch.setattr(verified, "fsync_dir", spy_dir)
    return out


def test_a_round_of_many_first_serials_writes_the_serial_file_once(tmp_path, writes):
    """30 members' first serials in one prepare: one write holding all 30, on disk when
    the prepare answers; after a restart each member's older serial is refused."""
    path = tmp_path / "agent" / "grant-serials.json"
    agent = make_agent(tmp_path)
    agent.grant_book = GrantBook([PUB], str(path))
    args = PrepareArgs("t-round", {m: change(m, 10) for m in MEMBERS})
    answer = run(agent, "prepare", args)
    assert all(answer["owners"][m]["ok"] for m in MEMBERS), answer
    assert writes == [{m: 10 for m in MEMBERS}, {"fsync_dir": str(path.parent)}]
    assert json.loads(path.read_text()) == {m: 10 for m in MEMBERS}  # before the commit
    assert run(agent, "commit", ops.TxArgs("t-round"))["status"] == "applied"
    # The same serials again: nothing new to record, no write.
    again = run(agent, "prepare", PrepareArgs("t-same", {m: change(m, 10) for m in MEMBERS}))
    run(agent, "abort", ops.TxArgs("t-same"))
    assert all(again["owners"][m]["ok"] for m in MEMBERS) and len(writes) == 2
    # Newer serials for all: one more write.
    newer = run(agent, "prepare", PrepareArgs("t-11", {m: change(m, 11) for m in MEMBERS}))
    run(agent, "abort", ops.TxArgs("t-11"))
    assert all(newer["owners"][m]["ok"] for m in MEMBERS)
    assert writes[2:] == [{m: 11 for m in MEMBERS}, {"fsync_dir": str(path.parent)}]
    # A restart: the floor came from the file, the replay of serial 10 is refused.
    restarted = make_agent(tmp_path)
    restarted.grant_book = GrantBook([PUB], str(path))
    replay = run(restarted, "prepare", PrepareArgs("t-10", {m: change(m, 10) for m in MEMBERS}))
    for m in MEMBERS:
        v = replay["owners"][m]
        assert v["ok"] is False and "older than serial 11" in v["message"], v


def test_an_older_serial_in_the_same_round_is_refused_and_the_newer_recorded(tmp_path, writes):
    """Within one batch the floor rises at once: a second book sees it only on disk, and
    after the batch it is there."""
    path = tmp_path / "grant-serials.json"
    book = GrantBook([PUB], str(path))
    with book.batch():
        book.verified("m00", signed("m00", 5))
        book.verified("m01", signed("m01", 7))
        with pytest.raises(grantsig.GrantSigError, match="older than serial 5"):
            book.verified("m00", signed("m00", 4))
        assert writes == [] and not path.exists()
    assert writes == [{"m00": 5, "m01": 7}, {"fsync_dir": str(tmp_path)}]
    with pytest.raises(grantsig.GrantSigError, match="older than serial 7"):
        GrantBook([PUB], str(path)).verified("m01", signed("m01", 6))


def test_a_failing_save_at_the_end_of_a_batch_fails_and_is_tried_again(tmp_path, monkeypatch):
    """The batch's write failing raises out of it (the prepare fails); the next batch,
    even with nothing new, writes the serials still not on disk."""
    path = tmp_path / "grant-serials.json"
    book = GrantBook([PUB], str(path))
    real = verified.atomic_write
    fail = [True]

    def flaky(p, data, *a, **kw):
        if fail[0]:
            raise OSError(28, "No space left on device", p)
        return real(p, data, *a, **kw)

    monkeypatch.setattr(verified, "atomic_write", flaky)
    with pytest.raises(OSError), book.batch():
        book.verified("m00", signed("m00", 3))
    assert not path.exists()
    fail[0] = False
    with book.batch():
        book.verified("m00", signed("m00", 3))  # (not new: the floor is 3 in memory)
    assert json.loads(path.read_text()) == {"m00": 3}


def test_the_same_record_twice_in_a_batch_is_verified_once(tmp_path, monkeypatch):
    """The agent asks for an owner's grants twice a prepare (re-check, snapshot paths):
    inside a batch the second is the first's answer, unless a newer serial came since."""
    book = GrantBook([PUB], str(tmp_path / "grant-serials.json"))
    calls = []
    real = grantsig.verify
    monkeypatch.setattr(grantsig, "verify", lambda *a: calls.append(a) or real(*a))
    s5, s6 = signed("m00", 5), signed("m00", 6)
    with book.batch():
        first = book.verified("m00", s5)
        assert book.verified("m00", s5) is first and len(calls) == 1
        book.verified("m00", s6)
        with pytest.raises(grantsig.GrantSigError, match="older than serial 6"):
            book.verified("m00", s5)
    book.verified("m00", s6)
    assert len(calls) == 4  # (outside a batch nothing is remembered)
