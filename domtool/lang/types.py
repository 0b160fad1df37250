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

Implication between predicates is decided exactly, by exploring the finitely many states
of an automaton that reads a stack from the bottom up (see :func:`_implies`).
"""

from __future__ import annotations

import itertools

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


MAX_STATES = 3_000
MAX_WORK = 300_000
FRESH = "\x00other"


def _ancs(pred: Pred, acc: dict[Anc, int]) -> int:
    """Collect the ``^`` subformulas into ``acc`` (with their size); return ``pred``'s size."""
    if isinstance(pred, Anc):
        n = 1 + _ancs(pred.pred, acc)
        acc.setdefault(pred, n)
        return n
    if isinstance(pred, Not):
        return 1 + _ancs(pred.pred, acc)
    if isinstance(pred, And):
        return 1 + sum(_ancs(p, acc) for p in pred.items)
    return 1


def _ev(pred: Pred, top: str | None, ancs: frozenset[Anc] | set[Anc]) -> bool:
    """``pred`` at one stack position: ``top`` is the innermost context (None: empty
    stack) and ``ancs`` the ``^`` subformulas true there."""
    if isinstance(pred, Root):
        return top is None
    if isinstance(pred, Ctx):
        return top == pred.name
    if isinstance(pred, Anc):
        return pred in ancs
    if isinstance(pred, Not):
        return not _ev(pred.pred, top, ancs)
    if isinstance(pred, And):
        return all(_ev(p, top, ancs) for p in pred.items)
    return True  # an unbound predicate variable


def _step(order: list[Anc], prev: frozenset[Anc], top: str | None) -> frozenset[Anc]:
    """The ``^`` subformulas true after pushing ``top`` (or at the empty stack)."""
    now: set[Anc] = set()
    for a in order:  # inner subformulas first
        if a in prev or _ev(a.pred, top, now):
            now.add(a)
    return frozenset(now)


def implies(have: Pred, need: Pred) -> bool:
    """Whether every context stack satisfying ``have`` also satisfies ``need``.

    Unbound predicate variables in ``need`` are fixed to ``have`` (the weakest
    requirement that fits here); any in ``have`` are treated as holding everywhere.
    """
    return implies_costed(have, need)[0]


def implies_costed(have: Pred, need: Pred) -> tuple[bool, int]:
    """:func:`implies`, and the work it took (1 when the answer was remembered), so a
    caller can bound the total work of checking one file."""
    have, need = resolve(have), resolve(need)
    for v in free_pvars(need, []):
        v.ref = have
    if free_pvars(have, []):
        have = TRUE
    need = resolve(need)
    key = (have, need)
    hit = _MEMO.get(key)
    if hit is not None:
        return hit, 1
    result, work = _implies(have, need)
    if len(_MEMO) >= MEMO_SIZE:
        _MEMO.clear()
    _MEMO[key] = result
    return result, work


MEMO_SIZE = 4096
_MEMO: dict[tuple[Pred, Pred], bool] = {}


def _implies(have: Pred, need: Pred) -> tuple[bool, int]:
    """:func:`implies` on predicates without variables, decided exactly; with its work.

    A stack is read from the bottom up; what a predicate says about it depends only on
    the innermost name and on which ``^`` subformulas hold, and ``^P`` holds after a push
    iff it held before or ``P`` holds now. So the reachable (top, true-``^``-set) states,
    over the names both predicates mention plus one they do not, are finitely many: visit
    them all and look for one where ``have`` holds and ``need`` does not. Absurdly large
    predicates (more than ``MAX_STATES`` states, or ``MAX_WORK`` steps) are refused (not
    implied): fail closed.
    """
    if need == TRUE or have == need:
        return True, 1
    acc: dict[Anc, int] = {}
    size = _ancs(have, acc) + _ancs(need, acc)
    order = sorted(acc, key=acc.__getitem__)
    names: set[str] = set()
    _names(have, names)
    _names(need, names)
    alphabet = [*sorted(names), FRESH]
    per_state = len(alphabet) * (len(order) + 1) + size
    start = (None, _step(order, frozenset(), None))
    seen = {start}
    todo = [start]
    work = 0
    while todo:
        work += per_state
        if work > MAX_WORK:
            return False, work
        top, ancs = todo.pop()
        if _ev(have, top, ancs) and not _ev(need, top, ancs):
            return False, work
        for c in alphabet:
            nxt = (c, _step(order, ancs, c))
            if nxt not in seen:
                if len(seen) >= MAX_STATES:
                    return False, work
                seen.add(nxt)
                todo.append(nxt)
    return True, work


def satisfiable(pred: Pred) -> bool:
    """Whether some stack satisfies ``pred``."""
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
