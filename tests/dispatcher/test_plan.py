"""The pure plan: units keyed by kind and name, diffs per host, unchanged hosts left out."""

from __future__ import annotations

from domtool import states
from domtool.dispatcher import plan
from domtool.model import DesiredState, MailDomain, Node, Record, Site, Vhost, Zone

SITE = Site(nodes=(Node("ns1", ("dns",)), Node("web1", ("web", "mail"))))


def _zone(name, *ips):
    return Zone(name, "alice", tuple(Record("@", "A", (ip,)) for ip in ips), ("ns1",))


def _vhost(fqdn):
    return Vhost(
        fqdn,
        "alice",
        "example.org",
        ("web1",),
        "/home/alice/www",
        "alice",
        "alice",
        "a@example.org",
    )


def test_split_gives_each_node_its_part():
    """A zone goes to the DNS node, vhosts and mail to the web/mail node."""
    state = DesiredState(
        zones=(_zone("example.org", "192.0.2.1"),),
        vhosts=(_vhost("www.example.org"),),
        mail=(MailDomain("example.org", "alice", ("web1",)),),
    )
    parts = plan.split(state, SITE)
    assert sorted(plan.units(parts["ns1"])) == ["zone:example.org"]
    assert sorted(plan.units(parts["web1"])) == ["mail:example.org", "vhost:www.example.org"]


def test_diff_names_added_changed_and_removed_keys():
    """Added, changed (same key, other content) and removed units, sorted."""
    old = DesiredState(zones=(_zone("a.org", "192.0.2.1"), _zone("b.org", "192.0.2.1")))
    new = DesiredState(zones=(_zone("b.org", "192.0.2.2"), _zone("c.org", "192.0.2.1")))
    d = plan.diff(old, new)
    assert (d.added, d.changed, d.removed) == (("zone:c.org",), ("zone:b.org",), ("zone:a.org",))


def test_unchanged_hosts_are_left_out():
    """Only hosts whose part differs appear, in the plan and in the changes to send."""
    same = DesiredState(zones=(_zone("a.org", "192.0.2.1"),))
    current = {"ns1": same, "web1": DesiredState(vhosts=(_vhost("www.a.org"),))}
    new = {"ns1": same}
    assert list(plan.plan(current, new)) == ["web1"]
    assert plan.changed_hosts(current, new) == {"web1": DesiredState()}


def test_without_domain_drops_the_domain_and_its_subdomains_only():
    """rmdom's filter: example.org and www.example.org go, notexample.org stays."""
    state = DesiredState(
        zones=(_zone("example.org"), _zone("notexample.org")),
        vhosts=(_vhost("www.example.org"),),
    )
    left = states.without_domain(state, "example.org")
    assert [z.name for z in left.zones] == ["notexample.org"] and left.vhosts == ()


def test_state_json_round_trips():
    """The JSON the store and slaves hold gives back the same state."""
    state = DesiredState(zones=(_zone("a.org", "192.0.2.1"),), vhosts=(_vhost("www.a.org"),))
    assert plan.state_from_json(plan.state_json(state)) == state.normalised()


def test_merge_all_is_merging_one_by_one_ties_included():
    """One sort of everything gives what merging the states one by one gave, equal keys
    (two zones of one name, two vhosts of one fqdn on the same nodes) in the same order."""
    import random

    rng = random.Random(3)
    pool = [_zone(f"z{i % 7}.example", f"10.0.0.{i}") for i in range(40)]
    pool += [
        MailDomain(f"m{i % 5}.example", "alice", ("web1",), spam_threshold=i) for i in range(30)
    ]
    pool += [_vhost_admin(f"www{i % 4}.example.org", i) for i in range(30)]
    for _ in range(30):
        parts = []
        for _ in range(rng.randint(0, 6)):
            picked = rng.sample(pool, rng.randint(0, 8))
            parts.append(
                DesiredState(
                    zones=tuple(u for u in picked if isinstance(u, Zone)),
                    vhosts=tuple(u for u in picked if isinstance(u, Vhost)),
                    mail=tuple(u for u in picked if isinstance(u, MailDomain)),
                )
            )
        one_by_one = DesiredState()
        for p in parts:
            one_by_one = one_by_one.merge(p)
        got = plan.merge_all(parts)
        assert got == one_by_one.normalised()
        assert [id(z) for z in got.zones] == [id(z) for z in one_by_one.zones]
        assert [id(v) for v in got.vhosts] == [id(v) for v in one_by_one.vhosts]
        assert [id(m) for m in got.mail] == [id(m) for m in one_by_one.mail]


def _vhost_admin(fqdn, i):
    import attrs

    return attrs.evolve(_vhost(fqdn), server_admin=f"a{i}@example.org")
