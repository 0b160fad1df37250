"""The dispatcher's member and admin ops over fake slaves: check, plan, submit on two
hosts with different roles, history and undo, rmdom, refusals with clear messages, and
the exhaustive authorization matrix (alice touching bob's resources)."""

from __future__ import annotations

import pytest

from domtool import wire
from domtool.dispatcher.controller import OpError

from .harness import ALICE, BOB, ROOT, example, files, make_dispatcher


@pytest.fixture
def dispatcher():
    """A fresh in-memory dispatcher."""
    return make_dispatcher()


def test_check_returns_the_state_without_touching_hosts(dispatcher):
    """check type-checks the files with the member's permissions and contacts no host."""
    out = dispatcher.run(ALICE, "check", files=files(example_org=example("example.org")))
    assert out["ok"] and out["diagnostics"] == []
    assert out["state"]["kind"] == "DesiredState"
    assert [z["name"] for z in out["state"]["zones"]] == ["example.org"]
    assert dispatcher.ops() == {"ns1": [], "web1": []}


def test_check_reports_every_diagnostic(dispatcher):
    """A file that does not check comes back with its diagnostics, in Diagnostic.format()."""
    out = dispatcher.run(
        ALICE, "check", files=files(example_org='dom "example.org" with bogus end;')
    )
    assert not out["ok"] and out["state"] is None
    assert out["diagnostics"] and out["diagnostics"][0].startswith("example.org:")


def test_plan_lists_additions_per_host(dispatcher):
    """plan diffs per host: the zone on the DNS node, the vhost and mail on the web node."""
    out = dispatcher.run(ALICE, "plan", files=files(example_org=example("example.org")))
    assert out["hosts"] == {
        "ns1": {"added": ["zone:example.org"], "changed": [], "removed": []},
        "web1": {
            "added": ["mail:example.org", "vhost:www.example.org"],
            "changed": [],
            "removed": [],
        },
    }
    assert dispatcher.ops() == {"ns1": [], "web1": []}


def test_submit_applies_on_two_hosts_with_different_roles(dispatcher):
    """submit prepares then commits on the DNS node and the web node, each getting only
    its part, and records the source, the generations and an audit entry."""
    out = dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] is True and out["refused"] == []
    assert set(out["hosts"]) == {"ns1", "web1"}
    assert out["hosts"]["ns1"]["generation"] == 1 and out["hosts"]["ns1"]["status"] == "applied"
    assert out["hosts"]["ns1"]["verified"] == [
        {"kind": "dns", "target": ["example.org"], "owner": "alice"}
    ]
    assert dispatcher.ops() == {"ns1": ["prepare", "commit"], "web1": ["prepare", "commit"]}
    ns1, web1 = dispatcher.slaves["ns1"].state, dispatcher.slaves["web1"].state
    assert [z.name for z in ns1.zones] == ["example.org"] and not ns1.vhosts and not ns1.mail
    assert not web1.zones and [v.fqdn for v in web1.vhosts] == ["www.example.org"]
    assert out["versions"] == {"example.org": 1}
    assert [g.host for g in dispatcher.store.generations()] == ["ns1", "web1"]
    assert dispatcher.store.audit_log()[-1].action == "submit"


def test_a_second_domain_file_keeps_the_first(dispatcher):
    """A submit replaces only the domains it names: example.net joins example.org, and
    only the hosts whose part changed are contacted."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    dispatcher.forget_calls()
    out = dispatcher.run(ALICE, "submit", files=files(example_net=example("example.net")))
    assert out["applied"]
    assert sorted(z.name for z in dispatcher.slaves["ns1"].state.zones) == [
        "example.net",
        "example.org",
    ]
    dispatcher.forget_calls()
    again = dispatcher.run(ALICE, "submit", files=files(example_net=example("example.net")))
    assert again["applied"] and again["hosts"] == {}
    assert dispatcher.ops() == {"ns1": [], "web1": []}


def test_only_the_changed_host_is_contacted(dispatcher):
    """Adding a mail alias changes only web1's part (it serves mail): ns1 is not contacted."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    dispatcher.forget_calls()
    text = 'dom "example.org" with emailAlias "sales" "alice"; end;'
    before = dispatcher.run(ALICE, "plan", files=files(example_org=example("example.org")))
    assert before["hosts"] == {}
    out = dispatcher.run(ALICE, "submit", files=files(example_org=text))
    assert out["applied"], out
    assert out["plan"] == {"web1": {"added": [], "changed": ["mail:example.org"], "removed": []}}
    assert dispatcher.ops() == {"ns1": [], "web1": ["prepare", "commit"]}


def test_type_errors_are_refused_and_recorded_as_refused(dispatcher):
    """A submit that does not check applies nothing and its source is kept as refused."""
    out = dispatcher.run(
        ALICE, "submit", files=files(example_org='dom "example.org" with bogus end;')
    )
    assert out["applied"] is False and out["diagnostics"]
    assert dispatcher.ops() == {"ns1": [], "web1": []}
    assert [s.accepted for s in dispatcher.store.history("example.org")] == [False]


def test_history_and_undo(dispatcher):
    """history lists the member's versions; undo resubmits an accepted one."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    text = 'dom "example.org" with end; domain "example.org" with end;'
    dispatcher.run(ALICE, "submit", files=files(example_org='domain "example.org" with end;'))
    hist = dispatcher.run(ALICE, "history", domain="example.org")
    assert [v["version"] for v in hist["versions"]] == [1, 2]
    assert dispatcher.slaves["web1"].state.vhosts == ()
    out = dispatcher.run(ALICE, "undo", domain="example.org", version=1)
    assert out["applied"]
    assert [v.fqdn for v in dispatcher.slaves["web1"].state.vhosts] == ["www.example.org"]
    assert text  # (kept readable)


def test_rmdom_removes_the_domain_everywhere_and_regen_keeps_it_removed(dispatcher):
    """rmdom takes the domain's units off every host and records a tombstone."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    dispatcher.run(ALICE, "submit", files=files(example_net=example("example.net")))
    out = dispatcher.run(ALICE, "rmdom", domain="example.org")
    assert out["applied"], out
    assert [z.name for z in dispatcher.slaves["ns1"].state.zones] == ["example.net"]
    assert all(not v.fqdn.endswith("example.org") for v in dispatcher.slaves["web1"].state.vhosts)
    assert "example.org" not in dispatcher.controller.stored_files("alice")
    regen = dispatcher.run(ROOT, "regen", apply=True)
    assert regen["plan"] == {}


def test_prepare_refusal_reports_the_slaves_message(dispatcher):
    """A slave's checker refusing alice's part aborts everywhere with its message."""
    dispatcher.slaves["web1"].refuse["alice"] = "apache2ctl -t: Syntax error on line 3"
    out = dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert out["applied"] is False
    assert out["refused"] == ["web1: alice: apache2ctl -t: Syntax error on line 3"]
    assert dispatcher.slaves["ns1"].generation == 0 and dispatcher.slaves["web1"].generation == 0
    assert dispatcher.ops() == {"ns1": ["prepare", "abort"], "web1": ["prepare", "abort"]}


def test_quota_refuses_with_a_clear_message(dispatcher):
    """Over the domains quota: refused before any host is contacted, naming the quota."""
    dispatcher.run(ROOT, "set_quota", user="alice", resource="domains", value=1)
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    out = dispatcher.run(ALICE, "submit", files=files(example_net=example("example.net")))
    assert out["applied"] is False
    assert out["refused"] == [
        "alice would have 2 domains, over the quota of 1; ask an administrator to raise it "
        "(domtool-admin set-quota)"
    ]
    assert dispatcher.run(ROOT, "quota", user="alice")["limits"]["domains"] == 1


def test_reserved_names_refuse_with_a_clear_message(dispatcher):
    """Even granted, the site's own domain and another member's name under it are refused."""
    dispatcher.run(ROOT, "grant", user="alice", **{"class": "domain", "value": "coop.example"})
    out = dispatcher.run(
        ALICE, "submit", files=files(coop_example='dom "bob.coop.example" with end;')
    )
    assert out["applied"] is False
    assert any("bob.coop.example is reserved" in r and "member bob" in r for r in out["refused"])
    own = dispatcher.run(
        ALICE, "submit", files=files(coop_example='dom "alice.coop.example" with end;')
    )
    assert own["applied"], own


def test_non_admin_is_refused_every_admin_op(dispatcher):
    """Every admin op is refused to a member who is not an admin."""
    for op in sorted(wire.ADMIN_OPS):
        with pytest.raises(OpError) as e:
            dispatcher.run(ALICE, op)
        assert e.value.failure.kind == "unauthorized"


def test_perms_whoami_and_admin_views(dispatcher):
    """perms, whoami, perms_of, whohas and audit answer from the store."""
    assert dispatcher.run(ALICE, "whoami") == {"user": "alice", "admin": False}
    perms = dispatcher.run(ALICE, "perms")
    assert {"class": "domain", "value": "example.org"} in perms["grants"]
    assert dispatcher.run(ROOT, "perms_of", user="bob")["perms"]["domains"] == [
        "bob.net",
        "bob.org",
    ]
    assert dispatcher.run(ROOT, "whohas", **{"class": "user", "value": "bob"})["members"] == ["bob"]
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    assert dispatcher.run(ROOT, "audit", user="alice")["entries"][-1]["action"] == "submit"


def test_hosts_and_ping_show_generation_and_reachability(dispatcher):
    """hosts shows each host's generation and whether it answers."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    dispatcher.links["web1"].up = False
    hosts = dispatcher.run(ROOT, "hosts")["hosts"]
    assert hosts["ns1"]["reachable"] and hosts["ns1"]["generation"] == 1
    assert hosts["ns1"]["roles"] == ["dns"]
    assert not hosts["web1"]["reachable"] and hosts["web1"]["recorded_generation"] == 1
    assert "refused" in hosts["web1"]["message"]
    assert dispatcher.run(ROOT, "ping", host="ns1")["hosts"]["ns1"]["reachable"]


def test_describe_asks_the_hosts_serving_the_domain(dispatcher):
    """describe returns what each serving host made of the domain."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    out = dispatcher.run(ALICE, "describe", domain="example.org")
    assert set(out["hosts"]) == {"ns1", "web1"}
    assert out["hosts"]["ns1"]["zones"][0]["name"] == "example.org"
    admin = dispatcher.run(ROOT, "admin_describe", domain="example.org")
    assert set(admin["hosts"]) == {"ns1", "web1"}


def test_admin_rmdom_is_a_dry_run_unless_applied(dispatcher):
    """admin_rmdom shows its plan first, and removes only with apply."""
    dispatcher.run(ALICE, "submit", files=files(example_org=example("example.org")))
    dry = dispatcher.run(ROOT, "admin_rmdom", domain="example.org")
    assert dry["apply"] is False and dry["plan"]["alice"]["ns1"]["removed"] == ["zone:example.org"]
    assert dispatcher.slaves["ns1"].state.zones
    done = dispatcher.run(ROOT, "admin_rmdom", domain="example.org", apply=True)
    assert done["applied"] and not dispatcher.slaves["ns1"].state.zones


def test_adduser_and_rmuser(tmp_path):
    """adduser issues a certificate; rmuser (with apply) takes the member's config off
    every host, revokes the certificate and hands the new CRL to the listener."""
    from domtool.dispatcher import ca

    ca.init_ca(tmp_path / "ca", "example.coop")
    d = make_dispatcher(ca_dir=tmp_path / "ca")
    added = d.run(ROOT, "adduser", user="carol")
    assert added["cert_pem"].startswith("-----BEGIN CERTIFICATE")
    assert d.store.member("carol").cert_serial == int(added["serial"], 16)
    d.run(ALICE, "submit", files=files(example_org=example("example.org")))
    dry = d.run(ROOT, "rmuser", user="alice")
    assert dry["apply"] is False and "ns1" in dry["plan"] and d.slaves["ns1"].state.zones
    out = d.run(ROOT, "rmuser", user="alice", apply=True)
    assert out["applied"], out
    assert d.slaves["ns1"].state.zones == () and d.slaves["web1"].state.vhosts == ()
    assert not d.store.member("alice").active
    assert len(d.crls) == 1 and b"X509 CRL" in d.crls[0]


# -- the authorization matrix -------------------------------------------------------

# A file touching one of bob's resources, by resource kind (alice's file example.org).
BOB_RESOURCES = {
    "domain": 'dom "bob.org" with end;',
    "vhost path": 'dom "example.org" with web "x" where DocumentRoot = "/home/bob/www" with end; end;',
    "mail alias target domain": 'domain "bob.org" with handleMail; emailAlias "sales" "alice@example.org"; end;',
    "user": 'dom "example.org" with web "x" where User = "bob" with end; end;',
    "group": 'dom "example.org" with web "x" where Group = "bob" with end; end;',
}


def _file_ops(text: str, name: str = "example.org"):
    f = [{"name": name, "text": text}]
    return {"check": {"files": f}, "plan": {"files": f}, "submit": {"files": f}}


@pytest.mark.parametrize("kind", sorted(BOB_RESOURCES))
@pytest.mark.parametrize("op", ["check", "plan", "submit"])
def test_matrix_files_touching_bobs_resources_are_refused(dispatcher, op, kind):
    """check/plan/submit of a file that touches bob's resource (each kind) is refused for
    alice, with her diagnostics, and no host is contacted."""
    out = dispatcher.run(ALICE, op, **_file_ops(BOB_RESOURCES[kind])[op])
    assert out.get("ok", out.get("applied")) is False
    assert out["diagnostics"] or out["refused"]
    assert dispatcher.ops() == {"ns1": [], "web1": []}


@pytest.mark.parametrize("op", ["check", "plan", "submit"])
def test_matrix_a_file_named_after_bobs_domain_is_refused(dispatcher, op):
    """A file named after bob's domain (even with alice-only content) is refused: it would
    replace bob's stored source."""
    with pytest.raises(OpError) as e:
        dispatcher.run(ALICE, op, **_file_ops('dom "example.org" with end;', "bob.org")[op])
    assert e.value.failure.kind == "refused"
    assert "alice does not own the domain bob.org" in e.value.failure.message


VMAIL_HASH = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"


@pytest.mark.parametrize(
    "op,args",
    [
        ("describe", {"domain": "bob.org"}),
        ("history", {"domain": "bob.org"}),
        ("undo", {"domain": "bob.org", "version": 1}),
        ("rmdom", {"domain": "bob.org"}),
        ("describe", {"domain": "www.bob.org"}),
        ("rmdom", {"domain": "mail.bob.net"}),
        ("vmail", {"action": "add", "domain": "bob.org", "user": "x", "hash": VMAIL_HASH}),
        ("vmail", {"action": "rm", "domain": "bob.org", "user": "x", "doit": True}),
        ("vmail", {"action": "list", "domain": "bob.org"}),
        ("list_rm", {"list": "team@bob.org", "doit": True}),
    ],
)
def test_matrix_domain_ops_on_bobs_domain_are_refused(dispatcher, op, args):
    """describe, history, undo and rmdom of bob's domain (or a subdomain) are refused for
    alice, and bob's configuration stays as it was."""
    bob = dispatcher.run(BOB, "submit", files=files(bob_org='dom "bob.org" with end;'))
    assert bob["applied"]
    before = (dispatcher.slaves["ns1"].state, dispatcher.slaves["web1"].state)
    dispatcher.forget_calls()
    with pytest.raises(OpError) as e:
        dispatcher.run(ALICE, op, **args)
    assert e.value.failure.kind == "refused" and "alice does not own" in e.value.failure.message
    assert (dispatcher.slaves["ns1"].state, dispatcher.slaves["web1"].state) == before
    assert dispatcher.ops() == {"ns1": [], "web1": []}


def test_matrix_covers_every_member_op():
    """The matrix above covers every member op that names a resource; perms and whoami
    name none, nor do policy and usage (they answer about the caller only;
    test_member_policy.py shows bob's policy is not alice's, test_usage_ops.py that
    alice's usage asks the hosts about alice only)."""
    covered = {"check", "plan", "submit", "describe", "history", "undo", "rmdom", "vmail"}
    # The db_* ops' matrix (prefixes, another member's names) is test_databases.py's.
    covered |= {"db_create", "db_drop", "db_list", "db_passwd", "db_grant"}
    covered |= {"list_rm"}
    assert covered | {"perms", "whoami", "policy", "usage"} == wire.MEMBER_OPS


def test_the_dispatchers_own_ownership_check_catches_each_resource_kind():
    """Behind the language's checks, the evaluated state is checked again at the
    dispatcher: a unit of another owner, bob's domain, path, user, group, a vhost alias
    in bob's domain and a mail domain of bob's are each named."""
    from domtool.model import TLS, DesiredState, MailDomain, Record, Vhost, Zone
    from domtool.ownership import ownership_problems
    from domtool.perms import Permissions

    alice = Permissions(
        "alice", domains={"example.org"}, paths={"/home/alice"}, users={"alice"}, groups={"alice"}
    )

    def vhost(**kw):
        base = dict(
            fqdn="www.example.org",
            owner="alice",
            domain="example.org",
            nodes=("web1",),
            document_root="/home/alice/www",
            user="alice",
            group="alice",
            server_admin="alice@example.org",
        )
        return Vhost(**{**base, **kw})

    assert ownership_problems(DesiredState(vhosts=(vhost(),)), alice) == []
    cases = {
        "owner": DesiredState(vhosts=(vhost(owner="bob"),)),
        "domain": DesiredState(
            zones=(Zone("bob.org", "alice", (Record("@", "A", ("192.0.2.1",)),), ("ns1",)),)
        ),
        "path": DesiredState(vhosts=(vhost(document_root="/home/bob/www"),)),
        "tls path": DesiredState(vhosts=(vhost(tls=TLS("/home/bob/c.pem", "/home/alice/k.pem")),)),
        "user": DesiredState(vhosts=(vhost(user="bob"),)),
        "group": DesiredState(vhosts=(vhost(group="bob"),)),
        "alias": DesiredState(vhosts=(vhost(aliases=("www.bob.org",)),)),
        "mail domain": DesiredState(mail=(MailDomain("bob.org", "alice", ("web1",)),)),
    }
    expected = {
        "owner": "vhost www.example.org would belong to bob, not alice",
        "domain": "zone bob.org: alice does not own this domain",
        "path": "vhost www.example.org: alice does not own path /home/bob/www",
        "tls path": "vhost www.example.org: alice does not own path /home/bob/c.pem",
        "user": "vhost www.example.org: alice may not run as user bob",
        "group": "vhost www.example.org: alice may not use group bob",
        "alias": "vhost www.example.org: alice does not own the domain of www.bob.org",
        "mail domain": "mail domain bob.org: alice does not own this domain",
    }
    for kind, state in cases.items():
        assert ownership_problems(state, alice) == [expected[kind]], kind
