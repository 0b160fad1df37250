"""What members use, as the hosts report it (issue 11 §5): member op ``usage {}``, admin
op ``usage_of {user?}``.

Each host of the site is asked its typed ``usage`` op (``domtool.slave.usage``): the
member's processes and memory (its cgroup and /proc), disk (a walk of its trees, or the
quota), web traffic (its split access logs), outbound traffic (the network policy's
counters). The answer is per host and per figure, each figure with its source or
``"collected": false`` and why; a host that cannot be reached says so.
"""

from __future__ import annotations

from typing import Any

from domtool.dispatcher.opbase import _why
from domtool.protocol import UsageArgs


async def _ask(ctl: Any, owner: str | None) -> dict[str, Any]:

    hosts = sorted(n.name for n in ctl.site.nodes)
    args = UsageArgs(owner or None)
    calls = {h: ctl.coordinator.ask(h, "usage", args) for h in hosts}
    results = await ctl.coordinator.gather(calls)
    return {h: (v if ok else {"error": _why(v)}) for h, (ok, v) in sorted(results.items())}


def _by_member(answers: dict[str, Any], names: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for host, a in answers.items():
        if isinstance(a, dict):  # the host could not answer
            for n in names:
                out[n][host] = {"error": a["error"]}
            continue
        for n, figures in a.members.items():
            if n in out:
                out[n][host] = figures
    return out


async def usage(ctl: Any, member: Any, args: Any, progress: Any) -> dict[str, Any]:
    answers = await _ask(ctl, member.name)
    return {"members": _by_member(answers, [member.name])}


async def usage_of(ctl: Any, admin: Any, args: Any, progress: Any) -> dict[str, Any]:
    from domtool.dispatcher.policy_ops import _members

    user = args.user
    names = _members(ctl, user)
    answers = await _ask(ctl, user)
    return {"members": _by_member(answers, names)}
