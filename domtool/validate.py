"""Strict grammars for every kind of value a member controls, and quoting for targets.

Each kind ``X`` has ``is_X(value) -> bool`` and ``check_X(value) -> value``; ``check_X``
returns the value in its canonical form (domain names lower-cased, paths normalised,
IPv6 addresses compressed) or raises :class:`Invalid` with a message a person can act on.
The language's extern types use these grammars to decide whether a literal inhabits a
type; the BIND and Apache renderers call them again just before writing (defence in
depth), and then quote with :func:`zone_txt_strings`, :func:`zone_quote`,
:func:`zone_fqdn` and :func:`apache_quote`.

The grammars are deliberately narrower than what the daemons accept: whatever passes is
ASCII and contains no newline, carriage return, NUL or other control character. Apart
from the free-text kinds that the renderers always quote (``txt``, ``caa_value``,
``realm``) and the rewrite kinds that need ``$``, ``%``, ``\\`` or ``{`` for their own
syntax (``regex``, ``rewrite_target``, ``rewrite_cond_test``), nothing that passes
contains whitespace, a quote, a backquote, a backslash, a brace, an angle bracket,
``;``, ``#``, ``$`` or ``|``. ``docs/grammars.md`` lists every grammar with examples
accepted and refused; ``tests/core/test_validate.py`` asserts each kind's forbidden set.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "Invalid",
    "APACHE_OPTIONS",
    "CAA_TAGS",
    "REDIRECT_STATUSES",
    "REWRITE_FLAGS",
    "REWRITE_COND_TESTS",
    "KINDS",
    "check",
    "is_valid",
    "apache_quote",
    "zone_fqdn",
    "zone_quote",
    "zone_txt_strings",
    "normalise_path",
]


class Invalid(ValueError):
    """A value does not match its grammar. ``str(e)`` is the whole message, e.g.
    ``'ex ample.org' is not a domain name: labels may contain only letters, digits and '-'``.
    """

    def __init__(self, kind: str, value: Any, reason: str, hint: str | None = None):
        self.kind = kind
        self.value = value
        self.reason = reason
        self.hint = hint
        msg = f"{_show(value)} is not {kind}: {reason}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


def _show(value: Any) -> str:
    """A short, printable rendering of a refused value for messages (control characters
    escaped, long values cut)."""
    text = repr(value)
    if len(text) > 80:
        text = text[:60] + "..." + text[-12:]
    return text


# ---------------------------------------------------------------------------
# Shared pieces

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LDH_CHARS = re.compile(r"[a-z0-9-]*\Z")


def _need_str(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(kind, value, f"expected text, got {type(value).__name__}")
    return value


def _need_int(kind: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(kind, value, f"expected a whole number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise Invalid(kind, value, f"must be between {lo} and {hi}")
    return value


def _describe_bad_char(text: str, allowed: re.Pattern[str]) -> str:
    """Name the first character of ``text`` outside the ``allowed`` one-character class."""
    for ch in text:
        if not allowed.fullmatch(ch):
            if ch == "\n":
                return "a newline"
            if ch.isspace():
                return "whitespace"
            if _CONTROL.match(ch):
                return f"the control character {ch!r}"
            if ord(ch) > 127:
                return f"the non-ASCII character {ch!r}"
            return f"the character {ch!r}"
    return "a character that is not allowed"  # pragma: no cover - callers only call on failure


def _first_non_ascii(text: str) -> str:
    return next(ch for ch in text if ord(ch) > 127)


def _punycode_hint(value: str) -> str:
    """Suggest the punycode form of an internationalised name, when there is a valid one."""
    general = "write internationalised names in punycode (xn--...)"
    try:
        ascii_form = value.encode("idna").decode("ascii").lower()
        # Python's codec is IDNA 2003, which maps some letters (ß -> ss); only suggest a
        # form that decodes back to what the member wrote.
        if ascii_form.encode("ascii").decode("idna") != value.lower():
            return general
    except UnicodeError:
        return general
    labels = ascii_form.split(".")
    if len(ascii_form) <= _MAX_NAME and all(_LDH_CHARS.match(x) and x for x in labels):
        return "write it in punycode: " + ascii_form
    return general


# ---------------------------------------------------------------------------
# DNS names

_MAX_NAME = 253


def _check_labels(kind: str, original: str, labels: list[str], *, underscore: bool) -> None:
    for label in labels:
        if label == "":
            raise Invalid(
                kind, original, "it has an empty label (two dots in a row, or a leading dot)"
            )
        if len(label) > 63:
            raise Invalid(
                kind, original, f"the label '{label[:20]}...' is longer than 63 characters"
            )
        body = label[1:] if underscore and label.startswith("_") else label
        if body == "":
            raise Invalid(kind, original, "a label cannot be only '_'")
        if not _LDH_CHARS.match(body):
            extra = ", with an optional leading '_'" if underscore else ""
            raise Invalid(
                kind,
                original,
                f"labels may contain only letters, digits and '-'{extra}; "
                f"found {_describe_bad_char(body, re.compile(r'[a-z0-9-]'))}",
            )
        if body.startswith("-") or body.endswith("-"):
            raise Invalid(kind, original, f"the label '{label}' starts or ends with '-'")


def _need_ascii_name(kind: str, value: str) -> None:
    """A DNS name is ASCII; an internationalised one is written in punycode (the hint)."""
    if not value.isascii():
        raise Invalid(
            kind,
            value,
            f"contains the non-ASCII character {_first_non_ascii(value)!r}",
            _punycode_hint(value),
        )


def _check_domain(kind: str, value: Any) -> str:
    value = _need_str(kind, value)
    if value == "":
        raise Invalid(kind, value, "it is empty")
    _need_ascii_name(kind, value)
    if value.endswith("."):
        raise Invalid(kind, value, "it ends with '.'", "write it without the trailing dot")
    name = value.lower()
    if len(name) > _MAX_NAME:
        raise Invalid(kind, value, f"it is longer than {_MAX_NAME} characters")
    labels = name.split(".")
    _check_labels(kind, value, labels, underscore=False)
    if len(labels) < 2:
        raise Invalid(kind, value, "it needs at least two labels, like 'example.org'")
    if labels[-1].isdigit():
        raise Invalid(kind, value, "the last label cannot be all digits (is it an IP address?)")
    return name


def check_domain(value: Any) -> str:
    """An absolute DNS name of at least two LDH labels, without trailing dot; lower-cased."""
    return _check_domain("a domain name", value)


def check_hostname(value: Any) -> str:
    """A fully qualified host name (target of CNAME, MX, NS, SRV); same grammar as a domain."""
    return _check_domain("a host name", value)


def check_label(value: Any) -> str:
    """One DNS label such as ``www``; lower-cased."""
    kind = "a DNS label"
    value = _need_str(kind, value)
    _need_ascii_name(kind, value)
    if "." in value:
        raise Invalid(kind, value, "a single label cannot contain '.'")
    label = value.lower()
    _check_labels(kind, value, [label], underscore=False)
    return label


def check_record_name(value: Any) -> str:
    """A record's owner name relative to its zone: ``@`` or dot-separated labels, each
    LDH with an optional leading ``_`` (``_sip._tcp``), the first may be ``*``."""
    kind = "a record name"
    value = _need_str(kind, value)
    if value == "@":
        return value
    if value == "":
        raise Invalid(kind, value, "it is empty", "use '@' for the zone's own name")
    _need_ascii_name(kind, value)
    if value.endswith("."):
        raise Invalid(kind, value, "it ends with '.'", "record names are relative to the zone")
    name = value.lower()
    if len(name) > _MAX_NAME:
        raise Invalid(kind, value, f"it is longer than {_MAX_NAME} characters")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if "*" in labels:
        raise Invalid(kind, value, "'*' may only be the first label")
    _check_labels(kind, value, labels, underscore=True)
    return name


# ---------------------------------------------------------------------------
# Addresses

_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z"
)
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+\Z")


def check_ipv4(value: Any) -> str:
    """A dotted-quad IPv4 address, each part 0..255 without leading zeros."""
    kind = "an IPv4 address"
    value = _need_str(kind, value)
    if not _IPV4.match(value):
        raise Invalid(
            kind, value, "expected four numbers 0-255 without leading zeros, like 192.0.2.1"
        )
    return value


def check_ipv6(value: Any) -> str:
    """An IPv6 address without zone id; returned in compressed lower-case form."""
    kind = "an IPv6 address"
    value = _need_str(kind, value)
    if "%" in value:
        raise Invalid(kind, value, "zone ids ('%eth0') are not allowed")
    if not _IPV6_CHARS.match(value):
        raise Invalid(kind, value, "only hexadecimal digits, ':' and '.' are allowed")
    try:
        return str(ipaddress.IPv6Address(value))
    except ValueError as e:
        raise Invalid(kind, value, str(e)) from None


def check_ip(value: Any) -> str:
    """Either an IPv4 or an IPv6 address."""
    if isinstance(value, str) and ":" in value:
        return check_ipv6(value)
    try:
        return check_ipv4(value)
    except Invalid as e:
        raise Invalid("an IP address", value, e.reason) from None


# ---------------------------------------------------------------------------
# Mail

# The local part is far narrower than RFC 5322 allows: '|' (pipe), '/' (file delivery),
# ':' (":include:"), ',' (list separator), quotes, '\\', '#' (comment), whitespace and
# '&' or '$' (shell and template syntax) all mean something in aliases, virtual maps or
# userdb files. A leading '-' could read as an option to sendmail-style argv.
_LOCAL = re.compile(r"[A-Za-z0-9._+-]")


def check_email_user(value: Any) -> str:
    """The local part of an address: ``[A-Za-z0-9._+-]``, 1-64 characters, not starting
    with '.' or '-', not ending with '.', no '..'."""
    kind = "an e-mail user name"
    value = _need_str(kind, value)
    if value == "":
        raise Invalid(kind, value, "it is empty")
    if len(value) > 64:
        raise Invalid(kind, value, "it is longer than 64 characters")
    if not all(_LOCAL.match(ch) for ch in value):
        raise Invalid(
            kind,
            value,
            "only letters, digits and '.', '_', '+', '-' are allowed; "
            f"found {_describe_bad_char(value, _LOCAL)}",
        )
    if value[0] in ".-" or value.endswith(".") or ".." in value:
        raise Invalid(kind, value, "it cannot start with '.' or '-', end with '.', or contain '..'")
    return value


def check_email(value: Any) -> str:
    """``local@domain``: local part per :func:`check_email_user`, domain per
    :func:`check_domain` (lower-cased)."""
    kind = "an e-mail address"
    value = _need_str(kind, value)
    if value.count("@") != 1:
        raise Invalid(kind, value, "expected exactly one '@', like alice@example.org")
    local, domain = value.split("@")
    try:
        local = check_email_user(local)
        domain = check_domain(domain)
    except Invalid as e:
        raise Invalid(kind, value, e.reason, e.hint) from None
    return f"{local}@{domain}"


# Mailman 3 list names: Mailman's own rules (``mailman.app.lifecycle.create_list``: a valid
# address local part whose characters are in ``[mailman] listname_chars``, by default
# ``[-_.0-9a-z]``; Mailman lower-cases names), plus ours: no name that ends in one of the
# list's own address suffixes (``team-request`` would be list team's request address), and
# none of the mail system's reserved local parts.
LIST_SUFFIXES = (
    "bounces",
    "confirm",
    "join",
    "leave",
    "owner",
    "request",
    "subscribe",
    "unsubscribe",
)
RESERVED_LIST_NAMES = frozenset(
    {"postmaster", "abuse", "mailer-daemon", "hostmaster", "webmaster", "root", "mailman"}
)
_LIST_CHAR = re.compile(r"[a-z0-9._-]")


def check_list_name(value: Any) -> str:
    """A Mailman list name (the part before '@'): letters, digits and '.', '_', '-', 1-64
    characters, starting with a letter or digit, not ending with '.', no '..'; lower-cased;
    not ending in ``-request``, ``-owner``... and not a reserved mail name."""
    kind = "a mailing list name"
    value = _need_str(kind, value)
    if value == "":
        raise Invalid(kind, value, "it is empty")
    if len(value) > 64:
        raise Invalid(kind, value, "it is longer than 64 characters")
    low = value.lower()
    if not all(_LIST_CHAR.match(ch) for ch in low):
        raise Invalid(
            kind,
            value,
            "only letters, digits and '.', '_', '-' are allowed (Mailman's listname_chars); "
            f"found {_describe_bad_char(low, _LIST_CHAR)}",
        )
    if not low[0].isalnum() or low.endswith(".") or ".." in low:
        raise Invalid(
            kind, value, "it must start with a letter or digit, not end with '.', no '..'"
        )
    for suffix in LIST_SUFFIXES:
        if low.endswith("-" + suffix):
            raise Invalid(kind, value, f"it ends in '-{suffix}', one of a list's own addresses")
    if low in RESERVED_LIST_NAMES:
        raise Invalid(kind, value, "it is reserved for the mail system")
    return low


# ---------------------------------------------------------------------------
# Numbers


def check_port(value: Any) -> int:
    """A TCP/UDP port, 1..65535."""
    return _need_int("a port", value, 1, 65535)


def check_member_port(value: Any) -> int:
    """An unprivileged port a member's own daemon listens on, 1024..65535."""
    return _need_int("a member port", value, 1024, 65535)


def check_ttl(value: Any) -> int:
    """A DNS TTL in seconds, 0..2147483647 (the site may clamp it further)."""
    return _need_int("a TTL", value, 0, 2147483647)


def check_priority(value: Any) -> int:
    """An MX/SRV priority or SRV weight, 0..65535."""
    return _need_int("a priority", value, 0, 65535)


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def check_redirect_status(value: Any) -> int:
    """An HTTP status for a redirect: 301, 302, 303, 307 or 308."""
    kind = "a redirect status"
    _need_int(kind, value, 0, 999)
    if value not in REDIRECT_STATUSES:
        raise Invalid(kind, value, "expected one of 301, 302, 303, 307, 308")
    return value


def check_error_status(value: Any) -> int:
    """An HTTP error status for an error document: 400..599."""
    return _need_int("an error status", value, 400, 599)


def check_http_status(value: Any) -> int:
    """A redirect status (301, 302, 303, 307, 308) or an error status (400..599)."""
    kind = "an HTTP status"
    _need_int(kind, value, 0, 999)
    if value in REDIRECT_STATUSES or 400 <= value <= 599:
        return value
    raise Invalid(kind, value, "expected 301, 302, 303, 307, 308 or 400-599")


# ---------------------------------------------------------------------------
# Unix names and paths

_UNIX_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}\Z")


def check_unix_name(value: Any) -> str:
    """A Unix user or group name: ``[a-z_][a-z0-9_-]{0,31}`` (``root`` is refused by the
    slave, not here)."""
    kind = "a Unix user or group name"
    value = _need_str(kind, value)
    if not _UNIX_NAME.match(value):
        raise Invalid(
            kind,
            value,
            "expected a lower-case letter or '_' then up to 31 lower-case letters, digits, '_' or '-'",
        )
    return value


_PATH_CHAR = re.compile(r"[A-Za-z0-9._+@=,-]")
_PATH_MAX = 4096
_NAME_MAX = 255


def normalise_path(path: str) -> str:
    """Lexically normalise an absolute path: drop empty and ``.`` segments, resolve ``..``
    without ever going above ``/``. No grammar check; see :func:`check_abs_path`."""
    out: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out)


def check_abs_path(value: Any) -> str:
    """An absolute POSIX path over ``[A-Za-z0-9._+@=,-]`` and ``/``, at most 4096
    characters (255 per segment); returned lexically normalised (``/home/alice/../bob``
    gives ``/home/bob``; ``/../../etc`` gives ``/etc``)."""
    kind = "an absolute path"
    value = _need_str(kind, value)
    if not value.startswith("/"):
        raise Invalid(kind, value, "it must start with '/'")
    if len(value) > _PATH_MAX:
        raise Invalid(kind, value, f"it is longer than {_PATH_MAX} characters")
    for seg in value.split("/"):
        if len(seg) > _NAME_MAX:
            raise Invalid(kind, value, f"a path segment is longer than {_NAME_MAX} characters")
        if not all(_PATH_CHAR.match(ch) for ch in seg):
            raise Invalid(
                kind,
                value,
                "only letters, digits, '/' and '.', '_', '+', '@', '=', ',', '-' are allowed; "
                f"found {_describe_bad_char(seg, _PATH_CHAR)}",
            )
    return normalise_path(value)


_FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}\Z")


def check_file_name(value: Any) -> str:
    """A single file name such as ``index.html``: ``[A-Za-z0-9._-]{1,255}``, not ``.``/``..``."""
    kind = "a file name"
    value = _need_str(kind, value)
    if not _FILE_NAME.match(value) or value in (".", ".."):
        raise Invalid(
            kind, value, "expected 1-255 letters, digits, '.', '_' or '-', and not '.' or '..'"
        )
    return value


# ---------------------------------------------------------------------------
# Web

# RFC 3986 path characters without the ones that mean something to Apache or a shell:
# no quotes, '$' (variable expansion), '{}', '<>', '\\', '#', ';', '?', whitespace.
_URL_PATH_CHAR = re.compile(r"[A-Za-z0-9._~!&()*+,=:@%/-]")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URL_MAX = 2048


def _check_url_path_chars(kind: str, original: str, path: str) -> None:
    if not all(_URL_PATH_CHAR.match(ch) for ch in path):
        raise Invalid(
            kind,
            original,
            "only letters, digits, '/' and the characters ._~!&()*+,=:@%- are allowed; "
            f"found {_describe_bad_char(path, _URL_PATH_CHAR)}",
        )
    if _PCT.search(path):
        raise Invalid(kind, original, "'%' must start a %XX escape with two hexadecimal digits")
    if any(seg in (".", "..") for seg in path.split("/")):
        raise Invalid(kind, original, "'.' and '..' segments are not allowed")


def check_url_path(value: Any) -> str:
    """A URL path for Location, Alias or Redirect: starts with '/', over
    ``[A-Za-z0-9._~!&()*+,=:@%/-]`` with ``%XX`` escapes, no ``.``/``..`` segments."""
    kind = "a URL path"
    value = _need_str(kind, value)
    if not value.startswith("/"):
        raise Invalid(kind, value, "it must start with '/'")
    if len(value) > _URL_MAX:
        raise Invalid(kind, value, f"it is longer than {_URL_MAX} characters")
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
    value = _need_str(kind, value)
    if len(value) > _URL_MAX:
        raise Invalid(kind, value, f"it is longer than {_URL_MAX} characters")
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
        elif _IPV4.match(host):
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
            raise Invalid(kind, value, f"the query contains {_describe_bad_char(q, _QUERY_CHAR)}")
        if _PCT.search(q):
            raise Invalid(kind, value, "'%' must start a %XX escape with two hexadecimal digits")
        query = "?" + q
    return f"{scheme}://{host}{port}{path}{query}"


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
    value = _need_str(kind, value)
    sign = value[:1] if value[:1] in ("+", "-") else ""
    name = _OPTIONS_BY_LOWER.get(value[len(sign) :].lower())
    if name is None:
        raise Invalid(
            kind, value, "expected one of " + ", ".join(APACHE_OPTIONS) + " (with optional + or -)"
        )
    return sign + name


_PRINTABLE = re.compile(r"[\x20-\x7e]")


_REALM_CHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]")


def check_realm(value: Any) -> str:
    """An authentication realm: 1-200 printable ASCII characters (spaces allowed), no
    '"' or '\\', no '${' or '%{', not starting or ending with a space."""
    kind = "an authentication realm"
    value = _need_str(kind, value)
    if value == "" or len(value) > 200:
        raise Invalid(kind, value, "expected 1 to 200 characters")
    if not all(_REALM_CHAR.match(ch) for ch in value):
        raise Invalid(
            kind,
            value,
            "only printable ASCII without '\"' or '\\' is allowed; "
            f"found {_describe_bad_char(value, _REALM_CHAR)}",
        )
    if "${" in value or "%{" in value:
        raise Invalid(
            kind, value, "'${' and '%{' are not allowed (Apache reads AuthName as an expression)"
        )
    if value != value.strip(" "):
        raise Invalid(kind, value, "it starts or ends with a space")
    return value


_TXT_MAX = 4000


def check_txt(value: Any) -> str:
    """TXT record text: printable ASCII (space to '~'), at most 4000 characters. Quotes,
    backslashes and ';' are allowed: :func:`zone_txt_strings` quotes them."""
    kind = "TXT record text"
    value = _need_str(kind, value)
    if len(value) > _TXT_MAX:
        raise Invalid(kind, value, f"it is longer than {_TXT_MAX} characters")
    if not all(_PRINTABLE.match(ch) for ch in value):
        raise Invalid(
            kind,
            value,
            f"only printable ASCII is allowed; found {_describe_bad_char(value, _PRINTABLE)}",
        )
    return value


CAA_TAGS = ("issue", "issuewild", "iodef")


def check_caa_tag(value: Any) -> str:
    """A CAA property tag: issue, issuewild or iodef (case-insensitive, lower-cased)."""
    kind = "a CAA tag"
    value = _need_str(kind, value)
    if value.lower() not in CAA_TAGS:
        raise Invalid(kind, value, "expected issue, issuewild or iodef")
    return value.lower()


_CAA_VALUE_CHAR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]")


def check_caa_value(value: Any) -> str:
    """A CAA property value (``letsencrypt.org``, ``;``, ``mailto:x@example.org``): at
    most 255 printable ASCII characters without '"' or '\\'; quoted by :func:`zone_quote`."""
    kind = "a CAA value"
    value = _need_str(kind, value)
    if len(value) > 255:
        raise Invalid(kind, value, "it is longer than 255 characters")
    if not all(_CAA_VALUE_CHAR.match(ch) for ch in value):
        raise Invalid(
            kind,
            value,
            "only printable ASCII without '\"' or '\\' is allowed; "
            f"found {_describe_bad_char(value, _CAA_VALUE_CHAR)}",
        )
    return value


_REGEX_CHAR = re.compile(r"[\x21\x24-\x26\x28-\x3b\x3d\x3f-\x7a\x7c\x7e]")
_REGEX_MAX = 512


def check_regex(value: Any) -> str:
    """A rewrite pattern: 1-512 printable ASCII characters without whitespace, quotes,
    '#', '<', '>', '{', '}' (so no ``{m,n}`` quantifiers), that Python's ``re`` compiles.
    PCRE and ``re`` differ in corners; Apache's config test catches the rest at apply."""
    kind = "a regular expression"
    value = _need_str(kind, value)
    if value == "" or len(value) > _REGEX_MAX:
        raise Invalid(kind, value, f"expected 1 to {_REGEX_MAX} characters")
    if not all(_REGEX_CHAR.match(ch) for ch in value):
        raise Invalid(
            kind,
            value,
            "whitespace, quotes, '#', '<', '>', '{' and '}' are not allowed; "
            f"found {_describe_bad_char(value, _REGEX_CHAR)}",
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


# mod_rewrite: substitutions, flags and conditions. Closed sets where Apache offers
# power a member must not have: [P] would proxy to internal services, [H=] forces a
# handler (CGI where the site did not enable it), [E=] sets environment variables,
# [N] loops; ``%{ENV:...}`` and friends would read the server's variables.

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
    value = _need_str(kind, value)
    if value == "-":
        return value
    if value == "" or len(value) > _URL_MAX:
        raise Invalid(kind, value, f"expected 1 to {_URL_MAX} characters")
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
    if not all(_REWRITE_CHAR.match(ch) for ch in rest):
        raise Invalid(
            kind,
            value,
            "only URL characters and $N / %N back-references are allowed; "
            f"found {_describe_bad_char(rest, _REWRITE_CHAR)}",
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
    value = _need_str(kind, value)
    name, eq, arg = value.partition("=")
    canon = _REWRITE_FLAG_NAMES.get(name.lower())
    if canon is None:
        raise Invalid(kind, value, "expected one of " + ", ".join(REWRITE_FLAGS) + " or R=3xx")
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


def check_rewrite_cond_test(value: Any) -> str:
    """A RewriteCond test string: one of a closed set of request variables
    (``%{HTTP_HOST}``, ``%{REQUEST_URI}``...), case-insensitive; canonical spelling."""
    kind = "a rewrite condition variable"
    value = _need_str(kind, value)
    for t in REWRITE_COND_TESTS:
        if value.upper() == t:
            return t
    raise Invalid(kind, value, "expected one of " + ", ".join(REWRITE_COND_TESTS))


def check_rewrite_cond_flag(value: Any) -> str:
    """A RewriteCond flag: NC, OR or NV (``nocase``, ``ornext``, ``novary``)."""
    kind = "a rewrite condition flag"
    value = _need_str(kind, value)
    canon = {"nc": "NC", "nocase": "NC", "or": "OR", "ornext": "OR", "nv": "NV", "novary": "NV"}
    if value.lower() not in canon:
        raise Invalid(kind, value, "expected NC, OR or NV")
    return canon[value.lower()]


# ---------------------------------------------------------------------------
# Registry: kind name -> checker. The extern types are wired through this table.

KINDS: dict[str, Callable[[Any], Any]] = {
    "domain": check_domain,
    "label": check_label,
    "record_name": check_record_name,
    "hostname": check_hostname,
    "ipv4": check_ipv4,
    "ipv6": check_ipv6,
    "ip": check_ip,
    "email": check_email,
    "email_user": check_email_user,
    "list_name": check_list_name,
    "port": check_port,
    "member_port": check_member_port,
    "unix_name": check_unix_name,
    "abs_path": check_abs_path,
    "url_path": check_url_path,
    "url": check_url,
    "txt": check_txt,
    "caa_tag": check_caa_tag,
    "caa_value": check_caa_value,
    "ttl": check_ttl,
    "priority": check_priority,
    "http_status": check_http_status,
    "redirect_status": check_redirect_status,
    "error_status": check_error_status,
    "realm": check_realm,
    "apache_option": check_apache_option,
    "file_name": check_file_name,
    "regex": check_regex,
    "rewrite_target": check_rewrite_target,
    "rewrite_flag": check_rewrite_flag,
    "rewrite_cond_test": check_rewrite_cond_test,
    "rewrite_cond_flag": check_rewrite_cond_flag,
}


def check(kind: str, value: Any) -> Any:
    """``check_<kind>(value)`` by name; an unknown kind is a programming error (KeyError)."""
    return KINDS[kind](value)


def is_valid(kind: str, value: Any) -> bool:
    try:
        KINDS[kind](value)
    except Invalid:
        return False
    return True


def _make_is(checker: Callable[[Any], Any]) -> Callable[[Any], bool]:
    def is_x(value: Any) -> bool:
        try:
            checker(value)
        except Invalid:
            return False
        return True

    is_x.__name__ = "is_" + checker.__name__[len("check_") :]
    is_x.__doc__ = f"True when :func:`{checker.__name__}` accepts the value."
    return is_x


is_domain = _make_is(check_domain)
is_label = _make_is(check_label)
is_record_name = _make_is(check_record_name)
is_hostname = _make_is(check_hostname)
is_ipv4 = _make_is(check_ipv4)
is_ipv6 = _make_is(check_ipv6)
is_ip = _make_is(check_ip)
is_email = _make_is(check_email)
is_email_user = _make_is(check_email_user)
is_list_name = _make_is(check_list_name)
is_port = _make_is(check_port)
is_member_port = _make_is(check_member_port)
is_unix_name = _make_is(check_unix_name)
is_abs_path = _make_is(check_abs_path)
is_url_path = _make_is(check_url_path)
is_url = _make_is(check_url)
is_txt = _make_is(check_txt)
is_caa_tag = _make_is(check_caa_tag)
is_caa_value = _make_is(check_caa_value)
is_ttl = _make_is(check_ttl)
is_priority = _make_is(check_priority)
is_http_status = _make_is(check_http_status)
is_redirect_status = _make_is(check_redirect_status)
is_error_status = _make_is(check_error_status)
is_realm = _make_is(check_realm)
is_apache_option = _make_is(check_apache_option)
is_file_name = _make_is(check_file_name)
is_regex = _make_is(check_regex)
is_rewrite_target = _make_is(check_rewrite_target)
is_rewrite_flag = _make_is(check_rewrite_flag)
is_rewrite_cond_test = _make_is(check_rewrite_cond_test)
is_rewrite_cond_flag = _make_is(check_rewrite_cond_flag)

__all__ += [f"check_{k}" for k in KINDS] + [f"is_{k}" for k in KINDS]


# ---------------------------------------------------------------------------
# Quoting for target syntaxes


# Backslash and double quote get a backslash in front: BIND zone files and Apache 2.4
# quoted arguments both read them back that way.
_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"'}


def zone_fqdn(name: Any) -> str:
    """A host name made absolute for a zone file: ``www.example.org`` -> ``www.example.org.``."""
    return check_hostname(name) + "."


def zone_quote(text: Any) -> str:
    """One zone-file character-string (a CAA value, say): ``txt`` text of at most 255
    characters, quoted with '"' and '\\' escaped."""
    text = check_txt(text)
    if len(text) > 255:
        raise Invalid("a DNS character-string", text, "it is longer than 255 characters")
    return '"' + text.translate(_ESCAPES) + '"'


def zone_txt_strings(text: Any) -> list[str]:
    """TXT text as zone-file character-strings: split into chunks of at most 255 bytes
    (of the text itself, before escaping), each quoted with '"' and '\\' escaped.
    The empty text gives one empty string ``""``."""
    text = check_txt(text)
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return ['"' + c.translate(_ESCAPES) + '"' for c in chunks]


def apache_quote(value: Any) -> str:
    """A double-quoted Apache configuration argument, with '\\' and '"' escaped (Apache
    2.4's ``ap_getword_conf`` unescapes both inside quotes). Refuses control characters
    (newline, CR, NUL...), non-ASCII, and ``${`` (Apache expands defines everywhere on a
    line, quoted or not)."""
    kind = "a value for an Apache configuration"
    value = _need_str(kind, value)
    if not all(_PRINTABLE.match(ch) for ch in value):
        raise Invalid(
            kind,
            value,
            f"only printable ASCII is allowed; found {_describe_bad_char(value, _PRINTABLE)}",
        )
    if "${" in value:
        raise Invalid(kind, value, "'${' is not allowed (Apache would expand it)")
    return '"' + value.translate(_ESCAPES) + '"'
