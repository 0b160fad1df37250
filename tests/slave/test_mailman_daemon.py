"""The Mailman backend against a real Mailman 3 core on loopback, through the slave's engine.

The session's Mailman (``tests/mailman_site.py``) runs with its own var dir, SQLite
database and REST port. Each test applies members' list domains with
``domtool.slave.engine.Engine`` over the real seams and the real prober: the sync's
check on the staged index, the switch, the sync's apply over REST, and the
``mailman_list`` probes. Then it asks Mailman's REST API what it holds.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from domtool.devsite.localdaemons import wait_for
from domtool.model import DesiredState, ListDomain, MailingList
from domtool.slave.backends.mailman import MailmanBackend, MailmanConfig
from domtool.slave.engine import Engine
from domtool.slave.mailman_rest import Ledger, list_id
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.mailman_site import unique_domain

pytestmark = [pytest.mark.daemons, pytest.mark.slow]


def make_engine(site, state_dir: Path) -> Engine:
    config = MailmanConfig(
        rest_config=str(site.rest_config),
        live_index=str(state_dir / "current" / "mailman" / "lists.json"),
    )
    return Engine(
        str(state_dir),
        {"mailman": MailmanBackend(config)},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(timeout=5.0),
        probe_timeout=10.0,
        probe_interval=0.1,
    )


def lists(owner: str, domain: str, *items: tuple[str, tuple[str, ...]]) -> ListDomain:
    return ListDomain(
        name=domain,
        owner=owner,
        nodes=("local",),
        web_host=f"lists.{domain}",
        lists=tuple(MailingList(n, tuple(sorted(o))) for n, o in sorted(items)),
    )


def test_apply_creates_the_list_with_its_owner_then_follows_changes(mailman_site, tmp_path):
    """After the apply the domain and list exist in Mailman with exactly their owners (the
    probe read them back); a changed owner set is applied exactly; a list dropped from the
    state stays in Mailman (deleting is `domtool list rm`)."""
    d = unique_domain()
    engine = make_engine(mailman_site, tmp_path / "state")
    rest = mailman_site.client()
    state = DesiredState(
        lists=(lists("alice", d, ("team", ("alice@example.org",)), ("news", ("a@b.example",))),)
    )
    out = engine.apply(state)
    assert out.status == "applied", out.message
    assert d in rest.domains()
    assert {f"team@{d}", f"news@{d}"} <= rest.lists()
    assert sorted(rest.owners(f"team@{d}")) == ["alice@example.org"]
    assert rest.get(f"/lists/{list_id('team@' + d)}")["mail_host"] == d
    ledger = Ledger.load(mailman_site.root.joinpath("ledger.json").as_posix())
    assert ledger.lists[f"team@{d}"] == "alice"

    state2 = DesiredState(
        lists=(
            lists(
                "alice",
                d,
                ("team", ("carol@elsewhere.example", "dave@example.org")),
            ),
        )
    )
    out = engine.apply(state2)
    assert out.status == "applied", out.message
    assert sorted(rest.owners(f"team@{d}")) == ["carol@elsewhere.example", "dave@example.org"]
    assert f"news@{d}" in rest.lists()  # not in the state any more, not deleted


def test_a_list_another_member_created_is_refused_before_the_switch(mailman_site, tmp_path):
    """alice's list stays alice's: when bob claims the same address (alice dropped it from
    her config, so it is no longer live in the state), the sync's check refuses bob with
    the holder's name and Mailman is unchanged; a list made outside domtool is the site's."""
    d = unique_domain()
    engine = make_engine(mailman_site, tmp_path / "state")
    rest = mailman_site.client()
    out = engine.apply(DesiredState(lists=(lists("alice", d, ("club", ("alice@example.org",))),)))
    assert out.status == "applied", out.message
    out = engine.apply(DesiredState(lists=(lists("bob", d, ("club", ("bob@example.net",))),)))
    assert "bob" in out.refused, out
    assert f"club@{d}: already exists in Mailman, held by member alice" in out.refused["bob"]
    assert sorted(rest.owners(f"club@{d}")) == ["alice@example.org"]

    rest.request("POST", "/lists", {"fqdn_listname": f"staff@{d}"})
    out = engine.apply(DesiredState(lists=(lists("alice", d, ("staff", ("alice@example.org",))),)))
    assert "alice" in out.refused, out
    assert "held by the site (not created by domtool)" in out.refused["alice"]
    assert rest.owners(f"staff@{d}") == {}


def test_other_members_go_ahead_when_one_is_refused(mailman_site, tmp_path):
    """One member's refused list does not hold back another member's list."""
    d1, d2 = unique_domain(), unique_domain()
    engine = make_engine(mailman_site, tmp_path / "state")
    rest = mailman_site.client()
    rest.create_domain(d1)
    rest.create_list(f"taken@{d1}")
    state = DesiredState(
        lists=(
            lists("alice", d1, ("taken", ("alice@example.org",))),
            lists("carol", d2, ("ok", ("carol@example.com",))),
        )
    )
    out = engine.apply(state)
    assert out.status == "applied", out.message
    assert set(out.refused) == {"alice"}
    assert sorted(rest.owners(f"ok@{d2}")) == ["carol@example.com"]


def test_lmtp_delivery_reaches_the_lists_queue(mailman_site, tmp_path):
    """A message to the list over Mailman's LMTP port (what Exim's transport speaks) is
    taken by Mailman: from a non-member it is held for moderation, visible over REST."""
    d = unique_domain()
    engine = make_engine(mailman_site, tmp_path / "state")
    out = engine.apply(DesiredState(lists=(lists("alice", d, ("talk", ("alice@example.org",))),)))
    assert out.status == "applied", out.message
    msg = (
        f"From: stranger@elsewhere.example\r\nTo: talk@{d}\r\n"
        f"Subject: hello talk {d}\r\nMessage-ID: <lmtp-{d}@test>\r\n\r\nhi\r\n"
    )
    with smtplib.LMTP("127.0.0.1", mailman_site.lmtp_port) as lmtp:
        assert lmtp.sendmail("stranger@elsewhere.example", [f"talk@{d}"], msg) == {}
    rest = mailman_site.client()

    def held():
        entries = rest.get(f"/lists/{list_id('talk@' + d)}/held").get("entries", [])
        return [e for e in entries if e.get("subject") == f"hello talk {d}"]

    assert wait_for(held, timeout=30, what="the message held in Mailman")
