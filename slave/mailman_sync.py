"""The Mailman backend's check and reload commands: ``python -m domtool.slave.mailman_sync``.

    mailman_sync check --config REST.json INDEX   names valid, Mailman answers, no list
                                                  of INDEX is held by another member
    mailman_sync apply --config REST.json INDEX   create the domains and lists of INDEX,
                                                  make each list's owners exactly these

INDEX is the backend's ``lists.json`` (staged for check, ``current`` for apply). Each
problem is one line on stderr naming the member and the list; the exit status is 0 when
there is none, 1 when there are problems, 2 when Mailman cannot be reached or the files
cannot be read. ``apply`` skips a domain whose unit it applied last time (the ledger keeps
each domain's unit hash) when all its lists still exist, so a change costs REST calls for
the changed domain only. A list not in INDEX is never deleted here (see ``domtool list rm``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable

from domtool import validate
from domtool.slave.mailman_rest import Client, Ledger, RestConfig, RestError


class Unreadable(Exception):
    pass


def load_units(index: str) -> list[tuple[dict, str]]:
    """Each unit of the index with its content hash."""
    try:
        with open(index, encoding="utf-8") as f:
            paths = json.load(f)["units"]
        out = []
        for p in paths:
            with open(p, "rb") as f:
                raw = f.read()
            out.append((json.loads(raw), hashlib.sha256(raw).hexdigest()))
        return out
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise Unreadable(f"cannot read {index}: {e}") from None


def validate_units(units: Iterable[tuple[dict, str]]) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for u, _h in units:
        member = str(u.get("member"))
        try:
            validate.check_unix_name(member)
            domain = validate.check_domain(u.get("domain"))
        except validate.Invalid as e:
            problems.append(f"{member}: list domain: {e}")
            continue
        for ml in u.get("lists", ()):
            try:
                name = validate.check_list_name(ml.get("name"))
                for o in ml.get("owners", ()):
                    validate.check_email(o)
            except (validate.Invalid, AttributeError) as e:
                problems.append(f"{member}: list domain {domain}: {e}")
                continue
            fq = f"{name}@{domain}"
            if fq in seen and seen[fq] != member:
                problems.append(f"{member}: list {fq}: also configured by {seen[fq]}")
            seen[fq] = member
    return problems


def holder_problems(units, existing: set[str], ledger: Ledger) -> list[tuple[str, str]]:
    """(list, problem) for each list that exists in Mailman but was not created for this
    member."""
    out = []
    for u, _h in units:
        member = u["member"]
        for ml in u["lists"]:
            fq = f"{ml['name']}@{u['domain']}"
            holder = ledger.lists.get(fq)
            if fq in existing and holder != member:
                who = f"member {holder}" if holder else "the site (not created by domtool)"
                out.append((fq, f"{member}: list {fq}: already exists in Mailman, held by {who}"))
    return out


def check(client: Client, ledger: Ledger, units) -> list[str]:
    problems = validate_units(units)
    if problems:
        return problems
    return [m for _fq, m in holder_problems(units, client.lists(), ledger)]


def apply(client: Client, ledger: Ledger, units) -> list[str]:
    problems = validate_units(units)
    if problems:
        return problems
    existing = client.lists()
    refused = holder_problems(units, existing, ledger)
    bad = {fq for fq, _m in refused}
    domains: set[str] | None = None
    for u, digest in units:
        member, domain = u["member"], u["domain"]
        fqs = [f"{ml['name']}@{domain}" for ml in u["lists"]]
        if ledger.applied.get(domain) == digest and all(fq in existing for fq in fqs):
            continue
        if domains is None:
            domains = client.domains()
        try:
            if domain not in domains:
                client.create_domain(domain)
                domains.add(domain)
            for ml, fq in zip(u["lists"], fqs, strict=True):
                if fq in bad:
                    continue
                if fq not in existing:
                    client.create_list(fq)
                    existing.add(fq)
                    ledger.lists[fq] = member
                    ledger.save()
                have = client.owners(fq)
                want = set(ml["owners"])
                for email in sorted(want - set(have)):
                    client.add_owner(fq, email)
                for email in sorted(set(have) - want):
                    client.remove_member(have[email])
        except RestError as e:
            problems.append(f"{member}: list domain {domain}: {e}")
            continue
        if not any(fq in bad for fq in fqs):
            ledger.applied[domain] = digest
    live = {u["domain"] for u, _h in units}
    for domain in [d for d in ledger.applied if d not in live]:
        del ledger.applied[domain]
    ledger.save()
    return [m for _fq, m in refused] + problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mailman_sync", description=__doc__.split("\n")[0])
    p.add_argument("verb", choices=("check", "apply"))
    p.add_argument("--config", required=True, help="the REST config file (JSON)")
    p.add_argument("index", help="the backend's lists.json")
    a = p.parse_args(argv)
    try:
        cfg = RestConfig.load(a.config)
        units = load_units(a.index)
        ledger = Ledger.load(cfg.ledger)
        client = Client(cfg)
        problems = (check if a.verb == "check" else apply)(client, ledger, units)
    except (Unreadable, OSError, ValueError) as e:
        print(f"mailman_sync: {e}", file=sys.stderr)
        return 2
    except RestError as e:
        print(f"mailman_sync: {e}", file=sys.stderr)
        return 2
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
