"""Desired-state operations (``domtool.states``): per owner, per domain, names and member
paths, as properties over generated states of every kind."""

from __future__ import annotations

from collections import Counter

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool import states
from domtool.dispatcher.testing import FakeSlave
from domtool.model import (
    TLS,
    Alias,
    BasicAuth,
    Block,
    DesiredState,
    ListDomain,
    MailDomain,
    MailingList,
    Record,
    Vhost,
    WebSettings,
    Zone,
)

OWNERS = st.sampled_from(["alice", "bob", "carol"])
LABEL = st.sampled_from(["www", "a", "lists", "mail", "x-1"])
BASE = st.sampled_from(["example.org", "example.net", "notexample.org", "sub.example.org"])


@st.composite
def domains(draw):
    labels = draw(st.lists(LABEL, max_size=2))
    return ".".join([*labels, draw(BASE)])


@st.composite
def zones(draw):
    return Zone(draw(domains()), draw(OWNERS), (Record("@", "A", ("192.0.2.1",)),), ("ns1",))


@st.composite
def vhosts(draw):
    """A vhost as the language makes it: fqdn = label + "." + the domain it is in."""
    domain = draw(domains())
    owner = draw(OWNERS)
    return Vhost(
        fqdn=f"{draw(LABEL)}.{domain}",
        owner=owner,
        domain=domain,
        nodes=("web1",),
        document_root=f"/home/{owner}/www",
        user=owner,
        group=owner,
        server_admin=f"{owner}@example.org",
        aliases=tuple(draw(st.lists(domains(), max_size=2))),
    )


@st.composite
def mail(draw):
    return MailDomain(
        draw(domains()), draw(OWNERS), ("mx1",), aliases=(Alias(("default",), ("x",)),)
    )


@st.composite
def lists(draw):
    name = draw(domains())
    ls = tuple(MailingList(n, ("o@example.org",)) for n in draw(st.lists(LABEL, max_size=2)))
    return ListDomain(name, draw(OWNERS), ("l1",), f"lists.{name}", ls)


@st.composite
def desired(draw):
    return DesiredState(
        zones=tuple(draw(st.lists(zones(), max_size=4))),
        vhosts=tuple(draw(st.lists(vhosts(), max_size=4))),
        mail=tuple(draw(st.lists(mail(), max_size=3))),
        lists=tuple(draw(st.lists(lists(), max_size=3))),
    )


def _units(state) -> Counter:
    return Counter(u for _kind, u in states.units(state))


def test_every_kind_of_the_state_is_walked():
    """The operations see every field of DesiredState (zones, vhosts, mail, lists)."""
    assert states.kinds() == tuple(f.name for f in attrs.fields(DesiredState))
    assert {"zones", "vhosts", "mail", "lists"} <= set(states.kinds())


# -- per owner -------------------------------------------------------------------------


@settings(max_examples=50)
@given(desired())
def test_by_owner_splits_and_compose_puts_back(state):
    parts = states.by_owner(state)
    composed = states.compose(parts)
    assert _units(composed) == _units(state) and composed == composed.normalised()
    # (equal to state.normalised() but for the order of same-named units of two owners)
    assert states.compose(states.by_owner(composed)) == composed
    for owner, part in parts.items():
        assert part != DesiredState() and {u.owner for _k, u in states.units(part)} == {owner}
    assert sum((_units(p) for p in parts.values()), Counter()) == _units(state)


@settings(max_examples=50)
@given(desired(), st.sets(OWNERS))
def test_without_owners_is_compose_of_the_other_parts(state, gone):
    left = states.without_owners(state, gone)
    kept = {o: p for o, p in states.by_owner(state).items() if o not in gone}
    assert _units(left) == _units(states.compose(kept))
    assert not {u.owner for _k, u in states.units(left)} & gone
    assert states.without_owners(state, set()) == state
    assert states.without_owners(state, {"alice", "bob", "carol"}) == DesiredState()


def test_compose_of_nothing_is_the_empty_state():
    assert states.compose({}) == DesiredState()


# -- under a domain --------------------------------------------------------------------


@given(domains(), LABEL)
def test_under_is_the_domain_and_its_subdomains(d, label):
    assert states.under(d, d) and states.under(f"{label}.{d}", d)
    assert states.under(f"{label}.{d}".upper() + ".", d + ".")
    assert not states.under(d, f"{label}.{d}")
    assert not states.under(f"{label}{d}", d)  # "wwwexample.org" is not under example.org


def test_a_name_that_only_ends_like_the_domain_is_not_under_it():
    assert not states.under("notexample.org", "example.org")
    assert states.under("www.Example.ORG", "example.org.")


@settings(max_examples=50)
@given(desired(), domains())
def test_under_and_without_domain_partition_the_state(state, d):
    inside, outside = states.under_domain(state, d), states.without_domain(state, d)
    assert _units(inside) + _units(outside) == _units(state)
    assert all(states.is_under(u, d) for _k, u in states.units(inside))
    assert not any(states.is_under(u, d) for _k, u in states.units(outside))


@given(vhosts(), domains())
def test_a_language_vhost_is_under_exactly_when_its_host_name_is(v, d):
    """fqdn = label.domain, so the vhost's own name decides; its aliases never do."""
    assert states.is_under(v, d) == states.under(v.fqdn, d)


def test_a_vhost_alias_does_not_put_the_vhost_under_its_domain():
    v = Vhost(
        "www.example.org", "alice", "example.org", ("web1",), "/home/alice/www",
        "alice", "alice", "alice@example.org", aliases=("www.example.net",),
    )  # fmt: skip
    state = DesiredState(vhosts=(v,))
    assert states.under_domain(state, "example.net") == DesiredState()
    assert states.without_domain(state, "example.net") == state
    # its domain counts even where a hand-built value's fqdn does not say so
    odd = attrs.evolve(v, fqdn="www.example.com")
    assert states.is_under(odd, "example.org") and not states.is_under(odd, "example.com.org")


@settings(max_examples=40)
@given(desired(), domains())
def test_describe_shows_what_rmdom_removes(state, d):
    """The fake slave's describe (as the agent's) lists under_domain; a host is asked to
    describe exactly when rmdom would change it (the controller's test)."""
    slave = FakeSlave("web1", state=state)
    answer = slave.handle("describe", {"domain": d})
    inside = states.under_domain(state, d)
    for kind in states.kinds():
        assert len(answer[kind]) == len(getattr(inside, kind))
    shown = any(answer[k] for k in states.kinds())
    assert shown == (states.without_domain(state, d) != state)


# -- names -----------------------------------------------------------------------------


@settings(max_examples=50)
@given(desired())
def test_names_are_every_unit_name_alias_list_host_and_list(state):
    got = Counter((n.kind, n.name) for n in states.names(state))
    want = Counter()
    want.update(("zone", z.name) for z in state.zones)
    want.update(("vhost", v.fqdn) for v in state.vhosts)
    want.update(("vhost alias", a) for v in state.vhosts for a in v.aliases)
    want.update(("mail domain", m.name) for m in state.mail)
    want.update(("list domain", x.name) for x in state.lists)
    want.update(("list host", x.web_host) for x in state.lists)
    want.update(("list", f"{ml.name}@{x.name}") for x in state.lists for ml in x.lists)
    assert got == want
    for _kind, unit in states.units(state):
        assert {n.owner for n in states.unit_names(unit)} == {unit.owner}


def test_names_name_the_field_they_come_from():
    v = Vhost(
        "www.example.org", "alice", "example.org", ("web1",), "/srv", "alice", "alice",
        "a@example.org", aliases=("a.example.org", "b.example.org"),
    )  # fmt: skip
    assert [(n.field, n.name) for n in states.unit_names(v)] == [
        ("fqdn", "www.example.org"),
        ("aliases[0]", "a.example.org"),
        ("aliases[1]", "b.example.org"),
    ]
    d = ListDomain("l.org", "bob", ("l1",), "lists.l.org", (MailingList("team", ()),))
    assert [(n.kind, n.field, n.name, n.what) for n in states.unit_names(d)] == [
        ("list domain", "name", "l.org", "list domain l.org"),
        ("list host", "web_host", "lists.l.org", "list domain l.org"),
        ("list", "lists[0]", "team@l.org", "list domain l.org"),
    ]


# -- a new kind needs no change --------------------------------------------------------


@attrs.frozen
class Extra:
    name: str
    owner: str


@attrs.frozen
class WithExtras(DesiredState):
    extras: tuple[Extra, ...] = ()

    def normalised(self):
        base = DesiredState.normalised(self)
        fields = {f: getattr(base, f) for f in states.kinds(DesiredState)}
        return WithExtras(**fields, extras=tuple(sorted(self.extras, key=str)))


@settings(max_examples=50)
@given(desired(), st.lists(st.builds(Extra, domains(), OWNERS), max_size=3), domains())
def test_a_kind_added_to_the_state_is_split_composed_and_filtered(state, extras, d):
    ext = WithExtras(**{f: getattr(state, f) for f in states.kinds(state)}, extras=tuple(extras))
    parts = states.by_owner(ext)
    assert all(isinstance(p, WithExtras) for p in parts.values())
    composed = states.compose(parts) if parts else WithExtras()
    assert isinstance(composed, WithExtras) and _units(composed) == _units(ext)
    assert states.without_owners(ext, {"alice"}).extras == tuple(
        p for p in extras if p.owner != "alice"
    )
    assert states.under_domain(ext, d).extras == tuple(p for p in extras if states.under(p.name, d))
    assert Counter(n.name for n in states.names(ext) if n.kind == "extra") == Counter(
        p.name for p in extras
    )


# -- member paths ----------------------------------------------------------------------

PATH = st.sampled_from(["/home/alice/a", "/home/alice/b", "/srv/x"])


@st.composite
def web_settings(draw):
    auth = draw(st.none() | st.builds(BasicAuth, st.just("r"), PATH))
    return WebSettings(auth=auth)


@given(
    url=st.lists(st.tuples(st.just("/u"), PATH), max_size=2),
    script=st.lists(st.tuples(st.just("/cgi"), PATH), max_size=2),
    tls=st.none() | st.builds(TLS, PATH, PATH, st.none() | PATH),
    settings_=web_settings(),
    blocks=st.lists(
        st.builds(Block, st.sampled_from(["location", "directory"]), PATH, web_settings()),
        max_size=3,
    ),
)
def test_member_paths_are_every_path_of_a_vhost(url, script, tls, settings_, blocks):
    v = Vhost(
        "www.example.org", "alice", "example.org", ("web1",), "/home/alice/www", "alice",
        "alice", "a@example.org", tls=tls, url_aliases=tuple(url),
        script_aliases=tuple(script), settings=settings_, blocks=tuple(blocks),
    )  # fmt: skip
    got = states.member_paths(v)
    want = ["/home/alice/www"] + [p for _u, p in url] + [p for _u, p in script]
    if tls is not None:
        want += [tls.certificate, tls.key] + ([tls.chain] if tls.chain else [])
    auths = [settings_.auth] + [b.settings.auth for b in blocks]
    want += [a.user_file for a in auths if a is not None]
    want += [b.path for b in blocks if b.kind == "directory"]
    assert Counter(p for _f, p in got) == Counter(want)
    assert len({f for f, _p in got}) == len(got)  # each from its own field


def test_member_paths_name_their_fields():
    v = Vhost(
        "www.example.org", "alice", "example.org", ("web1",), "/d", "alice", "alice",
        "a@example.org", tls=TLS("/c", "/k", "/ch"), url_aliases=(("/u", "/ua"),),
        settings=WebSettings(auth=BasicAuth("r", "/pw")),
        blocks=(Block("directory", "/b", WebSettings(auth=BasicAuth("r", "/bpw"))),),
    )  # fmt: skip
    assert states.member_paths(v) == [
        ("document_root", "/d"),
        ("url_aliases[0].path", "/ua"),
        ("tls.certificate", "/c"),
        ("tls.key", "/k"),
        ("tls.chain", "/ch"),
        ("settings.auth.user_file", "/pw"),
        ("blocks[0].path", "/b"),
        ("blocks[0].settings.auth.user_file", "/bpw"),
    ]


# -- recompose: compose from the previous composed state ------------------------------

MANY = st.sampled_from([f"o{i}" for i in range(8)])
FEW_NAMES = st.sampled_from(["a.example.org", "b.example.org", "example.org", "z.example.net"])


@st.composite
def tied_part(draw, owner):
    """An owner's part whose units often tie on their sort key with each other and with
    other owners' (the same name, or fqdn and nodes), told apart by another field."""
    zs = [
        Zone(draw(FEW_NAMES), owner, (Record("@", "A", (f"192.0.2.{i}",)),), ("ns1",))
        for i in range(draw(st.integers(0, 3)))
    ]
    vs = [
        Vhost(
            fqdn=draw(FEW_NAMES),
            owner=owner,
            domain="example.org",
            nodes=draw(st.sampled_from([("web1",), ("web2",), ("web1", "web2")])),
            document_root=f"/home/{owner}/www{i}",
            user=owner,
            group=owner,
            server_admin=f"{owner}@example.org",
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    ms = [MailDomain(draw(FEW_NAMES), owner, (f"mx{i}",)) for i in range(draw(st.integers(0, 2)))]
    return DesiredState(zones=tuple(zs), vhosts=tuple(vs), mail=tuple(ms))


@st.composite
def owner_parts(draw):
    return {o: draw(tied_part(o)) for o in sorted(draw(st.sets(MANY)))}


@settings(max_examples=300)
@given(owner_parts(), st.sets(MANY), st.data(), st.sampled_from([1.0, 0.05]))
def test_recompose_is_compose_of_the_new_parts(old, owners, data, most):
    """Changed, added, emptied and removed owners, ties within and across owners, empty
    fields: the same value, in the same order, as composing the new parts anew."""
    new = dict(old)
    for o in sorted(owners):
        what = data.draw(st.sampled_from(["change", "remove", "empty", "same"]))
        if what == "change":
            new[o] = data.draw(tied_part(o))
        elif what == "remove":
            new.pop(o, None)
        elif what == "empty":
            new[o] = DesiredState()
    previous = states.compose(old)
    want = states.compose(new)
    was = {o: old[o] for o in owners if o in old}
    for got in (
        states.recompose(previous, owners, new, most=most),
        states.recompose(previous, owners, new, was=was, most=most),
    ):
        assert got == want
        for f in states.kinds(want):
            assert [id(u) for u in getattr(got, f)] == [id(u) for u in getattr(want, f)]
    # Listing an unchanged owner too changes nothing.
    assert states.recompose(want, set(owners) | set(list(new)[:1]), new, most=1.0) == want


def test_recompose_keeps_ties_in_owner_order_then_part_order():
    z = lambda owner, ip: Zone("example.org", owner, (Record("@", "A", (ip,)),), ("ns1",))  # noqa: E731
    old = {"a": DesiredState(zones=(z("a", "1"),)), "c": DesiredState(zones=(z("c", "1"),))}
    new = {**old, "b": DesiredState(zones=(z("b", "2"), z("b", "1")))}
    got = states.recompose(states.compose(old), {"b"}, new, most=1.0)
    assert got == states.compose(new)
    assert states.recompose(states.compose(old), {"b"}, new, was={}, most=1.0) == got
    assert [(u.owner, u.records[0].data) for u in got.zones] == [
        ("a", ("1",)),
        ("b", ("2",)),
        ("b", ("1",)),
        ("c", ("1",)),
    ]
