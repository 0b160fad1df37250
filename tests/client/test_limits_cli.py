"""``domtool-admin limits ...`` and ``domtool limits`` over real TLS to the real controller
(in-memory store, fake slaves): what the admin sets is what every host holds and what the
member sees; bad input (a limit below the site's minimum, bad units, an unknown limit or
member) exits 1 with the reason and changes nothing."""

from __future__ import annotations

import json

import pytest

from domtool.client import admin_cli, domtool_cli  # noqa: E402
from domtool.policies.limits import G, M

from .test_policy_cli import site  # noqa: F401  (the fixture: dispatcher, root, alice)


def _held(d, member):
    out = {}
    for host, slave in d.slaves.items():
        for p in slave.state.policies:
            if p.owner == member:
                out[host] = p.limits
    return out


def test_admin_sets_limits_member_sees_what_hosts_hold(site, capsys):  # noqa: F811
    d, root, alice = site
    argv = ["limits", "set", "--site", "memory=2G", "--config", root]
    assert admin_cli.main(argv) == 0, capsys.readouterr()
    capsys.readouterr()
    argv = ["limits", "set", "alice", "memory=512M", "processes=100", "--config", root]
    assert admin_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "applied" in out and "policy:alice" in out
    held = _held(d, "alice")
    assert set(held) == set(d.slaves)  # every host
    for lim in held.values():
        assert (lim.memory, lim.processes) == (512 * M, 100)
        assert set(lim.overridden) == {"memory", "processes"}
    bob = _held(d, "bob")
    assert all(lim.memory == 2 * G and lim.processes == 200 for lim in bob.values())
    assert domtool_cli.main(["limits", "--config", alice]) == 0
    out = capsys.readouterr().out
    assert "memory 512M (set for this member)" in out
    assert "processes 100 (set for this member)" in out
    assert "cgi_cpu 30s (site default)" in out
    for host in d.slaves:
        assert f"on {host}: as above" in out
    assert admin_cli.main(["limits", "list", "alice", "--config", root]) == 0
    shown = capsys.readouterr().out
    assert "site defaults: memory=2G" in shown
    assert "memory 512M (set for this member)" in shown
    assert admin_cli.main(["limits", "list", "--config", root, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["members"]["alice"]["record"]["limits"] == {
        "memory": 512 * M,
        "processes": 100,
    }
    # reset one limit: back to the site's default
    assert admin_cli.main(["limits", "reset", "alice", "memory", "--config", root]) == 0
    capsys.readouterr()
    assert all(lim.memory == 2 * G for lim in _held(d, "alice").values())
    assert admin_cli.main(["limits", "check", "--config", root]) == 0
    assert "ok:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["alice", "memory=1M"], "memory: 1M is below what the site allows (at least 64M)"),
        (["alice", "processes=100000"], "above the site's maximum"),
        (["alice", "memory=12X"], "is not a size"),
        (["alice", "ram=1G"], "unknown limit 'ram'"),
        (["mallory", "memory=1G"], "mallory is not an active member"),
        (["alice", "memory"], "LIMIT=VALUE"),
    ],
)
def test_bad_input_exits_1_with_the_reason_and_changes_nothing(site, capsys, words, message):  # noqa: F811
    d, root, _alice = site
    code = admin_cli.main(["limits", "set", *words, "--config", root])
    _out, err = capsys.readouterr()
    assert code == 1 and message in err, err
    assert d.store.policy_of("alice") is None
    assert all(not s.state.policies for s in d.slaves.values())


def test_dry_run_changes_nothing(site, capsys):  # noqa: F811
    d, root, _alice = site
    argv = ["limits", "set", "alice", "cgi_cpu=10", "--dry-run", "--config", root]
    assert admin_cli.main(argv) == 0
    assert "dry run" in capsys.readouterr().out
    assert d.store.policy_of("alice") is None
    assert all(not s.state.policies for s in d.slaves.values())


def test_usage_asks_every_host_about_the_member_only(site, capsys):  # noqa: F811
    d, root, alice = site
    d.forget_calls()
    assert domtool_cli.main(["usage", "--config", alice]) == 0
    out = capsys.readouterr().out
    assert out.startswith("alice:")
    for host in d.slaves:
        assert f"on {host} (limits enforced by: not known):" in out
    assert "web        not collected (this host keeps no per-member logs" in out
    assert "outbound   not collected" in out
    calls = [c for link in d.links.values() for c in link.calls if c[0] == "usage"]
    assert len(calls) == len(d.slaves) and all(c[1] == {"owner": "alice"} for c in calls)
    assert admin_cli.main(["usage", "--config", root, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["members"]) >= {"alice", "bob"}
    assert admin_cli.main(["usage", "mallory", "--config", root]) == 1
    assert "mallory is not an active member" in capsys.readouterr().err
