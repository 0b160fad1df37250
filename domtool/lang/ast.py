"""Abstract syntax of the configuration language, with exact source spans.

This module is the contract between the parser (which builds these nodes) and the type
checker and evaluator (which consume them). Every node carries a :class:`Span`. Spans
print as ``L.C-L.C`` with 1-based lines and 0-based columns, matching the published
error shape (``example.org:1.0-1.22:error: ...``); the end is the position of the last
character of the construct (inclusive).

Sequences (``e1; e2; e3``) and applications (``f a b c``) are stored flat, as tuples, so
that long files do not turn into deep trees.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Pos:
    line: int  # 1-based
    col: int  # 0-based


@attrs.frozen
class Span:
    file: str
    start: Pos
    end: Pos

    def __str__(self) -> str:
        return f"{self.start.line}.{self.start.col}-{self.end.line}.{self.end.col}"

    def join(self, other: Span) -> Span:
        return Span(self.file, self.start, other.end)


# ---------------------------------------------------------------------------
# Context predicates


@attrs.frozen
class PRoot:
    span: Span


@attrs.frozen
class PCtx:
    name: str
    span: Span


@attrs.frozen
class PAnc:  # ^P
    pred: Pred
    span: Span


@attrs.frozen
class PNot:  # !P
    pred: Pred
    span: Span


@attrs.frozen
class PAnd:  # P1 & P2
    left: Pred
    right: Pred
    span: Span


Pred = PRoot | PCtx | PAnc | PNot | PAnd


# ---------------------------------------------------------------------------
# Types as written


@attrs.frozen
class TName:  # int, string, bool, your_domain, ...
    name: str
    span: Span


@attrs.frozen
class TList:  # [T]
    elem: Type
    span: Span


@attrs.frozen
class TArrow:  # T1 -> T2
    arg: Type
    result: Type
    span: Span


@attrs.frozen
class TAction:  # [P] {C1 : T1, ...} => {D1 : U1, ...}
    pred: Pred
    reads: tuple[tuple[str, Type], ...]
    writes: tuple[tuple[str, Type], ...]
    span: Span


@attrs.frozen
class TNested:  # P => T   (a block directive whose body must satisfy P)
    body: Pred
    outer: Type
    span: Span


Type = TName | TList | TArrow | TAction | TNested


# ---------------------------------------------------------------------------
# Expressions


@attrs.frozen
class EInt:
    value: int
    span: Span


@attrs.frozen
class EString:
    value: str
    span: Span


@attrs.frozen
class EBool:
    value: bool
    span: Span


@attrs.frozen
class EList:
    items: tuple[Expr, ...]
    span: Span


@attrs.frozen
class EVar:  # lower-case identifier
    name: str
    span: Span


@attrs.frozen
class EApp:  # f a1 a2 ... (left-associative, stored flat)
    func: Expr
    args: tuple[Expr, ...]
    span: Span


@attrs.frozen
class ELambda:  # \x -> e   or   \x : (T) -> e
    param: str
    param_type: Type | None
    body: Expr
    span: Span


@attrs.frozen
class EBlockLambda:  # \\x : P -> e   (user-defined block directive; x is the body)
    param: str
    pred: Pred
    body: Expr
    span: Span


@attrs.frozen
class ESet:  # C = e
    name: str
    value: Expr
    span: Span


@attrs.frozen
class EGet:  # x <- C; e
    var: str
    env: str
    body: Expr
    span: Span


@attrs.frozen
class ESeq:  # e1; e2; ...   (at least two items)
    items: tuple[Expr, ...]
    span: Span


@attrs.frozen
class ELocal:  # let e1 in e2 end   and   e2 where e1 end
    """Local declarations/settings ``decls`` (a program fragment) scoped to ``body``.

    ``let`` holds ``val`` declarations and/or environment settings; ``where`` holds
    settings. Both are undone after ``end``.
    """

    decls: tuple[Decl, ...]
    settings: Expr | None
    body: Expr
    span: Span


@attrs.frozen
class EWith:  # e1 with e2 end   /   e1 with end   /   e1 where s with e2 end
    block: Expr
    settings: Expr | None  # from "where ... with"
    body: Expr | None  # None for an empty body
    span: Span


@attrs.frozen
class EIf:
    cond: Expr
    then: Expr
    orelse: Expr
    span: Span


Expr = (
    EInt
    | EString
    | EBool
    | EList
    | EVar
    | EApp
    | ELambda
    | EBlockLambda
    | ESet
    | EGet
    | ESeq
    | ELocal
    | EWith
    | EIf
)


# ---------------------------------------------------------------------------
# Declarations and files


@attrs.frozen
class DExternType:  # extern type t
    name: str
    doc: str | None
    span: Span


@attrs.frozen
class DExternVal:  # extern val x : T
    name: str
    type: Type
    doc: str | None
    span: Span


@attrs.frozen
class DVal:  # val x = e   /   val x : T = e
    name: str
    type: Type | None
    value: Expr
    doc: str | None
    span: Span


@attrs.frozen
class DContext:  # context C
    name: str
    doc: str | None
    span: Span


Decl = DExternType | DExternVal | DVal | DContext


@attrs.frozen
class File:
    """A parsed file: declarations, then an optional expression (a config's body)."""

    name: str
    decls: tuple[Decl, ...]
    body: Expr | None
