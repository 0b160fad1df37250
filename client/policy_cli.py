"""``domtool-admin firewall ...`` and ``domtool firewall``: admin-set member policy on
the command line (ops of ``domtool.dispatcher.policy_ops``).

Admin::

    domtool-admin firewall list [USER]              stored rules, effective rules, hosts
    domtool-admin firewall add USER RULE...         e.g. alice client tcp 80,443 to 10.0.0.0/8
    domtool-admin firewall add --site RULE...       a site default (for every member's users)
    domtool-admin firewall remove USER|--site RULE...
    domtool-admin firewall rate USER|--site RATE    outbound bytes/s (500k, 10M, none)
    domtool-admin firewall clear USER|--site
    domtool-admin firewall check [USER]             stored policy vs grants, proxies, hosts

RULE is ``[USER] client|server|proxied|local [tcp|udp] PORTS [to HOST,...]``. ``add``,
``remove``, ``rate`` and ``clear`` apply to every host at once (``--dry-run``: only show
the plan). Member: ``domtool firewall`` shows your rules as each host holds them.

Another part (limits) registers its verbs with :func:`add_part` the same way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from domtool import protocol

ADMIN = "domtool-admin"


def _remote(prog: str, build, render) -> Callable[[argparse.Namespace], int]:
    """A command sending ``build(args)`` (a ``domtool.protocol`` request object)."""
    from domtool.client.domtool_cli import remote

    def run(args: argparse.Namespace) -> int:
        return remote(prog, args, build(args), render, failed=_failed)

    return run


def _failed(result) -> bool:
    answer = protocol.ChangeAnswer.read(result)
    return (
        answer is not None
        and answer.applied is False
        and not (answer.message or "").startswith("dry run")
    )


def shown(cls: type):
    """``render(answer)`` of an answer of ``cls`` (a ``domtool.protocol`` reply); one
    that is not is shown as it came."""

    def wrap(render):
        def show(result) -> str:
            answer = cls.read(result)
            if answer is None:
                from domtool.client.show import format_value

                return format_value(result)
            return render(answer)

        show.__doc__ = render.__doc__
        return show

    return wrap


@shown(protocol.PolicyShowAnswer)
def render_show(answer: protocol.PolicyShowAnswer) -> str:
    out = []
    for part, value in sorted((answer.site or {}).items()):
        out.append(f"site defaults ({part}): {value}")
    for name, m in sorted((answer.members or {}).items()):
        lines = m.lines or ()
        out.append(f"{name}: " + ("no policy" if not lines and not m.effective else ""))
        out += [f"  {line}" for line in lines]
        if m.hosts:
            out.append(f"  held by: {', '.join(sorted(m.hosts))}")
    return "\n".join(out)


@shown(protocol.ChangeAnswer)
def render_set(answer: protocol.ChangeAnswer) -> str:
    out = [answer.message or ""]
    for name, hosts in sorted((answer.plan or {}).items()):
        for host, diff in sorted(hosts.items()):
            d = protocol.HostDiff.read(diff) or protocol.HostDiff()
            out.append(f"  {name} on {host}: {', '.join(d.keys())}")
    out += [f"  refused: {r}" for r in answer.refused or ()]
    return "\n".join(x for x in out if x)


@shown(protocol.PolicyCheckAnswer)
def render_check(answer: protocol.PolicyCheckAnswer) -> str:
    out = ["ok: every member's policy is valid and on every host" if answer.ok else ""]
    for name, m in sorted((answer.members or {}).items()):
        for p in m.problems or ():
            out.append(f"{name}: {p}")
        if m.out_of_sync:
            out.append(
                f"{name}: hosts out of sync: {', '.join(m.out_of_sync)} "
                "(domtool-admin regen --doit pushes again)"
            )
    return "\n".join(x for x in out if x)


@shown(protocol.MemberPolicyAnswer)
def render_mine(answer: protocol.MemberPolicyAnswer) -> str:
    lines = list(answer.lines or ())
    out = [f"{answer.member}: " + ("no firewall policy" if not lines else "")]
    out += [f"  {line}" for line in lines]
    for host, held in sorted((answer.hosts or {}).items()):
        got = list(held.lines or ())
        same = "as above" if got == lines else "; ".join(got) or "nothing"
        live = held.live
        note = (
            ""
            if live is None
            else (" (live in the kernel)" if live is True else f" (NOT live: {live})")
        )
        source = held.source or "host"
        src = "" if source == "host" else f" [from the dispatcher's {source}]"
        out.append(f"  on {host}: {same}{note}{src}")
    return "\n".join(out)


def _who(args: argparse.Namespace, words: Sequence[str]) -> tuple[str | None, list[str]]:
    """The member named first (None with ``--site``) and the words after."""
    from domtool.client.domtool_cli import UsageError

    if args.site:
        return None, list(words)
    if not words:
        raise UsageError("name a member (USER) or --site")
    return words[0], list(words[1:])


def add_part(add, part: str, help_text: str, verbs: dict[str, tuple[str, str]], show=None) -> None:
    """Register ``domtool-admin PART VERB ...`` commands for one policy part.

    ``verbs``: verb -> (help, metavar of the value or "" for none). Besides them every
    part gets ``list [USER]`` and ``check [USER]``; ``show`` renders ``list``'s answer
    (default :func:`render_show`)."""
    top = add(part, help_text, None)
    sub = top.add_subparsers(dest=f"{part}_command", metavar="VERB", required=True)

    def verb(name: str, text: str, func) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sp.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS)
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
        sp.set_defaults(func=func)
        return sp

    sp = verb(
        "list",
        f"show every member's (or USER's) {part} policy",
        _remote(
            ADMIN,
            lambda a: protocol.PolicyShowRequest(a.user or None),
            show or render_show,
        ),
    )
    sp.add_argument("user", metavar="USER", nargs="?")
    sp = verb(
        "check",
        "check stored policy against grants and proxies, and which hosts differ",
        _remote(ADMIN, lambda a: protocol.PolicyCheckRequest(a.user or None), render_check),
    )
    sp.add_argument("user", metavar="USER", nargs="?")
    for name, (text, metavar) in verbs.items():

        def build(a: argparse.Namespace, name=name, metavar=metavar) -> protocol.PolicySetRequest:
            user, rest = _who(a, a.words)
            value = None
            if metavar:
                from domtool.client.domtool_cli import UsageError

                if not rest:
                    raise UsageError(f"{part} {name} needs {metavar}")
                value = " ".join(rest)
            return protocol.PolicySetRequest(
                part,
                name,
                user=user,
                site=True if user is None else None,
                value=value,
                dry_run=True if a.dry_run else None,
            )

        sp = verb(name, text, _remote(ADMIN, build, render_set))
        sp.add_argument("--site", action="store_true", help="the site's defaults, not a member's")
        sp.add_argument("--dry-run", action="store_true", help="only show what would change")
        sp.add_argument(
            "words", nargs="*", metavar=f"USER {metavar}".strip(), help="the member, then the value"
        )


def add_admin_commands(add) -> None:
    """``domtool-admin firewall ...`` (admin_cli's ``add(name, help, func)``)."""
    add_part(
        add,
        "firewall",
        "members' network policy: list, add, remove, rate, clear, check",
        {
            "add": ("add a rule for USER (or --site)", "RULE"),
            "remove": ("remove one of USER's (or the site's) rules", "RULE"),
            "rate": ("set USER's (or the site's) outbound rate in bytes/s", "RATE"),
            "clear": ("remove USER's (or the site's) whole firewall policy", ""),
        },
    )
