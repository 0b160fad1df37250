"""``domtool vmail``: the member's virtual mailboxes (Courier IMAP), by full address.

::

    domtool vmail add DOMAIN USER [--password-stdin] [--mail-user NAME]
    domtool vmail passwd DOMAIN USER [--password-stdin]
    domtool vmail rm DOMAIN USER [--purge] [--doit]
    domtool vmail list [DOMAIN]

The IMAP login of a mailbox is ``USER@DOMAIN``. The password is read from the terminal
(asked twice) or, with ``--password-stdin``, from the first line of standard input; it is
never an argument (so never in ``ps`` or a shell history) and never leaves this machine:
it is hashed here (SHA-512 crypt, ``domtool.mailhash``) and only the hash is sent. ``rm``
is a dry run unless ``--doit``, and keeps the maildir unless ``--purge``. Mailboxes count
against your ``mailboxes`` quota; the maildir belongs to your mail user (``--mail-user``,
default your member name when it is one of your users).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from domtool.mailhash import MAX_PASSWORD, sha512_crypt
from domtool.protocol import VmailRequest, VmailResult


class PasswordError(ValueError):
    pass


def read_password(args: argparse.Namespace, stdin=None, prompt=getpass.getpass) -> str:
    if args.password_stdin:
        line = (stdin or sys.stdin).readline()
        password = line[:-1] if line.endswith("\n") else line
    else:
        password = prompt("New mailbox password: ")
        if prompt("Again: ") != password:
            raise PasswordError("the two passwords differ")
    if not password:
        raise PasswordError("the password is empty")
    if len(password.encode()) > MAX_PASSWORD:
        raise PasswordError(f"the password is longer than {MAX_PASSWORD} bytes")
    return password


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("add", "passwd", "rm", "list"))
    p.add_argument("domain", metavar="DOMAIN", nargs="?")
    p.add_argument("user", metavar="USER", nargs="?")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    p.add_argument("--mail-user", metavar="NAME", help="the Unix user owning the maildir (add)")
    p.add_argument("--purge", action="store_true", help="rm: delete the maildir too")
    p.add_argument("--doit", action="store_true", help="rm: really remove (default: dry run)")


def request(args: argparse.Namespace, stdin=None, prompt=getpass.getpass) -> VmailRequest:
    """The ``vmail`` request (the password hashed here)."""
    a = args.action
    if a != "list" and (args.domain is None or args.user is None):
        raise PasswordError(f"vmail {a} needs DOMAIN and USER")
    return VmailRequest(
        a,
        domain=args.domain,
        user=args.user if a != "list" else None,
        hash=sha512_crypt(read_password(args, stdin, prompt)) if a in ("add", "passwd") else None,
        mail_user=(args.mail_user or None) if a == "add" else None,
        purge=bool(args.purge) if a == "rm" else None,
        doit=bool(args.doit) if a == "rm" else None,
    )


def op_args(args: argparse.Namespace, stdin=None, prompt=getpass.getpass) -> dict:
    """The ``vmail`` request's JSON arguments (what :func:`request` sends)."""
    return request(args, stdin, prompt).to_json()


def render(result) -> str:
    answer = VmailResult.read(result)
    if answer is not None and answer.mailboxes is not None:
        if not answer.mailboxes:
            return "no mailboxes"
        return "\n".join(f"{b.address}  ({b.mail_user or '?'})" for b in answer.mailboxes)
    if answer is not None and answer.dry_run:
        hosts = ", ".join(answer.hosts or ())
        return f"would {answer.would} on {hosts}; again with --doit"
    if answer is not None and answer.address is not None:
        hosts = ", ".join(sorted(answer.hosts or ()))
        return f"{answer.action}: {answer.address} on {hosts}"
    from domtool.client.show import format_value

    return format_value(result)


def cmd_vmail(args: argparse.Namespace) -> int:
    from domtool.client.domtool_cli import EXIT_USAGE, remote

    try:
        vmail_request = request(args)
    except PasswordError as e:
        print(f"domtool vmail: {e}", file=sys.stderr)
        return EXIT_USAGE
    return remote("domtool", args, vmail_request, render)
