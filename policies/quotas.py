"""Quotas: how many domains, virtual hosts, mailboxes, lists and databases a member may
have (pure).

The site sets defaults (``DEFAULTS``, overridden by the dispatcher's configuration); an
admin may override any of them per member (``set_quota``, held in the store). A
submission whose resulting state exceeds a limit is refused with one message per
exceeded resource. A list is one mailing list (``ListDomain.lists``). Mailboxes are not
in the model yet: their usage counts zero until their units land. Databases are not
configuration: ``usage`` counts zero for them and the dispatcher counts them as the
database host reports them, at ``db create`` (``domtool.dispatcher.databases``).
"""

from __future__ import annotations

from collections.abc import Mapping

from domtool.model import DesiredState

RESOURCES = ("domains", "vhosts", "mailboxes", "lists", "databases")
DEFAULTS: dict[str, int] = {
    "domains": 50,
    "vhosts": 200,
    "mailboxes": 200,
    "lists": 20,
    "databases": 20,
}


def usage(state: DesiredState) -> dict[str, int]:
    """What ``state`` uses of each resource. A domain is a distinct zone or mail domain."""
    domains = {z.name for z in state.zones} | {m.name for m in state.mail}
    return {
        "domains": len(domains),
        "vhosts": len({v.fqdn for v in state.vhosts}),
        "mailboxes": 0,
        "lists": sum(len(d.lists) for d in state.lists),
        "databases": 0,
    }


def limits(defaults: Mapping[str, int], overrides: Mapping[str, int]) -> dict[str, int]:
    """The member's limits: site defaults, then their overrides (unknown resources dropped)."""
    out = {r: int(defaults.get(r, DEFAULTS[r])) for r in RESOURCES}
    out.update({r: int(v) for r, v in overrides.items() if r in out})
    return out


def check(member: str, state: DesiredState, member_limits: Mapping[str, int]) -> list[str]:
    """A refusal per resource over its limit (empty: within quota)."""
    used = usage(state)
    return [
        f"{member} would have {used[r]} {r}, over the quota of {member_limits[r]}; "
        "ask an administrator to raise it (domtool-admin set-quota)"
        for r in RESOURCES
        if r in member_limits and used[r] > member_limits[r]
    ]
