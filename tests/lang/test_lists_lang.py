"""The mailing list directives (lists.dtl): listHost, mailingList, owner, their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from domtool.lang.api import check_source
from domtool.model import ListDomain, MailingList, Record
from domtool.perms import parse_perms

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"


def perms(user: str = "alice"):
    return parse_perms((EXAMPLES / f"{user}.perms").read_text(), user)


def run(text: str, user: str = "alice"):
    return check_source([("t", text)], perms(user))


def test_example_lists_file():
    """tests/data/examples/lists/example.org: two lists with their owners, the list host."""
    path = EXAMPLES / "lists" / "example.org"
    r = check_source([(path.name, path.read_text())], perms())
    assert r.diagnostics == ()
    assert r.state.lists == (
        ListDomain(
            name="example.org",
            owner="alice",
            nodes=("local",),
            web_host="lists.example.org",
            lists=(
                MailingList("announce", ("alice@example.org", "carol@elsewhere.example")),
                MailingList("team", ("alice@example.org",)),
            ),
            mail_nodes=("local",),
        ),
    )
    (zone,) = r.state.zones
    assert Record("lists", "A", ("127.0.0.1",)) in zone.records


def test_default_list_host_and_name_lower_cased():
    r = run('dom "example.org" with mailingList "Team" with owner "alice@example.org" end end;')
    assert r.diagnostics == ()
    (d,) = r.state.lists
    assert d.web_host == "lists.example.org" and d.lists[0].name == "team"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("team-request", "ends in '-request'"),
        ("x-bounces", "ends in '-bounces'"),
        ("postmaster", "reserved"),
        ("bad name", "only letters"),
        ("a..b", "no '..'"),
        ("-a", "start with a letter"),
        ("ümlaut", "only letters"),
    ],
)
def test_bad_list_names_are_type_errors_at_the_literal(name, reason):
    r = run(f'dom "example.org" with mailingList "{name}" with owner "a@b.example" end end;')
    assert r.state is None
    (d,) = r.diagnostics
    assert "Needed type: list_name" in d.details
    assert str(d.span).startswith("1.35-")
    assert reason in d.hint


def test_list_name_reason_in_grammar():
    from domtool import validate

    for name, reason in [("team-owner", "-owner"), ("postmaster", "reserved"), ("", "empty")]:
        with pytest.raises(validate.Invalid, match=reason):
            validate.check_list_name(name)


def test_list_without_owner():
    r = run('dom "example.org" with mailingList "team" with end end;')
    (d,) = r.diagnostics
    assert d.message == "Mailing list team@example.org has no owner."


def test_owner_outside_a_list_is_a_context_error():
    r = run('dom "example.org" with owner "alice@example.org" end;')
    (d,) = r.diagnostics
    assert d.details == ("Have: Domain", "Need: MailingList")


def test_lists_need_mail_handled_here():
    r = run(
        'domain "example.org" with relayMail "mx.home.example"; '
        'mailingList "team" with owner "alice@example.org" end end;'
    )
    (d,) = r.diagnostics
    assert "need its mail handled here" in d.message


def test_alias_taking_a_list_address_is_refused():
    r = run(
        'dom "example.org" with emailAlias "team-request" "alice"; '
        'mailingList "team" with owner "alice@example.org" end end;'
    )
    (d,) = r.diagnostics
    assert "team-request@example.org is an address of mailing list team" in d.message


def test_list_twice():
    r = run(
        'dom "example.org" with mailingList "team" with owner "a@b.example" end; '
        'mailingList "team" with owner "a@b.example" end end;'
    )
    (d,) = r.diagnostics
    assert d.message == "Mailing list team@example.org is configured twice."


def test_list_in_bobs_domain_is_refused_for_alice():
    r = run('dom "bob.example" with mailingList "team" with owner "a@b.example" end end;')
    assert r.state is None
    assert r.diagnostics[0].details[-1] == "Needed type: your_domain"


def test_owner_must_be_an_address():
    r = run('dom "example.org" with mailingList "team" with owner "alice" end end;')
    (d,) = r.diagnostics
    assert r.state is None and str(d.span) == "1.47-1.59"
    assert "Needed type: email" in d.details or "is not an e-mail address" in d.message
