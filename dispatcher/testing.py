"""In-memory slaves and links for tests of the dispatcher (shipped next to the code, the
way Twisted ships ``MemoryReactor``).

- :class:`FakeSlave` speaks the slave ops (``prepare``, ``commit``, ``abort``, ``status``,
  ``describe``) with the agent's state semantics: one pending transaction at a time;
  ``prepare`` replaces the COMPLETE parts of the owners it names (an empty state removes
  an owner) and may refuse an owner (``refuse[owner] = message``, as a daemon checker
  would); an unchanged state stages no new generation and ``commit`` then reports
  ``unchanged`` and reloads nothing (``reloads`` counts reloads).
- :class:`FakeLink` is a :class:`~domtool.dispatcher.links.SlaveLink` to a FakeSlave that
  can be taken down (``up = False``) or made to drop given ops (``drop``), and records
  every call. Arguments go through a JSON round trip, as over the wire.

The link to the real slave agent in-process (``AgentLink``) needs both sides, so it lives
with the tests (``tests/agent_link.py``): nothing here imports ``domtool.slave``.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet import defer

from domtool import protocol
from domtool.dispatcher.links import LinkError, RemoteError
from domtool.model import DesiredState
from domtool.protocol import Verdict
from domtool.states import by_owner, compose, under_domain, units


@attrs.define
class FakeSlave:
    """A slave's agent in memory, with the same ops and state semantics."""

    host: str
    generation: int = 0
    state: DesiredState = DesiredState()
    refuse: dict[str, str] = attrs.field(factory=dict)
    roll_back: str | None = None  # set: the daemon dies after the reload; commit rolls back
    reloads: int = 0
    _pending: tuple[str, int, DesiredState, protocol.PrepareAnswer] | None = None
    _last_commit: tuple[str, dict] | None = None
    # address -> {owner, mail_user}: the vmail op's registry (real: domtool.slave.vmail)
    mailboxes: dict[str, dict] = attrs.field(factory=dict)
    # the ``usage`` answer for one owner: tests hand in the slave's real collector
    # (domtool.slave.usage.collect; the dispatcher never imports the slave); without one
    # the fake host says it collected nothing
    usage_collector: Any = None

    def handle(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Answer one op (raises RemoteError as the agent's error frames would). The
        arguments are decoded by the protocol, as the real slave's are
        (``protocol.parse_slave``), and the answers are the protocol's classes."""
        table = {
            "prepare": self._prepare,
            "commit": self._commit,
            "abort": self._abort,
            "status": self._status,
            "describe": self._describe,
            "vmail": self._vmail,
            "policy_held": self._policy_held,
            "usage": self._usage,
        }
        if op not in table:
            raise RemoteError("bad_request", f"unknown operation {op!r}")
        try:
            typed = protocol.parse_slave(op, args)
        except protocol.SchemaError as e:
            raise RemoteError("bad_request", f"bad arguments for {op}", e.details[:100]) from None
        return table[op](typed)

    def _usage(self, args: protocol.UsageArgs) -> dict[str, Any]:
        """The collector's figures over this fake host's state (see ``usage_collector``)."""
        owners = [args.owner] if args.owner else sorted(by_owner(self.state))
        collect = self.usage_collector or (
            lambda _state, o: {"member": o, "users": [], "collected": False, "why": "a fake host"}
        )
        return protocol.UsageAnswer(
            self.host, {o: collect(self.state, o) for o in owners}
        ).to_json()

    def restart(self) -> None:
        """Lose the pending transaction, as a restarted agent does."""
        self._pending = None

    def _prepare(self, args: protocol.PrepareArgs) -> dict[str, Any]:
        txid = args.txid
        if self._pending is not None:
            if self._pending[0] == txid:
                return self._pending[3].to_json()
            raise RemoteError(
                "refused", f"transaction {self._pending[0]} is pending on {self.host}"
            )
        parts = by_owner(self.state)
        owners = {}
        for owner, change in args.changes.items():
            new = change.state
            wrong = [u for _kind, u in units(new) if u.owner != owner]
            if owner in self.refuse:
                owners[owner] = Verdict(False, self.refuse[owner])
            elif wrong:
                owners[owner] = Verdict(False, f"{owner}: a unit of another owner")
            else:
                owners[owner] = Verdict(True, "")
                if new == DesiredState():
                    parts.pop(owner, None)
                else:
                    parts[owner] = new
        staged = compose(parts)
        generation = self.generation if staged == self.state else self.generation + 1
        answer = protocol.PrepareAnswer(txid, self.generation, generation, owners, "")
        self._pending = (txid, generation, staged, answer)
        return answer.to_json()

    def _commit(self, args: protocol.TxArgs) -> dict[str, Any]:
        txid = args.txid
        if self._pending is None or self._pending[0] != txid:
            if self._last_commit is not None and self._last_commit[0] == txid:
                return self._last_commit[1]
            raise RemoteError("refused", f"transaction {txid} is not pending on {self.host}")
        _, generation, staged, _answer = self._pending
        self._pending = None
        if generation == self.generation:
            result = protocol.CommitAnswer(txid, generation, "unchanged")
        elif self.roll_back is not None:
            self.reloads += 2  # the new generation, then the last good one again
            result = protocol.CommitAnswer(
                txid, self.generation, "rolled_back", message=self.roll_back
            )
        else:
            verified = tuple(
                protocol.probe_json("dns", [z.name], z.owner)
                for z in staged.zones
                if z not in self.state.zones
            )
            self.generation, self.state = generation, staged
            self.reloads += 1
            result = protocol.CommitAnswer(txid, generation, "applied", verified)
        self._last_commit = (txid, result.to_json())
        return result.to_json()

    def _abort(self, args: protocol.TxArgs) -> dict[str, Any]:
        aborted = self._pending is not None and self._pending[0] == args.txid
        if aborted:
            self._pending = None
        return protocol.AbortAnswer(args.txid, aborted, self.generation).to_json()

    def _status(self, args: protocol.StatusArgs) -> dict[str, Any]:
        return protocol.StatusAnswer(
            self.host,
            self.generation,
            tuple(sorted(by_owner(self.state))),
            None if self._pending is None else self._pending[0],
        ).to_json()

    def _vmail(self, args: protocol.VmailArgs) -> dict[str, Any]:
        """The slave's vmail op in memory: same checks of ownership and existence as
        ``domtool.slave.vmail.Mailboxes`` (which the mail daemon tests run for real)."""
        owner, action = args.owner, args.action
        if action == "list":
            d = args.domain
            return protocol.VmailAnswer(
                mailboxes=tuple(
                    protocol.Mailbox(a, v["mail_user"], f"/vmail/{a}")
                    for a, v in sorted(self.mailboxes.items())
                    if v["owner"] == owner and (d is None or a.endswith("@" + d))
                )
            ).to_json()
        domain, address = args.domain, f"{args.user}@{args.domain}"
        if not any(m.name == domain and m.owner == owner for m in self.state.mail):
            raise RemoteError("refused", f"{domain} is not a mail domain of {owner} on this host")
        have = self.mailboxes.get(address)
        if have is not None and have["owner"] != owner:
            raise RemoteError("refused", f"{address} belongs to another member")
        if action == "add":
            if have is not None:
                raise RemoteError("refused", f"{address} already exists (use vmail passwd)")
            self.mailboxes[address] = {"owner": owner, "mail_user": args.mail_user or owner}
            return protocol.VmailAnswer(added=address).to_json()
        if have is None:
            raise RemoteError("refused", f"{address} does not exist")
        if action == "rm":
            del self.mailboxes[address]
            return protocol.VmailAnswer(removed=address).to_json()
        return protocol.VmailAnswer(changed=address).to_json()

    def _policy_held(self, args: protocol.PolicyHeldArgs) -> dict[str, Any]:
        held = [p for p in self.state.policies if p.owner == args.owner]
        # live None: no kernel here
        return protocol.PolicyHeldAnswer(
            self.host, self.generation, held[0] if held else None
        ).to_json()

    def _describe(self, args: protocol.DescribeArgs) -> dict[str, Any]:
        d = args.domain.lower()
        return protocol.DescribeAnswer(
            d, self.host, self.generation, under_domain(self.state, d)
        ).to_json()


@attrs.define
class FakeLink:
    """A SlaveLink to a FakeSlave: ``up`` False makes every call fail as unreachable;
    ops in ``drop`` fail the same way (the slave died just before them)."""

    host: str
    slave: FakeSlave
    up: bool = True
    drop: set[str] = attrs.field(factory=set)
    calls: list[tuple[str, dict]] = attrs.field(factory=list)

    def call(self, op: str, args: dict[str, Any]) -> defer.Deferred:
        args = json.loads(json.dumps(args))
        self.calls.append((op, args))
        if not self.up or op in self.drop:
            return defer.fail(LinkError(f"connection to {self.host} refused"))
        try:
            result = self.slave.handle(op, args)
        except RemoteError as e:
            return defer.fail(e)
        return defer.succeed(json.loads(json.dumps(result)))

    def ops(self) -> list[str]:
        """The ops called so far, in order."""
        return [op for op, _ in self.calls]
