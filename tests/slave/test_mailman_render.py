"""The Mailman backend's pure side: units, index, commands, probes; the slave's schema and
re-check of list domains. Hostile names never reach a unit file."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domtool import model
from domtool.model import DesiredState, ListDomain, MailingList
from domtool.slave import ops
from domtool.slave.backend import RenderRefused
from domtool.slave.backends.mailman import MailmanBackend, MailmanConfig, site_config
from domtool.slave.holders import holders
from domtool.slave.ops import Grants, OwnerChange

CONFIG = MailmanConfig(
    rest_config="/etc/domtool/mailman-rest.json",
    live_index="/s/current/mailman/lists.json",
    node="local",
)


def domain(
    owner="alice", name="example.org", lists=(("team", ("alice@example.org",)),), nodes=("local",)
):
    return ListDomain(
        name, owner, nodes, f"lists.{name}", tuple(MailingList(n, o) for n, o in lists), ("local",)
    )


def test_one_unit_per_list_domain_and_an_index_naming_them():
    b = MailmanBackend(CONFIG)
    state = DesiredState(lists=(domain(), domain("bob", "bob.org", (("x", ("b@bob.org",)),))))
    units = b.units(state, {}, 0)
    assert [u.key for u in units] == ["lists:bob.org", "lists:example.org"]
    data = json.loads(units[1].content)
    assert data == {
        "domain": "example.org",
        "member": "alice",
        "web_host": "lists.example.org",
        "lists": [{"name": "team", "owners": ["alice@example.org"]}],
    }
    paths = {u.key: PurePosixPath(f"/s/units/mailman/{i}.json") for i, u in enumerate(units)}
    index = json.loads(b.index(paths)["lists.json"])
    assert index == {"units": ["/s/units/mailman/0.json", "/s/units/mailman/1.json"]}
    (check,) = b.check_all(PurePosixPath("/s/generations/7"))
    assert check.argv[-3:] == (
        "--config",
        CONFIG.rest_config,
        "/s/generations/7/mailman/lists.json",
    )
    assert check.argv[3] == "check"
    (reload,) = b.reload()
    assert reload.argv[3] == "apply" and reload.argv[-1] == CONFIG.live_index
    probes = b.probes(state)
    assert [(p.kind, p.target[1], p.owner) for p in probes] == [
        ("mailman_list", "team@example.org", "alice"),
        ("mailman_list", "x@bob.org", "bob"),
    ]


def test_only_changed_units_are_probed_and_other_nodes_ignored():
    b = MailmanBackend(CONFIG)
    state = DesiredState(
        lists=(domain(), domain("bob", "bob.org", (("x", ("b@bob.org",)),), nodes=("other",)))
    )
    units = b.units(state, {}, 0)
    assert [u.key for u in units] == ["lists:example.org"]
    previous = {u.key: u for u in units}
    b.units(state, previous, 1)
    assert b.probes(state) == []


@given(st.text(min_size=1, max_size=40))
def test_hostile_list_names_are_refused_never_rendered(name):
    b = MailmanBackend(CONFIG)
    d = domain(lists=((name, ("alice@example.org",)),))
    try:
        (unit,) = b.units(DesiredState(lists=(d,)), {}, 0)
    except RenderRefused as e:
        assert e.owners == ("alice",)
        assert all(err.kind == "list domain" for err in e.errors)
        return
    assert json.loads(unit.content)["lists"][0]["name"] == name  # accepted only if valid
    from domtool import validate

    assert validate.check_list_name(name) == name


@pytest.mark.parametrize(
    "field, value",
    [("owner", "al ice"), ("name", "exa mple.org"), ("owners", "not-an-address"), ("owners", "")],
)
def test_bad_fields_are_refused_with_owner_and_field(field, value):
    kw = {"owner": "alice", "name": "example.org", "lists": (("team", ("alice@example.org",)),)}
    if field == "owners":
        kw["lists"] = (("team", (value,) if value else ()),)
    else:
        kw[field] = value
    with pytest.raises(RenderRefused) as e:
        MailmanBackend(CONFIG).units(DesiredState(lists=(domain(**kw),)), {}, 0)
    assert "list domain" in str(e.value)


def test_site_config_refuses_values_that_would_escape_their_line():
    ok = site_config(
        "/var/lib/m", rest_port=1, lmtp_port=2, smtp_port=3, rest_user="u", rest_password="p"
    )
    assert b"admin_pass: p\n" in ok and b"port: 1\n" in ok
    for bad in ({"rest_password": "p\n[webservice]"}, {"rest_user": "a:b"}):
        args = {"rest_user": "u", "rest_password": "p", **bad}
        with pytest.raises(ValueError):
            site_config("/var/lib/m", rest_port=1, lmtp_port=2, smtp_port=3, **args)
    with pytest.raises(ValueError):
        site_config(
            "relative", rest_port=1, lmtp_port=2, smtp_port=3, rest_user="u", rest_password="p"
        )


def test_the_slave_schema_takes_list_domains_and_the_recheck_refuses_bad_ones():
    d = domain()
    args = {"txid": "t1", "changes": {"alice": {"state": model.to_json(DesiredState(lists=(d,)))}}}
    parsed = ops.parse("prepare", args)
    assert parsed.changes["alice"].state.lists == (d,)
    grants = Grants()
    assert ops.recheck("alice", OwnerChange(DesiredState(lists=(d,)), grants), "local") == []
    bad = domain(lists=(("team-request", ("alice@example.org",)), ("ok", ("x",))))
    problems = ops.recheck("alice", OwnerChange(DesiredState(lists=(bad,)), grants), "local")
    assert any("lists[0].name" in p and "-request" in p for p in problems)
    assert any("lists[1].owners[0]" in p for p in problems)
    assert ops.recheck("bob", OwnerChange(DesiredState(lists=(d,)), grants), "local") == [
        "bob: list domain example.org: owner: belongs to 'alice', not to 'bob'"
    ]
    assert (
        "not served by this host"
        in ops.recheck("alice", OwnerChange(DesiredState(lists=(d,)), grants), "elsewhere")[0]
    )
    assert holders(DesiredState(lists=(d,)))[("list", "team@example.org")] == "alice"


def test_the_agent_refuses_to_remove_a_list_that_is_still_configured():
    """list_remove on the real agent: refused while the live state declares the list,
    refused on a host with no list backend, else handed to the backend's action."""
    from domtool.slave.agent import Refused
    from tests.slave.test_agent import make_host

    host = make_host()
    called = []
    host.agent.actions = {"list_remove": lambda o, fq, doit: called.append((o, fq, doit)) or {}}
    host.agent._state = DesiredState(lists=(domain(),))
    with pytest.raises(Refused, match="still in alice's configuration"):
        host.run(
            "list_remove", ops.parse("list_remove", {"owner": "alice", "list": "team@example.org"})
        )
    out = host.run(
        "list_remove",
        ops.parse("list_remove", {"owner": "alice", "list": "gone@example.org", "doit": True}),
    )
    assert called == [("alice", "gone@example.org", True)] and out["host"] == host.agent.host
    host.agent.actions = {}
    with pytest.raises(Refused, match="runs no mailing lists"):
        host.run(
            "list_remove", ops.parse("list_remove", {"owner": "alice", "list": "x@example.org"})
        )
