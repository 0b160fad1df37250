"""``domtool-admin limits ...`` and ``domtool limits``: members' resource limits (the
``limits`` part of the admin-set member policy, ``policies/limits.py``).

Admin::

    domtool-admin limits list [USER]                 each member's limits, and what each
                                                     host holds
    domtool-admin limits set USER LIMIT=VALUE...     e.g. memory=512M processes=100
    domtool-admin limits set --site LIMIT=VALUE...   the site's defaults (for every member)
    domtool-admin limits reset USER|--site LIMIT...|all
    domtool-admin limits check [USER]                stored vs held on the hosts

LIMIT is one of processes, memory, cpu_weight, cgi_cpu, cgi_wall, disk; sizes take K, M,
G, T (1024s), durations s, m, h. A value below the site's minimum or above its maximum,
bad units, an unknown limit or member: a clear error, and nothing changes. Member:
``domtool limits`` shows your limits as each host holds them.
"""

from __future__ import annotations

from domtool import protocol
from domtool.client.policy_cli import shown
from domtool.policies.limits import format_value, policy_lines


def _limits_of(unit_json) -> object:
    from domtool import model

    if not unit_json:
        return None
    return model.from_json(unit_json).limits


def _held_lines(held: dict, want: list[str]) -> list[str]:
    out = []
    for host, unit in sorted(held.items()):
        lines = policy_lines(_limits_of(unit))
        same = "as above" if lines == want else ("; ".join(lines) or "no limits")
        out.append(f"  on {host}: {same}")
    return out


@shown(protocol.PolicyShowAnswer)
def render_show(answer: protocol.PolicyShowAnswer) -> str:
    out = []
    site = (answer.site or {}).get("limits")
    if site:
        shown = ", ".join(f"{k}={format_value(k, v)}" for k, v in sorted(site.items()))
        out.append("site defaults: " + shown)
    else:
        out.append(
            "site defaults: not set (no member is bounded until the site or the member "
            "has limits: domtool-admin limits set --site ...)"
        )
    for name, m in sorted((answer.members or {}).items()):
        lines = policy_lines(_limits_of(m.effective))
        out.append(f"{name}: " + ("no limits" if not lines else ""))
        out += [f"  {line}" for line in lines]
        out += _held_lines(m.hosts or {}, lines)
    return "\n".join(out)


@shown(protocol.MemberPolicyAnswer)
def render_mine(answer: protocol.MemberPolicyAnswer) -> str:
    lines = policy_lines(_limits_of(answer.effective))
    out = [f"{answer.member}: " + ("no limits" if not lines else "")]
    out += [f"  {line}" for line in lines]
    out += _held_lines(answer.held or {}, lines)
    return "\n".join(out)


def add_admin_commands(add) -> None:
    from domtool.client import policy_cli

    policy_cli.add_part(
        add,
        "limits",
        "members' resource limits: list, set, reset, check",
        {
            "set": ("set USER's (or the site's default) limits", "LIMIT=VALUE..."),
            "reset": ("back to the site's defaults (the LIMITs named, or all)", "LIMIT...|all"),
        },
        show=render_show,
    )


# ---------------------------------------------------------------------------
# domtool usage / domtool-admin usage [MEMBER]


def _size(n: int) -> str:
    for unit, k in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= k:
            return f"{n / k:.1f}{unit}"
    return f"{n}B"


def _figure(d: dict | None, show) -> str:
    if not d:
        return "not collected"
    if d.get("collected") is False:
        return f"not collected ({d.get('why', '?')})"
    return show(d)


def usage_lines(host: str, u: dict) -> list[str]:
    if "error" in u:
        return [f"  on {host}: unreachable or refused: {u['error']}"]
    cg = u.get("cgroup")
    if isinstance(cg, dict) and "processes" not in cg and cg.get("collected") is not False:
        cg = next(iter(cg.values()), None)  # systemd: per user; show the first
    out = [f"  on {host} (limits enforced by: {u.get('mechanism', 'not known')}):"]
    out.append(
        "    processes  "
        + _figure(cg, lambda c: f"{c['processes']} in the cgroup")
        + "; "
        + _figure(u.get("proc"), lambda p: f"{p['processes']} of the member's users in /proc")
    )
    out.append(
        "    memory     "
        + _figure(cg, lambda c: f"{_size(c['memory_bytes'])} in the cgroup")
        + "; "
        + _figure(u.get("proc"), lambda p: f"{_size(p['rss_bytes'])} resident")
    )
    out.append(
        "    disk       "
        + _figure(u.get("disk"), lambda d: f"{_size(d['bytes'])} in {len(d['paths'])} tree(s)")
    )
    out.append(
        "    web        "
        + _figure(u.get("web"), lambda w: f"{w['requests']} requests, {_size(w['bytes'])} sent")
    )
    out.append(
        "    outbound   " + _figure(u.get("outbound"), lambda o: f"{_size(o.get('bytes', 0))} sent")
    )
    return out


@shown(protocol.UsageReport)
def render_usage(answer: protocol.UsageReport) -> str:
    out = []
    for name, hosts in sorted((answer.members or {}).items()):
        out.append(f"{name}:")
        if not hosts:
            out.append("  nothing on any host")
        for host, u in sorted(hosts.items()):
            out += usage_lines(host, u)
    return "\n".join(out)
