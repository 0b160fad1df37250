"""``domtool-admin grant-key`` and ``sign-grants``: the administrator's grant signing key.

The key is made and kept on the administrator's machine, never on the dispatcher
(``domtool.grantsig``). ``grant-key PATH`` writes a new Ed25519 private key to PATH
(mode 0600) and its public key to PATH.pub, which goes into every slave's
``grant_keys``. ``sign-grants USER --key PATH`` reads USER's grants from the dispatcher
(``perms_of``), shows them, signs them with a serial from the clock (milliseconds, so
each new record is newer) and hands the signed record to the dispatcher
(``put_grants``), which relays it to the slaves. Run it after every ``grant`` and
``revoke``: until then the slaves keep enforcing the previous signed record.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from domtool import grantsig, protocol

PROG = "domtool-admin"


def cmd_grant_key(args: argparse.Namespace) -> int:
    private, public = grantsig.new_signing_key()
    path = args.path
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        print(f"{PROG}: {path}: {e.strerror} (a key is never overwritten)", file=sys.stderr)
        return 1
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    with open(path + ".pub", "wb") as f:
        f.write(public)
    print(
        f"wrote {path} (keep it off the dispatcher) and {path}.pub (key {grantsig.key_id(public)})"
    )
    print(f"add {path}.pub to every slave's grant_keys")
    return 0


def sign_held(ask, user: str, key: bytes, serial: int | None = None):
    """Sign what the dispatcher says USER holds and hand it back (``put_grants``).

    ``ask(op, args)`` is one admin call (a connection's ``call``, or ``call`` bound to a
    config); the serial defaults to the clock in milliseconds, so each record is newer.
    Returns the signed record and the dispatcher's answer."""
    held = protocol.PermsAnswer.read(ask(*protocol.request_of(protocol.PermsOfRequest(user))))
    if held is None:
        raise ValueError(f"the dispatcher's answer to perms_of {user} was not understood")
    if serial is None:
        serial = time.time_ns() // 1_000_000
    record = grantsig.GrantRecord.of(user, serial, held.pairs())
    signed = protocol.PutGrantsRequest(grantsig.sign(record, key).to_json())
    answer = ask(*protocol.request_of(signed))
    return record, answer


def cmd_sign_grants(args: argparse.Namespace) -> int:
    from domtool.client import config as client_config
    from domtool.client.connection import RemoteError, Unreachable, call

    try:
        with open(args.key, "rb") as f:
            key = f.read()
        config = client_config.load(args.config)
        record, answer = sign_held(lambda op, a: call(config, op, a, None), args.user, key)
    except (OSError, client_config.ConfigError, grantsig.GrantSigError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except Unreachable as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 3
    except RemoteError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        for d in getattr(e, "details", ()) or ():
            print(f"  {d}", file=sys.stderr)
        return 1
    for c, v in record.grants:
        print(f"  {c}: {v}")
    kept = protocol.PutGrantsAnswer.read(answer) or protocol.PutGrantsAnswer()
    print(f"signed {args.user}'s {len(record.grants)} grants, serial {kept.serial}")
    return 0


def add_commands(add) -> None:
    """Register the two commands with admin_cli's ``add(name, help, func, remote)``."""
    sp = add(
        "grant-key", "make a new grant signing key PATH and PATH.pub (local)", cmd_grant_key, False
    )
    sp.add_argument("path", metavar="PATH")
    sp = add("sign-grants", "sign USER's current grants for the slaves", cmd_sign_grants)
    sp.add_argument("user", metavar="USER")
    sp.add_argument("--key", required=True, metavar="PATH", help="the grant signing key")
