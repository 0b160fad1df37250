"""``domtool.ownership.ownership_problems`` (pure core): a state is accepted only when every
unit, name, user, group and member path in it is the member's own."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domtool.model import DesiredState, MailDomain, Vhost, Zone
from domtool.ownership import ownership_problems
from domtool.perms import Permissions

ALICE = Permissions(
    "alice",
    domains={"example.org"},
    paths={"/home/alice"},
    users={"alice"},
    groups={"alice"},
)


def _vhost(**kw) -> Vhost:
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


def test_the_members_own_state_has_no_problem():
    """Units of alice's, under her domain, her user, group and paths: nothing to say."""
    state = DesiredState(
        zones=(Zone("example.org", "alice", (), ("ns1",)),),
        vhosts=(_vhost(),),
        mail=(MailDomain("example.org", "alice", ("mx1",)),),
    )
    assert ownership_problems(state, ALICE) == []
    assert ownership_problems(DesiredState(), ALICE) == []


def test_each_foreign_part_of_a_vhost_is_named():
    """Another owner, a domain, user, group or path alice does not hold: each is one line."""
    assert ownership_problems(DesiredState(vhosts=(_vhost(owner="bob"),)), ALICE) == [
        "vhost www.example.org would belong to bob, not alice"
    ]
    problems = ownership_problems(
        DesiredState(
            vhosts=(
                _vhost(
                    fqdn="www.example.net",
                    domain="example.net",
                    user="bob",
                    group="bob",
                    document_root="/home/bob/www",
                ),
            )
        ),
        ALICE,
    )
    assert any("does not own" in p and "example.net" in p for p in problems)
    assert any("may not run as user bob" in p for p in problems)
    assert any("may not use group bob" in p for p in problems)
    assert any("does not own path /home/bob/www" in p for p in problems)


@given(
    st.sampled_from(["zone", "vhost", "mail"]),
    st.sampled_from(["bob", "carol", "root"]),
)
def test_any_unit_of_another_owner_is_refused(kind, other):
    """Whatever the kind, a unit that names another owner is a problem naming both."""
    unit = {
        "zone": Zone("example.org", other, (), ("ns1",)),
        "vhost": _vhost(owner=other),
        "mail": MailDomain("example.org", other, ("mx1",)),
    }[kind]
    field = {"zone": "zones", "vhost": "vhosts", "mail": "mail"}[kind]
    problems = ownership_problems(DesiredState(**{field: (unit,)}), ALICE)
    assert problems and all(other in p and "alice" in p for p in problems)
