"""The dispatcher's member operations: ``check``, ``plan``, ``submit``, ``perms``,
``whoami``, ``describe``, ``history``, ``undo``, ``rmdom``, ``vmail`` (a mixin of
:class:`domtool.dispatcher.controller.Controller`, which composes it with the admin
operations and holds the store, site and coordinator they use)."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from domtool import protocol
from domtool.dispatcher.apply import ApplyResult
from domtool.dispatcher.auth import Member
from domtool.dispatcher.opbase import (
    HISTORY_TEXTS,
    Evaluated,
    _empty,
    _perms_json,
    _refused,
    _why,
)
from domtool.dispatcher.plan import (
    split,
    state_json,
)
from domtool.states import without_domain
from domtool.util.locks import run_locked

log = Logger()


class MemberOps:
    """What a member may ask (``wire.MEMBER_OPS``, with list, policy, usage and database
    ops from their own modules)."""

    async def check(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        files = self._files(args, perms)
        result = await self.check_source(perms, sorted(files.items()))
        return protocol.CheckAnswer(
            result.ok,
            tuple(d.format() for d in result.diagnostics),
            None if result.state is None else state_json(result.state),
        ).to_json()

    async def plan(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        ev = await self.evaluate(perms, self.stored_files(member.name), self._files(args, perms))
        if ev.state is None:
            return protocol.PlanAnswer(False, ev.diagnostics, ev.refused, {}).to_json()
        _changes, diff = self._changes(member.name, perms, split(ev.state, self.site))
        return protocol.PlanAnswer(True, (), (), diff, ev.dropped).to_json()

    async def submit(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        submitted = self._files(args, perms)
        # Evaluate before queueing (in the worker pool), so a slow file delays only its own
        # member; the round reuses it unless the member's files or grants changed meanwhile.
        stored = self.stored_files(member.name)
        pre = (stored, perms, await self.evaluate(perms, stored, submitted))
        return await self.rounds.submit(member.name, perms, submitted, progress, "submit", pre)

    def _evaluation_refused(self, name, submitted, ev: Evaluated, action) -> dict[str, Any]:
        """Record and answer a submission whose files did not evaluate (or policy refused)."""
        for domain, text in submitted.items():
            self.store.put_source(name, domain, text, accepted=False)
        reasons = list(ev.refused) or ["the files do not type-check"]
        self.store.audit(
            name, action, {"domains": sorted(submitted), "refused": reasons[:20]}, "refused"
        )
        why = ev.refused[0] if ev.refused else f"{len(ev.diagnostics)} error(s)"
        return protocol.ChangeAnswer(
            applied=False,
            hosts={},
            refused=tuple(reasons),
            diagnostics=ev.diagnostics,
            plan={},
            message=f"refused: {why}",
        ).to_json()

    def _record_submit(
        self, name, submitted, action, result: ApplyResult, diff, hosts, ev: Evaluated
    ) -> dict[str, Any]:
        """Store the versions and the audit line of an applied (or refused) submission."""
        versions = {}
        for domain, text in submitted.items():
            versions[domain] = self.store.put_source(
                name, domain, text, accepted=result.applied or bool(result.hosts)
            )
        outcome = "applied" if result.applied else "refused"
        self.store.audit(
            name,
            action,
            {
                "domains": sorted(submitted),
                "versions": versions,
                "hosts": sorted(hosts),
                "refused": list(result.refused)[:20],
            },
            outcome,
        )
        return self._answer(result, diff, versions=versions, dropped=ev.dropped)

    def _answer(self, result: ApplyResult, diff, **extra) -> dict[str, Any]:
        """The answer to a change (``protocol.ChangeAnswer``) from the apply's result, the
        plan, and what the op adds (``extra``: fields of ChangeAnswer)."""
        if result.applied:
            message = "applied" if result.hosts else "applied (no host needed a change)"
        else:
            message = "not applied: " + (result.refused[0] if result.refused else "refused")
        hosts = {
            h: protocol.HostReport(r.generation, r.status, tuple(r.verified), r.message)
            for h, r in sorted(result.hosts.items())
        }
        return protocol.ChangeAnswer(
            applied=result.applied,
            hosts=hosts,
            refused=tuple(result.refused),
            diagnostics=(),
            plan=diff,
            message=message,
            **extra,
        ).to_json()

    async def perms(self, member: Member, args, progress) -> dict[str, Any]:
        """The member's grants (``protocol.PermsAnswer``)."""
        return _perms_json(self._perms(member.name))

    async def whoami(self, member: Member, args, progress) -> dict[str, Any]:
        return {"user": member.name, "admin": member.is_admin}

    async def _describe_on(self, hosts, domain: str) -> dict[str, Any]:
        calls = {
            h: self.coordinator.call(h, "describe", protocol.DescribeArgs(domain)) for h in hosts
        }
        results = await self.coordinator.gather(calls)
        out = {}
        for host, (ok, value) in sorted(results.items()):
            out[host] = value if ok else {"error": _why(value)}
        return out

    async def describe(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        domain = args.domain.lower()
        self._own_domain(perms, domain)
        hosts = [h for h, s in self.current(member.name).items() if s != without_domain(s, domain)]
        described = await self._describe_on(sorted(hosts), domain)
        return protocol.DescribeResult(domain, described).to_json()

    async def history(self, member: Member, args, progress) -> dict[str, Any]:
        """The member's versions of the domain, oldest first; the text of the newest
        ``HISTORY_TEXTS`` only (the answer must fit one frame)."""
        perms = self._perms(member.name)
        domain = args.domain.lower()
        self._own_domain(perms, domain)
        mine = [s for s in self.store.history(domain) if s.member == member.name]
        with_text = {s.version for s in mine[-HISTORY_TEXTS:]}
        versions = tuple(
            protocol.Version(
                s.version,
                s.member,
                s.submitted_at.isoformat(),
                s.accepted,
                s.text == "",
                s.text if s.version in with_text else None,
            )
            for s in mine
        )
        return protocol.HistoryAnswer(domain, versions).to_json()

    async def undo(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        domain = args.domain.lower()
        self._own_domain(perms, domain)
        source = self.store.source(domain, args.version)
        if source is None or source.member != member.name:
            raise _refused(f"{domain} has no version {args.version} of {member.name}'s")
        if not source.accepted:
            raise _refused(
                f"version {source.version} of {domain} was refused; only an accepted version can be restored"
            )
        if not source.text:
            return await self.rmdom(member, protocol.RmdomRequest(domain), progress)
        return await self.rounds.submit(member.name, perms, {domain: source.text}, progress, "undo")

    async def rmdom(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        domain = args.domain.lower()
        self._own_domain(perms, domain)
        return await run_locked(
            self._lock, self._rmdom, member.name, perms, domain, progress, member.name
        )

    async def vmail(self, member: Member, args, progress) -> dict[str, Any]:
        from domtool.dispatcher.vmail import vmail

        return await vmail(self, member, args)

    async def _rmdom(self, name, perms, domain, progress, who) -> dict[str, Any]:
        current = self.current(name)
        new = {h: without_domain(s, domain) for h, s in current.items()}
        has_source = domain in self.stored_files(name)
        if not has_source and new == current:
            raise _refused(f"{name} has nothing configured for {domain}")
        changes, diff = self._changes(name, perms, {h: s for h, s in new.items() if not _empty(s)})
        result = await self.coordinator.apply(changes, progress)
        if result.applied and has_source:
            self.store.put_source(name, domain, "", accepted=True)
        self.store.audit(
            who,
            "rmdom",
            {"member": name, "domain": domain, "hosts": sorted(changes)},
            "applied" if result.applied else "refused",
        )
        return self._answer(result, diff, domain=domain)
