"""Admin-set member policy at the dispatcher (issue 11): stored, validated with clear
errors, placed on every node of the member's part and pushed through the two-phase apply;
a member's own submission cannot set it; a refused push changes nothing; the member sees
what the hosts hold; a reverse proxy only to a port the member may serve."""

from __future__ import annotations

import pytest

from domtool.policies import member_policy as mp

from .harness import ALICE, BOB, ROOT, example, files, make_dispatcher


@pytest.fixture
def d():
    return make_dispatcher()


def fw(d, action, value="", **who):
    return d.run(ROOT, "policy_set", part="firewall", action=action, value=value, **who)


def test_an_admin_rule_reaches_every_node_and_the_member_sees_it(d):
    out = fw(d, "add", "client tcp 80,443", user="alice")
    assert out["applied"], out
    assert d.ops() == {"ns1": ["prepare", "commit"], "web1": ["prepare", "commit"]}
    for host in ("ns1", "web1"):
        (pol,) = d.slaves[host].state.policies
        assert pol.owner == "alice" and pol.users == ("alice",)
        assert [mp.format_rule(r) for r in pol.firewall.rules] == ["alice client tcp 80,443"]
    mine = d.run(ALICE, "policy")
    assert mine["lines"] == ["alice client tcp 80,443"]
    assert mine["hosts"] == {
        h: {"lines": mine["lines"], "live": None, "from": "host"} for h in ("ns1", "web1")
    }
    # a host that does not answer is shown from the dispatcher's record, and says so
    d.links["web1"].up = False
    mine = d.run(ALICE, "policy")
    assert mine["hosts"]["web1"]["lines"] == mine["lines"]
    assert mine["hosts"]["web1"]["from"].startswith("record")
    d.links["web1"].up = True
    assert d.run(BOB, "policy")["lines"] == []
    check = d.run(ROOT, "policy_check")
    assert check["ok"], check


def test_policy_travels_with_the_members_state_and_survives_a_submit(d):
    fw(d, "add", "server tcp 8080", user="alice")
    out = d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"], out
    web = d.slaves["web1"].state
    assert [v.fqdn for v in web.vhosts] == ["www.example.org"] and web.policies
    assert d.slaves["ns1"].state.policies and d.slaves["ns1"].state.zones
    # regen finds nothing to do: the same path placed the same unit
    d.forget_calls()
    again = d.run(ROOT, "regen", apply=True)
    assert again["hosts"] == {} and d.ops() == {"ns1": [], "web1": []}


@pytest.mark.parametrize(
    "value, words",
    [
        ("client tcp 70000", "out of range"),
        ("client tcp 0", "out of range"),
        ("client tcp 90-80", "backwards"),
        ("client sctp 80", "not a number"),
        ("alice listen tcp 80", "'listen' is not one of"),
        ("server tcp 80 to 10.0.0.1", "only a client rule names hosts"),
        ("client tcp 80 to nowhere", "not an IP address"),
        ("bob client tcp 80", "bob's user"),
        ("carol client tcp 80", "not one of alice's users"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(d, value, words):
    fw(d, "add", "client tcp 25", user="alice")
    before = [s.state for s in d.slaves.values()]
    stored = d.store.policy_of("alice")
    d.forget_calls()
    e = d.refusal(ROOT, "policy_set", part="firewall", action="add", value=value, user="alice")
    assert words in str(e.failure.message) + " ".join(e.failure.details), e.failure
    assert d.store.policy_of("alice") == stored
    assert [s.state for s in d.slaves.values()] == before
    assert d.ops() == {"ns1": [], "web1": []}


def test_unknown_member_and_part(d):
    e = d.refusal(ROOT, "policy_set", part="firewall", action="add", value="x", user="carol")
    assert "carol is not an active member" in e.failure.message
    e = d.refusal(ROOT, "policy_set", part="colour", action="add", value="x", user="alice")
    assert "unknown policy part" in e.failure.message


def test_members_may_not_set_policy(d):
    e = d.refusal(ALICE, "policy_set", part="firewall", action="add", value="x", user="alice")
    assert e.failure.kind == "unauthorized"


def test_a_refused_push_leaves_the_stored_policy_as_it_was(d):
    fw(d, "add", "client tcp 25", user="alice")
    stored = d.store.policy_of("alice")
    d.slaves["web1"].refuse["alice"] = "nft -c: syntax error"
    out = fw(d, "add", "client tcp 80", user="alice")
    assert not out["applied"] and "nft -c" in out["refused"][0]
    assert d.store.policy_of("alice") == stored
    assert d.run(ALICE, "policy")["lines"] == ["alice client tcp 25"]


def test_proxy_only_to_a_port_the_member_may_serve(d):
    fw(d, "add", "client tcp 80", user="alice")
    text = 'dom "example.org" with vhost "www" with proxyPass "/app" 8080; end; end;'
    out = d.run(ALICE, "submit", files=files(example_org=text))
    assert not out["applied"] and any("may not serve tcp port 8080" in r for r in out["refused"])
    fw(d, "add", "proxied tcp 8080", user="alice")
    out = d.run(ALICE, "submit", files=files(example_org=text))
    assert out["applied"], out
    # taking the port away again is refused while the proxy points at it
    e = d.refusal(
        ROOT, "policy_set", part="firewall", action="remove", value="proxied tcp 8080", user="alice"
    )
    assert "may not serve tcp port 8080" in e.failure.message


def test_site_defaults_apply_to_every_member_and_rate(d):
    out = fw(d, "add", "* client udp 53", site=True)
    assert out["applied"], out
    for who in ("alice", "bob"):
        (pol,) = [p for p in d.slaves["ns1"].state.policies if p.owner == who]
        assert [mp.format_rule(r) for r in pol.firewall.rules] == [f"{who} client udp 53"]
    fw(d, "rate", "1M", user="bob")
    (pol,) = [p for p in d.slaves["web1"].state.policies if p.owner == "bob"]
    assert pol.firewall.rate == 1024 * 1024
    e = d.refusal(
        ROOT, "policy_set", part="firewall", action="add", value="alice client tcp 1", site=True
    )
    assert "site default rule" in e.failure.message


def test_clearing_takes_the_policy_off_the_hosts(d):
    fw(d, "add", "client tcp 25", user="alice")
    out = fw(d, "clear", user="alice")
    assert out["applied"]
    assert all(not s.state.policies for s in d.slaves.values())
    assert d.store.policy_of("alice") is None


def test_the_wire_form_round_trips():
    part = mp.FirewallPart.from_json(
        {"rules": [mp.rule_to_json(mp.parse_rule("alice client tcp 80,8000-8100 to 10.1.0.0/16"))]}
    )
    assert mp.FirewallPart.from_json(part.to_json()) == part
    assert mp.format_rule(part.rules[0]) == "alice client tcp 80,8000-8100 to 10.1.0.0/16"
    with pytest.raises(mp.PolicyError, match="out of range"):
        mp.FirewallPart.from_json(
            {"rules": [{"user": "a", "mode": "client", "ports": [[1, 99999]]}]}
        )


def test_a_members_own_state_cannot_carry_policy(d):
    """Only the store's policy reaches the hosts: an evaluation carrying one is refused
    (the language has no way to make one), and placing always uses the stored one."""
    from domtool.model import DesiredState, Firewall, FirewallRule, MemberPolicy
    from domtool.perms import Permissions

    forged = MemberPolicy(
        "alice",
        ("ns1", "web1"),
        ("alice",),
        Firewall((FirewallRule("alice", "server", "tcp", ((1, 65535),)),)),
    )
    perms = d.store.grants_of("alice")
    assert isinstance(perms, Permissions)
    ev = d.controller._policy(perms, DesiredState(policies=(forged,)))
    assert ev.state is None and "cannot set policy" in ev.refused[0]
    fw(d, "add", "client tcp 25", user="alice")
    placed = d.controller.place("alice", perms, {"web1": DesiredState(policies=(forged,))})
    assert {
        h: [mp.format_rule(r) for r in s.policies[0].firewall.rules] for h, s in placed.items()
    } == {
        "ns1": ["alice client tcp 25"],
        "web1": ["alice client tcp 25"],
    }


def test_a_removed_member_takes_its_policy_off_every_host(d):
    fw(d, "add", "client tcp 25", user="bob")
    out = d.run(ROOT, "rmuser", user="bob", apply=True)
    assert out["applied"], out
    assert all(p.owner != "bob" for s in d.slaves.values() for p in s.state.policies)
    assert d.store.policy_of("bob") is None
    d.forget_calls()
    assert d.run(ROOT, "regen", apply=True)["hosts"] == {}
