"""The parser: the AST of each construct, precedence and layout choices, exact spans,
declarations and their documentation, error messages and recovery, and the depth bound."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import pytest

from domtool.lang import ast
from domtool.lang.api import library_sources
from domtool.lang.parser import MAX_DEPTH, parse_expr, parse_file, parse_type

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
EXAMPLE_FILES = sorted(
    p.relative_to(EXAMPLES).as_posix()
    for p in EXAMPLES.rglob("*")
    if p.is_file() and p.parent != EXAMPLES
)


# -- helpers ---------------------------------------------------------------------------


def strip(node):
    """The node with every span (recursively) set to None, for comparing shapes."""
    if isinstance(node, tuple):
        return tuple(strip(x) for x in node)
    if not attrs.has(type(node)):
        return node
    changes = {}
    for f in attrs.fields(type(node)):
        v = getattr(node, f.name)
        changes[f.name] = None if f.name == "span" else strip(v)
    return type(node)(**changes)


def expr(text: str):
    e, diags = parse_expr("t", text)
    assert diags == [], [d.format() for d in diags]
    return e


def shape(text: str):
    return strip(expr(text))


def typ(text: str):
    t, diags = parse_type("t", text)
    assert diags == [], [d.format() for d in diags]
    return strip(t)


def file(text: str) -> ast.File:
    f, diags = parse_file("t", text)
    assert diags == [], [d.format() for d in diags]
    return f


def errors(text: str) -> list[str]:
    f, diags = parse_file("t", text)
    assert f is None and diags
    return [f"{d.span} {d.message}" for d in diags]


def V(name):  # noqa: N802 - short builders for expected shapes
    return ast.EVar(name, None)


def S(value):  # noqa: N802
    return ast.EString(value, None)


def App(f, *args):  # noqa: N802
    return ast.EApp(f, tuple(args), None)


def Seq(*items):  # noqa: N802
    return ast.ESeq(tuple(items), None)


def Ctx(name):  # noqa: N802
    return ast.PCtx(name, None)


def Name(name):  # noqa: N802
    return ast.TName(name, None)


# -- literals and application -----------------------------------------------------------


def test_literals():
    """Integers, strings, booleans and lists become their nodes."""
    assert shape("42") == ast.EInt(42, None)
    assert shape('"a\\"b"') == S('a"b')
    assert shape("true") == ast.EBool(True, None)
    assert shape("false") == ast.EBool(False, None)
    assert shape("[]") == ast.EList((), None)
    assert shape('[1, "x", [true]]') == ast.EList(
        (ast.EInt(1, None), S("x"), ast.EList((ast.EBool(True, None),), None)), None
    )


def test_application_is_flat_and_left_associative():
    """``f a b c`` is one EApp with three arguments; ``f (g a) b`` nests only the group."""
    assert shape("f a b c") == App(V("f"), V("a"), V("b"), V("c"))
    assert shape("f (g a) b") == App(V("f"), App(V("g"), V("a")), V("b"))
    assert shape("(f a) b") == App(App(V("f"), V("a")), V("b"))


def test_sequences_are_flat_and_a_trailing_semicolon_is_ignored():
    """``a; b; c;`` is one ESeq of three items; one item alone is not a sequence."""
    assert shape("a; b; c;") == Seq(V("a"), V("b"), V("c"))
    assert shape("a;") == V("a")
    assert shape("begin a; b end") == Seq(V("a"), V("b"))


def test_parentheses_and_begin_only_group():
    """The node inside parentheses keeps its own span."""
    e = expr("f ( g  x )")
    assert str(e.args[0].span) == "1.4-1.7"
    assert str(e.span) == "1.0-1.9"  # an enclosing node ends at the closing parenthesis
    assert str(expr("\\x -> (a; b)").span) == "1.0-1.11"
    assert str(expr("(a); (b)").span) == "1.0-1.7"


# -- lambdas, settings, gets -------------------------------------------------------------


def test_lambdas():
    """``\\x -> e``, with a parenthesised or atomic annotation, and block lambdas."""
    assert shape("\\x -> f x") == ast.ELambda("x", None, App(V("f"), V("x")), None)
    assert shape("\\x : (string) -> x") == ast.ELambda("x", Name("string"), V("x"), None)
    assert shape("\\x : [int] -> x") == ast.ELambda("x", ast.TList(Name("int"), None), V("x"), None)
    arrow = ast.TArrow(Name("int"), Name("bool"), None)
    assert shape("\\f : (int -> bool) -> f") == ast.ELambda("f", arrow, V("f"), None)
    assert shape("\\\\b : ^Vhost & Location -> b") == ast.EBlockLambda(
        "b", ast.PAnd(ast.PAnc(Ctx("Vhost"), None), Ctx("Location"), None), V("b"), None
    )


def test_lambda_body_stops_at_semicolon():
    """``\\x -> a; b`` is a sequence of the lambda and b; parentheses put a sequence in
    the body."""
    assert shape("\\x -> a; b") == Seq(ast.ELambda("x", None, V("a"), None), V("b"))
    assert shape("\\x -> (a; b)") == ast.ELambda("x", None, Seq(V("a"), V("b")), None)
    assert shape("\\x -> begin a; b end") == ast.ELambda("x", None, Seq(V("a"), V("b")), None)


def test_lambdas_nest_to_the_right_and_take_blocks():
    """``\\d -> \\\\c : Domain -> domain d with c end`` as in the dom shorthand."""
    got = shape("\\d -> \\\\c : Domain -> domain d with c end")
    body = ast.EWith(App(V("domain"), V("d")), None, V("c"), None)
    assert got == ast.ELambda("d", None, ast.EBlockLambda("c", Ctx("Domain"), body, None), None)


def test_settings():
    """``C = e`` is an ESet whose value is an application; the sequence goes on after."""
    assert shape('DocumentRoot = "/x"; web "w" with end') == Seq(
        ast.ESet("DocumentRoot", S("/x"), None),
        ast.EWith(App(V("web"), S("w")), None, None, None),
    )
    assert shape("TTL = f 3") == ast.ESet("TTL", App(V("f"), ast.EInt(3, None)), None)


def test_get_takes_the_rest_of_the_sequence():
    """``a; x <- C; b; c`` is ESeq(a, EGet(x, C, ESeq(b, c)))."""
    assert shape("a; x <- C; b; c") == Seq(V("a"), ast.EGet("x", "C", Seq(V("b"), V("c")), None))
    assert shape("x <- C; f x") == ast.EGet("x", "C", App(V("f"), V("x")), None)
    assert shape("x <- C; y <- D; g x y;") == ast.EGet(
        "x", "C", ast.EGet("y", "D", App(V("g"), V("x"), V("y")), None), None
    )


# -- blocks ----------------------------------------------------------------------------


def test_with_blocks():
    """``e with end`` has no body; ``e with b end`` has one; blocks nest."""
    assert shape('dom "x" with end') == ast.EWith(App(V("dom"), S("x")), None, None, None)
    assert shape("web w with ssi; execCGI end") == ast.EWith(
        App(V("web"), V("w")), None, Seq(V("ssi"), V("execCGI")), None
    )
    inner = ast.EWith(V("b"), None, V("c"), None)
    assert shape("a with b with c end end") == ast.EWith(V("a"), None, inner, None)


def test_where_blocks():
    """``e where S end`` is an ELocal with settings only; ``e where S with B end`` an
    EWith with settings; the setting's value does not swallow the ``with``."""
    setting = ast.ESet("DocumentRoot", S("/r"), None)
    assert shape('web "w" where DocumentRoot = "/r" end') == ast.ELocal(
        (), setting, App(V("web"), S("w")), None
    )
    assert shape('web "w" where DocumentRoot = "/r" with ssi end') == ast.EWith(
        App(V("web"), S("w")), setting, V("ssi"), None
    )
    assert shape('web "w" where A = 1; B = 2 with end') == ast.EWith(
        App(V("web"), S("w")),
        Seq(ast.ESet("A", ast.EInt(1, None), None), ast.ESet("B", ast.EInt(2, None), None)),
        None,
        None,
    )


def test_let_with_declarations_and_settings():
    """Leading ``val`` declarations go to decls, the rest to settings; both optional."""
    got = shape('let val x = 1; val y = f x; DocumentRoot = "/r"; TTL = 5 in g x y end')
    assert got.decls == (
        ast.DVal("x", None, ast.EInt(1, None), None, None),
        ast.DVal("y", None, App(V("f"), V("x")), None, None),
    )
    assert got.settings == Seq(
        ast.ESet("DocumentRoot", S("/r"), None), ast.ESet("TTL", ast.EInt(5, None), None)
    )
    assert got.body == App(V("g"), V("x"), V("y"))
    assert shape("let val x : int = 1 in x end").decls[0].type == Name("int")
    assert shape("let A = 1 in b; c end") == ast.ELocal(
        (), ast.ESet("A", ast.EInt(1, None), None), Seq(V("b"), V("c")), None
    )


def test_if():
    """``if c then a else b end`` with sequences allowed in the branches."""
    assert shape("if c then a; b else d end") == ast.EIf(V("c"), Seq(V("a"), V("b")), V("d"), None)


def test_blocks_and_groups_are_application_arguments():
    """``f (a; b) [x] let A = 1 in y end`` takes three arguments."""
    got = shape("f (a; b) [x] let A = 1 in y end")
    assert isinstance(got, ast.EApp) and len(got.args) == 3
    assert isinstance(got.args[2], ast.ELocal)


# -- types and predicates ----------------------------------------------------------------


def test_base_list_and_arrow_types():
    """Arrows are right-associative; parentheses override."""
    assert typ("int") == Name("int")
    assert typ("[string]") == ast.TList(Name("string"), None)
    assert typ("a -> b -> c") == ast.TArrow(Name("a"), ast.TArrow(Name("b"), Name("c"), None), None)
    assert typ("(a -> b) -> c") == ast.TArrow(
        ast.TArrow(Name("a"), Name("b"), None), Name("c"), None
    )
    assert typ("[[a]]") == ast.TList(ast.TList(Name("a"), None), None)


def test_action_types():
    """``[P]``, with reads, with reads and writes, and writes alone."""
    assert typ("[Root]") == ast.TAction(ast.PRoot(None), (), (), None)
    assert typ("[^Vhost] {DocumentRoot : your_path, TTL : ttl}") == ast.TAction(
        ast.PAnc(Ctx("Vhost"), None),
        (("DocumentRoot", Name("your_path")), ("TTL", Name("ttl"))),
        (),
        None,
    )
    assert typ("[Domain] {} => {X : [int]}") == ast.TAction(
        Ctx("Domain"), (), (("X", ast.TList(Name("int"), None)),), None
    )
    assert typ("[!Root] => {X : int}") == ast.TAction(
        ast.PNot(ast.PRoot(None), None), (), (("X", Name("int")),), None
    )
    assert typ("[(Vhost)]") == ast.TAction(Ctx("Vhost"), (), (), None)


def test_block_types():
    """``string -> ^Vhost & Directory => [Vhost]`` is string -> TNested(...)."""
    assert typ("string -> ^Vhost & Directory => [Vhost]") == ast.TArrow(
        Name("string"),
        ast.TNested(
            ast.PAnd(ast.PAnc(Ctx("Vhost"), None), Ctx("Directory"), None),
            ast.TAction(Ctx("Vhost"), (), (), None),
            None,
        ),
        None,
    )
    assert typ("(A) => [Root]") == ast.TNested(
        Ctx("A"), ast.TAction(ast.PRoot(None), (), (), None), None
    )
    assert typ("(A => [Root]) -> b") == ast.TArrow(
        ast.TNested(Ctx("A"), ast.TAction(ast.PRoot(None), (), (), None), None), Name("b"), None
    )


def test_predicate_precedence():
    """``&`` is left-associative and looser than ``^`` and ``!``."""
    t = typ("[A & ^B & !(C & D)]")
    assert t.pred == ast.PAnd(
        ast.PAnd(Ctx("A"), ast.PAnc(Ctx("B"), None), None),
        ast.PNot(ast.PAnd(Ctx("C"), Ctx("D"), None), None),
        None,
    )
    assert typ("[^(A & B)]").pred == ast.PAnc(ast.PAnd(Ctx("A"), Ctx("B"), None), None)


def test_type_spans():
    """Action types span to their last bracket; nested types from the predicate."""
    t, _ = parse_type("t", "[Root] {A : int} => {B : int}")
    assert str(t.span) == "1.0-1.28"
    t, _ = parse_type("t", "string -> ^Vhost & Directory => [Vhost]")
    assert str(t.span) == "1.0-1.38"
    assert str(t.result.span) == "1.10-1.38"
    assert str(t.result.body.span) == "1.10-1.27"


# -- declarations and files ---------------------------------------------------------------


def test_declarations_with_and_without_semicolons():
    """Each declaration form, ``;`` optional, ``{{ }}`` after it (before or after the
    ``;``) sets its doc."""
    f = file(
        "extern type t;\n{{ A type. }}\n"
        "extern val x : t -> [Root]\n{{ An\n   action. }};\n"
        "val y = x\n"
        "val z : t = y;\n"
        "context Box {{ A box. }}\n"
    )
    assert [strip(d) for d in f.decls] == [
        ast.DExternType("t", "A type.", None),
        ast.DExternVal(
            "x", ast.TArrow(Name("t"), ast.TAction(ast.PRoot(None), (), (), None), None),
            "An\naction.", None,
        ),
        ast.DVal("y", None, V("x"), None, None),
        ast.DVal("z", Name("t"), V("y"), None, None),
        ast.DContext("Box", "A box.", None),
    ]  # fmt: skip
    assert f.body is None


def test_declaration_spans():
    """A declaration spans from its keyword to the end of its type or value."""
    f = file("extern val x : [Root];\n  val y =\n  f  x  ;\ncontext C")
    assert [str(d.span) for d in f.decls] == ["1.0-1.20", "2.2-3.5", "4.0-4.8"]


def test_top_level_val_ends_at_a_column_zero_token():
    """``val d = "x"`` then ``dom d with end`` on the next line is a declaration and
    the body; indented continuation lines belong to the value."""
    f = file('val d = "example.org"\ndom d with end')
    assert strip(f.decls[0].value) == S("example.org")
    assert strip(f.body) == ast.EWith(App(V("dom"), V("d")), None, None, None)
    f = file("val f = g\n  a\n  b\nh")
    assert strip(f.decls[0].value) == App(V("g"), V("a"), V("b"))
    assert strip(f.body) == V("h")


def test_column_zero_continues_inside_brackets_and_blocks():
    """The layout rule applies only at the declaration's outer level."""
    f = file("val f = g (a\nb) with\nc\nd\nend\nh")
    assert strip(f.decls[0].value) == ast.EWith(
        App(V("g"), App(V("a"), V("b"))), None, App(V("c"), V("d")), None
    )
    assert strip(f.body) == V("h")


def test_layout_does_not_apply_to_the_body_or_let():
    """In the body, a name in column 0 is an argument as usual."""
    assert strip(file("f\nx").body) == App(V("f"), V("x"))
    assert strip(file("let val a = f\nx in a end").body).decls[0].value == App(V("f"), V("x"))


def test_doc_comment_before_everything_is_ignored_elsewhere_refused():
    """A leading ``{{ }}`` documents the file; one inside an expression is an error."""
    assert file("{{ File doc. }}\ncontext C").decls[0].doc is None
    assert errors("f {{ no }} x") == [
        "1.2-1.9 a documentation comment {{ }} must follow a declaration"
    ]


def test_published_spans():
    """The with-block of ``dom "example.org" with\\nend;`` spans 1.0-2.2; the literal
    ``"bob.example"`` of errors/bob.example spans 3.4-3.16."""
    f = file('dom "example.org" with\nend;')
    assert str(f.body.span) == "1.0-2.2"
    assert str(f.body.block.span) == "1.0-1.16"
    f = file((EXAMPLES / "errors" / "bob.example").read_text())
    assert str(f.body.block.args[0].span) == "3.4-3.16"
    assert f.body.block.args[0].value == "bob.example"


def test_spans_of_compound_expressions():
    """Sequences, gets, settings, lambdas, lets, wheres, ifs and lists span exactly."""
    src = "a;\n x <- C; f x\n"
    assert str(expr(src).span) == "1.0-2.11"
    assert str(expr(src).items[1].span) == "2.1-2.11"
    assert str(expr("  A = f 1").span) == "1.2-1.8"
    assert str(expr("\\x -> \\\\y : A -> y").span) == "1.0-1.17"
    assert str(expr("\\x -> \\\\y : A -> y").body.span) == "1.6-1.17"
    assert str(expr("let A = 1 in b end").span) == "1.0-1.17"
    assert str(expr('w "x" where A = 1 end').span) == "1.0-1.20"
    assert str(expr("if c then a else b end").span) == "1.0-1.21"
    assert str(expr("[ 1 ,2 ]").span) == "1.0-1.7"


@pytest.mark.parametrize("rel", EXAMPLE_FILES)
def test_published_examples_parse(rel):
    """Each example config (alice's and the error examples) is syntactically valid."""
    f = file((EXAMPLES / rel).read_text())
    assert f.decls == () and f.body is not None


def test_example_net_structure():
    """example.net: one domain block whose body is a flat sequence of nine items, with
    the let, the where-with and the comments in the right places."""
    f = file((EXAMPLES / "alice" / "example.net").read_text())
    body = f.body.body
    assert isinstance(body, ast.ESeq) and len(body.items) == 9
    let = body.items[7]
    assert isinstance(let, ast.ELocal) and let.decls == ()
    assert strip(let.settings) == ast.ESet("DocumentRoot", S("/home/alice/sites/shared"), None)
    assert isinstance(let.body, ast.ESeq) and len(let.body.items) == 2
    docs = body.items[8]
    assert isinstance(docs, ast.EWith) and docs.settings is not None
    assert str(docs.span) == "25.2-29.4"


def test_standard_library_parses_with_docs():
    """Every library file parses; every declaration in it carries its doc."""
    for name, text in library_sources():
        f, diags = parse_file(name, text)
        assert diags == [], [d.format() for d in diags]
        assert f.body is None and f.decls
        assert all(d.doc for d in f.decls), name


def test_bytes_input():
    """Bytes are decoded first; invalid UTF-8 is a diagnostic, not an exception."""
    f, diags = parse_file("t", b"context C")
    assert diags == [] and f.decls[0].name == "C"
    f, diags = parse_file("t", b"context \xff")
    assert f is None and diags[0].message.startswith("invalid UTF-8")


def test_empty_file():
    """Nothing at all (or only comments) is an empty File."""
    assert file("") == ast.File("t", (), None)
    assert file("(* c *) # d\n") == ast.File("t", (), None)


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("with x", "1.0-1.3 unexpected keyword 'with', expected an expression"),
        (
            "dom with ]",
            "1.9-1.9 unexpected ']', expected an expression or 'end' (to close 'with' of 1.4)",
        ),
        (
            'dom "x" with end dom',
            "1.17-1.19 unexpected identifier 'dom', expected ';' or end of file",
        ),
        (
            'dom "x" with',
            "1.12-1.12 unexpected end of file, expected an expression or 'end' (to close 'with' of 1.8)",
        ),
        (
            'dom "x" with a',
            "1.14-1.14 unexpected end of file, expected ';' or 'end' (to close 'with' of 1.8)",
        ),
        ("f (a", "1.4-1.4 unexpected end of file, expected ';' or ')' (to close '(' of 1.2)"),
        ("[a b", "1.4-1.4 unexpected end of file, expected ',' or ']' (to close '[' of 1.0)"),
        (
            "extern val x int",
            "1.13-1.15 unexpected identifier 'int', expected ':' and the type of the extern value",
        ),
        (
            "extern foo",
            "1.7-1.9 unexpected identifier 'foo', expected 'type' or 'val' after 'extern'",
        ),
        ("context c", "1.8-1.8 unexpected identifier 'c', expected a context name (capitalised)"),
        ("extern val x : [Root] -> ", "1.25-1.25 unexpected end of file, expected a type"),
        (
            "extern val x : Root",
            "1.19-1.19 unexpected end of file, expected '=>' (a context predicate begins a block type 'P => T')",
        ),
        (
            "\\\\x : int -> x",
            "1.6-1.8 unexpected identifier 'int', expected a context predicate (Root, a context name, ^P, !P or (P))",
        ),
        (
            "x <- c; y",
            "1.5-1.5 unexpected identifier 'c', expected an environment variable name (capitalised)",
        ),
        ("if a then b end", "1.12-1.14 unexpected keyword 'end', expected ';' or 'else'"),
        (
            "a where b with c",
            "1.16-1.16 unexpected end of file, expected ';' or 'end' (to close 'where ... with' of 1.2)",
        ),
        ("a; val x = 1", "1.3-1.5 declarations must come before the file's expression"),
    ],
)
def test_error_messages(text, expected):
    """Each syntax error: "unexpected X, expected Y" at the offending token's span."""
    assert errors(text) == [expected]


def test_context_name_alone_suggests_set_or_get():
    """A capitalised name where an expression is needed explains both uses."""
    (msg,) = errors("f; DocumentRoot; g")
    assert "DocumentRoot = ..." in msg and "x <- DocumentRoot" in msg
    assert errors("f; DocumentRoot") == [
        "1.15-1.15 unexpected end of file, expected '=' (to set DocumentRoot)"
    ]


def test_errors_in_several_declarations_are_all_reported():
    """An error in one declaration does not hide errors in later ones or in the body."""
    text = (
        "extern val a : -> [Root];\n"
        "val b = ;\n"
        "context C\n"
        "extern type T\n"
        'dom "x" with ] end;\n'
        'dom "y" with f ( end\n'
    )
    assert [e.split()[0] for e in errors(text)] == [
        "1.15-1.16",
        "2.8-2.8",
        "4.12-4.12",
        "5.13-5.13",
        "6.17-6.19",
    ]


def test_recovery_on_one_line_at_semicolon_val():
    """Without line breaks, ``; val`` is a recovery point too."""
    assert len(errors("val a = ); val b = ]; val c = 1")) == 2


def test_lexical_and_syntax_errors_are_reported_together():
    """An unknown character and a later syntax error both appear, in source order."""
    got = errors('val a = @ 1\ndom "x" with ) end')
    assert got[0].startswith("1.8-1.8 unknown character '@'")
    assert got[1].startswith("2.13-2.13 unexpected ')'")


def test_unterminated_comment_does_not_add_an_end_of_file_error():
    """The swallowed rest of the file is reported once, at the comment's opening."""
    assert errors('dom "x" with (* never closed\nend') == [
        "1.13-1.14 unterminated comment (opened here)"
    ]


def test_parse_type_and_expr_reject_trailing_input():
    """The helpers need the whole input to be one type or expression."""
    t, diags = parse_type("t", "int int")
    assert t is None and diags[0].message == "unexpected identifier 'int', expected end of input"
    e, diags = parse_expr("t", "a )")
    assert e is None and "expected end of input" in diags[0].message


# -- the depth bound ----------------------------------------------------------------------

NESTERS = {
    "parens": ("(", "x", ")"),
    "lists": ("[", "x", "]"),
    "begin": ("begin ", "x", " end"),
    "with": ("a with ", "x", " end"),
    "let": ("let A = 1 in ", "x", " end"),
    "where": ("a where A = 1 with ", "x", " end"),
    "if": ("if c then ", "x", " else y end"),
    "lambdas": ("\\x -> ", "x", ""),
    "block lambdas": ("\\\\x : A -> ", "x", ""),
    "gets": ("x <- C; ", "x", ""),
    "application": ("f (", "x", ")"),
}


def nest(kind: str, n: int) -> str:
    open_, mid, close = NESTERS[kind]
    return open_ * n + mid + close * n


def depth(node) -> int:
    """The height of an AST (nodes only, not tuples)."""
    best = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        if isinstance(n, tuple):
            stack.extend((x, d) for x in n)
        elif attrs.has(type(n)) and not isinstance(n, ast.Span | ast.Pos):
            best = max(best, d)
            stack.extend((getattr(n, f.name), d + 1) for f in attrs.fields(type(n)))
    return best


@pytest.mark.parametrize("kind", sorted(NESTERS))
def test_nesting_up_to_the_limit_parses_and_one_more_is_refused(kind):
    """100 levels of any nesting construct parse; 101 give the depth error, once."""
    f, diags = parse_file("t", nest(kind, MAX_DEPTH))
    assert diags == [] and f is not None
    assert depth(f.body) <= 3 * MAX_DEPTH
    f, diags = parse_file("t", nest(kind, MAX_DEPTH + 1))
    assert f is None
    assert [d.message for d in diags] == ["expression nested too deeply (limit 100)"]


@pytest.mark.parametrize(
    "text",
    [
        "[" + "(" * 60 + "x" + ")" * 60 + "]" + "" + "",
        "extern val x : " + "int -> " * 60 + "int",
        "extern val x : [" + "^" * 60 + "A]",
        "extern val x : [" + " & ".join(["A"] * 60) + "]",
    ],
)
def test_moderate_nesting_is_fine(text):
    """60 levels of parens, arrows, carets or conjunctions parse."""
    f, diags = parse_file("t", text)
    assert diags == []


@pytest.mark.parametrize(
    "text",
    [
        "extern val x : " + "int -> " * 101 + "int",
        "extern val x : [" + "^" * 101 + "A]",
        "extern val x : [" + "!" * 50 + "(" * 51 + "A" + ")" * 51 + "]",
        "extern val x : [" + " & ".join(["A"] * 102) + "]",
        "extern val x : " + "[" * 101 + "int" + "]" * 101,
        "extern val x : " + "A => " * 101 + "[Root]",
        "(" * 50 + "[" * 51 + "x",
    ],
)
def test_deep_types_and_predicates_are_refused(text):
    """Arrows, carets, negations, conjunctions, list types and block types all count."""
    f, diags = parse_file("t", text)
    assert f is None
    assert "nested too deeply" in diags[0].message


@pytest.mark.parametrize("kind", ["parens", "lists", "lambdas", "with", "gets"])
def test_ten_thousand_levels_fail_fast(kind):
    """10,000-deep nesting is one clean error within two seconds, no RecursionError."""
    text = nest(kind, 10_000)
    t0 = time.process_time()
    f, diags = parse_file("t", text)
    assert time.process_time() - t0 < 2.0
    assert f is None and len(diags) == 1
    assert diags[0].message == "expression nested too deeply (limit 100)"


def test_deep_nesting_on_separate_lines_is_still_one_error():
    """Recovery does not restart inside the too-deep construct."""
    f, diags = parse_file("t", "[\n" * 5000)
    assert len(diags) == 1


def test_long_flat_constructs_are_not_nesting():
    """A 20,000-item sequence, list and application parse (they are stored flat)."""
    for text in (
        ";\n".join(["a"] * 20_000),
        "[" + ", ".join(["1"] * 20_000) + "]",
        "f " + " ".join(["x"] * 20_000),
    ):
        t0 = time.process_time()
        f, diags = parse_file("t", text)
        assert diags == [] and depth(f.body) <= 3
        assert time.process_time() - t0 < 2.0


def test_a_huge_file_is_refused_before_parsing():
    """10 MB of ``(`` is "file too large", quickly."""
    t0 = time.process_time()
    f, diags = parse_file("t", "(" * 10_000_000)
    assert time.process_time() - t0 < 2.0
    assert f is None and [d.message for d in diags] == [
        "file too large (10000000 bytes; limit 2 MiB)"
    ]


def test_a_huge_string_literal_is_refused():
    """A 1.5 MB string literal is "string literal too long", quickly."""
    t0 = time.process_time()
    f, diags = parse_file("t", 'dom "' + "x" * 1_500_000 + '" with end')
    assert time.process_time() - t0 < 2.0
    assert f is None and [d.message for d in diags] == [
        "string literal too long (limit 65536 characters)"
    ]


def test_too_many_errors_are_capped_with_a_note():
    """A file with thousands of errors gives 100 diagnostics and a closing note."""
    f, diags = parse_file("t", "@\n" * 5000)
    assert f is None and len(diags) == 101
    assert diags[-1].message == "too many errors; the rest are not reported"
    f, diags = parse_file("t", "f ]\n" * 5000)
    assert len(diags) == 101


def test_the_depth_limit_fits_in_a_modest_stack():
    """100 levels of the most stack-hungry construct need under 450 Python frames, and
    a caller that leaves less gets the depth error, not a RecursionError."""
    import inspect
    import sys

    text = nest("with", MAX_DEPTH)
    old = sys.getrecursionlimit()
    here = len(inspect.stack())
    try:
        sys.setrecursionlimit(here + 450)
        f, diags = parse_file("t", text)
        assert diags == []
        sys.setrecursionlimit(here + 150)
        f, diags = parse_file("t", text)
        assert f is None
        assert [d.message for d in diags] == ["expression nested too deeply (limit 100)"]
    finally:
        sys.setrecursionlimit(old)


def test_double_semicolon_is_an_error_naming_the_empty_item():
    """``a;; b`` is "unexpected ';', expected an expression" at the second ``;``."""
    assert errors("dom x with a;; b end") == ["1.13-1.13 unexpected ';', expected an expression"]
    assert errors("a;\n;") == ["2.0-2.0 unexpected ';', expected an expression"]


def test_a_ten_megabyte_string_literal_is_refused_fast():
    """A 10 MB literal is over the file limit: one diagnostic, within two seconds."""
    t0 = time.process_time()
    f, diags = parse_file("t", 'dom "' + "x" * 10_000_000 + '" with end')
    assert time.process_time() - t0 < 2.0
    assert f is None and len(diags) == 1
    assert diags[0].message.startswith("file too large (10000015 bytes")


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "examples"


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/examples not beside the repo")
def test_example_copies_match_the_shared_originals():
    """tests/data/examples is a faithful copy of the published examples."""
    for original in SHARED.rglob("*"):
        if original.is_file():
            copy = EXAMPLES / original.relative_to(SHARED)
            assert copy.read_bytes() == original.read_bytes(), copy
