"""``domtool``: the member's command.

Today it type-checks and evaluates offline::

    domtool -tc [--perms FILE] [--user NAME] [--show] [--json] FILE...
    domtool doc [--format markdown]

Exit status: 0 when every file checks, 1 when any has errors (printed to stderr in the
published shape ``FILE:L.C-L.C:error: MESSAGE``), 2 for usage errors (bad options,
unreadable files or permissions).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem with how the command was called (exit status 2)."""


def _load_perms(path: str | None, user: str):
    from domtool.perms import Permissions, PermsError, parse_perms

    if path is None:
        print(
            f"domtool: note: no --perms given and no dispatcher reachable; checking as {user} "
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


def cmd_typecheck(args: argparse.Namespace) -> int:
    from domtool.client.show import format_state
    from domtool.lang.api import check_source
    from domtool.lang.errors import format_all
    from domtool.model import to_json

    user = args.user or getpass.getuser()
    perms = _load_perms(args.perms, user)
    try:
        sources = _read_sources(args.files)
    except _EncodingError as e:
        print(str(e), file=sys.stderr)
        return EXIT_ERRORS
    result = check_source(sources, perms)
    if result.diagnostics:
        print(format_all(result.diagnostics), file=sys.stderr)
        n = len(result.diagnostics)
        print(f"domtool: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="domtool",
        description="Check, evaluate and (with a dispatcher) submit domain configurations.",
        epilog="Commands: `domtool -tc FILE...` type-checks offline; `domtool doc` prints the "
        "standard library reference.",
    )
    p.add_argument(
        "-tc", dest="typecheck", action="store_true", help="type-check offline, apply nothing"
    )
    p.add_argument("--perms", metavar="FILE", help="permissions file (CLASS: VALUE ... lines)")
    p.add_argument("--user", metavar="NAME", help="check as this member (default: your login name)")
    p.add_argument("--show", action="store_true", help="print the evaluated desired state")
    p.add_argument("--json", action="store_true", help="print the desired state as JSON")
    p.add_argument("files", nargs="*", metavar="FILE")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["doc"]:
            dp = argparse.ArgumentParser(
                prog="domtool doc", description="Print the library reference."
            )
            return cmd_doc(dp.parse_args(argv[1:]))
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.typecheck:
            parser.error(
                "submitting to a dispatcher is not available yet; use -tc to check offline"
            )
        if not args.files:
            parser.error("-tc needs at least one FILE")
        return cmd_typecheck(args)
    except UsageError as e:
        print(f"domtool: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # argparse usage errors exit 2
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
