"""The Apache 2.4 backend: one ``<VirtualHost>`` unit per vhost, an ``Include`` index.

Rendering is pure. Every member-controlled value is validated against a strict grammar
and then quoted for Apache's own tokeniser (``ap_getword_conf``: ``\\`` and ``\\"`` are the
only escapes inside double quotes; mod_rewrite's ``parseargline`` has none, so rewrite
arguments may not contain a double quote at all). A value that fails is refused with
:class:`VhostRefused` naming the owner, vhost and field; it is never rendered. Apache
also expands ``${NAME}`` anywhere on a config line, so ``${`` is refused everywhere.

Files and commands (``state_dir`` is the slave's state directory)::

    state_dir/units/apache/<sha256>.conf   one vhost (both its http and TLS listeners)
    generation/apache/sites.conf            site-wide log format, the catch-all vhosts,
                                            then one ``Include`` per unit, sorted by key

The site's own top-level config is split in two (see :func:`site_config`): ``base.conf``
(modules, ``Listen``, ``PidFile``, ``ErrorLog``, ``User``...) and the live ``apache2.conf``
that includes ``base.conf`` and ``state_dir/current/apache/sites.conf``. The checker runs
``apache2 -t -f base.conf -c 'Include "<staged sites.conf>"'``, i.e. exactly what the live
config will load, with the staged generation in place of the current one. Reload is
``apache2 -f apache2.conf -k graceful``.

Logs: no vhost gets a ``CustomLog`` or ``ErrorLog`` of its own, since each costs a file
descriptor in every Apache process and 20,000 of them stop Apache from starting. The index
declares ONE site-wide access log whose lines start with ``%v`` (the vhost's ServerName),
and an ``ErrorLogFormat`` carrying ``%v``. With ``member_log_dir`` set, both go through
ONE piped logger each (``slave/logsplit.py``), which looks each line's vhost up in the
live generation's manifest and appends it to ``<member_log_dir>/<owner>/<fqdn>.access.log``
or ``.error.log``, readable by that member only.

Catch-all: the first vhost of an address is Apache's default for unknown ``Host`` names,
so ``sites.conf`` starts with a site-owned vhost answering ``421 Misdirected Request``;
no member's site ever answers for a name it does not carry. Probes: every vhost answers
``204`` at the reserved ``/.well-known/domtool-probe`` ahead of the member's own
directives, so "204 there" means "this name is live", whatever the member's site does.

CGI limits: for a member whose policy has limits, ``RLimitCPU``/``RLimitNPROC``/
``RLimitMEM`` (soft = hard) at the vhost level (:class:`CgiLimits`; a member's
``.htaccess`` can set them again, see there: the slave's CGI reaper is what it cannot lift).

Limits: CGI runs through suexec as the member (``SuexecUserGroup``); Debian's
``apache2-suexec-pristine`` only runs programs under ``/var/www`` and ``~user/public_html``,
so a site whose member trees live elsewhere installs ``apache2-suexec-custom`` with its
own document root. Proxy targets are loopback member ports; which member owns which port
is the dispatcher's policy, not checked here. Paths are checked for syntax only; the
slave's ``pathcheck`` decides whether they really lie in the member's tree.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath

import attrs

from domtool import validate
from domtool.model import Block, DesiredState, Vhost, WebSettings
from domtool.slave.backend import (
    BadValue,
    Command,
    Probe,
    RenderRefused,
    Unit,
    UnitRefused,
    memo_get,
    memo_put,
)
from domtool.slave.backend import renderer_check as recheck  # validate.check_* -> BadValue

__all__ = [
    "ApacheBackend",
    "ApacheConfig",
    "CgiLimits",
    "RenderRefused",
    "VhostRefused",
    "apache_quote",
    "site_config",
]

MISDIRECTED = 421
# Reserved in every vhost: answers PROBE_STATUS, so the engine can see the vhost is live.
PROBE_PATH = "/.well-known/domtool-probe"
PROBE_STATUS = 204
PROBE_PATTERN = "^/\\.well-known/domtool-probe$"
INDEX_FILE = "sites.conf"
# Modules the rendered units need; site_config loads them (mpm and authz_core first).
MODULES = (
    "mpm_event",
    "authz_core",
    "authz_host",
    "authz_user",
    "authn_core",
    "authn_file",
    "auth_basic",
    "alias",
    "dir",
    "mime",
    "rewrite",
    "proxy",
    "proxy_http",
    "include",
    "cgid",
    "socache_shmcb",
    "ssl",
    "suexec",
)
# What a member's .htaccess may override. Not "All" (RLimit*, Options), and not FileInfo:
# an .htaccess RewriteRule with [P] proxies as the web server's user to any address,
# after <Proxy> access control has run. Members write rewrites in their domtool config,
# where the flags are a closed set. A site may widen this with ApacheConfig.allow_override.
ALLOW_OVERRIDE = "AuthConfig Indexes Limit"
BASE_OPTIONS = "SymLinksIfOwnerMatch"
OPTION_NAMES = frozenset({"Indexes", "MultiViews", "SymLinksIfOwnerMatch", "IncludesNOEXEC"})
MAX_VALUE = 1024


# ---------------------------------------------------------------------------
# Errors


class VhostRefused(UnitRefused):
    """A member-controlled value of a vhost failed its grammar; nothing was rendered."""

    kind = "vhost"

    @property
    def fqdn(self) -> str:
        return self.name


# ---------------------------------------------------------------------------
# Grammars: domtool.validate's, checked again here (defence in depth), plus the few
# rules only Apache needs. Each check returns the canonical value or raises BadValue.

_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_AUTH_USER = re.compile(r"[A-Za-z0-9_@.][A-Za-z0-9_@.-]{0,63}")
_UNIT_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,4095}")


check_domain = recheck(validate.check_domain)
check_abs_path = recheck(validate.check_abs_path)
check_url_path = recheck(validate.check_url_path)
check_url = recheck(validate.check_url)
check_email = recheck(validate.check_email)
check_member_port = recheck(validate.check_member_port)
check_file_name = recheck(validate.check_file_name)
_check_error_status = recheck(validate.check_error_status)
_check_redirect_status = recheck(validate.check_redirect_status)
_check_option = recheck(validate.check_apache_option)
_check_rewrite_target = recheck(validate.check_rewrite_target)
_check_rule_flag = recheck(validate.check_rewrite_flag)
_check_cond_test = recheck(validate.check_rewrite_cond_test)
_check_cond_flag = recheck(validate.check_rewrite_cond_flag)


def _text(value: object, limit: int = MAX_VALUE) -> str:
    if not isinstance(value, str):
        raise BadValue(f"expected text, got {type(value).__name__}")
    if not value:
        raise BadValue("empty")
    if len(value) > limit:
        raise BadValue(f"longer than {limit} characters")
    if _CTRL.search(value):
        raise BadValue("contains a control character (newline, NUL...)")
    if "${" in value:
        raise BadValue("contains '${', which Apache would expand as a variable")
    return value


def check_unix_name(value: object) -> str:
    v = recheck(validate.check_unix_name)(value)
    if v == "root":
        raise BadValue("root is never a member")
    return v


def check_realm(value: object) -> str:
    v = recheck(validate.check_realm)(value)
    if "%{" in v:
        raise BadValue("'%{' would be evaluated: Apache reads AuthName as an expression")
    return v


def check_regex(value: object) -> str:
    """validate's pattern grammar; a pattern Python's re only warns about is refused."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return recheck(validate.check_regex)(value)
        except Warning as exc:
            raise BadValue(f"ambiguous regular expression: {exc}") from None


_QUOTE_PLAIN = re.compile(r"[ !#%-\[\]-~]*")  # printable ASCII but '"', '$' and '\\'
_apache_quote = recheck(validate.apache_quote)


def apache_quote(value: str) -> str:
    """``value`` as one double-quoted argument for ``ap_getword_conf`` (validate's
    quoting: refuses control characters, non-ASCII and ``${``). Values with nothing to
    escape or refuse take a fast path with the same result."""
    if isinstance(value, str) and _QUOTE_PLAIN.fullmatch(value):
        return f'"{value}"'
    return _apache_quote(value)


_URL_HOST = re.compile(r"(?i)https?://([^/?$%:]+)(?::[0-9]{1,5})?")


def _same_host_path(target: str, vhost) -> str | None:
    """The path of an absolute rewrite target naming one of the vhost's own names (any
    case, trailing dot, port), which mod_rewrite serves as that path; else None."""
    m = _URL_HOST.match(target)
    if m is None:
        return None
    host = m[1].lower().rstrip(".")
    names = {n.lower().rstrip(".") for n in (vhost.fqdn, *vhost.aliases)}
    if host not in names:
        return None
    rest = target[m.end() :]
    return rest if rest.startswith("/") else "/" + rest


def _rewrite_quote(value: str) -> str:
    """One argument for mod_rewrite's own tokeniser: quotes delimit, nothing escapes."""
    if '"' in value:
        raise BadValue("a double quote cannot be quoted for mod_rewrite")
    return '"' + value + '"'


# ---------------------------------------------------------------------------
# Configuration


@attrs.frozen
class CgiLimits:
    """Per-process bounds of one member's CGI programs (from ``policies.limits``):
    ``RLimitCPU``, ``RLimitNPROC`` and ``RLimitMEM`` at the vhost level, soft = hard, so
    the program cannot raise them and a caught ``SIGXCPU`` does not outlive the limit
    (the kernel's SIGKILL at the hard limit follows). ``RLimitNPROC`` counts every
    process of the member's user (suexec runs the program as that user).

    Trap: Apache declares ``RLimit*`` with ``OR_ALL``, so ANY ``AllowOverride`` class
    (our ``AuthConfig Indexes Limit``) lets a member's ``.htaccess`` set them again,
    raising the CPU limit of CGI programs below that directory. What a member cannot
    lift is the slave's reaper (``slave/cgireaper.py``), which kills a CGI past its CPU
    seconds or wall time; these lines make the kernel kill first where no ``.htaccess``
    interferes."""

    cpu_seconds: int
    processes: int | None = None
    memory: int | None = None

    def lines(self) -> list[str]:
        out = [f"RLimitCPU {int(self.cpu_seconds)} {int(self.cpu_seconds)}"]
        if self.processes is not None:
            out.append(f"RLimitNPROC {int(self.processes)} {int(self.processes)}")
        if self.memory is not None:
            out.append(f"RLimitMEM {int(self.memory)} {int(self.memory)}")
        return out


@attrs.frozen
class ApacheConfig:
    """How this host's Apache is laid out: listeners, binary, site config files, logs.

    ``base_config`` holds everything but the sites (modules, ``Listen``, ``PidFile``...);
    ``live_config`` includes it and ``state_dir/current/apache/sites.conf`` (see
    :func:`site_config`). ``tls_port`` None means this host has no TLS listener.
    ``default_certificate``/``default_key`` serve the TLS catch-all vhost.
    ``unit_checks``: give each unit its own ``apache2 -t`` (base config plus that one
    vhost). Off by default: each costs about 20 ms per changed unit on every apply
    (25 s for a first apply of 1,000 vhosts), while the whole-site check plus the
    engine's bisection by owner costs nothing extra until a check fails, and then names
    the owner with Apache's own message just the same (both shown by the daemon tests).
    """

    base_config: str
    live_config: str
    server_root: str
    log_dir: str
    address: str = "127.0.0.1"
    port: int = 80
    tls_port: int | None = 443
    binary: str = "/usr/sbin/apache2"
    suexec: bool = False
    node: str | None = None
    default_certificate: str | None = None
    default_key: str | None = None
    check_timeout: float = 120.0
    allow_override: str = ALLOW_OVERRIDE
    unit_checks: bool = False
    # Per-member logs (slave/logsplit.py): the members' log root, e.g. /var/log/domtool.
    # None: the one site-wide access log only. The splitter reads the live manifest in
    # state_dir (the slave's state directory; filled in from slave.toml).
    member_log_dir: str | None = None
    state_dir: str | None = None
    log_splitter: tuple[str, ...] = ("/usr/bin/python3", "-m", "domtool.slave.logsplit")

    def piped_log(self, kind: str) -> str | None:
        """The ``"||..."`` piped-log target of the ``kind`` (access/error) splitter, or
        None without member logs. Apache splits it on spaces (no shell): the paths, set by
        the site, may hold no space or quote."""
        if self.member_log_dir is None:
            return None
        site = f"{self.log_dir}/{kind}.log"
        argv = [*self.log_splitter, kind, "--state", str(self.state_dir), "--root"]
        argv += [self.member_log_dir, "--site", site]
        if self.state_dir is None or any(re.search(r'[\s"\\]', a) or not a for a in argv):
            raise ValueError(f"member logs: paths must be set and hold no space or quote: {argv}")
        return '"||' + " ".join(argv) + '"'

    def check_argv(self, sites_conf: str) -> tuple[str, ...]:
        """``apache2 -t`` over the base config plus the given sites index (or unit)."""
        return (
            self.binary,
            "-t",
            "-f",
            self.base_config,
            "-d",
            self.server_root,
            "-c",
            f"Include {apache_quote(sites_conf)}",
        )

    def reload_argv(self) -> tuple[str, ...]:
        return (self.binary, "-f", self.live_config, "-d", self.server_root, "-k", "graceful")


def site_config(
    config: ApacheConfig,
    sites_include: str,
    *,
    run_dir: str,
    modules_dir: str = "/usr/lib/apache2/modules",
    user: str | None = None,
    group: str | None = None,
    extra: Iterable[str] = (),
) -> dict[str, bytes]:
    """The site-owned top-level files: ``{base_config path: ..., live_config path: ...}``.

    ``sites_include`` is the index the live config loads, normally
    ``state_dir/current/apache/sites.conf``. Written once by site setup (never from
    member input). ``user``/``group`` are the unprivileged identity Apache's children
    take when started as root; ``extra`` lines are appended (site tuning).
    """
    listens = [f"Listen {config.address}:{config.port}"]
    if config.tls_port is not None:
        listens.append(f"Listen {config.address}:{config.tls_port} https")
    lines = [
        "# domtool: the site's Apache base configuration (no sites). Generated by site setup.",
        f"ServerRoot {apache_quote(config.server_root)}",
        *(
            f"LoadModule {m}_module {apache_quote(f'{modules_dir}/mod_{m}.so')}"
            for m in MODULES
            if config.suexec or m != "suexec"
        ),
        *([f"User {user}", f"Group {group}"] if user else []),
        f"PidFile {apache_quote(run_dir + '/apache2.pid')}",
        f"Mutex file:{run_dir} default",
        f"DefaultRuntimeDir {apache_quote(run_dir)}",
        f"ErrorLog {config.piped_log('error') or apache_quote(config.log_dir + '/error.log')}",
        "LogLevel warn",
        "ServerName localhost",
        "ServerTokens Prod",
        "TypesConfig /etc/mime.types",
        "AddDefaultCharset utf-8",
        f"SSLSessionCache {apache_quote('shmcb:' + run_dir + '/ssl_scache(512000)')}",
        "SSLProtocol all -SSLv3 -TLSv1 -TLSv1.1",
        "<Directory />",
        "    Options None",
        "    AllowOverride None",
        "    Require all denied",
        "</Directory>",
        '<FilesMatch "^\\.ht">',
        "    Require all denied",
        "</FilesMatch>",
        *listens,
        *extra,
    ]
    live = [
        "# domtool: the live Apache configuration. Generated by site setup.",
        f"Include {apache_quote(config.base_config)}",
        f"Include {apache_quote(sites_include)}",
    ]
    return {
        config.base_config: ("\n".join(lines) + "\n").encode(),
        config.live_config: ("\n".join(live) + "\n").encode(),
    }


# ---------------------------------------------------------------------------
# Rendering


class _Lines:
    """Config lines, indented by section depth."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.depth = 0

    def add(self, line: str) -> None:
        self.out.append("    " * self.depth + line)

    def open(self, line: str) -> None:
        self.add(line)
        self.depth += 1

    def close(self, line: str) -> None:
        self.depth -= 1
        self.add(line)


class _VhostRenderer:
    """Renders one vhost; collects every refused field instead of stopping at the first."""

    def __init__(self, config: ApacheConfig, vhost: Vhost, cgi: CgiLimits | None = None):
        self.config = config
        self.vhost = vhost
        self.cgi = cgi
        self.errors: list[VhostRefused] = []

    def check(self, field: str, checker, value):
        try:
            return checker(value)
        except BadValue as exc:
            self.errors.append(
                VhostRefused(self.vhost.owner, str(self.vhost.fqdn), field, value, str(exc))
            )
            return None

    def q(self, field: str, checker, value) -> str | None:
        return self.check(field, lambda x: apache_quote(checker(x)), value)

    # -- pieces ------------------------------------------------------------

    def options(self, field: str, values: tuple[str, ...], ws: WebSettings) -> list[str]:
        words = []
        for i, opt in enumerate(values):
            try:
                opt = _check_option(opt)
            except BadValue:
                opt = ""
            if opt[1:] not in OPTION_NAMES or opt[:1] not in ("+", "-"):
                self.errors.append(
                    VhostRefused(
                        self.vhost.owner,
                        self.vhost.fqdn,
                        f"{field}.options[{i}]",
                        opt,
                        "options are +/- one of " + ", ".join(sorted(OPTION_NAMES)),
                    )
                )
                continue
            words.append(opt)
        if ws.ssi:
            words.append("+IncludesNOEXEC")
        if ws.cgi:
            words.append("+ExecCGI")
        return [f"Options {' '.join(words)}"] if words else []

    def settings(self, out: _Lines, field: str, ws: WebSettings, *, vhost_level: bool) -> None:
        """Directives of a WebSettings. At vhost level the directory-only ones go to the
        document root's ``<Directory>`` (see :meth:`dir_settings`)."""
        if ws.directory_index:
            names = [
                self.q(f"{field}.directory_index[{i}]", check_file_name, n)
                for i, n in enumerate(ws.directory_index)
            ]
            if None not in names:
                out.add("DirectoryIndex " + " ".join(names))  # type: ignore[arg-type]
        for i, (status, doc) in enumerate(ws.error_documents):
            f = f"{field}.error_documents[{i}]"
            st = self.check(f + ".status", _check_error_status, status)
            d = self.q(f + ".document", _error_document, doc)
            if st is not None and d is not None:
                out.add(f"ErrorDocument {st} {d}")
        for i, r in enumerate(ws.redirects):
            f = f"{field}.redirects[{i}]"
            st = self.check(f + ".status", _check_redirect_status, r.status)
            p = self.q(f + ".path", check_url_path, r.path)
            t = self.q(f + ".target", check_url, r.target)
            if None not in (st, p, t):
                out.add(f"Redirect {st} {p} {t}")
        if ws.rewrites:
            lines = []
            for i, rw in enumerate(ws.rewrites):
                lines.extend(self.rewrite(f"{field}.rewrites[{i}]", rw, vhost_level))
            out.add("RewriteEngine on")
            if vhost_level:
                out.add(f'RewriteRule "{PROBE_PATTERN}" "-" [L]')
            for line in lines:
                out.add(line)
        if not vhost_level:
            self.dir_settings(out, field, ws)
        elif ws.auth is not None:
            out.open('<Location "/">')
            self.auth(out, field, ws)
            out.close("</Location>")

    def dir_settings(self, out: _Lines, field: str, ws: WebSettings) -> None:
        """Directory-context directives: Options, SSI, CGI handler, and (in blocks) auth."""
        for line in self.options(field, ws.options, ws):
            out.add(line)
        if ws.ssi:
            out.add('AddOutputFilter INCLUDES ".shtml"')
        if ws.cgi:
            if not self.config.suexec:
                self.refuse(field + ".cgi", True, "CGI needs suexec, which this host lacks")
            out.add('AddHandler cgi-script ".cgi"')

    def auth(self, out: _Lines, field: str, ws: WebSettings) -> None:
        a = ws.auth
        if a is None:
            return
        realm = self.q(field + ".auth.realm", check_realm, a.realm)
        ufile = self.q(field + ".auth.user_file", check_abs_path, a.user_file)
        require = self.require(field + ".auth.require", a.require)
        if None in (realm, ufile, require):
            return
        out.add("AuthType Basic")
        out.add(f"AuthName {realm}")
        out.add("AuthBasicProvider file")
        out.add(f"AuthUserFile {ufile}")
        out.add(f"Require {require}")

    def require(self, field: str, values: tuple[str, ...]) -> str | None:
        if not values:
            self.refuse(field, values, "empty: say valid-user or name the users")
            return None
        if "valid-user" in values:
            return "valid-user"
        users = []
        for i, v in enumerate(values):
            if not isinstance(v, str) or not _AUTH_USER.fullmatch(v):
                self.refuse(f"{field}[{i}]", v, "not valid-user nor a user name")
                return None
            users.append(v)
        return "user " + " ".join(users)

    def rewrite(self, field: str, rw, vhost_level: bool) -> list[str]:
        out = []
        for j, cond in enumerate(rw.conditions):
            f = f"{field}.conditions[{j}]"
            if not (isinstance(cond, tuple) and len(cond) == 3):
                self.refuse(f, cond, "a condition is (test string, pattern, flags)")
                continue
            test, pattern, flags = cond
            t = self.check(f + ".test", _check_cond_test, test)
            p = self.check(f + ".pattern", check_regex, pattern)
            fl = self.check(f + ".flags", _flags(_check_cond_flag), flags)
            if None not in (t, p, fl):
                out.append(
                    f"RewriteCond {_rewrite_quote(t)} {_rewrite_quote(p)}"
                    + (f" [{','.join(fl)}]" if fl else "")
                )
        p = self.check(field + ".pattern", check_regex, rw.pattern)
        t = self.check(field + ".target", _check_rewrite_target, rw.target)
        fl = self.check(field + ".flags", _flags(_check_rule_flag), rw.flags)
        if None in (p, t, fl):
            return out
        fl = list(fl)
        redirect = any(f == "R" or f.startswith("R=") for f in fl)
        local = _same_host_path(t, self.vhost) if not redirect else None
        if local is not None:
            # mod_rewrite reduces http://THIS-HOST/x to the path /x (reduce_uri): treat
            # it as the path it is, with the path's checks and [PT] below.
            t = self.check(field + ".target", _check_rewrite_target, local)
            if t is None:
                return out
        # A local target in vhost context could name a file outside the member's tree
        # (mod_rewrite guesses file paths); PT makes it a URL path that goes through
        # Alias and <Directory> access control like any request.
        stops = {"F", "G"} | {f for f in fl if f == "R" or f.startswith("R=")}
        if vhost_level and t.startswith("/") and not (stops & set(fl)) and "PT" not in fl:
            fl.append("PT")
        out.append(
            f"RewriteRule {_rewrite_quote(p)} {_rewrite_quote(t)}"
            + (f" [{','.join(fl)}]" if fl else "")
        )
        return out

    def refuse(self, field: str, value, reason: str) -> None:
        self.errors.append(VhostRefused(self.vhost.owner, self.vhost.fqdn, field, value, reason))

    # -- the vhost -----------------------------------------------------------

    def body(self, out: _Lines) -> None:
        v = self.vhost
        out.add(f"ServerName {self.q('fqdn', check_domain, v.fqdn)}")
        aliases = [self.q(f"aliases[{i}]", check_domain, a) for i, a in enumerate(v.aliases)]
        if aliases and None not in aliases:
            out.add("ServerAlias " + " ".join(aliases))  # type: ignore[arg-type]
        out.add(f"ServerAdmin {self.q('server_admin', check_email, v.server_admin)}")
        # The probe answers before any member directive (mod_alias, translate phase).
        out.add(f'Redirect {PROBE_STATUS} "{PROBE_PATH}"')
        root = self.check("document_root", check_abs_path, v.document_root)
        user = self.check("user", check_unix_name, v.user)
        group = self.check("group", check_unix_name, v.group)
        out.add(f"DocumentRoot {apache_quote(root or '/')}")
        if self.config.suexec and user and group:
            out.add(f"SuexecUserGroup {user} {group}")
        if self.cgi is not None:
            for line in self.cgi.lines():
                out.add(line)
        out.open(f"<Directory {apache_quote(root or '/')}>")
        out.add(f"Options {BASE_OPTIONS}")
        out.add(f"AllowOverride {self.config.allow_override}")
        out.add("Require all granted")
        self.dir_settings(out, "settings", v.settings)
        out.close("</Directory>")
        for i, (url, path) in enumerate(v.url_aliases):
            u = self.check(f"url_aliases[{i}].url_path", _alias_url, url)
            p = self.q(f"url_aliases[{i}].path", check_abs_path, path)
            if u and p:
                out.add(f"Alias {u} {p}")
                out.open(f"<Directory {p}>")
                out.add(f"Options {BASE_OPTIONS}")
                out.add(f"AllowOverride {self.config.allow_override}")
                out.add("Require all granted")
                out.close("</Directory>")
        for i, (url, path) in enumerate(v.script_aliases):
            f = f"script_aliases[{i}]"
            if not self.config.suexec:
                self.refuse(f, (url, path), "CGI needs suexec, which this host lacks")
                continue
            u = self.check(f + ".url_path", _alias_url, url)
            p = self.q(f + ".path", check_abs_path, path)
            if u and p:
                out.add(f"ScriptAlias {u} {p}")
                out.open(f"<Directory {p}>")
                out.add("Options +ExecCGI")
                out.add("AllowOverride None")
                out.add("Require all granted")
                out.close("</Directory>")
        if v.proxies:
            out.add(f'ProxyPass "{PROBE_PATH}" "!"')
        for i, px in enumerate(v.proxies):
            f = f"proxies[{i}]"
            path = self.q(f + ".path", check_url_path, px.path)
            port = self.check(f + ".port", check_member_port, px.port)
            target = self.check(f + ".target", check_url_path, px.target)
            if path and port and target:
                url = apache_quote(f"http://127.0.0.1:{port}{target}")
                out.add(f"ProxyPass {path} {url}")
                out.add(f"ProxyPassReverse {path} {url}")
        self.settings(out, "settings", v.settings, vhost_level=True)
        for i, b in enumerate(v.blocks):
            self.block(out, f"blocks[{i}]", b)

    def block(self, out: _Lines, field: str, b: Block) -> None:
        if b.kind == "location":
            path = self.q(field + ".path", check_url_path, b.path)
            tag = "Location"
        elif b.kind == "directory":
            path = self.q(field + ".path", check_abs_path, b.path)
            tag = "Directory"
        else:
            self.refuse(field + ".kind", b.kind, "a block is a location or a directory")
            return
        if path is None:
            return
        out.open(f"<{tag} {path}>")
        self.settings(out, field + ".settings", b.settings, vhost_level=False)
        self.auth(out, field + ".settings", b.settings)
        out.close(f"</{tag}>")

    def render(self) -> bytes:
        v, c = self.vhost, self.config
        out = _Lines()
        out.add(f"# domtool: vhost {_comment_safe(v.fqdn)} of {_comment_safe(v.owner)}")
        self.check("owner", check_unix_name, v.owner)
        listeners = [(c.port, None)]
        if v.tls is not None:
            if c.tls_port is None:
                self.refuse("tls", v.tls, "this host has no TLS listener")
            else:
                listeners.append((c.tls_port, v.tls))
        for port, tls in listeners:
            out.open(f"<VirtualHost {c.address}:{port}>")
            self.body(out)
            if tls is not None:
                cert = self.q("tls.certificate", check_abs_path, tls.certificate)
                key = self.q("tls.key", check_abs_path, tls.key)
                out.add("SSLEngine on")
                out.add(f"SSLCertificateFile {cert}")
                out.add(f"SSLCertificateKeyFile {key}")
                if tls.chain is not None:
                    chain = self.q("tls.chain", check_abs_path, tls.chain)
                    out.add(f"SSLCertificateChainFile {chain}")
            out.close("</VirtualHost>")
            if self.errors:
                break  # the TLS copy would only repeat the same errors
        if self.errors:
            raise RenderRefused(_dedupe(self.errors))
        return ("\n".join(out.out) + "\n").encode()


def _comment_safe(value: object) -> str:
    s = str(value)
    return s if s.isascii() and s.isprintable() and len(s) <= 253 else "(refused)"


def _dedupe(errors: list[VhostRefused]) -> list[VhostRefused]:
    seen, out = set(), []
    for e in errors:
        if str(e) not in seen:
            seen.add(str(e))
            out.append(e)
    return out


def _error_document(value: object) -> str:
    v = _text(value)
    if v.startswith("/"):
        return check_url_path(v)
    return check_url(v)


def _flags(checker):
    def check(value: object) -> tuple[str, ...]:
        if not isinstance(value, tuple):
            raise BadValue("flags are a tuple of names")
        return tuple(checker(f) for f in value)

    return check


# ---------------------------------------------------------------------------
# The backend


def _alias_url(url: str) -> str:
    """The URL path of an ``Alias``/``ScriptAlias`` without its trailing slashes: Apache
    replaces the URL prefix by the file path as written, and the path grammar drops a
    path's trailing slash, so ``/cgi-bin/`` with ``/srv/cgi`` would map ``/cgi-bin/x`` to
    ``/srv/cgix``; ``/cgi-bin`` maps it to ``/srv/cgi/x`` (and matches whole segments
    only). The whole site (``/``) is the DocumentRoot, not an alias."""
    u = check_url_path(url).rstrip("/")
    if not u:
        raise BadValue("an alias of / is the whole site: set DocumentRoot instead")
    return apache_quote(u)


@attrs.frozen
class ApacheBackend:
    """The Backend protocol for Apache 2.4 (see ``domtool.slave.backend``)."""

    config: ApacheConfig
    name: str = "apache"
    pure_index = True  # index() depends only on the units (the config is frozen)
    # Each owner's CGI limits carried by the state (the member policy), by owner; None:
    # no RLimit* lines. ``cgi_default`` applies to an owner the state gives none.
    cgi_limits_of: Callable[[DesiredState], Mapping[str, CgiLimits]] | None = None
    cgi_default: CgiLimits | None = None
    # vhost -> its unit, from the latest render: an unchanged vhost is not rendered again,
    # so a one-vhost change costs a lookup per unrelated vhost, not a render.
    _memo: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # (vhosts, units, errors) of the latest render: the same vhosts (a change of zones
    # only) give the same units without looking at 10,000 vhosts again.
    _last: list = attrs.field(factory=list, init=False, eq=False, repr=False)
    # The latest render kept by vhost object, so a render whose vhosts are mostly the
    # same objects (one member's vhost added or changed among 10,000) renders and claims
    # only the new ones (see _update); None: render whole next time.
    _inc: list = attrs.field(factory=list, init=False, eq=False, repr=False)
    # id(vhost) -> (vhost, its probe): 10,000 probes are not built again per change
    _probes: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # (state.vhosts, this node's vhosts) of the latest call
    _mine: list = attrs.field(factory=list, init=False, eq=False, repr=False)

    def _vhosts(self, state: DesiredState) -> list[Vhost]:
        last = self._mine[0] if self._mine else None
        if last is not None and last[0] is state.vhosts:
            return last[1]
        node = self.config.node
        mine = [v for v in state.vhosts if node is None or node in v.nodes]
        self._mine[:] = [(state.vhosts, mine)]
        return mine

    def _cgi(self, state: DesiredState) -> tuple[tuple[str, CgiLimits], ...]:
        if self.cgi_limits_of is None:
            return ()
        return tuple(sorted(self.cgi_limits_of(state).items()))

    def render_vhost(self, vhost: Vhost, cgi: CgiLimits | None = None) -> Unit:
        """One vhost's unit; raises :class:`RenderRefused` listing every refused field."""
        content = _VhostRenderer(self.config, vhost, cgi).render()
        checks = ()
        if self.config.unit_checks:
            argv = self.config.check_argv("{path}")
            checks = (Command(argv, timeout=self.config.check_timeout),)
        return Unit(
            key=f"vhost:{vhost.fqdn.lower()}",
            owner=vhost.owner,
            ext="conf",
            content=content,
            checks=checks,
        )

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        """Every vhost of this host. Raises :class:`RenderRefused` with all refusals (of
        every owner) if any vhost has a value that fails its grammar, or if two vhosts
        claim the same name."""
        vhosts = (tuple(self._vhosts(state)), self._cgi(state))
        last = self._last[0] if self._last else None
        if last is not None and last[0] == vhosts:  # (identical objects compare at once)
            units, errors = last[1], last[2]
        else:
            units = self._update(vhosts[0], dict(vhosts[1]))
            errors = []
            if units is None:
                units, errors = self.render(state)
                inc = (
                    None
                    if errors
                    else _Incremental.of(vhosts[0], dict(vhosts[1]), self.cgi_default, units)
                )
                self._inc[:] = [inc] if inc is not None else []
            self._last[:] = [(vhosts, units, errors)]
        if errors:
            raise RenderRefused(errors)
        return list(units)

    def _update(self, vhosts: tuple[Vhost, ...], cgi: dict) -> list[Unit] | None:
        """The units of ``vhosts`` from the latest render, rendering only the vhost
        objects it did not have (what :meth:`render` gives for them, which depends on
        nothing but the vhosts and the CGI limits); None when that is not simply done:
        no earlier render, other limits, many vhosts new, a refusal or a name claimed
        twice (then :meth:`render` does it all and says why)."""
        inc = self._inc[0] if self._inc else None
        if inc is None or cgi != inc.cgi:
            return None
        now = dict(zip(map(id, vhosts), vhosts, strict=True))
        if len(now) != len(vhosts):
            return None  # the same object twice
        gone = inc.by_id.keys() - now.keys()
        new = now.keys() - inc.by_id.keys()
        if len(gone) + len(new) > 64 + len(vhosts) // 8:
            return None
        rendered = []
        for i in new:
            v = now[i]
            limits = cgi.get(v.owner, self.cgi_default)
            try:
                unit = memo_get(self._memo, (v, limits)) or (
                    self.render_vhost(v, limits) if limits else self.render_vhost(v)
                )
            except RenderRefused:
                return None
            names = _claimed(v)
            rendered.append((i, v, limits, unit, names))
        claims, units, by_id, memo = inc.claims, inc.units, inc.by_id, self._memo
        for i in gone:
            v, limits, unit, names = by_id.pop(i)
            for n in names:
                claims[n] -= 1
                if not claims[n]:
                    del claims[n]
            if units.get(unit.key) is unit:
                del units[unit.key]
            try:
                if memo.get((v, limits)) is unit:
                    del memo[(v, limits)]
            except TypeError:
                pass
        for i, v, limits, unit, names in rendered:
            by_id[i] = (v, limits, unit, names)
            for n in names:
                claims[n] = claims.get(n, 0) + 1
            units[unit.key] = unit
            memo_put(memo, (v, limits), unit)
        if len(units) != len(by_id) or any(
            claims[n] > 1 for _i, recheck, _l, _u, ns in rendered for n in ns
        ):
            self._inc.clear()  # a name claimed twice: render() refuses the claimants
            return None
        return sorted(units.values(), key=_by_key)

    def render(self, state: DesiredState) -> tuple[list[Unit], list[VhostRefused]]:
        """The units that rendered and the refusals, so a caller can keep the good ones.

        A host name (ServerName or ServerAlias) claimed by two vhosts is ambiguous to
        Apache (the first loaded wins), so every vhost claiming it is refused, whatever
        the order: no vhost can take a name from another by sorting first. (The
        dispatcher's ownership check should never let this happen; this fails closed.)
        """
        rendered: list[tuple[Vhost, Unit, list[str]]] = []
        errors: list[VhostRefused] = []
        claims: dict[str, list[Vhost]] = {}
        memo: dict = {}
        cgi = dict(self._cgi(state))
        for v in self._vhosts(state):
            limits = cgi.get(v.owner, self.cgi_default)
            try:
                unit = memo_get(self._memo, (v, limits)) or (
                    self.render_vhost(v, limits) if limits else self.render_vhost(v)
                )
            except RenderRefused as exc:
                errors.extend(exc.errors)
                continue
            memo_put(memo, (v, limits), unit)
            names = _claimed(v)
            rendered.append((v, unit, names))
            for n in names:
                claims.setdefault(n, []).append(v)
        self._memo.clear()
        self._memo.update(memo)
        units: dict[str, Unit] = {}
        for v, unit, names in rendered:
            clash = next((n for n in names if len(claims[n]) > 1), None)
            if clash is not None:
                others = ", ".join(
                    sorted(f"{o.fqdn} of {o.owner}" for o in claims[clash] if o is not v)
                )
                field = "fqdn" if clash == names[0] else "aliases"
                errors.append(
                    VhostRefused(
                        v.owner, v.fqdn, field, clash, f"the name is also claimed by {others}"
                    )
                )
                continue
            units[unit.key] = unit
        return sorted(units.values(), key=lambda u: u.key), errors

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        """``sites.conf``: log format, the catch-all vhosts, one Include per unit by key."""
        c = self.config
        lines = [
            "# domtool: the Apache sites of this generation. Generated; do not edit.",
            # One access log for the whole site; %v first so it can be split per vhost.
            'LogFormat "%v %h %l %u %t \\"%r\\" %>s %O \\"%{Referer}i\\" \\"%{User-Agent}i\\"" '
            "domtool_vhost",
            f"CustomLog {c.piped_log('access') or apache_quote(c.log_dir + '/access.log')} "
            "domtool_vhost",
            'ErrorLogFormat "[%{u}t] [%-m:%l] [%v] [pid %P] %F: %E: [client %a] %M"',
            f"<VirtualHost {c.address}:{c.port}>",
            '    ServerName "default.invalid"',
            f"    Redirect {MISDIRECTED} /",
            "</VirtualHost>",
        ]
        if c.tls_port is not None and c.default_certificate and c.default_key:
            lines += [
                f"<VirtualHost {c.address}:{c.tls_port}>",
                '    ServerName "default.invalid"',
                "    SSLEngine on",
                f"    SSLCertificateFile {apache_quote(c.default_certificate)}",
                f"    SSLCertificateKeyFile {apache_quote(c.default_key)}",
                f"    Redirect {MISDIRECTED} /",
                "</VirtualHost>",
            ]
        for key in sorted(units):
            path = str(units[key])
            # Unit paths come from the engine (state_dir/units/apache/<sha256>.conf): the
            # common shape is quoted directly, anything else through the full quoting.
            if _UNIT_PATH.fullmatch(path):
                lines.append(f'Include "{path}"')
            elif path.startswith("/") and not _CTRL.search(path):
                lines.append(f"Include {apache_quote(path)}")
            else:
                raise ValueError(f"unit path for {key!r} is not absolute: {path!r}")
        return {INDEX_FILE: ("\n".join(lines) + "\n").encode()}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        """``apache2 -t`` over the base config and the staged ``sites.conf``."""
        staged = str(PurePosixPath(generation_dir) / self.name / INDEX_FILE)
        return (Command(self.config.check_argv(staged), timeout=self.config.check_timeout),)

    def reload(self) -> tuple[Command, ...]:
        """A graceful restart: children finish their requests, then the new config serves."""
        return (Command(self.config.reload_argv(), timeout=self.config.check_timeout),)

    def probes(self, state: DesiredState) -> list[Probe]:
        """One GET of the reserved probe path per vhost on the http listener.

        Every vhost answers :data:`PROBE_STATUS` there before any member directive
        (rewrites, proxies, auth) can act, and the catch-all answers 421, so the probe
        shows the name is live in the running configuration whatever the member's site
        does (a member's dead backend cannot fail another member's apply).
        """
        c = self.config
        known, out = self._probes, []
        for v in self._vhosts(state):
            got = known.get(id(v))
            if got is None or got[0] is not v:
                target = (c.address, c.port, _lower(v.fqdn), PROBE_STATUS, PROBE_PATH)
                got = known[id(v)] = (v, Probe("http", target, v.owner))
            out.append(got[1])
        if len(known) > 2 * len(out) + 1000:  # forget vhosts no longer asked about
            mine = {id(v) for v in self._vhosts(state)}
            for i in known.keys() - mine:
                del known[i]
        return out


def _lower(name: str) -> str:
    """``name`` lower-cased: the same string when it already is (10,000 vhosts' probes
    and claims hold no second copy of each name)."""
    low = name.lower()
    return name if low == name else low


def _claimed(v: Vhost) -> tuple[str, ...]:
    """The host names a vhost claims, lower-cased, each once, fqdn first."""
    if not v.aliases:
        return (_lower(v.fqdn),)
    return tuple(dict.fromkeys(_lower(n) for n in (v.fqdn, *v.aliases)))


def _by_key(unit: Unit) -> str:
    return unit.key


@attrs.define
class _Incremental:
    """The latest whole render of :class:`ApacheBackend`, by vhost object: id(vhost) ->
    (vhost, limits, unit, names it claims); how many vhosts claim each name; the units by
    key; the CGI limits it was rendered with. It holds the vhosts, so ids stay theirs."""

    by_id: dict
    claims: dict[str, int]
    units: dict[str, Unit]
    cgi: dict

    @classmethod
    def of(
        cls, vhosts: tuple[Vhost, ...], cgi: dict, default: CgiLimits | None, units: list[Unit]
    ) -> _Incremental | None:
        by_key = {u.key: u for u in units}
        by_id, claims = {}, {}
        for v in vhosts:
            unit = by_key.get(f"vhost:{v.fqdn.lower()}")
            if unit is None or id(v) in by_id:
                return None
            names = _claimed(v)
            by_id[id(v)] = (v, cgi.get(v.owner, default), unit, names)
            for n in names:
                claims[n] = claims.get(n, 0) + 1
        if len(by_key) != len(by_id):
            return None
        return cls(by_id, claims, by_key, cgi)
