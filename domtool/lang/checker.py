"""The type checker: types, context predicates and environment variables.

:func:`check_library` checks the standard library's declarations once and gives a
:class:`Library` (the types of its names, its contexts, extern types and the table of
environment variables with their declared types). :func:`check_file` checks one member
file against a library with the member's permissions and returns every error of the
file, in the published shape (``Function argument has wrong type.``, ``Context
incompatibility for nested action.``, ...).

How it works, in short:

- Literals have literal types (:class:`~domtool.lang.types.LitStr`); a literal inhabits an
  extern type such as ``your_domain`` when the extern's predicate accepts it for this
  member (:mod:`domtool.lang.externs`). This is where permissions are enforced.
- Inside a block body the checker knows the context predicate that holds ("have"); every
  action met there (a name, an application, a block) must have a requirement implied by
  it, and an error points at that action. Inside a lambda body nothing is known, so the
  requirements accumulate in the inferred action type and are checked where it is used.
- Environment variables have one global type each, declared by the ``{C : T}`` reads and
  writes of the library's signatures; ``C = e`` checks ``e`` against it at once. Because
  the types are global, the reads and writes of action types are informational (shown
  in types and the reference) and play no part in subtyping.
- Unannotated lambda parameters get unification variables, and an action passed to one
  gets a predicate variable fixed by its first use: monomorphic, no generalisation.
- After an error, the expression gets :data:`~domtool.lang.types.ERROR`, compatible with
  everything, so the rest of the file is still checked and all errors are reported.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from domtool.lang import ast, externs
from domtool.lang import types as T
from domtool.lang.errors import Diagnostic
from domtool.model import DEFAULT_SITE, Site
from domtool.stdlib import domtool2

BUILTIN_TYPES = ("int", "string", "bool")
#: Work allowed for deciding context predicates in one file (about a second); past it,
#: every further implication is refused (fail closed) and one error says why.
PRED_BUDGET = 3_000_000
#: Errors reported per file before the checker stops (the rest would be noise).
MAX_ERRORS = 100


class _TooManyErrors(Exception):
    pass


MAX_EXPR_CHARS = 120


@attrs.frozen
class Library:
    """The checked standard library (independent of any member's permissions)."""

    files: tuple[ast.File, ...]
    globals: Mapping[str, T.Type]
    contexts: frozenset[str]
    type_names: frozenset[str]
    env_types: Mapping[str, T.Type]
    extern_vals: Mapping[str, T.Type]


EMPTY_LIBRARY = Library((), {}, frozenset(), frozenset(), {}, {})


class Scope:
    """Lexical scope: a chain of small dicts over the file's globals."""

    __slots__ = ("vars", "parent")

    def __init__(self, vars: dict[str, T.Type], parent: Scope | None = None) -> None:
        self.vars = vars
        self.parent = parent

    def lookup(self, name: str) -> T.Type | None:
        s: Scope | None = self
        while s is not None:
            t = s.vars.get(name)
            if t is not None:
                return t
            s = s.parent
        return None

    def names(self) -> set[str]:
        out: set[str] = set()
        s: Scope | None = self
        while s is not None:
            out.update(s.vars)
            s = s.parent
        return out

    def child(self, **vars: T.Type) -> Scope:
        return Scope(dict(vars), self)


def _nearest(name: str, candidates: Iterable[str]) -> str | None:
    if len(name) > 64:
        return None
    near = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
    if not near:
        return None
    return "did you mean " + " or ".join(near) + "?"


class Checker:
    """Checks declarations and expressions, collecting diagnostics."""

    def __init__(
        self,
        perms: Any,
        site: Site,
        library: Library,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self.perms = perms
        self.site = site
        self.sources = dict(sources or {})
        self.diags: list[Diagnostic] = []
        self.library = library
        self.globals: dict[str, T.Type] = dict(library.globals)
        self.contexts: set[str] = set(library.contexts)
        self.type_names: set[str] = set(library.type_names) | set(BUILTIN_TYPES)
        self.env_types: dict[str, T.Type] = dict(library.env_types)
        self.extern_vals: dict[str, T.Type] = {}
        self.shadowed_env: set[str] = set()  # library variables this file redeclares
        self._lines: dict[str, list[str]] = {}
        self._accepted: dict[tuple[str, object], bool] = {}
        self.pred_work = 0
        self.file = "<library>"  # the file being checked, for errors without a span
        self._pred_budget_reported = False

    def implies(self, have: T.Pred, need: T.Pred, span: ast.Span | None = None) -> bool:
        """:func:`types.implies` within the file's work budget."""
        if self.pred_work > PRED_BUDGET:
            if not self._pred_budget_reported:
                self._pred_budget_reported = True
                self.error(
                    span,
                    "Context predicates in this file are too complex to check.",
                    hint="simplify the contexts of your block directives",
                )
            return False
        ok, work = T.implies_costed(have, need)
        self.pred_work += work
        return ok

    def accepts(self, name: str, value: object) -> bool:
        """Memoised :func:`externs.accepts` for this member and site."""
        key = (name, value)
        hit = self._accepted.get(key)
        if hit is None:
            hit = self._accepted[key] = externs.accepts(name, value, self.perms, self.site)
        return hit

    # -- diagnostics -------------------------------------------------------------

    def error(
        self,
        span: ast.Span | None,
        message: str,
        details: tuple[str, ...] = (),
        hint: str | None = None,
    ) -> T.Type:
        file = span.file if span is not None else self.file
        if len(self.diags) >= MAX_ERRORS:
            self.diags.append(
                Diagnostic(file, span, f"Too many errors; checking stopped after {MAX_ERRORS}.")
            )
            raise _TooManyErrors
        self.diags.append(Diagnostic(file, span, message, details, hint))
        return T.ERROR

    def text(self, span: ast.Span) -> str:
        """The source text of ``span``, on one line and shortened."""
        src = self.sources.get(span.file)
        if src is None:
            return "<expression>"
        lines = self._lines.get(span.file)
        if lines is None:
            lines = self._lines[span.file] = src.split("\n")
        s, e = span.start, span.end
        try:
            if s.line == e.line:
                out = lines[s.line - 1][s.col : e.col + 1]
            else:
                parts = [lines[s.line - 1][s.col :]]
                parts.extend(lines[s.line : e.line - 1])
                parts.append(lines[e.line - 1][: e.col + 1])
                out = "\n".join(parts)
        except IndexError:
            return "<expression>"
        out = " ".join(out.split())
        if len(out) > MAX_EXPR_CHARS:
            out = out[: MAX_EXPR_CHARS - 3] + "..."
        return out

    def type_hint(self, need: T.Type, actual: T.Type | None = None) -> str | None:
        """What the member may use instead: the grammar's complaint about a literal, or
        (for permission types) what they own."""
        need, actual = T.prune(need), T.prune(actual) if actual is not None else None
        while isinstance(need, T.List):
            need = T.prune(need.elem)
            actual = T.prune(actual.elem) if isinstance(actual, T.List) else None
        if isinstance(need, T.Base) and need.name in externs.EXTERN_TYPES:
            if isinstance(actual, T.LitStr | T.LitInt):
                for v in sorted(actual.values, key=str):
                    r = externs.reason(need.name, v)
                    if r:
                        return r
            return externs.hint(need.name, self.perms, self.site)
        if (
            isinstance(need, T.Base)
            and need.name not in BUILTIN_TYPES
            and isinstance(actual, T.LitStr | T.LitInt)
        ):
            return externs.no_checker(need.name)
        return None

    def mismatch(
        self,
        expr: ast.Expr,
        actual: T.Type,
        needed: T.Type,
        message: str,
        hint: str | None = None,
    ) -> T.Type:
        return self.error(
            expr.span,
            message,
            (
                f"Expression: {self.text(expr.span)}",
                f"Actual type: {T.show(actual)}",
                f"Needed type: {T.show(needed)}",
            ),
            hint or self.type_hint(needed, actual),
        )

    # -- written types -------------------------------------------------------------

    def pred(self, p: ast.Pred) -> T.Pred:
        if isinstance(p, ast.PRoot):
            return T.Root()
        if isinstance(p, ast.PCtx):
            if p.name not in self.contexts:
                self.error(
                    p.span,
                    f"Unknown context {p.name}.",
                    hint=_nearest(p.name, self.contexts),
                )
            return T.Ctx(p.name)
        if isinstance(p, ast.PAnc):
            return T.Anc(self.pred(p.pred))
        if isinstance(p, ast.PNot):
            return T.Not(self.pred(p.pred))
        if isinstance(p, ast.PAnd):
            return T.conj(self.pred(p.left), self.pred(p.right))
        raise TypeError(p)

    def env_decls(self, pairs: tuple[tuple[str, ast.Type], ...], span: ast.Span, declare: bool):
        out = []
        for name, ty in pairs:
            t = self.type(ty, declare)
            if declare:
                old = self.env_types.get(name)
                if old is None:
                    self.env_types[name] = t
                elif old != t and self._may_shadow(name):
                    # A member file's own declaration (a self-contained program) gives the
                    # variable its own type in this file; the evaluator refuses a value
                    # that does not fit the library's type (evaluator.Interpreter.set_env).
                    self.env_types[name] = t
                    self.shadowed_env.add(name)
                elif old != t:
                    self.error(
                        span,
                        f"Environment variable {name} declared with conflicting types.",
                        (f"Earlier type: {T.show(old)}", f"This type: {T.show(t)}"),
                    )
            out.append((name, t))
        return tuple(sorted(dict(out).items()))

    def _may_shadow(self, name: str) -> bool:
        return (
            self.library is not EMPTY_LIBRARY
            and name in self.library.env_types
            and name not in self.shadowed_env
            and self.env_types.get(name) == self.library.env_types[name]
        )

    def type(self, ty: ast.Type, declare: bool = False) -> T.Type:
        """Turn a written type into a checker type (``declare``: record env variables)."""
        if isinstance(ty, ast.TName):
            if ty.name not in self.type_names:
                return self.error(
                    ty.span, f"Unknown type {ty.name}.", hint=_nearest(ty.name, self.type_names)
                )
            return T.Base(ty.name)
        if isinstance(ty, ast.TList):
            return T.List(self.type(ty.elem, declare))
        if isinstance(ty, ast.TArrow):
            return T.Arrow(self.type(ty.arg, declare), self.type(ty.result, declare))
        if isinstance(ty, ast.TAction):
            return T.Action(
                self.pred(ty.pred),
                self.env_decls(ty.reads, ty.span, declare),
                self.env_decls(ty.writes, ty.span, declare),
            )
        if isinstance(ty, ast.TNested):
            return T.Nested(self.pred(ty.body), self.type(ty.outer, declare))
        raise TypeError(ty)

    # -- subtyping -------------------------------------------------------------------

    def occurs(self, u: T.Unif, t: T.Type) -> bool:
        t = T.prune(t)
        if t is u:
            return True
        if isinstance(t, T.List):
            return self.occurs(u, t.elem)
        if isinstance(t, T.Arrow):
            return self.occurs(u, t.arg) or self.occurs(u, t.res)
        if isinstance(t, T.Nested):
            return self.occurs(u, t.outer)
        return False

    @staticmethod
    def widen(t: T.Type) -> T.Type:
        t = T.prune(t)
        if isinstance(t, T.LitStr):
            return T.STRING
        if isinstance(t, T.LitInt):
            return T.INT
        if isinstance(t, T.List):
            return T.List(Checker.widen(t.elem))
        return t

    def pred_le(self, have: T.Pred, need: T.Pred) -> bool:
        """Whether an action requiring ``need`` may stand where ``have`` is promised."""
        have, need = T.resolve(have), T.resolve(need)
        if isinstance(have, T.PVar) and isinstance(need, T.PVar):
            if have is not need:
                have.ref = need
            return True
        if isinstance(have, T.PVar):
            have.ref = need
            return True
        return self.implies(have, need)

    def sub(self, a: T.Type, b: T.Type) -> bool:
        """``a`` ≤ ``b``, binding unification variables as needed."""
        a, b = T.prune(a), T.prune(b)
        if a is b or isinstance(a, T.ErrorT) or isinstance(b, T.ErrorT):
            return True
        if isinstance(a, T.Unif):
            if self.occurs(a, b):
                return False
            a.ref = self.widen(b)
            return True
        if isinstance(b, T.Unif):
            if self.occurs(b, a):
                return False
            b.ref = self.widen(a)
            return True
        if isinstance(a, T.LitStr):
            if isinstance(b, T.LitStr):
                return a.values <= b.values
            if isinstance(b, T.Base):
                if b.name == "string":
                    return True
                if externs.carrier(b.name) == "string":
                    return all(self.accepts(b.name, v) for v in a.values)
            return False
        if isinstance(a, T.LitInt):
            if isinstance(b, T.LitInt):
                return a.values <= b.values
            if isinstance(b, T.Base):
                if b.name == "int":
                    return True
                if externs.carrier(b.name) == "int":
                    return all(self.accepts(b.name, v) for v in a.values)
            return False
        if isinstance(a, T.Base):
            if not isinstance(b, T.Base):
                return False
            return externs.is_subtype(a.name, b.name) or externs.carrier(a.name) == b.name
        if isinstance(a, T.List):
            return isinstance(b, T.List) and self.sub(a.elem, b.elem)
        if isinstance(a, T.Arrow):
            return isinstance(b, T.Arrow) and self.sub(b.arg, a.arg) and self.sub(a.res, b.res)
        if isinstance(a, T.Action):
            return isinstance(b, T.Action) and self.pred_le(b.pred, a.pred)
        if isinstance(a, T.Nested):
            return (
                isinstance(b, T.Nested)
                and self.pred_le(a.body, b.body)
                and self.sub(a.outer, b.outer)
            )
        return False

    def lub(self, a: T.Type, b: T.Type) -> T.Type | None:
        """The least common supertype the checker knows, or None."""
        a, b = T.prune(a), T.prune(b)
        if isinstance(a, T.LitStr) and isinstance(b, T.LitStr):
            return T.LitStr(a.values | b.values)
        if isinstance(a, T.LitInt) and isinstance(b, T.LitInt):
            return T.LitInt(a.values | b.values)
        if self.sub(a, b):
            return b
        if self.sub(b, a):
            return a
        for base in (T.STRING, T.INT):
            if self.sub(a, base) and self.sub(b, base):
                return base
        if isinstance(a, T.List) and isinstance(b, T.List):
            e = self.lub(a.elem, b.elem)
            return None if e is None else T.List(e)
        return None

    # -- expressions -----------------------------------------------------------------

    def need_here(self, t: T.Type, have: T.Pred | None, span: ast.Span) -> T.Type:
        """Check an action met where ``have`` holds; return it with the need discharged."""
        t = T.prune(t)
        if have is None or not isinstance(t, T.Action):
            return t
        if not self.implies(have, t.pred, span):
            self.error(
                span,
                "Context incompatibility for nested action.",
                (f"Have: {T.show_pred(have)}", f"Need: {T.show_pred(t.pred)}"),
                self.context_hint(t.pred),
            )
        return T.Action(T.TRUE, t.reads, t.writes)

    def context_hint(self, need: T.Pred) -> str | None:
        """Which block directives open the contexts ``need`` asks for."""
        need = T.resolve(need)
        wanted = [
            p.pred if isinstance(p, T.Anc) else p
            for p in (need.items if isinstance(need, T.And) else (need,))
        ]
        parts = []
        for w in wanted:
            if isinstance(w, T.Root):
                parts.append("Root is the top level of the file, outside every block")
            elif isinstance(w, T.Ctx):
                names = sorted(
                    (n for n, t in self.globals.items() if _opens(t, w.name)),
                    key=lambda n: (n not in self.library.extern_vals, n),
                )
                if names:
                    shown = " or ".join(f"`{n} ... with ... end`" for n in names[:3])
                    parts.append(f"{w.name} is the inside of {shown}")
        return "; ".join(parts) or None

    def as_action(self, t: T.Type, e: ast.Expr) -> T.Action | None:
        """``t`` as an action type (binding an unknown type to one), or None after an error."""
        t = T.prune(t)
        if isinstance(t, T.Unif):
            act = T.Action(T.PVar())
            t.ref = act
            return act
        if isinstance(t, T.Action):
            return t
        if isinstance(t, T.ErrorT):
            return None
        if isinstance(t, T.Nested):
            self.error(
                e.span,
                "Block directive used without a body.",
                (f"Expression: {self.text(e.span)}", f"Actual type: {T.show(t)}"),
                "add `with end` (or `with ... end`) after it",
            )
            return None
        self.error(
            e.span,
            "This expression is not an action.",
            (f"Expression: {self.text(e.span)}", f"Actual type: {T.show(t)}"),
        )
        return None

    def infer(self, e: ast.Expr, scope: Scope, have: T.Pred | None) -> T.Type:
        if isinstance(e, ast.EString):
            return T.LitStr(frozenset((e.value,)))
        if isinstance(e, ast.EInt):
            return T.LitInt(frozenset((e.value,)))
        if isinstance(e, ast.EBool):
            return T.BOOL
        if isinstance(e, ast.EVar):
            t = scope.lookup(e.name)
            if t is None:
                return self.error(
                    e.span,
                    f"Unknown variable {e.name}.",
                    hint=domtool2.hint(e.name) or _nearest(e.name, scope.names()),
                )
            return self.need_here(t, have, e.span)
        if isinstance(e, ast.EList):
            return self.infer_list(e, scope)
        if isinstance(e, ast.EApp):
            return self.need_here(self.infer_app(e, scope), have, e.span)
        if isinstance(e, ast.ELambda):
            pt = self.type(e.param_type) if e.param_type is not None else T.Unif()
            body = self.infer(e.body, scope.child(**{e.param: pt}), None)
            return T.Arrow(pt, body)
        if isinstance(e, ast.EBlockLambda):
            p = self.pred(e.pred)
            body = self.infer(e.body, scope.child(**{e.param: T.Action(p)}), None)
            act = self.as_action(body, e.body)
            return T.Nested(p, act if act is not None else T.ERROR)
        if isinstance(e, ast.ESet):
            return self.infer_set(e, scope)
        if isinstance(e, ast.EGet):
            return self.infer_get(e, scope, have)
        if isinstance(e, ast.ESeq):
            return self.infer_seq(e.items, scope, have)
        if isinstance(e, ast.ELocal):
            return self.infer_local(e, scope, have)
        if isinstance(e, ast.EWith):
            return self.infer_with(e, scope, have)
        if isinstance(e, ast.EIf):
            c = self.infer(e.cond, scope, None)
            if not self.sub(c, T.BOOL):
                self.mismatch(e.cond, c, T.BOOL, "Condition of if is not a bool.")
            a = self.infer(e.then, scope, have)
            b = self.infer(e.orelse, scope, have)
            if isinstance(T.prune(a), T.Action) and isinstance(T.prune(b), T.Action):
                pa, pb = T.prune(a), T.prune(b)
                return T.Action(
                    T.conj(pa.pred, pb.pred),
                    T.merge_env(pa.reads, pb.reads),
                    T.merge_env(pa.writes, pb.writes),
                )
            t = self.lub(a, b)
            if t is None:
                return self.mismatch(e.orelse, b, a, "Branches of if have different types.")
            return t
        raise TypeError(e)

    def infer_list(self, e: ast.EList, scope: Scope) -> T.Type:
        # Literal items are pooled (one set union per item, not one per pair), so a long
        # list of literals costs linear time.
        strs: set[str] = set()
        ints: set[int] = set()
        elem: T.Type | None = None
        for item in e.items:
            t = T.prune(self.infer(item, scope, None))
            if isinstance(t, T.LitStr):
                strs.update(t.values)
                continue
            if isinstance(t, T.LitInt):
                ints.update(t.values)
                continue
            elem = self.join_item(elem, t, item)
        if strs:
            elem = self.join_item(elem, T.LitStr(frozenset(strs)), e)
        if ints:
            elem = self.join_item(elem, T.LitInt(frozenset(ints)), e)
        return T.List(elem if elem is not None else T.Unif())

    def join_item(self, elem: T.Type | None, t: T.Type, item: ast.Expr) -> T.Type:
        if elem is None:
            return t
        j = self.lub(elem, t)
        if j is None:
            self.mismatch(item, t, elem, "List items have different types.")
            return T.ERROR
        return j

    def infer_app(self, e: ast.EApp, scope: Scope) -> T.Type:
        ft = self.infer(e.func, scope, None)
        for i, arg in enumerate(e.args):
            ft = T.prune(ft)
            if isinstance(ft, T.Unif):
                res: T.Type = T.Unif()
                ft.ref = T.Arrow(T.Unif(), res)
                ft = ft.ref
            if isinstance(ft, T.ErrorT):
                for a in e.args[i:]:
                    self.infer(a, scope, None)
                return T.ERROR
            if not isinstance(ft, T.Arrow):
                self.error(
                    e.func.span.join(arg.span),
                    "Applying a non-function.",
                    (
                        f"Expression: {self.text(e.func.span.join(e.args[i - 1].span) if i else e.func.span)}",
                        f"Actual type: {T.show(ft)}",
                        f"Argument: {self.text(arg.span)}",
                    ),
                    "too many arguments?" if i else None,
                )
                for a in e.args[i:]:
                    self.infer(a, scope, None)
                return T.ERROR
            at = self.infer(arg, scope, None)
            if not self.sub(at, ft.arg):
                self.mismatch(
                    arg,
                    at,
                    ft.arg,
                    "Function argument has wrong type.",
                    _domtool2_form(e.func) or _domtool2_form(arg),
                )
            ft = ft.res
        return ft

    def infer_set(self, e: ast.ESet, scope: Scope) -> T.Type:
        vt = self.infer(e.value, scope, None)
        need = self.env_types.get(e.name)
        if need is None:
            return self.error(
                e.span,
                f"Unknown environment variable {e.name}.",
                hint=domtool2.hint(e.name) or _nearest(e.name, self.env_types),
            )
        if not self.sub(vt, need):
            self.mismatch(e.value, vt, need, f"Wrong type for environment variable {e.name}.")
        return T.Action(T.TRUE, (), ((e.name, need),))

    def infer_get(self, e: ast.EGet, scope: Scope, have: T.Pred | None) -> T.Type:
        vt = self.env_types.get(e.env)
        if vt is None:
            self.error(
                e.span,
                f"Unknown environment variable {e.env}.",
                hint=domtool2.hint(e.env) or _nearest(e.env, self.env_types),
            )
            vt = T.ERROR
        body = self.infer(e.body, scope.child(**{e.var: vt}), have)
        act = self.as_action(body, e.body)
        if act is None:
            return T.ERROR
        return T.Action(act.pred, T.merge_env(((e.env, vt),), act.reads), act.writes)

    def infer_seq(self, items: Iterable[ast.Expr], scope: Scope, have: T.Pred | None) -> T.Type:
        preds: list[T.Pred] = []
        reads: dict[str, T.Type] = {}
        writes: dict[str, T.Type] = {}
        ok = True
        for item in items:
            act = self.as_action(self.infer(item, scope, have), item)
            if act is None:
                ok = False
                continue
            preds.append(act.pred)
            for k, v in act.reads:
                if k not in writes:
                    reads.setdefault(k, v)
            for k, v in act.writes:
                writes.setdefault(k, v)
        if not ok:
            return T.ERROR
        return T.Action(
            T.conj(*preds) if preds else T.TRUE,
            tuple(sorted(reads.items())),
            tuple(sorted(writes.items())),
        )

    def infer_local(self, e: ast.ELocal, scope: Scope, have: T.Pred | None) -> T.Type:
        inner = scope.child()
        for d in e.decls:
            if isinstance(d, ast.DVal):
                inner.vars[d.name] = self.check_val(d, inner)
            else:
                self.error(d.span, "Only val declarations and settings may appear in let.")
        if e.settings is None:
            return self.infer(e.body, inner, have)
        return self.infer_seq((e.settings, e.body), inner, have)

    def infer_with(self, e: ast.EWith, scope: Scope, have: T.Pred | None) -> T.Type:
        bt = T.prune(self.infer(e.block, scope, None))
        body_have: T.Pred | None
        outer: T.Type
        if isinstance(bt, T.Nested):
            body_have, outer = bt.body, bt.outer
        elif isinstance(bt, T.ErrorT):
            body_have, outer = None, T.ERROR
        else:
            self.error(
                e.block.span,
                "This expression is not a block directive; it cannot take a `with` body.",
                (f"Expression: {self.text(e.block.span)}", f"Actual type: {T.show(bt)}"),
            )
            body_have, outer = None, T.ERROR
        settings: T.Action | None = None
        if e.settings is not None:
            settings = self.as_action(self.infer(e.settings, scope, have), e.settings)
        if e.body is not None:
            self.as_action(self.infer(e.body, scope, body_have), e.body)
        result = self.need_here(outer, have, e.block.span)
        result = T.prune(result)
        if settings is not None and isinstance(result, T.Action):
            return T.Action(
                T.conj(settings.pred, result.pred),
                T.merge_env(settings.reads, result.reads),
                result.writes,
            )
        return result

    # -- declarations ---------------------------------------------------------------

    def check_val(self, d: ast.DVal, scope: Scope) -> T.Type:
        # The annotation first: its {C : T} declare environment variables the value reads.
        declared = self.type(d.type, declare=True) if d.type is not None else None
        t = self.infer(d.value, scope, None)
        if declared is None:
            return t
        if not self.sub(t, declared):
            self.mismatch(
                d.value, t, declared, f"Value of {d.name} does not have its declared type."
            )
        return declared

    def declare(self, decls: Iterable[ast.Decl], scope: Scope, library: bool = False) -> None:
        for d in decls:
            if isinstance(d, ast.DContext):
                if d.name in self.contexts and library:
                    self.error(d.span, f"Context {d.name} is declared twice.")
                self.contexts.add(d.name)
            elif isinstance(d, ast.DExternType):
                self.type_names.add(d.name)
            elif isinstance(d, ast.DExternVal):
                t = self.type(d.type, declare=True)
                scope.vars[d.name] = t
                self.extern_vals[d.name] = t
            elif isinstance(d, ast.DVal):
                scope.vars[d.name] = self.check_val(d, scope)
            else:  # pragma: no cover - the AST has no other declarations
                raise TypeError(d)

    def check_body(self, body: ast.Expr, scope: Scope) -> None:
        self.as_action(self.infer(body, scope, T.Root()), body)


def _domtool2_form(func: ast.Expr) -> str | None:
    """For a directive whose Domtool 2 form takes other arguments (``func`` itself, or
    applied in ``func``, as in ``dns (dnsNS HOST)``): how to write it here."""
    if isinstance(func, ast.EApp):
        func = func.func
    if isinstance(func, ast.EVar):
        row = domtool2.row(func.name)
        if row is not None and row.status == "different":
            return f"{func.name} takes other arguments than in Domtool 2: {row.note}"
    return None


def _opens(t: T.Type, ctx: str) -> bool:
    """Whether ``t`` is (a function giving) a block directive whose body has ``ctx`` on top."""
    t = T.prune(t)
    while isinstance(t, T.Arrow):
        t = T.prune(t.res)
    if not isinstance(t, T.Nested):
        return False
    body = T.resolve(t.body)
    return T.Ctx(ctx) in (body.items if isinstance(body, T.And) else (body,))


def _no_unknowns(t: T.Type) -> bool:
    """No unbound type or predicate variable in ``t`` (a library type must be fixed, or
    the first member file to use it would fix it for everyone)."""
    t = T.prune(t)
    if isinstance(t, T.Unif):
        return False
    if isinstance(t, T.Action):
        return not T.free_pvars(T.resolve(t.pred), [])
    if isinstance(t, T.List):
        return _no_unknowns(t.elem)
    if isinstance(t, T.Arrow):
        return _no_unknowns(t.arg) and _no_unknowns(t.res)
    if isinstance(t, T.Nested):
        return not T.free_pvars(T.resolve(t.body), []) and _no_unknowns(t.outer)
    return True


def check_library(
    files: Iterable[ast.File],
    sources: Mapping[str, str] | None = None,
    site: Site = DEFAULT_SITE,
) -> tuple[Library, list[Diagnostic]]:
    """Check library files (declarations only, no member permissions) in order."""
    files = tuple(files)
    ck = Checker(None, site, EMPTY_LIBRARY, sources)
    scope = Scope({})
    try:
        for f in files:
            ck.declare(f.decls, scope, library=True)
            if f.body is not None:
                ck.error(None, f"Library file {f.name} has a body; only declarations are allowed.")
    except _TooManyErrors:
        pass
    for name, t in scope.vars.items():
        if not _no_unknowns(t):
            ck.error(None, f"Library value {name} has a type that is not fully known: {T.show(t)}.")
    lib = Library(
        files=files,
        globals=dict(scope.vars),
        contexts=frozenset(ck.contexts),
        type_names=frozenset(ck.type_names - set(BUILTIN_TYPES)),
        env_types=dict(ck.env_types),
        extern_vals=dict(ck.extern_vals),
    )
    return lib, ck.diags


def check_file(
    file: ast.File,
    perms: Any,
    library: Library = EMPTY_LIBRARY,
    site: Site = DEFAULT_SITE,
    source: str | None = None,
) -> list[Diagnostic]:
    """Check one file for one member; return all its errors (empty when it checks)."""
    ck = Checker(perms, site, library, {file.name: source} if source is not None else None)
    ck.file = file.name
    scope = Scope({}, Scope(ck.globals))
    try:
        ck.declare(file.decls, scope)
        if file.body is not None:
            ck.check_body(file.body, scope)
    except _TooManyErrors:
        pass
    return sorted(ck.diags, key=Diagnostic.sort_key)
