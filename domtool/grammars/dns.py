"""Grammars of DNS values: names (``domain``, ``hostname``, ``label``, ``record_name``),
addresses (``ipv4``, ``ipv6``, ``ip``), record data (``txt``, ``caa_tag``, ``caa_value``,
``ttl``, ``priority``)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from domtool.grammars.base import (
    LDH_CHARS,
    PRINTABLE,
    QUOTABLE,
    Invalid,
    at_most,
    canonical,
    describe_bad_char,
    need_int,
    need_str,
    only,
)

__all__ = [
    "CAA_TAGS",
    "IPV4",
    "check_caa_tag",
    "check_caa_value",
    "check_domain",
    "check_hostname",
    "check_ip",
    "check_ipv4",
    "check_ipv6",
    "check_label",
    "check_priority",
    "check_record_name",
    "check_ttl",
    "check_txt",
]

MAX_NAME = 253


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
    if len(ascii_form) <= MAX_NAME and all(LDH_CHARS.match(x) and x for x in labels):
        return "write it in punycode: " + ascii_form
    return general


# ---------------------------------------------------------------------------
# Names


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
        if not LDH_CHARS.match(body):
            extra = ", with an optional leading '_'" if underscore else ""
            raise Invalid(
                kind,
                original,
                f"labels may contain only letters, digits and '-'{extra}; "
                f"found {describe_bad_char(body, re.compile(r'[a-z0-9-]'))}",
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


def _name_labels(kind: str, value: Any, *, empty_hint: str | None, dot_hint: str) -> list[str]:
    """The lower-cased labels of a name without trailing dot: text, not empty, ASCII (else
    the punycode hint), at most 253 characters. The labels themselves are not checked."""
    value = need_str(kind, value)
    if value == "":
        raise Invalid(kind, value, "it is empty", empty_hint)
    _need_ascii_name(kind, value)
    if value.endswith("."):
        raise Invalid(kind, value, "it ends with '.'", dot_hint)
    name = value.lower()
    if len(name) > MAX_NAME:
        raise Invalid(kind, value, f"it is longer than {MAX_NAME} characters")
    return name.split(".")


def _check_domain(kind: str, value: Any) -> str:
    labels = _name_labels(
        kind, value, empty_hint=None, dot_hint="write it without the trailing dot"
    )
    _check_labels(kind, value, labels, underscore=False)
    if len(labels) < 2:
        raise Invalid(kind, value, "it needs at least two labels, like 'example.org'")
    if labels[-1].isdigit():
        raise Invalid(kind, value, "the last label cannot be all digits (is it an IP address?)")
    return ".".join(labels)


def check_domain(value: Any) -> str:
    """An absolute DNS name of at least two LDH labels, without trailing dot; lower-cased."""
    return _check_domain("a domain name", value)


def check_hostname(value: Any) -> str:
    """A fully qualified host name (target of CNAME, MX, NS, SRV); same grammar as a domain."""
    return _check_domain("a host name", value)


def check_label(value: Any) -> str:
    """One DNS label such as ``www``; lower-cased."""
    kind = "a DNS label"
    value = need_str(kind, value)
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
    if need_str(kind, value) == "@":
        return value
    labels = _name_labels(
        kind,
        value,
        empty_hint="use '@' for the zone's own name",
        dot_hint="record names are relative to the zone",
    )
    name = ".".join(labels)
    if labels[0] == "*":
        labels = labels[1:]
    if "*" in labels:
        raise Invalid(kind, value, "'*' may only be the first label")
    _check_labels(kind, value, labels, underscore=True)
    return name


# ---------------------------------------------------------------------------
# Addresses

IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z"
)
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+\Z")


def check_ipv4(value: Any) -> str:
    """A dotted-quad IPv4 address, each part 0..255 without leading zeros."""
    kind = "an IPv4 address"
    value = need_str(kind, value)
    if not IPV4.match(value):
        raise Invalid(
            kind, value, "expected four numbers 0-255 without leading zeros, like 192.0.2.1"
        )
    return value


def check_ipv6(value: Any) -> str:
    """An IPv6 address without zone id; returned in compressed lower-case form."""
    kind = "an IPv6 address"
    value = need_str(kind, value)
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
# Record data


def check_ttl(value: Any) -> int:
    """A DNS TTL in seconds, 0..2147483647 (the site may clamp it further)."""
    return need_int("a TTL", value, 0, 2147483647)


def check_priority(value: Any) -> int:
    """An MX/SRV priority or SRV weight, 0..65535."""
    return need_int("a priority", value, 0, 65535)


_TXT_MAX = 4000


def check_txt(value: Any) -> str:
    """TXT record text: printable ASCII (space to '~'), at most 4000 characters. Quotes,
    backslashes and ';' are allowed: ``quoting.zone_txt_strings`` quotes them."""
    kind = "TXT record text"
    value = need_str(kind, value)
    at_most(kind, value, _TXT_MAX)
    only(kind, value, value, PRINTABLE, "only printable ASCII is allowed")
    return value


CAA_TAGS = ("issue", "issuewild", "iodef")
_CAA_TAGS = {t: t for t in CAA_TAGS}


def check_caa_tag(value: Any) -> str:
    """A CAA property tag: issue, issuewild or iodef (case-insensitive, lower-cased)."""
    kind = "a CAA tag"
    value = need_str(kind, value)
    return canonical(kind, value, _CAA_TAGS, str.lower, "expected issue, issuewild or iodef")


def check_caa_value(value: Any) -> str:
    """A CAA property value (``letsencrypt.org``, ``;``, ``mailto:x@example.org``): at
    most 255 printable ASCII characters without '"' or '\\'; quoted by ``quoting.zone_quote``."""
    kind = "a CAA value"
    value = need_str(kind, value)
    at_most(kind, value, 255)
    only(kind, value, value, QUOTABLE, "only printable ASCII without '\"' or '\\' is allowed")
    return value
