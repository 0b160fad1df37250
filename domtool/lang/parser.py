r"""The parser of the configuration language: tokens to the AST of :mod:`domtool.lang.ast`.

Public API (none of them raises; syntax errors come back as diagnostics, all of a file's
where recovery allows)::

    parse_file(filename, text) -> (ast.File | None, [Diagnostic])
    parse_expr(filename, text) -> (ast.Expr | None, [Diagnostic])
    parse_type(filename, text) -> (ast.Type | None, [Diagnostic])
    decode_source(filename, data: bytes) -> (str | None, [Diagnostic])

The node is returned exactly when there are no diagnostics. Tokens are described in
:mod:`domtool.lang.lexer`.

Grammar (EBNF; ``x?`` optional, ``x*`` repeated, ``'...'`` a token)::

    file      ::= decl* seq? EOF                  -- declarations, then the config's body
    decl      ::= ( 'extern' 'type' lname
                  | 'extern' 'val' lname ':' type
                  | valdecl
                  | 'context' Cname ) ';'? DOC*   -- {{ }} after a decl documents it
    valdecl   ::= 'val' lname (':' type)? '=' expr

    seq       ::= item (';' item)* ';'?           -- ESeq (flat) when 2+ items; a
                                                  -- trailing ';' is ignored
    item      ::= lname '<-' Cname ';' seq        -- EGet: the rest of the sequence
                | expr
    expr      ::= Cname '=' app                   -- ESet
                | '\' lname (':' tatom)? '->' expr        -- ELambda
                | '\\' lname ':' pred '->' expr          -- EBlockLambda
                | app block*
    block     ::= 'with' seq? 'end'               -- EWith (body None when empty)
                | 'where' seq 'end'               -- ELocal(decls=(), settings)
                | 'where' seq 'with' seq? 'end'   -- EWith with settings
    app       ::= atom atom*                      -- EApp(func, args), flat
    atom      ::= INT | STRING | 'true' | 'false' | lname
                | '[' (expr (',' expr)*)? ']'
                | '(' seq ')' | 'begin' seq 'end'
                | 'let' (valdecl ';'?)* seq? 'in' seq 'end'   -- ELocal
                | 'if' seq 'then' seq 'else' seq 'end'        -- EIf

    type      ::= pred '=>' type                  -- TNested (block directive)
                | tatom ('->' type)?              -- TArrow, right-associative
    tatom     ::= lname                           -- TName
                | '[' type ']'                    -- TList
                | '[' pred ']' row? ('=>' row)?   -- TAction (reads, writes)
                | '(' type ')'
    row       ::= '{' (Cname ':' type (',' Cname ':' type)*)? '}'
    pred      ::= punary ('&' punary)*            -- PAnd, left-associative
    punary    ::= 'Root' | Cname | '^' punary | '!' punary | '(' pred ')'

Choices where the original was silent (each is tested in ``tests/lang/test_parser.py``):

- ``;`` binds loosest. A lambda's body, a list item and a declaration's value are an
  ``expr``: they stop at ``;``. So ``\x -> a; b`` is the sequence of a lambda and
  ``b``; write ``\x -> (a; b)`` or ``\x -> begin a; b end`` for a sequence in the
  body. ``with``/``where`` blocks bind tighter than lambdas: ``\x -> f x with e end``
  is a lambda whose body is the block.
- A setting's value (``C = e``) is an application, without blocks. In the settings of
  ``where`` (outside brackets) a ``with`` always belongs to that ``where``: in
  ``web "w" where DocumentRoot = "/x" with ... end`` the body is the ``where``'s.
- ``x <- C;`` takes the rest of its sequence as its body (``a; x <- C; b; c`` is
  ``ESeq(a, EGet(x, C, ESeq(b, c)))``).
- Predicates and types are told apart as they are read: ``Root``, ``^``, ``!`` and
  capitalised names begin a predicate, lower-case names and ``[`` a type, and ``(``
  either (``(A) => T``, ``(A => T) -> U`` and ``((a -> b))`` all parse). So in
  ``[X]`` (type or action), ``X`` is a predicate when it begins like one.
- ``\x : T -> e``: the annotation is a type atom, so an arrow or block type needs the
  parentheses of the published ``\x : (T) -> e``; ``\x : string -> e`` also works.
- Declarations: the terminating ``;`` is optional. The value of a top-level ``val`` ends
  at ``;``, at a ``{{ }}`` comment, at the next declaration, or at a token in column 0
  of a later line that would otherwise be one more argument of an application (outside
  any brackets or blocks). So ``val d = "example.org"`` on one line and ``dom d with
  end`` on the next are a declaration and the body, while a value continues on indented
  lines. Declarations come before the body; ``let`` holds ``val`` declarations first,
  then settings. A ``{{ }}`` comment at the very start of a file documents the file and
  is dropped; one anywhere else but after a declaration is an error.
- Parentheses and ``begin ... end`` only group: the node inside keeps its own span,
  while an enclosing node ends at the closing parenthesis.
- Spans: a node spans from its first token's first character to its last token's last
  character (``dom "x" with\nend`` spans ``1.0-2.2``); a sequence's span leaves out a
  trailing ``;``.

Bounds: sources over 2 MiB, strings over 64 Ki characters and integers over 2**63 - 1
are refused by the lexer; nesting deeper than :data:`MAX_DEPTH` (brackets, blocks,
lambdas, gets, arrows, ``=>``, ``^``, ``!``, ``&``; any mix counts) stops the parse with
"expression nested too deeply (limit 100)". A tree handed to the checker is therefore
at most about 3 x 100 nodes deep (sequences and applications add a level each), and
the parser needs about 4 Python frames per level (a caller with less stack left gets
the same error, never a RecursionError). Everything is linear in the input.

Recovery: after a syntax error the parser skips to the next ``extern`` or ``context``,
a ``val`` in column 0 or after ``;``, or an expression-starting token in column 0, and
goes on, so an error in one declaration does not hide an error in a later one. At most
100 diagnostics are reported, then "too many errors; the rest are not reported".
"""

from __future__ import annotations

from typing import NoReturn

import attrs

from domtool.lang import ast
from domtool.lang.errors import Diagnostic
from domtool.lang.lexer import MAX_DIAGNOSTICS, Token, decode_source, lex

__all__ = ["MAX_DEPTH", "decode_source", "parse_expr", "parse_file", "parse_type"]

#: Deepest nesting of brackets, blocks, lambdas and type/predicate constructors.
MAX_DEPTH = 100

_ATOM_START = frozenset(["INT", "STRING", "LNAME", "true", "false", "[", "(", "begin", "let", "if"])
_EXPR_START = _ATOM_START | {"CNAME", "\\", "\\\\"}
_PRED_START = frozenset(["Root", "CNAME", "^", "!"])
_DECL_START = frozenset(["extern", "val", "context"])
_SIMPLE = {"LNAME": ast.EVar, "STRING": ast.EString, "INT": ast.EInt}
_CONTINUES = _ATOM_START | {"with", "where"}
_PRED_NODES = (ast.PRoot, ast.PCtx, ast.PAnc, ast.PNot, ast.PAnd)
_PRED_EXPECTED = "a context predicate (Root, a context name, ^P, !P or (P))"
_DOC_PLACE = "a documentation comment {{ }} must follow a declaration"


class _Abort(Exception):
    """A syntax error: unwinds to the nearest recovery point."""

    def __init__(self, diag: Diagnostic, fatal: bool = False):
        super().__init__(diag.message)
        self.diag = diag
        self.fatal = fatal


def _describe(tok: Token) -> str:
    k = tok.kind
    if k == "EOF":
        return "end of file"
    if k == "INT":
        return f"integer {tok.value}"
    if k == "STRING":
        return "string literal"
    if k == "DOC":
        return "documentation comment {{ }}"
    if k in ("LNAME", "CNAME"):
        name = str(tok.value)
        if len(name) > 40:
            name = name[:40] + "..."
        return f"{'identifier' if k == 'LNAME' else 'name'} '{name}'"
    if k.isalpha():
        return f"keyword '{k}'"
    return f"'{k}'"


def _at(tok: Token) -> str:
    return f"{tok.line}.{tok.col}"


def _opened(tok: Token) -> str:
    """``'with' of 3.14``: the opening token of a construct, for "to close" messages."""
    return f"'{tok.kind}' of {_at(tok)}"


class _Parser:
    def __init__(self, file: str, toks: list[Token]):
        self.file = file
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.layout = False  # inside a top-level declaration's value, outside brackets
        self.in_where = False  # in the settings of 'where', outside brackets
        self.diags: list[Diagnostic] = []

    # -- token helpers ------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def tspan(self, tok: Token) -> ast.Span:
        start = ast.Pos(tok.line, tok.col)
        if tok.ecol == tok.col and tok.eline == tok.line:
            return ast.Span(self.file, start, start)
        return ast.Span(self.file, start, ast.Pos(tok.eline, tok.ecol))

    def upto(self, start: Token | ast.Pos) -> ast.Span:
        """From ``start`` to the end of the last consumed token."""
        if isinstance(start, Token):
            start = ast.Pos(start.line, start.col)
        last = self.toks[self.i - 1]
        return ast.Span(self.file, start, ast.Pos(last.eline, last.ecol))

    def fail(self, tok: Token, expected: str, message: str | None = None) -> NoReturn:
        msg = message or f"unexpected {_describe(tok)}, expected {expected}"
        raise _Abort(Diagnostic(self.file, tok.span(self.file), msg))

    def expect(self, kind: str, expected: str) -> Token:
        t = self.toks[self.i]
        if t.kind != kind:
            self.fail(t, expected)
        return self.advance()

    def push(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            msg = f"expression nested too deeply (limit {MAX_DEPTH})"
            raise _Abort(Diagnostic(self.file, tok.span(self.file), msg), fatal=True)

    def report(self, diag: Diagnostic) -> None:
        if len(self.diags) <= MAX_DIAGNOSTICS:
            self.diags.append(diag)

    # -- recovery -------------------------------------------------------------------------

    def sync(self, start: int) -> None:
        """Skip to the next plausible start of a declaration or top-level expression,
        at least one token past ``start``."""
        toks = self.toks
        last = len(toks) - 1
        i = max(self.i, start + 1)
        while i < last:
            t = toks[i]
            k = t.kind
            if k in ("extern", "context"):
                break
            if k == "val" and (t.col == 0 or toks[i - 1].kind == ";"):
                break
            if t.col == 0 and k in _EXPR_START:
                break
            i += 1
        self.i = min(i, last)
        self.depth = 0
        self.layout = False
        self.in_where = False

    # -- files and declarations ---------------------------------------------------------

    def parse_file(self) -> ast.File:
        decls: list[ast.Decl] = []
        body: ast.Expr | None = None
        seen_body = False
        broken = False  # after an error, further expressions are parsed for errors only
        while self.tok.kind != "EOF":
            start = self.i
            tok = self.tok
            try:
                if tok.kind == "DOC":
                    if decls or seen_body:
                        self.fail(tok, "", _DOC_PLACE)
                    self.advance()  # a leading comment documents the file: ignored
                elif tok.kind in _DECL_START:
                    if seen_body:
                        msg = "declarations must come before the file's expression"
                        self.report(Diagnostic(self.file, tok.span(self.file), msg))
                    decls.append(self.parse_decl(top=True))
                elif seen_body and not broken:
                    self.fail(tok, "';' or end of file")
                else:
                    seen_body = True
                    e = self.parse_seq()
                    if body is None:
                        body = e
            except _Abort as exc:
                self.report(exc.diag)
                if exc.fatal:
                    break
                broken = True
                self.sync(start)
        return ast.File(self.file, tuple(decls), body)

    def parse_decl(self, top: bool) -> ast.Decl:
        first = self.advance()
        d: ast.Decl
        if first.kind == "extern":
            what = self.tok
            if what.kind == "type":
                self.advance()
                name = self.expect("LNAME", "a type name (lower-case initial)")
                d = ast.DExternType(name.value, None, self.upto(first))
            elif what.kind == "val":
                self.advance()
                name = self.expect("LNAME", "a value name (lower-case initial)")
                self.expect(":", "':' and the type of the extern value")
                t = self.parse_type()
                d = ast.DExternVal(name.value, t, None, self.upto(first))
            else:
                self.fail(what, "'type' or 'val' after 'extern'")
        elif first.kind == "context":
            name = self.expect("CNAME", "a context name (capitalised)")
            d = ast.DContext(name.value, None, self.upto(first))
        else:  # val
            name = self.expect("LNAME", "a value name (lower-case initial)")
            t = None
            if self.tok.kind == ":":
                self.advance()
                t = self.parse_type()
            self.expect("=", "'=' and the value" if t else "'=' (or ':' and a type)")
            self.layout = top
            value = self.parse_expr()
            self.layout = False
            d = ast.DVal(name.value, t, value, None, self.upto(first))
        docs: list[str] = []
        semi = False
        while True:
            k = self.tok.kind
            if k == "DOC":
                docs.append(self.advance().value)
            elif k == ";" and not semi:
                semi = True
                self.advance()
            else:
                break
        if docs:
            d = attrs.evolve(d, doc="\n\n".join(x for x in docs if x) or None)
        return d

    # -- expressions --------------------------------------------------------------------

    def parse_seq(self) -> ast.Expr:
        items: list[ast.Expr] = []
        first = self.tok
        toks = self.toks
        while True:
            tok = toks[self.i]
            if tok.kind == "LNAME" and toks[self.i + 1].kind == "<-":
                self.advance()
                self.advance()
                env = self.expect("CNAME", "an environment variable name (capitalised)")
                self.expect(";", "';' after 'x <- Variable'")
                self.push(tok)
                body = self.parse_seq()
                self.depth -= 1
                items.append(ast.EGet(tok.value, env.value, body, self.upto(tok)))
                end = self.toks[self.i - 1]
                break
            items.append(self.parse_expr())
            end = self.toks[self.i - 1]
            if self.tok.kind != ";":
                break
            self.advance()
            if self.tok.kind not in _EXPR_START:
                if self.tok.kind == ";":
                    self.fail(self.tok, "an expression")
                break
        if len(items) == 1:
            return items[0]
        span = ast.Span(self.file, ast.Pos(first.line, first.col), ast.Pos(end.eline, end.ecol))
        return ast.ESeq(tuple(items), span)

    def parse_expr(self) -> ast.Expr:
        tok = self.toks[self.i]
        k = tok.kind
        make = _SIMPLE.get(k)
        if make is not None and self.toks[self.i + 1].kind not in _CONTINUES:
            self.i += 1  # fast path: a name or literal alone
            return make(tok.value, self.tspan(tok))
        if k == "CNAME":
            if self.peek().kind == "EOF":
                self.fail(self.peek(), f"'=' (to set {tok.value})")
            if self.peek().kind != "=":
                self.fail(
                    tok,
                    "",
                    f"unexpected {_describe(tok)}, expected an expression (set an "
                    f"environment variable with '{tok.value} = ...', read it with "
                    f"'x <- {tok.value}; ...')",
                )
            self.advance()
            self.advance()
            value = self.parse_app()
            return ast.ESet(tok.value, value, self.upto(tok))
        if k == "\\":
            self.advance()
            name = self.expect("LNAME", "a parameter name after '\\'")
            ptype = None
            if self.tok.kind == ":":
                self.advance()
                ptype = self.parse_type_atom()
            self.expect("->", "'->' after the parameter" if ptype else "'->' or ': (type)'")
            self.push(tok)
            body = self.parse_expr()
            self.depth -= 1
            return ast.ELambda(name.value, ptype, body, self.upto(tok))
        if k == "\\\\":
            self.advance()
            name = self.expect("LNAME", "a parameter name after '\\\\'")
            self.expect(":", "':' and the context predicate of the block's body")
            pred = self.parse_pred()
            self.expect("->", "'->' after the context predicate")
            self.push(tok)
            body = self.parse_expr()
            self.depth -= 1
            return ast.EBlockLambda(name.value, pred, body, self.upto(tok))
        e = self.parse_app()
        while True:
            k = self.tok.kind
            if k == "where" or (k == "with" and not self.in_where):
                e = self.parse_block(tok, e)
            else:
                return e

    def parse_app(self) -> ast.Expr:
        toks = self.toks
        tok = toks[self.i]
        e = self.parse_atom()
        args: list[ast.Expr] = []
        while True:
            t = toks[self.i]
            if t.kind not in _ATOM_START or (self.layout and t.col == 0):
                break
            make = _SIMPLE.get(t.kind)
            if make is not None:
                self.i += 1
                args.append(make(t.value, self.tspan(t)))
            else:
                args.append(self.parse_atom())
        if args:
            e = ast.EApp(e, tuple(args), self.upto(tok))
        return e

    def parse_body(self, closes: str) -> ast.Expr | None:
        """The body of ``with``: empty, or a sequence, up to its ``end``."""
        k = self.tok.kind
        if k == "end":
            body = None
        elif k in _EXPR_START:
            body = self.parse_seq()
        else:
            self.fail(self.tok, f"an expression or 'end' (to close {closes})")
        self.expect("end", f"';' or 'end' (to close {closes})")
        return body

    def parse_block(self, first: Token, e: ast.Expr) -> ast.Expr:
        kw = self.advance()
        self.push(kw)
        saved = self.layout, self.in_where
        self.layout = False
        out: ast.Expr
        if kw.kind == "with":
            self.in_where = False
            body = self.parse_body(_opened(kw))
            out = ast.EWith(e, None, body, self.upto(first))
        else:
            self.in_where = True
            settings = self.parse_seq()
            self.in_where = False
            if self.tok.kind == "with":
                self.advance()
                body = self.parse_body(f"'where ... with' of {_at(kw)}")
                out = ast.EWith(e, settings, body, self.upto(first))
            else:
                self.expect("end", f"';', 'with' or 'end' (to close {_opened(kw)})")
                out = ast.ELocal((), settings, e, self.upto(first))
        self.layout, self.in_where = saved
        self.depth -= 1
        return out

    def parse_atom(self) -> ast.Expr:
        tok = self.toks[self.i]
        k = tok.kind
        make = _SIMPLE.get(k)
        if make is not None:
            self.i += 1
            return make(tok.value, self.tspan(tok))
        if k in ("true", "false"):
            self.advance()
            return ast.EBool(k == "true", self.tspan(tok))
        if k not in ("[", "(", "begin", "let", "if"):
            if k == "DOC":
                self.fail(tok, "", _DOC_PLACE)
            self.fail(tok, "an expression")
        self.advance()
        self.push(tok)
        saved = self.layout, self.in_where
        self.layout = self.in_where = False
        out: ast.Expr
        if k == "[":
            items: list[ast.Expr] = []
            if self.tok.kind != "]":
                items.append(self.parse_expr())
                while self.tok.kind == ",":
                    self.advance()
                    items.append(self.parse_expr())
            self.expect("]", f"',' or ']' (to close {_opened(tok)})")
            out = ast.EList(tuple(items), self.upto(tok))
        elif k == "(":
            out = self.parse_seq()
            self.expect(")", f"';' or ')' (to close {_opened(tok)})")
        elif k == "begin":
            out = self.parse_seq()
            self.expect("end", f"';' or 'end' (to close {_opened(tok)})")
        elif k == "let":
            decls: list[ast.Decl] = []
            while self.tok.kind == "val":
                decls.append(self.parse_decl(top=False))
            settings = None if self.tok.kind == "in" else self.parse_seq()
            self.expect("in", "';' or 'in'" if settings else "'val', a setting or 'in'")
            body = self.parse_seq()
            self.expect("end", f"';' or 'end' (to close {_opened(tok)})")
            out = ast.ELocal(tuple(decls), settings, body, self.upto(tok))
        else:  # if
            cond = self.parse_seq()
            self.expect("then", "'then'")
            then = self.parse_seq()
            self.expect("else", "';' or 'else'")
            orelse = self.parse_seq()
            self.expect("end", f"';' or 'end' (to close {_opened(tok)})")
            out = ast.EIf(cond, then, orelse, self.upto(tok))
        self.layout, self.in_where = saved
        self.depth -= 1
        return out

    # -- types and predicates -------------------------------------------------------------
    #
    # Predicates and types share '(' and are told apart as they are read: parse_either
    # returns a Pred when what it read is a predicate not followed by '=>' (the caller
    # decides whether that is allowed), otherwise a Type.

    def parse_type(self) -> ast.Type:
        x = self.parse_either()
        if isinstance(x, _PRED_NODES):
            self.fail(self.tok, "'=>' (a context predicate begins a block type 'P => T')")
        return x

    def parse_pred(self) -> ast.Pred:
        tok = self.tok
        if tok.kind not in _PRED_START and tok.kind != "(":
            self.fail(tok, _PRED_EXPECTED)
        x = self.parse_either()
        if not isinstance(x, _PRED_NODES):
            msg = f"expected {_PRED_EXPECTED}, found a type"
            raise _Abort(Diagnostic(self.file, x.span, msg))
        return x

    def parse_either(self) -> ast.Type | ast.Pred:
        tok = self.tok
        if tok.kind not in _PRED_START and tok.kind != "(":
            t = self.parse_type_atom()
            return self.arrow_rest(tok, t)
        left = self.parse_unary()
        if not isinstance(left, _PRED_NODES):  # a parenthesised type
            return self.arrow_rest(tok, left)
        n = 0
        while self.tok.kind == "&":
            amp = self.advance()
            self.push(amp)
            n += 1
            right = self.parse_unary()
            if not isinstance(right, _PRED_NODES):
                msg = f"expected {_PRED_EXPECTED} after '&', found a type"
                raise _Abort(Diagnostic(self.file, right.span, msg))
            left = ast.PAnd(left, right, self.upto(tok))
        self.depth -= n
        if self.tok.kind != "=>":
            return left
        arrow = self.advance()
        self.push(arrow)
        outer = self.parse_type()
        self.depth -= 1
        return ast.TNested(left, outer, self.upto(tok))

    def arrow_rest(self, first: Token, t: ast.Type) -> ast.Type:
        if self.tok.kind != "->":
            return t
        arrow = self.advance()
        self.push(arrow)
        result = self.parse_type()
        self.depth -= 1
        return ast.TArrow(t, result, self.upto(first))

    def parse_unary(self) -> ast.Pred | ast.Type:
        """``Root``, ``C``, ``^P``, ``!P``, or a parenthesised predicate or type."""
        tok = self.tok
        k = tok.kind
        if k == "Root":
            self.advance()
            return ast.PRoot(tok.span(self.file))
        if k == "CNAME":
            self.advance()
            return ast.PCtx(tok.value, tok.span(self.file))
        if k not in ("^", "!", "("):
            self.fail(tok, _PRED_EXPECTED)
        self.advance()
        self.push(tok)
        x: ast.Pred | ast.Type
        if k == "(":
            x = self.parse_either()
            self.expect(")", "'&' or ')'" if isinstance(x, _PRED_NODES) else "')'")
        else:
            inner = self.parse_unary()
            if not isinstance(inner, _PRED_NODES):
                msg = f"expected {_PRED_EXPECTED} after '{k}', found a type"
                raise _Abort(Diagnostic(self.file, inner.span, msg))
            span = self.upto(tok)
            x = ast.PAnc(inner, span) if k == "^" else ast.PNot(inner, span)
        self.depth -= 1
        return x

    def parse_type_atom(self) -> ast.Type:
        tok = self.tok
        k = tok.kind
        if k == "LNAME":
            self.advance()
            return ast.TName(tok.value, tok.span(self.file))
        if k not in ("(", "["):
            self.fail(tok, "a type")
        self.advance()
        self.push(tok)
        out: ast.Type
        if k == "(":
            out = self.parse_type()
            self.expect(")", "')'")
        else:
            x = self.parse_either()
            if isinstance(x, _PRED_NODES):
                self.expect("]", "'&' or ']' after the context predicate")
                reads: tuple[tuple[str, ast.Type], ...] = ()
                writes: tuple[tuple[str, ast.Type], ...] = ()
                if self.tok.kind == "{":
                    reads = self.parse_row()
                if self.tok.kind == "=>" and self.peek().kind == "{":
                    self.advance()
                    writes = self.parse_row()
                out = ast.TAction(x, reads, writes, self.upto(tok))
            else:
                self.expect("]", "']'")
                out = ast.TList(x, self.upto(tok))
        self.depth -= 1
        return out

    def parse_row(self) -> tuple[tuple[str, ast.Type], ...]:
        self.expect("{", "'{'")
        row: list[tuple[str, ast.Type]] = []
        if self.tok.kind != "}":
            while True:
                name = self.expect("CNAME", "an environment variable name (capitalised)")
                self.expect(":", "':' and the variable's type")
                row.append((name.value, self.parse_type()))
                if self.tok.kind != ",":
                    break
                self.advance()
        self.expect("}", "',' or '}'")
        return tuple(row)


# ---------------------------------------------------------------------------------------


def _finish(lex_diags: list[Diagnostic], parser: _Parser) -> list[Diagnostic]:
    """Lexical and syntax errors together, in source order, at most
    :data:`MAX_DIAGNOSTICS` and a note. When the lexer swallowed the rest of the file
    (an unterminated comment or string), "unexpected end of file" is noise."""
    diags = list(lex_diags)
    eof = parser.toks[-1]
    swallowed = any(d.message.startswith("unterminated") for d in lex_diags)
    for d in parser.diags:
        at_eof = d.span is not None and (d.span.start.line, d.span.start.col) == (
            eof.line,
            eof.col,
        )
        if not (swallowed and at_eof):
            diags.append(d)
    diags.sort(key=Diagnostic.sort_key)
    if len(diags) > MAX_DIAGNOSTICS:
        last = diags[MAX_DIAGNOSTICS - 1]
        note = Diagnostic(last.file, last.span, "too many errors; the rest are not reported")
        diags = [*diags[:MAX_DIAGNOSTICS], note]
    return diags


def _run(filename: str, text: str | bytes, what):
    if isinstance(text, bytes | bytearray):
        decoded, diags = decode_source(filename, bytes(text))
        if decoded is None:
            return None, diags
        text = decoded
    toks, lex_diags = lex(filename, text)
    p = _Parser(filename, toks)
    try:
        node = what(p)
    except RecursionError:  # only when the caller left less stack than MAX_DEPTH needs
        node = None
        msg = f"expression nested too deeply (limit {MAX_DEPTH})"
        p.report(Diagnostic(filename, p.tok.span(filename), msg))
    diags = _finish(lex_diags, p)
    return (None if diags else node), diags


def parse_file(filename: str, text: str | bytes) -> tuple[ast.File | None, list[Diagnostic]]:
    """A file: declarations, then an optional expression. The File exactly when there
    are no diagnostics (``bytes`` are decoded as UTF-8 first)."""
    return _run(filename, text, _Parser.parse_file)


def _whole(parse):
    def run(p: _Parser):
        try:
            node = parse(p)
            if p.tok.kind != "EOF":
                p.fail(p.tok, "end of input")
            return node
        except _Abort as exc:
            p.report(exc.diag)
            return None

    return run


def parse_expr(filename: str, text: str | bytes) -> tuple[ast.Expr | None, list[Diagnostic]]:
    """One expression (a sequence allowed), and nothing after it."""
    return _run(filename, text, _whole(_Parser.parse_seq))


def parse_type(filename: str, text: str | bytes) -> tuple[ast.Type | None, list[Diagnostic]]:
    """One type, and nothing after it."""
    return _run(filename, text, _whole(_Parser.parse_type))
