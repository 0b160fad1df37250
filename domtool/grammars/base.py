"""What every grammar shares: the :class:`Invalid` error and the checks its messages are
made of (type, length, allowed characters, a closed set of spellings)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Invalid"]


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


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
LDH_CHARS = re.compile(r"[a-z0-9-]*\Z")
#: printable ASCII, space to '~'
PRINTABLE = re.compile(r"[\x20-\x7e]")
#: printable ASCII without '"' or '\\' (what a quoted value may hold as it is)
QUOTABLE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]")


def need_str(kind: str, value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(kind, value, f"expected text, got {type(value).__name__}")
    return value


def need_int(kind: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(kind, value, f"expected a whole number, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise Invalid(kind, value, f"must be between {lo} and {hi}")
    return value


def at_most(kind: str, value: str, limit: int) -> None:
    """At most ``limit`` characters."""
    if len(value) > limit:
        raise Invalid(kind, value, f"it is longer than {limit} characters")


def between(kind: str, value: str, limit: int) -> None:
    """1 to ``limit`` characters."""
    if value == "" or len(value) > limit:
        raise Invalid(kind, value, f"expected 1 to {limit} characters")


def only(
    kind: str,
    value: Any,
    text: str,
    allowed: re.Pattern[str],
    what: str,
    hint: str | None = None,
) -> None:
    """Every character of ``text`` (``value`` or a part of it) is in the one-character
    class ``allowed``; else Invalid: ``what`` and the first character found outside it."""
    if not all(allowed.match(ch) for ch in text):
        raise Invalid(kind, value, f"{what}; found {describe_bad_char(text, allowed)}", hint)


def canonical(
    kind: str,
    value: str,
    spellings: Mapping[str, str],
    fold: Callable[[str], str],
    expected: str,
    text: str | None = None,
) -> str:
    """The canonical spelling of a member of a closed set: ``spellings[fold(text)]``
    (``text``: ``value`` or the part of it that names the member); else Invalid with the
    reason ``expected``."""
    found = spellings.get(fold(value if text is None else text))
    if found is None:
        raise Invalid(kind, value, expected)
    return found


def describe_bad_char(text: str, allowed: re.Pattern[str]) -> str:
    """Name the first character of ``text`` outside the ``allowed`` one-character class."""
    for ch in text:
        if not allowed.fullmatch(ch):
            if ch == "\n":
                return "a newline"
            if ch.isspace():
                return "whitespace"
            if CONTROL.match(ch):
                return f"the control character {ch!r}"
            if ord(ch) > 127:
                return f"the non-ASCII character {ch!r}"
            return f"the character {ch!r}"
    return "a character that is not allowed"  # pragma: no cover - callers only call on failure
