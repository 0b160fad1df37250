"""Strict grammars for every kind of value a member controls, and quoting for targets: the
one name callers use (``validate.check_X``, ``validate.KINDS``), over the grammars of
:mod:`domtool.grammars` (``dns``, ``mail``, ``web``, ``system``) and :mod:`domtool.quoting`.

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

from collections.abc import Callable
from typing import Any

from domtool.grammars.base import Invalid
from domtool.grammars.dns import (
    CAA_TAGS,
    check_caa_tag,
    check_caa_value,
    check_domain,
    check_hostname,
    check_ip,
    check_ipv4,
    check_ipv6,
    check_label,
    check_priority,
    check_record_name,
    check_ttl,
    check_txt,
)
from domtool.grammars.mail import (
    LIST_SUFFIXES,
    RESERVED_LIST_NAMES,
    check_email,
    check_email_user,
    check_list_name,
)
from domtool.grammars.system import (
    check_abs_path,
    check_file_name,
    check_member_port,
    check_port,
    check_unix_name,
    normalise_path,
)
from domtool.grammars.web import (
    APACHE_OPTIONS,
    REDIRECT_STATUSES,
    REWRITE_COND_TESTS,
    REWRITE_FLAGS,
    check_apache_option,
    check_error_status,
    check_http_status,
    check_realm,
    check_redirect_status,
    check_regex,
    check_rewrite_cond_flag,
    check_rewrite_cond_test,
    check_rewrite_flag,
    check_rewrite_target,
    check_url,
    check_url_path,
)
from domtool.quoting import apache_quote, zone_fqdn, zone_quote, zone_txt_strings

__all__ = [
    "Invalid",
    "APACHE_OPTIONS",
    "CAA_TAGS",
    "LIST_SUFFIXES",
    "RESERVED_LIST_NAMES",
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
