"""``domtool list``: the member's mailing list command (lists are declared in the config).

    domtool list rm ADDRESS [--doit]   delete a list you removed from your config from
                                       Mailman (a dry run unless --doit; the archive is
                                       kept and its settings and rosters are exported)

Lists are created and changed by submitting a config with ``mailingList`` (see
``domtool doc``); ``rm`` is for deleting one for good once it is out of the config.
"""

from __future__ import annotations

import argparse

from domtool import protocol

HELP = "delete a mailing list from Mailman once it is out of your config (list rm ADDRESS)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("rm",), help="rm: delete a list (dry run unless --doit)")
    p.add_argument("address", metavar="ADDRESS", help="the list, NAME@DOMAIN")
    p.add_argument("--doit", action="store_true", help="really delete it (default: dry run)")


def _answer(result) -> protocol.ListRmAnswer:
    return protocol.ListRmAnswer.read(result) or protocol.ListRmAnswer()


def render(result: dict) -> str:
    a = _answer(result)
    lines = []
    for host, held in sorted((a.hosts or {}).items()):
        done, error = protocol.ListRemoveAnswer.read(held), protocol.HostError.read(held)
        msg = (done and done.message) or (error and error.error) or held
        lines.append(f"{host}: {msg}")
    if not a.doit:
        lines.append(f"(dry run: nothing was removed; `domtool list rm {a.list} --doit`)")
    return "\n".join(lines)


def failed(result: dict) -> bool:
    """--doit that removed nothing anywhere is a failure (exit status 1)."""
    a = _answer(result)
    hosts = (a.hosts or {}).values()
    return any(protocol.HostError.read(h) is not None for h in hosts) or (
        bool(a.doit) and not a.removed
    )


def run(args: argparse.Namespace) -> int:
    from domtool.client.domtool_cli import remote

    request = protocol.ListRmRequest(args.address, bool(args.doit))
    return remote("domtool", args, request, render, failed)
