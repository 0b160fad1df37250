"""The slave's side of admin-set member policy: the prepare schema takes a MemberPolicy
(and refuses a bad one with its path), and the local re-check refuses another owner's
unit, a user the owner was not granted, root or a system account, a malformed rule, and
a reverse proxy to a port the owner may not serve."""

from __future__ import annotations

import attrs
import pytest

from domtool import model
from domtool.model import DesiredState, Firewall, FirewallRule, MemberPolicy, ProxyPass, Vhost
from domtool.slave import ops
from domtool.slave.ops import BadArgs, Grants, OwnerChange


def policy(owner="alice", users=("alice",), rules=None, **kw) -> MemberPolicy:
    if rules is None:
        rules = (FirewallRule(users[0], "server", "tcp", ((8080, 8080),)),)
    return MemberPolicy(owner, ("web1",), users, Firewall(rules, ("10.0.0.5",), **kw))


def prepare(state: DesiredState, owner="alice") -> dict:
    return {
        "txid": "tx-1",
        "changes": {owner: {"state": model.to_json(state), "grants": {"users": [owner]}}},
    }


def recheck(state: DesiredState, owner="alice", users=("alice",)) -> list[str]:
    return ops.recheck(owner, OwnerChange(state, Grants(users=users)), "web1")


def test_a_policy_passes_the_schema_and_comes_back_equal():
    state = DesiredState(policies=(policy(),))
    args = ops.parse("prepare", prepare(state))
    assert args.changes["alice"].state == state
    assert recheck(state) == []


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda j: j["firewall"]["rules"][0].update(mode="listen"), "mode"),
        (lambda j: j["firewall"]["rules"][0].update(ports=[[1, 70000]]), "ports"),
        (lambda j: j["firewall"]["rules"][0].update(proto="sctp"), "proto"),
        (lambda j: j["firewall"].update(rate=0), "rate"),
        (lambda j: j.update(users=["Not A User"]), "users"),
        (lambda j: j["firewall"]["rules"][0].update(hosts=["a b"]), "hosts"),
    ],
)
def test_the_schema_refuses_a_bad_policy_with_its_path(mutate, where):
    data = prepare(DesiredState(policies=(policy(),)))
    mutate(data["changes"]["alice"]["state"]["policies"][0])
    with pytest.raises(BadArgs) as e:
        ops.parse("prepare", data)
    assert any(where in path for path, _msg in e.value.problems), e.value.problems


def test_recheck_refusals():
    assert "belongs to 'bob'" in " ".join(recheck(DesiredState(policies=(policy("bob"),))))
    bobs = policy(users=("alice", "bob"))
    assert "'bob' is not one of alice's granted users" in " ".join(
        recheck(DesiredState(policies=(bobs,)))
    )
    rooted = policy(users=("root",))
    assert "superuser" in " ".join(recheck(DesiredState(policies=(rooted,)), users=("root",)))
    system = policy(users=("daemon",))
    assert "system account" in " ".join(
        recheck(DesiredState(policies=(system,)), users=("daemon",))
    )
    odd = policy(rules=(FirewallRule("bob", "client", "tcp", ((80, 80),)),))
    assert "not one of the policy's users" in " ".join(recheck(DesiredState(policies=(odd,))))
    backwards = policy(rules=(FirewallRule("alice", "client", "tcp", ((90, 80),)),))
    assert "backwards" in " ".join(recheck(DesiredState(policies=(backwards,))))


def test_recheck_refuses_a_proxy_to_a_port_the_owner_may_not_serve(tmp_path):
    (tmp_path / "www").mkdir()
    v = Vhost(
        fqdn="www.alice.org",
        owner="alice",
        domain="alice.org",
        nodes=("web1",),
        document_root=str(tmp_path / "www"),
        user="alice",
        group="alice",
        server_admin="alice@alice.org",
        proxies=(ProxyPass("/app", 9090),),
    )
    change = OwnerChange(
        DesiredState(vhosts=(v,), policies=(policy(),)),
        Grants(paths=(str(tmp_path),), users=("alice",), groups=("alice",)),
    )
    problems = ops.recheck("alice", change, "web1")
    assert any("may not serve tcp port 9090" in p for p in problems), problems
    ok = attrs.evolve(
        change,
        state=attrs.evolve(
            change.state, vhosts=(attrs.evolve(v, proxies=(ProxyPass("/app", 8080),)),)
        ),
    )
    assert not [p for p in ops.recheck("alice", ok, "web1") if "proxy" in p]


def test_a_slave_config_enables_the_nft_backend(tmp_path):
    from domtool.slave.backends.nft import NftBackend
    from domtool.slave.config import parse
    from domtool.slave.service import ConfigError, build_backends

    def config(table: str):
        text = (
            f'[slave]\nhost = "h1.example.coop"\nnode = "h1"\n'
            f'dispatcher = ["d.example.coop"]\nstate_dir = "{tmp_path}/state"\n'
            '[tls]\ncertificate = "c.pem"\nkey = "k.pem"\nca = "ca.pem"\ncrl = "crl.pem"\n'
            f"[backends.nft]\n{table}"
        )
        return parse(text, str(tmp_path))

    (backend,) = build_backends(config('nft = "/usr/sbin/nft"\n')).values()
    assert isinstance(backend, NftBackend)
    assert backend.config.node == "h1" and backend.config.state_dir == f"{tmp_path}/state"
    with pytest.raises(ConfigError, match="unknown key"):
        build_backends(config('nft_path = "/x"\n'))
