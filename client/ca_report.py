"""``domtool-admin ca status`` and ``ca renew``: what expires when and what renews it, and
the renewal the package's timer runs (``dispatcher/renewal.py`` does the work)."""

from __future__ import annotations

import argparse
import sys

from domtool.client.connection import dumps
from domtool.dispatcher import ca, renewal

PROG = "domtool-admin"


def cmd_status(args: argparse.Namespace) -> int:
    """Every CA, CRL and certificate with its expiry; exit 1 if any needs action now."""
    items = renewal.status(args.dir, args.state)
    if getattr(args, "json", False):
        print(dumps([i.to_json() for i in items]))
    else:
        for i in items:
            flag = "DUE  " if i.due else "ok   "
            serial = f" serial {i.serial}" if i.serial else ""
            print(f"{flag}{i.what:<18} {i.name}{serial}: until {i.expires:%Y-%m-%d %H:%M} UTC")
            print(f"       renewed by: {i.renews}" + (f" [{i.path}]" if i.path else ""))
    return 1 if any(i.due for i in items) else 0


def cmd_renew(args: argparse.Namespace) -> int:
    """Re-sign CRLs past half their life, reissue host certificates near their end."""
    done = renewal.renew(args.dir, args.state, force=args.force)
    if getattr(args, "json", False):
        print(dumps({"done": done}))
    else:
        print("\n".join(done) if done else "nothing to renew")
    return 0


def add_parsers(ca_add) -> None:
    """``ca status`` and ``ca renew`` for ``domtool-admin``'s ``ca_add(name, help)``."""
    sp = ca_add(
        "status",
        "every CA, CRL and certificate, its expiry and what renews it (exit 1 if any is due)",
    )
    sp.add_argument(
        "--state", metavar="DIR", help="the dispatcher's state dir (its tls/ is renewed)"
    )
    sp = ca_add(
        "renew",
        "re-sign CRLs past half their life and reissue host certificates near their end (the timer's job)",
    )
    sp.add_argument("--state", metavar="DIR", help="also renew the host certificates under DIR/tls")
    sp.add_argument("--force", action="store_true", help="renew everything now")


def run(args: argparse.Namespace) -> int:
    try:
        return cmd_status(args) if args.ca_command == "status" else cmd_renew(args)
    except (ca.CAError, OSError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
