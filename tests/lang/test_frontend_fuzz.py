"""Property tests of the lexer and parser: whatever the input, a File or diagnostics
(never an exception), spans inside the input, bounded depth and time; and printing a
random AST then parsing it back gives the same AST (modulo spans)."""

from __future__ import annotations

import time

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domtool.lang import ast
from domtool.lang.lexer import KEYWORDS
from domtool.lang.parser import MAX_DEPTH, parse_expr, parse_file, parse_type
from tests.lang.test_parser import depth, strip

# -- checking results ----------------------------------------------------------------------


def in_bounds(span: ast.Span, lines: list[str]) -> bool:
    for p in (span.start, span.end):
        if not 1 <= p.line <= len(lines) or not 0 <= p.col <= len(lines[p.line - 1]):
            return False
    return (span.start.line, span.start.col) <= (span.end.line, span.end.col)


def node_spans(node):
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple):
            stack.extend(n)
        elif isinstance(n, ast.Span):
            yield n
        elif attrs.has(type(n)) and not isinstance(n, ast.Pos):
            stack.extend(getattr(n, f.name) for f in attrs.fields(type(n)))


def check_result(text: str, f, diags) -> None:
    """A File xor diagnostics; every diagnostic and node span lies inside the text."""
    lines = text.split("\n")
    assert (f is None) == bool(diags)
    for d in diags:
        assert d.file == "f" and d.message
        assert d.span is not None and in_bounds(d.span, lines), (d.format(), text[:200])
    if f is not None:
        for s in node_spans(f):
            assert in_bounds(s, lines), (s, text[:200])
        assert depth(f) <= 3 * MAX_DEPTH + 5


# -- random input ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data):
    """Any bytes: a File or diagnostics (invalid UTF-8 among them), spans in range."""
    f, diags = parse_file("f", data)
    check_result(data.decode("utf-8", errors="replace").removeprefix("\ufeff"), f, diags)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_random_text_never_crashes(text):
    """Any text: a File or diagnostics, spans in range."""
    check_result(text, *parse_file("f", text))


TOKENS = [
    *sorted(KEYWORDS),
    *"-> => <- = , : ; ^ ! & [ ] ( ) { } \\ \\\\".split(),
    "x",
    "f",
    "dom",
    "web",
    "Vhost",
    "DocumentRoot",
    "C",
    "0",
    "42",
    '"s"',
    '"a\\"b"',
    "(* c *)",
    "{{ doc }}",
    "# c\n",
    "(*",
    '"',
    "}}",
    "@",
]
SEPARATORS = st.sampled_from([" ", " ", "\n", "\n  ", "", "\t"])


@st.composite
def token_soup(draw):
    toks = draw(st.lists(st.sampled_from(TOKENS), max_size=60))
    out = []
    for t in toks:
        out.append(t)
        out.append(draw(SEPARATORS))
    return "".join(out)


@settings(max_examples=500)
@given(token_soup())
def test_token_soup_never_crashes(text):
    """Random sequences of the language's own tokens: a File or diagnostics."""
    check_result(text, *parse_file("f", text))
    e, diags = parse_expr("f", text)
    assert (e is None) == bool(diags)
    t, diags = parse_type("f", text)
    assert (t is None) == bool(diags)


PROGRAM = (
    "extern val web : string -> Vhost => [Root]\n"
    "val site = \\ n -> web n with ssi end\n"
    "domain d with\n"
    "  web w where DocumentRoot = r with ssi ; execCGI end ;\n"
    "  x <- C ; f x [ 1 , 2 ] ;\n"
    "  let val y = 1 ; A = 2 in g y end\n"
    "end\n"
)


def test_the_base_program_parses():
    """The program the insertion tests cut into is valid as it is."""
    f, diags = parse_file("f", PROGRAM)
    assert diags == [] and len(f.decls) == 2


def blank_positions(text: str) -> list[int]:
    return [i for i, c in enumerate(text) if c == " "]


def line_col(text: str, i: int) -> str:
    before = text[:i]
    line = before.count("\n") + 1
    col = i - (before.rfind("\n") + 1)
    return f"{line}.{col}"


@given(st.sampled_from(blank_positions(PROGRAM)))
def test_unterminated_comment_anywhere(i):
    """``(*`` inserted at any blank of a valid program: exactly one diagnostic, the
    unterminated comment, at the insertion point."""
    text = PROGRAM[:i] + "(*" + PROGRAM[i:]
    f, diags = parse_file("f", text)
    assert f is None
    assert [(str(d.span), d.message) for d in diags] == [
        (f"{line_col(text, i)}-{line_col(text, i + 1)}", "unterminated comment (opened here)")
    ]


@given(st.sampled_from(blank_positions(PROGRAM)))
def test_unterminated_string_anywhere(i):
    """``"`` inserted at any blank: an "unterminated string" from that point, and any
    other diagnostics in range."""
    text = PROGRAM[:i] + '"' + PROGRAM[i:]
    f, diags = parse_file("f", text)
    check_result(text, f, diags)
    assert f is None
    assert any(
        d.message == "unterminated string" and str(d.span).startswith(line_col(text, i) + "-")
        for d in diags
    )


NEST = [("(", ")"), ("[", "]"), ("begin ", " end"), ("a with ", " end"), ("\\x -> ", "")]


@settings(max_examples=100)
@given(st.lists(st.sampled_from(NEST), min_size=90, max_size=130))
def test_mixed_nesting_is_bounded(layers):
    """Any mix of brackets, blocks and lambdas: up to the limit it parses, past it the
    one depth error; never a RecursionError."""
    text = "".join(o for o, _ in layers) + "x" + "".join(c for _, c in reversed(layers))
    f, diags = parse_file("f", text)
    if len(layers) <= MAX_DEPTH:
        assert diags == []
    else:
        assert [d.message for d in diags] == ["expression nested too deeply (limit 100)"]


@pytest.mark.parametrize("n", [10_000, 50_000])
def test_huge_mixed_nesting_is_fast(n):
    """Very deep mixed nesting fails in bounded time."""
    layers = [NEST[i % len(NEST)] for i in range(n)]
    text = "".join(o for o, _ in layers) + "x" + "".join(c for _, c in reversed(layers))
    t0 = time.process_time()
    f, diags = parse_file("f", text)
    assert time.process_time() - t0 < 2.0
    assert f is None and len(diags) == 1


# -- printing random ASTs and parsing them back ----------------------------------------------


def pstr(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def pp(p) -> str:
    if isinstance(p, ast.PRoot):
        return "Root"
    if isinstance(p, ast.PCtx):
        return p.name
    if isinstance(p, ast.PAnc | ast.PNot):
        return ("^" if isinstance(p, ast.PAnc) else "!") + ppu(p.pred)
    return f"{pp(p.left)} & {ppu(p.right)}"


def ppu(p) -> str:
    return f"({pp(p)})" if isinstance(p, ast.PAnd) else pp(p)


def pt(t) -> str:
    if isinstance(t, ast.TName):
        return t.name
    if isinstance(t, ast.TList):
        return f"[{pt(t.elem)}]"
    if isinstance(t, ast.TArrow):
        return f"({pt(t.arg)}) -> {pt(t.result)}"
    if isinstance(t, ast.TNested):
        return f"({pp(t.body)}) => {pt(t.outer)}"
    out = f"[{pp(t.pred)}]"
    if t.reads:
        out += " {" + ", ".join(f"{n} : {pt(x)}" for n, x in t.reads) + "}"
    if t.writes:
        out += " => {" + ", ".join(f"{n} : {pt(x)}" for n, x in t.writes) + "}"
    return out


ATOMS = (ast.EInt, ast.EString, ast.EBool, ast.EVar, ast.EList)


def patom(e) -> str:
    """As an application argument."""
    if isinstance(e, ast.EInt):
        return str(e.value)
    if isinstance(e, ast.EString):
        return pstr(e.value)
    if isinstance(e, ast.EBool):
        return "true" if e.value else "false"
    if isinstance(e, ast.EVar):
        return e.name
    if isinstance(e, ast.EList):
        return "[" + ", ".join(pe(x) for x in e.items) + "]"
    return f"({pseq(e)})"


def papp(e) -> str:
    if isinstance(e, ast.EApp):
        return " ".join([patom(e.func), *(patom(a) for a in e.args)])
    return patom(e)


def pdecl(d) -> str:
    if isinstance(d, ast.DExternType):
        out = f"extern type {d.name}"
    elif isinstance(d, ast.DExternVal):
        out = f"extern val {d.name} : {pt(d.type)}"
    elif isinstance(d, ast.DContext):
        out = f"context {d.name}"
    else:
        ann = f" : {pt(d.type)}" if d.type is not None else ""
        out = f"val {d.name}{ann} = {pe(d.value)}"
    return out + (f"\n{{{{ {d.doc} }}}}" if d.doc is not None else "")


def psettings(s) -> str:
    items = s.items if isinstance(s, ast.ESeq) else (s,)
    return "; ".join(
        f"{x.name} = {papp(x.value)}" if isinstance(x, ast.ESet) else f"({pseq(x)})" for x in items
    )


def pe(e) -> str:
    """As an ``expr`` (no top-level sequence)."""
    if isinstance(e, ast.ESet):
        return f"{e.name} = {papp(e.value)}"
    if isinstance(e, ast.ELambda):
        ann = f" : ({pt(e.param_type)})" if e.param_type is not None else ""
        return f"\\{e.param}{ann} -> {pe(e.body)}"
    if isinstance(e, ast.EBlockLambda):
        return f"\\\\{e.param} : ({pp(e.pred)}) -> {pe(e.body)}"
    if isinstance(e, ast.EWith):
        where = f" where {psettings(e.settings)}" if e.settings is not None else ""
        body = f" {pseq(e.body)} " if e.body is not None else " "
        return f"{papp(e.block)}{where} with{body}end"
    if isinstance(e, ast.ELocal):
        decls = "".join(pdecl(d) + "; " for d in e.decls)
        sets = pseq(e.settings) + " " if e.settings is not None else ""
        return f"let {decls}{sets}in {pseq(e.body)} end"
    if isinstance(e, ast.EIf):
        return f"if {pseq(e.cond)} then {pseq(e.then)} else {pseq(e.orelse)} end"
    if isinstance(e, ast.ESeq | ast.EGet):
        return f"({pseq(e)})"
    return papp(e)


def pseq(e) -> str:
    if isinstance(e, ast.EGet):
        return f"{e.var} <- {e.env}; {pseq(e.body)}"
    if isinstance(e, ast.ESeq):
        return "; ".join(pe(x) for x in e.items)
    return pe(e)


def pfile(f: ast.File) -> str:
    parts = [pdecl(d) for d in f.decls]
    if f.body is not None:
        parts.append(pseq(f.body))
    return "\n".join(parts) + "\n"


NONE = st.none()
lnames = st.from_regex(r"[a-z][A-Za-z0-9_']{0,4}", fullmatch=True).filter(
    lambda s: s not in KEYWORDS
)
cnames = st.from_regex(r"[A-Z][A-Za-z0-9_']{0,4}", fullmatch=True).filter(lambda s: s != "Root")
docs = st.one_of(NONE, st.from_regex(r"[A-Za-z0-9.,`'()]+( [A-Za-z0-9.,`'()]+)*", fullmatch=True))

preds = st.recursive(
    st.one_of(st.builds(ast.PRoot, NONE), st.builds(ast.PCtx, cnames, NONE)),
    lambda p: st.one_of(
        st.builds(ast.PAnc, p, NONE),
        st.builds(ast.PNot, p, NONE),
        st.builds(ast.PAnd, p, p, NONE),
    ),
    max_leaves=6,
)


def _rows(t):
    return st.lists(st.tuples(cnames, t), max_size=2).map(tuple)


types = st.recursive(
    st.builds(ast.TName, lnames, NONE),
    lambda t: st.one_of(
        st.builds(ast.TList, t, NONE),
        st.builds(ast.TArrow, t, t, NONE),
        st.builds(ast.TAction, preds, _rows(t), _rows(t), NONE),
        st.builds(ast.TNested, preds, t, NONE),
    ),
    max_leaves=6,
)

literals = st.one_of(
    st.builds(ast.EInt, st.integers(0, 2**63 - 1), NONE),
    st.builds(ast.EString, st.text(max_size=8), NONE),
    st.builds(ast.EBool, st.booleans(), NONE),
    st.builds(ast.EVar, lnames, NONE),
)


def _tuple(e, lo=0):
    return st.lists(e, min_size=lo, max_size=3).map(tuple)


def _extend(e):
    val = st.builds(ast.DVal, lnames, st.one_of(NONE, types), e, NONE, NONE)
    return st.one_of(
        st.builds(ast.EList, _tuple(e), NONE),
        st.builds(ast.EApp, e, _tuple(e, 1), NONE),
        st.builds(ast.ELambda, lnames, st.one_of(NONE, types), e, NONE),
        st.builds(ast.EBlockLambda, lnames, preds, e, NONE),
        st.builds(ast.ESet, cnames, e, NONE),
        st.builds(ast.EGet, lnames, cnames, e, NONE),
        st.builds(ast.ESeq, _tuple(e, 2), NONE),
        st.builds(ast.ELocal, _tuple(val), st.one_of(NONE, e), e, NONE),
        st.builds(ast.EWith, e, st.one_of(NONE, e), st.one_of(NONE, e), NONE),
        st.builds(ast.EIf, e, e, e, NONE),
    )


exprs = st.recursive(literals, _extend, max_leaves=12)

decls = st.one_of(
    st.builds(ast.DExternType, lnames, docs, NONE),
    st.builds(ast.DExternVal, lnames, types, docs, NONE),
    st.builds(ast.DVal, lnames, st.one_of(NONE, types), exprs, docs, NONE),
    st.builds(ast.DContext, cnames, docs, NONE),
)
files = st.builds(ast.File, st.just("f"), _tuple(decls), st.one_of(NONE, exprs))


@settings(max_examples=300)
@given(types)
def test_types_round_trip(t):
    """Printing a random type and parsing it back gives the same type."""
    text = pt(t)
    got, diags = parse_type("f", text)
    assert diags == [], (text, [d.format() for d in diags])
    assert strip(got) == strip(t), text


@settings(max_examples=400)
@given(exprs)
def test_expressions_round_trip(e):
    """Printing a random expression and parsing it back gives the same expression."""
    text = pseq(e)
    got, diags = parse_expr("f", text)
    assume(not any("nested too deeply" in d.message for d in diags))
    assert diags == [], (text, [d.format() for d in diags])
    assert strip(got) == strip(e), text


@settings(max_examples=200)
@given(files)
def test_files_round_trip(f):
    """Printing a random file (declarations with docs, one per line, then the body) and
    parsing it back gives the same file: the column-0 rule ends each declaration."""
    text = pfile(f)
    got, diags = parse_file("f", text)
    assume(not any("nested too deeply" in d.message for d in diags))
    assert diags == [], (text, [d.format() for d in diags])
    assert strip(got) == strip(f), text
    check_result(text, got, diags)


def test_library_and_examples_round_trip():
    """The standard library and the example configs print and parse back unchanged."""
    from domtool.lang.api import library_sources
    from tests.lang.test_parser import EXAMPLES

    sources = library_sources() + [
        (p.name, p.read_text()) for p in sorted(EXAMPLES.rglob("*")) if p.parent != EXAMPLES
    ]
    for name, text in sources:
        f, diags = parse_file("f", text)
        assert diags == [], name
        again, diags = parse_file("f", pfile(f))
        assert diags == [], (name, [d.format() for d in diags])
        assert strip(again) == strip(f), name


@st.composite
def mutated_programs(draw):
    """A real config or library file with a few random cuts, copies and insertions."""
    from domtool.lang.api import library_sources
    from tests.lang.test_parser import EXAMPLES

    texts = [t for _, t in library_sources()] + [
        (EXAMPLES / "alice" / "example.net").read_text(),
        PROGRAM,
    ]
    text = draw(st.sampled_from(texts))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        op = draw(st.sampled_from(["cut", "copy", "insert"]))
        if op == "cut":
            text = text[:i] + text[j:]
        elif op == "copy":
            text = text[:i] + text[i:j] + text[i:]
        else:
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
    return text


@settings(max_examples=300)
@given(mutated_programs())
def test_mutated_programs_never_crash(text):
    """Realistic broken files: a File or diagnostics, all spans inside the file."""
    check_result(text, *parse_file("f", text))
