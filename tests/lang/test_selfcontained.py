"""Self-contained programs (their own extern types, contexts, extern vals and environment
variables, as Domtool 2's test files are): the checker checks them fully; only evaluating
or submitting one says that an extern val has no implementation, at its span."""

from __future__ import annotations

from pathlib import Path

from domtool.lang.api import check_source
from domtool.perms import parse_perms

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)
PUBLISHED = Path(__file__).resolve().parent.parent / "data" / "published"

PROGRAM = """extern type your_domain;
extern type email;
extern type ssl;
context Domain;
context Vhost;
extern val no_ssl : ssl;
extern val domain : your_domain -> Domain => [Root] {TTL : int};
extern val vhost : string -> Vhost => [Domain] {SSL : ssl, ServerAdmin : email};
extern val contact : email -> [Vhost];

domain "example.org" where TTL = 60 with
  vhost "www" where SSL = no_ssl; ServerAdmin = "someone" with
    contact "webmaster@example.org"
  end
end
"""


def test_self_contained_program_checks_offline_with_a_note():
    """-tc (offline): no error; a note at the first extern val evaluation reaches.
    The program's own TTL : int and SSL : ssl shadow the library's in this file."""
    r = check_source([("f", PROGRAM)], ALICE, offline=True)
    assert r.diagnostics == ()
    (n,) = r.notes
    assert n.severity == "note" and "not evaluated: domain" in n.message
    assert str(n.span) == "11.0-11.19"
    assert n.format().startswith("f:11.0-11.19:note: type-checks; not evaluated")


def test_submitting_a_self_contained_program_is_refused_at_the_extern_val():
    r = check_source([("f", PROGRAM)], ALICE)
    (d,) = r.diagnostics
    assert r.state is None and r.notes == ()
    assert d.message.startswith("domain is declared with `extern val` but has no implementation")
    assert str(d.span) == "11.0-11.19"
    assert d.details == ("Declared at: f:7.0-7.62",)


def test_context_error_inside_a_self_contained_program_is_still_refused():
    text = (PUBLISHED / "errors" / "selfcontained-context" / "example.org").read_text()
    r = check_source([("example.org", text)], ALICE, offline=True)
    (d,) = r.diagnostics
    assert d.message == "Context incompatibility for nested action."
    assert d.details == ("Have: Domain", "Need: Vhost")
    assert str(d.span) == "12.2-12.36"
    assert r.notes == ()


def test_type_and_environment_errors_inside_a_self_contained_program():
    """Its own types are checked as strictly as the library's: a literal of a type with
    no checker, a wrong environment value, an int where email is needed."""
    text = PROGRAM.replace('contact "webmaster@example.org"', "contact 5").replace(
        "SSL = no_ssl", 'SSL = "none"'
    )
    msgs = sorted((str(d.span), d.message) for d in check_source([("f", text)], ALICE).diagnostics)
    assert msgs == [
        ("12.26-12.31", "Wrong type for environment variable SSL."),
        ("13.12-13.12", "Function argument has wrong type."),
    ]


def test_own_environment_type_cannot_reach_the_librarys_directives():
    """Only values that fit the library's type reach its directives: TTL declared int by
    the file, a library record with TTL = 70000000000 (past ttl) is refused at the value."""
    text = 'extern val own : [Root] {TTL : int}\ndomain "example.org" where TTL = 70000000000 with\n  dnsA "x" "192.0.2.1"\nend'
    (d,) = check_source([("f", text)], ALICE, offline=True).diagnostics
    assert "does not fit the standard library's type ttl" in d.message
    assert str(d.span) == "2.33-2.43"


def test_offline_still_evaluates_what_it_can():
    """A file of its own declarations that never runs them is evaluated as usual."""
    text = 'extern val unused : [Domain]\ndom "example.org" with end'
    r = check_source([("f", text)], ALICE, offline=True)
    assert r.ok and r.notes == () and r.state.vhosts
