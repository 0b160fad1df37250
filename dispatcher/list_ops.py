"""The member op ``list_rm``: remove one of the member's mailing lists from Mailman.

``domtool list rm ADDRESS [--doit]``: the list address must pass the list grammar, lie in
a domain the member owns and no longer be declared in the member's configuration (a list
is removed from the config first, which stops its mail; this op then deletes it). The
dispatcher asks every host of the site's ``lists`` role (``list_remove``, a typed slave
operation); the slave removes it only when its ledger says this member created it. A dry
run unless ``doit``; with it, the list's settings and rosters are exported on the host and
Mailman keeps its archive. Every call is audited.
"""

from __future__ import annotations

from typing import Any

from domtool import validate
from domtool.dispatcher.opbase import _refused, _why
from domtool.protocol import ListRemoveArgs, ListRmAnswer


def others_deployed(store: Any, member: str, state: Any) -> dict[tuple[str, str], Any]:
    """The deployed states of the other members who may hold a list of ``state``: those
    with a domain grant covering one of its list domains (``Store.whohas`` of the domain
    and each parent), so a submit reads a few members' states, not the whole site's. A
    list left deployed by a member whose grant was revoked is caught by the slave's
    ledger instead."""
    names: set[str] = set()
    for d in state.lists:
        labels = str(d.name).lower().split(".")
        for i in range(len(labels) - 1):
            names.update(store.whohas("domain", ".".join(labels[i:])))
    out: dict[tuple[str, str], Any] = {}
    for who in sorted(names - {member}):
        out.update(store.deployed(member=who))
    return out


async def list_rm(controller: Any, member: Any, args: Any, progress: Any) -> dict[str, Any]:

    perms = controller._perms(member.name)
    name, _, domain = str(args.list).lower().partition("@")
    try:
        fq = f"{validate.check_list_name(name)}@{validate.check_domain(domain)}"
    except validate.Invalid as e:
        raise _refused(f"{args.list!r} is not a mailing list address: {e}") from None
    controller._own_domain(perms, domain)
    for state in controller.current(member.name).values():
        for d in state.lists:
            if any(f"{ml.name}@{d.name}" == fq for ml in d.lists):
                raise _refused(
                    f"{fq} is still in your configuration of {d.name}; remove its "
                    "mailingList there and submit, then run this again"
                )
    hosts = controller.site.nodes_with("lists")
    if not hosts:
        raise _refused("this site has no list hosts")
    doit = bool(args.doit)
    calls = {
        h: controller.coordinator.ask(h, "list_remove", ListRemoveArgs(member.name, fq, doit))
        for h in hosts
    }
    results = await controller.coordinator.gather(calls)
    removed = any(ok and v.removed for ok, v in results.values())
    answers = {
        h: (v.to_json() if ok else {"error": _why(v)}) for h, (ok, v) in sorted(results.items())
    }
    controller.store.audit(
        member.name,
        "list_rm",
        {"list": fq, "doit": doit, "hosts": sorted(answers)},
        "removed" if removed else ("dry run" if not doit else "not removed"),
    )
    return ListRmAnswer(fq, doit, removed, answers).to_json()
