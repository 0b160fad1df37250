"""``domtool-admin``: the site administrator's command.

Local (no dispatcher needed)::

    domtool-admin init --site NAME --dispatcher FQDN [--host FQDN]... [--force]
                                                   a new site: CAs, certificates, first admin
    domtool-admin ca init DIR --site NAME          create the member and host CAs
    domtool-admin ca member DIR USER --out DIR     issue a member certificate (+ client.toml)
    domtool-admin ca host DIR FQDN --out DIR       issue a host certificate
    domtool-admin ca revoke DIR NAME [--host]      revoke every certificate of NAME, re-sign the CRL
    domtool-admin ca crl DIR [--host]              re-sign a CRL (renewal), say how long it lasts
    domtool-admin ca status DIR [--state DIR]      every CA, CRL, certificate: expiry, renewer
    domtool-admin ca renew DIR [--state DIR]       renew what is due (the package's timer)
    domtool-admin preview --perms FILE --user NAME --out DIR FILE...
                                                   render what a one-host site would write

Through the dispatcher (your certificate must belong to an admin; ``--config PATH`` or
``~/.domtool/client.toml``)::

    adduser USER [--admin]   rmuser USER [--doit]
    grant USER CLASS VALUE   revoke USER CLASS VALUE
    perms [USER]             whohas CLASS VALUE
    regen [--doit]           rmdom DOMAIN [--doit]
    hosts   ping [HOST]      describe DOMAIN
    audit [--user U] [--limit N]    quota USER [RESOURCE VALUE]
    firewall list|add|remove|rate|clear|check ...   members' network policy
    limits list|set|reset|check ...                 members' resource limits
    usage [USER]                                    what members use on each host

Destructive verbs (``rmuser``, ``regen``, ``rmdom``) are dry runs that print the plan
unless ``--doit`` is given. Every command takes ``--json``. Exit status as ``domtool``:
0 ok, 1 refused or errors, 2 usage, 3 cannot reach the dispatcher.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import attrs

from domtool import protocol
from domtool.client.domtool_cli import (
    EXIT_ERRORS,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    _common,
    remote,
    render_describe,
    render_generic,
    render_perms,
)
from domtool.util.files import atomic_write as _write

PROG = "domtool-admin"
GRANT_CLASSES = ("domain", "path", "user", "group")


# ---------------------------------------------------------------------------
# Rendering of answers


def render_plan(result) -> str:
    """A dry run's or an apply's answer; says how to apply when it was a dry run."""
    from domtool.client.domtool_cli import format_plan, render_apply
    from domtool.client.show import format_value

    if not isinstance(result, dict):
        return format_value(result)
    if not protocol.DryRun.is_one(result):
        return render_apply(result)
    dry = protocol.DryRun.from_json(result)
    message = dry.message.removeprefix("dry run:").strip()
    out = [f"dry run: {message}".rstrip()]
    plan = dry.plan
    # regen/rmdom plans are per member then per host; rmuser's per host (the answer says).
    if plan and dry.per_member:
        for member, hosts in sorted(plan.items()):
            out.append(f"{member}:")
            out.extend("  " + line for line in format_plan(hosts))
    elif plan:
        out.extend(format_plan(plan))
    else:
        out.append("  nothing would change")
    for dropped in dry.dropped or ():
        d = protocol.DroppedFile.read(dropped) or protocol.DroppedFile()
        out.append(f"  would drop {d.member}'s {d.domain}: {'; '.join(d.reasons or ())}")
    out.append("(nothing was changed; run again with --doit to apply)")
    return "\n".join(out)


def render_hosts(result) -> str:
    """One line per host: reachable, live and recorded generation, pending, roles."""
    from domtool.client.show import format_value

    answer = protocol.HostsAnswer.read(result)
    if answer is None or answer.hosts is None:
        return format_value(result)
    lines = []
    for name, h in sorted(answer.hosts.items()):
        state = "up" if h.reachable else "DOWN"
        bits = [state, f"generation {h.generation}"]
        if h.recorded_generation is not None:
            bits.append(f"recorded {h.recorded_generation} ({h.recorded_status})")
        if h.pending:
            bits.append(f"converging (retry in {h.next_retry_in or '?'} s)")
        if h.roles:
            bits.append("roles " + ",".join(h.roles))
        lines.append(f"{name}: " + "; ".join(bits))
        if h.message or h.last_error:
            lines.append(f"    {h.message or h.last_error}")
    return "\n".join(lines) or "(no hosts)"


def render_audit(result) -> str:
    """One line per audit entry, newest first."""
    from domtool.client.show import format_value

    answer = protocol.AuditAnswer.read(result)
    if answer is None or answer.entries is None:
        return format_value(result)
    lines = []
    for e in answer.entries:
        detail = e.detail
        brief = (
            ", ".join(f"{k}={v}" for k, v in detail.items())
            if isinstance(detail, dict)
            else str(detail)
        )
        when, who, action, outcome = e.time or "", e.who or "", e.action or "", e.outcome or ""
        lines.append(f"{when[:19]}  {who:<12} {action:<10} {outcome:<8} {brief[:100]}")
    return "\n".join(lines) or "(no entries)"


# ---------------------------------------------------------------------------
# The CA commands (local files)


def cmd_ca(args: argparse.Namespace) -> int:
    from domtool.client import config as client_config
    from domtool.dispatcher import ca

    try:
        if args.ca_command == "init":
            root = ca.init_ca(args.dir, args.site)
            _say(
                args,
                {"ca_dir": str(root.resolve()), "site": args.site},
                f"created the member and host CAs of {args.site} in {root}\n"
                f"  member CA: {root / 'member' / 'ca.pem'} (the dispatcher pins it)\n"
                f"  host CA:   {root / 'host' / 'ca.pem'} (members and slaves pin it)\n"
                f"next: domtool-admin ca host {args.dir} DISPATCHER-FQDN --out DIR",
            )
        elif args.ca_command in ("member", "host"):
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            name = args.name
            if args.ca_command == "member":
                cert, key = ca.issue_member(args.dir, name, args.days)
            else:
                cert, key = ca.issue_host(args.dir, name, args.days)
            cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
            _write(cert_path, cert, 0o644)
            _write(key_path, key, 0o600)
            _write(out / "host-ca.pem", ca.ca_certificate(args.dir, ca.HOST), 0o644)
            files = {
                "certificate": str(cert_path),
                "key": str(key_path),
                "host_ca": str(out / "host-ca.pem"),
            }
            if args.ca_command == "member" and args.dispatcher:
                toml = client_config.dump(
                    args.dispatcher,
                    args.dispatcher_name or client_config.split_address(args.dispatcher)[0],
                    cert_path.name,
                    key_path.name,
                    "host-ca.pem",
                )
                _write(out / "client.toml", toml.encode(), 0o644)
                files["client_config"] = str(out / "client.toml")
            _say(
                args,
                files,
                f"issued a {args.ca_command} certificate for {name}:\n"
                + "\n".join(f"  {k}: {v}" for k, v in files.items()),
            )
        elif args.ca_command == "revoke":
            kind = ca.HOST if args.host else ca.MEMBER
            serials = ca.revoke(args.dir, args.name, kind=kind)
            _say(
                args,
                {"revoked": [format(s, "x") for s in serials]},
                f"revoked {len(serials)} certificate(s) of {args.name}; the {kind} CRL was "
                "re-signed: copy it where the listeners read it (they reload it on change)",
            )
        elif args.ca_command in ("status", "renew"):
            from domtool.client import ca_report

            return ca_report.run(args)
        elif args.ca_command == "crl":
            kind = ca.HOST if args.host else ca.MEMBER
            pem = ca.crl(args.dir, kind=kind)
            left = ca.crl_expires_in(pem)
            _say(
                args,
                {"kind": kind, "valid_for_days": left.days},
                f"re-signed the {kind} CRL: valid for {left.days} more days",
            )
    except ca.CAError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_ERRORS
    except (OSError, ValueError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _say(args: argparse.Namespace, data, text: str) -> None:
    from domtool.client.connection import dumps

    print(dumps(data) if args.json else text)


# ---------------------------------------------------------------------------
# preview: what a one-host site would write, touching no daemon


def preview_backends(out: Path) -> list:
    """The backends a one-host site runs, configured to live under ``out`` (nothing is
    started or checked: only their pure rendering is used). BIND when it is installed
    in the package; Apache always."""
    from domtool.slave.backends.apache import ApacheBackend, ApacheConfig

    backends = [
        ApacheBackend(
            ApacheConfig(
                base_config=str(out / "apache" / "base.conf"),
                live_config=str(out / "apache" / "apache2.conf"),
                server_root=str(out / "apache"),
                log_dir=str(out / "apache" / "logs"),
                tls_port=None,
                unit_checks=False,
            )
        )
    ]
    try:
        from domtool.slave.backends.bind import BindBackend, BindConfig
    except ImportError:  # pragma: no cover - the BIND backend is part of the package now
        return backends
    backends.insert(
        0,
        BindBackend(
            BindConfig(
                base_config=str(out / "bind" / "base.conf"),
                live_config=str(out / "bind" / "named.conf"),
                rndc_config=str(out / "bind" / "rndc.conf"),
                unit_checks=False,
            )
        ),
    )
    return backends


def unit_file_name(key: str, ext: str) -> str:
    """``vhost:www.example.org`` -> ``www.example.org.conf`` (keys are validated names)."""
    _, _, name = key.partition(":")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "unit"
    return f"{safe}.{ext}"


def cmd_preview(args: argparse.Namespace) -> int:
    from domtool.client.domtool_cli import _load_perms, check_files
    from domtool.client.show import format_state

    perms = _load_perms(args.perms, args.user)
    result = check_files(args.files, perms, PROG, "; nothing written")
    if result is None or result.diagnostics:
        return EXIT_ERRORS
    state = result.state
    out = Path(args.out).resolve()
    now = int(time.time())
    written: dict[str, list[str]] = {}
    refusals: list[str] = []
    rendered = []
    for backend in preview_backends(out):
        try:
            units = backend.units(state, {}, now)
        except ValueError as e:  # RenderRefused of either backend
            errors = getattr(e, "errors", None) or [e]
            refusals.extend(f"{backend.name}: {err}" for err in errors)
            continue
        rendered.append((backend, units))
    if refusals:
        for r in refusals:
            print(f"{PROG}: refused: {r}", file=sys.stderr)
        print(f"{PROG}: nothing written", file=sys.stderr)
        return EXIT_ERRORS
    for backend, units in rendered:
        d = out / backend.name
        d.mkdir(parents=True, exist_ok=True)
        paths = {}
        files = []
        for u in units:
            p = d / "units" / unit_file_name(u.key, u.ext)
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(u.content)
            paths[u.key] = p
            files.append(str(p))
        from pathlib import PurePosixPath

        for name, content in backend.index({k: PurePosixPath(v) for k, v in paths.items()}).items():
            p = d / name
            p.write_bytes(content)
            files.append(str(p))
        written[backend.name] = files
    if args.json:
        from domtool.client.connection import dumps

        print(dumps({"out": str(out), "files": written}))
    else:
        print(format_state(state))
        print()
        for name, files in written.items():
            print(f"{name}: {len(files)} file(s) under {out / name}")
            for f in files:
                print(f"  {f}")
        print("(preview only: no daemon was checked, reloaded or touched)")
    return EXIT_OK


# ---------------------------------------------------------------------------
# Remote commands


def _remote(build, render=render_generic):
    """A command sending ``build(args)`` (a ``domtool.protocol`` request object)."""

    def run(args: argparse.Namespace) -> int:
        return remote(PROG, args, build(args), render)

    return run


def cmd_adduser(args: argparse.Namespace) -> int:
    """Add the member (the dispatcher issues and pins their certificate) and write
    USER.pem, USER.key (0600), host-ca.pem and a client.toml into --out."""
    from domtool.client import config as client_config
    from domtool.client.connection import RemoteError, Unreachable, ask, dumps
    from domtool.client.domtool_cli import EXIT_UNREACHABLE, print_refusal

    try:
        admin = client_config.load(args.config)
    except client_config.ConfigError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out or args.user)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; pass --out DIR for the new member's files")
    try:
        reply = ask(admin, protocol.AddUserRequest(args.user, True if args.admin else None))
    except Unreachable as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RemoteError as e:
        print_refusal(PROG, e)
        return EXIT_ERRORS
    added = protocol.AddUserAnswer.read(reply)
    if added is None or added.cert_pem is None or added.key_pem is None:
        print(f"{PROG}: the dispatcher's answer to adduser was not understood", file=sys.stderr)
        return EXIT_ERRORS
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "certificate": out / f"{args.user}.pem",
        "key": out / f"{args.user}.key",
        "host_ca": out / "host-ca.pem",
        "client_config": out / "client.toml",
    }
    _write(files["certificate"], added.cert_pem.encode(), 0o644)
    _write(files["key"], added.key_pem.encode(), 0o600)
    _write(files["host_ca"], Path(admin.ca).read_bytes(), 0o644)
    toml = client_config.dump(
        admin.address, admin.name, files["certificate"].name, files["key"].name, "host-ca.pem"
    )
    _write(files["client_config"], toml.encode(), 0o644)
    written = {k: str(v.resolve()) for k, v in files.items()}
    shown = attrs.evolve(added, cert_pem=None, key_pem=None).to_json()
    if args.json:
        print(dumps({**shown, "files": written}))
    else:
        admin_note = " (admin)" if added.admin else ""
        print(f"added {args.user}{admin_note}, certificate serial {added.serial}")
        for k, v in written.items():
            print(f"  {k}: {v}")
        print(f"give {out}/ to {args.user} (the key is private); it goes in ~/.domtool/")
    return EXIT_OK


def cmd_perms(args: argparse.Namespace) -> int:
    if args.user:
        return remote(PROG, args, protocol.PermsOfRequest(args.user), render_perms)
    return remote(PROG, args, protocol.PermsRequest(), render_perms)


def cmd_quota(args: argparse.Namespace) -> int:
    if args.resource is None:
        return remote(PROG, args, protocol.QuotaRequest(args.user), render_generic)
    if args.value is None:
        raise UsageError("quota USER RESOURCE needs a VALUE to set")
    request = protocol.SetQuotaRequest(args.user, args.resource, args.value)
    return remote(PROG, args, request, render_generic)


def cmd_audit(args: argparse.Namespace) -> int:
    request = protocol.AuditRequest(args.user or None, args.limit or None)
    return remote(PROG, args, request, render_audit)


def cmd_ping(args: argparse.Namespace) -> int:
    return remote(PROG, args, protocol.PingRequest(args.host or None), render_hosts)


def _common_after(p: argparse.ArgumentParser) -> None:
    """--config/--json after the command too, without undoing one given before it."""
    p.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="client configuration (default ~/.domtool/client.toml)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the answer as JSON (for scripts)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Administer a domtool site: CAs, members, permissions, regeneration.",
        epilog="Destructive verbs are dry runs unless --doit. Exit status: 0 ok, 1 refused or "
        "errors, 2 usage, 3 cannot reach the dispatcher.",
    )
    _common(p)  # --config and --json also before the command
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, func, remote_cmd: bool = True) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
        )
        if remote_cmd:
            _common_after(sp)
        sp.set_defaults(func=func)
        return sp

    # ca
    ca_p = add("ca", "manage the site's certificate authorities (local files)", cmd_ca, False)
    ca_sub = ca_p.add_subparsers(dest="ca_command", metavar="CA_COMMAND", required=True)

    def ca_add(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = ca_sub.add_parser(
            name, help=help_text, description=help_text[0].upper() + help_text[1:] + "."
        )
        sp.add_argument("dir", metavar="DIR", help="the CA directory")
        sp.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print as JSON"
        )
        return sp

    sp = ca_add("init", "create the member and host CAs in DIR (refuses to overwrite)")
    sp.add_argument("--site", required=True, help="the site's name, e.g. example.coop")
    for kind in ("member", "host"):
        sp = ca_add(kind, f"issue a {kind} certificate (and key) into --out")
        sp.add_argument("name", metavar="USER" if kind == "member" else "FQDN")
        sp.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
        sp.add_argument("--days", type=int, default=365, help="validity (default 365 days)")
        if kind == "member":
            sp.add_argument(
                "--dispatcher",
                metavar="HOST:PORT",
                help="also write a client.toml for this dispatcher",
            )
            sp.add_argument(
                "--dispatcher-name",
                metavar="FQDN",
                help="the name on the dispatcher's certificate (default: HOST)",
            )
    sp = ca_add("revoke", "revoke every certificate issued to NAME and re-sign the CRL")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("--host", action="store_true", help="NAME is a host (default: a member)")
    from domtool.client import ca_report

    ca_report.add_parsers(ca_add)
    sp = ca_add("crl", "re-sign a CRL (renewal; a CRL past its date locks everyone out)")
    sp.add_argument("--host", action="store_true", help="the host CA's CRL (default: member)")

    from domtool.client import site_init

    site_init.add_parser(add)

    # preview
    sp = add(
        "preview",
        "render what a one-host site would write for FILE..., touching no daemon",
        cmd_preview,
        False,
    )
    sp.add_argument("--perms", required=True, metavar="FILE", help="the member's permissions file")
    sp.add_argument("--user", required=True, metavar="NAME", help="the member")
    sp.add_argument("--out", required=True, metavar="DIR", help="where to write DIR/<backend>/...")
    sp.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="list the files as JSON"
    )
    sp.add_argument("files", nargs="+", metavar="FILE")

    # members and permissions
    sp = add(
        "adduser",
        "add a member: the dispatcher issues their certificate; it, the key and a "
        "client.toml are written to --out",
        cmd_adduser,
    )
    sp.add_argument("user", metavar="USER")
    sp.add_argument("--admin", action="store_true", help="make the member an admin")
    sp.add_argument("--out", metavar="DIR", help="where to write their files (default ./USER)")
    sp = add(
        "rmuser",
        "remove a member (dry run unless --doit)",
        _remote(lambda a: protocol.RmUserRequest(a.user, a.doit), render_plan),
    )
    sp.add_argument("user", metavar="USER")
    sp.add_argument("--doit", action="store_true", help="really remove")
    for verb in ("grant", "revoke"):
        sp = add(
            verb,
            f"{verb} USER a permission: CLASS is one of {', '.join(GRANT_CLASSES)}",
            _remote(
                lambda a: (
                    protocol.GrantRequest(
                        a.user, a.cls, a.value, True if getattr(a, "shared", False) else None
                    )
                    if a.command == "grant"
                    else protocol.RevokeRequest(a.user, a.cls, a.value)
                )
            ),
        )
        sp.add_argument("user", metavar="USER")
        sp.add_argument("cls", metavar="CLASS", choices=GRANT_CLASSES)
        sp.add_argument("value", metavar="VALUE")
        if verb == "grant":
            sp.add_argument(
                "--shared",
                action="store_true",
                help="grant it even though it overlaps another member's grant (shown)",
            )
    sp = add("perms", "show USER's permissions (default: your own)", cmd_perms)
    sp.add_argument("user", metavar="USER", nargs="?")
    sp = add(
        "whohas",
        "list the members granted CLASS VALUE",
        _remote(lambda a: protocol.WhohasRequest(a.cls, a.value)),
    )
    sp.add_argument("cls", metavar="CLASS", choices=GRANT_CLASSES)
    sp.add_argument("value", metavar="VALUE")
    from domtool.client import grant_signing

    grant_signing.add_commands(add)

    # the site
    sp = add(
        "regen",
        "replay every member's sources and converge every host (dry run unless --doit)",
        _remote(lambda a: protocol.RegenRequest(a.doit), render_plan),
    )
    sp.add_argument("--doit", action="store_true", help="apply the plan")
    sp = add(
        "rmdom",
        "remove DOMAIN from every host (dry run unless --doit)",
        _remote(lambda a: protocol.AdminRmdomRequest(a.domain, a.doit), render_plan),
    )
    sp.add_argument("domain", metavar="DOMAIN")
    sp.add_argument("--doit", action="store_true", help="really remove")
    add(
        "hosts",
        "list the hosts, their roles and generations",
        _remote(lambda a: protocol.HostsRequest(), render_hosts),
    )
    sp = add("ping", "check that each host (or HOST) answers", cmd_ping)
    sp.add_argument("host", metavar="HOST", nargs="?")
    sp = add(
        "describe",
        "show what DOMAIN became on each host",
        _remote(lambda a: protocol.AdminDescribeRequest(a.domain), render_describe),
    )
    sp.add_argument("domain", metavar="DOMAIN")
    sp = add("audit", "show the audit log", cmd_audit)
    sp.add_argument("--user", metavar="USER", help="only this member's entries")
    sp.add_argument("--limit", type=int, metavar="N", help="at most N entries")
    sp = add("quota", "show USER's quotas, or set RESOURCE to VALUE", cmd_quota)
    sp.add_argument("user", metavar="USER")
    sp.add_argument("resource", metavar="RESOURCE", nargs="?")
    sp.add_argument("value", metavar="VALUE", nargs="?", type=int)
    # admin-set member policy: firewall (domtool.client.policy_cli; limits adds its part)
    from domtool.client import policy_cli

    policy_cli.add_admin_commands(add)
    from domtool.client import limits_cli

    limits_cli.add_admin_commands(add)
    sp = add(
        "usage",
        "show what USER (or every member) uses on each host",
        _remote(lambda a: protocol.UsageOfRequest(a.user or None), limits_cli.render_usage),
    )
    sp.add_argument("user", metavar="USER", nargs="?")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `domtool ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
