"""``domtool db``: a member's PostgreSQL and MariaDB databases, through the dispatcher.

::

    domtool db create KIND NAME          a database NAME (alice or alice_*), yours
    domtool db drop KIND NAME [--doit]   without --doit: what would be dropped, nothing else
    domtool db list                      your databases with their sizes, and your roles
    domtool db passwd KIND ROLE          set ROLE's password (for TCP); asked twice on the
                [--password-stdin]       terminal, or the first line of stdin
    domtool db grant KIND DB ROLE        let your role ROLE use your database DB

KIND is ``postgres`` or ``mysql``. Every name lives under your prefix (your login name,
or it and ``_``); the dispatcher refuses anything else before any host is asked. Over
the Unix socket you are authenticated as your Unix user (PostgreSQL ``peer``, MariaDB
``unix_socket``); a password is only for TCP. The password never appears in argv, in
the output or in any log. Exit status as ``domtool``'s: 0 ok, 1 refused, 2 usage, 3
unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from domtool import protocol
from domtool.client.domtool_cli import EXIT_USAGE, UsageError, _common, remote

KINDS = ("postgres", "mysql")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _or_unknown(n: int | None) -> str:
    return "?" if n is None else str(n)


def _endpoint(ep) -> str:
    """A database server's endpoint (``{socket_dir, host, port}``) as the member uses it."""
    e = protocol.DbEndpoint.read(ep) or protocol.DbEndpoint()
    return f"socket {e.socket_dir or e.socket}, TCP {e.host}:{e.port}"


def _shown(render):
    """``render(answer)`` of a ``protocol.DbReply``; an answer that is not one is shown
    as it came."""

    def show(result) -> str:
        answer = protocol.DbReply.read(result)
        if answer is None:
            from domtool.client.show import format_value

            return format_value(result)
        return render(answer)

    show.__doc__ = render.__doc__
    return show


@_shown
def render_list(a: protocol.DbReply) -> str:
    dbs = a.databases or ()
    q = a.quota or protocol.DbQuota()
    lines = [f"{len(dbs)} database(s) on {a.host or '?'} (quota {_or_unknown(q.limit)})"]
    for d in dbs:
        lines.append(f"  {d.kind:<9} {d.name:<32} {_size(int(d.size or 0))}")
    for kind, roles in sorted((a.roles or {}).items()):
        if roles:
            lines.append(f"  {kind} roles: {', '.join(roles)}")
    for kind, ep in sorted((a.endpoints or {}).items()):
        lines.append(f"  {kind}: {_endpoint(ep)}")
    for kind, why in sorted((a.errors or {}).items()):
        lines.append(f"  {kind}: could not be asked: {why}")
    return "\n".join(lines)


@_shown
def render_create(a: protocol.DbReply) -> str:
    e = protocol.DbEndpoint.read(a.endpoint or {}) or protocol.DbEndpoint()
    q = a.quota or protocol.DbQuota()
    return (
        f"{a.message or 'created'}: {a.kind} database {a.name} on "
        f"{a.host or '?'} ({_or_unknown(q.used)}/{_or_unknown(q.limit)} of your quota)\n"
        f"  connect over the socket {e.socket_dir or e.socket} as your Unix user, or over TCP "
        f"{e.host}:{e.port} after `domtool db passwd {a.kind} ROLE`"
    )


@_shown
def render_message(a: protocol.DbReply) -> str:
    if a.message is not None:
        return a.message
    if a.role is not None and a.database is not None:
        return f"granted {a.role} the use of {a.kind} database {a.database}"
    if a.role is not None:
        made = " (role created)" if a.created else ""
        return f"password of {a.kind} role {a.role} set{made}"
    return ""


def read_password(from_stdin: bool) -> str:
    """The new password: the first line of stdin, or asked twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
    else:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask the password on; use --password-stdin")
        password = getpass.getpass("new password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ; nothing was changed")
    if not password:
        raise UsageError("an empty password; nothing was changed")
    return password


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="domtool db",
        description="Your PostgreSQL and MariaDB databases (names under your prefix).",
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create database NAME (yours)")
    c.add_argument("kind", choices=KINDS, metavar="KIND")
    c.add_argument("name", metavar="NAME")
    d = sub.add_parser("drop", help="drop database NAME (a dry run unless --doit)")
    d.add_argument("kind", choices=KINDS, metavar="KIND")
    d.add_argument("name", metavar="NAME")
    d.add_argument("--doit", action="store_true", help="really drop it (its data is gone)")
    sub.add_parser("list", help="your databases, their sizes, your roles")
    w = sub.add_parser("passwd", help="set ROLE's password (for TCP connections)")
    w.add_argument("kind", choices=KINDS, metavar="KIND")
    w.add_argument("role", metavar="ROLE")
    w.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    g = sub.add_parser("grant", help="let your role ROLE use your database DB")
    g.add_argument("kind", choices=KINDS, metavar="KIND")
    g.add_argument("database", metavar="DB")
    g.add_argument("role", metavar="ROLE")
    for s in (p, c, d, sub.choices["list"], w, g):
        _common(s)
    return p


def _global_options(argv: list[str]) -> tuple[list[str], str | None, bool]:
    """``--config PATH`` and ``--json`` may come anywhere (``domtool --config C db list``):
    take them out; the rest, the config path, and whether JSON was asked."""
    rest, config, as_json, i = [], None, False, 0
    while i < len(argv):
        a = argv[i]
        if a == "--config" and i + 1 < len(argv):
            config, i = argv[i + 1], i + 2
            continue
        if a.startswith("--config="):
            config = a.split("=", 1)[1]
        elif a == "--json":
            as_json = True
        else:
            rest.append(a)
        i += 1
    return rest, config, as_json


def main(argv: list[str]) -> int:
    """``domtool db ACTION ...``; the exit status."""
    rest, config, as_json = _global_options(argv)
    try:
        args = build_parser().parse_args(rest)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    args.config, args.json = config, as_json
    prog = "domtool db"
    a = args.action
    if a == "create":
        return remote(prog, args, protocol.DbCreateRequest(args.kind, args.name), render_create)
    if a == "drop":
        request = protocol.DbDropRequest(args.kind, args.name, bool(args.doit))
        return remote(prog, args, request, render_message)
    if a == "list":
        return remote(prog, args, protocol.DbListRequest(), render_list)
    if a == "passwd":
        password = read_password(args.password_stdin)
        request = protocol.DbPasswdRequest(args.kind, args.role, password)
        return remote(prog, args, request, render_message)
    request = protocol.DbGrantRequest(args.kind, args.database, args.role)
    return remote(prog, args, request, render_message)
