"""String literals of base types: one checker registry (domtool/lang/externs.py) for the
standard library's extern types and a file's own extern type of the same name; an extern
type with no checker admits no literals, with a hint that says so."""

from __future__ import annotations

import pytest

from domtool.lang import ast
from domtool.lang.api import check_source, load_library
from domtool.lang.externs import EXTERN_TYPES, NO_LITERALS
from domtool.perms import parse_perms

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)


def diags(text: str):
    return check_source([("f", text)], ALICE, offline=True).diagnostics


def test_one_registry_for_every_library_base_type():
    """Every extern type the library declares has its checker in the registry (or is
    one of the types without literals), and the registry has no type the library lacks."""
    lib = load_library()
    declared = {d.name for f in lib.files for d in f.decls if isinstance(d, ast.DExternType)}
    assert declared - set(EXTERN_TYPES) == NO_LITERALS
    assert set(EXTERN_TYPES) <= declared


OWN = {
    "email": (["someone", "someone@example.org", "a.b+c@example.net"], ["some one", "a@b@c.org"]),
    "emailUser": (["sales", "first.last+tag"], ["a b", "-f", "a/b"]),
    "host": (["www", "WWW"], ["www.example", "a b"]),
    "domain": (["example.com"], ["example", "ex ample.org"]),
    "your_domain": (["example.org", "www.example.net"], ["bob.example", "example.com"]),
    "your_path": (["/home/alice/x"], ["/home/bob", "/home/alice/../bob"]),
    "regexp": (["^/a(.*)$"], ["("]),
    "mime_type": (["text/html"], ["text", "text/ht ml"]),
}


@pytest.mark.parametrize("tname", sorted(OWN))
def test_self_declared_extern_type_uses_the_registrys_checker(tname):
    """A file's own `extern type T` admits exactly the literals T's checker accepts."""
    good, bad = OWN[tname]
    head = f"extern type {tname}\nextern val f : {tname} -> [Root]\n"
    for v in good:
        assert diags(head + f'f "{v}"') == (), v
    for v in bad:
        (d,) = diags(head + f'f "{v}"')
        assert d.message == "Function argument has wrong type.", v
        assert d.details[-1] == f"Needed type: {tname}"
        assert str(d.span) == f"3.2-3.{3 + len(v)}"


def test_email_with_a_space_is_refused_with_the_grammars_reason():
    (d,) = diags('extern type email\nextern val f : email -> [Root]\nf "some one@example.org"')
    assert "Actual type: string" in d.details and "Needed type: email" in d.details
    assert "found whitespace" in d.hint


def test_library_email_accepts_a_bare_user_as_domtool_2_did():
    """ServerAdmin = "alice" (Domtool 2's email): alice@DOMAIN on the vhost."""
    r = check_source([("f", 'dom "example.org" where ServerAdmin = "alice" with end')], ALICE)
    assert r.ok
    (v,) = r.state.vhosts
    assert v.server_admin == "alice@example.org"


def test_extern_type_without_a_checker_admits_no_literal_and_says_so():
    (d,) = diags('extern type mood\nextern val feel : mood -> [Root]\nfeel "happy"')
    assert d.message == "Function argument has wrong type."
    assert "mood has no checker for literals" not in d.message
    assert d.hint.startswith("mood is declared with `extern type` but has no checker for literals")
    (d,) = diags("extern type level\nextern val at : level -> [Root]\nat 3")
    assert "no checker for literals" in d.hint


def test_values_of_an_unchecked_type_come_from_extern_vals():
    assert (
        diags(
            "extern type mood\nextern val happy : mood\nextern val feel : mood -> [Root]\nfeel happy"
        )
        == ()
    )
