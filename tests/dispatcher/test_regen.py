"""regen: replay every member's stored sources with today's permissions; dry run first;
twice changes nothing and contacts no host; a revoked grant removes exactly its domain."""

from __future__ import annotations

from .harness import ALICE, BOB, ROOT, example, files, make_dispatcher


def _site_with_two_members():
    d = make_dispatcher()
    assert d.run(ALICE, "submit", files=files(example_org=example("example.org")))["applied"]
    assert d.run(ALICE, "submit", files=files(example_net=example("example.net")))["applied"]
    assert d.run(BOB, "submit", files=files(bob_org='dom "bob.org" with end;'))["applied"]
    return d


def test_regen_of_a_converged_site_contacts_no_host_and_twice_changes_nothing():
    """Nothing changed since the submits: regen plans nothing and sends nothing, twice."""
    d = _site_with_two_members()
    reloads = {h: s.reloads for h, s in d.slaves.items()}
    d.forget_calls()
    for _ in range(2):
        out = d.run(ROOT, "regen", apply=True)
        assert out["applied"] and out["plan"] == {} and out["hosts"] == {} and out["dropped"] == []
    assert d.ops() == {"ns1": [], "web1": []}
    assert {h: s.reloads for h, s in d.slaves.items()} == reloads


def test_shrinking_permissions_removes_exactly_the_revoked_domain():
    """example.net's grant is revoked: the dry run shows only example.net's units going,
    apply takes exactly those off both hosts (bob and example.org untouched), and the
    second run changes nothing."""
    d = _site_with_two_members()
    before_ns1 = d.slaves["ns1"].state
    d.run(ROOT, "revoke", user="alice", **{"class": "domain", "value": "example.net"})
    dry = d.run(ROOT, "regen")
    assert dry["apply"] is False
    assert dry["plan"] == {
        "alice": {
            "ns1": {"added": [], "changed": [], "removed": ["zone:example.net"]},
            "web1": {
                "added": [],
                "changed": [],
                "removed": [
                    "mail:example.net",
                    "vhost:beta.example.net",
                    "vhost:docs.example.net",
                    "vhost:www.example.net",
                ],
            },
        }
    }
    assert [x["domain"] for x in dry["dropped"]] == ["example.net"]
    assert "your_domain" in dry["dropped"][0]["reasons"][0]
    assert d.slaves["ns1"].state == before_ns1  # a dry run sends nothing
    out = d.run(ROOT, "regen", apply=True)
    assert out["applied"], out
    assert sorted(z.name for z in d.slaves["ns1"].state.zones) == ["bob.org", "example.org"]
    assert sorted(v.fqdn for v in d.slaves["web1"].state.vhosts) == [
        "www.bob.org",
        "www.example.org",
    ]
    assert sorted(m.name for m in d.slaves["web1"].state.mail) == ["bob.org", "example.org"]
    d.forget_calls()
    reloads = {h: s.reloads for h, s in d.slaves.items()}
    again = d.run(ROOT, "regen", apply=True)
    assert again["plan"] == {} and d.ops() == {"ns1": [], "web1": []}
    assert {h: s.reloads for h, s in d.slaves.items()} == reloads


def test_regen_reports_progress():
    """regen tells its progress, one step per member evaluated."""
    d = _site_with_two_members()
    seen = []
    d.controller.handle(
        ROOT, "regen", {}, lambda done, total, what: seen.append((done, total, what))
    )
    assert [w for _, _, w in seen] == ["evaluated alice", "evaluated bob", "evaluated root"]


def test_regen_rebuilds_a_host_that_lost_its_state_record_by_submits_only():
    """A slave whose part differs from the record (here: the dispatcher's record of bob
    was lost) is brought back to the stored sources by regen."""
    d = _site_with_two_members()
    d.store.record_commit("ns1", 99, "applied", {"bob": None})
    out = d.run(ROOT, "regen", apply=True)
    assert out["plan"] == {
        "bob": {"ns1": {"added": ["zone:bob.org"], "changed": [], "removed": []}}
    }
    assert sorted(z.name for z in d.slaves["ns1"].state.zones) == [
        "bob.org",
        "example.net",
        "example.org",
    ]


def test_a_submit_after_a_revocation_drops_the_stale_file_like_regen():
    """After example.net's grant is revoked (no regen yet), alice's submit of example.org
    still goes through: the stale example.net file is dropped (listed in the answer) and
    its units leave the hosts, exactly what regen would do."""
    d = _site_with_two_members()
    d.run(ROOT, "revoke", user="alice", **{"class": "domain", "value": "example.net"})
    text = 'dom "example.org" with emailAlias "sales" "alice"; end;'
    out = d.run(ALICE, "submit", files=files(example_org=text))
    assert out["applied"], out
    assert [x["domain"] for x in out["dropped"]] == ["example.net"]
    assert sorted(z.name for z in d.slaves["ns1"].state.zones) == ["bob.org", "example.org"]
    assert d.run(ROOT, "regen", apply=True)["plan"] == {}


def test_regen_takes_a_removed_members_configuration_off():
    """A member removed from the store (without rmuser) still on the hosts: regen plans
    the removal of all of their units and applies it; the others are untouched."""
    d = _site_with_two_members()
    d.store.remove_member("bob")
    out = d.run(ROOT, "regen", apply=True)
    assert out["applied"] and set(out["plan"]) == {"bob"}
    assert out["plan"]["bob"]["ns1"]["removed"] == ["zone:bob.org"]
    assert sorted(z.owner for z in d.slaves["ns1"].state.zones) == ["alice", "alice"]
    assert all(v.owner == "alice" for v in d.slaves["web1"].state.vhosts)
    assert d.run(ROOT, "regen", apply=True)["plan"] == {}


def test_history_sends_the_text_of_the_newest_versions_only():
    """history lists every version of the member's, with the text of the newest 20."""
    d = make_dispatcher()
    for i in range(22):
        d.store.put_source("alice", "example.org", f"(* v{i} *)", accepted=False)
    versions = d.run(ALICE, "history", domain="example.org")["versions"]
    assert len(versions) == 22
    assert ["text" in v for v in versions] == [False, False] + [True] * 20
