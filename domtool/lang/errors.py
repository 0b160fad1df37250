"""Diagnostics in the published shape.

    FILE:L.C-L.C:error: MESSAGE
    Expression: ...
    Actual type: ...
    Needed type: ...
    Hint: ...

A :class:`Diagnostic` is a value; every phase (lexer, parser, checker, evaluator)
returns a list of them rather than raising, so a file's errors are reported together.
"""

from __future__ import annotations

import attrs

from domtool.lang.ast import Span


@attrs.frozen
class Diagnostic:
    """One problem in one file. ``details`` are the indented lines after the message
    (each already in ``Label: text`` form, e.g. ``"Actual type: string"``)."""

    file: str
    span: Span | None
    message: str
    details: tuple[str, ...] = ()
    hint: str | None = None
    severity: str = "error"

    def format(self) -> str:
        where = f"{self.file}:{self.span}" if self.span is not None else self.file
        lines = [f"{where}:{self.severity}: {self.message}"]
        lines.extend(self.details)
        if self.hint:
            lines.append(f"Hint: {self.hint}")
        return "\n".join(lines)

    def sort_key(self) -> tuple:
        if self.span is None:
            return (self.file, 0, 0)
        return (self.file, self.span.start.line, self.span.start.col)


def format_all(diags: list[Diagnostic] | tuple[Diagnostic, ...]) -> str:
    return "\n".join(d.format() for d in sorted(diags, key=Diagnostic.sort_key))
