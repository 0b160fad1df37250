"""One member's files may not both configure one unit, of ANY kind (``api._clashes`` over
``domtool.states.configured``): the second file's unit is an error at its own span, with
the span of the first."""

from __future__ import annotations

import pytest

from domtool.lang.api import check_source
from domtool.perms import parse_perms
from domtool.states import kinds

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)

ZONE = 'domain "example.org" with end'
VHOST = 'domain "example.org" with\n  web "www" with end\nend'
MAIL = 'domain "example.org" with\n  handleMail\nend'
LISTS = 'dom "example.org" with\n  mailingList "team" with owner "alice@example.org" end\nend'

#: per state field, a file configuring a unit of that kind, and the message of its clash
CASES = {
    "zones": (ZONE, "Domain example.org"),
    "vhosts": (VHOST, "Virtual host www.example.org"),
    "mail": (MAIL, "Mail domain example.org"),
    "lists": (LISTS, "List domain example.org"),
}


def test_every_kind_a_member_configures_has_a_case():
    """A kind added to the state gets a case here; ``policies`` are admin-set only (a
    member's configuration that sets one is refused by the dispatcher)."""
    assert set(CASES) | {"policies"} == set(kinds())


@pytest.mark.parametrize("field", sorted(CASES))
def test_a_unit_in_two_files_is_refused_with_both_spans(field):
    text, what = CASES[field]
    alone = check_source([("one", text)], ALICE)
    assert alone.ok and getattr(alone.state, field), alone.diagnostics
    r = check_source([("one", text), ("two", text)], ALICE)
    assert not r.ok and r.state is None
    (d,) = [d for d in r.diagnostics if d.message == f"{what} is also configured in another file."]
    assert d.file == "two" and d.span is not None and d.span.file == "two"
    (detail,) = d.details
    assert detail.startswith("First configured at: one:") and detail != "First configured at: one"


def test_units_of_different_names_do_not_clash():
    other = 'domain "example.net" with\n  handleMail;\n  web "www" with end\nend'
    r = check_source([("one", MAIL), ("two", other)], ALICE)
    assert r.ok, r.diagnostics
