"""``domtool logs VHOST [--error] [--tail N]``: a member reads its own vhost's Apache logs.

The web host's log splitter (``slave/logsplit.py``) writes them to
``<log dir>/<member>/<fqdn>.access.log`` and ``.error.log``, owned by the member, mode 0600,
in a directory only the member's group may enter. This command opens the file of the
member running it (the login name of the effective uid); the file system decides who may
read what, so another member's logs are refused with the operating system's own answer.
Run it on the web host (or wherever the log directory is mounted); ``--log-dir`` or
``DOMTOOL_LOG_DIR`` name another place than ``/var/log/domtool``.
"""

from __future__ import annotations

import argparse
import collections
import os
import pwd
import sys
from pathlib import Path

LOG_DIR = "/var/log/domtool"
HELP = "show your vhost VHOST's access (or --error) log from this web host"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="domtool logs", description=HELP[0].upper() + HELP[1:] + ".")
    p.add_argument("vhost", metavar="VHOST", help="the vhost's name, e.g. www.example.org")
    p.add_argument("--error", action="store_true", help="the error log instead of the access log")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument(
        "--log-dir",
        default=os.environ.get("DOMTOOL_LOG_DIR", LOG_DIR),
        metavar="DIR",
        help=f"the members' log directory (default $DOMTOOL_LOG_DIR or {LOG_DIR})",
    )
    return p


def cmd_logs(args: argparse.Namespace) -> int:
    me = pwd.getpwuid(os.geteuid()).pw_name
    name = args.vhost.strip().lower().rstrip(".")
    if not name or "/" in name or name.startswith("."):
        print(f"domtool: logs: {args.vhost!r} is not a vhost name", file=sys.stderr)
        return 2
    if args.tail is not None and args.tail < 0:
        print("domtool: logs: --tail needs a count of 0 or more", file=sys.stderr)
        return 2
    kind = "error" if args.error else "access"
    path = Path(args.log_dir) / me / f"{name}.{kind}.log"
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:
        print(
            f"domtool: logs: no {kind} log of {name} among {me}'s logs ({path}): is {name} "
            "your vhost, served from this host, and has it had any "
            + ("errors?" if args.error else "requests?"),
            file=sys.stderr,
        )
        return 1
    except PermissionError:
        print(f"domtool: logs: {path}: permission denied (the logs of {me} only)", file=sys.stderr)
        return 1
    with f:
        lines = collections.deque(f, maxlen=args.tail) if args.tail is not None else f
        out = sys.stdout.buffer
        for line in lines:
            out.write(line)
        out.flush()
    return 0
