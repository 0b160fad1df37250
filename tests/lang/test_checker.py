"""The type checker: permissions as types, context predicates, environment variables,
error shapes, and checking without the standard library."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.lang import types as T
from domtool.lang.api import check_source, load_library
from domtool.lang.checker import EMPTY_LIBRARY, check_file
from domtool.lang.parser import parse_file
from domtool.perms import parse_perms

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)


def errors(text: str, perms=ALICE, name: str = "f") -> list:
    """Only the checker's diagnostics for ``text`` (parse errors fail the test)."""
    f, diags = parse_file(name, text)
    assert f is not None and not diags, [d.format() for d in diags]
    return check_file(f, perms, load_library(), source=text)


def one_error(text: str, perms=ALICE):
    errs = errors(text, perms)
    assert len(errs) == 1, [e.format() for e in errs]
    return errs[0]


# -- context predicates (no parser involved) -------------------------------------------


def test_implication_basics():
    """Implication between context predicates decides the published placement rules."""
    dom, vh, loc = T.Ctx("Domain"), T.Ctx("Vhost"), T.Ctx("Location")
    assert T.implies(dom, dom)
    assert not T.implies(dom, vh)
    assert T.implies(vh, T.Anc(vh))
    assert T.implies(T.conj(T.Anc(vh), loc), T.Anc(vh))
    assert not T.implies(T.conj(T.Anc(vh), loc), vh)
    assert T.implies(T.Root(), T.Not(dom))
    assert not T.implies(T.Anc(dom), dom)
    assert T.implies(T.Root(), T.Anc(T.Root()))
    assert T.implies(vh, T.TRUE)


def test_implication_needs_a_deep_stack_for_nested_ancestors():
    """``^(Vhost & ^Domain)`` is implied by ``Vhost & ^Domain`` but not by ``Vhost`` alone:
    the counterexample needs a stack without Domain under the Vhost."""
    vh, dom = T.Ctx("Vhost"), T.Ctx("Domain")
    inner = T.conj(vh, T.Anc(dom))
    assert T.implies(inner, T.Anc(inner))
    assert not T.implies(vh, T.Anc(inner))
    assert not T.satisfiable(T.conj(T.Root(), vh))
    assert T.satisfiable(T.conj(T.Anc(vh), T.Ctx("Directory")))


def test_predicates_print_in_source_syntax():
    """Predicates print as written: ``^Vhost & Location``, ``!Root``, ``^(A & B)``."""
    p = T.conj(T.Anc(T.Ctx("Vhost")), T.Ctx("Location"))
    assert T.show_pred(p) == "^Vhost & Location"
    assert T.show_pred(T.Not(T.Root())) == "!Root"
    assert T.show_pred(T.Anc(T.conj(T.Ctx("A"), T.Ctx("B")))) == "^(A & B)"
    assert T.show_pred(T.conj(p, p, T.Ctx("Location"))) == "^Vhost & Location"


# -- permissions are types ---------------------------------------------------------------


def test_foreign_domain_is_refused_at_the_literal_with_the_published_details():
    """A domain alice does not own is a plain string where your_domain is needed."""
    e = one_error('dom "bob.example" with\nend;\n')
    assert e.message == "Function argument has wrong type."
    assert str(e.span) == "1.4-1.16"
    assert e.details == (
        'Expression: "bob.example"',
        "Actual type: string",
        "Needed type: your_domain",
    )
    assert "example.org" in e.hint and "example.net" in e.hint


def test_subdomain_of_an_owned_domain_is_accepted():
    """A granted domain covers its subdomains, never a sibling or the parent."""
    assert errors('domain "lab.example.org" with end') == []
    assert len(errors('domain "org" with end')) == 1
    assert len(errors('domain "example.com" with end')) == 1


def test_a_val_bound_to_a_literal_keeps_its_value_for_checking():
    """``val d = "bob.example"`` is still refused when used as your_domain."""
    e = one_error('val d = "bob.example"\ndom d with end')
    assert "Needed type: your_domain" in e.details
    assert errors('val d = "example.org"\ndom d with end') == []


def test_foreign_path_in_a_setting_is_refused_at_the_literal():
    """``DocumentRoot = "/home/bob/x"`` for alice: the value must be your_path."""
    text = 'dom "example.org" with\n  web "w" where DocumentRoot = "/home/bob/x" with end\nend'
    e = one_error(text)
    assert e.message == "Wrong type for environment variable DocumentRoot."
    assert str(e.span) == "2.31-2.43"
    assert "Needed type: your_path" in e.details
    assert "/home/alice" in e.hint


def test_path_escape_with_dotdot_is_refused():
    """``/home/alice/../bob`` normalises outside alice's paths."""
    e = one_error('dom "example.org" with web "w" with alias "/x" "/home/alice/../bob" end end')
    assert "Needed type: your_path" in e.details


def test_syntactic_extern_types_explain_the_grammar():
    """A malformed IP address gets a hint from the grammar."""
    e = one_error('domain "example.org" with dnsA "x" "300.1.1.1" end')
    assert "Needed type: ipv4" in e.details
    assert e.hint and "300.1.1.1" in e.hint


def test_list_items_are_checked_against_the_element_type():
    """One bad address in aliasMulti's list is refused."""
    e = one_error('dom "example.org" with aliasMulti "team" ["alice", "not an address"] end')
    assert "Needed type: [address]" in e.details


# -- contexts ------------------------------------------------------------------------------


def test_alias_directly_in_a_domain_is_a_context_error_at_the_alias():
    """The published context error: Have: Domain, Need: Vhost, at the alias application."""
    text = 'dom "example.org" with\n  alias "/doc" "/home/alice/doc"\nend;\n'
    e = one_error(text)
    assert e.message == "Context incompatibility for nested action."
    assert e.details == ("Have: Domain", "Need: Vhost")
    assert str(e.span) == "2.2-2.31"


def test_web_at_top_level_is_a_context_error():
    """A vhost outside a domain: Have: Root, Need: Domain."""
    e = one_error('web "www" with end')
    assert e.details == ("Have: Root", "Need: Domain")


def test_settings_work_in_locations_but_vhost_only_directives_do_not():
    """``options`` ([^Vhost]) is fine in a location; ``alias`` ([Vhost]) is not."""
    ok = 'dom "example.org" with web "w" with location "/p" with options ["+Indexes"] end end end'
    assert errors(ok) == []
    bad = 'dom "example.org" with web "w" with location "/p" with alias "/a" "/home/alice/a" end end end'
    e = one_error(bad)
    assert e.details == ("Have: ^Vhost & Location", "Need: Vhost")


def test_requirements_inside_lambdas_are_checked_where_they_are_used():
    """A helper that uses ``alias`` carries the Vhost requirement to its call site."""
    text = (
        'val docs = \\p -> alias "/docs" p\n'
        'dom "example.org" with\n  docs "/home/alice/d";\n'
        '  web "w" with docs "/home/alice/d" end\nend'
    )
    e = one_error(text)
    assert str(e.span).startswith("3.2-")
    assert e.details[1] == "Need: Vhost"


def test_user_block_directive():
    """A ``\\\\x : P -> e`` block directive runs its body where P holds."""
    text = (
        "val site = \\name -> \\\\body : Vhost -> web name with body end\n"
        'dom "example.org" with site "blog" with alias "/a" "/home/alice/a" end end'
    )
    assert errors(text) == []


def test_exponential_helper_type_checks():
    """``\\x -> (x; x)`` takes any action; its requirement is fixed by the use."""
    text = 'val twice = \\x -> (x; x)\ndom "example.org" with twice handleMail end'
    assert errors(text) == []
    text = (
        'val twice = \\x -> (x; x)\ndom "example.org" with twice (alias "/a" "/home/alice/a") end'
    )
    assert one_error(text).details == ("Have: Domain", "Need: Vhost")


# -- environment variables ------------------------------------------------------------------


def test_unknown_environment_variable_has_a_hint():
    """A misspelt variable name is an error with the nearest names."""
    e = one_error('dom "example.org" with web "w" where DocumentRot = "/home/alice" with end end')
    assert e.message == "Unknown environment variable DocumentRot."
    assert "DocumentRoot" in e.hint


def test_reading_a_variable_gives_its_declared_type():
    """``r <- DocumentRoot`` is your_path, usable as an alias target."""
    text = 'dom "example.org" with web "w" with r <- DocumentRoot; alias "/x" r end end'
    assert errors(text) == []


def test_setting_a_node_list_checks_each_node():
    """WebNodes holds web_node values: only the site's nodes with the web role."""
    assert errors('dom "example.org" where WebNodes = ["local"] with end') == []
    e = one_error('dom "example.org" where WebNodes = ["nosuchnode"] with end')
    assert "Needed type: [web_node]" in e.details


# -- error collection and shapes ---------------------------------------------------------------


def test_all_errors_of_a_file_are_reported():
    """Three independent errors give three diagnostics, in source order."""
    text = (
        'dom "bob.example" with end;\n'
        'dom "example.org" with\n  alias "/a" "/home/alice/a";\n'
        '  web "w" where DocumentRoot = "/etc" with end\nend\n'
    )
    errs = errors(text)
    assert [e.span.start.line for e in errs] == [1, 3, 4]
    assert [e.message for e in errs] == [
        "Function argument has wrong type.",
        "Context incompatibility for nested action.",
        "Wrong type for environment variable DocumentRoot.",
    ]


def test_unknown_variable_suggests_a_near_name():
    """A misspelt directive is reported with a suggestion."""
    e = one_error('dom "example.org" with handelMail end')
    assert e.message == "Unknown variable handelMail."
    assert "handleMail" in e.hint


def test_too_many_arguments():
    """Applying an action to one more argument is "Applying a non-function."."""
    e = one_error('dom "example.org" with aliasDrop "x" "y" end')
    assert e.message == "Applying a non-function."


def test_block_without_body_and_body_on_non_block():
    """``web "w"`` without ``with`` and ``handleMail with end`` are both refused."""
    assert one_error('dom "example.org" with web "w" end').message == (
        "Block directive used without a body."
    )
    assert (
        "not a block directive"
        in one_error('dom "example.org" with handleMail with end end').message
    )


def test_if_needs_a_bool():
    """The condition of ``if`` must be a bool; either branch may be an action."""
    assert errors('dom "example.org" with if true then handleMail else aliasDrop "x" end end') == []
    assert one_error('dom "example.org" with if "yes" then handleMail else handleMail end end')


def test_formatted_error_has_the_published_shape():
    """``FILE:L.C-L.C:error: MESSAGE`` then the detail lines (via the API)."""
    from domtool.lang.errors import format_all

    r = check_source([("example.org", 'dom "bob.example" with\nend;\n')], ALICE)
    assert r.state is None
    out = format_all(r.diagnostics)
    assert out.splitlines()[:4] == [
        "example.org:1.4-1.16:error: Function argument has wrong type.",
        'Expression: "bob.example"',
        "Actual type: string",
        "Needed type: your_domain",
    ]


# -- without the standard library --------------------------------------------------------------


SELF_CONTAINED = """
context Box
{{ A box. }}
context Shelf
extern type colour
{{ Colours, with no literal inhabitants. }}
extern val red : colour
extern val shelf : string -> Shelf => [Root] {Height : int}
extern val box : colour -> Box => [Shelf]
extern val label : string -> [Box]
val redBox = box red
shelf "top" where Height = 3 with
  redBox with label "fragile" end;
  box red with end
end
"""


def test_self_contained_program_checks_without_the_standard_library():
    """A program declaring its own contexts, extern types and values needs no library."""
    f, diags = parse_file("own", SELF_CONTAINED)
    assert f is not None and not diags
    assert check_file(f, ALICE, EMPTY_LIBRARY, source=SELF_CONTAINED) == []


def test_self_contained_program_errors():
    """Its own contexts and types are enforced: a string is not a colour, labels need a Box."""
    text = SELF_CONTAINED.replace("box red with end", 'box "red" with end').replace(
        'redBox with label "fragile" end', 'label "fragile"'
    )
    f, diags = parse_file("own", text)
    assert f is not None and not diags
    errs = check_file(f, ALICE, EMPTY_LIBRARY, source=text)
    assert sorted(e.message for e in errs) == [
        "Context incompatibility for nested action.",
        "Function argument has wrong type.",
    ]


def test_unknown_context_and_type_in_declarations():
    """Declarations naming undeclared contexts or types are errors."""
    text = "extern val x : nosuch -> [Nowhere]\n"
    f, diags = parse_file("own", text)
    assert f is not None and not diags
    msgs = sorted(e.message for e in check_file(f, ALICE, EMPTY_LIBRARY, source=text))
    assert msgs == ["Unknown context Nowhere.", "Unknown type nosuch."]


@pytest.mark.parametrize(
    "decl",
    [
        "extern val bad : [Root] {DocumentRoot : string}",
        "extern val bad : [Root] {TTL : string}",
    ],
)
def test_conflicting_environment_declaration(decl):
    """A file may give a library environment variable a type of its own (self-contained
    programs do), but not two: the second declaration in the file is an error."""
    assert errors(decl + "\n") == []
    other = decl.replace("bad", "worse").replace("string", "bool")
    errs = errors(decl + "\n" + other + "\n")
    assert [e.message for e in errs] == [
        f"Environment variable {decl.split('{')[1].split(' ')[0]} declared with conflicting types."
    ]
    assert errs[0].span.start.line == 2


def test_own_type_for_a_library_variable_cannot_smuggle_a_value():
    """With DocumentRoot redeclared as string, "/etc" type-checks in the file, but the
    evaluator refuses it at the literal: the library's directives read your_path."""
    text = (
        "extern val bad : [Root] {DocumentRoot : string}\n"
        'dom "example.org" where DocumentRoot = "/etc" with end\n'
    )
    r = check_source([("f", text)], ALICE)
    (d,) = r.diagnostics
    assert "does not fit the standard library's type your_path" in d.message
    assert str(d.span) == "2.39-2.44"


PREDS = st.recursive(
    st.one_of(st.just(T.Root()), st.sampled_from([T.Ctx("A"), T.Ctx("B"), T.Ctx("C")])),
    lambda sub: st.one_of(
        sub.map(T.Anc), sub.map(T.Not), st.tuples(sub, sub).map(lambda ab: T.conj(*ab))
    ),
    max_leaves=5,
)


@settings(max_examples=200)
@given(PREDS, PREDS)
def test_implication_agrees_with_brute_force_enumeration(have, need):
    """The automaton decision agrees with checking every stack over A, B, C and a fresh
    name up to length 4."""
    alphabet = ["A", "B", "C", "D"]
    brute = all(
        T.holds(need, s)
        for n in range(5)
        for s in itertools.product(alphabet, repeat=n)
        if T.holds(have, s)
    )
    assert T.implies(have, need) == brute


def test_error_count_is_capped():
    """A file of thousands of mistakes stops after the cap with one closing error."""
    from domtool.lang.checker import MAX_ERRORS

    text = 'domain "example.org" with ' + "; ".join(["nosuchthing"] * 3000) + " end"
    errs = errors(text)
    assert len(errs) == MAX_ERRORS + 1
    assert errs[-1].message.startswith("Too many errors")
