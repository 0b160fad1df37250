"""Mailing lists at the dispatcher: the `lists` quota and no other member's list."""

from __future__ import annotations

import pytest

from domtool.model import DesiredState, ListDomain, MailingList, Node, Site
from domtool.policies import lists as list_policy
from domtool.policies import quotas

from . import harness
from .harness import ALICE, BOB, ROOT, files

LISTS_SITE = Site(nodes=(Node("ns1", ("dns",)), Node("web1", ("web", "mail", "lists"))))


@pytest.fixture
def dispatcher(monkeypatch):
    monkeypatch.setattr(harness, "SITE", LISTS_SITE)
    return harness.make_dispatcher()


def config(domain: str, *names: str) -> str:
    body = "; ".join(f'mailingList "{n}" with owner "x@{domain}" end' for n in names)
    return f'dom "{domain}" with {body} end;'


def test_each_list_counts_against_the_lists_quota(dispatcher):
    d = ListDomain("a.org", "alice", ("web1",), "lists.a.org", (MailingList("x", ("a@b.c",)),) * 1)
    assert quotas.usage(DesiredState(lists=(d,)))["lists"] == 1
    dispatcher.run(ROOT, "set_quota", user="alice", resource="lists", value=2)
    ok = dispatcher.run(ALICE, "submit", files=files(example_org=config("example.org", "a", "b")))
    assert ok["applied"], ok
    out = dispatcher.run(ALICE, "submit", files=files(example_net=config("example.net", "c")))
    assert out["applied"] is False
    assert out["refused"] == [
        "alice would have 3 lists, over the quota of 2; ask an administrator to raise it "
        "(domtool-admin set-quota)"
    ]
    assert dispatcher.run(ROOT, "quota", user="alice")["usage"]["lists"] == 2


def test_another_members_list_is_refused_with_its_holder(dispatcher):
    """example.org granted to bob as well (shared): bob may not declare alice's deployed list."""
    ok = dispatcher.run(ALICE, "submit", files=files(example_org=config("example.org", "team")))
    assert ok["applied"], ok
    dispatcher.run(
        ROOT, "grant", user="bob", shared=True, **{"class": "domain", "value": "example.org"}
    )
    out = dispatcher.run(BOB, "submit", files=files(example_org=config("example.org", "team")))
    assert out["applied"] is False
    assert "mailing list team@example.org is already member alice's list" in out["refused"]


def test_held_by_others_reads_deployed_json():
    deployed = {
        ("alice", "web1"): {"lists": [{"name": "a.org", "lists": [{"name": "team"}]}]},
        ("bob", "web1"): {"lists": [{"name": "b.org", "lists": [{"name": "x"}]}]},
    }
    assert list_policy.held_by_others("bob", deployed) == {"team@a.org": "alice"}
