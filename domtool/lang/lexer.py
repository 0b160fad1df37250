"""The lexer of the configuration language: source text to tokens with exact positions.

:func:`lex` turns a whole file into a list of :class:`Token` ending with one ``EOF``
token, plus the lexical :class:`~domtool.lang.errors.Diagnostic` s (it never raises).
:func:`decode_source` turns the bytes of a submitted file into text, refusing invalid
UTF-8 and oversized files with a diagnostic.

Lexical structure (see also the grammar in :mod:`domtool.lang.parser`):

- whitespace: space, tab, CR, FF, VT and newline (``\\n`` ends a line);
- comments: ``(* ... *)`` (nestable), ``#`` to the end of the line;
- documentation comments ``{{ ... }}`` are tokens (``DOC``, value: the dedented text);
- ``INT``: ``[0-9]+``, at most ``2**63 - 1``;
- ``STRING``: ``"..."`` with the escapes ``\\"`` ``\\\\`` ``\\n`` ``\\t``; no raw newline;
  at most 65536 characters;
- ``LNAME``: ``[a-z][A-Za-z0-9_']*`` (values, functions, base types), except keywords;
- ``CNAME``: ``[A-Z][A-Za-z0-9_']*`` (contexts, environment variables), except ``Root``;
- keywords: ``let in begin end with where extern type val context Root if then else
  true false`` (a keyword's token kind is the word itself);
- punctuation: ``-> => <- = , : ; ^ ! & [ ] ( ) { } \\ \\\\`` (kind: the text itself).

Positions: lines are 1-based, columns 0-based and counted in characters; a token's end
is its last character (inclusive). Everything is done with anchored, non-backtracking
regular expressions and ``str.find``, so lexing is linear in the size of the input.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from domtool.lang.ast import Pos, Span
from domtool.lang.errors import Diagnostic

#: Largest accepted source, in bytes (UTF-8).
MAX_SOURCE_BYTES = 2 * 1024 * 1024
#: Longest accepted string literal, in characters (after escapes).
MAX_STRING_CHARS = 64 * 1024
#: Largest accepted integer literal.
MAX_INT = 2**63 - 1
#: Lexing and parsing report this many diagnostics, then "too many errors".
MAX_DIAGNOSTICS = 100

KEYWORDS = frozenset(
    "let in begin end with where extern type val context Root if then else true false".split()
)

_WS = re.compile(r"[ \t\r\f\v]+")
_LNAME = re.compile(r"[a-z][A-Za-z0-9_']*")
_CNAME = re.compile(r"[A-Z][A-Za-z0-9_']*")
_INT = re.compile(r"[0-9]+")
_STR_CHUNK = re.compile(r'[^"\\\n]*')
_COMMENT_MARK = re.compile(r"\(\*|\*\)")
# Characters that cannot begin any token (nor whitespace/comments), in runs.
_UNKNOWN_RUN = re.compile(r"[^ \t\r\f\v\n#a-zA-Z0-9\"()\[\]{},:;^!&=<\\*-]+")

_SINGLE = frozenset("=,:;^!&[](){}")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


class Token(NamedTuple):
    """One token. ``kind`` is ``INT``, ``STRING``, ``LNAME``, ``CNAME``, ``DOC`` or
    ``EOF``, or the keyword / punctuation text itself (``"end"``, ``"->"``). ``value`` is
    the int, the decoded string, the name or the doc text. Positions are kept as plain
    ints (a NamedTuple, not an attrs class, because hostile files have millions of
    tokens); :meth:`span` builds the :class:`Span`."""

    kind: str
    value: object
    line: int
    col: int
    eline: int
    ecol: int

    def span(self, file: str) -> Span:
        return Span(file, Pos(self.line, self.col), Pos(self.eline, self.ecol))


def point(file: str, line: int, col: int) -> Span:
    """A one-position span."""
    p = Pos(line, col)
    return Span(file, p, p)


def describe_char(c: str) -> str:
    """A character for an error message: ``'@'`` or ``U+0000`` for invisible ones."""
    if c.isprintable() and not c.isspace():
        return repr(c)
    return f"U+{ord(c):04X}"


def dedent_doc(text: str) -> str:
    """The text of a ``{{ }}`` comment: stripped, continuation lines dedented."""
    lines = text.split("\n")
    first = lines[0].strip()
    rest = [ln.rstrip() for ln in lines[1:]]
    indents = [len(ln) - len(ln.lstrip()) for ln in rest if ln.strip()]
    cut = min(indents) if indents else 0
    rest = [ln[cut:] for ln in rest]
    return "\n".join([first, *rest]).strip()


def source_too_large(file: str, size: int) -> Diagnostic:
    return Diagnostic(file, point(file, 1, 0), f"file too large ({size} bytes; limit 2 MiB)")


def decode_source(file: str, data: bytes) -> tuple[str | None, list[Diagnostic]]:
    """The text of a submitted file, or a diagnostic: too large, or invalid UTF-8 (at
    the line and column of the first bad byte). A leading byte-order mark is dropped."""
    if len(data) > MAX_SOURCE_BYTES:
        return None, [source_too_large(file, len(data))]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        line = good.count("\n") + 1
        col = len(good) - (good.rfind("\n") + 1)
        if line == 1 and good.startswith("\ufeff"):
            col -= 1
        bad = data[exc.start]
        msg = f"invalid UTF-8 (byte 0x{bad:02x} at offset {exc.start})"
        return None, [Diagnostic(file, point(file, line, col), msg)]
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, []


def lex(file: str, text: str) -> tuple[list[Token], list[Diagnostic]]:
    """All tokens of ``text`` (ending with ``EOF``) and the lexical errors."""
    return _Lexer(file, text).run()


class _Lexer:
    def __init__(self, file: str, text: str):
        self.file = file
        self.text = text
        self.toks: list[Token] = []
        self.diags: list[Diagnostic] = []
        self.line = 1
        self.ls = 0  # index of the first character of the current line

    def error(self, line: int, col: int, eline: int, ecol: int, msg: str) -> None:
        if len(self.diags) <= MAX_DIAGNOSTICS:
            span = Span(self.file, Pos(line, col), Pos(eline, ecol))
            self.diags.append(Diagnostic(self.file, span, msg))

    def newlines(self, a: int, b: int) -> None:
        """Account for the line breaks in ``text[a:b]``."""
        k = self.text.count("\n", a, b)
        if k:
            self.line += k
            self.ls = self.text.rfind("\n", a, b) + 1

    def run(self) -> tuple[list[Token], list[Diagnostic]]:
        text, n, toks, file = self.text, len(self.text), self.toks, self.file
        size = len(text)
        if size * 4 > MAX_SOURCE_BYTES:
            size = len(text.encode("utf-8", errors="surrogatepass"))
            if size > MAX_SOURCE_BYTES:
                toks.append(Token("EOF", None, 1, 0, 1, 0))
                return toks, [source_too_large(file, size)]
        pos = 0
        while pos < n:
            c = text[pos]
            if c == "\n":
                pos += 1
                self.line += 1
                self.ls = pos
                continue
            if c in " \t\r\f\v":
                pos = _WS.match(text, pos).end()
                continue
            line, col = self.line, pos - self.ls
            if "a" <= c <= "z":
                end = _LNAME.match(text, pos).end()
                word = text[pos:end]
                kind = word if word in KEYWORDS else "LNAME"
                toks.append(Token(kind, word, line, col, line, end - 1 - self.ls))
                pos = end
            elif "A" <= c <= "Z":
                end = _CNAME.match(text, pos).end()
                word = text[pos:end]
                kind = "Root" if word == "Root" else "CNAME"
                toks.append(Token(kind, word, line, col, line, end - 1 - self.ls))
                pos = end
            elif "0" <= c <= "9":
                end = _INT.match(text, pos).end()
                pos = self.integer(pos, end, line, col)
            elif c == '"':
                pos = self.string(pos, line, col)
            elif c in _SINGLE:
                if c == "=" and text.startswith("=>", pos):
                    toks.append(Token("=>", "=>", line, col, line, col + 1))
                    pos += 2
                elif c == "(" and text.startswith("(*", pos):
                    pos = self.comment(pos, line, col)
                elif c == "{" and text.startswith("{{", pos):
                    pos = self.doc(pos, line, col)
                else:
                    toks.append(Token(c, c, line, col, line, col))
                    pos += 1
            elif c == "#":
                nl = text.find("\n", pos)
                pos = n if nl < 0 else nl
            elif c == "\\":
                if text.startswith("\\\\", pos):
                    toks.append(Token("\\\\", "\\\\", line, col, line, col + 1))
                    pos += 2
                else:
                    toks.append(Token("\\", "\\", line, col, line, col))
                    pos += 1
            elif c == "-" and text.startswith("->", pos):
                toks.append(Token("->", "->", line, col, line, col + 1))
                pos += 2
            elif c == "<" and text.startswith("<-", pos):
                toks.append(Token("<-", "<-", line, col, line, col + 1))
                pos += 2
            elif c == "*" and text.startswith("*)", pos):
                self.error(line, col, line, col + 1, "unmatched comment close '*)'")
                pos += 2
            else:
                m = _UNKNOWN_RUN.match(text, pos)
                end = m.end() if m is not None else pos + 1
                msg = f"unknown character {describe_char(c)}"
                if end - pos > 1:
                    msg += f" (and {end - pos - 1} more)"
                self.error(line, col, line, end - 1 - self.ls, msg)
                pos = end
        toks.append(Token("EOF", None, self.line, n - self.ls, self.line, n - self.ls))
        if len(self.diags) > MAX_DIAGNOSTICS:
            last = self.diags[MAX_DIAGNOSTICS - 1]
            note = Diagnostic(file, last.span, "too many errors; the rest are not reported")
            self.diags[MAX_DIAGNOSTICS:] = [note]
        return toks, self.diags

    def integer(self, pos: int, end: int, line: int, col: int) -> int:
        digits = self.text[pos:end]
        ecol = end - 1 - self.ls
        value = 0
        if len(digits) > 19 or int(digits) > MAX_INT:
            self.error(line, col, line, ecol, "integer literal too large (limit 2**63 - 1)")
        else:
            value = int(digits)
        self.toks.append(Token("INT", value, line, col, line, ecol))
        return end

    def string(self, pos: int, line: int, col: int) -> int:
        text, n = self.text, len(self.text)
        parts: list[str] = []
        length = 0
        too_long = False
        p = pos + 1
        while True:
            end = _STR_CHUNK.match(text, p).end()
            if not too_long:
                length += end - p
                if length > MAX_STRING_CHARS:
                    too_long = True
                    parts = []
                else:
                    parts.append(text[p:end])
            p = end
            if p >= n or text[p] == "\n":
                ecol = max(col, p - 1 - self.ls)
                self.error(line, col, line, ecol, "unterminated string")
                break
            if text[p] == '"':
                ecol = p - self.ls
                p += 1
                break
            # a backslash
            if p + 1 >= n or text[p + 1] == "\n":
                self.error(line, col, line, p - self.ls, "unterminated string")
                ecol = p - self.ls
                p += 1
                break
            esc = text[p + 1]
            got = _ESCAPES.get(esc)
            if got is None:
                ec = p - self.ls
                self.error(
                    line, ec, line, ec + 1, f"unknown escape \\{esc} in string (use \\\\ for \\)"
                )
                got = esc
            if not too_long:
                length += 1
                if length > MAX_STRING_CHARS:
                    too_long = True
                    parts = []
                else:
                    parts.append(got)
            p += 2
        if too_long:
            self.error(line, col, line, ecol, "string literal too long (limit 65536 characters)")
        self.toks.append(Token("STRING", "".join(parts), line, col, line, ecol))
        return p

    def comment(self, pos: int, line: int, col: int) -> int:
        text = self.text
        depth = 1
        p = pos + 2
        while depth:
            m = _COMMENT_MARK.search(text, p)
            if m is None:
                self.error(line, col, line, col + 1, "unterminated comment (opened here)")
                p = len(text)
                break
            depth += 1 if m.group() == "(*" else -1
            p = m.end()
        self.newlines(pos, p)
        return p

    def doc(self, pos: int, line: int, col: int) -> int:
        text = self.text
        close = text.find("}}", pos + 2)
        if close < 0:
            self.error(line, col, line, col + 1, "unterminated documentation comment (opened here)")
            self.newlines(pos, len(text))
            return len(text)
        end = close + 2
        self.newlines(pos, end)
        body = dedent_doc(text[pos + 2 : close])
        self.toks.append(Token("DOC", body, line, col, self.line, end - 1 - self.ls))
        return end
