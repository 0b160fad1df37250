"""Group commit of concurrent submits: the queue of member changes and the round that
applies all of them with one two-phase apply per host.

A submit (or undo) that arrives while a round is running waits in the queue; when the
round ends the next one takes EVERY queued change (so no member waits more than the round
in flight and its own). A round, under the controller's lock (so it never overlaps an
admin op that also applies):

1. evaluates each change in arrival order; a member's later change in the same round is
   evaluated over its earlier one's files, so two submits of the same domain apply in
   arrival order (the later wins) and both are versions in the history;
2. sends each host ONE prepare holding every member's complete new part, and ONE commit
   (``Coordinator.apply_many``): one checker run, one reload and one probe round per host.
   A member whose part a host refuses (its checker, a clash) is left out and only that
   member is refused; the others go live in the same round;
3. gives each change its own answer, stored version and audit line, as an unbatched
   submit would have.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from domtool.dispatcher.apply import ApplyResult
from domtool.dispatcher.plan import changed_hosts, plan, split
from domtool.model import DesiredState
from domtool.perms import Permissions

log = Logger()


@attrs.define(eq=False)
class Change:
    """One member's submit (or undo) waiting for its round."""

    member: str
    perms: Permissions
    submitted: dict[str, str]
    action: str
    progress: Callable
    done: defer.Deferred = attrs.field(factory=defer.Deferred)
    evaluated: Any = None  # the controller's Evaluated
    # (stored files, perms, Evaluated) computed before the change was queued, or None
    pre: tuple | None = None
    diff: dict[str, Any] = attrs.field(factory=dict)


@attrs.define(eq=False)
class _Member:
    """One member's changes of a round, folded in arrival order."""

    perms: Permissions
    files: dict[str, str]
    current: dict[str, DesiredState]
    new: dict[str, DesiredState] | None = None
    changes: list[Change] = attrs.field(factory=list)


class Rounds:
    """The group-commit queue in front of ``controller``'s coordinator. ``lock`` is the
    controller's lock (the other ops that apply hold it too); ``part(member, perms)`` is
    what a prepare sends with a member's state (grants, signed grants). ``sizes`` lists how many
    changes each round took (for tests and benches)."""

    def __init__(
        self,
        controller: Any,
        lock: defer.DeferredLock,
        part: Callable[[str, Permissions], dict[str, Any]],
    ) -> None:
        self.controller = controller
        self.lock = lock
        self.part = part
        self._queue: list[Change] = []
        self._running = False
        self.sizes: list[int] = []

    def submit(
        self,
        member: str,
        perms: Permissions,
        submitted: Mapping[str, str],
        progress: Callable,
        action: str = "submit",
        pre: tuple | None = None,
    ) -> defer.Deferred:
        """Deferred[the member's answer] once the round that takes this change ends.
        ``pre``: (stored files, perms, Evaluated) evaluated before queueing; the round
        uses it if the member's files and grants are still those."""
        change = Change(member, perms, dict(submitted), action, progress, pre=pre)
        self._queue.append(change)
        if not self._running:
            self._running = True
            d = defer.ensureDeferred(self._loop())
            d.addErrback(lambda f: log.failure("a submit round failed", f))
        return change.done

    @property
    def waiting(self) -> int:
        """How many changes wait for the next round."""
        return len(self._queue)

    async def _loop(self) -> None:
        try:
            while self._queue:
                await self.lock.acquire()
                batch: list[Change] = []
                outcomes: list[tuple[Change, bool, Any]] = []
                try:
                    batch, self._queue = self._queue, []
                    self.sizes.append(len(batch))
                    log.info("submit round {r}: {n} change(s)", r=len(self.sizes), n=len(batch))
                    outcomes = await self._round(batch)
                except Exception as e:  # the whole round failed: every change hears why
                    log.failure("submit round of {n} failed", n=len(batch))
                    done = {id(c) for c, _ok, _v in outcomes}
                    outcomes += [(c, False, e) for c in batch if id(c) not in done]
                finally:
                    self.lock.release()
                for change, ok, value in outcomes:  # answered outside the lock
                    if ok:
                        change.done.callback(value)
                    else:
                        change.done.errback(value)
        finally:
            self._running = False

    async def _round(self, batch: list[Change]) -> list[tuple[Change, bool, Any]]:
        ctl = self.controller
        members: dict[str, _Member] = {}
        outcomes: list[tuple[Change, bool, Any]] = []
        accepted: list[Change] = []
        for change in batch:
            m = members.get(change.member)
            if m is None:
                try:
                    m = _Member(change.perms, ctl.stored_files(change.member), {})
                    m.current = ctl.current(change.member)
                except Exception as e:
                    outcomes.append((change, False, e))
                    continue
                members[change.member] = m
            try:
                pre = change.pre
                if pre is not None and pre[0] == m.files and pre[1] == ctl._perms(change.member):
                    ev = pre[2]
                else:
                    ev = ctl.evaluate(change.perms, m.files, change.submitted)
                    if inspect.isawaitable(ev):
                        ev = await ev
            except Exception as e:
                outcomes.append((change, False, e))
                continue
            change.evaluated = ev
            if ev.state is None:
                continue
            new = ctl.place(change.member, change.perms, split(ev.state, ctl.site))
            before = m.current if m.new is None else m.new
            change.diff = {h: d.to_json() for h, d in plan(before, new).items()}
            m.perms, m.new = change.perms, new
            m.files = {**m.files, **change.submitted}
            m.changes.append(change)
            accepted.append(change)
        changes: dict[str, dict[str, Any]] = {}
        for name, m in members.items():
            if m.new is None:
                continue
            part = self.part(name, m.perms)
            for host, state in changed_hosts(m.current, m.new).items():
                changes.setdefault(host, {})[name] = part(state)

        def progress(done: int, total: int, what: str) -> None:
            for c in accepted:
                try:
                    c.progress(done, total, what)
                except Exception:  # a member's progress sink never breaks the round
                    log.failure("progress of {m}", m=c.member)

        results: dict[str, ApplyResult] = {}
        if changes:
            results = await ctl.coordinator.apply_many(changes, progress)
        # Versions and audit lines in arrival order, so the history keeps that order, in
        # one store transaction (answered only once it is durable, after the round).
        batched = getattr(ctl.store, "batch", None)
        with batched() if batched is not None else contextlib.nullcontext():
            outcomes += self._record(batch, results, changes)
        return outcomes

    def _record(self, batch, results, changes) -> list[tuple[Change, bool, Any]]:
        ctl = self.controller
        outcomes: list[tuple[Change, bool, Any]] = []
        for change in batch:
            if change.evaluated is None:
                continue
            try:
                if change.evaluated.state is None:
                    answer = ctl._evaluation_refused(
                        change.member, change.submitted, change.evaluated, change.action
                    )
                else:
                    result = results.get(change.member, ApplyResult(True))
                    hosts = sorted(h for h, owners in changes.items() if change.member in owners)
                    answer = ctl._record_submit(
                        change.member,
                        change.submitted,
                        change.action,
                        result,
                        change.diff,
                        hosts,
                        change.evaluated,
                    )
                outcomes.append((change, True, answer))
            except Exception as e:
                outcomes.append((change, False, e))
        return outcomes
