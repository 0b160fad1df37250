"""The lexer: token kinds and values, exact positions, comments, lexical errors, bounds."""

from __future__ import annotations

import time

import pytest

from domtool.lang.lexer import MAX_SOURCE_BYTES, decode_source, dedent_doc, lex


def kinds(text: str) -> list[str]:
    toks, diags = lex("f", text)
    assert diags == []
    return [t.kind for t in toks]


def only_error(text: str):
    toks, diags = lex("f", text)
    assert len(diags) == 1, diags
    return diags[0]


def test_token_kinds_for_each_class():
    """Names, keywords, literals and every punctuation mark get their own kind."""
    text = "let in begin end with where extern type val context Root if then else true false"
    assert kinds(text) == text.split() + ["EOF"]
    assert kinds("foo Bar x' y_2 Zz9") == ["LNAME", "CNAME", "LNAME", "LNAME", "CNAME", "EOF"]
    punct = "-> => <- = , : ; ^ ! & [ ] ( ) { } \\ \\\\"
    assert kinds(punct) == punct.split() + ["EOF"]
    assert kinds('12 "s"') == ["INT", "STRING", "EOF"]


def test_punctuation_without_spaces_is_split_greedily():
    """``\\\\x:P->e`` lexes as double backslash, name, colon, name, arrow, name."""
    assert kinds("\\\\x:P->e") == ["\\\\", "LNAME", ":", "CNAME", "->", "LNAME", "EOF"]
    assert kinds("x<-C;[a]=>{}") == [
        "LNAME", "<-", "CNAME", ";", "[", "LNAME", "]", "=>", "{", "}", "EOF",
    ]  # fmt: skip


def test_keyword_prefixes_are_names():
    """``ending``, ``letter``, ``Rooted`` are identifiers, not keywords."""
    toks, _ = lex("f", "ending letter Rooted")
    assert [(t.kind, t.value) for t in toks[:-1]] == [
        ("LNAME", "ending"),
        ("LNAME", "letter"),
        ("CNAME", "Rooted"),
    ]


def test_positions_are_exact():
    """Lines 1-based, columns 0-based, ends inclusive; tabs count one column."""
    toks, _ = lex("f", 'dom "example.org" with\nend;\n\t  x')
    got = [(t.kind, t.line, t.col, t.eline, t.ecol) for t in toks]
    assert got == [
        ("LNAME", 1, 0, 1, 2),
        ("STRING", 1, 4, 1, 16),
        ("with", 1, 18, 1, 21),
        ("end", 2, 0, 2, 2),
        (";", 2, 3, 2, 3),
        ("LNAME", 3, 3, 3, 3),
        ("EOF", 3, 4, 3, 4),
    ]
    assert str(toks[1].span("f")) == "1.4-1.16"


def test_string_escapes():
    """``\\"`` ``\\\\`` ``\\n`` ``\\t`` decode; the span covers the source text."""
    toks, diags = lex("f", r'"a\"b\\c\nd\te"')
    assert diags == []
    assert toks[0].value == 'a"b\\c\nd\te'
    assert (toks[0].col, toks[0].ecol) == (0, 14)


def test_unknown_escape_is_an_error_at_the_escape():
    """``\\q`` is reported with the span of the two characters."""
    d = only_error('x "ab\\qc"')
    assert "unknown escape \\q" in d.message
    assert str(d.span) == "1.5-1.6"


def test_raw_newline_in_string_is_unterminated():
    """A string cannot cross a line: "unterminated string" from the opening quote to the
    end of the line, and lexing goes on on the next line."""
    toks, diags = lex("f", 'a "abc\nb')
    assert [d.message for d in diags] == ["unterminated string"]
    assert str(diags[0].span) == "1.2-1.5"
    assert [t.kind for t in toks] == ["LNAME", "STRING", "LNAME", "EOF"]
    assert toks[2].line == 2


def test_string_at_end_of_input_is_unterminated():
    """An open quote, or a backslash, as the last character."""
    assert only_error('"').message == "unterminated string"
    assert only_error('"ab\\').message == "unterminated string"


def test_comments_nest_and_count_lines():
    """``(* (* *) *)`` is one comment; ``#`` runs to the end of the line; positions
    after a multi-line comment are right."""
    toks, diags = lex("f", "(* a (* b *)\n c *) x # (* not a comment opener\n  y")
    assert diags == []
    assert [(t.value, t.line, t.col) for t in toks[:-1]] == [("x", 2, 6), ("y", 3, 2)]


def test_unterminated_comment_points_at_its_opening():
    """The error is "unterminated comment (opened here)" at the outer ``(*``."""
    d = only_error("x\n  (* a (* b *) c")
    assert d.message == "unterminated comment (opened here)"
    assert str(d.span) == "2.2-2.3"


def test_unmatched_comment_close():
    """A stray ``*)`` is named as such."""
    assert "unmatched comment close" in only_error("a *) b").message


def test_doc_comment_is_a_token_with_dedented_text():
    """``{{ }}`` keeps its text, first line stripped and the others dedented."""
    toks, diags = lex("f", "{{ First line\n     second\n       third }}\nx")
    assert diags == []
    assert toks[0].kind == "DOC"
    assert toks[0].value == "First line\nsecond\n  third"
    assert (toks[0].line, toks[0].col, toks[0].eline, toks[0].ecol) == (1, 0, 3, 14)
    assert (toks[1].line, toks[1].col) == (4, 0)


def test_dedent_doc_edge_cases():
    """Empty docs, blank lines in the middle, and single lines."""
    assert dedent_doc("") == ""
    assert dedent_doc("  one  ") == "one"
    assert dedent_doc(" a\n\n   b\n   c ") == "a\n\nb\nc"


def test_unterminated_doc_comment():
    """``{{`` without ``}}`` is reported at the opening."""
    d = only_error("x {{ never closed")
    assert d.message == "unterminated documentation comment (opened here)"
    assert str(d.span) == "1.2-1.3"


def test_unknown_characters_are_reported_once_per_run():
    """``@@@`` is one diagnostic naming the first character; lexing continues."""
    toks, diags = lex("f", "a @@@ b \x00")
    assert [d.message for d in diags] == [
        "unknown character '@' (and 2 more)",
        "unknown character U+0000",
    ]
    assert str(diags[0].span) == "1.2-1.4"
    assert [t.value for t in toks[:-1]] == ["a", "b"]


@pytest.mark.parametrize("text", ["-", "<", "*", "_x", "é"])
def test_lone_marks_are_unknown(text):
    """Characters that begin no token: a lone ``-``, ``<``, ``*``, ``_``, non-ASCII."""
    assert only_error(text).message.startswith("unknown character")


def test_integer_bounds():
    """2**63 - 1 is accepted; 2**63 and very long digit strings are refused quickly."""
    toks, diags = lex("f", str(2**63 - 1))
    assert diags == [] and toks[0].value == 2**63 - 1
    assert "too large" in only_error(str(2**63)).message
    t0 = time.process_time()
    assert "too large" in only_error("9" * 1_000_000).message
    assert time.process_time() - t0 < 1.0


def test_string_length_bound():
    """65536 characters are fine; one more is "string literal too long"."""
    toks, diags = lex("f", '"' + "a" * 65536 + '"')
    assert diags == [] and len(toks[0].value) == 65536
    d = only_error('"' + "a" * 65537 + '"')
    assert d.message.startswith("string literal too long")
    assert str(d.span) == "1.0-1.65538"


def test_a_string_near_the_size_limit_lexes_fast():
    """A 2,000,000-character literal (escapes included) is refused in well under a
    second: scanning is linear."""
    text = '"' + "ab\\n" * 500_000 + '"'
    t0 = time.process_time()
    d = only_error(text)
    assert time.process_time() - t0 < 2.0
    assert "too long" in d.message


def test_file_size_bound():
    """More than 2 MiB (as UTF-8) is one diagnostic with the size, and no tokens."""
    text = "x" * (MAX_SOURCE_BYTES + 1)
    toks, diags = lex("f", text)
    assert [d.message for d in diags] == [
        f"file too large ({MAX_SOURCE_BYTES + 1} bytes; limit 2 MiB)"
    ]
    assert [t.kind for t in toks] == ["EOF"]
    # counted in bytes: 700,000 three-byte characters are over the limit
    assert "file too large" in only_error("€" * 700_000).message
    assert lex("f", "x" * MAX_SOURCE_BYTES)[1] == []


def test_decode_source():
    """UTF-8 decodes (a BOM is dropped); a bad byte is reported at its line and column."""
    assert decode_source("f", "é\n".encode()) == ("é\n", [])
    assert decode_source("f", b"\xef\xbb\xbfx") == ("x", [])
    text, diags = decode_source("f", b'dom "a" with\n  "\xc3\xa9\xff" end')
    assert text is None
    (d,) = diags
    assert str(d.span) == "2.4-2.4"
    assert d.message == "invalid UTF-8 (byte 0xff at offset 18)"
    text, diags = decode_source("f", b"x" * (MAX_SOURCE_BYTES + 1))
    assert text is None and "file too large" in diags[0].message
