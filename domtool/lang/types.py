"""Internal types and context predicates of the type checker.

The checker turns the written types of :mod:`domtool.lang.ast` into the values defined
here, infers types of expressions in this form, and prints them back in source syntax
for error messages. This module holds the data, the printing and the decision procedure
for context-predicate implication; subtyping (which needs the member's permissions for
literal types) lives in :mod:`domtool.lang.checker`.

Context predicates describe a stack of context names (the innermost on top):

- :class:`Root`: the stack is empty;
- :class:`Ctx`: that name is on top;
- :class:`Anc` (``^P``): some suffix of the stack (zero or more top elements dropped)
  satisfies ``P``;
- :class:`Not`, :class:`And`; ``And(())`` is the predicate that always holds.

Implication between predicates is decided by enumerating every stack over the names
both mention plus one fresh name, up to a length bounded by the predicates' size.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import attrs

# ---------------------------------------------------------------------------
# Context predicates


@attrs.frozen
class Root:
    """The stack is empty (top level of a file)."""


@attrs.frozen
class Ctx:
    """``name`` is the innermost context."""

    name: str


@attrs.frozen
class Anc:
    """``^P``: somewhere inside a ``P``."""

    pred: Pred


@attrs.frozen
class Not:
    """``!P``."""

    pred: Pred


@attrs.frozen
class And:
    """A conjunction; the empty conjunction always holds."""

    items: tuple[Pred, ...]


@attrs.define(eq=False)
class PVar:
    """An unknown predicate (the requirement of an action passed to an unannotated lambda
    parameter), fixed by the first use that constrains it."""

    ref: Pred | None = None


Pred = Root | Ctx | Anc | Not | And | PVar
TRUE = And(())


def resolve(pred: Pred) -> Pred:
    """``pred`` with bound :class:`PVar` replaced by their values (unbound ones stay)."""
    if isinstance(pred, PVar):
        return pred if pred.ref is None else resolve(pred.ref)
    if isinstance(pred, Anc):
        return Anc(resolve(pred.pred))
    if isinstance(pred, Not):
        return Not(resolve(pred.pred))
    if isinstance(pred, And):
        return conj(*(resolve(p) for p in pred.items)) if pred.items else pred
    return pred


def free_pvars(pred: Pred, acc: list[PVar]) -> list[PVar]:
    """The unbound predicate variables in (resolved) ``pred``."""
    if isinstance(pred, PVar):
        if pred not in acc:
            acc.append(pred)
    elif isinstance(pred, Anc | Not):
        free_pvars(pred.pred, acc)
    elif isinstance(pred, And):
        for p in pred.items:
            free_pvars(p, acc)
    return acc


def conj(*preds: Pred) -> Pred:
    """The conjunction of ``preds``, flattened, without duplicates, in stable order."""
    out: list[Pred] = []
    for p in preds:
        for q in p.items if isinstance(p, And) else (p,):
            if q not in out:
                out.append(q)
    return out[0] if len(out) == 1 else And(tuple(out))


def holds(pred: Pred, stack: tuple[str, ...]) -> bool:
    """Whether ``pred`` holds for ``stack`` (innermost context last); an unbound
    predicate variable holds everywhere."""
    if isinstance(pred, PVar):
        return True if pred.ref is None else holds(pred.ref, stack)
    if isinstance(pred, Root):
        return not stack
    if isinstance(pred, Ctx):
        return bool(stack) and stack[-1] == pred.name
    if isinstance(pred, Anc):
        return any(holds(pred.pred, stack[:i]) for i in range(len(stack), -1, -1))
    if isinstance(pred, Not):
        return not holds(pred.pred, stack)
    return all(holds(p, stack) for p in pred.items)


def _names(pred: Pred, acc: set[str]) -> int:
    """Collect context names into ``acc``; return the predicate's size (atoms and ^)."""
    if isinstance(pred, Root):
        return 1
    if isinstance(pred, Ctx):
        acc.add(pred.name)
        return 1
    if isinstance(pred, Anc):
        return 1 + _names(pred.pred, acc)
    if isinstance(pred, Not):
        return _names(pred.pred, acc)
    if isinstance(pred, PVar):
        return 0 if pred.ref is None else _names(pred.ref, acc)
    return sum(_names(p, acc) for p in pred.items)


MAX_STACK = 6
MAX_WORK = 400_000
FRESH = "\x00other"


def implies(have: Pred, need: Pred) -> bool:
    """Whether every context stack satisfying ``have`` also satisfies ``need``.

    Unbound predicate variables in ``need`` are fixed to ``have`` (the weakest
    requirement that fits here); any in ``have`` are treated as holding everywhere.
    """
    have, need = resolve(have), resolve(need)
    for v in free_pvars(need, []):
        v.ref = have
    if free_pvars(have, []):
        have = TRUE
    return _implies(have, resolve(need))


@lru_cache(maxsize=4096)
def _implies(have: Pred, need: Pred) -> bool:
    """:func:`implies` on predicates without variables (memoised).

    Decided over all stacks built from the names both predicates mention plus one name
    neither mentions, up to the size of the two predicates (capped, and shortened when the
    alphabet is large so the enumeration stays bounded).
    """
    if need == TRUE or have == need:
        return True
    names: set[str] = set()
    size = _names(have, names) + _names(need, names)
    alphabet = sorted(names) + [FRESH]
    depth = min(size, MAX_STACK)
    # Bound the work (models x predicate size). Only huge hand-written predicates are
    # affected; missing a counterexample there can only let an action run in a context
    # its primitive does not expect, which the evaluator reports as an error.
    budget = max(200, MAX_WORK // max(size, 1))
    while depth > 1 and sum(len(alphabet) ** k for k in range(depth + 1)) > budget:
        depth -= 1
    for n in range(depth + 1):
        for stack in itertools.product(alphabet, repeat=n):
            if holds(have, stack) and not holds(need, stack):
                return False
    return True


def satisfiable(pred: Pred) -> bool:
    """Whether some stack satisfies ``pred`` (within the same bounds as :func:`implies`)."""
    return not implies(pred, Not(TRUE))


def show_pred(pred: Pred) -> str:
    """Source syntax: ``Root``, ``Domain``, ``^Vhost``, ``!P``, ``P1 & P2``."""
    pred = resolve(pred)
    if isinstance(pred, PVar):
        return "^Root"
    if isinstance(pred, Root):
        return "Root"
    if isinstance(pred, Ctx):
        return pred.name
    if isinstance(pred, Anc | Not):
        inner = show_pred(pred.pred)
        if isinstance(pred.pred, And) and len(pred.pred.items) != 1:
            inner = f"({inner})"
        return ("^" if isinstance(pred, Anc) else "!") + inner
    if not pred.items:
        return "^Root"  # holds everywhere: the empty stack is a suffix of every stack
    return " & ".join(show_pred(p) for p in pred.items)


# ---------------------------------------------------------------------------
# Types


@attrs.frozen
class Base:
    """``int``, ``string``, ``bool`` or an extern type such as ``your_domain``."""

    name: str


@attrs.frozen
class LitStr:
    """The type of known string values (literals, or names bound to them): a subtype of
    ``string`` and of every string-carried extern type whose predicate accepts them all."""

    values: frozenset[str]


@attrs.frozen
class LitInt:
    """The type of known integer values (see :class:`LitStr`)."""

    values: frozenset[int]


@attrs.frozen
class List:
    elem: Type


@attrs.frozen
class Arrow:
    arg: Type
    res: Type


@attrs.frozen
class Action:
    """An action allowed where ``pred`` holds, reading and writing environment variables
    (sorted ``(name, type)`` pairs)."""

    pred: Pred
    reads: tuple[tuple[str, Type], ...] = ()
    writes: tuple[tuple[str, Type], ...] = ()


@attrs.frozen
class Nested:
    """A block directive: its body runs where ``body`` holds; the whole block is ``outer``."""

    body: Pred
    outer: Type


@attrs.frozen
class ErrorT:
    """The type of an expression that already produced an error: compatible with all."""


_unif_counter = itertools.count()


@attrs.define(eq=False)
class Unif:
    """A unification variable for an unannotated lambda parameter (a mutable cell)."""

    ref: Type | None = None
    ident: int = attrs.field(factory=lambda: next(_unif_counter))


Type = Base | LitStr | LitInt | List | Arrow | Action | Nested | ErrorT | Unif

INT = Base("int")
STRING = Base("string")
BOOL = Base("bool")
ERROR = ErrorT()


def prune(t: Type) -> Type:
    """Follow bound unification variables."""
    while isinstance(t, Unif) and t.ref is not None:
        t = t.ref
    return t


def merge_env(
    a: tuple[tuple[str, Type], ...], b: tuple[tuple[str, Type], ...]
) -> tuple[tuple[str, Type], ...]:
    d = dict(a)
    for k, v in b:
        d.setdefault(k, v)
    return tuple(sorted(d.items()))


def show(t: Type) -> str:
    """A type in source syntax; literal types print as their carrier (``string``)."""
    t = prune(t)
    if isinstance(t, Base):
        return t.name
    if isinstance(t, LitStr):
        return "string"
    if isinstance(t, LitInt):
        return "int"
    if isinstance(t, List):
        return f"[{show(t.elem)}]"
    if isinstance(t, Arrow):
        a = prune(t.arg)
        left = show(a)
        if isinstance(a, Arrow | Nested):
            left = f"({left})"
        return f"{left} -> {show(t.res)}"
    if isinstance(t, Action):
        s = f"[{show_pred(t.pred)}]"
        if t.reads:
            s += " {" + ", ".join(f"{k} : {show(v)}" for k, v in t.reads) + "}"
        if t.writes:
            if not t.reads:
                s += " {}"
            s += " => {" + ", ".join(f"{k} : {show(v)}" for k, v in t.writes) + "}"
        return s
    if isinstance(t, Nested):
        body = show_pred(t.body)
        return f"{body} => {show(t.outer)}"
    if isinstance(t, ErrorT):
        return "<error>"
    return f"'a{t.ident}"
