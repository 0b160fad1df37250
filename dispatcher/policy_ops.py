"""Admin-set member policy at the dispatcher: stored, validated, placed into each host's
part of the member's state, and pushed through the two-phase apply (issue 11).

Ops (``domtool.wire``): admin ``policy_show {user?}``, ``policy_set {user? | site,
part, action, value?, dry_run?}``, ``policy_check {user?}``; member ``policy {}``.

A member's policy unit (``domtool.model.MemberPolicy``, built by
``domtool.policies.member_policy.unit`` from the member's record over the site's) goes to
every node of the site. :func:`place` adds it to each host's part wherever the
controller computes a member's new state (submit rounds, regen, undo, rmdom, and the
policy ops here), so there is one path to the hosts: ``Controller._changes`` and the
coordinator. A member's evaluation can never carry a policy: ``Controller._policy``
refuses one (the language has no way to make one either).

``policy_set`` validates the edit (``PolicyError``: a bad rule, a port out of range, a
rule for a user the member was not granted, with who holds it), checks that every
reverse proxy of the member still points at a port the member may serve, stores it,
and applies it; if any host refuses, the stored record goes back to what it was: a bad
change changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from domtool import model, protocol
from domtool.dispatcher.opbase import OpError, _refused
from domtool.dispatcher.store import SITE_POLICY
from domtool.model import DesiredState, MemberPolicy
from domtool.policies import member_policy as mp
from domtool.protocol import PolicyHeldArgs
from domtool.util.locks import run_locked


def record_of(store: Any, who: str) -> mp.PolicyRecord:
    return mp.PolicyRecord.from_json(store.policy_of(who))


def unit_for(ctl: Any, member: str, perms: Any = None) -> MemberPolicy | None:
    """The policy unit ``member``'s hosts get now (None: no policy binds the member, or
    the member is not an active member: a removed member's hosts hold nothing)."""
    record = ctl.store.member(member)
    if record is None or not record.active:
        return None
    perms = perms if perms is not None else ctl._perms(member)
    return mp.unit(
        member,
        record_of(ctl.store, member),
        record_of(ctl.store, SITE_POLICY),
        perms.users,
        ctl.site,
    )


def place(unit: MemberPolicy | None, new: Mapping[str, DesiredState]) -> dict[str, DesiredState]:
    """``new`` (host -> the member's part) with ``unit`` as its only policy on each of
    the unit's nodes (and no policy elsewhere)."""
    out = {h: attrs.evolve(s, policies=()) for h, s in new.items()}
    if unit is not None:
        for node in unit.nodes:
            out[node] = attrs.evolve(out.get(node, DesiredState()), policies=(unit,))
    return {h: s for h, s in out.items() if s != DesiredState()}


def held(ctl: Any, member: str) -> dict[str, Any]:
    """host -> the policy unit JSON the host holds (or is converging to) for ``member``."""
    out = {}
    for host, state in ctl.current(member).items():
        if state.policies:
            out[host] = model.to_json(state.policies[0])
    return out


def _holder(store: Any):
    def holder(user: str) -> str | None:
        who = store.whohas("user", user)
        return who[0] if who else None

    return holder


def problems_of(ctl: Any, member: str, record: mp.PolicyRecord) -> list[str]:
    """Why ``record`` may not be ``member``'s today (grants, proxies)."""
    perms = ctl._perms(member)
    out: list[str] = []
    for part in record.parts.values():
        out += part.problems(member, perms.users, _holder(ctl.store))
    if out:
        return out
    unit = mp.unit(member, record, record_of(ctl.store, SITE_POLICY), perms.users, ctl.site)
    for state in ctl.current(member).values():
        out += mp.proxy_problems(state.vhosts, unit)
    return sorted(set(out))


def _describe(ctl: Any, member: str) -> dict[str, Any]:
    unit = unit_for(ctl, member)
    return {
        "record": record_of(ctl.store, member).to_json(),
        "effective": None if unit is None else model.to_json(unit),
        "lines": mp.unit_to_lines(unit),
        "hosts": held(ctl, member),
    }


def _members(ctl: Any, user: str | None) -> list[str]:
    names = [m.name for m in ctl.store.members()]
    if user is None:
        return names
    if user not in names:
        raise _refused(f"{user} is not an active member")
    return [user]


async def policy_show(ctl: Any, admin: Any, args: Any, progress: Any) -> dict[str, Any]:
    names = _members(ctl, args.user)
    return protocol.PolicyShowAnswer(
        record_of(ctl.store, SITE_POLICY).to_json(),
        {n: protocol.MemberPolicyOf(**_describe(ctl, n)) for n in names},
    ).to_json()


async def policy(ctl: Any, member: Any, args: Any, progress: Any) -> dict[str, Any]:
    """The member's own policy: what the store says, and what each host says it holds
    and enforces (``policy_held``: its live state, and its kernel's word); a host that
    does not answer is shown from the dispatcher's record of what it committed."""
    d = _describe(ctl, member.name)
    nodes = sorted(set(d["hosts"]) | {n.name for n in ctl.site.nodes})
    calls = {h: ctl.coordinator.ask(h, "policy_held", PolicyHeldArgs(member.name)) for h in nodes}
    answers = await ctl.coordinator.gather(calls)
    hosts: dict[str, Any] = {}
    held: dict[str, Any] = {}  # host -> the whole unit it holds (the limits part reads it)
    for h in nodes:
        ok, value = answers[h]
        if ok:
            unit = value.policy
            lines = mp.unit_to_lines(unit) if unit is not None else []
            hosts[h] = protocol.HeldPolicy(tuple(lines), value.live, "host")
            if unit is not None:
                held[h] = model.to_json(unit)
        elif h in d["hosts"]:
            lines = mp.unit_to_lines(model.from_json(d["hosts"][h]))
            why = str(getattr(value, "value", value))[:200]
            hosts[h] = protocol.HeldPolicy(tuple(lines), None, f"record ({why})")
            held[h] = d["hosts"][h]
    hosts = {h: v for h, v in hosts.items() if v.lines or v.source != "host"}
    return protocol.MemberPolicyAnswer(
        member.name, tuple(d["lines"]), hosts, d["effective"], held
    ).to_json()


async def policy_check(ctl: Any, admin: Any, args: Any, progress: Any) -> dict[str, Any]:
    """For each member: problems of the stored policy against today's grants and
    proxies, and the hosts whose held policy differs from it (a re-push is ``regen``)."""
    out = {}
    for name in _members(ctl, args.user):
        record = record_of(ctl.store, name)
        unit = unit_for(ctl, name)
        want = None if unit is None else model.to_json(unit)
        hosts = held(ctl, name)
        nodes = set(hosts) | set(unit.nodes if unit is not None else ())
        differ = sorted(h for h in nodes if hosts.get(h) != want)
        out[name] = protocol.PolicyCheckOf(tuple(problems_of(ctl, name, record)), tuple(differ))
    ok = all(not v.problems and not v.out_of_sync for v in out.values())
    return protocol.PolicyCheckAnswer(ok, out).to_json()


async def policy_set(ctl: Any, admin: Any, args: Any, progress: Any) -> dict[str, Any]:
    return await run_locked(ctl._lock, _policy_set, ctl, admin, args, progress)


async def _policy_set(ctl: Any, admin: Any, args: Any, progress: Any) -> dict[str, Any]:

    site = bool(args.site)
    user = args.user
    if site == (user is not None):
        raise OpError("bad_request", "name either a member (user) or the site's defaults (site)")
    who = SITE_POLICY if site else user
    names = _members(ctl, None if site else user)
    part_name = args.part
    if part_name not in mp.EDITS:
        raise OpError(
            "bad_request", f"unknown policy part {part_name!r}; known: {sorted(mp.EDITS)}"
        )
    old = record_of(ctl.store, who)
    try:
        part = mp.EDITS[part_name](old.get(part_name), args.action, (args.value or ""), user)
    except mp.PolicyError as e:
        raise OpError("policy", e.problems[0], e.problems) from None
    new = old.with_part(part_name, part)
    bad: list[str] = []
    for name in names if not site else []:
        bad += problems_of(ctl, name, new)
    if bad:
        raise OpError("policy", bad[0], bad)
    ctl.store.set_policy(who, new.to_json())
    try:
        changes: dict[str, dict[str, Any]] = {}
        plans: dict[str, Any] = {}
        problems: list[str] = []
        for name in names:
            if site:
                problems += problems_of(ctl, name, record_of(ctl.store, name))
            perms = ctl._perms(name)
            current = ctl.current(name)
            member_changes, diff = ctl._changes(name, perms, current)
            for host, owners in member_changes.items():
                changes.setdefault(host, {}).update(owners)
            if diff:
                plans[name] = diff
        if problems:
            raise OpError("policy", problems[0], problems)
        out: dict[str, Any] = {"record": new.to_json(), "plan": plans, "hosts": {}}
        if args.dry_run:
            ctl.store.set_policy(who, old.to_json())
            out.update(applied=False, message=f"dry run: {len(changes)} host(s) would change")
            return out
        result = await ctl.coordinator.apply(changes, progress)
    except BaseException:
        ctl.store.set_policy(who, old.to_json())
        raise
    if not result.applied:
        ctl.store.set_policy(who, old.to_json())
    ctl.store.audit(
        admin.name,
        "policy_set",
        {"who": who, "part": part_name, "action": args.action, "value": (args.value or "")},
        "applied" if result.applied else "refused",
    )
    out.update(ctl._answer(result, plans))
    out["record"] = (new if result.applied else old).to_json()
    return out
