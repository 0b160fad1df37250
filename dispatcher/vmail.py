"""The member op ``vmail``: virtual mailboxes in the member's own mail domains.

``{action: add|passwd|rm|list, domain?, user?, hash?, mail_user?, purge?, doit?}``
(``domtool.protocol.MEMBER_REQUESTS``; the slave call is ``protocol.VmailArgs``). The
dispatcher checks what it knows (the member owns the domain and the domain handles mail
in the member's current state, the ``mailboxes`` quota, the password is a SHA-512 crypt
hash, never clear text), then asks every mail host of the domain (the slave's ``vmail``
op, which re-checks for itself: ``domtool.slave.vmail``). ``rm`` is a dry run unless
``doit``: it then only says what would go. The mailbox registry lives on the mail hosts;
``list`` and the quota count ask them.
"""

from __future__ import annotations

from typing import Any

import attrs

from domtool.dispatcher.opbase import OpError, _refused, _why
from domtool.protocol import Mailbox, VmailArgs, VmailResult


async def vmail(ctl: Any, member: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The op (``ctl`` is the dispatcher's Controller)."""

    name = member.name
    perms = ctl._perms(name)
    action = args.action
    current = ctl.current(name)
    mail_hosts = sorted(h for h, s in current.items() if s.mail)
    if action == "list":
        domain = args.domain
        if domain is not None:
            domain = domain.lower()
            ctl._own_domain(perms, domain)
        boxes = await _listed(ctl, mail_hosts, name, domain)
        return VmailResult(mailboxes=tuple(b for _a, b in sorted(boxes.items()))).to_json()
    domain, user = args.domain, args.user
    if domain is None or user is None:
        raise OpError("bad_request", f"vmail {action} needs a domain and a user")
    domain, user = domain.lower(), user.lower()
    ctl._own_domain(perms, domain)
    hosts = sorted(
        h
        for h, s in current.items()
        if any(m.name.lower() == domain and m.handle == "local" for m in s.mail)
    )
    if not hosts:
        raise _refused(
            f"{domain} does not handle mail here: add handleMail to it and submit it first"
        )
    address = f"{user}@{domain}"
    if action in ("add", "passwd") and not args.hash:
        raise OpError("bad_request", f"vmail {action} needs the password's hash")
    if action == "add":
        boxes = await _listed(ctl, mail_hosts, name, None)
        limit = ctl._limits(name)["mailboxes"]
        if address not in boxes and len(boxes) + 1 > limit:
            raise OpError(
                "policy",
                f"{name} would have {len(boxes) + 1} mailboxes, over the quota of {limit}; "
                "ask an administrator to raise it (domtool-admin set-quota)",
            )
    if action == "rm" and not args.doit:
        purge = "and its maildir (--purge)" if args.purge else "(its maildir is kept)"
        return VmailResult(dry_run=True, would=f"remove {address} {purge}", hosts=hosts).to_json()
    call = VmailArgs(
        action,
        name,
        domain,
        user,
        hash=args.hash,
        mail_user=args.mail_user,
        purge=bool(args.purge),
        users=tuple(sorted(perms.users)),
    )
    results = await ctl.coordinator.gather(
        {h: ctl.coordinator.ask(h, "vmail", call) for h in hosts}
    )
    failed = {h: _why(v) for h, (ok, v) in results.items() if not ok}
    ctl.store.audit(
        name,
        f"vmail_{action}",
        {"address": address, "purge": bool(args.purge)},
        "refused" if failed else "applied",
    )
    if failed:
        raise OpError(
            "refused", f"vmail {action} {address}: " + "; ".join(failed.values()), sorted(failed)
        )
    done = {h: v.to_json() for h, (_, v) in results.items()}
    return VmailResult(address=address, action=action, hosts=done).to_json()


async def _listed(ctl: Any, hosts: list[str], owner: str, domain: str | None) -> dict:
    """address -> Mailbox (with the ``hosts`` holding it), from every mail host's
    ``VmailAnswer.mailboxes``."""
    call = VmailArgs("list", owner, domain)
    results = await ctl.coordinator.gather(
        {h: ctl.coordinator.ask(h, "vmail", call) for h in hosts}
    )
    out: dict[str, Mailbox] = {}
    for host, (ok, value) in sorted(results.items()):
        if not ok:
            raise OpError("failed", f"cannot list mailboxes on {host}: {_why(value)}")
        for b in value.mailboxes or ():
            seen = out.get(b.address, b)
            out[b.address] = attrs.evolve(seen, hosts=(*(seen.hosts or ()), host))
    return out
