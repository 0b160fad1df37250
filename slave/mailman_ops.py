"""The typed Mailman operation at the slave's privileged edge: removing a member's list.

``list_remove {owner, list, doit}`` (``domtool list rm ADDRESS [--doit]`` at the member's
end): a list is removed only when this host's ledger says ``owner`` created it, and only
once it is no longer in the owner's configuration (the agent refuses it while the live
state still declares it). Without ``doit`` it is a dry run that says what would go.
With ``doit``:

1. the list's settings and rosters (owners, moderators, members) are exported over REST
   to ``<ledger dir>/removed/<list>-<UTC time>.json`` (mode 0600);
2. the list is deleted through Mailman's REST API (``DELETE /lists/ID``). Mailman's
   ``remove_list`` drops the list's data directory and database rows but never its
   archives (``var/archives/<archiver>/<list>``), so the archive is kept;
3. the ledger forgets the list, so the name may be declared again (a new, empty list).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from domtool import validate
from domtool.slave.mailman_rest import Client, Ledger, RestConfig, RestError, list_id, quote


class RemoveRefused(Exception):
    """The list may not be removed by this owner (the message says why)."""


def _roster(client: Client, fq: str, role: str) -> list[str]:
    data = client.get(f"/lists/{quote(list_id(fq))}/roster/{role}?count=100000&page=1")
    return sorted(e["email"] for e in data.get("entries", []))


def remove_list(rest_config: str, owner: str, fq: str, doit: bool, *, now=None) -> dict[str, Any]:
    """Remove (or, without ``doit``, describe the removal of) ``owner``'s list ``fq``."""
    name, _, domain = fq.partition("@")
    try:
        fq = f"{validate.check_list_name(name)}@{validate.check_domain(domain)}"
    except validate.Invalid as e:
        raise RemoveRefused(str(e)) from None
    cfg = RestConfig.load(rest_config)
    client = Client(cfg)
    ledger = Ledger.load(cfg.ledger)
    holder = ledger.lists.get(fq)
    if holder != owner:
        who = f"member {holder}'s" if holder else "not a list domtool created for you"
        raise RemoveRefused(f"list {fq} is {who}" + ("" if holder is None else " list"))
    lid = quote(list_id(fq))
    try:
        info = client.get(f"/lists/{lid}")
    except RestError as e:
        if e.status != 404:
            raise
        if doit:
            del ledger.lists[fq]
            ledger.save()
        return {"list": fq, "exists": False, "removed": False, "message": f"{fq} is not in Mailman"}
    members = int(info.get("member_count", 0))
    what = f"{fq} ({members} member{'s' if members != 1 else ''}); its archive is kept"
    if not doit:
        return {
            "list": fq,
            "exists": True,
            "removed": False,
            "members": members,
            "message": f"would remove {what} (dry run: add --doit)",
        }
    export = {
        "list": fq,
        "info": info,
        "config": client.get(f"/lists/{lid}/config"),
        "owners": _roster(client, fq, "owner"),
        "moderators": _roster(client, fq, "moderator"),
        "members": _roster(client, fq, "member"),
    }
    now = now or datetime.datetime.now(datetime.UTC)
    keep = os.path.join(os.path.dirname(cfg.ledger) or ".", "removed")
    os.makedirs(keep, mode=0o700, exist_ok=True)
    path = os.path.join(keep, f"{fq}-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(export, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    client.request("DELETE", f"/lists/{lid}")
    del ledger.lists[fq]
    ledger.save()
    return {
        "list": fq,
        "exists": False,
        "removed": True,
        "members": members,
        "export": path,
        "message": f"removed {what}; settings and rosters saved in {path}",
    }
