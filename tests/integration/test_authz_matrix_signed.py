"""A misbehaving dispatcher against a slave that checks administrator-signed grants.

Issue 13, finding 2. The dispatcher stand-in here sends well-formed prepares whose
ownership is wrong, and turns its own checks off: the ``grants`` field it sends says
every member may use every home, user and group. The slave (a real :class:`Agent` over
the real engine with the real Apache and BIND backends, fake seams, as in
``test_authz_matrix_slave``) has a :class:`GrantBook` trusting one admin key, and each
owner's part carries that owner's signed record, relayed.

- The whole authorization matrix of ``test_authz_matrix_slave`` (3 op shapes x 42 cases)
  with the dispatcher's grants opened up: 0 escapes.
- The misbehaving-dispatcher cases, for every unit kind there is (Zone: BIND, Vhost:
  Apache, MailDomain: the mail backends): alice's unit under bob's domain (not live), a
  subdomain nobody holds, case and trailing-dot variants, bob's DocumentRoot in alice's
  home, and the signature cases (none, untrusted key, another member's record, a tampered
  record, a replayed older serial). Every one refused, naming the owner.

Before the fix the slave took the dispatcher's grants and never checked domains: with the
opened-up grants 87 of the 126 matrix cases (every path and account case) escaped, and 25
of the 39 tests here failed (seen failing first).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from domtool import grantsig
from domtool.model import DesiredState, MailDomain
from domtool.slave import ops
from domtool.slave.agent import Agent
from domtool.slave.ops import Grants, OwnerChange, PrepareArgs
from domtool.slave.verified import GrantBook, VerifiedGrants
from domtool.states import by_owner
from tests.integration.test_authz_matrix_slave import (
    ALICE_DOM,
    BOB_DOM,
    CASES,
    NODE,
    OPS,
    Homes,
    _id,
    bobs_part,
    make_agent,
    run,
    vhost,
    zone,
)


@pytest.fixture(scope="module")
def hs(tmp_path_factory) -> Homes:
    """alice's, bob's and carol's homes; ``alice/link`` is a symlink to ``bob/www``."""
    top = tmp_path_factory.mktemp("authz-signed")
    h = Homes(top / "home" / "alice", top / "home" / "bob", top / "home" / "carol")
    for d in (h.alice, h.bob, h.carol):
        (d / "www").mkdir(parents=True)
    os.symlink(h.bob / "www", h.alice / "link")
    return h


KEY, PUB = grantsig.new_signing_key()
OTHER_KEY, _OTHER_PUB = grantsig.new_signing_key()


def record(h: Homes, member: str, serial: int = 10) -> grantsig.GrantRecord:
    home = getattr(h, member)
    return grantsig.GrantRecord.of(
        member,
        serial,
        [("domain", f"{member}.example"), ("path", str(home)), ("user", member), ("group", member)],
    )


def signed(h: Homes, member: str, serial: int = 10, key: bytes = KEY) -> grantsig.SignedGrants:
    return grantsig.sign(record(h, member, serial), key)


def everything(h: Homes) -> Grants:
    """The dispatcher's checks turned off: every home, user and group for everybody."""
    homes_ = (str(h.alice), str(h.bob), str(h.carol))
    names = ("alice", "bob", "carol", "root", "daemon")
    return Grants(paths=homes_, users=names, groups=names)


def change(h: Homes, member: str, state: DesiredState, **kw) -> OwnerChange:
    return OwnerChange(state.normalised(), everything(h), kw.get("signed", signed(h, member)))


def signed_agent(tmp: Path) -> Agent:
    agent = make_agent(tmp)
    agent.grant_book = GrantBook([PUB], str(tmp / "grant-serials.json"))
    return agent


def with_bob_live(h: Homes, tmp: Path) -> Agent:
    agent = signed_agent(tmp)
    answer = run(agent, "prepare", PrepareArgs("t-bob", {"bob": change(h, "bob", bobs_part(h))}))
    assert answer["owners"]["bob"]["ok"], answer
    assert run(agent, "commit", ops.TxArgs("t-bob"))["status"] == "applied"
    return agent


def verdict_of(agent: Agent, args: PrepareArgs, owner: str) -> dict:
    answer = run(agent, "prepare", args)
    run(agent, "abort", ops.TxArgs(args.txid))
    return answer["owners"][owner]


# -- the authorization matrix with the dispatcher's grants opened up ---------------------


def test_the_authorization_matrix_with_the_dispatchers_checks_off_has_no_escape(hs, tmp_path):
    """Every (op shape x case) of the slave matrix, the dispatcher granting everything:
    alice is refused in all 126, bob (live) and carol (clean) are not blamed."""
    h = hs
    escapes, total = [], 0
    for op, shape in OPS.items():
        for case in CASES:
            agent = with_bob_live(h, tmp_path)
            alice = change(h, "alice", case.state(h))
            args = shape(alice, h)
            args = attrs.evolve(
                args,
                changes={
                    o: attrs.evolve(c, grants=everything(h), signed=signed(h, o))
                    for o, c in args.changes.items()
                },
            )
            answer = run(agent, "prepare", args)
            total += 1
            v = answer["owners"]["alice"]
            if v["ok"]:
                escapes.append((op, _id(case)))
            else:
                assert v["message"].startswith("alice: "), v
            for other in set(args.changes) - {"alice"}:
                assert answer["owners"][other]["ok"], (op, _id(case), answer)
            run(agent, "commit", ops.TxArgs(args.txid))
            if not v["ok"]:
                assert "alice" not in by_owner(agent.state)
    assert total == 126
    assert escapes == []


# -- the misbehaving dispatcher's cases -------------------------------------------------


@attrs.frozen
class Bad:
    kind: str  # Zone, Vhost, MailDomain
    what: str
    owner: str
    state: Callable[[Homes], DesiredState]
    expect: str  # a substring of the refusal


def _alice_web(h: Homes, fqdn: str, **kw) -> DesiredState:
    return DesiredState(vhosts=(vhost("alice", h.alice, fqdn, **kw),))


NAMES = {
    "under bob's domain": "shop.bob.example",
    "a subdomain nobody holds": "www.nobody.example",
    "upper case": "SHOP.BOB.EXAMPLE",
    "mixed case": "Shop.Bob.Example",
    "a trailing dot": "shop.bob.example.",
    "mixed case and a trailing dot": "Shop.BOB.example.",
}


def _domain_cases() -> list[Bad]:
    out = []
    for route, name in NAMES.items():
        parent = name.split(".", 1)[1]
        out.append(
            Bad(
                "Zone",
                f"alice's zone {route}",
                "alice",
                (lambda n: lambda h: DesiredState(zones=(zone(n, "alice"),)))(name),
                "alice: zone ",
            )
        )
        out.append(
            Bad(
                "Vhost",
                f"alice's vhost {route}",
                "alice",
                (lambda n, p: lambda h: _alice_web(h, n, domain=p))(name, parent),
                "alice: vhost ",
            )
        )
        out.append(
            Bad(
                "Vhost",
                f"alice's vhost with an alias {route}",
                "alice",
                (lambda n: lambda h: _alice_web(h, f"www.{ALICE_DOM}", aliases=(n,)))(name),
                "alice: vhost ",
            )
        )
        out.append(
            Bad(
                "Vhost",
                f"alice's vhost whose domain field is {route}",
                "alice",
                (lambda n: lambda h: _alice_web(h, f"www.{ALICE_DOM}", domain=n))(name),
                "alice: vhost ",
            )
        )
        out.append(
            Bad(
                "MailDomain",
                f"alice's mail domain {route}",
                "alice",
                (lambda n: lambda h: DesiredState(mail=(MailDomain(n, "alice", (NODE,)),)))(name),
                "alice: mail domain ",
            )
        )
    return out


PATH_CASES = [
    Bad(
        "Vhost",
        "bob's DocumentRoot in alice's home",
        "bob",
        lambda h: DesiredState(
            vhosts=(vhost("bob", h.bob, f"shop.{BOB_DOM}", document_root=str(h.alice / "www")),)
        ),
        "bob: vhost shop.bob.example: document_root: ",
    ),
    Bad(
        "Vhost",
        "bob's vhost running as alice",
        "bob",
        lambda h: DesiredState(vhosts=(vhost("bob", h.bob, f"shop.{BOB_DOM}", user="alice"),)),
        "bob: vhost shop.bob.example: user: 'alice'",
    ),
]
BAD_CASES = _domain_cases() + PATH_CASES


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: f"{c.kind}:{c.what}")
def test_the_misbehaving_dispatchers_ownership_is_refused_at_the_slave(hs, tmp_path, case):
    """Each wrong ownership, with the dispatcher granting everything and the owner's own
    signed record relayed, is refused for that owner; bob's live part stays."""
    h = hs
    agent = with_bob_live(h, tmp_path)
    owner = case.owner
    args = PrepareArgs("t-bad", {owner: change(h, owner, case.state(h))})
    v = verdict_of(agent, args, owner)
    assert v["ok"] is False, (case.what, v)
    assert case.expect in v["message"], (case.expect, v["message"])
    assert by_owner(agent.state)["bob"].normalised() == bobs_part(h)


def test_every_unit_kind_has_every_domain_variant():
    kinds = {"Zone", "Vhost", "MailDomain"}
    for route in NAMES:
        assert {c.kind for c in BAD_CASES if route in c.what} == kinds, route
    assert len(BAD_CASES) == len(NAMES) * 5 + 2


def test_alices_own_part_with_her_signed_grants_is_accepted(hs, tmp_path):
    """The control: her zone, a vhost with a subdomain and an alias, mail; her paths."""
    h = hs
    agent = with_bob_live(h, tmp_path)
    mine = DesiredState(
        zones=(zone(ALICE_DOM, "alice"),),
        vhosts=(vhost("alice", h.alice, f"shop.{ALICE_DOM}", aliases=(ALICE_DOM,)),),
        mail=(MailDomain(ALICE_DOM, "alice", (NODE,)),),
    )
    args = PrepareArgs("t-mine", {"alice": change(h, "alice", mine)})
    assert run(agent, "prepare", args)["owners"]["alice"] == {"ok": True, "message": ""}
    assert run(agent, "commit", ops.TxArgs("t-mine"))["status"] == "applied"


def _sig_cases(h: Homes) -> dict[str, tuple[grantsig.SignedGrants | None, str]]:
    good = signed(h, "alice")
    forged = attrs.evolve(
        good,
        record=attrs.evolve(
            good.record, grants=tuple(sorted(good.record.grants + (("domain", BOB_DOM),)))
        ),
    )
    return {
        "no signed grants": (None, "no signed grants"),
        "an untrusted key": (signed(h, "alice", key=OTHER_KEY), "does not trust"),
        "bob's record for alice": (signed(h, "bob"), "are bob's, not alice's"),
        "a tampered record (bob's domain added)": (forged, "does not verify"),
    }


def test_grants_that_do_not_verify_refuse_the_owner(hs, tmp_path):
    h = hs
    agent = with_bob_live(h, tmp_path)
    mine = DesiredState(zones=(zone(ALICE_DOM, "alice"),))
    for what, (sig, expect) in _sig_cases(h).items():
        args = PrepareArgs("t-sig", {"alice": OwnerChange(mine, everything(h), sig)})
        v = verdict_of(agent, args, "alice")
        assert v["ok"] is False and expect in v["message"], (what, v)
        assert v["message"].startswith("alice: grants: "), v


def test_an_older_serial_is_refused_once_a_newer_one_was_seen_even_after_restart(hs, tmp_path):
    """The admin re-signed alice's grants (serial 11) after removing a domain; the
    dispatcher replays serial 10 (which had it): refused, also by a new GrantBook."""
    h = hs
    agent = with_bob_live(h, tmp_path)
    mine = DesiredState(zones=(zone(ALICE_DOM, "alice"),))
    newer = OwnerChange(mine, everything(h), signed(h, "alice", serial=11))
    assert verdict_of(agent, PrepareArgs("t-11", {"alice": newer}), "alice")["ok"]
    older = OwnerChange(mine, everything(h), signed(h, "alice", serial=10))
    v = verdict_of(agent, PrepareArgs("t-10", {"alice": older}), "alice")
    assert v["ok"] is False and "older than serial 11" in v["message"], v
    again = GrantBook([PUB], str(tmp_path / "grant-serials.json"))
    with pytest.raises(grantsig.GrantSigError, match="older than serial 11"):
        again.verified("alice", older.signed)


def test_an_owner_removed_from_the_host_needs_no_grants(hs, tmp_path):
    h = hs
    agent = with_bob_live(h, tmp_path)
    args = PrepareArgs("t-rm", {"bob": OwnerChange(DesiredState(), Grants(), None)})
    assert verdict_of(agent, args, "bob")["ok"] is True


def test_the_verified_grants_api_for_other_backends(hs):
    """What a mail, list, database or firewall backend calls: one line per refusal."""
    h = hs
    vg = GrantBook([PUB]).verified("alice", signed(h, "alice"))
    assert isinstance(vg, VerifiedGrants)
    assert vg.problems("list x", "domain", "domain", "lists.ALICE.example.") == []
    assert vg.problems("list x", "domain", "domain", "lists.bob.example") == [
        "alice: list x: domain: 'lists.bob.example' is not under any domain in alice's "
        "signed grants (serial 10)"
    ]
    assert vg.problems("db", "user", "user", "alice") == []
    assert vg.problems("db", "user", "user", "bob")[0].startswith("alice: db: user: 'bob'")
    assert vg.problems("rule", "group", "group", "bob") != []
    assert vg.problems("mailbox", "path", "path", str(h.alice / "Maildir")) == []
    assert vg.problems("mailbox", "path", "path", str(h.alice / "link" / "x")) != []
    with pytest.raises(ValueError, match="unknown grant kind"):
        vg.problems("x", "y", "port", 8080)
