"""Extern base types: the membership predicates behind ``your_domain``, ``ip``, ``email``...

An ``extern type t`` declared in the standard library is a set of strings (or integers)
defined here by a predicate. The type checker asks :func:`accepts` whether a literal
value inhabits an extern type; security types (``your_domain``, ``your_path``,
``your_user``, ``your_group``) consult the submitting member's permissions, node types
(``web_node``, ``mail_node``, ``dns_node``) consult the site, and the others check the
strict grammars of :mod:`domtool.validate`.

An ``extern type`` that is not registered here (for instance one a self-contained
program declares for itself) has no literal inhabitants: only ``extern val``\\ s of that
type produce its values.

:data:`SUBTYPES` lists the few extern types that are contained in others
(``your_domain`` values are ``domain`` values), so that a value read from an environment
variable of one type can be passed where the other is needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from domtool import validate as _v
from domtool.model import Site


@attrs.frozen
class ExternType:
    """One extern type: its carrier (``"string"`` or ``"int"``), its predicate and a
    one-line description for error hints and the reference."""

    name: str
    carrier: str
    predicate: Callable[[Any, Any, Site], bool]
    description: str
    hint: Callable[[Any, Site], str | None] | None = None
    kind: str | None = None  # the domtool.validate grammar behind it, if any
    # A checker raising validate.Invalid with the reason, for predicates that are not one
    # grammar of domtool.validate (used by :func:`reason`).
    explain: Callable[[Any], Any] | None = None


def _syntax(kind: str) -> Callable[[Any, Any, Site], bool]:
    check = getattr(_v, f"is_{kind}")

    def pred(value: Any, perms: Any, site: Site) -> bool:
        try:
            return bool(check(value))
        except Exception:
            return False

    pred.kind = kind  # type: ignore[attr-defined]
    return pred


def _both(*preds: Callable[[Any, Any, Site], bool]) -> Callable[[Any, Any, Site], bool]:
    def pred(value: Any, perms: Any, site: Site) -> bool:
        return all(p(value, perms, site) for p in preds)

    pred.kind = getattr(preds[0], "kind", None)  # type: ignore[attr-defined]
    return pred


def _check_email_or_user(value: Any) -> str:
    """Domtool 2's ``email``: ``user@domain``, or a bare user (delivered on the site)."""
    if isinstance(value, str) and "@" not in value:
        try:
            return _v.check_email_user(value)
        except _v.Invalid as e:
            raise _v.Invalid("an e-mail address or user", value, e.reason) from None
    return _v.check_email(value)


def _checked(check: Callable[[Any], Any]) -> Callable[[Any, Any, Site], bool]:
    def pred(value: Any, perms: Any, site: Site) -> bool:
        try:
            check(value)
        except Exception:
            return False
        return True

    return pred


def _no(chars: str, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _v.Invalid(what, value, "it is not a string")
        bad = [c for c in value if c in chars or ord(c) < 32 or ord(c) == 127]
        if bad or len(value) > 4096:
            raise _v.Invalid(what, value, f"it contains {bad[0]!r}" if bad else "it is too long")
        return value

    return check


_MIME = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9][a-z0-9.+-]{0,127}")


def _check_mime(value: Any) -> str:
    if not isinstance(value, str) or not _MIME.fullmatch(value):
        raise _v.Invalid("a MIME type", value, "expected type/subtype, like text/html")
    return value


def _either(*preds: Callable[[Any, Any, Site], bool]) -> Callable[[Any, Any, Site], bool]:
    return lambda value, perms, site: any(p(value, perms, site) for p in preds)


def _owns(what: str) -> Callable[[Any, Any, Site], bool]:
    method = f"owns_{what}"

    def pred(value: Any, perms: Any, site: Site) -> bool:
        if perms is None:
            return False  # fail closed: no member, no ownership
        try:
            return bool(getattr(perms, method)(value))
        except Exception:
            return False

    return pred


def _node(role: str) -> Callable[[Any, Any, Site], bool]:
    return lambda value, perms, site: value in site.nodes_with(role)


def _listing(label: str, values: Any) -> str:
    vals = sorted(values or ())
    if not vals:
        return f"you have no {label} granted"
    return f"{label}: {', '.join(vals)}"


def _domain_hint(perms: Any, site: Site) -> str | None:
    if perms is None:
        return None
    return perms.owned_domains_hint()


def _path_hint(perms: Any, site: Site) -> str | None:
    if perms is None:
        return None
    return perms.owned_paths_hint()


def _user_hint(perms: Any, site: Site) -> str | None:
    return None if perms is None else _listing("your users", perms.users)


def _group_hint(perms: Any, site: Site) -> str | None:
    return None if perms is None else _listing("your groups", perms.groups)


def _node_hint(role: str) -> Callable[[Any, Site], str | None]:
    def hint(perms: Any, site: Site) -> str | None:
        nodes = site.nodes_with(role)
        return f"the site's {role} nodes: {', '.join(nodes) or '(none)'}"

    return hint


def _int_in(lo: int, hi: int) -> Callable[[Any, Any, Site], bool]:
    return lambda value, perms, site: (
        isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    )


_E = ExternType

EXTERN_TYPES: dict[str, ExternType] = {
    t.name: t
    for t in (
        _E(
            "your_domain",
            "string",
            _both(_syntax("domain"), _owns("domain")),
            "a domain you own (or a subdomain of one)",
            _domain_hint,
        ),
        _E(
            "your_path",
            "string",
            _both(_syntax("abs_path"), _owns("path")),
            "an absolute path under one of your granted paths",
            _path_hint,
        ),
        _E("your_user", "string", _owns("user"), "a Unix user you may act as", _user_hint),
        _E("your_group", "string", _owns("group"), "a Unix group you may use", _group_hint),
        _E("domain", "string", _syntax("domain"), "a fully qualified domain name"),
        _E("host", "string", _syntax("label"), "one DNS label, such as www"),
        _E(
            "record_name",
            "string",
            _syntax("record_name"),
            'a record name relative to the zone ("@" for the apex, "www", "_sip._tcp")',
        ),
        _E("ip", "string", _syntax("ipv4"), "an IPv4 address"),
        _E("ipv4", "string", _syntax("ipv4"), "an IPv4 address"),
        _E("ipv6", "string", _syntax("ipv6"), "an IPv6 address"),
        _E(
            "email",
            "string",
            _checked(_check_email_or_user),
            "an e-mail address user@domain, or a bare user of the site (as in Domtool 2)",
            explain=_check_email_or_user,
        ),
        _E("emailUser", "string", _syntax("email_user"), "the local part of an e-mail address"),
        _E(
            "address",
            "string",
            _either(_syntax("email"), _syntax("unix_name")),
            "a mail destination: an e-mail address, or a member's user name for their mailbox",
        ),
        _E("port", "int", _syntax("port"), "a TCP or UDP port number (1-65535)"),
        _E(
            "member_port",
            "int",
            _syntax("member_port"),
            "a port a member's own daemon may listen on",
        ),
        _E("url", "string", _syntax("url"), "an http or https URL"),
        _E("url_path", "string", _syntax("url_path"), "a URL path starting with /"),
        _E("txt", "string", _syntax("txt"), "the text of a TXT record"),
        _E("caa_tag", "string", _syntax("caa_tag"), "a CAA tag: issue, issuewild or iodef"),
        _E("caa_value", "string", _syntax("caa_value"), "the value of a CAA record"),
        _E("hostname", "string", _syntax("hostname"), "a host name such as mail.example.org"),
        _E("ttl", "int", _syntax("ttl"), "a DNS time to live in seconds"),
        _E("priority", "int", _syntax("priority"), "an MX or SRV priority (0-65535)"),
        _E("weight", "int", _syntax("priority"), "an SRV weight (0-65535)"),
        _E(
            "redirect_status",
            "int",
            _syntax("redirect_status"),
            "an HTTP redirect status: 301, 302, 303, 307 or 308",
        ),
        _E("error_status", "int", _syntax("error_status"), "an HTTP error status (400-599)"),
        _E("caa_flags", "int", _int_in(0, 255), "CAA flags (0-255)"),
        _E("http_status", "int", _syntax("http_status"), "an HTTP status code"),
        _E(
            "rewrite_target",
            "string",
            _syntax("rewrite_target"),
            "a rewrite target: a URL path or URL, without spaces or quotes",
        ),
        _E(
            "rewrite_flag",
            "string",
            _syntax("rewrite_flag"),
            "a mod_rewrite flag such as L, NC, QSA or R=301",
        ),
        _E("realm", "string", _syntax("realm"), "an authentication realm name"),
        _E(
            "apache_option", "string", _syntax("apache_option"), "an Apache option such as +Indexes"
        ),
        _E("file_name", "string", _syntax("file_name"), "a file name without a directory"),
        _E("regex", "string", _syntax("regex"), "a regular expression"),
        _E("web_node", "string", _node("web"), "a node of the site serving web", _node_hint("web")),
        _E(
            "mail_node",
            "string",
            _node("mail"),
            "a node of the site serving mail",
            _node_hint("mail"),
        ),
        _E("dns_node", "string", _node("dns"), "a node of the site serving DNS", _node_hint("dns")),
        _E("list_name", "string", _syntax("list_name"), "a Mailman mailing list name"),
        _E(
            "list_node",
            "string",
            _node("lists"),
            "a node of the site running Mailman",
            _node_hint("lists"),
        ),
        # Domtool 2's names for base types we also have under another name.
        _E(
            "your_domain_host",
            "string",
            _both(_syntax("domain"), _owns("domain")),
            "a host name inside a domain you own (Domtool 2's name; ours: your_domain)",
            _domain_hint,
        ),
        _E("regexp", "string", _syntax("regex"), "a regular expression (ours: regex)"),
        _E(
            "no_spaces",
            "string",
            _checked(_no(' \t"', "text without spaces")),
            "text without spaces, quotes or control characters",
            explain=_no(' \t"', "text without spaces"),
        ),
        _E(
            "no_newlines",
            "string",
            _checked(_no("", "text without newlines")),
            "text without newlines or other control characters",
            explain=_no("", "text without newlines"),
        ),
        _E(
            "mime_type",
            "string",
            _checked(_check_mime),
            "a MIME type, like text/html",
            explain=_check_mime,
        ),
        _E(
            "node",
            "string",
            lambda value, perms, site: any(n.name == value for n in site.nodes),
            "a node of the site",
        ),
    )
}

#: Extern types of the standard library that deliberately admit no literal: their values
#: come only from ``extern val`` declarations (``userSource "x"``, ``dropTarget``). Every other
#: extern type the library declares has its checker in :data:`EXTERN_TYPES`
#: (``tests/lang/test_literals.py`` keeps it so).
NO_LITERALS: frozenset[str] = frozenset({"aliasSource", "aliasTarget"})

# (sub, super): every value of ``sub`` is a value of ``super``.
SUBTYPES: frozenset[tuple[str, str]] = frozenset(
    {
        ("your_domain", "domain"),
        ("your_user", "address"),
        ("email", "address"),
        ("ip", "ipv4"),
        ("ipv4", "ip"),
        ("member_port", "port"),
        ("host", "record_name"),
        ("your_domain", "hostname"),
        ("domain", "hostname"),
        ("redirect_status", "http_status"),
        ("error_status", "http_status"),
    }
)


def carrier(name: str) -> str | None:
    """``"string"``/``"int"`` for a registered extern type, else None."""
    t = EXTERN_TYPES.get(name)
    return t.carrier if t is not None else None


def accepts(name: str, value: Any, perms: Any, site: Site) -> bool:
    """Whether ``value`` inhabits the extern type ``name`` for this member and site."""
    t = EXTERN_TYPES.get(name)
    if t is None:
        return False
    if t.carrier == "string" and not isinstance(value, str):
        return False
    if t.carrier == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        return False
    return t.predicate(value, perms, site)


def hint(name: str, perms: Any, site: Site) -> str | None:
    """A hint for a refused value of type ``name`` (what the member may use instead)."""
    t = EXTERN_TYPES.get(name)
    if t is None:
        return None
    if t.hint is not None:
        return t.hint(perms, site)
    return f"{name} is {t.description}"


def reason(name: str, value: Any) -> str | None:
    """Why ``value`` does not match the grammar of extern type ``name`` (None if it does,
    or if the type has no grammar)."""
    t = EXTERN_TYPES.get(name)
    if t is None:
        return None
    kind = getattr(t.predicate, "kind", None)
    check = t.explain or (None if kind is None else (lambda v: _v.check(kind, v)))
    if check is None:
        return None
    try:
        check(value)
    except _v.Invalid as e:
        return str(e)
    except Exception:
        return None
    return None


def no_checker(name: str) -> str:
    """The hint for a literal where an extern type without a checker is needed."""
    return (
        f"{name} is declared with `extern type` but has no checker for literals (no "
        "base type of that name is known), so no string or integer literal has this "
        f"type; values of {name} come only from `extern val`s"
    )


def is_subtype(sub: str, sup: str) -> bool:
    return sub == sup or (sub, sup) in SUBTYPES
