"""The limits backend's rendering (pure): every mechanism's settings follow from the
member's limits, names are checked again, and the index names every unit."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest

from domtool.model import DesiredState, Limits, MemberPolicy, Vhost
from domtool.policies.limits import M, MemberLimits
from domtool.slave.backend import RenderRefused
from domtool.slave.backends import limits as B
from domtool.slave.backends.apache import ApacheBackend, ApacheConfig, CgiLimits

LIM = Limits(processes=100, memory=512 * M, cpu_weight=50, cgi_cpu=10, cgi_wall=30, disk=2048 * M)


def policy(owner="alice", users=("alice",), limits=LIM) -> MemberPolicy:
    return MemberPolicy(owner, ("web1",), users, limits=limits)


def backend() -> B.LimitsBackend:
    return B.LimitsBackend(
        B.LimitsConfig("/etc/domtool/limits.json", "/s/current/limits/limits.json")
    )


def test_one_unit_per_member_with_every_mechanism():
    (unit,) = backend().units(DesiredState(policies=(policy(users=("alice", "alice_www")),)), {}, 0)
    assert (unit.key, unit.owner) == ("limits:alice", "alice")
    u = json.loads(unit.content)
    assert u["systemd"]["dropin"].splitlines()[1:] == [
        "[Slice]",
        "TasksMax=100",
        f"MemoryMax={512 * M}",
        "MemorySwapMax=0",
        "CPUWeight=50",
    ]
    assert u["cgroup_v1"] == {
        "pids": {"pids.max": "100"},
        "memory": {"memory.limit_in_bytes": str(512 * M)},
        "cpu": {"cpu.shares": "512"},
    }
    assert u["cgroup_v2"]["memory.max"] == str(512 * M) and u["cgroup_v2"]["cpu.weight"] == "50"
    assert "alice_www hard nproc 100" in u["pam_limits"]
    assert u["quota"] == {"users": ["alice", "alice_www"], "block_kib": 2048 * 1024}
    assert u["cgi"] == {"cpu_seconds": 10, "wall_seconds": 30}
    index = backend().index({"limits:alice": PurePosixPath("/s/units/limits/x.json")})
    assert json.loads(index["limits.json"]) == {"units": ["/s/units/limits/x.json"]}


def test_setquota_argv():
    assert B.setquota_argv("alice", 2048 * M, "/home") == (
        "setquota",
        "-u",
        "alice",
        "2097152",
        "2097152",
        "0",
        "0",
        "/home",
    )


@pytest.mark.parametrize(
    ("p", "field"),
    [
        (policy(owner="root", users=("root",)), "member"),
        (policy(users=("root",)), "users[0]"),
        (policy(users=("Bad Name",)), "users[0]"),
    ],
)
def test_bad_names_are_refused_for_their_owner(p, field):
    with pytest.raises(RenderRefused) as e:
        backend().units(DesiredState(policies=(p,)), {}, 0)
    assert e.value.errors[0].field == field


def test_a_zero_limit_is_refused():
    ml = MemberLimits("alice", 0, 1, 1, 1, 1, 1)
    with pytest.raises(RenderRefused, match="processes: must be a positive integer"):
        B.unit_content(ml)


def test_apache_renders_cgi_limits_from_the_policy_only_for_its_owner():
    config = ApacheConfig("/b.conf", "/l.conf", "/r", "/log", suexec=True)
    apache = ApacheBackend(config, cgi_limits_of=B.cgi_limits)

    def vh(owner):
        return Vhost(
            f"www.{owner}.org",
            owner,
            f"{owner}.org",
            ("web1",),
            f"/home/{owner}/www",
            owner,
            owner,
            f"w@{owner}.org",
        )

    state = DesiredState(vhosts=(vh("alice"), vh("bob")), policies=(policy(),))
    units = {u.owner: u.content.decode() for u in apache.units(state, {}, 0)}
    assert (
        "RLimitCPU 10 10" in units["alice"] and f"RLimitMEM {512 * M} {512 * M}" in units["alice"]
    )
    assert "RLimit" not in units["bob"]
    # a changed limit re-renders the owner's vhost (not served from the memo)
    state2 = DesiredState(
        vhosts=state.vhosts, policies=(policy(limits=Limits(100, 512 * M, 50, 20, 30, 1)),)
    )
    assert (
        "RLimitCPU 20 20"
        in {u.owner: u.content.decode() for u in apache.units(state2, {}, 0)}["alice"]
    )
    assert CgiLimits(5).lines() == ["RLimitCPU 5 5"]


def test_the_slave_recheck_refuses_limits_out_of_range():
    from domtool.policies import member_policy as mp

    bad = policy(limits=Limits(10**9, 512 * M, 50, 10, 30, 1, overridden=("ram",)))
    problems = mp.unit_problems("alice", bad, ["alice"])
    assert any("processes 1000000000 out of range" in p for p in problems), problems
    assert any("unknown limit 'ram'" in p for p in problems)
    assert mp.unit_problems("alice", policy(), ["alice"]) == []
