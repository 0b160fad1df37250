"""Whether everything in a desired state is one member's: every unit's owner, the domains
it names, and for a vhost its user, group and member paths (pure; the dispatcher refuses a
submit that fails it before any host is asked, and the slave re-checks for itself)."""

from __future__ import annotations

from domtool.model import DesiredState, Vhost
from domtool.perms import Permissions
from domtool.states import member_paths, unit_names, units


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
