"""The slave's own re-check of a member's mail units (called from ``slave.ops.recheck``).

What this host decides for itself, whatever the dispatcher said: every alias source is a
local part of the domain the unit is for (a ``("user", LOCALPART)`` in the email-user
grammar, or the default / catch-all rule; never an address of another domain); every
target is an address in the email grammar or a bare user name, and a bare user name (a
local account's mailbox) must be one of the owner's granted users and not root or a
system account of this host (issue 13: bob may not point an alias at alice's mailbox);
the spam settings are in range. When the grants carry verified domains (``domains``), the
mail domain must be one of them or a subdomain of one.
"""

from __future__ import annotations

from collections.abc import Callable

from domtool import validate
from domtool.model import MailDomain
from domtool.states import under
from domtool.validate import Invalid

SPAM_ACTIONS = frozenset({"tag", "refuse", "junk"})
MAX_TARGETS = 256


def recheck_mail(
    owner: str,
    m: MailDomain,
    grants,
    account: Callable[..., str | None],
    refuse: Callable[[str, str, str], None],
) -> None:
    """Call ``refuse(what, field, reason)`` for each problem of mail domain ``m``.
    ``account(user=NAME)`` says why a user may not be used on this host (or None)."""
    what = f"mail domain {m.name}"
    domains = getattr(grants, "domains", None)
    if domains is not None and not any(under(m.name, d) for d in domains):
        refuse(what, "name", f"{m.name!r} is not one of {owner}'s domains")
    if m.handle not in ("local", "relay"):
        refuse(what, "handle", "expected 'local' or 'relay'")
    if m.spam_action not in SPAM_ACTIONS:
        refuse(what, "spam_action", f"expected one of {sorted(SPAM_ACTIONS)}")
    t = m.spam_threshold  # an integer (the protocol's decoder); its range re-checked here
    if not -100 <= t <= 100:
        refuse(what, "spam_threshold", "a whole number from -100 to 100")
    users = set(getattr(grants, "users", ()))
    for i, a in enumerate(m.aliases):
        field = f"aliases[{i}]"
        src = a.source
        if src in (("default",), ("catchall",)):
            pass
        elif len(src) == 2 and src[0] == "user":
            try:
                validate.check_email_user(src[1])
            except Invalid as e:
                refuse(what, f"{field}.source", str(e))
        else:
            refuse(what, f"{field}.source", "not a local part of this domain or a default rule")
        if len(a.targets) > MAX_TARGETS:
            refuse(what, f"{field}.targets", f"more than {MAX_TARGETS} targets")
            continue
        for j, target in enumerate(a.targets):
            tf = f"{field}.targets[{j}]"
            if "@" in target:
                try:
                    validate.check_email(target)
                except Invalid as e:
                    refuse(what, tf, str(e))
                continue
            try:
                validate.check_unix_name(target)
            except Invalid as e:
                refuse(what, tf, str(e))
                continue
            why = account(user=target)
            if why is not None:
                refuse(what, tf, f"{target!r} {why}")
            elif target not in users:
                refuse(what, tf, f"{target!r} is not one of {owner}'s granted users")
