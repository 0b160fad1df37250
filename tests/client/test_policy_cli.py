"""``domtool-admin firewall ...`` and ``domtool firewall`` over real TLS to the real
controller (in-memory store, fake slaves): what the admin sets is what the member sees on
each host, bad input exits 1 with the reason, and a dry run changes nothing."""

from __future__ import annotations

import json

import pytest

from domtool.client import admin_cli, domtool_cli
from domtool.dispatcher import ca
from domtool.dispatcher.auth import Member
from domtool.dispatcher.controller import OpError

from ..dispatcher.harness import make_dispatcher, result_of
from .fake_dispatcher import FakeDispatcher, Refuse, member_config

OPS = ["policy_set", "policy_show", "policy_check", "policy", "usage", "usage_of"]


@pytest.fixture
def site(tmp_path):
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")
    d = make_dispatcher()
    from domtool.slave import usage

    for slave in d.slaves.values():  # the usage answer of the real collector
        slave.usage_collector = usage.collect

    def handler(op):
        def run(member, args, progress):
            try:
                return result_of(d.controller.handle(Member(member, member == "root"), op, args))
            except OpError as e:
                raise Refuse(e.failure.kind, e.failure.message, e.failure.details) from None

        return run

    fake = FakeDispatcher(ca_dir, {op: handler(op) for op in OPS}, {"root", "alice"}).start()
    root = str(member_config(ca_dir, tmp_path / "root", "root", fake.port))
    alice = str(member_config(ca_dir, tmp_path / "alice", "alice", fake.port))
    yield d, root, alice
    fake.stop()


def test_admin_sets_member_sees_what_hosts_hold(site, capsys):
    d, root, alice = site
    code = admin_cli.main(["firewall", "add", "alice", "client", "tcp", "80,443", "--config", root])
    out = capsys.readouterr().out
    assert code == 0 and "applied" in out and "policy:alice" in out
    assert domtool_cli.main(["firewall", "--config", alice]) == 0
    out = capsys.readouterr().out
    assert "alice client tcp 80,443" in out and "on ns1: as above" in out
    assert "on web1: as above" in out
    assert admin_cli.main(["firewall", "list", "--config", root, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["members"]["alice"]["lines"] == ["alice client tcp 80,443"]
    assert admin_cli.main(["firewall", "check", "--config", root]) == 0
    assert "ok:" in capsys.readouterr().out


def test_bad_input_exits_1_with_the_reason_and_changes_nothing(site, capsys):
    d, root, alice = site
    code = admin_cli.main(["firewall", "add", "alice", "client", "tcp", "99999", "--config", root])
    _out, err = capsys.readouterr()
    assert code == 1 and "port 99999 is out of range" in err
    code = admin_cli.main(["firewall", "add", "alice", "bob", "server", "8080", "--config", root])
    _out, err = capsys.readouterr()
    assert code == 1 and "bob's user" in err
    assert d.store.policy_of("alice") is None
    assert all(not s.state.policies for s in d.slaves.values())
    assert admin_cli.main(["firewall", "add", "--config", root]) == 2


def test_dry_run_and_site_defaults(site, capsys):
    d, root, _alice = site
    argv = ["firewall", "add", "--site", "client", "udp", "53", "--dry-run", "--config", root]
    assert admin_cli.main(argv) == 0
    assert "dry run" in capsys.readouterr().out
    assert d.store.policy_of("*") is None and not d.slaves["ns1"].state.policies
    assert admin_cli.main(argv[:-3] + ["--config", root]) == 0
    assert {p.owner for p in d.slaves["ns1"].state.policies} == {"alice", "bob"}
    assert admin_cli.main(["firewall", "rate", "bob", "500k", "--config", root]) == 0
    (bob,) = [p for p in d.slaves["web1"].state.policies if p.owner == "bob"]
    assert bob.firewall.rate == 500 * 1024
