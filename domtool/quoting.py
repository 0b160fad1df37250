"""Quoting for the target syntaxes: zone-file names and character-strings (BIND), and
double-quoted Apache arguments. Each re-checks its value's grammar first
(:mod:`domtool.grammars`); the renderers write only what these return."""

from __future__ import annotations

from typing import Any

from domtool.grammars.base import PRINTABLE, Invalid, need_str, only
from domtool.grammars.dns import check_hostname, check_txt

__all__ = ["apache_quote", "zone_fqdn", "zone_quote", "zone_txt_strings"]

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
    value = need_str(kind, value)
    only(kind, value, value, PRINTABLE, "only printable ASCII is allowed")
    if "${" in value:
        raise Invalid(kind, value, "'${' is not allowed (Apache would expand it)")
    return '"' + value.translate(_ESCAPES) + '"'
