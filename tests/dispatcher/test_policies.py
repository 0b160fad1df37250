"""The site's small rules: quotas per member with defaults and overrides, reserved names."""

from __future__ import annotations

from domtool.model import DesiredState, MailDomain, Record, Vhost, Zone
from domtool.policies import quotas, reserved


def _zone(name):
    return Zone(name, "alice", (Record("@", "A", ("192.0.2.1",)),), ("ns1",))


def _vhost(fqdn, aliases=()):
    return Vhost(
        fqdn, "alice", fqdn, ("web1",), "/home/alice", "alice", "alice", "a@x.org", aliases
    )


def test_usage_counts_distinct_domains_and_vhosts():
    """A domain with both a zone and mail counts once."""
    state = DesiredState(
        zones=(_zone("a.org"), _zone("b.org")),
        vhosts=(_vhost("www.a.org"),),
        mail=(MailDomain("a.org", "alice", ("web1",)),),
    )
    assert quotas.usage(state) == {
        "domains": 2,
        "vhosts": 1,
        "mailboxes": 0,
        "lists": 0,
        "databases": 0,
    }


def test_limits_are_defaults_then_overrides():
    """Per-member overrides win over site defaults; unknown resources are ignored."""
    limits = quotas.limits({"domains": 5}, {"vhosts": 1, "bogus": 3})
    assert limits["domains"] == 5 and limits["vhosts"] == 1 and "bogus" not in limits
    assert limits["lists"] == quotas.DEFAULTS["lists"]


def test_quota_check_names_each_exceeded_resource():
    """Within quota: nothing; over: one message per resource, with the numbers."""
    state = DesiredState(zones=(_zone("a.org"), _zone("b.org")), vhosts=(_vhost("www.a.org"),))
    assert quotas.check("alice", state, quotas.limits({}, {})) == []
    out = quotas.check("alice", state, quotas.limits({}, {"domains": 1, "vhosts": 0}))
    assert [m.split(",")[0] for m in out] == [
        "alice would have 2 domains",
        "alice would have 1 vhosts",
    ]


def test_site_domains_and_other_members_names_are_reserved():
    """The site's domain and another member's name under it are refused; the member's
    own name under the site domain, and unrelated domains, are not."""
    site = ("coop.example",)
    assert reserved.reserved_reason("alice", "example.org", site) is None
    assert reserved.reserved_reason("alice", "alice.coop.example", site) is None
    assert reserved.reserved_reason("alice", "www.alice.coop.example", site) is None
    assert "site's own domain" in reserved.reserved_reason("alice", "coop.example", site)
    assert "member bob" in reserved.reserved_reason("alice", "www.bob.coop.example", site)
    assert reserved.reserved_reason("alice", "notcoop.example", site) is None


def test_reserved_check_covers_vhost_aliases():
    """A vhost alias under another member's name is caught too."""
    state = DesiredState(vhosts=(_vhost("www.a.org", ("bob.coop.example",)),))
    assert reserved.check("alice", state, ("coop.example",)) == [
        "vhost alias bob.coop.example is reserved: names under coop.example belong to the "
        "site or to member bob"
    ]
