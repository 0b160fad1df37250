"""``domtool``: the member's command.

Offline::

    domtool -tc [--perms FILE] [--user NAME] [--show] [--json] FILE...
    domtool doc

With the dispatcher (over mutual TLS, see ``domtool.client.connection``; the client
configuration is ``--config PATH`` or ``~/.domtool/client.toml``, see
``domtool.client.config``)::

    domtool [FILE...]             submit (default: every file in ~/.domtool named like a domain)
    domtool plan FILE...          what a submit would change on each host, applying nothing
    domtool perms | whoami        your permissions / who the dispatcher thinks you are
    domtool describe DOMAIN       what DOMAIN became on each host
    domtool history DOMAIN        the stored versions of DOMAIN's source
    domtool undo DOMAIN [VERSION] put back an earlier version (default: the one before)
    domtool rmdom DOMAIN          remove DOMAIN's configuration from every host
    domtool vmail add|passwd|rm|list ...  virtual mailboxes (``domtool.client.vmail_cli``)
    domtool db ACTION ...         your databases: create, drop, list, passwd, grant
                                  (``domtool.client.db_cli``)
    domtool list rm ADDRESS [--doit]  delete a mailing list out of your config from Mailman
    domtool firewall              your network policy as each host holds it
    domtool limits                your resource limits as each host holds them
    domtool usage                 what you use on each host

``domtool -tc`` without ``--perms`` checks with your permissions as the dispatcher holds
them when a client configuration exists, else with none. Every command takes ``--json``.

Exit status: 0 ok; 1 when a file has errors or the dispatcher refused (errors on stderr,
type errors in the published shape ``FILE:L.C-L.C:error: MESSAGE``); 2 for usage errors
(bad options, unreadable files, permissions or configuration); 3 when the dispatcher
cannot be reached (connection, or TLS: which certificate was refused and why).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from domtool import protocol
from domtool.client import list_cli, logs_cli, policy_cli

if TYPE_CHECKING:
    from domtool.perms import Permissions

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageError(Exception):
    """A problem with how the command was called (exit status 2)."""


def _load_perms(path: str | None, user: str, config_path: str | None = None):
    from domtool.perms import Permissions, PermsError, parse_perms

    if path is None:
        remote, why = _dispatcher_perms(config_path)
        if remote is not None:
            return remote
        print(
            f"domtool: note: no --perms given and {why}; checking as {user} "
            "with no permissions (every your_* value will be refused)",
            file=sys.stderr,
        )
        return Permissions(
            user=user, domains=frozenset(), paths=frozenset(), users=frozenset(), groups=frozenset()
        )
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read permissions file {path}: {e}") from e
    try:
        return parse_perms(text, user)
    except PermsError as e:
        raise UsageError(f"{path}: {e}") from e


def _dispatcher_perms(config_path: str | None):
    """Your permissions as the dispatcher holds them, or (None, why not)."""
    from domtool.client import config as client_config
    from domtool.client.connection import RemoteError, Unreachable, ask

    if config_path is None and not client_config.default_path().exists():
        return None, "no client configuration (~/.domtool/client.toml)"
    try:
        config = client_config.load(config_path)
    except client_config.ConfigError as e:
        raise UsageError(str(e)) from None
    try:
        result = ask(config, protocol.PermsRequest())
    except (Unreachable, RemoteError) as e:
        return None, str(e)
    try:
        return perms_from_result(result), ""
    except ValueError as e:
        return None, f"the dispatcher's answer to perms was not understood ({e})"


def perms_from_result(result) -> Permissions:
    """A ``Permissions`` from the dispatcher's answer to ``perms`` (``protocol.PermsAnswer``:
    the user with ``grants`` as ``{class, value}`` or ``[class, value]``, or else the
    ``perms`` by class)."""
    from domtool.perms import Permissions, PermsError

    answer = protocol.PermsAnswer.read(result)
    if answer is None or answer.user is None:
        raise ValueError("expected an object naming the user")
    grants = answer.pairs() if answer.grants is not None else answer.by_class()
    try:
        return Permissions.from_grants(answer.user, grants)
    except PermsError as e:
        raise ValueError(str(e)) from None


def _read_sources(paths: list[str]) -> list[tuple[str, str]]:
    out = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read {p}: {e.strerror or e}") from e
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            text = None
            bad = e.start
        if text is None:
            # Let the checker report it in the usual shape, with the position.
            line = data.count(b"\n", 0, bad) + 1
            col = bad - (data.rfind(b"\n", 0, bad) + 1)
            raise _EncodingError(f"{p}:{line}.{col}-{line}.{col}:error: file is not UTF-8 text")
        out.append((p, text))
    return out


class _EncodingError(Exception):
    pass


def check_files(
    paths: list[str], perms: Permissions, prog: str, note: str = "", offline: bool = False
):
    """Read ``paths`` and check them for ``perms`` (``lang.api.check_source``). Errors go to
    stderr, then ``PROG: N errors`` plus ``note``; None when a file could not be read (said
    on stderr)."""
    from domtool.lang.api import check_source
    from domtool.lang.errors import format_all

    try:
        sources = _read_sources(paths)
    except _EncodingError as e:
        print(str(e), file=sys.stderr)
        return None
    result = check_source(sources, perms, offline=offline)
    if result.notes:  # self-contained programs (-tc only): checked, not evaluated
        print(format_all(result.notes), file=sys.stderr)
    if result.diagnostics:
        print(format_all(result.diagnostics), file=sys.stderr)
        n = len(result.diagnostics)
        print(f"{prog}: {n} error{'s' if n != 1 else ''}{note}", file=sys.stderr)
    return result


def cmd_typecheck(args: argparse.Namespace) -> int:
    from domtool.client.show import format_state
    from domtool.model import to_json

    user = args.user or getpass.getuser()
    perms = _load_perms(args.perms, user, args.config)
    result = check_files(args.files, perms, "domtool", offline=True)
    if result is None:
        return EXIT_ERRORS
    if result.state is not None and (args.show or args.json):
        if args.json:
            print(json.dumps(to_json(result.state), indent=2, sort_keys=True))
        else:
            print(format_state(result.state))
    return EXIT_ERRORS if result.diagnostics else EXIT_OK


def cmd_doc(args: argparse.Namespace) -> int:
    from domtool.lang.docgen import reference_markdown

    print(reference_markdown())
    return EXIT_OK


# ---------------------------------------------------------------------------
# Talking to the dispatcher


def _progress(p: dict) -> None:
    """Print one progress frame on stderr: ``[3/10] host web1 prepared``."""
    done, total, what = p.get("done"), p.get("total"), p.get("what", "")
    print(f"  [{done}/{total}] {what}", file=sys.stderr, flush=True)


def remote(prog: str, args: argparse.Namespace, request, render, failed=None) -> int:
    """Send one request (a ``domtool.protocol`` request object) and print its answer
    (``render(result)`` or JSON); the exit status.

    ``failed(result)`` true makes the exit status 1 (an answer saying "not applied").
    Shared by ``domtool`` and ``domtool-admin``."""
    from domtool.client import config as client_config
    from domtool.client.connection import RemoteError, Unreachable, ask, dumps

    try:
        config = client_config.load(args.config)
    except client_config.ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = ask(config, request, None if args.json else _progress)
    except Unreachable as e:
        if args.json:
            print(dumps({"ok": False, "error": {"kind": "unreachable", "message": str(e)}}))
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RemoteError as e:
        if args.json:
            print(dumps({"ok": False, "error": e.to_json()}))
        print_refusal(prog, e)
        return EXIT_ERRORS
    if args.json:
        print(dumps(result))
    else:
        text = render(result)
        if text:
            print(text)
    if failed is not None and failed(result):
        return EXIT_ERRORS
    return EXIT_OK


def print_refusal(prog: str, e) -> None:
    """A refusal on stderr: type errors in the published shape, else kind, message, details."""
    if e.kind == "type_errors":
        for d in e.details:
            print(d, file=sys.stderr)
        n = len(e.details)
        print(f"{prog}: {e.message or f'{n} error' + ('s' if n != 1 else '')}", file=sys.stderr)
        return
    label = {"unauthorized": "not allowed", "policy": "refused by site policy"}.get(e.kind, e.kind)
    print(f"{prog}: {label}: {e.message}", file=sys.stderr)
    for d in e.details:
        if d not in e.message:
            print(f"  {d}", file=sys.stderr)


def _files_arg(paths: list[str]) -> tuple[protocol.SourceFile, ...]:
    """The files of a ``submit`` or ``plan``, each named after its domain; usage errors
    for bad names/files."""
    from domtool.protocol import DOMAIN, MAX_FILE_BYTES, MAX_FILES

    if len(paths) > MAX_FILES:
        raise UsageError(f"{len(paths)} files: at most {MAX_FILES} in one submission; split them")
    try:
        sources = _read_sources(paths)
    except _EncodingError as e:
        raise UsageError(str(e)) from None
    out = []
    for path, text in sources:
        name = Path(path).name
        if not DOMAIN.fullmatch(name):
            raise UsageError(
                f"{path}: a config file is named after its domain (like example.org); "
                f"{name!r} is not a domain name"
            )
        if len(text.encode()) > MAX_FILE_BYTES:
            raise UsageError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
        out.append(protocol.SourceFile(name, text))
    return tuple(out)


# Files that live in ~/.domtool but are not domain configs (client.toml, keys...).
NOT_DOMAIN_SUFFIXES = frozenset(
    {".toml", ".pem", ".key", ".crt", ".perms", ".bak", ".orig", ".txt"}
)


def default_files() -> list[str]:
    """Every file in ``~/.domtool/`` named like a domain (what a bare ``domtool`` submits)."""
    from domtool.protocol import DOMAIN

    home = Path.home() / ".domtool"
    if not home.is_dir():
        raise UsageError(f"no FILE given and {home} does not exist; name the files to submit")
    files = sorted(
        str(p)
        for p in home.iterdir()
        if p.is_file()
        and DOMAIN.fullmatch(p.name)
        and "." in p.name
        and p.suffix.lower() not in NOT_DOMAIN_SUFFIXES
    )
    if not files:
        raise UsageError(f"no FILE given and no file in {home} is named like a domain")
    return files


def _hosts_lines(answer: protocol.ChangeAnswer) -> list[str]:
    """Per-host lines of a change's answer (``protocol.HostReport``: generation, status,
    verified, message), whatever of those fields it carries."""
    lines = []
    for name, h in (answer.hosts or {}).items():
        bits = []
        if h.status:
            bits.append(h.status)
        if h.generation is not None:
            bits.append(f"generation {h.generation}")
        if h.verified:
            bits.append(f"{len(h.verified)} check(s) answered")
        line = f"  {name}: {'; '.join(bits) or 'ok'}"
        if h.message:
            line += f"\n      {h.message}"
        lines.append(line)
    return lines


def apply_failed(result) -> bool:
    """An answer that says the change did not go through (``applied: false``)."""
    answer = protocol.ChangeAnswer.read(result)
    return answer is not None and answer.applied is False


def format_plan(plan) -> list[str]:
    """``{HOST: {added, changed, removed}}`` as one line per host (``+`` ``~`` ``-``)."""
    lines = []
    if not isinstance(plan, dict):
        return lines
    for host, diff in sorted(plan.items()):
        d = protocol.HostDiff.read(diff)
        if d is None:
            continue
        bits = [f"+{k}" for k in d.added or ()]
        bits += [f"~{k}" for k in d.changed or ()]
        bits += [f"-{k}" for k in d.removed or ()]
        lines.append(f"  {host}: {' '.join(bits) if bits else 'no change'}")
    return lines


def render_apply(result) -> str:
    """An apply's answer: applied or not (with the reasons), what changed on each host,
    each host's result, the stored versions. Type errors go to stderr, in the published
    shape."""
    from domtool.client.show import format_value

    answer = protocol.ChangeAnswer.read(result)
    if answer is None:
        return format_value(result)
    for d in answer.diagnostics or ():
        print(d, file=sys.stderr)
    if answer.applied is None:
        head = answer.message or "done"
    elif answer.applied:
        head = answer.message or "applied"
    else:
        head = "NOT applied: nothing changed on any host"
    out = [head]
    for r in answer.refused or ():
        out.append(f"  refused: {r}")
    plan = format_plan(answer.plan)
    if plan:
        out.append("changes:")
        out.extend(plan)
    hosts = _hosts_lines(answer)
    if hosts:
        out.append("hosts:")
        out.extend(hosts)
    if answer.versions:
        stored = ", ".join(f"{d} v{v}" for d, v in sorted(answer.versions.items()))
        out.append("stored: " + stored)
    rest = {
        k: v
        for k, v in answer.to_json().items()
        if k not in protocol.ChangeAnswer.SHOWN and v not in (None, [], {})
    }
    if rest:
        out.append(format_value(rest))
    return "\n".join(out)


def render_describe(result) -> str:
    """What DOMAIN is on each host: the host's generation, then its zones, vhosts and
    mail domains as ``domtool -tc --show`` prints them."""
    from domtool.client.show import format_state, format_value

    answer = protocol.DescribeResult.read(result)
    if answer is None or answer.hosts is None:
        return format_value(result)
    out = []
    for name, h in sorted(answer.hosts.items()):
        error = protocol.HostError.read(h)
        if error is not None or not isinstance(h, dict):
            out.append(f"{name}: cannot describe: {h if error is None else error.error}")
            continue
        held = protocol.DescribeAnswer.read(h)
        if held is None:
            out.append(f"{name} ({name}), generation None:")
            text = format_value({k: v for k, v in h.items() if k not in ("host", "generation")})
        else:
            out.append(f"{name} ({held.host or name}), generation {held.generation}:")
            text = format_state(held.state)
        out.extend("  " + line for line in text.split("\n"))
    if not out:
        out.append(f"no host serves anything of {answer.domain or 'the domain'}")
    return "\n".join(out)


def render_plan(result) -> str:
    """``domtool plan``: what would change on each host, or why it would be refused."""
    from domtool.client.show import format_value

    answer = protocol.PlanAnswer.read(result)
    if answer is None or answer.hosts is None:
        return format_value(result)
    for d in answer.diagnostics or ():
        print(d, file=sys.stderr)
    if answer.ok is False:
        lines = ["would be refused:"]
        lines += [f"  {r}" for r in answer.refused or ()]
        return "\n".join(lines)
    lines = format_plan(answer.hosts)
    return "would change:\n" + "\n".join(lines) if lines else "no host would change"


def plan_failed(result) -> bool:
    answer = protocol.PlanAnswer.read(result)
    return answer is not None and answer.ok is False


def render_generic(result) -> str:
    from domtool.client.show import format_value

    return format_value(result)


def render_perms(result) -> str:
    from domtool.perms import format_perms

    try:
        perms = perms_from_result(result)
    except ValueError:
        return render_generic(result)
    text = format_perms(perms).rstrip("\n")
    return f"{perms.user}:\n" + (
        "\n".join("  " + line for line in text.split("\n")) if text else "  (nothing granted)"
    )


def render_history(result) -> str:
    """One line per stored version: number, time, accepted/refused/removed."""
    from domtool.client.show import format_value

    answer = protocol.HistoryAnswer.read(result)
    if answer is None or answer.versions is None:
        return format_value(result)
    versions = answer.versions
    lines = []
    if answer.domain:
        lines.append(f"{answer.domain}:")
    for v in versions:
        what = "removed" if v.removed else ("refused" if v.accepted is False else "accepted")
        number = "?" if v.version is None else v.version
        lines.append(f"  v{number:<4} {v.submitted_at or '':<32} {what}".rstrip())
    if not versions:
        lines.append("  (no stored versions)")
    lines.append("(put one back with: domtool undo DOMAIN VERSION)")
    return "\n".join(lines)


def cmd_submit(args: argparse.Namespace) -> int:
    files = _files_arg(args.files or default_files())
    return remote("domtool", args, protocol.SubmitRequest(files), render_apply, apply_failed)


def cmd_plan(args: argparse.Namespace) -> int:
    files = _files_arg(args.files)
    return remote("domtool", args, protocol.PlanRequest(files), render_plan, plan_failed)


def cmd_simple(op: str, render=render_generic):
    def run(args: argparse.Namespace) -> int:
        op_args = {}
        if getattr(args, "domain", None) is not None:
            op_args["domain"] = args.domain
        if op == "undo":
            op_args["version"] = args.version or _previous_version(args)
        failed = apply_failed if op in ("undo", "rmdom") else None
        return remote("domtool", args, protocol.REQUESTS[op](**op_args), render, failed)

    return run


def _previous_version(args: argparse.Namespace) -> int:
    """The version before the latest in DOMAIN's history (what a bare ``undo`` puts back)."""
    from domtool.client import config as client_config
    from domtool.client.connection import RemoteError, Unreachable, ask

    try:
        result = ask(client_config.load(args.config), protocol.HistoryRequest(args.domain))
    except (client_config.ConfigError, Unreachable, RemoteError) as e:
        raise UsageError(f"undo without VERSION needs the history of {args.domain}: {e}") from None
    answer = protocol.HistoryAnswer.read(result)
    versions = () if answer is None else answer.versions or ()
    numbers = sorted(v.version for v in versions if v.version is not None)
    if len(numbers) < 2:
        raise UsageError(f"{args.domain} has no earlier version to put back (see: domtool history)")
    return numbers[-2]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="PATH",
        help="client configuration (default ~/.domtool/client.toml)",
    )
    p.add_argument("--json", action="store_true", help="print the answer as JSON (for scripts)")


def _cmd_vmail(args: argparse.Namespace) -> int:
    from domtool.client.vmail_cli import cmd_vmail

    return cmd_vmail(args)


COMMANDS = {
    "plan": ("show what submitting FILE... would change on each host; apply nothing", cmd_plan),
    "perms": (
        "print your permissions as the dispatcher holds them",
        cmd_simple("perms", render_perms),
    ),
    "whoami": ("print who the dispatcher thinks you are", cmd_simple("whoami")),
    "describe": ("show what DOMAIN became on each host", cmd_simple("describe", render_describe)),
    "history": (
        "list the stored versions of DOMAIN's configuration",
        cmd_simple("history", render_history),
    ),
    "undo": (
        "put back an earlier VERSION of DOMAIN (see history)",
        cmd_simple("undo", render_apply),
    ),
    "rmdom": ("remove DOMAIN's configuration from every host", cmd_simple("rmdom", render_apply)),
    "doc": ("print the standard library reference (markdown)", cmd_doc),
    "vmail": ("add, re-password, remove or list your virtual mailboxes", _cmd_vmail),
    "db": ("your PostgreSQL and MariaDB databases: create, drop, list, passwd, grant", None),
    "logs": (logs_cli.HELP, logs_cli.cmd_logs),
    "list": (list_cli.HELP, lambda args: list_cli.run(args)),
    # admin-set policy as the hosts hold it (domtool.client.policy_cli)
    "firewall": (
        "show your network policy as the hosts enforce it",
        lambda args: cmd_simple("policy", policy_cli.render_mine)(args),
    ),
    "limits": (
        "show your resource limits as the hosts enforce them",
        lambda args: cmd_simple("policy", _limits_mine)(args),
    ),
    "usage": (
        "show what you use on each host (processes, memory, disk, web, outbound)",
        lambda args: cmd_simple("usage", _usage)(args),
    ),
}


def _usage(result) -> str:
    from domtool.client import limits_cli

    return limits_cli.render_usage(result)


def _limits_mine(result) -> str:
    from domtool.client import limits_cli

    return limits_cli.render_mine(result)


def command_parser(name: str) -> argparse.ArgumentParser:
    help_text, _ = COMMANDS[name]
    p = argparse.ArgumentParser(
        prog=f"domtool {name}", description=help_text[0].upper() + help_text[1:] + "."
    )
    if name == "doc":
        return p
    if name == "logs":
        return logs_cli.parser()
    _common(p)
    if name == "plan":
        p.add_argument("files", nargs="+", metavar="FILE")
    elif name == "list":
        list_cli.add_arguments(p)
    elif name in ("describe", "history", "undo", "rmdom"):
        p.add_argument("domain", metavar="DOMAIN")
        if name == "undo":
            p.add_argument("version", metavar="VERSION", type=int, nargs="?")
    elif name == "vmail":
        from domtool.client.vmail_cli import arguments

        arguments(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {n:<9} {h}" for n, (h, _) in COMMANDS.items())
    p = argparse.ArgumentParser(
        prog="domtool",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Check, evaluate and submit domain configurations.\n\n"
        "  domtool [FILE...]      submit FILE... (default: every file in ~/.domtool named "
        "like a domain)\n"
        "  domtool -tc FILE...    type-check and evaluate offline; apply nothing",
        epilog=f"commands (domtool COMMAND --help for each):\n{commands}\n\n"
        "exit status: 0 ok, 1 errors or refused, 2 usage, 3 cannot reach the dispatcher",
    )
    p.add_argument(
        "-tc", dest="typecheck", action="store_true", help="type-check offline, apply nothing"
    )
    p.add_argument("--perms", metavar="FILE", help="permissions file (CLASS: VALUE ... lines)")
    p.add_argument("--user", metavar="NAME", help="check as this member (default: your login name)")
    p.add_argument("--show", action="store_true", help="print the evaluated desired state")
    _common(p)
    p.add_argument("files", nargs="*", metavar="FILE")
    return p


_VALUE_OPTIONS = {"--config", "--perms", "--user"}


def _split_command(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command word (if the first positional is one) and the other arguments."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return None, argv
        if a in _VALUE_OPTIONS:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        if a in COMMANDS:
            return a, argv[:i] + argv[i + 1 :]
        return None, argv
    return None, argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        name, rest = _split_command(argv)
        if name == "db":
            from domtool.client import db_cli

            return db_cli.main(rest)
        if name is not None:
            args = command_parser(name).parse_args(rest)
            return COMMANDS[name][1](args)
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.typecheck:
            if not args.files:
                parser.error("-tc needs at least one FILE")
            return cmd_typecheck(args)
        if args.perms or args.user or args.show:
            parser.error("--perms, --user and --show go with -tc (offline checking)")
        return cmd_submit(args)
    except UsageError as e:
        print(f"domtool: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `domtool ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except SystemExit as e:  # argparse usage errors exit 2, --help exits 0
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
