"""The slave's operations on the wire, and the local re-check of one owner's part.

Two layers, both run before the agent (``domtool.slave.agent``) decides anything:

1. :func:`parse` checks an op's ``args`` object against its closed schema and builds its
   typed arguments. The schemas and the typed messages (:class:`PrepareArgs` with per owner
   an :class:`OwnerChange` and its :class:`Grants`, :class:`TxArgs`, :class:`DescribeArgs`,
   :class:`VmailArgs`, the ``db_*`` arguments, ...) are the protocol's
   (``domtool.protocol.SLAVE_OPS``): the one place a message's shape is written. Every
   problem is reported at once (:class:`BadArgs`, each with its JSON path).
2. :func:`recheck` is the slave's own check of one owner's part, with what only this
   host knows (the part's shape, every field's type and size, is the protocol decoder's,
   already checked: this re-checks values, never shapes): every zone, vhost and mail domain names the owner it came under; names pass
   ``domtool.validate``; a vhost runs as a user and group the owner was granted, never
   ``root``, anything that is uid/gid 0 here, nor a system account (id below 1000);
   every member path (document root, alias and script alias targets, directory blocks,
   TLS files, the htpasswd file) really lies under one of the owner's granted paths once
   symlinks are resolved on THIS host (``slave.pathcheck.check_member_path``); a mail
   domain's alias sources, targets and spam settings pass ``slave.mailcheck`` (a bare user
   name target must be one of the owner's users). Each refusal names the owner and the
   field.

The ops are ``domtool.wire.SLAVE_OPS``; their arguments are listed in
``domtool.protocol.SLAVE_OPS`` (``tls_update`` is answered by the listener,
``slave/tlsupdate.py``, not the agent).
"""

from __future__ import annotations

import grp
import pwd

from domtool import validate
from domtool.policies import member_policy
from domtool.protocol import (
    MAX_RECORDS,
    DescribeArgs,
    Grants,
    ListRemoveArgs,
    OwnerChange,
    PolicyHeldArgs,
    PrepareArgs,
    StatusArgs,
    TlsUpdateArgs,
    TxArgs,
    UsageArgs,
    VmailArgs,
)
from domtool.protocol import SLAVE_OPS as _SLAVE_OPS
from domtool.protocol import SchemaError as BadArgs
from domtool.protocol import parse_slave as parse
from domtool.slave.mailcheck import recheck_mail
from domtool.slave.pathcheck import PathRefused, check_member_path
from domtool.states import member_paths
from domtool.validate import Invalid

__all__ = [
    "MAX_RECORDS",
    "BadArgs",
    "DescribeArgs",
    "Grants",
    "ListRemoveArgs",
    "OwnerChange",
    "PolicyHeldArgs",
    "PrepareArgs",
    "StatusArgs",
    "TlsUpdateArgs",
    "TxArgs",
    "UsageArgs",
    "VmailArgs",
    "parse",
    "recheck",
    "OP_SCHEMAS",
]

#: Each op's argument schema (the protocol's; keys exactly ``domtool.wire.SLAVE_OPS``).
OP_SCHEMAS = {op: entry.schema for op, entry in _SLAVE_OPS.items()}


# ---------------------------------------------------------------------------
# The local re-check of one owner's part


MIN_MEMBER_ID = 1000  # Debian: uids and gids below this are the system's, not members'


def _account(user: str | None = None, group: str | None = None, min_id: int = MIN_MEMBER_ID):
    """Why a user or group name may not run a member's site on this host, or None.

    ``root`` and anything that is id 0 here are the superuser; an existing account with
    an id below ``min_id`` is a system account (``daemon``, ``www-data``...). A name this
    host does not know is left to the grants (and to suexec, which refuses it)."""
    if user is not None:
        if user == "root":
            return "is the superuser"
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            return None
        if uid == 0:
            return "is the superuser (uid 0 on this host)"
        return f"is a system account (uid {uid} on this host)" if uid < min_id else None
    if group is not None:
        if group == "root":
            return "is the superuser's group"
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return None
        if gid == 0:
            return "is the superuser's group (gid 0 on this host)"
        return f"is a system group (gid {gid} on this host)" if gid < min_id else None
    return None


def recheck(
    owner: str, change: OwnerChange, node: str | None = None, min_id: int = MIN_MEMBER_ID
) -> list[str]:
    """Every reason this host refuses ``owner``'s part (empty: accepted).

    ``node`` is this host's node name in the model; when given, every unit must list it
    among its nodes (the dispatcher sends a host only its own part). A vhost's user and
    group must be granted, and must not be root or an account of this host with an id
    below ``min_id`` (system accounts)."""
    problems: list[str] = []
    g = change.grants
    accounts: dict[tuple, str | None] = {}  # each name looked up once (50 vhosts, 1 user)

    def account(user: str | None = None, group: str | None = None) -> str | None:
        key = (user, group)
        if key not in accounts:
            accounts[key] = _account(user=user, group=group, min_id=min_id)
        return accounts[key]

    def refuse(what: str, field: str, reason: str) -> None:
        problems.append(f"{owner}: {what}: {field}: {reason}")

    def name(what: str, field: str, checker, value) -> None:
        try:
            checker(value)
        except Invalid as e:
            refuse(what, field, str(e))

    def units(kind: str, items, label) -> None:
        for u in items:
            what = f"{kind} {label(u)}"
            if u.owner != owner:
                refuse(what, "owner", f"belongs to {u.owner!r}, not to {owner!r}")
            if node is not None and node not in u.nodes:
                refuse(what, "nodes", f"not served by this host ({node})")

    st = change.state
    units("zone", st.zones, lambda z: z.name)
    units("policy", st.policies, lambda p: p.owner)
    for p in st.policies:
        for reason in member_policy.unit_problems(owner, p, g.users):
            problems.append(f"{owner}: {reason}")
        for u in p.users:
            why = _account(user=u, min_id=min_id)
            if why is not None:
                refuse("policy", "users", f"{u!r} {why}")
    # A reverse proxy only to a port the owner may serve (checked at the dispatcher too).
    for reason in member_policy.proxy_problems(st.vhosts, st.policies[0] if st.policies else None):
        problems.append(f"{owner}: {reason}")
    units("vhost", st.vhosts, lambda v: v.fqdn)
    units("mail domain", st.mail, lambda m: m.name)
    for d in st.lists:  # a list domain goes to its list nodes and its mail nodes
        if d.owner != owner:
            refuse(f"list domain {d.name}", "owner", f"belongs to {d.owner!r}, not to {owner!r}")
        if node is not None and node not in d.nodes and node not in d.mail_nodes:
            refuse(f"list domain {d.name}", "nodes", f"not served by this host ({node})")
    for d in st.lists:
        what = f"list domain {d.name}"
        name(what, "name", validate.check_domain, d.name)
        name(what, "web_host", validate.check_domain, d.web_host)
        for i, ml in enumerate(d.lists):
            name(what, f"lists[{i}].name", validate.check_list_name, ml.name)
            if ml.name != ml.name.lower():
                refuse(what, f"lists[{i}].name", "not lower-cased")
            for j, o in enumerate(ml.owners):
                name(what, f"lists[{i}].owners[{j}]", validate.check_email, o)
    for z in st.zones:
        what = f"zone {z.name}"
        name(what, "name", validate.check_domain, z.name)
        for i, r in enumerate(z.records):
            name(what, f"records[{i}].name", validate.check_record_name, r.name)
    for m in st.mail:
        name(f"mail domain {m.name}", "name", validate.check_domain, m.name)
        if m.relay_host is not None:
            name(f"mail domain {m.name}", "relay_host", validate.check_domain, m.relay_host)
        recheck_mail(owner, m, g, account, refuse)
    for v in st.vhosts:
        what = f"vhost {v.fqdn}"
        name(what, "fqdn", validate.check_domain, v.fqdn)
        name(what, "domain", validate.check_domain, v.domain)
        for i, a in enumerate(v.aliases):
            name(what, f"aliases[{i}]", validate.check_domain, a)
        why = account(user=v.user)
        if why is not None:
            refuse(what, "user", f"{v.user!r} {why}")
        elif v.user not in g.users:
            refuse(what, "user", f"{v.user!r} is not one of {owner}'s granted users")
        why = account(group=v.group)
        if why is not None:
            refuse(what, "group", f"{v.group!r} {why}")
        elif v.group not in g.groups:
            refuse(what, "group", f"{v.group!r} is not one of {owner}'s granted groups")
        for field, path in member_paths(v):
            try:
                check_member_path(path, g.paths)
            except PathRefused as e:
                refuse(what, field, str(e))
    return problems
