"""Database and role names (``domtool.dbnames``): the member-prefix grammar refuses every
hostile name with a clear message, and MariaDB's backtick quoting round-trips any name."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domtool import dbnames
from domtool.validate import Invalid

GRAMMAR = re.compile(r"[a-z_][a-z0-9_-]{0,62}")


@pytest.mark.parametrize(
    "name, member", [("alice", "alice"), ("alice_blog", "alice"), ("bob-x_1", "bob-x")]
)
def test_names_under_the_prefix_pass(name, member):
    assert dbnames.check_name(name, member) == name


@pytest.mark.parametrize(
    "name, member, why",
    [
        ("bob_blog", "alice", "must be 'alice' or start with 'alice_'"),
        ("aliceblog", "alice", "must be 'alice' or start with 'alice_'"),
        ("alice-blog", "alice", "must be 'alice' or start with 'alice_'"),
        ("Alice_blog", "alice", "contains 'A'"),
        ("alice blog", "alice", "contains ' '"),
        ("alice_x`; DROP DATABASE bob; --", "alice", "contains '`'"),
        ('alice_"x', "alice", "contains '\"'"),
        ("alice_\x00", "alice", "contains '\\x00'"),
        ("alice_é", "alice", "contains 'é'"),
        ("", "alice", "must not be empty"),
        ("alice_" + "x" * 60, "alice", "at most 63"),
        ("1alice", "alice", "must start with a letter"),
        ("root", "root", "reserve"),
        ("postgres_x", "postgres", "reserve"),
        ("pg_x", "pg", "reserve"),
    ],
)
def test_hostile_or_foreign_names_are_refused_with_the_reason(name, member, why):
    with pytest.raises(Invalid) as e:
        dbnames.check_name(name, member)
    assert why in str(e.value) and f"{member}'s" in str(e.value)


@given(name=st.text(max_size=80), member=st.sampled_from(["alice", "bob", "a-b", "_x"]))
def test_whatever_passes_is_the_strict_grammar_under_the_prefix(name, member):
    """Any text: either refused (Invalid, naming the member), or ASCII of the strict
    grammar, under the member's prefix, with no quote, backtick, space, NUL or wildcard."""
    try:
        out = dbnames.check_name(name, member)
    except Invalid as e:
        assert f"{member}'s" in str(e)
        return
    assert out == name and GRAMMAR.fullmatch(out) and dbnames.is_under(out, member)
    assert not set(out) & set("`'\"\\ \x00%;.")


def _unquote_backtick(text: str) -> str:
    """A reference reader of one MariaDB quoted identifier: the whole text must be one
    token: a backtick, any characters with each backtick doubled, a closing backtick."""
    assert text[0] == "`" and text[-1] == "`"
    inner, out, i = text[1:-1], [], 0
    while i < len(inner):
        if inner[i] == "`":
            assert inner[i + 1 : i + 2] == "`", f"a lone backtick ends the token early: {text!r}"
            i += 2
            out.append("`")
        else:
            out.append(inner[i])
            i += 1
    return "".join(out)


bmp = st.characters(blacklist_categories=("Cs",), max_codepoint=0xFFFF, blacklist_characters="\x00")


@given(name=st.text(bmp, min_size=1, max_size=40).filter(lambda s: not s.endswith(" ")))
def test_backtick_quoting_round_trips_any_identifier(name):
    assert _unquote_backtick(dbnames.backtick(name)) == name


@pytest.mark.parametrize("bad", ["", "a\x00b", "x ", "\ud800", "\U0001f600"])
def test_backtick_refuses_what_no_quoting_carries(bad):
    with pytest.raises(Invalid):
        dbnames.backtick(bad)


def test_grant_database_names_escape_the_wildcards():
    """In GRANT ... ON db.*, ``_`` would match any character (alice_blog would also
    cover alice-blog, a name another member could hold)."""
    assert dbnames.mysql_grant_db("alice_blog", "alice") == "`alice\\_blog`"
    assert dbnames.mysql_ident("alice_blog", "alice") == "`alice_blog`"
    with pytest.raises(Invalid):
        dbnames.mysql_ident("bob", "alice")


def test_the_longest_member_prefix_owns_a_name():
    members = ["alice", "alice_b", "bob"]
    assert dbnames.owner_of("alice_b_x", members) == "alice_b"
    assert dbnames.owner_of("alice_c", members) == "alice"
    assert dbnames.owner_of("carol", members) is None
