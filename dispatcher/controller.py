"""The dispatcher's controller: the entry point of every member and admin op, and what
they share (the member's files, current state, evaluation, policy checks, the prepare
changes). The ops themselves are in ``member_ops.py`` (:class:`MemberOps`) and
``admin_ops.py`` (:class:`AdminOps`), which :class:`Controller` composes; whether a state
is the member's own is :func:`domtool.ownership.ownership_problems` (pure).

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

from domtool import protocol, wire
from domtool.dispatcher import list_ops, policy_ops, usage_ops
from domtool.dispatcher.admin_ops import AdminOps
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.auth import Member
from domtool.dispatcher.member_ops import MemberOps
from domtool.dispatcher.opbase import Evaluated, OpError, _empty, _refused
from domtool.dispatcher.plan import (
    changed_hosts,
    plan,
    state_from_json,
    state_json,
)
from domtool.dispatcher.rounds import Rounds
from domtool.dispatcher.store import Store
from domtool.lang import api
from domtool.model import DesiredState, Site
from domtool.ownership import ownership_problems
from domtool.perms import Permissions
from domtool.policies import lists as list_policy
from domtool.policies import member_policy, quotas, reserved

log = Logger()


class Controller(MemberOps, AdminOps):
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

    def handle(self, member: Member, op: str, args: Any, progress=None) -> defer.Deferred:
        """Deferred[JSON result] of ``op`` for ``member`` (OpError on refusal).
        ``args`` is the op's request object (``protocol.REQUESTS[op]``) or its JSON form
        (decoded here by ``protocol.read_request``); ``progress(done, total, what)`` is told
        of long ops' steps."""
        if op in self.member_ops:
            fn = self.member_ops[op]
        elif op in self.admin_ops:
            if not member.is_admin:
                return defer.fail(OpError("unauthorized", f"{op} is for administrators only"))
            fn = self.admin_ops[op]
        else:
            return defer.fail(OpError("bad_request", f"unknown operation {op[:40]!r}"))
        if not isinstance(args, protocol.REQUESTS[op]):
            try:
                args = protocol.read_request(op, args)
            except protocol.SchemaError as e:
                details = [f"{p}: {m}" if p else m for p, m in e.problems[:100]]
                return defer.fail(OpError("bad_request", f"bad arguments for {op}", details))
        return defer.ensureDeferred(fn(member, args, progress or (lambda *a: None)))

    # -- helpers --------------------------------------------------------------

    def _perms(self, name: str) -> Permissions:
        return self.store.grants_of(name)

    def _own_domain(self, perms: Permissions, domain: str) -> None:
        if not perms.owns_domain(domain):
            raise _refused(f"{perms.user} does not own {domain}. {perms.owned_domains_hint()}")

    def _files(self, request: Any, perms: Permissions) -> dict[str, str]:
        """The files of a ``submit``, ``check`` or ``plan`` request: domain -> text."""
        files: dict[str, str] = {}
        bad = []
        for f in request.files:
            name = f.name.lower()
            if not perms.owns_domain(name):
                bad.append(f"file {name}: {perms.user} does not own the domain {name}")
            if name in files:
                bad.append(f"file {name} is given twice")
            files[name] = f.text
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
                state = protocol.change_state(change)
                out[host] = DesiredState() if state is None else state_from_json(state)
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

    def _part(self, member: str, perms: Permissions) -> Callable[[DesiredState], dict]:
        """``part(state)``: the member's change of a prepare (``protocol.change_json``):
        the state with the grants, and the admin-signed record of them when there is one
        (slaves with ``grant_keys`` check that)."""
        grants = protocol.Grants.of(perms)
        signed = None if self.signed_grants is None else self.signed_grants.get(member)
        return lambda state: protocol.change_json(state_json(state), grants, signed)

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
        changes = {host: {member: part(state)} for host, state in hosts.items()}
        return changes, {h: d.to_json() for h, d in plan(current, new).items()}
