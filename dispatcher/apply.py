"""The two-phase coordinator: prepare on every affected host, then commit everywhere.

``Coordinator.apply(changes)`` takes, per host, the owners whose part changes there and
each owner's COMPLETE new part (``{state, grants}``, the slave's ``prepare`` argument):

1. **prepare** on every host at once. If any host is unreachable, fails, or refuses any
   owner's part (the slave's checker message), every host that prepared is told to
   **abort**: nothing changed anywhere, and the reasons come back.
2. Otherwise each host's change is written to the store as *pending* (so a restarted
   dispatcher carries on), then **commit** goes to every host at once. A host that
   commits has its generation and the owners' committed parts recorded in one store
   transaction. A host that cannot be reached (or fails) after its prepare keeps its
   pending change and is retried with exponential backoff on the injected clock
   (``retry_initial`` doubling up to ``retry_max``) until it converges: the retry commits
   the prepared transaction, or, when the slave no longer holds it (it timed out or
   restarted), prepares the same change again under a new id and commits that.

A change to a host that still has a pending change carries the pending owners along, so
the newer transaction supersedes the older one instead of racing it. One apply (or
retry) runs at a time.

``Coordinator.apply_many(changes)`` is the same two phases for a group-commit round
(``domtool.dispatcher.rounds``): many owners at once, each with its own answer. An owner
refused by any host (its checker, a name clash, or a host that fails) is left out and only
that owner is refused; a host that had accepted the offender is aborted and prepared again
without it, the others keep their prepared transaction; then every host commits once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from domtool import protocol
from domtool.dispatcher.links import LinkError, RemoteError, SlaveLink
from domtool.dispatcher.store import Store
from domtool.protocol import (  # ApplyResult, HostResult: this module's answers
    ApplyResult,
    CommitAnswer,
    HostResult,
    PrepareAnswer,
    PrepareArgs,
    TxArgs,
)
from domtool.util.locks import run_locked

log = Logger()

# host -> owner -> the owner's change in its JSON form (protocol.change_json: state, grants)
Changes = Mapping[str, Mapping[str, Any]]


def _reason(host: str, failure: Any) -> str:
    e = getattr(failure, "value", failure)
    if isinstance(e, LinkError):
        return f"{host} is unreachable: {e}"
    if isinstance(e, RemoteError):
        more = "; ".join(e.details[:5])
        return f"{host} refused: {e.message}" + (f" ({more})" if more else "")
    return f"{host} failed: {e}"


def _new_txid() -> str:
    return "tx-" + uuid.uuid4().hex


class Coordinator:
    """Runs two-phase applies over ``links`` (host -> SlaveLink) and converges hosts that
    missed their commit. ``progress(done, total, what)`` is told of each step."""

    def __init__(
        self,
        store: Store,
        links: Mapping[str, SlaveLink],
        clock: IReactorTime,
        *,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        new_txid: Callable[[], str] = _new_txid,
    ) -> None:
        self.store = store
        self.links = links
        self.clock = clock
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.new_txid = new_txid
        self.lock = defer.DeferredLock()
        self._timers: dict[str, IDelayedCall] = {}
        self._delays: dict[str, float] = {}

    # -- public ---------------------------------------------------------------

    def apply(self, changes: Changes, progress=None) -> defer.Deferred:
        """Deferred[ApplyResult] of a two-phase apply of ``changes``."""
        return defer.ensureDeferred(run_locked(self.lock, self._apply, changes, progress))

    def apply_many(self, changes: Changes, progress=None) -> defer.Deferred:
        """Deferred[dict owner -> ApplyResult] of one isolating two-phase apply of every
        owner's change in ``changes`` (see the module's docstring)."""
        return defer.ensureDeferred(run_locked(self.lock, self._apply_many, changes, progress))

    def resume(self) -> None:
        """Start converging every host the store says has a pending change (at startup)."""
        for host in self.store.pending():
            self._schedule(host, 0)

    def converging(self) -> dict[str, float]:
        """Hosts waiting for a retry, with the delay they were scheduled with."""
        return {h: self._delays.get(h, 0.0) for h, t in self._timers.items() if t.active()}

    def stop(self) -> None:
        """Cancel scheduled retries (the pending changes stay in the store)."""
        for t in self._timers.values():
            if t.active():
                t.cancel()
        self._timers.clear()

    # -- plumbing -------------------------------------------------------------

    def call(self, host: str, op: str, args: Any) -> defer.Deferred:
        """Deferred result of ``op`` on ``host``'s slave (LinkError if none is configured).
        ``args`` is the op's typed message (``domtool.protocol.SLAVE_OPS[op].args``)."""
        if not isinstance(args, protocol.SLAVE_OPS[op].args):
            raise TypeError(f"{op} takes a protocol.{protocol.SLAVE_OPS[op].args.__name__}")
        args = args.to_json()
        link = self.links.get(host)
        if link is None:
            return defer.fail(LinkError(f"no link to {host} is configured"))
        try:
            return defer.maybeDeferred(link.call, op, args)
        except Exception as e:  # pragma: no cover (maybeDeferred catches)
            return defer.fail(e)

    def ask(self, host: str, op: str, args: Any) -> defer.Deferred:
        """``call``, and the answer decoded as the protocol's answer class of ``op``
        (``protocol.SLAVE_ANSWERS``): an answer of the wrong shape is a RemoteError."""
        cls = protocol.SLAVE_ANSWERS[op]

        def decoded(answer: Any) -> Any:
            try:
                return cls.from_json(answer)
            except protocol.SchemaError as e:
                raise RemoteError("failed", f"a {op} answer of the wrong shape: {e}") from None

        return self.call(host, op, args).addCallback(decoded)

    async def gather(self, calls: dict[str, defer.Deferred]) -> dict[str, tuple[bool, Any]]:
        """Wait for every call: host -> (succeeded, result or Failure)."""
        hosts = list(calls)
        results = await defer.DeferredList(
            [calls[h] for h in hosts], consumeErrors=True, fireOnOneErrback=False
        )
        return {h: (ok, value) for h, (ok, value) in zip(hosts, results, strict=True)}

    # -- the two phases -------------------------------------------------------

    async def _apply(self, changes: Changes, progress) -> ApplyResult:
        tell = progress or (lambda done, total, what: None)
        pending = self.store.pending()
        full: dict[str, dict[str, Any]] = {}
        for host, owners in changes.items():
            merged = dict(pending[host]["changes"]) if host in pending else {}
            merged.update(owners)
            full[host] = merged
        if not full:
            return ApplyResult(True)
        txid = self.new_txid()
        total = 2 * len(full)
        prepared = await self.gather(
            {h: self.ask(h, "prepare", PrepareArgs(txid, c)) for h, c in full.items()}
        )
        refused: list[str] = []
        for i, host in enumerate(sorted(prepared)):
            ok, value = prepared[host]
            if not ok:
                refused.append(_reason(host, value))
                tell(i + 1, total, f"{host} could not prepare")
                continue
            bad = [f"{host}: {owner}: {why}" for owner, why in sorted(value.refused().items())]
            refused += bad
            tell(i + 1, total, f"{host} refused" if bad else f"{host} prepared")
        if refused:
            await self.gather(
                {h: self.call(h, "abort", TxArgs(txid)) for h, (ok, _) in prepared.items() if ok}
            )
            return ApplyResult(False, refused=tuple(refused))
        for host, c in full.items():
            self.store.set_pending(host, txid, c)
        committed = await self.gather({h: self.ask(h, "commit", TxArgs(txid)) for h in full})
        hosts: dict[str, HostResult] = {}
        problems: list[str] = []
        for i, host in enumerate(sorted(committed)):
            ok, value = committed[host]
            if ok:
                hosts[host] = self._committed(host, txid, full[host], value)
                if hosts[host].status == "rolled_back":
                    problems.append(f"{host} rolled back: {hosts[host].message}")
            else:
                why = _reason(host, value)
                self.store.note_pending_error(host, why)
                hosts[host] = HostResult(None, "pending", (), f"{why}; retrying until it converges")
                self._schedule(host, self.retry_initial)
            tell(len(full) + i + 1, total, f"{host} {hosts[host].status}")
        return ApplyResult(not problems, hosts, tuple(problems))

    async def _apply_many(self, changes: Changes, progress) -> dict[str, ApplyResult]:
        tell = progress or (lambda done, total, what: None)
        pending = self.store.pending()
        full: dict[str, dict[str, Any]] = {}
        for host, owners in changes.items():
            merged = dict(pending[host]["changes"]) if host in pending else {}
            merged.update(owners)
            full[host] = merged
        everyone = {o for owners in full.values() for o in owners}
        refused: dict[str, list[str]] = {}  # owner -> reasons
        prepared: dict[str, tuple[str, PrepareAnswer]] = {}  # host -> (txid, answer)
        steps = 0
        # Each pass refuses at least one more owner or ends, so it ends by len(everyone)+1.
        for _ in range(len(everyone) + 1):
            todo = {
                h: {o: c for o, c in owners.items() if o not in refused}
                for h, owners in full.items()
                if h not in prepared
            }
            todo = {h: c for h, c in todo.items() if c}
            txids = {h: self.new_txid() for h in todo}
            answers = await self.gather(
                {h: self.ask(h, "prepare", PrepareArgs(txids[h], c)) for h, c in todo.items()}
            )
            newly: dict[str, list[str]] = {}
            for host in sorted(answers):
                ok, value = answers[host]
                steps += 1
                if not ok:
                    for owner in todo[host]:
                        newly.setdefault(owner, []).append(_reason(host, value))
                    tell(steps, steps + len(full), f"{host} could not prepare")
                    continue
                prepared[host] = (txids[host], value)
                for owner, why in sorted(value.refused().items()):
                    if owner in todo[host]:
                        newly.setdefault(owner, []).append(f"{host}: {owner}: {why}")
                tell(steps, steps + len(full), f"{host} prepared")
            if not newly:
                break
            for owner, reasons in newly.items():
                refused.setdefault(owner, []).extend(reasons)
            # A host that staged an owner refused elsewhere must stage again without it.
            again = [
                h
                for h, (_txid, answer) in prepared.items()
                if any(o in refused and o not in answer.refused() for o in full[h])
            ]
            if again:
                await self.gather(
                    {h: self.call(h, "abort", TxArgs(prepared.pop(h)[0])) for h in again}
                )
        live = {
            h: {o: c for o, c in full[h].items() if o not in refused}
            for h in prepared
            if any(o not in refused for o in full[h])
        }
        idle = [h for h in prepared if h not in live]
        if idle:  # every owner of these hosts was refused: nothing to commit there
            await self.gather({h: self.call(h, "abort", TxArgs(prepared[h][0])) for h in idle})
        for host, c in live.items():
            self.store.set_pending(host, prepared[host][0], c)
        committed = await self.gather(
            {h: self.ask(h, "commit", TxArgs(prepared[h][0])) for h in live}
        )
        hosts: dict[str, HostResult] = {}
        answers_of: dict[str, CommitAnswer] = {}
        for host in sorted(committed):
            ok, value = committed[host]
            txid = prepared[host][0]
            if ok:
                hosts[host] = self._committed(host, txid, live[host], value)
                answers_of[host] = value
            else:
                why = _reason(host, value)
                self.store.note_pending_error(host, why)
                hosts[host] = HostResult(None, "pending", (), f"{why}; retrying until it converges")
                self._schedule(host, self.retry_initial)
            steps += 1
            tell(steps, steps, f"{host} {hosts[host].status}")
        out: dict[str, ApplyResult] = {}
        for owner in everyone:
            if owner in refused:
                out[owner] = ApplyResult(False, refused=tuple(refused[owner]))
                continue
            # Each member hears of its own probes only (a round of 1,000 members verifies
            # 2,000 names: every answer holding all of them would be 150 MB in all).
            mine = {
                h: attrs.evolve(
                    r,
                    verified=tuple(
                        v for v in r.verified if not isinstance(v, dict) or v.get("owner") == owner
                    ),
                )
                for h, r in hosts.items()
                if owner in live.get(h, {})
            }
            problems = []
            for h, r in sorted(mine.items()):
                answer = answers_of.get(h)
                if r.status == "rolled_back":
                    problems.append(f"{h} rolled back: {r.message}")
                elif answer is not None and not answer.accepted(owner):
                    why = answer.owners[owner].message or "rolled back"
                    problems.append(f"{h}: {owner}: {why}")
            out[owner] = ApplyResult(not problems, mine, tuple(problems))
        return out

    def _committed(
        self, host: str, txid: str, change: Mapping[str, Any], answer: CommitAnswer
    ) -> HostResult:
        parts: dict[str, Any] = {}
        if answer.status in ("applied", "unchanged"):
            for owner, c in change.items():
                if answer.accepted(owner):
                    parts[owner] = protocol.change_state(c)
        self.store.record_commit(host, answer.generation, answer.status, parts, txid=txid)
        self._timers.pop(host, None)
        self._delays.pop(host, None)
        return HostResult(answer.generation, answer.status, answer.verified, answer.message)

    # -- convergence ----------------------------------------------------------

    def _schedule(self, host: str, delay: float) -> None:
        old = self._timers.get(host)
        if old is not None and old.active():
            return
        self._delays[host] = delay
        self._timers[host] = self.clock.callLater(delay, self._fire, host)

    def _fire(self, host: str) -> None:
        self._timers.pop(host, None)
        d = defer.ensureDeferred(run_locked(self.lock, self._retry, host))
        d.addErrback(lambda f: log.failure("converging {host} failed", f, host=host))

    async def _retry(self, host: str) -> None:
        p = self.store.pending().get(host)
        if p is None:
            self._delays.pop(host, None)
            return
        txid, change = p["txid"], p["changes"]
        try:
            try:
                answer = await self.ask(host, "commit", TxArgs(txid))
            except RemoteError as e:
                if e.kind != "refused":
                    raise
                # The slave no longer holds the transaction: prepare the same change again.
                txid = self.new_txid()
                prep = await self.ask(host, "prepare", PrepareArgs(txid, change))
                bad = [f"{o}: {why}" for o, why in sorted(prep.refused().items())]
                if bad:
                    await self.call(host, "abort", TxArgs(txid))
                    raise RemoteError("refused", "; ".join(bad)) from None
                self.store.set_pending(host, txid, change)
                answer = await self.ask(host, "commit", TxArgs(txid))
        except (LinkError, RemoteError) as e:
            why = _reason(host, e)
            self.store.note_pending_error(host, why)
            delay = min(self.retry_max, max(self.retry_initial, 2 * self._delays.get(host, 0.0)))
            log.info(
                "{host} has not converged ({why}); next try in {d} s", host=host, why=why, d=delay
            )
            self._schedule(host, delay)
            return
        result = self._committed(host, txid, change, answer)
        self.store.audit("dispatcher", "converge", {"host": host, "txid": txid}, result.status)
