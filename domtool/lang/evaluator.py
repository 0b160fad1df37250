"""The evaluator: runs a checked program and builds a :class:`domtool.model.DesiredState`.

Values are Python ``str``, ``int``, ``bool`` and tuples (lists), closures, action thunks
and primitive applications. Evaluating an expression of action type gives a value that
is *run* later against the :class:`~domtool.lang.primitives.Builder`; environment
variables live in the builder and are dynamically scoped: a block (``with``) and
``let``/``where`` copy them on entry and restore them at ``end``, while a bare ``C = e``
in a sequence lasts until the end of the enclosing block.

Hostile programs are bounded: every evaluation and run step, and every list element and
string a primitive receives, counts against one work budget per request
(:class:`~domtool.lang.primitives.Budget`, shared by the request's files), nested
applications against a depth limit, and produced units against the builder's size cap;
each gives a clear :class:`~domtool.lang.primitives.EvalError`.
Only type-checked programs should be evaluated.
"""

from __future__ import annotations

from typing import Any

import attrs

from domtool.lang import ast, externs
from domtool.lang import types as T
from domtool.lang.checker import Library
from domtool.lang.errors import Diagnostic
from domtool.lang.primitives import (
    MAX_UNITS,
    REGISTRY,
    WORK_BUDGET,
    Budget,
    Builder,
    EvalError,
    Primitive,
    default_env,
    work_of,
)
from domtool.model import DEFAULT_SITE, DesiredState, Site

STEP_BUDGET = WORK_BUDGET  # the old name: steps are one kind of work
MAX_DEPTH = 150


class Env:
    """Lexical environment of values: a chain of small dicts."""

    __slots__ = ("vars", "parent")

    def __init__(self, vars: dict[str, Any], parent: Env | None = None) -> None:
        self.vars = vars
        self.parent = parent

    def lookup(self, name: str) -> Any:
        e: Env | None = self
        while e is not None:
            if name in e.vars:
                return e.vars[name]
            e = e.parent
        raise EvalError(f"internal: unbound name {name}")

    def bind(self, name: str, value: Any) -> Env:
        return Env({name: value}, self)


@attrs.define(eq=False)
class Closure:
    param: str
    body: ast.Expr
    env: Env


@attrs.define(eq=False)
class BlockClosure:
    param: str
    body: ast.Expr
    env: Env


@attrs.define(eq=False)
class Thunk:
    """An action expression with its lexical environment, run later (``expr`` None: the
    empty body)."""

    expr: ast.Expr | None
    env: Env | None


@attrs.define(eq=False)
class PrimValue:
    """A primitive applied to fewer arguments than its arity."""

    prim: Primitive
    arity: int
    args: tuple[Any, ...]


@attrs.define(eq=False)
class PrimAction:
    """A fully applied action or block primitive, with where it was written."""

    prim: Primitive
    args: tuple[Any, ...]
    span: ast.Span | None


@attrs.define(eq=False)
class Unimplemented:
    """An ``extern val`` without a Python implementation: usable for checking only."""

    name: str
    decl: ast.Span | None = None  # where the file declares it


EMPTY = Thunk(None, None)


def arity_of(t: T.Type) -> tuple[int, str]:
    """How many arguments a primitive of type ``t`` takes, and what it gives when full."""
    n = 0
    t = T.prune(t)
    while isinstance(t, T.Arrow):
        n += 1
        t = T.prune(t.res)
    if isinstance(t, T.Action):
        return n, "action"
    if isinstance(t, T.Nested):
        return n, "block"
    return n, "pure"


class Interpreter:
    """Evaluates expressions and runs actions, counting steps."""

    def __init__(self, builder: Builder | None, budget: int | Budget = STEP_BUDGET) -> None:
        self.b = builder
        self.file: str | None = None  # the member's file: errors are placed in it
        self.user_span: ast.Span | None = None
        self.budget = budget if isinstance(budget, Budget) else Budget(budget)
        self.depth = 0
        self.env_types: dict[str, T.Type] = {}  # the library's variables (set_env)

    @property
    def steps(self) -> int:
        """The work done so far (of the whole request when the budget is shared)."""
        return self.budget.used

    def tick(self, span: ast.Span | None) -> None:
        self.budget.charge(1, span)

    # -- values ------------------------------------------------------------------

    def complete(self, prim: Primitive, kind: str, args: tuple[Any, ...], span: ast.Span | None):
        if kind == "pure":
            self.budget.charge(work_of(args), span)
            try:
                return prim.fn(*args)
            except (EvalError, MemoryError):
                raise
            except ValueError as e:  # a primitive refused an argument
                raise EvalError(str(e), span) from None
            except Exception as e:
                raise EvalError(
                    f"internal error in {prim.name}: {type(e).__name__}: {e}", span
                ) from None
        return PrimAction(prim, args, span)

    def apply(self, f: Any, arg: Any, span: ast.Span | None) -> Any:
        self.tick(span)
        if isinstance(f, Closure):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise EvalError(
                    f"evaluation nested more than {MAX_DEPTH} function calls deep", span
                )
            try:
                return self.value(f.body, f.env.bind(f.param, arg))
            finally:
                self.depth -= 1
        if isinstance(f, PrimValue):
            args = f.args + (arg,)
            if len(args) < f.arity:
                return PrimValue(f.prim, f.arity, args)
            return self.complete(f.prim, f.prim.kind, args, span)
        if isinstance(f, Unimplemented):
            raise unimplemented(f.name, span, f.decl)
        raise EvalError("internal: applying a non-function", span)

    def value(self, e: ast.Expr, env: Env) -> Any:
        self.tick(e.span)
        if isinstance(e, ast.EString | ast.EInt | ast.EBool):
            return e.value
        if isinstance(e, ast.EVar):
            v = env.lookup(e.name)
            if isinstance(v, PrimAction) and v.span is None:
                return PrimAction(v.prim, v.args, e.span)
            return v
        if isinstance(e, ast.EApp):
            f = self.value(e.func, env)
            for a in e.args:
                f = self.apply(f, self.value(a, env), e.span)
            return f
        if isinstance(e, ast.EList):
            return tuple(self.value(i, env) for i in e.items)
        if isinstance(e, ast.ELambda):
            return Closure(e.param, e.body, env)
        if isinstance(e, ast.EBlockLambda):
            return BlockClosure(e.param, e.body, env)
        if isinstance(e, ast.EIf):
            return self.value(e.then if self.value(e.cond, env) else e.orelse, env)
        if isinstance(e, ast.ELocal) and e.settings is None:
            return self.value(e.body, self.declare_local(e.decls, env))
        # ESet, EGet, ESeq, EWith, ELocal with settings: actions, run later.
        return Thunk(e, env)

    def declare_local(self, decls: tuple[ast.Decl, ...], env: Env) -> Env:
        for d in decls:
            if isinstance(d, ast.DVal):
                env = env.bind(d.name, self.value(d.value, env))
        return env

    # -- actions -------------------------------------------------------------------

    def run(self, v: Any, span: ast.Span | None) -> None:
        self.tick(span)
        if isinstance(v, Thunk):
            if v.expr is not None:
                self.run_expr(v.expr, v.env)
            return
        if isinstance(v, PrimAction):
            self.call(v, None)
            return
        if isinstance(v, Unimplemented):
            raise unimplemented(v.name, span, v.decl)
        raise EvalError("internal: running something that is not an action", span)

    def call(self, v: PrimAction, body: Thunk | None) -> None:
        b = self.b
        if b is None:
            raise EvalError("internal: no builder", v.span)
        saved_span = b.span
        b.span = v.span
        b.user_span = at = self.user_span
        self.budget.charge(work_of(v.args), v.span)
        try:
            if v.prim.kind == "block":
                body_thunk = body if body is not None else EMPTY

                def run_body() -> None:
                    self.user_span = at  # a deferred body (byDefault) runs later
                    self.run(body_thunk, v.span)
                    b.span = v.span

                v.prim.fn(b, *v.args, run_body)
            else:
                v.prim.fn(b, *v.args)
        except (EvalError, RecursionError, MemoryError):
            raise
        except ValueError as e:  # a primitive refused a value (validate.Invalid, ...)
            raise EvalError(str(e), v.span) from None
        except Exception as e:  # a bug in a primitive: still an error, never a crash
            raise EvalError(
                f"internal error in {v.prim.name}: {type(e).__name__}: {e}", v.span
            ) from None
        finally:
            b.span = saved_span

    def run_expr(self, e: ast.Expr, env: Env) -> None:
        b = self.b
        assert b is not None
        if e.span.file == self.file:
            self.user_span = e.span
        if isinstance(e, ast.ESeq):
            for item in e.items:
                self.run_expr(item, env)
                self.tick(item.span)
            return
        if isinstance(e, ast.ESet):
            b.env[e.name] = self.set_env(e, self.value(e.value, env))
            return
        if isinstance(e, ast.EGet):
            if e.env not in b.env:
                raise EvalError(
                    f"Environment variable {e.env} has no value here.",
                    e.span,
                    f"set it first, e.g. `{e.env} = ...`",
                )
            self.run_expr(e.body, env.bind(e.var, b.env[e.env]))
            return
        if isinstance(e, ast.EWith):
            blk = self.value(e.block, env)
            saved = b.env.copy()
            try:
                if e.settings is not None:
                    self.run_expr(e.settings, env)
                body = Thunk(e.body, env) if e.body is not None else EMPTY
                self.invoke(blk, body, e.block.span)
            finally:
                b.env = saved
            return
        if isinstance(e, ast.ELocal):
            saved = b.env.copy()
            try:
                inner = self.declare_local(e.decls, env)
                if e.settings is not None:
                    self.run_expr(e.settings, inner)
                self.run_expr(e.body, inner)
            finally:
                b.env = saved
            return
        self.run(self.value(e, env), e.span)

    def set_env(self, e: ast.ESet, value: Any) -> Any:
        """A member file's value for a library variable must fit the library's type (a
        self-contained program may declare the variable with a type of its own)."""
        need = self.env_types.get(e.name)
        if need is None or e.span.file != self.file or self.b is None:
            return value
        if isinstance(value, Unimplemented):
            raise unimplemented(value.name, e.value.span, value.decl)
        if not value_has_type(value, need, self.b.perms, self.b.site):
            raise EvalError(
                f"This value of {e.name} does not fit the standard library's type "
                f"{T.show(need)}, which its directives read.",
                e.value.span,
                "this file declares the variable with a type of its own",
            )
        return value

    def invoke(self, blk: Any, body: Thunk, span: ast.Span) -> None:
        if isinstance(blk, PrimAction) and blk.prim.kind == "block":
            self.call(PrimAction(blk.prim, blk.args, blk.span or span), body)
            return
        if isinstance(blk, BlockClosure):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise EvalError(f"evaluation nested more than {MAX_DEPTH} blocks deep", span)
            try:
                self.run(self.value(blk.body, blk.env.bind(blk.param, body)), span)
            finally:
                self.depth -= 1
            return
        if isinstance(blk, Unimplemented):
            raise unimplemented(blk.name, span, blk.decl)
        raise EvalError("internal: not a block directive", span)


class UnimplementedError(EvalError):
    """Evaluation reached an ``extern val`` of the file's own, which has no body."""

    def __init__(self, name: str, span: ast.Span | None, decl: ast.Span | None = None) -> None:
        super().__init__(
            f"{name} is declared with `extern val` but has no implementation, so this "
            "program can be type-checked but not evaluated.",
            span,
            details=(f"Declared at: {decl.file}:{decl}",) if decl is not None else (),
        )
        self.name = name


def unimplemented(name: str, span: ast.Span | None, decl: ast.Span | None = None) -> EvalError:
    return UnimplementedError(name, span, decl)


def prim_value(name: str, t: T.Type) -> Any:
    """The runtime value of a library ``extern val`` of type ``t``."""
    prim = REGISTRY.get(name)
    if prim is None:
        return Unimplemented(name)
    n, kind = arity_of(t)
    if kind != prim.kind:
        raise ValueError(f"primitive {name} is a {prim.kind} but its type says {kind}")
    if n == 0:
        return prim.fn() if kind == "pure" else PrimAction(prim, (), None)
    return PrimValue(prim, n, ())


def library_env(library: Library) -> Env:
    """Evaluate the library's declarations (pure: closures and primitives) once."""
    env = Env({})
    interp = Interpreter(None)
    for f in library.files:
        for d in f.decls:
            if isinstance(d, ast.DExternVal):
                env.vars[d.name] = prim_value(d.name, library.extern_vals[d.name])
            elif isinstance(d, ast.DVal):
                env.vars[d.name] = interp.value(d.value, env)
    return env


def value_has_type(value: Any, t: T.Type, perms: Any, site: Site) -> bool:
    """Whether a runtime value (an environment default) inhabits a checker type."""
    t = T.prune(t)
    if isinstance(t, T.List):
        return isinstance(value, tuple | list) and all(
            value_has_type(v, t.elem, perms, site) for v in value
        )
    if isinstance(t, T.Base):
        if t.name == "bool":
            return isinstance(value, bool)
        if t.name == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if t.name == "string":
            return isinstance(value, str)
        return externs.accepts(t.name, value, perms, site)
    return False


@attrs.frozen
class Evaluation:
    """The result of evaluating one file: a state, or the error that stopped it."""

    state: DesiredState | None
    diagnostics: tuple[Diagnostic, ...]
    steps: int
    unimplemented: str | None = None  # the file's own extern val that stopped it, if any
    #: where each domain and vhost was configured: ("domain"|"vhost", name) -> span
    spans: dict[tuple[str, str], ast.Span | None] = attrs.field(factory=dict)


def evaluate(
    file: ast.File,
    perms: Any,
    library: Library,
    lib_env: Env | None = None,
    site: Site = DEFAULT_SITE,
    budget: int | Budget = STEP_BUDGET,
    max_units: int = MAX_UNITS,
) -> Evaluation:
    """Evaluate a checked file for a member; same input gives an equal state. A shared
    :class:`Budget` makes several files draw on one request's work budget."""
    budget = budget if isinstance(budget, Budget) else Budget(budget)
    if lib_env is None:
        lib_env = library_env(library)
    env_defaults = {
        k: v
        for k, v in default_env(perms, site).items()
        if k in library.env_types and value_has_type(v, library.env_types[k], perms, site)
    }
    b = Builder(perms, site, env_defaults, max_units, budget)
    b.file = file.name
    interp = Interpreter(b, budget)
    interp.file = file.name
    interp.env_types = dict(library.env_types)
    env = Env({}, lib_env)
    try:
        for d in file.decls:
            if isinstance(d, ast.DExternVal):
                env = env.bind(d.name, Unimplemented(d.name, d.span))  # never a library primitive
            elif isinstance(d, ast.DVal):
                env = env.bind(d.name, interp.value(d.value, env))
        if file.body is not None:
            interp.run_expr(file.body, env)
    except EvalError as e:
        span = e.span
        if span is None or span.file != file.name:  # inside the library: blame the caller
            span = interp.user_span
        diag = Diagnostic(file.name, span, e.message, e.details, e.hint)
        missing = e.name if isinstance(e, UnimplementedError) else None
        return Evaluation(None, (diag,), interp.steps, missing)
    except RecursionError:
        diag = Diagnostic(file.name, None, "evaluation nested too deeply")
        return Evaluation(None, (diag,), interp.steps)
    state = DesiredState(
        zones=tuple(b.zones.values()),
        vhosts=tuple(b.vhosts.values()),
        mail=tuple(b.mail.values()),
        lists=tuple(b.lists.values()),
    ).normalised()
    return Evaluation(state, (), interp.steps, spans=dict(b.first_spans))
