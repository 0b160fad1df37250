"""The dispatcher's admin operations: members and their grants, ``regen``, ``admin_rmdom``,
hosts, ``ping``, audit and quotas (a mixin of
:class:`domtool.dispatcher.controller.Controller`, which composes it with the member
operations and holds the store, site and coordinator they use)."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from domtool import protocol
from domtool.dispatcher import ca
from domtool.dispatcher.auth import Member
from domtool.dispatcher.opbase import (
    OpError,
    _perms_json,
    _refused,
    _why,
)
from domtool.dispatcher.plan import (
    merge_all,
    plan,
    same_as_stored,
    split,
    state_from_json,
)
from domtool.dispatcher.store import StoreError
from domtool.model import DesiredState
from domtool.policies import quotas
from domtool.states import names, under, without_domain
from domtool.util.locks import run_locked

log = Logger()


class AdminOps:
    """What an admin may ask in addition (``wire.ADMIN_OPS``, with the policy and usage
    ops from their own modules)."""

    def _need_ca(self) -> Any:
        if self.ca_dir is None:
            raise OpError("failed", "this dispatcher has no CA directory configured (ca_dir)")
        return self.ca_dir

    async def adduser(self, admin: Member, args, progress) -> dict[str, Any]:
        user, is_admin = args.user, bool(args.admin)
        existing = self.store.member(user)
        if existing is not None and existing.active:
            raise _refused(f"{user} is already a member")
        cert_pem, key_pem = ca.issue_member(self._need_ca(), user)
        from cryptography import x509

        serial = x509.load_pem_x509_certificate(cert_pem).serial_number
        try:
            self.store.add_member(user, is_admin=is_admin, cert_serial=serial)
        except StoreError as e:
            raise _refused(str(e)) from None
        self.store.audit(
            admin.name,
            "adduser",
            {"user": user, "admin": is_admin, "serial": format(serial, "x")},
            "applied",
        )
        return protocol.AddUserAnswer(
            user, is_admin, format(serial, "x"), cert_pem.decode(), key_pem.decode()
        ).to_json()

    async def rmuser(self, admin: Member, args, progress) -> dict[str, Any]:
        return await run_locked(self._lock, self._rmuser, admin, args, progress)

    async def _rmuser(self, admin: Member, args, progress) -> dict[str, Any]:
        user = args.user
        record = self.store.member(user)
        if record is None or not record.active:
            raise _refused(f"{user} is not an active member")
        perms = self._perms(user)
        changes, diff = self._changes(user, perms, {}, placed=False)
        if not args.apply:
            return protocol.DryRun("dry run: pass apply to remove", diff).to_json(user=user)
        result = await self.coordinator.apply(changes, progress)
        if not result.applied:
            self.store.audit(
                admin.name, "rmuser", {"user": user, "refused": list(result.refused)}, "refused"
            )
            return self._answer(result, diff, user=user, apply=True, revoked=[])
        revoked: list[str] = []
        if self.ca_dir is not None:
            try:
                revoked = [format(s, "x") for s in ca.revoke(self.ca_dir, user)]
            except ca.CAError as e:
                log.warn("rmuser {user}: {e}", user=user, e=e)
            if self.on_crl is not None:
                self.on_crl(ca.current_crl(self.ca_dir, ca.MEMBER))
        self.store.remove_member(user)
        self.store.set_policy(user, None)  # admin-set policy goes with the member
        self.store.audit(admin.name, "rmuser", {"user": user, "revoked": revoked}, "applied")
        return self._answer(result, diff, user=user, apply=True, revoked=revoked)

    async def grant(self, admin: Member, args, progress) -> dict[str, Any]:
        from domtool.dispatcher.store import GrantOverlap

        shared = bool(args.shared)
        try:
            overlaps = self.store.grant_overlaps(args.user, args.grant_class, args.value)
            new = self.store.grant(args.user, args.grant_class, args.value, shared=shared)
        except GrantOverlap as e:
            raise OpError("refused", str(e), e.overlaps) from None
        except StoreError as e:
            raise _refused(str(e)) from None
        self.store.audit(admin.name, "grant", args.to_json(), "applied")
        return {
            "user": args.user,
            "class": args.grant_class,
            "value": args.value,
            "changed": new,
            "shared": shared,
            "overlaps": overlaps,
            **self._sign_hint(args.user),
        }

    def _sign_hint(self, user: str) -> dict[str, str]:
        """After a grant change: slaves keep the member's previous signed record."""
        if self.signed_grants is None or self.signed_grants.get(user) is None:
            return {}
        return {
            "sign": f"slaves with grant_keys still enforce {user}'s previous signed grants: "
            f"run domtool-admin sign-grants {user} --key KEY"
        }

    async def put_grants(self, admin: Member, args, progress) -> dict[str, Any]:
        """Keep an admin-signed grant record to relay to the slaves. It must be the
        member's complete grants as the store has them now, with a newer serial."""
        from domtool import grantsig
        from domtool.dispatcher.signed_grants import mismatch

        if self.signed_grants is None:
            raise OpError("failed", "this dispatcher keeps no signed grants (no state dir)")
        try:
            signed = grantsig.SignedGrants.from_json(args.signed)
        except grantsig.GrantSigError as e:
            raise _refused(str(e)) from None
        rec = signed.record
        record = self.store.member(rec.member)
        if record is None or not record.active:
            raise _refused(f"{rec.member} is not an active member")
        diff = mismatch(rec, self._perms(rec.member))
        if diff:
            raise OpError(
                "refused", f"the signed record is not {rec.member}'s grants as they are now", diff
            )
        have = self.signed_grants.serial(rec.member)
        if rec.serial <= have:
            raise _refused(f"serial {rec.serial} is not newer than the kept one ({have})")
        self.signed_grants.put(signed)
        self.store.audit(
            admin.name,
            "put_grants",
            {"user": rec.member, "serial": rec.serial, "key": signed.key},
            "applied",
        )
        return protocol.PutGrantsAnswer(rec.member, rec.serial, signed.key).to_json()

    async def revoke(self, admin: Member, args, progress) -> dict[str, Any]:
        try:
            had = self.store.revoke(args.user, args.grant_class, args.value)
        except StoreError as e:
            raise _refused(str(e)) from None
        self.store.audit(admin.name, "revoke", args.to_json(), "applied")
        return {
            "user": args.user,
            "class": args.grant_class,
            "value": args.value,
            "changed": had,
            "hint": "run regen to take the revoked grant's configuration off the hosts",
            **self._sign_hint(args.user),
        }

    async def perms_of(self, admin: Member, args, progress) -> dict[str, Any]:
        return _perms_json(self._perms(args.user))

    async def whohas(self, admin: Member, args, progress) -> dict[str, Any]:
        try:
            members = self.store.whohas(args.grant_class, args.value)
        except StoreError as e:
            raise _refused(str(e)) from None
        return {"class": args.grant_class, "value": args.value, "members": members}

    async def regen_state(
        self, name: str, files: dict[str, str] | None = None
    ) -> tuple[DesiredState, list[dict[str, Any]]]:
        """A member's state from their stored sources (``files``, domain -> text, when
        the caller read them already) and today's permissions, and the domain files
        dropped because they no longer check (each with its reasons)."""
        perms = self._perms(name)
        stored = sorted((self.stored_files(name) if files is None else files).items())
        results = await self.check_each(perms, [[(domain, text)] for domain, text in stored])
        state, dropped = self._regen_kept(name, perms, stored, results)
        over = quotas.check(name, state, self._limits(name))
        if over:  # a lowered quota is reported, not enforced by dropping domains
            dropped.append({"member": name, "domain": "*", "reasons": over, "kept": True})
        return state, dropped

    def _regen_kept(self, name: str, perms, stored, results) -> tuple[DesiredState, list]:
        """The merged state of the member's files that ``regen`` keeps, and the files it
        drops: a file that does not check, names what an earlier one of the member's files does,
        or is refused by the ownership and policy checks (``_policy``).

        Those checks are each per unit or name (ownership, reserved names, proxies,
        lists, a policy unit) or a count (quotas), so when every file checks, no two name
        the same thing and their merge passes ``_policy``, every file passes it alone and
        the file-by-file loop below would keep them all: that is asked once per member
        (the loop cost ~0.4 ms a file, four store queries each). Otherwise the loop
        decides, file by file, as before."""
        seen: set[tuple[str, str]] = set()
        candidates: list[DesiredState] = []
        for result in results:
            if not (result.ok and result.state is not None):
                break
            keys = {(n.kind, n.name) for n in names(result.state)}
            if keys & seen:
                break
            seen |= keys
            candidates.append(result.state)
        else:
            if self.REGEN_SHORTCUTS and candidates:
                merged = merge_all(candidates)
                if self._policy(perms, merged).state is not None:
                    return merged, []
        dropped: list[dict[str, Any]] = []
        kept: list[DesiredState] = []
        seen = set()
        for (domain, _text), result in zip(stored, results, strict=True):
            reasons = [d.format() for d in result.diagnostics]
            if result.ok and result.state is not None:
                keys = {(n.kind, n.name) for n in names(result.state)}
                ev = self._policy(perms, result.state)
                if keys & seen:
                    reasons = [f"{domain}: configures a name another of {name}'s files does"]
                elif ev.state is None:
                    reasons = list(ev.refused)
                else:
                    seen |= keys
                    kept.append(result.state)
                    continue
            dropped.append({"member": name, "domain": domain, "reasons": reasons[:20]})
        return merge_all(kept), dropped

    # members evaluated at once by regen: one more than the pool's workers, so a job
    # waits for each worker while the dispatcher takes in the last one's result
    REGEN_AT_ONCE = 3
    # regen's two shortcuts (one policy check per member in _regen_kept, same_as_stored
    # in _regen); the tests turn them off to compare with the long way round
    REGEN_SHORTCUTS = True

    async def _regen_states(
        self,
        members: list[str],
        files: dict[str, dict[str, str]] | None = None,
        stored: dict[str, dict[str, str]] | None = None,
        converging: frozenset[str] | set[str] = frozenset(),
    ) -> dict[str, tuple]:
        """``regen_state`` of each member, :attr:`REGEN_AT_ONCE` at a time, so every
        worker of the evaluation pool is busy (one member at a time left all but one
        idle: 10,000 files took ~13 s); the results are used in member order. ``files``:
        every member's stored files, read at once (``Store.latest_texts``). Each result
        is ``(state, dropped, unchanged)``: ``unchanged`` when ``stored`` (member -> host
        -> the stored text of what the host holds, ``Store.deployed_texts``) is given
        and the member's new parts are exactly that, with nothing of theirs
        ``converging`` (``same_as_stored``; asked here, while the pool evaluates the
        next members, rather than after them all)."""
        out: dict[str, tuple] = {}
        todo = list(reversed(members))

        async def worker() -> None:
            while todo:
                name = todo.pop()
                try:
                    mine = None if files is None else files.get(name, {})
                    state, dropped = await self.regen_state(name, mine)
                except Exception:
                    todo.clear()  # the other worker stops too
                    raise
                unchanged = (
                    self.REGEN_SHORTCUTS
                    and stored is not None
                    and name not in converging
                    and same_as_stored(
                        self.place(name, self._perms(name), split(state, self.site)),
                        stored.get(name, {}),
                    )
                )
                out[name] = (state, dropped, unchanged)

        tasks = [defer.ensureDeferred(worker()) for _ in range(self.REGEN_AT_ONCE)]
        failures = []
        for t in tasks:
            try:
                await t
            except Exception as e:  # every worker ends before the first error is raised
                failures.append(e)
        if failures:
            raise failures[0]
        return out

    async def regen(self, admin: Member, args, progress) -> dict[str, Any]:
        return await run_locked(self._lock, self._regen, admin, bool(args.apply), progress)

    async def _regen(self, admin: Member, apply: bool, progress) -> dict[str, Any]:
        members = [m.name for m in self.store.members()]
        active = set(members)
        # What the hosts hold, as the store's text (decoded only for a member whose new
        # parts differ from it: same_as_stored), and every member's files, each read once.
        stored: dict[str, dict[str, str]] = {}
        for (m, host), text in self.store.deployed_texts().items():
            stored.setdefault(m, {})[host] = text
        converging = {m for p in self.store.pending().values() for m in p["changes"]}
        everyone = sorted(active | set(stored) | converging)
        changes: dict[str, dict[str, Any]] = {}
        plans: dict[str, Any] = {}
        dropped: list[dict[str, Any]] = []
        states = await self._regen_states(
            [n for n in everyone if n in active], self.store.latest_texts(), stored, converging
        )
        for i, name in enumerate(everyone):
            if name in active:
                state, lost, unchanged = states.pop(name)
                dropped += lost
                if unchanged:  # the common case: nothing to plan or send
                    progress(i + 1, len(everyone), f"evaluated {name}")
                    continue
                new = split(state, self.site)
            else:  # removed member still on a host: take it off
                new = {}
            member_changes, diff = self._changes(name, self._perms(name), new)
            for host, owners in member_changes.items():
                changes.setdefault(host, {}).update(owners)
            if diff:
                plans[name] = diff
            progress(i + 1, len(everyone), f"evaluated {name}")
        if not apply:
            message = f"dry run: {len(changes)} host(s) would change; pass apply to converge"
            dry = protocol.DryRun(message, plans, per_member=True, dropped=tuple(dropped))
            return dry.to_json(hosts={}, refused=[])
        out: dict[str, Any] = {
            "apply": apply,
            "plan": plans,
            "dropped": dropped,
            "hosts": {},
            "refused": [],
        }
        result = await self.coordinator.apply(changes, progress)
        self.store.audit(
            admin.name,
            "regen",
            {"hosts": sorted(changes), "dropped": dropped[:50]},
            "applied" if result.applied else "refused",
        )
        out.update(self._answer(result, plans))
        out["plan"] = plans
        out["dropped"] = dropped
        return out

    async def admin_rmdom(self, admin: Member, args, progress) -> dict[str, Any]:
        domain = args.domain.lower()
        owners = sorted(
            {
                m
                for (m, _h), s in self.store.deployed().items()
                if state_from_json(s) != without_domain(state_from_json(s), domain)
            }
            | {s.member for s in self.store.latest_sources() if s.text and under(s.domain, domain)}
        )
        if not owners:
            raise _refused(f"nobody has {domain} configured")
        if not args.apply:
            plans = {}
            for name in owners:
                cur = self.current(name)
                plans[name] = {
                    h: d.to_json()
                    for h, d in plan(
                        cur, {h: without_domain(s, domain) for h, s in cur.items()}
                    ).items()
                }
            return protocol.DryRun("dry run: pass apply to remove", plans, per_member=True).to_json(
                domain=domain
            )
        results = {}
        for name in owners:
            results[name] = await run_locked(
                self._lock, self._rmdom, name, self._perms(name), domain, progress, admin.name
            )
        return {
            "domain": domain,
            "apply": True,
            "applied": all(r["applied"] for r in results.values()),
            "members": results,
        }

    async def _status_of(self, hosts) -> dict[str, Any]:
        results = await self.coordinator.gather(
            {h: self.coordinator.ask(h, "status", protocol.StatusArgs()) for h in hosts}
        )
        recorded = {}
        for g in self.store.generations():
            recorded[g.host] = g
        pending = self.store.pending()
        converging = self.coordinator.converging()
        out = {}
        for host in sorted(hosts):
            ok, value = results[host]
            rec = recorded.get(host)
            out[host] = protocol.HostStatus(
                reachable=ok,
                generation=value.generation if ok else None,
                recorded_generation=None if rec is None else rec.number,
                recorded_status=None if rec is None else rec.status,
                pending=host in pending,
                last_error=pending.get(host, {}).get("last_error"),
                next_retry_in=converging.get(host),
                message="" if ok else _why(value),
            )
        return out

    async def hosts(self, admin: Member, args, progress) -> dict[str, Any]:
        out = await self._status_of([n.name for n in self.site.nodes])
        for n in self.site.nodes:
            out[n.name] = attrs.evolve(out[n.name], roles=tuple(n.roles))
        return protocol.HostsAnswer(out).to_json()

    async def ping(self, admin: Member, args, progress) -> dict[str, Any]:
        names = [n.name for n in self.site.nodes]
        if args.host:
            if args.host not in names:
                raise _refused(f"{args.host} is not a host of this site ({', '.join(names)})")
            names = [args.host]
        return protocol.HostsAnswer(await self._status_of(names)).to_json()

    async def admin_describe(self, admin: Member, args, progress) -> dict[str, Any]:
        domain = args.domain.lower()
        described = await self._describe_on([n.name for n in self.site.nodes], domain)
        return protocol.DescribeResult(domain, described).to_json()

    async def audit(self, admin: Member, args, progress) -> dict[str, Any]:
        entries = self.store.audit_log(
            who=args.user, limit=100 if args.limit is None else args.limit
        )
        return protocol.AuditAnswer(
            tuple(
                protocol.AuditEntry(e.time.isoformat(), e.who, e.action, e.detail, e.outcome)
                for e in entries
            )
        ).to_json()

    async def quota(self, admin: Member, args, progress) -> dict[str, Any]:
        user = args.user
        current = merge_all(self.current(user).values())
        usage = quotas.usage(current)
        databases = await self.databases.usage(user)  # as the database servers report them
        usage["databases"] = len(databases["databases"])
        return {
            "user": user,
            "limits": self._limits(user),
            "usage": usage,
            "overrides": self.store.quotas_of(user),
            "databases": databases,
        }

    async def set_quota(self, admin: Member, args, progress) -> dict[str, Any]:
        if args.resource not in quotas.RESOURCES:
            raise _refused(
                f"unknown resource {args.resource!r}; one of {', '.join(quotas.RESOURCES)}"
            )
        self.store.set_quota(args.user, args.resource, args.value)
        self.store.audit(admin.name, "set_quota", args.to_json(), "applied")
        return {"user": args.user, "limits": self._limits(args.user)}
