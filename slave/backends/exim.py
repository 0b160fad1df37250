"""The Exim 4 backend (exim4-daemon-heavy): one lookup file per mail domain, a small index.

Rendering is pure. Members never write Exim configuration: the site's config (written
once by :func:`site_config`) holds every router, transport and ACL; a member's domain is
one *lsearch* file of keys and addresses, so one member's change rewrites one small file.

Files (``state_dir`` is the slave's state directory)::

    state_dir/units/exim/<sha256>.mail   one mail domain: its aliases and spam settings
    generation/exim/domains              lsearch: ``DOMAIN: <unit file path>``, sorted
    generation/exim/lists                lsearch: ``DOMAIN: <list local parts file>``
                                         (empty until list units exist; see below)

A domain unit holds, one per line, ``KEY: VALUE``:

- ``LOCALPART: ADDR, ADDR`` a user alias (``userSource``); ``:blackhole:`` for a drop;
- ``@default: ...`` and ``@catchall: ...`` (the default and catch-all rules);
- ``@relay: HOST`` for a relayed domain (``relayMail``);
- ``@spam: threshold=N action=tag|refuse|junk`` when SpamAssassin is on for the domain.

Keys starting with ``@`` can never be a local part: the RCPT ACL refuses any local part
outside ``[A-Za-z0-9._+-]`` (quoted local parts included) before a router reads a file.
A bare member user name as a target (``alice``) means that member's local mailbox and is
rendered as ``alice@LOCAL_DOMAIN`` (the site's internal domain for member accounts).
Every key and address is validated again with ``domtool.validate`` (the same grammars the
dispatcher applied), so no pipe, file, ``:include:``, newline, NUL, ``${`` or foreign source
reaches a file; the redirect router also forbids pipes, files, includes and filters, so a
value that slipped through would still not run anything.

Checks: the changed units of a whole round are routed together by one ``exim -bt``
(:meth:`EximBackend.check_units`: every alias source of every changed domain, with the
staged units in place of the live ones and remote deliveries replaced by a no-op so no
DNS is asked; the argv is cut into runs of under ~32 KB), then the whole staged
generation with ``exim -bV``. The staged units are named by a small lsearch map
``DOMAIN: <unit file>`` passed as ``-DUNIT_MAP=<file>`` (the engine writes it); a failing
batch is bisected by owner by the engine, so only the offenders are refused. The live
config reads ``GEN`` (``state_dir/current``) and the whole check passes ``-DGEN=<staged
generation>``, so what is checked is exactly what the live Exim will read.

An existing site whose Exim config predates ``UNIT_MAP`` (it had ``UNIT_FILE`` and
``UNIT_DOMAIN``) must rerun site setup (``slave-site-files.py``, ``docs/deploy.md``, writes
:func:`site_config` again): with the old config the batch check would route the live
units instead of the staged ones.

Reload: none. Every SMTP connection and every delivery is a fresh Exim process that opens
the lookup files through ``current``, so a switch is live for the next connection without
signalling the daemon (a SIGHUP makes Exim re-execute itself and refuse connections for
about two seconds meanwhile; ``reload_on_apply`` turns it on for a site that wants it).
Queued mail lives in the spool on disk and is never touched; the probes below show the
running daemon serves the new generation. A change to the site's own config (not members')
is followed by SIGHUP from site setup (:meth:`EximConfig.reload_argv`).

Probes: one SMTP ``EXPN`` per changed alias source against the running daemon on
loopback (the site config allows EXPN from loopback only), expecting the addresses the
unit routes to (``discarded`` for a drop), and ``RCPT TO`` of an unknown user of a
domain with no default rule, expecting refusal. See :mod:`domtool.slave.mailprobe`.

Lists: the site config has a ``dt_lists`` router before the aliases that looks the local
part (without a ``+suffix``, as in Mailman's VERP and confirm addresses) up in the
domain's ``lists:DOMAIN`` unit (named by the ``lists`` index) and hands the message to
Mailman over LMTP (``lists_lmtp`` setting, ``HOST:PORT``). The units come from
:func:`list_local_parts`, which reads the model's ``ListDomain`` units whose ``mail_nodes``
include this node; a list named N answers N, N-request, N-owner, N-bounces, N-confirm, N-join,
N-leave, N-subscribe and N-unsubscribe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

import attrs

from domtool import validate
from domtool.model import DesiredState, MailDomain
from domtool.slave.backend import (
    BadValue,
    Command,
    Probe,
    RenderRefused,
    Unit,
    UnitRefused,
    UnitsCheck,
    memo_get,
    memo_put,
)
from domtool.slave.backend import renderer_check as recheck  # validate.check_* -> BadValue

__all__ = [
    "EximBackend",
    "EximConfig",
    "MailRefused",
    "RenderRefused",
    "SPAM_ACTIONS",
    "site_config",
    "list_local_parts",
    "unit_addresses",
    "check_addresses",
]

DOMAINS_INDEX = "domains"
LISTS_INDEX = "lists"
SPAM_ACTIONS = ("tag", "refuse", "junk")
# Local parts that always reach the site (or the domain's catch-all), never a default rule.
SYSTEM_USERS = ("postmaster", "abuse")
# A local part no member alias can be (not in the email-user grammar): for checks and probes.
CHECK_LOCAL = "domtool-check--unknown"
_UNIT_PATH = re.compile(r"/[A-Za-z0-9._/+-]+")
_DOMAIN_KEY = re.compile(r"[a-z0-9][a-z0-9.-]*")
UNIT_MAP = "units.map"  # the batch check's map file (in the engine's check directory)
ARGV_MAX = 32 * 1024  # one exim -bt's argv stays under this many bytes

check_email_user = recheck(validate.check_email_user)
check_email = recheck(validate.check_email)
check_unix_name = recheck(validate.check_unix_name)
check_domain = recheck(validate.check_domain)
check_hostname = recheck(validate.check_hostname)


class MailRefused(UnitRefused):
    """A member-controlled value of a mail domain failed its grammar; nothing was rendered."""

    kind = "mail domain"


# ---------------------------------------------------------------------------
# Configuration


@attrs.frozen
class EximConfig:
    """How this host's Exim is laid out, and the site's mail settings.

    ``live_config``: the site's Exim configuration (:func:`site_config`), read with
    ``exim -C``. ``state_dir``: the slave's state directory (the config reads
    ``state_dir/current/exim/...``). ``local_domain``: the internal domain whose users are
    the members' local accounts (a bare user name target). ``local_users_file``: an
    lsearch file ``USER: uid=N gid=N dir=MAILDIR`` for those accounts (None: Exim's
    ``check_local_user``, i.e. the passwd database and ``~/Maildir``). ``vmail_map``: the
    virtual mailboxes (written by the vmail operations, ``ADDRESS: uid=N gid=N dir=PATH``).
    ``smarthost``: ``HOST:PORT`` all remote mail goes to (None: DNS MX lookups).
    ``spamd``: ``ADDRESS PORT`` of spamd (None: no spam scanning; a domain with the spam
    filter on is then refused at render). ``lists_lmtp``: ``HOST:PORT`` of Mailman's LMTP.
    ``unit_checks``: route each changed unit with ``exim -bt`` before the switch.
    ``reload_on_apply``: send Exim SIGHUP after each switch (not needed: see ``reload``).
    ``userdb``/``makeuserdb``: Courier's userdb text file the vmail operations write, and
    the tool that builds authdaemond's ``.dat`` files from it.
    """

    live_config: str
    state_dir: str
    spool_dir: str
    log_dir: str
    pid_file: str
    vmail_map: str
    vmail_root: str
    address: str = "127.0.0.1"
    port: int = 25
    primary_hostname: str = "mail.coop.example"
    postmaster: str = "postmaster@coop.example"
    local_domain: str = "localhost"
    local_users_file: str | None = None
    smarthost: str | None = None
    spamd: str | None = None
    lists_lmtp: str | None = None
    relay_from_hosts: tuple[str, ...] = ()
    exim_user: str = "Debian-exim"
    userdb: str = "/etc/courier/userdb"
    makeuserdb: str = "/usr/sbin/makeuserdb"
    binary: str = "/usr/sbin/exim4"
    node: str | None = None
    check_timeout: float = 60.0
    unit_checks: bool = True
    reload_on_apply: bool = False

    def argv(self, *args: str, generation: str | None = None) -> tuple[str, ...]:
        gen = () if generation is None else (f"-DGEN={generation}",)
        return (self.binary, "-C", self.live_config, *gen, *args)

    def reload_argv(self) -> tuple[str, ...]:
        return (
            "/usr/sbin/start-stop-daemon",
            "--stop",
            "--signal",
            "HUP",
            "--quiet",
            "--pidfile",
            self.pid_file,
            "--exec",
            self.binary,
        )


def _hostport(value: str, what: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{what}: expected HOST:PORT, got {value!r}")
    return host, int(port)


def site_config(config: EximConfig) -> bytes:
    """The site's Exim configuration (site-owned; never from member input).

    Routers, in order: ``dt_relay`` (relayed domains), ``dt_lists`` (list addresses to
    Mailman), ``dt_user`` (user aliases), ``dt_vmail`` (virtual mailboxes), ``dt_system``
    (postmaster, abuse: the catch-all or the site's postmaster), ``dt_default`` (the
    default rule, else the catch-all), ``dt_member`` (members' local mailboxes), then
    remote delivery (smarthost or DNS). Handled domains' users are checked at RCPT time.
    """
    c = config
    cur = f"{c.state_dir}/current"
    lines: list[str] = [
        "# domtool: the site's Exim configuration. Generated by site setup; do not edit.",
        "# Members' mail lives in lookup files under GEN/exim (see the exim backend).",
        ".ifndef GEN",
        f"GEN = {cur}",
        ".endif",
        "DOMFILE = ${lookup{$domain}lsearch{GEN/exim/domains}}",
        ".ifdef UNIT_MAP",  # a batch check: the staged units of the changed domains
        "DTFILE = ${lookup{$domain}lsearch{UNIT_MAP}{$value}{DOMFILE}}",
        "domainlist mail_domains = lsearch;UNIT_MAP : lsearch;GEN/exim/domains",
        ".else",
        "DTFILE = DOMFILE",
        "domainlist mail_domains = lsearch;GEN/exim/domains",
        ".endif",
        "domainlist handled = +mail_domains : lsearch;GEN/exim/lists",
        "DTGET = ${lookup{$local_part}lsearch{DTFILE}}",
        f"domainlist member_local = {c.local_domain}",
        "hostlist relay_from_hosts = <; " + " ; ".join(c.relay_from_hosts),
        f"primary_hostname = {c.primary_hostname}",
        f"qualify_domain = {c.local_domain}",
        f"spool_directory = {c.spool_dir}",
        f"log_file_path = {c.log_dir}/%slog",
        f"pid_file_path = {c.pid_file}",
        f"exim_user = {c.exim_user}",
        f"exim_group = {c.exim_user}",
        "keep_environment =",
        "never_users = root",
        f"local_interfaces = <; {c.address}.{c.port}",
        f"daemon_smtp_ports = {c.port}",
        "acl_smtp_rcpt = acl_check_rcpt",
        "acl_smtp_data = acl_check_data",
        "acl_smtp_expn = acl_check_expn",
        "smtp_accept_max = 100",
        # The engine's probes ask a round's EXPN and RCPT in one session from loopback
        # (EXPN is allowed from loopback only); others keep the limit of 10 non-mail commands.
        "smtp_accept_max_nonmail_hosts = <; ! 127.0.0.1 ; ! ::1 ; *",
        "host_lookup =",
        "rfc1413_hosts =",
        "ignore_bounce_errors_after = 2d",
        "timeout_frozen_after = 7d",
        "message_size_limit = 50M",
        "smtp_banner = $smtp_active_hostname ESMTP",
    ]
    if c.spamd:
        lines.append(f"spamd_address = {c.spamd}")
    lines += [
        "",
        "begin acl",
        "",
        "acl_check_rcpt:",
        "  accept  hosts = :",
        "  deny    domains = +handled",
        "          local_parts = ^.*[^A-Za-z0-9._+=\\N-\\N] : ^[.=\\N-\\N]",
        "          message = 550 5.1.3 invalid local part",
        "  deny    domains = +handled",
        "          !verify = recipient",
        "          message = 550 5.1.1 <$local_part@$domain>: unknown user",
        # One spam policy per message: a recipient of a domain with other settings waits.
        "  defer   domains = +mail_domains",
        "          condition = ${if and{{def:acl_m_sp}"
        "{!eq{$acl_m_sp}{${lookup{@spam}lsearch{DTFILE}{$value}{off}}}}}}",
        "          message = 452 4.5.3 one spam policy per message: send this recipient later",
        "  accept  domains = +mail_domains",
        "          set acl_m_sp = ${lookup{@spam}lsearch{DTFILE}{$value}{off}}",
        "  accept  domains = +handled",
        "  accept  hosts = +relay_from_hosts",
        "  deny    message = 550 5.7.1 relay not permitted",
        "",
        "acl_check_data:",
    ]
    if c.spamd:
        lines += [
            "  warn    remove_header = X-Domtool-Spam : X-Domtool-Spam-Score",
            "  warn    condition = ${if and{{def:acl_m_sp}{!eq{$acl_m_sp}{off}}}}",
            "          spam = nobody:true",
            "  deny    condition = ${if and{{def:acl_m_sp}{!eq{$acl_m_sp}{off}}"
            "{def:spam_score_int}"
            "{eq{${extract{action}{$acl_m_sp}}}{refuse}}"
            "{>={$spam_score_int}{${extract{threshold}{$acl_m_sp}}}}}}",
            "          message = 550 5.7.1 message refused as spam (score $spam_score)",
            "  warn    condition = ${if and{{def:acl_m_sp}{!eq{$acl_m_sp}{off}}"
            "{def:spam_score_int}"
            "{>={$spam_score_int}{${extract{threshold}{$acl_m_sp}}}}}}",
            "          add_header = X-Domtool-Spam: yes",
            "          add_header = X-Domtool-Spam-Score: $spam_score",
        ]
    lines += [
        "  accept",
        "",
        "acl_check_expn:",
        "  accept  hosts = 127.0.0.1 : ::1",
        "  deny",
        "",
        "begin routers",
        "",
        ".ifdef UNIT_MAP",  # checks ask no DNS: a relayed domain's target just routes
        "dt_check_relay:",
        "  driver = accept",
        "  domains = +mail_domains",
        "  condition = ${lookup{@relay}lsearch{DTFILE}{yes}{no}}",
        "  transport = dt_nowhere",
        "  no_more",
        ".endif",
        "",
        "dt_relay:",
        "  driver = manualroute",
        "  domains = +mail_domains",
        "  condition = ${lookup{@relay}lsearch{DTFILE}{yes}{no}}",
        "  route_data = ${lookup{@relay}lsearch{DTFILE}}",
        "  transport = remote_smtp",
        "  no_more",
        "",
        "dt_lists:",
        "  driver = accept",
        "  domains = +handled",
        "  local_part_suffix = +*",
        "  local_part_suffix_optional",
        "  condition = ${lookup{$domain}lsearch{GEN/exim/lists}"
        "{${lookup{$local_part}lsearch{$value}{yes}{no}}}{no}}",
    ]
    if c.lists_lmtp:
        lines.append("  transport = dt_lists_lmtp")
    else:
        lines.append("  transport = dt_nowhere")
    lines += [
        "",
        "dt_user:",
        "  driver = redirect",
        "  domains = +mail_domains",
        "  condition = ${lookup{$local_part}lsearch{DTFILE}{yes}{no}}",
        "  data = DTGET",
        "  forbid_file",
        "  forbid_pipe",
        "  forbid_include",
        "  forbid_filter_run",
        "  forbid_filter_perl",
        "  forbid_filter_readfile",
        "  forbid_filter_readsocket",
        "  forbid_filter_dlfunc",
        "  forbid_filter_lookup",
        "  forbid_filter_existstest",
        "  forbid_filter_logwrite",
        "  forbid_exim_filter",
        "  forbid_sieve_filter",
        "  check_ancestor",
        "",
        "dt_vmail:",
        "  driver = accept",
        "  domains = +mail_domains",
        f"  condition = ${{lookup{{$local_part@$domain}}lsearch{{{c.vmail_map}}}{{yes}}{{no}}}}",
        f"  address_data = ${{lookup{{$local_part@$domain}}lsearch{{{c.vmail_map}}}}}",
        "  transport = dt_vmail",
        "",
        "dt_system:",
        "  driver = redirect",
        "  domains = +mail_domains",
        "  local_parts = " + " : ".join(SYSTEM_USERS),
        f"  data = ${{lookup{{@catchall}}lsearch{{DTFILE}}{{$value}}{{{c.postmaster}}}}}",
        "  forbid_file",
        "  forbid_pipe",
        "  forbid_include",
        "  forbid_exim_filter",
        "  forbid_sieve_filter",
        "",
        "dt_default:",
        "  driver = redirect",
        "  domains = +mail_domains",
        "  data = ${lookup{@default}lsearch{DTFILE}{$value}{${lookup{@catchall}lsearch{DTFILE}}}}",
        "  forbid_file",
        "  forbid_pipe",
        "  forbid_include",
        "  forbid_exim_filter",
        "  forbid_sieve_filter",
        "  check_ancestor",
        "  no_more",
        "",
        "dt_member:",
        "  driver = accept",
        "  domains = +member_local",
    ]
    if c.local_users_file:
        lines += [
            f"  condition = ${{lookup{{$local_part}}lsearch{{{c.local_users_file}}}{{yes}}{{no}}}}",
            f"  address_data = ${{lookup{{$local_part}}lsearch{{{c.local_users_file}}}}}",
        ]
    else:
        lines += [
            "  check_local_user",
            "  address_data = uid=$local_user_uid gid=$local_user_gid dir=$home/Maildir",
        ]
    lines += [
        "  transport = dt_vmail",
        "  no_more",
        "",
        ".ifdef UNIT_MAP",
        "dt_check_remote:",
        "  driver = accept",
        "  domains = ! +handled : ! +member_local",
        "  transport = dt_nowhere",
        "  no_more",
        ".endif",
        "",
    ]
    if c.smarthost:
        host, port = _hostport(c.smarthost, "smarthost")
        lines += [
            "dt_smarthost:",
            "  driver = manualroute",
            "  domains = ! +handled : ! +member_local",
            f"  route_list = * {host}",
            "  self = send",
            "  transport = dt_smarthost_smtp",
            "  no_more",
        ]
    else:
        lines += [
            "dt_dnslookup:",
            "  driver = dnslookup",
            "  domains = ! +handled : ! +member_local",
            "  transport = remote_smtp",
            "  ignore_target_hosts = 0.0.0.0 : 127.0.0.0/8 : ::1",
            "  no_more",
        ]
    lines += [
        "",
        "begin transports",
        "",
        "remote_smtp:",
        "  driver = smtp",
        "",
        "dt_nowhere:",
        "  driver = appendfile",
        "  file = /dev/null",
        "  user = nobody",
        "",
        "dt_vmail:",
        "  driver = appendfile",
        "  maildir_format",
        "  directory = ${extract{dir}{$address_data}}"
        "${if and{{def:h_X-Domtool-Spam:}{eq{${extract{action}{$acl_m_sp}}}{junk}}}{/.Junk}{}}",
        "  maildirfolder_create_regex = /\\.[^/]+$",
        "  create_directory",
        "  directory_mode = 0700",
        "  mode = 0600",
        "  user = ${extract{uid}{$address_data}}",
        "  group = ${extract{gid}{$address_data}}",
        "  delivery_date_add",
        "  envelope_to_add",
        "  return_path_add",
        "",
    ]
    if c.smarthost:
        host, port = _hostport(c.smarthost, "smarthost")
        lines += [
            "dt_smarthost_smtp:",
            "  driver = smtp",
            f"  port = {port}",
            "  allow_localhost",
            "  hosts_try_fastopen =",
            "",
        ]
    if c.lists_lmtp:
        host, port = _hostport(c.lists_lmtp, "lists_lmtp")
        lines += [
            "dt_lists_lmtp:",
            "  driver = smtp",
            "  protocol = lmtp",
            "  rcpt_include_affixes",
            f"  hosts = {host}",
            f"  port = {port}",
            "  allow_localhost",
            "  hosts_try_fastopen =",
            "",
        ]
    lines += [
        "begin retry",
        "*  *  F,2h,15m; G,16h,1h,1.5; F,4d,6h",
        "",
        "begin rewrite",
        "",
    ]
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------
# Rendering


def _key(source: object) -> str:
    if not isinstance(source, tuple) or not source:
        raise BadValue("expected ('user', LOCALPART), ('default',) or ('catchall',)")
    if source[0] == "user" and len(source) == 2:
        return check_email_user(source[1]).lower()
    if source == ("default",):
        return "@default"
    if source == ("catchall",):
        return "@catchall"
    raise BadValue("expected ('user', LOCALPART), ('default',) or ('catchall',)")


def _target(config: EximConfig, target: object) -> str:
    if isinstance(target, str) and "@" in target:
        return check_email(target)
    return f"{check_unix_name(target)}@{config.local_domain}"


def spam_value(m: MailDomain) -> str | None:
    """The ``@spam`` value of a domain, or None when the filter is off."""
    if not m.spam_filter:
        return None
    threshold = getattr(m, "spam_threshold", 5.0)
    action = getattr(m, "spam_action", "tag")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise BadValue("the spam threshold must be a number")
    if not -100 <= threshold <= 100:
        raise BadValue("the spam threshold must be between -100 and 100")
    if action not in SPAM_ACTIONS:
        raise BadValue(f"the spam action must be one of {', '.join(SPAM_ACTIONS)}")
    return f"threshold={int(round(threshold * 10))} action={action}"


class _Renderer:
    def __init__(self, config: EximConfig, m: MailDomain):
        self.c, self.m = config, m
        self.errors: list[MailRefused] = []

    def refuse(self, field: str, value: object, reason: str) -> None:
        self.errors.append(MailRefused(str(self.m.owner), str(self.m.name), field, value, reason))

    def check(self, field: str, fn, value):
        try:
            return fn(value)
        except BadValue as exc:
            self.refuse(field, value, str(exc))
            return None

    def render(self) -> bytes:
        m = self.m
        name = self.check("name", check_domain, m.name)
        lines = [f"# domtool: mail of {name or '?'} (owner {_safe(m.owner)}). Generated."]
        if m.handle == "relay":
            host = self.check("relay_host", check_hostname, m.relay_host)
            if host is not None:
                lines.append(f"@relay: {host}")
        elif m.handle != "local":
            self.refuse("handle", m.handle, "expected 'local' or 'relay'")
        seen: set[str] = set()
        if not isinstance(m.aliases, tuple):
            self.refuse("aliases", m.aliases, "expected a list of aliases")
            aliases: tuple = ()
        else:
            aliases = m.aliases
        for i, a in enumerate(aliases):
            field = f"aliases[{i}]"
            key = self.check(f"{field}.source", _key, getattr(a, "source", None))
            targets = getattr(a, "targets", None)
            if not isinstance(targets, tuple):
                self.refuse(f"{field}.targets", targets, "expected a list of addresses")
                continue
            if len(targets) > 256:
                self.refuse(f"{field}.targets", len(targets), "more than 256 targets")
                continue
            rendered = [
                self.check(f"{field}.targets[{j}]", lambda t: _target(self.c, t), t)
                for j, t in enumerate(targets)
            ]
            if key is None or None in rendered:
                continue
            if key in seen:
                self.refuse(f"{field}.source", a.source, "a second rule for the same source")
                continue
            seen.add(key)
            value = ", ".join(dict.fromkeys(rendered)) if rendered else ":blackhole:"
            lines.append(f"{key}: {value}")
        spam = self.check("spam_filter", spam_value, m)
        if spam is not None:
            if self.c.spamd is None:
                self.refuse("spam_filter", True, "this mail host has no spamd configured")
            else:
                lines.append(f"@spam: {spam}")
        if self.errors:
            raise RenderRefused(self.errors)
        return ("\n".join(lines) + "\n").encode()


def _safe(value: object) -> str:
    text = str(value)
    return text if re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", text) else "?"


def unit_addresses(m: MailDomain) -> list[str]:
    """The addresses whose routing shows this domain's rules: one per user alias, one for
    the default rule (a local part no rule names) and ``postmaster`` for a catch-all."""
    name = m.name.lower()
    out = []
    for a in m.aliases:
        if a.source and a.source[0] == "user":
            out.append(f"{a.source[1].lower()}@{name}")
        elif a.source == ("default",):
            out.append(f"{CHECK_LOCAL}@{name}")
        elif a.source == ("catchall",):
            out.append(f"postmaster@{name}")
    return list(dict.fromkeys(out))


def check_addresses(domain: str, content: bytes) -> list[str]:
    """The addresses a routing check asks of a rendered domain unit (what
    :func:`unit_addresses` gives for its model object): none for a relayed domain."""
    out = []
    for line in content.decode().splitlines():
        key, sep, _ = line.partition(": ")
        if not sep or line.startswith("#"):
            continue
        if key == "@relay":
            return []
        if key == "@default":
            out.append(f"{CHECK_LOCAL}@{domain}")
        elif key == "@catchall":
            out.append(f"postmaster@{domain}")
        elif not key.startswith("@"):
            out.append(f"{key}@{domain}")
    return list(dict.fromkeys(out))


LIST_SUFFIXES = (
    "",
    "-request",
    "-owner",
    "-bounces",
    "-confirm",
    "-join",
    "-leave",
    "-subscribe",
    "-unsubscribe",
)


def list_local_parts(
    state: DesiredState, node: str | None = None
) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Domain -> (owner, list names) of the Mailman lists in ``state`` whose mail this
    node handles (``ListDomain.mail_nodes``; every one when ``node`` is None), for the
    ``lists:DOMAIN`` units. A list's addresses are its name plus :data:`LIST_SUFFIXES`."""
    return {
        str(d.name).lower(): (d.owner, tuple(ml.name for ml in d.lists))
        for d in state.lists
        if node is None or node in d.mail_nodes
    }


# ---------------------------------------------------------------------------
# The backend


@attrs.frozen
class EximBackend:
    """The Backend protocol for Exim 4 (see ``domtool.slave.backend``)."""

    config: EximConfig
    name: str = "exim"
    pure_index = True  # index() depends only on the units (the config is frozen)
    _memo: dict[MailDomain, Unit] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # (mail domains, list parts, units) of the latest units() call: the same domains (a
    # change of zones or vhosts only) give the same units without 10,000 lookups
    _last: list = attrs.field(factory=list, init=False, eq=False, repr=False)

    def _domains(self, state: DesiredState) -> list[MailDomain]:
        node = self.config.node
        return [m for m in state.mail if node is None or node in m.nodes]

    def render_domain(self, m: MailDomain) -> Unit:
        """One mail domain's unit; raises :class:`RenderRefused` listing every refusal."""
        content = _Renderer(self.config, m).render()
        # (Its routing check is the batched check_units, not a per-unit command.)
        return Unit(key=f"mail:{m.name.lower()}", owner=m.owner, ext="mail", content=content)

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        domains = tuple(self._domains(state))
        parts = sorted(list_local_parts(state, self.config.node).items())
        last = self._last[0] if self._last else None
        if last is not None and last[0] == domains and last[1] == parts:
            return list(last[2])  # (identical objects compare at once)
        units, errors = self.render(state)
        for domain, (owner, names) in parts:
            try:
                units.append(self.render_lists(domain, owner, names))
            except RenderRefused as exc:
                errors.extend(exc.errors)
        if errors:
            self._last.clear()
            raise RenderRefused(errors)
        units = sorted(units, key=lambda u: u.key)
        self._last[:] = [(domains, parts, units)]
        return list(units)

    def render(self, state: DesiredState) -> tuple[list[Unit], list[MailRefused]]:
        """The units that rendered and the refusals. A domain claimed twice is refused for
        every claimant (fails closed, whatever the order)."""
        errors: list[MailRefused] = []
        claims: dict[str, list[MailDomain]] = {}
        rendered: list[tuple[MailDomain, Unit]] = []
        memo: dict[MailDomain, Unit] = {}
        for m in self._domains(state):
            try:
                unit = memo_get(self._memo, m) or self.render_domain(m)
            except RenderRefused as exc:
                errors.extend(exc.errors)
                continue
            memo_put(memo, m, unit)
            rendered.append((m, unit))
            claims.setdefault(m.name.lower(), []).append(m)
        self._memo.clear()
        self._memo.update(memo)
        units = []
        for m, unit in rendered:
            others = [o for o in claims[m.name.lower()] if o is not m]
            if others:
                who = ", ".join(sorted(str(o.owner) for o in others))
                errors.append(
                    MailRefused(m.owner, m.name, "name", m.name, f"also claimed by {who}")
                )
                continue
            units.append(unit)
        return sorted(units, key=lambda u: u.key), errors

    def render_lists(self, domain: str, owner: str, names: Iterable[str]) -> Unit:
        """The ``lists:DOMAIN`` unit: every local part of the domain's Mailman lists
        (``NAME`` and ``NAME-request``, ``-owner``, ``-bounces``...), one per line."""
        errors: list[MailRefused] = []
        lines = [f"# domtool: Mailman lists of {domain}. Generated."]
        try:
            domain = check_domain(domain)
        except BadValue as exc:
            raise RenderRefused([MailRefused(owner, domain, "name", domain, str(exc))]) from None
        for i, n in enumerate(names):
            try:
                n = check_email_user(n).lower()
            except BadValue as exc:
                errors.append(MailRefused(owner, domain, f"lists[{i}]", n, str(exc)))
                continue
            lines += [f"{n}{s}: lmtp" for s in LIST_SUFFIXES]
        if errors:
            raise RenderRefused(errors)
        return Unit(
            key=f"lists:{domain.lower()}",
            owner=owner,
            ext="lists",
            content=("\n".join(lines) + "\n").encode(),
        )

    def check_units(
        self, units: Mapping[str, Unit], paths: Mapping[str, PurePosixPath]
    ) -> UnitsCheck | None:
        """One routing check of many changed mail domains (see the module docstring): the
        map ``DOMAIN: <unit file>`` of the local ones, and ``exim -bt`` of their
        addresses (:func:`check_addresses`) in runs of under :data:`ARGV_MAX` bytes."""
        if not self.config.unit_checks:
            return None
        lines: list[str] = []
        addrs: list[str] = []
        for key in sorted(units):
            kind, _, domain = key.partition(":")
            if kind != "mail":
                continue
            mine = check_addresses(domain, units[key].content)
            path = str(paths[key])
            if not mine:
                continue
            if not _UNIT_PATH.fullmatch(path) or not _DOMAIN_KEY.fullmatch(domain):
                raise ValueError(f"bad exim unit {key!r} at {path!r}")
            lines.append(f"{domain}: {path}\n")
            addrs += mine
        if not addrs:
            return None
        head = self.config.argv(f"-DUNIT_MAP={{dir}}/{UNIT_MAP}", "-bt")
        room = ARGV_MAX - sum(len(a) + 1 for a in head) - 256  # ({dir} grows a little)
        runs: list[list[str]] = [[]]
        size = 0
        for a in addrs:
            if runs[-1] and size + len(a) + 1 > room:
                runs.append([])
                size = 0
            runs[-1].append(a)
            size += len(a) + 1
        cmds = tuple(Command((*head, *run), timeout=self.config.check_timeout) for run in runs)
        return UnitsCheck({UNIT_MAP: "".join(lines).encode()}, cmds)

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        head = "# domtool: generated; do not edit.\n"
        out: dict[str, list[str]] = {"mail": [], "lists": []}
        for key in sorted(units):
            path = str(units[key])
            kind, _, domain = key.partition(":")
            if kind not in out or not _UNIT_PATH.fullmatch(path):
                raise ValueError(f"bad exim unit {key!r} at {path!r}")
            out[kind].append(f"{domain}: {path}\n")
        return {
            DOMAINS_INDEX: (head + "".join(out["mail"])).encode(),
            LISTS_INDEX: (head + "".join(out["lists"])).encode(),
        }

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        staged = str(PurePosixPath(generation_dir))
        return (
            Command(self.config.argv("-bV", generation=staged), timeout=self.config.check_timeout),
        )

    def reload(self) -> tuple[Command, ...]:
        """Nothing by default: every SMTP connection is served by a fresh Exim process
        that reads the lookup files through ``current``, so the switch is live for the next
        connection and queued mail is never touched. With ``reload_on_apply``, SIGHUP
        (Exim re-executes itself; it refuses connections for a moment meanwhile)."""
        if not self.config.reload_on_apply:
            return ()
        return (Command(self.config.reload_argv(), timeout=self.config.check_timeout),)

    def probes(self, state: DesiredState) -> list[Probe]:
        """Per local domain: EXPN of each alias source (expecting its targets), and for a
        domain with no default or catch-all rule, RCPT of an unknown user refused."""
        c = self.config
        out = []
        for m in self._domains(state):
            if m.handle != "local":
                continue
            name = m.name.lower()
            catch = False
            mine = 0
            for a in m.aliases:
                if a.source[0] != "user":
                    catch = True
                    continue
                rcpt = f"{a.source[1].lower()}@{name}"
                want = tuple(_target(c, t) for t in a.targets)
                out.append(Probe("smtp", (c.address, c.port, "expn", rcpt, want), m.owner))
                mine += 1
            rcpt = f"{CHECK_LOCAL}@{name}"
            if not catch:
                out.append(Probe("smtp", (c.address, c.port, "refused", rcpt, ()), m.owner))
            elif not mine:
                out.append(Probe("smtp", (c.address, c.port, "accepted", rcpt, ()), m.owner))
        return out
