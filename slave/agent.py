"""The slave agent's controller: the closed set of operations the dispatcher may ask.

The protocol (``domtool.slave.service``) decodes a frame, checks its arguments
(``domtool.slave.ops.parse``) and hands the typed arguments to :meth:`Agent.handle`, which
dispatches through an explicit table (:data:`Agent.OPS`: ``domtool.wire.SLAVE_OPS`` but
``tls_update``, which the listener answers itself with ``slave/tlsupdate.py``).
The ``db_*`` ops are not configuration and never touch the engine: they go to
``domtool.slave.dbagent.DatabaseOps`` (given as ``databases``; none: refused).

What the agent holds:

- the host's full desired state (every member's part on this host), known per generation:
  ``state_dir/agent/states/<N>.json``, an index of one record per owner
  (``domtool.slave.staterecords``: a one-owner change writes one small record), written
  atomically when generation N is staged, so whichever generation the engine comes back
  with after a crash, its state is on disk;
- at most ONE pending transaction: a ``prepare`` stages generation N+1 through the engine
  and holds the engine's ``Prepared`` under the transaction id until ``commit`` or
  ``abort``, or until :attr:`Agent.prepare_timeout` seconds pass (then it is aborted).

``prepare`` replaces the parts of the owners it names (their COMPLETE new parts; an empty
state removes an owner) after re-checking each part locally (``ops.recheck``: owners,
names, users, paths with symlinks resolved here) and refusing any name another owner
holds. A refused owner keeps their current part; the others go ahead. Public methods
return Deferreds; engine calls (which run daemon checkers and may take seconds) go
through ``run_blocking`` (the service passes ``deferToThread``; tests run them inline),
one at a time under a lock.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from domtool import protocol
from domtool.model import DesiredState
from domtool.protocol import Verdict
from domtool.slave import ops
from domtool.slave.backend import Probe
from domtool.slave.engine import EngineError, Prepared
from domtool.slave.holders import HolderIndex
from domtool.slave.seams import RealFileSystem
from domtool.slave.staterecords import StateRecords
from domtool.states import by_owner, compose, kinds, recompose, under_domain
from domtool.util.locks import run_locked

__all__ = ["Agent", "AgentError", "Failed", "Refused", "StateRecords"]

DEFAULT_PREPARE_TIMEOUT = 60.0

log = Logger()


class AgentError(Exception):
    """Base of the errors the agent answers with; ``kind`` is the wire error kind."""

    kind = "failed"

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Refused(AgentError):
    """The request is well formed but this host will not do it now (see the message)."""

    kind = "refused"


class Failed(AgentError):
    """The host tried and could not (the engine or the disk failed; see the message)."""

    kind = "failed"


# ---------------------------------------------------------------------------
# States per owner


def _nonempty(parts: Mapping[str, DesiredState]) -> dict[str, DesiredState]:
    return {o: p for o, p in parts.items() if p != DesiredState()}


def _reuse(new: DesiredState, old: DesiredState | None) -> DesiredState:
    """``new`` with each unit equal to one of ``old`` replaced by ``old``'s object (``old``
    itself when the parts are equal): a complete prepare (regen) decodes every owner's
    part afresh, and without this the host would hold a second copy of every unchanged
    unit (the backends' memos keep the live ones) and the backends would see 30,000 new
    objects. Equal units are the same value (as the state records and the holder index
    already take them to be)."""
    if old is None or new is old:
        return new
    if new == old:
        return old
    fields = {}
    for f in kinds(new):
        have = getattr(old, f)
        if not have:
            continue
        mine = {u: u for u in have}
        fields[f] = tuple([mine.get(u, u) for u in getattr(new, f)])
    return attrs.evolve(new, **fields) if fields else new


def _restore(parts: dict[str, DesiredState], current: Mapping[str, DesiredState], owner: str):
    """Put ``owner``'s live part back in ``parts`` (or none, if they had none)."""
    if owner in current:
        parts[owner] = current[owner]
    else:
        parts.pop(owner, None)


# ---------------------------------------------------------------------------
# The state of each generation, on disk


# The records themselves live in ``domtool.slave.staterecords`` (one record per owner).


# ---------------------------------------------------------------------------
# The engine, as the agent sees it


def _owner_verdicts(prepared: Prepared) -> dict[str, tuple[bool, str]]:
    """The engine's per-owner verdict of a staged generation: owner -> (ok, message)."""
    return {o.owner: (o.status == "applied", o.message) for o in prepared.owners}


def _probe_json(p: Probe) -> dict[str, Any]:
    return protocol.probe_json(p.kind, p.target, p.owner)


# The engine's outcome statuses, as the wire spells them.
STATUSES = {"applied": "applied", "unchanged": "unchanged", "rolled back": "rolled_back"}


@attrs.define
class _Pending:
    txid: str
    prepared: Prepared
    generation: int
    state: DesiredState
    answer: protocol.PrepareAnswer
    complete: bool = False
    timer: IDelayedCall | None = None
    parts: dict[str, DesiredState] | None = None  # ``state`` by owner


def _inline(fn: Callable, *args: Any) -> Any:
    return fn(*args)


class Agent:
    """The controller behind a slave's listener.

    ``engine`` is the apply engine (``domtool.slave.engine.Engine``); the agent's records
    of each generation's state go through the engine's file system seam (``engine.fs``)
    under ``state_dir/agent/states``. ``host`` is this host's name (reported by
    ``status``); ``node`` its node name in the model (units must list it; None skips that
    check). ``clock`` schedules the abort of a transaction left pending longer than
    ``prepare_timeout`` seconds.
    """

    def __init__(
        self,
        engine: Any,
        *,
        host: str,
        state_dir: str | os.PathLike,
        clock: IReactorTime,
        node: str | None = None,
        prepare_timeout: float = DEFAULT_PREPARE_TIMEOUT,
        run_blocking: Callable[..., Any] = _inline,
        actions: Mapping[str, Callable[..., dict[str, Any]]] | None = None,
        databases: Any = None,
        grant_book: Any = None,
        snapshotter: Any = None,
    ) -> None:
        from domtool.slave.dbagent import DatabaseOps

        self.engine = engine
        # slave.verified.GrantBook: owners' grants signed by an admin, checked here.
        self.grant_book = grant_book
        # slave.snapshot.Snapshotter: member TLS files copied, validated, rendered instead.
        self.snapshotter = snapshotter
        self.host = host
        self.node = node
        self.clock = clock
        self.prepare_timeout = prepare_timeout
        fs = getattr(engine, "fs", None) or RealFileSystem()
        directory = os.fspath(state_dir).rstrip("/") + "/agent/states"
        self.records = StateRecords(fs, directory)
        self._run_blocking = run_blocking
        self._lock = defer.DeferredLock()
        self._pending: _Pending | None = None
        self._last_commit: tuple[str, dict[str, Any]] | None = None
        self._state = DesiredState()
        self._state_known = True
        self._holders = HolderIndex()  # the live names, per owner (clash checks)
        self._split: tuple[DesiredState, dict[str, DesiredState]] | None = None
        # ``self._state`` when it is known to be ``compose`` of its parts (a staged state
        # that went live), so that a prepare recomposes only the owners it changes.
        self._composed: DesiredState | None = None
        # Typed operations that are actions, not configuration (a backend's ``actions()``:
        # op name -> blocking callable); see ``domtool.slave.mailman_ops``.
        self.actions = dict(actions or {})
        self.OPS: dict[str, Callable[[Any], Any]] = {
            "prepare": self._prepare,
            "commit": self._commit,
            "abort": self._abort,
            "status": self._status,
            "describe": self._describe,
            "vmail": self._vmail,
            "list_remove": self._list_remove,
            "policy_held": self._policy_held,
            "usage": self._usage,
        }
        self.mailboxes: Any = None  # domtool.slave.vmail.Mailboxes, when this host has mail
        # db_* ops (domtool.slave.dbagent): a host without database servers refuses them.
        if databases is None:
            databases = DatabaseOps({}, host=host)
        self.databases = databases
        self.OPS.update(databases.handlers())

    # -- plumbing ------------------------------------------------------------

    async def _blocking(self, fn: Callable, *args: Any) -> Any:
        """Run a blocking call (engine, file system) through ``run_blocking``."""
        result = self._run_blocking(fn, *args)
        if isinstance(result, defer.Deferred) or inspect.isawaitable(result):
            result = await result
        return result

    def _current_parts(self) -> dict[str, DesiredState]:
        """``by_owner(self.state)``, split once per state (10,000 domains: ~10 ms)."""
        cached = self._split
        if cached is None or cached[0] is not self._state:
            cached = self._split = (self._state, by_owner(self._state))
        return dict(cached[1])

    def _compose(
        self,
        parts: Mapping[str, DesiredState],
        owners: set[str],
        current: Mapping[str, DesiredState],
    ) -> DesiredState:
        """``compose(parts)``, for ``parts`` that differ from the live ones (``current``,
        whose composition ``self._state`` is) only in ``owners``: from the live state,
        when it is a composed one (10,000 domains: a few bisects per changed owner, not a
        sort of every owner's units)."""
        if self._composed is self._state:
            was = {o: current[o] for o in owners if o in current}
            return recompose(self._state, owners, parts, was=was)
        return compose(parts)

    def _generation(self) -> int:
        return int(self.engine.current_generation())

    @property
    def state(self) -> DesiredState:
        """The host's full desired state as last committed."""
        return self._state

    @property
    def pending_txid(self) -> str | None:
        """The transaction prepared and waiting for commit or abort, if any."""
        return None if self._pending is None else self._pending.txid

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> defer.Deferred:
        """Let the engine recover from a crash, then load the live generation's state."""
        return defer.ensureDeferred(run_locked(self._lock, self._start))

    async def _start(self) -> None:
        await self._blocking(self.engine.recover)
        self._load()

    def _load(self) -> None:
        generation = self._generation()
        try:
            state = self.records.read(generation)
        except (OSError, ValueError, KeyError) as e:
            log.error("cannot read the state of generation {g}: {e}", g=generation, e=e)
            state = None
        self._state_known = state is not None or generation == 0
        if not self._state_known:
            log.error(
                "no recorded state for generation {g}: starting from an empty state", g=generation
            )
        self._state = state if state is not None else DesiredState()
        self._composed = None  # (a record of the older format may be in another order)

    def handle(self, op: str, args: Any) -> defer.Deferred:
        """Run one operation; a Deferred firing with its JSON result, or failing with an
        :class:`AgentError`. ``args`` are ``ops.parse(op, ...)``'s typed arguments."""
        try:
            fn = self.OPS[op]
        except KeyError:
            return defer.fail(Refused(f"unknown operation {op[:40]!r}"))
        return defer.ensureDeferred(fn(args))

    # -- operations ----------------------------------------------------------

    async def _prepare(self, args: ops.PrepareArgs) -> dict[str, Any]:
        return await run_locked(self._lock, self._do_prepare, args)

    async def _do_prepare(self, args: ops.PrepareArgs) -> dict[str, Any]:
        if self._pending is not None:
            if self._pending.txid == args.txid:
                return self._pending.answer.to_json()
            raise Refused(
                f"transaction {self._pending.txid} is pending on {self.host}; "
                f"commit or abort it before preparing {args.txid}"
            )
        if not self._state_known and not args.complete:
            raise Refused(
                f"{self.host} has no record of generation {self._generation()}'s state, so it "
                "cannot change some owners and keep the others; send a complete prepare "
                "(every owner of this host, complete: true)",
            )
        base = self._generation()
        current = self._current_parts()
        details: dict[str, list[str]] = {}
        parts = {o: p for o, p in current.items() if o in args.changes or not args.complete}
        removed = sorted(set(current) - set(parts))
        touched = set(args.changes) | set(removed)  # parts differs from current only there
        changed: set[str] = set()
        # The re-check reads the file system (symlinks): off the reactor thread in service.
        rechecked, snapped = await self._blocking(self._recheck_all, args)
        for owner, change in args.changes.items():
            if rechecked[owner]:
                details[owner] = rechecked[owner]
                continue
            changed.add(owner)
            parts[owner] = _reuse(snapped.get(owner, change.state), current.get(owner))
        for _ in range(len(changed) + 1):
            clashes = self._holders.conflicts(parts, changed, current)
            if not clashes:
                break
            for owner, problems in clashes.items():
                details[owner] = problems
                changed.discard(owner)
                _restore(parts, current, owner)
        composed = None  # compose(parts) as the engine saw it (10,000 domains: a sort)
        try:
            if changed or removed:
                composed = self._compose(parts, touched, current)
                prepared = await self._blocking(self.engine.prepare, composed)
            else:  # every owner was refused here: nothing to render, stage or check
                prepared = Prepared(base, None, (), message=f"unchanged at generation {base}")
        except EngineError as e:
            raise Failed(f"{self.host} could not stage the change: {e}") from None
        engine_verdicts = _owner_verdicts(prepared)
        verdicts = {o: (False, "; ".join(p)) for o, p in details.items()}
        for owner in sorted(changed):
            ok, message = engine_verdicts.get(owner, (True, "unchanged"))
            verdicts[owner] = (ok, message)
            if not ok:  # the engine kept this owner's live units
                _restore(parts, current, owner)
                composed = None
        for owner in removed:
            ok, message = engine_verdicts.get(owner, (True, "removed: not in a complete prepare"))
            verdicts[owner] = (ok, message)
            if not ok:
                parts[owner] = current[owner]
                composed = None
        generation = base if prepared.generation is None else prepared.generation
        staged_state = self._compose(parts, touched, current) if composed is None else composed
        if generation != base:
            try:
                await self._blocking(self.records.write, generation, _nonempty(parts))
            except OSError as e:
                await self._discard(prepared)
                raise Failed(
                    f"{self.host} could not record the staged state: {e.strerror or e}"
                ) from None
        answer = protocol.PrepareAnswer(
            args.txid,
            base,
            generation,
            {o: Verdict(ok, message) for o, (ok, message) in sorted(verdicts.items())},
            prepared.message,
        )
        log.info(
            "prepared {txid} on generation {base}: staged {gen}; refused: {refused}",
            txid=args.txid,
            base=base,
            gen=generation,
            refused=", ".join(o for o, (ok, _m) in sorted(verdicts.items()) if not ok) or "none",
        )
        pending = _Pending(
            args.txid,
            prepared,
            generation,
            staged_state,
            answer,
            complete=args.complete and all(ok for ok, _m in verdicts.values()),
            parts=_nonempty(parts),
        )
        pending.timer = self.clock.callLater(self.prepare_timeout, self._expire, args.txid)
        self._pending = pending
        return answer.to_json()

    def _recheck_all(self, args: ops.PrepareArgs):
        """Each owner's refusals, and the parts whose member files were snapshotted.

        With a grant book, every owner's newly accepted serial is kept in memory and the
        serial file written once when the re-check ends (``GrantBook.batch``), before
        this prepare stages, answers or commits anything: a round of 1,000 members' first
        serials is one write and fsync, not 1,000."""
        from domtool.slave.verified import recheck_signed

        problems: dict[str, list[str]] = {}
        snapped: dict[str, DesiredState] = {}
        book = self.grant_book
        with contextlib.nullcontext() if book is None else book.batch():
            for o, c in args.changes.items():
                if book is not None:
                    problems[o] = recheck_signed(book, o, c, self.node)
                else:
                    problems[o] = ops.recheck(o, c, self.node)
                if not problems[o] and self.snapshotter is not None and c.state.vhosts:
                    paths = c.grants.paths
                    if book is not None and c.signed is not None:
                        paths = tuple(book.verified(o, c.signed).perms.paths)
                    snapped[o], problems[o] = self.snapshotter.snapshot(o, c.state, paths)
        return problems, snapped

    async def _discard(self, prepared: Prepared) -> None:
        try:
            await self._blocking(self.engine.abort, prepared)
        except Exception:
            log.failure("discarding a staged generation failed")

    def _expire(self, txid: str) -> None:
        pending = self._pending
        if pending is None or pending.txid != txid:
            return
        pending.timer = None
        log.warn(
            "transaction {txid} was not committed within {t} s: aborted",
            txid=txid,
            t=self.prepare_timeout,
        )
        d = defer.ensureDeferred(run_locked(self._lock, self._do_abort, txid))
        d.addErrback(lambda f: log.failure("aborting {txid} failed", f, txid=txid))

    async def _commit(self, args: ops.TxArgs) -> dict[str, Any]:
        return await run_locked(self._lock, self._do_commit, args.txid)

    async def _do_commit(self, txid: str) -> dict[str, Any]:
        pending = self._pending
        if pending is None or pending.txid != txid:
            if self._last_commit is not None and self._last_commit[0] == txid:
                return self._last_commit[1]
            raise Refused(f"transaction {txid} is not pending on {self.host} (expired or aborted)")
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        self._pending = None
        try:
            outcome = await self._blocking(self.engine.commit, pending.prepared)
            outcome, pending = await self._retry_without_culprits(pending, outcome)
        except EngineError as e:
            self._load()
            raise Failed(f"{self.host} could not commit {txid}: {e}") from None
        except BaseException:
            self._load()  # whatever went live, the state follows the engine's generation
            raise
        status = STATUSES.get(outcome.status, outcome.status)
        if status == "applied":
            self._state = self._composed = pending.state
            if pending.parts is not None:
                self._split = (pending.state, pending.parts)
                self._holders.live(pending.parts)  # (lets the previous parts go now)
            self._state_known = True
        elif status == "unchanged" and pending.complete and not self._state_known:
            # A complete, fully accepted prepare that changed nothing: the live generation
            # is exactly this state, so this host knows its state again.
            try:
                await self._blocking(self.records.write, outcome.generation, pending.state)
                self._state, self._state_known = pending.state, True
                self._composed = pending.state
            except OSError as e:
                log.error(
                    "could not record the state of generation {g}: {e}", g=outcome.generation, e=e
                )
        else:
            self._load()
        log.info(
            "committed {txid}: {status} at generation {gen}",
            txid=txid,
            status=status,
            gen=outcome.generation,
        )
        try:
            await self._blocking(self.records.prune, {outcome.generation, outcome.previous})
        except OSError as e:  # old records are harmless; the next commit tries again
            log.warn("could not prune old state records: {e}", e=e)
        verified = [_probe_json(p) for p in pending.prepared.probes] if status == "applied" else []
        result = protocol.CommitAnswer(
            txid,
            outcome.generation,
            status,
            tuple(verified),
            outcome.message,
            # Every owner of the transaction: the prepare's verdict, then what the engine
            # says happened at commit (applied, or rolled back).
            {
                **pending.answer.owners,
                **{o.owner: Verdict(o.status == "applied", o.message) for o in outcome.owners},
            },
        ).to_json()
        self._last_commit = (txid, result)
        return result

    async def _retry_without_culprits(self, pending: _Pending, outcome: Any) -> tuple:
        """The engine's probe-failure retry (as ``Engine.apply``): when a commit rolled
        back only because some changed owners' probes failed, those owners are refused
        (they keep their live part) and the others' changes are prepared, recorded and
        committed once more, so one zone that does not answer holds back nobody else."""
        rolled = {o.owner for o in outcome.owners if o.status == "rolled back"}
        culprits = dict(getattr(outcome, "culprits", None) or {})
        if outcome.status != "rolled back" or not culprits or not set(culprits) < rolled:
            return outcome, pending
        refuse = {o: f"rolled back: {why}" for o, why in sorted(culprits.items())}
        parts, current = by_owner(pending.state), by_owner(self._state)
        for owner in culprits:
            _restore(parts, current, owner)
        prepared = await self._blocking(self.engine.prepare, pending.state, refuse)
        if prepared.generation is not None:
            try:
                await self._blocking(self.records.write, prepared.generation, _nonempty(parts))
            except OSError as e:
                await self._discard(prepared)
                log.error("could not record the state of the retry: {e}", e=e)
                return outcome, pending
        log.info(
            "{txid}: probes of {owners} failed; committing the others again",
            txid=pending.txid,
            owners=", ".join(sorted(culprits)),
        )
        again = await self._blocking(self.engine.commit, prepared)
        retried = attrs.evolve(
            pending,
            prepared=prepared,
            generation=prepared.generation or pending.generation,
            state=compose(parts),
            parts=_nonempty(parts),
        )
        return again, retried

    async def _abort(self, args: ops.TxArgs) -> dict[str, Any]:
        return await run_locked(self._lock, self._do_abort, args.txid)

    async def _do_abort(self, txid: str) -> dict[str, Any]:
        pending = self._pending
        if pending is None or pending.txid != txid:
            return protocol.AbortAnswer(txid, False, self._generation()).to_json()
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        self._pending = None
        await self._discard(pending.prepared)
        return protocol.AbortAnswer(txid, True, self._generation()).to_json()

    async def _status(self, args: ops.StatusArgs) -> dict[str, Any]:
        generation = self._generation()
        return protocol.StatusAnswer(
            self.host,
            generation,
            tuple(sorted(by_owner(self._state))),
            self.pending_txid,
            verified=bool(self.engine.verified(generation)),
            state_known=self._state_known,
        ).to_json()

    async def _vmail(self, args: Any) -> dict[str, Any]:
        """A virtual mailbox action (``domtool.slave.vmail``), checked against this host's
        own live state: only in a mail domain it handles for that owner."""
        from domtool.slave.vmail import VmailRefused

        if self.mailboxes is None:
            raise Refused("this host has no virtual mailboxes (no exim backend)")
        handled = {m.name.lower(): m.owner for m in self._state.mail if m.handle == "local"}
        try:
            return await run_locked(
                self._lock, self._blocking, self.mailboxes.handle, args, handled
            )
        except VmailRefused as e:
            raise Refused(str(e)) from None

    async def _list_remove(self, args: ops.ListRemoveArgs) -> dict[str, Any]:
        return await run_locked(self._lock, self._do_list_remove, args)

    async def _do_list_remove(self, args: ops.ListRemoveArgs) -> dict[str, Any]:
        action = self.actions.get("list_remove")
        if action is None:
            raise Refused(f"{self.host} runs no mailing lists")
        for d in self._state.lists:
            for ml in d.lists:
                if f"{ml.name}@{d.name}".lower() == args.list:
                    raise Refused(
                        f"{args.list} is still in {d.owner}'s configuration of {d.name}; "
                        "remove it there (and submit) first"
                    )
        try:
            result = await self._blocking(action, args.owner, args.list, args.doit)
        except Exception as e:  # the action's refusal or Mailman's error, as the answer
            kind = Refused if type(e).__name__.endswith("Refused") else Failed
            raise kind(f"{self.host}: {e}") from None
        log.info(
            "list_remove {list} for {owner}: {msg}",
            list=args.list,
            owner=args.owner,
            msg=result.get("message"),
        )
        return {"host": self.host, **result}

    async def _policy_held(self, args: ops.PolicyHeldArgs) -> dict[str, Any]:
        """The owner's policy unit in the live state, and each backend's word on whether
        it is what the kernel enforces (``policy_live`` actions: True or the reason)."""
        held = [p for p in self._state.policies if p.owner == args.owner]
        live: bool | str | None = None
        action = self.actions.get("policy_live")
        if held and action is not None:
            word = await self._blocking(action, held[0])
            live = True if word is True else str(word)
        return protocol.PolicyHeldAnswer(
            self.host, self._generation(), held[0] if held else None, live
        ).to_json()

    async def _usage(self, args: ops.UsageArgs) -> dict[str, Any]:
        """What members use on this host (``domtool.slave.usage``; the limits backend's
        action knows its cgroups, quotas and logs; without it: /proc and disk only)."""
        from domtool.slave import usage

        state = self._state
        owners = (
            [args.owner]
            if args.owner
            else sorted({p.owner for p in state.policies} | {v.owner for v in state.vhosts})
        )
        collect = self.actions.get("usage") or (lambda st, owner: usage.collect(st, owner))

        def run() -> dict[str, Any]:
            return {o: collect(state, o) for o in owners}

        return protocol.UsageAnswer(self.host, await self._blocking(run)).to_json()

    async def _describe(self, args: ops.DescribeArgs) -> dict[str, Any]:
        d = args.domain.lower()
        return protocol.DescribeAnswer(
            d, self.host, self._generation(), under_domain(self._state, d)
        ).to_json()
