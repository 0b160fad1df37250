"""The bodies of the standard library's ``extern val``\\ s, and the builder they act on.

Each primitive is a Python function registered by name in :data:`REGISTRY` (an explicit
registry: a library ``extern val`` gets an implementation only if its name is here, and a
member's own ``extern val`` never does). There are three kinds:

- ``pure``: computes a value from its arguments (``userSource "sales"``);
- ``action``: called with the :class:`Builder` first, changes the state under
  construction (``dnsA "www" "192.0.2.1"``);
- ``block``: like an action, and receives the block's body as a callable to run between
  pushing and popping its frame (``domain "example.org" with ... end``).

The :class:`Builder` holds the context stack of frames (a domain collecting records, a
vhost collecting its settings, location/directory blocks), the environment variables, and
the finished units. Arguments have passed the type checker; primitives still re-check
what matters for security (ownership of domains and paths) and normalise values with
:mod:`domtool.validate` before they reach the model. Everything produced is owned by the
submitting member.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from domtool import validate
from domtool.lang import externs
from domtool.lang.ast import Span
from domtool.model import (
    TLS,
    Alias,
    BasicAuth,
    Block,
    ListDomain,
    MailDomain,
    MailingList,
    ProxyPass,
    Record,
    Redirect,
    Rewrite,
    Site,
    Vhost,
    WebSettings,
    Zone,
)

MAX_UNITS = 5000
#: The work one request's evaluation may do, in units (:class:`Budget`).
WORK_BUDGET = 500_000
#: String bytes that cost one unit of work.
STRING_UNIT = 64


class EvalError(Exception):
    """An error while evaluating a checked program (its message is shown to the member)."""

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        hint: str | None = None,
        details: tuple[str, ...] = (),
    ):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.details = details


class Budget:
    """The work one request's evaluation may do, shared by all its files.

    One unit is one evaluation or run step, one list element a primitive receives
    (built, appended or checked), or :data:`STRING_UNIT` bytes of a string it receives:
    a call that appends a 20,000-item list costs 20,000, not 1. Running out is an
    :class:`EvalError` at the span of the step that ran out."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int = WORK_BUDGET) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, n: int, span: Span | None) -> None:
        self.used += n
        if self.used > self.limit:
            raise EvalError(
                f"evaluation exceeded its work budget ({self.limit} units)",
                span,
                "the program does too much work: each step, each list element a directive "
                f"receives and each {STRING_UNIT} bytes of its strings count one unit "
                "(nested functions that repeat their argument, or a long list used many times?)",
            )


def work_of(value: Any, depth: int = 0) -> int:
    """The units a primitive's argument costs: list elements (nested lists counted
    through), strings by size; a closure or other value costs nothing here."""
    if isinstance(value, str):
        return len(value) // STRING_UNIT
    if isinstance(value, tuple | list) and depth < 8:
        return len(value) + sum(work_of(v, depth + 1) for v in value)
    return 0


# ---------------------------------------------------------------------------
# Frames


@attrs.define
class Settings:
    """Mutable accumulator for :class:`domtool.model.WebSettings`."""

    directory_index: list[str] = attrs.Factory(list)
    options: list[str] = attrs.Factory(list)
    error_documents: list[tuple[int, str]] = attrs.Factory(list)
    redirects: list[Redirect] = attrs.Factory(list)
    rewrites: list[Rewrite] = attrs.Factory(list)
    auth: BasicAuth | None = None
    ssi: bool = False
    cgi: bool = False

    def freeze(self) -> WebSettings:
        return WebSettings(
            directory_index=tuple(self.directory_index),
            options=tuple(self.options),
            error_documents=tuple(self.error_documents),
            redirects=tuple(self.redirects),
            rewrites=tuple(self.rewrites),
            auth=self.auth,
            ssi=self.ssi,
            cgi=self.cgi,
        )


@attrs.define
class MailFrame:
    nodes: tuple[str, ...]
    handle: str = "local"
    relay_host: str | None = None
    aliases: dict[tuple[str, ...], tuple[str, ...]] = attrs.Factory(dict)
    spam_filter: bool = False
    spam_threshold: int = 5
    spam_action: str = "tag"


@attrs.define
class ListFrame:
    name: str
    owners: list[str] = attrs.Factory(list)
    context: str = "MailingList"


@attrs.define
class ListsFrame:
    nodes: tuple[str, ...]
    web_host: str | None = None
    lists: dict[str, MailingList] = attrs.Factory(dict)


@attrs.define
class DomainFrame:
    name: str
    ttl: int
    nodes: tuple[str, ...]
    records: set[Record] = attrs.Factory(set)
    vhosts: set[str] = attrs.Factory(set)
    mail: MailFrame | None = None
    lists: ListsFrame | None = None
    context: str = "Domain"
    # ``byDefault`` bodies, run when the domain's own body is done (domtool/lang/defaults.py)
    defaults: list[Any] = attrs.Factory(list)
    explicit_records: frozenset[tuple[str, str]] = frozenset()


@attrs.define
class VhostFrame:
    domain: DomainFrame
    label: str
    fqdn: str
    aliases: list[str] = attrs.Factory(list)
    apex: bool = False
    url_aliases: list[tuple[str, str]] = attrs.Factory(list)
    script_aliases: list[tuple[str, str]] = attrs.Factory(list)
    proxies: list[ProxyPass] = attrs.Factory(list)
    settings: Settings = attrs.Factory(Settings)
    blocks: list[Block] = attrs.Factory(list)
    tls: TLS | None = None
    context: str = "Vhost"


@attrs.define
class BlockFrame:
    kind: str  # "location" | "directory"
    path: str
    settings: Settings = attrs.Factory(Settings)
    context: str = "Location"


Frame = DomainFrame | VhostFrame | BlockFrame | ListFrame


# ---------------------------------------------------------------------------
# The builder


class Builder:
    """The state an evaluation builds: frames, environment variables, finished units."""

    def __init__(
        self,
        perms: Any,
        site: Site,
        env: dict[str, Any],
        max_units: int = MAX_UNITS,
        budget: Budget | None = None,
    ):
        self.perms = perms
        self.budget = budget if budget is not None else Budget()
        self.site = site
        self.owner: str = perms.user
        self.env: dict[str, Any] = dict(env)
        self.stack: list[Frame] = []
        self.zones: dict[str, Zone] = {}
        self.vhosts: dict[str, Vhost] = {}
        self.mail: dict[str, MailDomain] = {}
        self.lists: dict[str, ListDomain] = {}
        self.units = 0
        self.max_units = max_units
        self.span: Span | None = None
        self._owned: set[tuple[str, Any]] = set()
        self.file: str | None = None  # the member's file (set by the evaluator)
        self.user_span: Span | None = None  # the member's last expression run
        self.defaulting: DomainFrame | None = None  # running that domain's byDefault bodies
        self.first_spans: dict[tuple[str, str], Span | None] = {}

    def fail(self, message: str, hint: str | None = None, details: tuple[str, ...] = ()) -> None:
        raise EvalError(message, self.span, hint, details)

    def here(self) -> Span | None:
        """Where the running directive was written in the member's file (its own span, or
        the member's expression that led into library code)."""
        if self.span is not None and self.span.file == self.file:
            return self.span
        return self.user_span

    def first(self, kind: str, name: str, message: str) -> None:
        """Note where ``name`` (a ``kind``: zone, vhost) is configured; if it already
        is, fail with ``message`` and the span of the first."""
        key = (kind, name)
        if key in self.first_spans:
            span = self.first_spans[key]
            where = f"{span.file}:{span}" if span is not None else "earlier in this file"
            self.fail(message, "remove one of the two", (f"First configured at: {where}",))
        self.first_spans[key] = self.here()

    def same_place(self, kind: str, name: str, of: str) -> None:
        """Note that ``name`` (a ``kind``: mail domain, list domain) is configured where the
        ``of`` of the same name was (a domain's mail and lists: at its ``domain``)."""
        self.first_spans[(kind, name)] = self.first_spans.get((of, name))

    def count(self, n: int = 1) -> None:
        self.units += n
        if self.units > self.max_units:
            self.fail(
                f"evaluation produced more than {self.max_units} records, vhosts and aliases",
                "split the configuration or ask an admin to raise the limit",
            )

    def work(self, n: int) -> None:
        """Charge ``n`` units of work done here to the request's budget."""
        self.budget.charge(n, self.span)

    def get(self, name: str) -> Any:
        try:
            return self.env[name]
        except KeyError:
            self.fail(
                f"Environment variable {name} has no value here.",
                f"set it first, e.g. `{name} = ...`",
            )

    def top(self, cls: type) -> Any:
        if not self.stack or not isinstance(self.stack[-1], cls):
            self.fail(f"internal: expected a {cls.__name__} on the context stack")
        return self.stack[-1]

    def find(self, cls: type) -> Any:
        for f in reversed(self.stack):
            if isinstance(f, cls):
                return f
        self.fail(f"internal: no {cls.__name__} on the context stack")

    def settings(self) -> Settings:
        top = self.stack[-1] if self.stack else None
        if isinstance(top, VhostFrame | BlockFrame):
            return top.settings
        self.fail("internal: web settings outside a vhost")
        raise AssertionError

    def owns(self, type_name: str, value: Any) -> None:
        """Re-check a security type at evaluation time (defence in depth)."""
        key = (type_name, value)
        if key in self._owned:
            return
        if externs.accepts(type_name, value, self.perms, self.site):
            self._owned.add(key)
        else:
            self.fail(
                f"{value!r} is not {type_name} for {self.owner}.",
                externs.hint(type_name, self.perms, self.site),
            )

    def record(self, frame: DomainFrame, name: str, rtype: str, data: tuple[Any, ...]) -> None:
        if self.defaulting is frame and _defaults.record_yields(frame, name, rtype):
            return
        ttl = self.env.get("TTL", frame.ttl)
        rec = Record(name, rtype, data, None if ttl == frame.ttl else ttl)
        if rec not in frame.records:
            self.count()
            frame.records.add(rec)

    def node_records(self, frame: DomainFrame, name: str, nodes: tuple[str, ...]) -> None:
        for n in nodes:
            try:
                node = self.site.node(n)
            except KeyError:
                self.fail(f"{n!r} is not a node of this site")
            self.record(frame, name, "A", (node.ipv4,))
            if node.ipv6:
                self.record(frame, name, "AAAA", (node.ipv6,))


def _nodes(b: Builder, var: str) -> tuple[str, ...]:
    value = b.get(var)
    b.work(work_of(value))
    nodes = tuple(sorted(set(value)))
    if not nodes:
        b.fail(f"{var} is empty: nothing would serve this.")
    return nodes


def _record_sort_key(r: Record) -> tuple:
    return (r.name, r.rtype, tuple(str(x) for x in r.data), -1 if r.ttl is None else r.ttl)


# ---------------------------------------------------------------------------
# Registry


@attrs.frozen
class Primitive:
    name: str
    kind: str  # "pure" | "action" | "block"
    fn: Callable[..., Any]


REGISTRY: dict[str, Primitive] = {}


def _register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY:
            raise ValueError(f"primitive {name} registered twice")
        REGISTRY[name] = Primitive(name, kind, fn)
        return fn

    return deco


def pure(name: str):
    return _register("pure", name)


def action(name: str):
    return _register("action", name)


def block(name: str):
    return _register("block", name)


def default_env(perms: Any, site: Site) -> dict[str, Any]:
    """The environment variables' values before a file sets any (the evaluator drops a
    default that does not fit the variable's type for this member)."""
    user = perms.user
    groups = sorted(getattr(perms, "groups", ()) or ())
    env: dict[str, Any] = {
        "User": user,
        "DocumentRoot": f"/home/{user}/public_html",
        "WebNodes": site.nodes_with("web"),
        "MailNodes": site.nodes_with("mail"),
        "DnsNodes": site.nodes_with("dns"),
        "ListNodes": site.nodes_with("lists"),
        "TTL": site.default_ttl,
        "SSL": False,
        "Nameservers": tuple(site.nameservers),
    }
    if user in groups:
        env["Group"] = user
    elif groups:
        env["Group"] = groups[0]
    return env


# ---------------------------------------------------------------------------
# Domains and DNS


@block("domain")
def domain(b: Builder, name: str, body: Callable[[], None]) -> None:
    b.owns("your_domain", name)
    name = validate.check_domain(name)
    b.first("zone", name, f"Domain {name} is configured twice.")
    frame = DomainFrame(name=name, ttl=b.get("TTL"), nodes=_nodes(b, "DnsNodes"))
    b.stack.append(frame)
    body()
    _defaults.run_defaults(b, frame)
    b.stack.pop()
    if frame.lists is not None:
        _finish_lists(b, frame)
    b.count()
    b.zones[name] = Zone(
        name=name,
        owner=b.owner,
        records=tuple(sorted(frame.records, key=_record_sort_key)),
        nodes=frame.nodes,
        ttl=frame.ttl,
    )
    _check_cnames(b, frame)
    if frame.mail is not None:
        m = frame.mail
        b.same_place("mail domain", name, "zone")
        b.mail[name] = MailDomain(
            name=name,
            owner=b.owner,
            nodes=m.nodes,
            handle=m.handle,
            relay_host=m.relay_host,
            aliases=tuple(
                sorted((Alias(s, t) for s, t in m.aliases.items()), key=lambda a: a.source)
            ),
            spam_filter=m.spam_filter,
            spam_threshold=m.spam_threshold,
            spam_action=m.spam_action,
        )


def _check_cnames(b: Builder, frame: DomainFrame) -> None:
    names: dict[str, set[str]] = {}
    for r in frame.records:
        names.setdefault(r.name, set()).add(r.rtype)
    for name, rtypes in names.items():
        if "CNAME" in rtypes and (len(rtypes) > 1 or name == "@"):
            where = "the domain itself" if name == "@" else f"{name}.{frame.name}"
            b.fail(f"A CNAME record for {where} cannot coexist with other records there.")


@action("nameserver")
def nameserver(b: Builder, host: str) -> None:
    b.record(b.top(DomainFrame), "@", "NS", (validate.check_hostname(host),))


@action("nameservers")
def nameservers(b: Builder, hosts: tuple[str, ...]) -> None:
    for h in hosts:
        nameserver(b, h)


def _rname(name: str) -> str:
    return validate.check_record_name(name)


@action("dnsA")
def dns_a(b: Builder, name: str, ip: str) -> None:
    b.record(b.top(DomainFrame), _rname(name), "A", (validate.check_ipv4(ip),))


@action("dnsAAAA")
def dns_aaaa(b: Builder, name: str, ip: str) -> None:
    b.record(b.top(DomainFrame), _rname(name), "AAAA", (validate.check_ipv6(ip),))


@action("dnsCNAME")
def dns_cname(b: Builder, name: str, target: str) -> None:
    b.record(b.top(DomainFrame), _rname(name), "CNAME", (validate.check_hostname(target),))


@action("dnsMX")
def dns_mx(b: Builder, name: str, priority: int, host: str) -> None:
    data = (validate.check_priority(priority), validate.check_hostname(host))
    b.record(b.top(DomainFrame), _rname(name), "MX", data)


@action("dnsNS")
def dns_ns(b: Builder, name: str, host: str) -> None:
    b.record(b.top(DomainFrame), _rname(name), "NS", (validate.check_hostname(host),))


@action("dnsTXT")
def dns_txt(b: Builder, name: str, text: str) -> None:
    b.record(b.top(DomainFrame), _rname(name), "TXT", (validate.check_txt(text),))


@action("dnsSRV")
def dns_srv(b: Builder, name: str, priority: int, weight: int, port: int, host: str) -> None:
    data = (
        validate.check_priority(priority),
        validate.check_priority(weight),
        validate.check_port(port),
        validate.check_hostname(host),
    )
    b.record(b.top(DomainFrame), _rname(name), "SRV", data)


@action("dnsCAA")
def dns_caa(b: Builder, name: str, flags: int, tag: str, value: str) -> None:
    if not 0 <= flags <= 255:
        b.fail(f"CAA flags must be 0-255, not {flags}")
    data = (flags, validate.check_caa_tag(tag), validate.check_caa_value(value))
    b.record(b.top(DomainFrame), _rname(name), "CAA", data)


# ---------------------------------------------------------------------------
# Web


@block("web")
def web(b: Builder, label: str, body: Callable[[], None]) -> None:
    dom = b.top(DomainFrame)
    label = validate.check_label(label)
    fqdn = f"{label}.{dom.name}"
    if b.defaulting is dom and _defaults.vhost_yields(b, dom, label, fqdn):
        return  # the member's own directive for this name wins over a default
    b.first("vhost", fqdn, f"Virtual host {fqdn} is configured twice.")
    dom.vhosts.add(fqdn)
    frame = VhostFrame(domain=dom, label=label, fqdn=fqdn)
    b.stack.append(frame)
    body()
    b.stack.pop()
    if b.defaulting is dom:
        _defaults.drop_claimed_aliases(b, frame)
    # Settings are read at the end of the body, so `DocumentRoot = ...` inside it counts.
    root = b.get("DocumentRoot")
    b.owns("your_path", root)
    user, group = b.get("User"), b.get("Group")
    b.owns("your_user", user)
    b.owns("your_group", group)
    nodes = _nodes(b, "WebNodes")
    admin = b.env.get("ServerAdmin") or f"webmaster@{dom.name}"
    if "@" not in admin:  # a bare user (Domtool 2's email): that user at this domain
        admin = f"{admin}@{dom.name}"
    if b.env.get("SSL") and frame.tls is None:
        b.fail(
            f"SSL is on for {fqdn} but it has no certificate.",
            'add `ssl "/home/you/cert.pem" "/home/you/key.pem"` to the vhost',
        )
    b.node_records(dom, label, nodes)
    if frame.apex:
        b.node_records(dom, "@", nodes)
    b.count()
    b.vhosts[fqdn] = Vhost(
        fqdn=fqdn,
        owner=b.owner,
        domain=dom.name,
        nodes=nodes,
        document_root=validate.check_abs_path(root),
        user=user,
        group=group,
        server_admin=admin,
        aliases=tuple(sorted(set(frame.aliases))),
        tls=frame.tls,
        url_aliases=tuple(frame.url_aliases),
        script_aliases=tuple(frame.script_aliases),
        proxies=tuple(frame.proxies),
        settings=frame.settings.freeze(),
        blocks=tuple(frame.blocks),
    )


@action("serverAliasDefault")
def server_alias_default(b: Builder) -> None:
    v = b.top(VhostFrame)
    v.apex = True
    v.aliases.append(v.domain.name)


@action("serverAlias")
def server_alias(b: Builder, host: str) -> None:
    v = b.top(VhostFrame)
    b.owns("your_domain", host)
    host = validate.check_domain(host)
    v.aliases.append(host)
    dom = v.domain
    if host == dom.name:
        v.apex = True
    elif host.endswith("." + dom.name):
        b.node_records(dom, host[: -len(dom.name) - 1], _nodes(b, "WebNodes"))


@action("alias")
def url_alias(b: Builder, url: str, path: str) -> None:
    b.owns("your_path", path)
    b.count()
    b.top(VhostFrame).url_aliases.append(
        (validate.check_url_path(url), validate.check_abs_path(path))
    )


@action("scriptAlias")
def script_alias(b: Builder, url: str, path: str) -> None:
    b.owns("your_path", path)
    b.count()
    b.top(VhostFrame).script_aliases.append(
        (validate.check_url_path(url), validate.check_abs_path(path))
    )


@action("proxyPass")
def proxy_pass(b: Builder, url: str, port: int) -> None:
    b.count()
    b.top(VhostFrame).proxies.append(
        ProxyPass(validate.check_url_path(url), validate.check_member_port(port))
    )


@action("ssl")
def ssl(b: Builder, cert: str, key: str) -> None:
    b.owns("your_path", cert)
    b.owns("your_path", key)
    b.top(VhostFrame).tls = TLS(validate.check_abs_path(cert), validate.check_abs_path(key))


@action("sslChain")
def ssl_chain(b: Builder, cert: str, key: str, chain: str) -> None:
    for p in (cert, key, chain):
        b.owns("your_path", p)
    b.top(VhostFrame).tls = TLS(
        validate.check_abs_path(cert), validate.check_abs_path(key), validate.check_abs_path(chain)
    )


def _block(b: Builder, kind: str, path: str, body: Callable[[], None]) -> None:
    v = b.find(VhostFrame)
    frame = BlockFrame(kind=kind, path=path, context=kind.capitalize())
    b.stack.append(frame)
    body()
    b.stack.pop()
    b.count()
    v.blocks.append(Block(kind, path, frame.settings.freeze()))


@block("location")
def location(b: Builder, path: str, body: Callable[[], None]) -> None:
    _block(b, "location", validate.check_url_path(path), body)


@block("directory")
def directory(b: Builder, path: str, body: Callable[[], None]) -> None:
    b.owns("your_path", path)
    _block(b, "directory", validate.check_abs_path(path), body)


@action("redirectWith")
def redirect_with(b: Builder, status: int, path: str, url: str) -> None:
    b.count()
    b.settings().redirects.append(
        Redirect(
            validate.check_url_path(path),
            validate.check_url(url),
            validate.check_redirect_status(status),
        )
    )


@action("rewriteRuleFlags")
def rewrite_rule_flags(b: Builder, pattern: str, target: str, flags: tuple[str, ...]) -> None:
    b.count()
    b.settings().rewrites.append(
        Rewrite(
            validate.check_regex(pattern),
            validate.check_rewrite_target(target),
            tuple(validate.check_rewrite_flag(f) for f in flags),
        )
    )


@action("errorDocument")
def error_document(b: Builder, status: int, path: str) -> None:
    b.settings().error_documents.append(
        (validate.check_error_status(status), validate.check_url_path(path))
    )


@action("directoryIndex")
def directory_index(b: Builder, files: tuple[str, ...]) -> None:
    b.settings().directory_index.extend(validate.check_file_name(f) for f in files)


@action("options")
def options(b: Builder, opts: tuple[str, ...]) -> None:
    b.settings().options.extend(validate.check_apache_option(o) for o in opts)


@action("basicAuth")
def basic_auth(b: Builder, realm: str, user_file: str) -> None:
    b.owns("your_path", user_file)
    b.settings().auth = BasicAuth(validate.check_realm(realm), validate.check_abs_path(user_file))


@action("ssi")
def ssi(b: Builder) -> None:
    b.settings().ssi = True


@action("execCGI")
def exec_cgi(b: Builder) -> None:
    b.settings().cgi = True


# ---------------------------------------------------------------------------
# Mail


def _mail(b: Builder) -> MailFrame:
    dom = b.top(DomainFrame)
    if dom.mail is None:
        dom.mail = MailFrame(nodes=_nodes(b, "MailNodes"))
    return dom.mail


def _mx(b: Builder, dom: DomainFrame, nodes: tuple[str, ...]) -> None:
    b.record(dom, "@", "MX", (10, f"mail.{dom.name}"))
    b.node_records(dom, "mail", nodes)


@action("handleMail")
def handle_mail(b: Builder) -> None:
    m = _mail(b)
    m.handle, m.relay_host = "local", None
    _mx(b, b.top(DomainFrame), m.nodes)


@action("relayMail")
def relay_mail(b: Builder, host: str) -> None:
    m = _mail(b)
    m.handle, m.relay_host = "relay", validate.check_hostname(host)
    _mx(b, b.top(DomainFrame), m.nodes)


@action("spamFilter")
def spam_filter(b: Builder, on: bool) -> None:
    _mail(b).spam_filter = bool(on)


SPAM_ACTIONS = ("tag", "refuse", "junk")


@action("spamThreshold")
def spam_threshold(b: Builder, score: int) -> None:
    if isinstance(score, bool) or not isinstance(score, int) or not -100 <= score <= 100:
        b.fail(f"spamThreshold {score!r}: the score must be a whole number from -100 to 100.")
    _mail(b).spam_threshold = score


@action("spamAction")
def spam_action(b: Builder, what: str) -> None:
    if what not in SPAM_ACTIONS:
        b.fail(
            f"spamAction {what!r}: expected one of {', '.join(map(repr, SPAM_ACTIONS))}.",
            '"tag" adds an X-Domtool-Spam header, "refuse" refuses the message, '
            '"junk" files it in the mailbox\'s Junk folder',
        )
    _mail(b).spam_action = what


@pure("userSource")
def user_source(user: str) -> tuple[str, ...]:
    return ("user", validate.check_email_user(user))


@pure("defaultSource")
def default_source() -> tuple[str, ...]:
    return ("default",)


@pure("catchAllSource")
def catch_all_source() -> tuple[str, ...]:
    return ("catchall",)


def _address(a: str) -> str:
    if validate.is_email(a):
        return validate.check_email(a)
    return validate.check_unix_name(a)


@pure("addressTarget")
def address_target(a: str) -> tuple[str, ...]:
    return (_address(a),)


@pure("addressesTarget")
def addresses_target(addrs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_address(a) for a in addrs)


@pure("dropTarget")
def drop_target() -> tuple[str, ...]:
    return ()


@action("aliasPrim")
def alias_prim(b: Builder, source: tuple[str, ...], target: tuple[str, ...]) -> None:
    m = _mail(b)
    if source in m.aliases and b.defaulting is b.top(DomainFrame):
        return  # a default rule yields to the member's own rule for that source
    for t in target:
        if not validate.is_email(t):
            # A bare user name is that account's local mailbox: only the member's own.
            b.owns("your_user", t)
    if source not in m.aliases:
        b.count()
    m.aliases[source] = tuple(target)  # a later rule for the same source wins


# ---------------------------------------------------------------------------
# Mailing lists (Mailman)


def _lists(b: Builder, dom: DomainFrame) -> ListsFrame:
    if dom.lists is None:
        dom.lists = ListsFrame(nodes=_nodes(b, "ListNodes"))
    return dom.lists


@action("listHost")
def list_host(b: Builder, label: str) -> None:
    dom = b.top(DomainFrame)
    lists = _lists(b, dom)
    label = validate.check_label(label)
    if lists.web_host is not None and lists.web_host != label:
        b.fail(f"The list host of {dom.name} is already {lists.web_host}.{dom.name}.")
    lists.web_host = label
    b.node_records(dom, label, lists.nodes)


@block("mailingList")
def mailing_list(b: Builder, name: str, body: Callable[[], None]) -> None:
    dom = b.top(DomainFrame)
    lists = _lists(b, dom)
    name = validate.check_list_name(name)
    if name in lists.lists:
        b.fail(f"Mailing list {name}@{dom.name} is configured twice.")
    frame = ListFrame(name)
    b.stack.append(frame)
    body()
    b.stack.pop()
    if not frame.owners:
        b.fail(
            f"Mailing list {name}@{dom.name} has no owner.",
            'give one in its block: mailingList "NAME" with owner "you@example.org" end',
        )
    b.count()
    lists.lists[name] = MailingList(name, tuple(sorted(set(frame.owners))))


@action("owner")
def list_owner(b: Builder, address: str) -> None:
    b.top(ListFrame).owners.append(validate.check_email(address))


def _finish_lists(b: Builder, dom: DomainFrame) -> None:
    """The domain's lists: they need its mail handled here, and no alias may take one of
    a list's addresses."""
    lists = dom.lists
    assert lists is not None
    if not lists.lists:
        b.fail(f"listHost in {dom.name} without any mailingList.")
    if dom.mail is None or dom.mail.handle != "local":
        b.fail(
            f"The mailing lists of {dom.name} need its mail handled here.",
            "add handleMail to the domain (dom does it for you)",
        )
    taken = {src[1] for src in dom.mail.aliases if src[0] == "user"}
    for name in lists.lists:
        for local in (name, *(f"{name}-{s}" for s in validate.LIST_SUFFIXES)):
            if local in taken:
                b.fail(
                    f"{local}@{dom.name} is an address of mailing list {name} and an alias too.",
                    "remove the alias or rename the list",
                )
    if lists.web_host is None:
        lists.web_host = "lists"
        b.node_records(dom, "lists", lists.nodes)
    b.same_place("list domain", dom.name, "zone")
    b.lists[dom.name] = ListDomain(
        name=dom.name,
        owner=b.owner,
        nodes=lists.nodes,
        web_host=f"{lists.web_host}.{dom.name}",
        lists=tuple(lists.lists[n] for n in sorted(lists.lists)),
        mail_nodes=dom.mail.nodes,
    )


# The defaults of shorthands (``byDefault``) live in their own module; imported last, as
# it registers a primitive and uses the frames above.
from domtool.lang import defaults as _defaults  # noqa: E402
