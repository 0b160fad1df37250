"""The dispatcher's controller: what each member and admin op does.

The protocol (``service.py``) has already authenticated the member, decoded the frame
and checked the op's arguments against its schema; :meth:`Controller.handle` gets the
avatar (``auth.Member``), the op and its arguments, and returns a Deferred of the JSON
result, or fails with :class:`OpError` (a ``wire.Failure``).

A member's configuration is the latest accepted source of each of their domains (one
file per domain, named after it); their desired state is the evaluation of all of them
together. A ``submit`` replaces the sources of the files it names only. What each host
holds for each member is the dispatcher's record of the last committed part
(``Store.deployed``), overlaid with any change still converging (``Store.pending``);
plans are diffs against that, and only hosts whose part changes are contacted.

Authorization, fail closed and in this order: a file, ``describe``, ``history``,
``undo`` or ``rmdom`` must name a domain the member owns; the language checks every
value against the member's permissions (``domtool.lang.api.check_source``); then the
evaluated state is checked again here (every unit's owner, names, paths, users and
groups, :func:`ownership_problems`) and against the site's policies (quotas, reserved
names) before any host is contacted.

``regen`` replays every active member's stored sources with today's permissions. A
domain file that no longer checks (a revoked grant) is DROPPED from the member's state
(reported, and its stored source left in history), so the member loses exactly what
the revoked grant covered; the rest of their files still apply. Running it again finds
no difference and contacts no host. ``rmdom`` removes the domain's units from what the
hosts hold for the member and records an empty source (a tombstone) for the domain's
file, so ``regen`` does not bring it back.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from domtool import wire
from domtool.dispatcher import ca, list_ops, policy_ops, usage_ops
from domtool.dispatcher.apply import ApplyResult, Coordinator
from domtool.dispatcher.auth import Member
from domtool.dispatcher.links import LinkError, RemoteError
from domtool.dispatcher.plan import (
    changed_hosts,
    merge_all,
    plan,
    split,
    state_from_json,
    state_json,
)
from domtool.dispatcher.rounds import Rounds
from domtool.dispatcher.store import Store, StoreError
from domtool.lang import api
from domtool.model import DesiredState, Site, Vhost
from domtool.perms import Permissions
from domtool.policies import lists as list_policy
from domtool.policies import member_policy, quotas, reserved
from domtool.states import member_paths, names, under, unit_names, units, without_domain
from domtool.util.locks import run_locked

log = Logger()

#: How many of a domain's newest versions ``history`` sends with their text (64 of the
#: largest files would not fit one 20 MiB frame).
HISTORY_TEXTS = 20


class OpError(Exception):
    """An op that cannot be done: ``kind`` (one of ``wire.ERROR_KINDS``), message, details."""

    def __init__(self, kind: str, message: str, details: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.failure = wire.Failure(kind, message, tuple(details))


def _refused(message: str) -> OpError:
    return OpError("refused", message)


def ownership_problems(state: DesiredState, perms: Permissions) -> list[str]:
    """Everything in ``state`` that is not ``perms.user``'s (empty: all of it is)."""
    me = perms.user
    out: list[str] = []

    def mine(what: str, owner: str) -> None:
        if owner != me:
            out.append(f"{what} would belong to {owner}, not {me}")

    for _field, unit in units(state):
        found = [n for n in unit_names(unit) if n.kind != "list"]
        what = found[0].what if found else type(unit).__name__.lower()
        mine(what, unit.owner)
        domains = [n.name for n in found]
        if isinstance(unit, Vhost):  # and the domain it was declared in
            domains.insert(1, unit.domain)
        for name in domains:
            if not perms.owns_domain(name):
                this = "this domain" if len(domains) == 1 else f"the domain of {name}"
                out.append(f"{what}: {me} does not own {this}")
        if isinstance(unit, Vhost):
            if not perms.owns_user(unit.user):
                out.append(f"{what}: {me} may not run as user {unit.user}")
            if not perms.owns_group(unit.group):
                out.append(f"{what}: {me} may not use group {unit.group}")
            for _f, p in member_paths(unit):
                if not perms.owns_path(p):
                    out.append(f"{what}: {me} does not own path {p}")
    return out


def _grants(perms: Permissions) -> dict[str, list[str]]:
    return {
        "paths": sorted(perms.paths),
        "users": sorted(perms.users),
        "groups": sorted(perms.groups),
    }


def _perms_json(perms: Permissions) -> dict[str, Any]:
    return {
        "user": perms.user,
        "grants": [{"class": c, "value": v} for c, v in perms.grants()],
        "perms": {
            "domains": sorted(perms.domains),
            "paths": sorted(perms.paths),
            "users": sorted(perms.users),
            "groups": sorted(perms.groups),
        },
    }


def _empty(state: DesiredState) -> bool:
    return state == DesiredState()


@attrs.frozen
class Evaluated:
    """A member's files evaluated: the state (None if refused) and why not."""

    state: DesiredState | None
    diagnostics: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    dropped: tuple[dict[str, Any], ...] = ()


class Controller:
    """Member and admin ops over the store, the site and the two-phase coordinator.

    ``ca_dir`` (the CA directory) is needed by ``adduser`` and ``rmuser``; ``on_crl(pem)``
    is called with the member CA's new CRL after a revocation (the service reloads its
    listener with it). ``site_domains`` are the site's reserved domains;
    ``quota_defaults`` the site's default quotas.
    """

    def __init__(
        self,
        store: Store,
        site: Site,
        coordinator: Coordinator,
        *,
        site_domains: tuple[str, ...] = (),
        quota_defaults: Mapping[str, int] | None = None,
        ca_dir: Any = None,
        on_crl: Callable[[bytes], None] | None = None,
        check_source: Callable[..., Any] | None = None,
        signed_grants: Any = None,
        check_each: Callable[..., Any] | None = None,
    ) -> None:
        self.store = store
        self.site = site
        self.coordinator = coordinator
        self.site_domains = tuple(site_domains)
        self.quota_defaults = dict(quota_defaults or quotas.DEFAULTS)
        self.ca_dir = ca_dir
        self.on_crl = on_crl
        # check_source(member, files, perms, site) -> CheckResult or an awaitable of one:
        # the service passes dispatcher.evalpool.EvalPool.check (off the reactor).
        self._check_source = check_source
        # check_each(member, [files, ...], perms, site) -> [CheckResult, ...] (or an
        # awaitable): many independent checks in one round trip (EvalPool.check_each)
        self._check_each = check_each
        # dispatcher.signed_grants.SignedGrantFiles: admin-signed records relayed to slaves.
        self.signed_grants = signed_grants
        self._lock = defer.DeferredLock()
        self.rounds = Rounds(self, self._lock, self._part)  # group commit of submits
        self.member_ops: dict[str, Callable] = {
            "check": self.check,
            "plan": self.plan,
            "submit": self.submit,
            "perms": self.perms,
            "whoami": self.whoami,
            "describe": self.describe,
            "history": self.history,
            "undo": self.undo,
            "rmdom": self.rmdom,
            "vmail": self.vmail,
            "list_rm": functools.partial(list_ops.list_rm, self),
            "policy": functools.partial(policy_ops.policy, self),
            "usage": functools.partial(usage_ops.usage, self),
        }
        self.admin_ops: dict[str, Callable] = {
            "adduser": self.adduser,
            "rmuser": self.rmuser,
            "grant": self.grant,
            "revoke": self.revoke,
            "perms_of": self.perms_of,
            "whohas": self.whohas,
            "regen": self.regen,
            "admin_rmdom": self.admin_rmdom,
            "hosts": self.hosts,
            "ping": self.ping,
            "admin_describe": self.admin_describe,
            "audit": self.audit,
            "quota": self.quota,
            "set_quota": self.set_quota,
            "put_grants": self.put_grants,
            "policy_show": functools.partial(policy_ops.policy_show, self),
            "policy_set": functools.partial(policy_ops.policy_set, self),
            "policy_check": functools.partial(policy_ops.policy_check, self),
            "usage_of": functools.partial(usage_ops.usage_of, self),
        }
        from domtool.dispatcher.databases import Databases

        self.databases = Databases(self)  # db_* ops: dispatcher/databases.py
        self.member_ops.update(self.databases.ops())
        assert set(self.member_ops) == wire.MEMBER_OPS
        assert set(self.admin_ops) == wire.ADMIN_OPS

    # -- entry point ----------------------------------------------------------

    def handle(
        self, member: Member, op: str, args: Mapping[str, Any], progress=None
    ) -> defer.Deferred:
        """Deferred[JSON result] of ``op`` for ``member`` (OpError on refusal).
        ``progress(done, total, what)`` is told of long ops' steps."""
        if op in self.member_ops:
            fn = self.member_ops[op]
        elif op in self.admin_ops:
            if not member.is_admin:
                return defer.fail(OpError("unauthorized", f"{op} is for administrators only"))
            fn = self.admin_ops[op]
        else:
            return defer.fail(OpError("bad_request", f"unknown operation {op[:40]!r}"))
        return defer.ensureDeferred(fn(member, dict(args), progress or (lambda *a: None)))

    # -- helpers --------------------------------------------------------------

    def _perms(self, name: str) -> Permissions:
        return self.store.grants_of(name)

    def _own_domain(self, perms: Permissions, domain: str) -> None:
        if not perms.owns_domain(domain):
            raise _refused(f"{perms.user} does not own {domain}. {perms.owned_domains_hint()}")

    def _files(self, args: Mapping[str, Any], perms: Permissions) -> dict[str, str]:
        files: dict[str, str] = {}
        bad = []
        for f in args["files"]:
            name = f["name"].lower()
            if not perms.owns_domain(name):
                bad.append(f"file {name}: {perms.user} does not own the domain {name}")
            if name in files:
                bad.append(f"file {name} is given twice")
            files[name] = f["text"]
        if bad:
            raise OpError("refused", bad[0], bad + [perms.owned_domains_hint()])
        return files

    def stored_files(self, member: str) -> dict[str, str]:
        """The member's current sources: domain -> text (removed domains left out)."""
        return {s.domain: s.text for s in self.store.latest_sources(member) if s.text}

    def current(self, member: str) -> dict[str, DesiredState]:
        """What each host holds (or is converging to) for ``member``."""
        out = {
            host: state_from_json(state)
            for (_m, host), state in self.store.deployed(member=member).items()
        }
        for host, p in self.store.pending().items():
            change = p["changes"].get(member)
            if change is not None:
                out[host] = state_from_json(change["state"])
        return {h: s for h, s in out.items() if not _empty(s)}

    def _limits(self, member: str) -> dict[str, int]:
        return quotas.limits(self.quota_defaults, self.store.quotas_of(member))

    async def check_source(self, perms: Permissions, files) -> api.CheckResult:
        """``api.check_source`` of ``files`` for ``perms``, in the evaluation pool when
        the controller has one (never in the reactor thread in the service)."""
        if self._check_source is None:
            return api.check_source(list(files), perms, self.site)
        result = self._check_source(perms.user, list(files), perms, self.site)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def check_each(self, perms: Permissions, batches) -> list[api.CheckResult]:
        """``check_source`` of each batch of files on its own; in one job of the
        evaluation pool when there is one (regen replays 10,000 files one by one)."""
        batches = [list(files) for files in batches]
        if self._check_each is None or self._check_source is None:
            return [await self.check_source(perms, files) for files in batches]
        result = self._check_each(perms.user, batches, perms, self.site)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    async def evaluate(
        self, perms: Permissions, files: Mapping[str, str], submitted: Mapping[str, str] = {}
    ) -> Evaluated:
        """Check and evaluate ``files`` with the ``submitted`` ones in place, then the
        ownership and policy checks.

        A stored file (not submitted) that no longer checks (a grant revoked since) is
        dropped, as ``regen`` would drop it, and listed in ``dropped``; an error in a
        submitted file refuses the whole submission."""
        files = {**files, **submitted}
        dropped: list[dict[str, Any]] = []
        while True:
            result = await self.check_source(perms, sorted(files.items()))
            if result.ok:
                break
            bad = {d.file for d in result.diagnostics}
            if not bad or bad & set(submitted) or not bad <= set(files):
                return Evaluated(None, tuple(d.format() for d in result.diagnostics))
            for name in sorted(bad):
                reasons = [d.format() for d in result.diagnostics if d.file == name]
                dropped.append({"domain": name, "reasons": reasons[:20]})
                del files[name]
        ev = self._policy(perms, result.state or DesiredState())
        return attrs.evolve(ev, dropped=tuple(dropped))

    def _policy(self, perms: Permissions, state: DesiredState) -> Evaluated:
        refused = ownership_problems(state, perms)
        if state.policies:  # admin-set only: never from a member's own files
            refused.append("a member's configuration cannot set policy (admins set it)")
        refused += member_policy.proxy_problems(
            state.vhosts, policy_ops.unit_for(self, perms.user, perms)
        )
        refused += reserved.check(perms.user, state, self.site_domains)
        refused += quotas.check(perms.user, state, self._limits(perms.user))
        if state.lists:
            others = list_ops.others_deployed(self.store, perms.user, state)
            refused += list_policy.check(perms.user, state, others)
        return Evaluated(None if refused else state, (), tuple(refused))

    def _part(self, member: str, perms: Permissions) -> dict[str, Any]:
        """What a prepare sends with a member's state: the grants, and the admin-signed
        record of them when there is one (slaves with ``grant_keys`` check that)."""
        part: dict[str, Any] = {"grants": _grants(perms)}
        signed = None if self.signed_grants is None else self.signed_grants.get(member)
        if signed is not None:
            part["signed_grants"] = signed
        return part

    def place(
        self, member: str, perms: Permissions, new: Mapping[str, DesiredState]
    ) -> dict[str, DesiredState]:
        """``new`` with the member's admin-set policy unit on every node it binds."""
        return policy_ops.place(policy_ops.unit_for(self, member, perms), new)

    def _changes(
        self,
        member: str,
        perms: Permissions,
        new: Mapping[str, DesiredState],
        *,
        placed: bool = True,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """The prepare changes and the plan of ``member`` going to ``new`` per host
        (``placed``: with the member's policy put in; False only to remove everything)."""
        if placed:
            new = self.place(member, perms, new)
        current = self.current(member)
        hosts = changed_hosts(current, new)
        part = self._part(member, perms)
        changes = {
            host: {member: {"state": state_json(state), **part}} for host, state in hosts.items()
        }
        return changes, {h: d.to_json() for h, d in plan(current, new).items()}

    # -- member ops -----------------------------------------------------------

    async def check(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        files = self._files(args, perms)
        result = await self.check_source(perms, sorted(files.items()))
        return {
            "ok": result.ok,
            "diagnostics": [d.format() for d in result.diagnostics],
            "state": None if result.state is None else state_json(result.state),
        }

    async def plan(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        ev = await self.evaluate(perms, self.stored_files(member.name), self._files(args, perms))
        if ev.state is None:
            return {
                "ok": False,
                "diagnostics": list(ev.diagnostics),
                "refused": list(ev.refused),
                "hosts": {},
            }
        _changes, diff = self._changes(member.name, perms, split(ev.state, self.site))
        return {
            "ok": True,
            "diagnostics": [],
            "refused": [],
            "hosts": diff,
            "dropped": list(ev.dropped),
        }

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
        return {
            "applied": False,
            "hosts": {},
            "refused": reasons,
            "diagnostics": list(ev.diagnostics),
            "plan": {},
            "message": "refused: "
            + (ev.refused[0] if ev.refused else f"{len(ev.diagnostics)} error(s)"),
        }

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
        return self._answer(result, diff, versions=versions, dropped=list(ev.dropped))

    def _answer(self, result: ApplyResult, diff, **extra) -> dict[str, Any]:
        out = result.to_json()
        out.update({"diagnostics": [], "plan": diff, **extra})
        if result.applied:
            out["message"] = "applied" if result.hosts else "applied (no host needed a change)"
        else:
            out["message"] = "not applied: " + (result.refused[0] if result.refused else "refused")
        return out

    async def perms(self, member: Member, args, progress) -> dict[str, Any]:
        return _perms_json(self._perms(member.name))

    async def whoami(self, member: Member, args, progress) -> dict[str, Any]:
        return {"user": member.name, "admin": member.is_admin}

    async def _describe_on(self, hosts, domain: str) -> dict[str, Any]:
        calls = {h: self.coordinator.call(h, "describe", {"domain": domain}) for h in hosts}
        results = await self.coordinator.gather(calls)
        out = {}
        for host, (ok, value) in sorted(results.items()):
            out[host] = value if ok else {"error": _why(value)}
        return out

    async def describe(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        domain = args["domain"].lower()
        self._own_domain(perms, domain)
        hosts = [h for h, s in self.current(member.name).items() if s != without_domain(s, domain)]
        return {"domain": domain, "hosts": await self._describe_on(sorted(hosts), domain)}

    async def history(self, member: Member, args, progress) -> dict[str, Any]:
        """The member's versions of the domain, oldest first; the text of the newest
        ``HISTORY_TEXTS`` only (the answer must fit one frame)."""
        perms = self._perms(member.name)
        domain = args["domain"].lower()
        self._own_domain(perms, domain)
        mine = [s for s in self.store.history(domain) if s.member == member.name]
        with_text = {s.version for s in mine[-HISTORY_TEXTS:]}
        versions = []
        for s in mine:
            v = {
                "version": s.version,
                "member": s.member,
                "submitted_at": s.submitted_at.isoformat(),
                "accepted": s.accepted,
                "removed": s.text == "",
            }
            if s.version in with_text:
                v["text"] = s.text
            versions.append(v)
        return {"domain": domain, "versions": versions}

    async def undo(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        domain = args["domain"].lower()
        self._own_domain(perms, domain)
        source = self.store.source(domain, args["version"])
        if source is None or source.member != member.name:
            raise _refused(f"{domain} has no version {args['version']} of {member.name}'s")
        if not source.accepted:
            raise _refused(
                f"version {source.version} of {domain} was refused; only an accepted version can be restored"
            )
        if not source.text:
            return await self.rmdom(member, {"domain": domain}, progress)
        return await self.rounds.submit(member.name, perms, {domain: source.text}, progress, "undo")

    async def rmdom(self, member: Member, args, progress) -> dict[str, Any]:
        perms = self._perms(member.name)
        domain = args["domain"].lower()
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

    # -- admin ops ------------------------------------------------------------

    def _need_ca(self) -> Any:
        if self.ca_dir is None:
            raise OpError("failed", "this dispatcher has no CA directory configured (ca_dir)")
        return self.ca_dir

    async def adduser(self, admin: Member, args, progress) -> dict[str, Any]:
        user, is_admin = args["user"], bool(args.get("admin", False))
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
        return {
            "user": user,
            "admin": is_admin,
            "serial": format(serial, "x"),
            "cert_pem": cert_pem.decode(),
            "key_pem": key_pem.decode(),
        }

    async def rmuser(self, admin: Member, args, progress) -> dict[str, Any]:
        return await run_locked(self._lock, self._rmuser, admin, args, progress)

    async def _rmuser(self, admin: Member, args, progress) -> dict[str, Any]:
        user = args["user"]
        record = self.store.member(user)
        if record is None or not record.active:
            raise _refused(f"{user} is not an active member")
        perms = self._perms(user)
        changes, diff = self._changes(user, perms, {}, placed=False)
        if not args.get("apply"):
            return {
                "user": user,
                "apply": False,
                "plan": diff,
                "message": "dry run: pass apply to remove",
            }
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

        shared = bool(args.get("shared", False))
        try:
            overlaps = self.store.grant_overlaps(args["user"], args["class"], args["value"])
            new = self.store.grant(args["user"], args["class"], args["value"], shared=shared)
        except GrantOverlap as e:
            raise OpError("refused", str(e), e.overlaps) from None
        except StoreError as e:
            raise _refused(str(e)) from None
        self.store.audit(admin.name, "grant", dict(args), "applied")
        return {
            "user": args["user"],
            "class": args["class"],
            "value": args["value"],
            "changed": new,
            "shared": shared,
            "overlaps": overlaps,
            **self._sign_hint(args["user"]),
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
            signed = grantsig.SignedGrants.from_json(args["signed"])
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
        return {"user": rec.member, "serial": rec.serial, "key": signed.key}

    async def revoke(self, admin: Member, args, progress) -> dict[str, Any]:
        try:
            had = self.store.revoke(args["user"], args["class"], args["value"])
        except StoreError as e:
            raise _refused(str(e)) from None
        self.store.audit(admin.name, "revoke", dict(args), "applied")
        return {
            "user": args["user"],
            "class": args["class"],
            "value": args["value"],
            "changed": had,
            "hint": "run regen to take the revoked grant's configuration off the hosts",
            **self._sign_hint(args["user"]),
        }

    async def perms_of(self, admin: Member, args, progress) -> dict[str, Any]:
        return _perms_json(self._perms(args["user"]))

    async def whohas(self, admin: Member, args, progress) -> dict[str, Any]:
        try:
            members = self.store.whohas(args["class"], args["value"])
        except StoreError as e:
            raise _refused(str(e)) from None
        return {"class": args["class"], "value": args["value"], "members": members}

    async def regen_state(self, name: str) -> tuple[DesiredState, list[dict[str, Any]]]:
        """A member's state from their stored sources and today's permissions, and the
        domain files dropped because they no longer check (each with its reasons)."""
        perms = self._perms(name)
        kept: list[DesiredState] = []
        seen: set[tuple[str, str]] = set()
        dropped = []
        stored = sorted(self.stored_files(name).items())
        results = await self.check_each(perms, [[(domain, text)] for domain, text in stored])
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
        state = merge_all(kept)
        over = quotas.check(name, state, self._limits(name))
        if over:  # a lowered quota is reported, not enforced by dropping domains
            dropped.append({"member": name, "domain": "*", "reasons": over, "kept": True})
        return state, dropped

    REGEN_AT_ONCE = 2  # members evaluated at once by regen (the pool's workers)

    async def _regen_states(self, members: list[str]) -> dict[str, tuple]:
        """``regen_state`` of each member, :attr:`REGEN_AT_ONCE` at a time, so every
        worker of the evaluation pool is busy (one member at a time left all but one
        idle: 10,000 files took ~13 s); the results are used in member order."""
        out: dict[str, tuple] = {}
        todo = list(reversed(members))

        async def worker() -> None:
            while todo:
                name = todo.pop()
                try:
                    out[name] = await self.regen_state(name)
                except Exception:
                    todo.clear()  # the other worker stops too
                    raise

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
        return await run_locked(self._lock, self._regen, admin, bool(args.get("apply")), progress)

    async def _regen(self, admin: Member, apply: bool, progress) -> dict[str, Any]:
        members = [m.name for m in self.store.members()]
        active = set(members)
        on_hosts = {m for (m, _h) in self.store.deployed()}
        on_hosts |= {m for p in self.store.pending().values() for m in p["changes"]}
        everyone = sorted(active | on_hosts)
        changes: dict[str, dict[str, Any]] = {}
        plans: dict[str, Any] = {}
        dropped: list[dict[str, Any]] = []
        states = await self._regen_states([n for n in everyone if n in active])
        for i, name in enumerate(everyone):
            if name in active:
                state, lost = states.pop(name)
                dropped += lost
                new = split(state, self.site)
            else:  # removed member still on a host: take it off
                new = {}
            member_changes, diff = self._changes(name, self._perms(name), new)
            for host, owners in member_changes.items():
                changes.setdefault(host, {}).update(owners)
            if diff:
                plans[name] = diff
            progress(i + 1, len(everyone), f"evaluated {name}")
        out: dict[str, Any] = {
            "apply": apply,
            "plan": plans,
            "dropped": dropped,
            "hosts": {},
            "refused": [],
        }
        if not apply:
            out["message"] = f"dry run: {len(changes)} host(s) would change; pass apply to converge"
            return out
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
        domain = args["domain"].lower()
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
        if not args.get("apply"):
            plans = {}
            for name in owners:
                cur = self.current(name)
                plans[name] = {
                    h: d.to_json()
                    for h, d in plan(
                        cur, {h: without_domain(s, domain) for h, s in cur.items()}
                    ).items()
                }
            return {
                "domain": domain,
                "apply": False,
                "plan": plans,
                "message": "dry run: pass apply to remove",
            }
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
            {h: self.coordinator.call(h, "status", {}) for h in hosts}
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
            out[host] = {
                "reachable": ok,
                "generation": value.get("generation") if ok else None,
                "recorded_generation": None if rec is None else rec.number,
                "recorded_status": None if rec is None else rec.status,
                "pending": host in pending,
                "last_error": pending.get(host, {}).get("last_error"),
                "next_retry_in": converging.get(host),
                "message": "" if ok else _why(value),
            }
        return out

    async def hosts(self, admin: Member, args, progress) -> dict[str, Any]:
        out = await self._status_of([n.name for n in self.site.nodes])
        for n in self.site.nodes:
            out[n.name]["roles"] = list(n.roles)
        return {"hosts": out}

    async def ping(self, admin: Member, args, progress) -> dict[str, Any]:
        names = [n.name for n in self.site.nodes]
        if args.get("host"):
            if args["host"] not in names:
                raise _refused(f"{args['host']} is not a host of this site ({', '.join(names)})")
            names = [args["host"]]
        return {"hosts": await self._status_of(names)}

    async def admin_describe(self, admin: Member, args, progress) -> dict[str, Any]:
        domain = args["domain"].lower()
        return {
            "domain": domain,
            "hosts": await self._describe_on([n.name for n in self.site.nodes], domain),
        }

    async def audit(self, admin: Member, args, progress) -> dict[str, Any]:
        entries = self.store.audit_log(who=args.get("user"), limit=args.get("limit", 100))
        return {
            "entries": [
                {
                    "time": e.time.isoformat(),
                    "who": e.who,
                    "action": e.action,
                    "detail": e.detail,
                    "outcome": e.outcome,
                }
                for e in entries
            ]
        }

    async def quota(self, admin: Member, args, progress) -> dict[str, Any]:
        user = args["user"]
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
        if args["resource"] not in quotas.RESOURCES:
            raise _refused(
                f"unknown resource {args['resource']!r}; one of {', '.join(quotas.RESOURCES)}"
            )
        self.store.set_quota(args["user"], args["resource"], args["value"])
        self.store.audit(admin.name, "set_quota", dict(args), "applied")
        return {"user": args["user"], "limits": self._limits(args["user"])}


def _why(failure: Any) -> str:
    e = getattr(failure, "value", failure)
    if isinstance(e, LinkError | RemoteError):
        return str(e)
    return f"{type(e).__name__}: {e}"
