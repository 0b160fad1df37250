"""Grammars of mail values: an address's local part (``email_user``), an address
(``email``), a Mailman list name (``list_name``)."""

from __future__ import annotations

import re
from typing import Any

from domtool.grammars.base import Invalid, need_str, only
from domtool.grammars.dns import check_domain

__all__ = [
    "LIST_SUFFIXES",
    "RESERVED_LIST_NAMES",
    "check_email",
    "check_email_user",
    "check_list_name",
]

# The local part is far narrower than RFC 5322 allows: '|' (pipe), '/' (file delivery),
# ':' (":include:"), ',' (list separator), quotes, '\\', '#' (comment), whitespace and
# '&' or '$' (shell and template syntax) all mean something in aliases, virtual maps or
# userdb files. A leading '-' could read as an option to sendmail-style argv.
_LOCAL = re.compile(r"[A-Za-z0-9._+-]")


def _one_to_64(kind: str, value: Any) -> str:
    value = need_str(kind, value)
    if value == "":
        raise Invalid(kind, value, "it is empty")
    if len(value) > 64:
        raise Invalid(kind, value, "it is longer than 64 characters")
    return value


def check_email_user(value: Any) -> str:
    """The local part of an address: ``[A-Za-z0-9._+-]``, 1-64 characters, not starting
    with '.' or '-', not ending with '.', no '..'."""
    kind = "an e-mail user name"
    value = _one_to_64(kind, value)
    only(kind, value, value, _LOCAL, "only letters, digits and '.', '_', '+', '-' are allowed")
    if value[0] in ".-" or value.endswith(".") or ".." in value:
        raise Invalid(kind, value, "it cannot start with '.' or '-', end with '.', or contain '..'")
    return value


def check_email(value: Any) -> str:
    """``local@domain``: local part per :func:`check_email_user`, domain per
    ``dns.check_domain`` (lower-cased)."""
    kind = "an e-mail address"
    value = need_str(kind, value)
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
    value = _one_to_64(kind, value)
    low = value.lower()
    only(
        kind,
        value,
        low,
        _LIST_CHAR,
        "only letters, digits and '.', '_', '-' are allowed (Mailman's listname_chars)",
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
