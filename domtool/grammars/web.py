"""Grammars of web values: URL paths and URLs (``url_path``, ``url``), HTTP statuses
(``redirect_status``, ``error_status``, ``http_status``), Apache's own values
(``apache_option``, ``realm``) and mod_rewrite's (``regex``, ``rewrite_target``,
``rewrite_flag``, ``rewrite_cond_test``, ``rewrite_cond_flag``)."""

from __future__ import annotations

import re
import warnings
from typing import Any

from domtool.grammars import base
from domtool.grammars.base import QUOTABLE, Invalid, at_most, between, canonical, need_str, only
from domtool.grammars.dns import IPV4, check_hostname, check_ipv4, check_ipv6
from domtool.grammars.system import check_port

__all__ = [
    "APACHE_OPTIONS",
    "REDIRECT_STATUSES",
    "REWRITE_COND_TESTS",
    "REWRITE_FLAGS",
    "check_apache_option",
    "check_error_status",
    "check_http_status",
    "check_realm",
    "check_redirect_status",
    "check_regex",
    "check_rewrite_cond_flag",
    "check_rewrite_cond_test",
    "check_rewrite_flag",
    "check_rewrite_target",
    "check_url",
    "check_url_path",
]

# ---------------------------------------------------------------------------
# HTTP statuses

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def check_redirect_status(value: Any) -> int:
    """An HTTP status for a redirect: 301, 302, 303, 307 or 308."""
    kind = "a redirect status"
    base.need_int(kind, value, 0, 999)
    if value not in REDIRECT_STATUSES:
        raise Invalid(kind, value, "expected one of 301, 302, 303, 307, 308")
    return value


def check_error_status(value: Any) -> int:
    """An HTTP error status for an error document: 400..599."""
    return base.need_int("an error status", value, 400, 599)


def check_http_status(value: Any) -> int:
    """A redirect status (301, 302, 303, 307, 308) or an error status (400..599)."""
    kind = "an HTTP status"
    base.need_int(kind, value, 0, 999)
    if value in REDIRECT_STATUSES or 400 <= value <= 599:
        return value
    raise Invalid(kind, value, "expected 301, 302, 303, 307, 308 or 400-599")


# ---------------------------------------------------------------------------
# URLs

# RFC 3986 path characters without the ones that mean something to Apache or a shell:
# no quotes, '$' (variable expansion), '{}', '<>', '\\', '#', ';', '?', whitespace.
_URL_PATH_CHAR = re.compile(r"[A-Za-z0-9._~!&()*+,=:@%/-]")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URL_MAX = 2048


def _check_url_path_chars(kind: str, original: str, path: str) -> None:
    only(
        kind,
        original,
        path,
        _URL_PATH_CHAR,
        "only letters, digits, '/' and the characters ._~!&()*+,=:@%- are allowed",
    )
    if _PCT.search(path):
        raise Invalid(kind, original, "'%' must start a %XX escape with two hexadecimal digits")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise Invalid(kind, original, "'.' and '..' segments are not allowed")


def check_url_path(value: Any) -> str:
    """A URL path for Location, Alias or Redirect: starts with '/', over
    ``[A-Za-z0-9._~!&()*+,=:@%/-]`` with ``%XX`` escapes, no ``.``/``..`` segments."""
    kind = "a URL path"
    value = need_str(kind, value)
    if not value.startswith("/"):
        raise Invalid(kind, value, "it must start with '/'")
    at_most(kind, value, _URL_MAX)
    _check_url_path_chars(kind, value, value)
    return value


_URL = re.compile(
    r"(?P<scheme>[A-Za-z]+)://(?P<host>\[[^\]/]*\]|[^/:?]*)(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[^?]*)?(?:\?(?P<query>.*))?\Z",
    re.DOTALL,
)
_QUERY_CHAR = re.compile(r"[A-Za-z0-9._~!&()*+,=:@%/?-]")


def check_url(value: Any) -> str:
    """An absolute ``http``/``https`` URL for redirects: host is a domain, IPv4 or
    ``[IPv6]``, optional port, path per :func:`check_url_path`, optional query over the
    same characters plus '?'; no user info, no fragment. Scheme and host lower-cased."""
    kind = "a URL"
    value = need_str(kind, value)
    at_most(kind, value, _URL_MAX)
    m = _URL.match(value)
    if not m:
        raise Invalid(kind, value, "expected http://HOST/PATH or https://HOST/PATH")
    scheme = m["scheme"].lower()
    if scheme not in ("http", "https"):
        raise Invalid(kind, value, "only http and https URLs are allowed")
    host = m["host"]
    if "@" in host:
        raise Invalid(kind, value, "user names or passwords in URLs are not allowed")
    try:
        if host.startswith("["):
            host = "[" + check_ipv6(host[1:-1]) + "]"
        elif IPV4.match(host):
            host = check_ipv4(host)
        else:
            host = check_hostname(host)
    except Invalid as e:
        raise Invalid(kind, value, f"bad host: {e.reason}", e.hint) from None
    port = ""
    if m["port"] is not None:
        try:
            port = ":" + str(check_port(int(m["port"])))
        except Invalid as e:
            raise Invalid(kind, value, f"bad port: {e.reason}") from None
    path = m["path"] or ""
    if "#" in value:
        raise Invalid(kind, value, "fragments ('#...') are not allowed")
    _check_url_path_chars(kind, value, path)
    query = ""
    if m["query"] is not None:
        q = m["query"]
        if not all(_QUERY_CHAR.match(ch) for ch in q):
            bad = base.describe_bad_char(q, _QUERY_CHAR)
            raise Invalid(kind, value, f"the query contains {bad}")
        if _PCT.search(q):
            raise Invalid(kind, value, "'%' must start a %XX escape with two hexadecimal digits")
        query = "?" + q
    return f"{scheme}://{host}{port}{path}{query}"


# ---------------------------------------------------------------------------
# Apache

APACHE_OPTIONS = (
    "Indexes",
    "FollowSymLinks",
    "SymLinksIfOwnerMatch",
    "MultiViews",
    "ExecCGI",
    "Includes",
    "IncludesNOEXEC",
)
_OPTIONS_BY_LOWER = {o.lower(): o for o in APACHE_OPTIONS}


def check_apache_option(value: Any) -> str:
    """One of Indexes, FollowSymLinks, SymLinksIfOwnerMatch, MultiViews, ExecCGI,
    Includes, IncludesNOEXEC, optionally prefixed with '+' or '-'; canonical spelling."""
    kind = "an Apache option"
    value = need_str(kind, value)
    sign = value[:1] if value[:1] in ("+", "-") else ""
    expected = "expected one of " + ", ".join(APACHE_OPTIONS) + " (with optional + or -)"
    name = value[len(sign) :]
    return sign + canonical(kind, value, _OPTIONS_BY_LOWER, str.lower, expected, name)


def check_realm(value: Any) -> str:
    """An authentication realm: 1-200 printable ASCII characters (spaces allowed), no
    '"' or '\\', no '${' or '%{', not starting or ending with a space."""
    kind = "an authentication realm"
    value = need_str(kind, value)
    between(kind, value, 200)
    only(kind, value, value, QUOTABLE, "only printable ASCII without '\"' or '\\' is allowed")
    if "${" in value or "%{" in value:
        raise Invalid(
            kind, value, "'${' and '%{' are not allowed (Apache reads AuthName as an expression)"
        )
    if value != value.strip(" "):
        raise Invalid(kind, value, "it starts or ends with a space")
    return value


# ---------------------------------------------------------------------------
# mod_rewrite: patterns, substitutions, flags and conditions. Closed sets where Apache
# offers power a member must not have: [P] would proxy to internal services, [H=] forces a
# handler (CGI where the site did not enable it), [E=] sets environment variables,
# [N] loops; ``%{ENV:...}`` and friends would read the server's variables.

_REGEX_CHAR = re.compile(r"[\x21\x24-\x26\x28-\x3b\x3d\x3f-\x7a\x7c\x7e]")
_REGEX_MAX = 512


def check_regex(value: Any) -> str:
    """A rewrite pattern: 1-512 printable ASCII characters without whitespace, quotes,
    '#', '<', '>', '{', '}' (so no ``{m,n}`` quantifiers), that Python's ``re`` compiles.
    PCRE and ``re`` differ in corners; Apache's config test catches the rest at apply."""
    kind = "a regular expression"
    value = need_str(kind, value)
    between(kind, value, _REGEX_MAX)
    only(
        kind,
        value,
        value,
        _REGEX_CHAR,
        "whitespace, quotes, '#', '<', '>', '{' and '}' are not allowed",
        "write repetition without braces, and spaces as \\x20",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            re.compile(value)
        except re.error as e:
            raise Invalid(kind, value, f"it does not compile: {e}") from None
        except Warning as e:  # FutureWarning "Possible nested set": ambiguous across engines
            raise Invalid(kind, value, f"it is ambiguous: {e}") from None
    return value


_REWRITE_CHAR = re.compile(r"[A-Za-z0-9._~!&()*+,=:@/?-]")
_BACKREF = re.compile(r"[$%][0-9]")
# Top-level directories of a Debian host: mod_rewrite treats a vhost-level substitution
# whose first segment exists in / as a filesystem path.
_ROOT_DIRS = frozenset(
    "bin boot dev etc home lib lib32 lib64 libx32 media mnt opt proc root run sbin srv "
    "sys tmp usr var".split()
)


def check_rewrite_target(value: Any) -> str:
    """A RewriteRule substitution: ``-`` (no substitution), a URL path starting with '/',
    or an ``http``/``https`` URL; characters of a URL path plus '?', and '$N' / '%N'
    back-references. No literal '%XX' escapes (mod_rewrite would read '%2' as a
    back-reference), no '${' or '%{', no '\\', quotes, whitespace, '#' or braces."""
    kind = "a rewrite target"
    value = need_str(kind, value)
    if value == "-":
        return value
    between(kind, value, _URL_MAX)
    body = value
    m = re.match(r"(?i)(https?)://([^/?$%]+)", value)
    if m:
        host = m[2]
        port = ""
        if re.fullmatch(r"[^:]+:[0-9]{1,5}", host):
            host, port = host.rsplit(":", 1)
            if not 1 <= int(port) <= 65535:
                raise Invalid(kind, value, "bad port")
            port = ":" + port
        try:
            host = check_hostname(host)
        except Invalid as e:
            raise Invalid(kind, value, f"bad host: {e.reason}", e.hint) from None
        body = value[m.end() :]
        prefix = f"{m[1].lower()}://{host}{port}"
        if body and not body.startswith(("/", "?")):
            raise Invalid(kind, value, "expected '/' or '?' after the host")
    elif value.startswith("/"):
        prefix = ""
        first = value[1:].split("/", 1)[0].split("?", 1)[0]
        if first in _ROOT_DIRS:
            raise Invalid(
                kind,
                value,
                f"'/{first}' exists on the server, and in a vhost mod_rewrite would serve "
                "a substitution starting with it from the filesystem",
                "use a different first path segment, or a full http(s) URL",
            )
    else:
        raise Invalid(kind, value, "expected '-', a path starting with '/', or an http(s) URL")
    rest = _BACKREF.sub("", body)
    only(
        kind,
        value,
        rest,
        _REWRITE_CHAR,
        "only URL characters and $N / %N back-references are allowed",
    )
    return prefix + body


REWRITE_FLAGS = ("B", "END", "F", "G", "L", "NC", "NE", "NS", "PT", "QSA", "QSD", "R")
_REWRITE_FLAG_NAMES = {f.lower(): f for f in REWRITE_FLAGS} | {
    "last": "L",
    "nocase": "NC",
    "noescape": "NE",
    "nosubreq": "NS",
    "passthrough": "PT",
    "qsappend": "QSA",
    "qsdiscard": "QSD",
    "forbidden": "F",
    "gone": "G",
    "redirect": "R",
}


def check_rewrite_flag(value: Any) -> str:
    """One RewriteRule flag from a closed set (B, END, F, G, L, NC, NE, NS, PT, QSA, QSD,
    R, or R=301/302/303/307/308; long names such as ``nocase`` accepted); returned in
    canonical upper case. P, H, E, T, CO, S, C, N and the rest are refused."""
    kind = "a rewrite flag"
    value = need_str(kind, value)
    name, eq, arg = value.partition("=")
    expected = "expected one of " + ", ".join(REWRITE_FLAGS) + " or R=3xx"
    canon = canonical(kind, value, _REWRITE_FLAG_NAMES, str.lower, expected, name)
    if not eq:
        return canon
    if canon != "R" or not re.fullmatch(r"[0-9]{3}", arg) or int(arg) not in REDIRECT_STATUSES:
        raise Invalid(kind, value, "only R takes a value: R=301, 302, 303, 307 or 308")
    return f"R={arg}"


REWRITE_COND_TESTS = (
    "%{HTTP_HOST}",
    "%{HTTP_REFERER}",
    "%{HTTP_USER_AGENT}",
    "%{HTTPS}",
    "%{QUERY_STRING}",
    "%{REMOTE_ADDR}",
    "%{REQUEST_FILENAME}",
    "%{REQUEST_METHOD}",
    "%{REQUEST_URI}",
)
_COND_TESTS = {t: t for t in REWRITE_COND_TESTS}
_COND_FLAGS = {"nc": "NC", "nocase": "NC", "or": "OR", "ornext": "OR", "nv": "NV", "novary": "NV"}


def check_rewrite_cond_test(value: Any) -> str:
    """A RewriteCond test string: one of a closed set of request variables
    (``%{HTTP_HOST}``, ``%{REQUEST_URI}``...), case-insensitive; canonical spelling."""
    kind = "a rewrite condition variable"
    value = need_str(kind, value)
    expected = "expected one of " + ", ".join(REWRITE_COND_TESTS)
    return canonical(kind, value, _COND_TESTS, str.upper, expected)


def check_rewrite_cond_flag(value: Any) -> str:
    """A RewriteCond flag: NC, OR or NV (``nocase``, ``ornext``, ``novary``)."""
    kind = "a rewrite condition flag"
    value = need_str(kind, value)
    return canonical(kind, value, _COND_FLAGS, str.lower, "expected NC, OR or NV")
