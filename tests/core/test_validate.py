"""The strict grammars of domtool.validate and the quoting helpers for zone files and Apache."""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import subprocess

import dns.zone
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domtool import validate as v
from domtool.validate import Invalid
from tests.conftest import require_binary

# ---------------------------------------------------------------------------
# Concrete examples per kind: (kind, input, expected canonical output) and refusals.

ACCEPTED = [
    ("domain", "example.org", "example.org"),
    ("domain", "Example.ORG", "example.org"),
    ("domain", "a-b.c0.example", "a-b.c0.example"),
    ("domain", "xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("domain", "a." * 125 + "abc", "a." * 125 + "abc"),
    ("label", "www", "www"),
    ("label", "WWW", "www"),
    ("label", "a" * 63, "a" * 63),
    ("record_name", "@", "@"),
    ("record_name", "www", "www"),
    ("record_name", "_sip._tcp", "_sip._tcp"),
    ("record_name", "_dmarc", "_dmarc"),
    ("record_name", "s1._domainkey", "s1._domainkey"),
    ("record_name", "*", "*"),
    ("record_name", "*.Dev", "*.dev"),
    ("hostname", "mail.example.org", "mail.example.org"),
    ("ipv4", "192.0.2.1", "192.0.2.1"),
    ("ipv4", "0.0.0.0", "0.0.0.0"),
    ("ipv4", "255.255.255.255", "255.255.255.255"),
    ("ipv6", "2001:DB8::0:1", "2001:db8::1"),
    ("ipv6", "::1", "::1"),
    ("ipv6", "2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("ip", "192.0.2.1", "192.0.2.1"),
    ("ip", "2001:db8::1", "2001:db8::1"),
    ("email", "alice@example.org", "alice@example.org"),
    ("email", "Alice.B+tag@Example.ORG", "Alice.B+tag@example.org"),
    ("email_user", "sales", "sales"),
    ("email_user", "first.last_x+y-z", "first.last_x+y-z"),
    ("list_name", "team", "team"),
    ("list_name", "Dev.Announce_2-x", "dev.announce_2-x"),
    ("port", 80, 80),
    ("port", 65535, 65535),
    ("member_port", 8080, 8080),
    ("member_port", 1024, 1024),
    ("unix_name", "alice", "alice"),
    ("unix_name", "_svc-1", "_svc-1"),
    ("abs_path", "/home/alice/public_html", "/home/alice/public_html"),
    ("abs_path", "/home/alice/../bob", "/home/bob"),
    ("abs_path", "/../../etc", "/etc"),
    ("abs_path", "/home//alice/./x/", "/home/alice/x"),
    ("abs_path", "/", "/"),
    ("abs_path", "/srv/a+b@c=d,e-f.g", "/srv/a+b@c=d,e-f.g"),
    ("url_path", "/", "/"),
    ("url_path", "/manual", "/manual"),
    ("url_path", "/a%20b/(x)~y:z@w", "/a%20b/(x)~y:z@w"),
    ("url", "https://example.org/", "https://example.org/"),
    ("url", "HTTP://WWW.Example.org", "http://www.example.org"),
    ("url", "https://example.org:8443/a/b?x=1&y=%2F", "https://example.org:8443/a/b?x=1&y=%2F"),
    ("url", "http://192.0.2.1/x", "http://192.0.2.1/x"),
    ("url", "http://[2001:DB8::1]:8080/", "http://[2001:db8::1]:8080/"),
    ("txt", 'v=spf1 mx -all; "quoted" \\ back', 'v=spf1 mx -all; "quoted" \\ back'),
    ("txt", "", ""),
    ("txt", "x" * 4000, "x" * 4000),
    ("caa_tag", "issue", "issue"),
    ("caa_tag", "IssueWild", "issuewild"),
    ("caa_tag", "iodef", "iodef"),
    (
        "caa_value",
        "letsencrypt.org; accounturi=https://a.example/1",
        "letsencrypt.org; accounturi=https://a.example/1",
    ),
    ("caa_value", ";", ";"),
    ("caa_value", "mailto:security@example.org", "mailto:security@example.org"),
    ("ttl", 0, 0),
    ("ttl", 2147483647, 2147483647),
    ("priority", 0, 0),
    ("priority", 65535, 65535),
    ("http_status", 301, 301),
    ("http_status", 404, 404),
    ("http_status", 503, 503),
    ("redirect_status", 308, 308),
    ("error_status", 410, 410),
    ("realm", "Members only", "Members only"),
    ("realm", "Alice's wiki (staff)", "Alice's wiki (staff)"),
    ("apache_option", "Indexes", "Indexes"),
    ("apache_option", "-followsymlinks", "-FollowSymLinks"),
    ("apache_option", "+IncludesNOEXEC", "+IncludesNOEXEC"),
    ("file_name", "index.html", "index.html"),
    ("file_name", "index.cgi", "index.cgi"),
    ("regex", r"^/old/(.*)\.html$", r"^/old/(.*)\.html$"),
    ("regex", "^/(a|b)+/?$", "^/(a|b)+/?$"),
    ("rewrite_target", "-", "-"),
    ("rewrite_target", "/new/$1?page=%2", "/new/$1?page=%2"),
    ("rewrite_target", "HTTPS://Example.org:8443/$1", "https://example.org:8443/$1"),
    ("rewrite_target", "https://example.org", "https://example.org"),
    ("rewrite_flag", "L", "L"),
    ("rewrite_flag", "nocase", "NC"),
    ("rewrite_flag", "r=308", "R=308"),
    ("rewrite_flag", "QSA", "QSA"),
    ("rewrite_cond_test", "%{HTTP_HOST}", "%{HTTP_HOST}"),
    ("rewrite_cond_test", "%{request_uri}", "%{REQUEST_URI}"),
    ("rewrite_cond_flag", "ornext", "OR"),
    ("rewrite_cond_flag", "NC", "NC"),
]

REFUSED = [
    ("domain", "ex ample.org", "labels may contain only letters, digits and '-'"),
    ("domain", "example", "at least two labels"),
    ("domain", "example.org.", "trailing dot"),
    ("domain", "bücher.de", "punycode: xn--bcher-kva.de"),
    ("domain", "-a.example.org", "starts or ends with '-'"),
    ("domain", "a-.example.org", "starts or ends with '-'"),
    ("domain", "a..example.org", "empty label"),
    ("domain", ".example.org", "empty label"),
    ("domain", "a" * 64 + ".org", "longer than 63"),
    ("domain", "a." * 126 + "abc", "longer than 253"),
    ("domain", "_dmarc.example.org", "letters, digits"),
    ("domain", "1.2.3.4", "all digits"),
    ("domain", "example.org\nevil", "a newline"),
    ("domain", "exa;mple.org", "';'"),
    ("domain", "", "empty"),
    ("domain", 42, "expected text"),
    ("label", "www.example", "single label"),
    ("label", "a" * 64, "longer than 63"),
    ("label", "_x", "letters, digits"),
    ("record_name", "", "use '@'"),
    ("record_name", "www.", "relative"),
    ("record_name", "a.*", "first label"),
    ("record_name", "**", "letters, digits"),
    ("record_name", "_", "only '_'"),
    ("record_name", "a b", "whitespace"),
    ("record_name", "a\nIN A 1.2.3.4", "newline"),
    ("hostname", "localhost", "at least two labels"),
    ("ipv4", "192.0.2.01", "leading zeros"),
    ("ipv4", "256.0.0.1", "0-255"),
    ("ipv4", "1.2.3", "four numbers"),
    ("ipv4", "١.2.3.4", "four numbers"),
    ("ipv4", "1.2.3.4\n", "four numbers"),
    ("ipv6", "fe80::1%eth0", "zone ids"),
    ("ipv6", " ::1", "only hexadecimal"),
    ("ipv6", "2001:db8::g", "only hexadecimal"),
    ("ipv6", "1::2::3", "not an IPv6"),
    ("ip", "example.org", "four numbers"),
    ("email", "alice", "exactly one '@'"),
    ("email", "a@b@example.org", "exactly one '@'"),
    ("email", "|cmd@example.org", "'|'"),
    ("email", "a b@example.org", "whitespace"),
    ("email", ".a@example.org", "cannot start"),
    ("email", "a..b@example.org", "'..'"),
    ("email", "alice@example", "two labels"),
    ("email_user", "", "empty"),
    ("email_user", "-f", "cannot start"),
    ("email_user", "a/b", "'/'"),
    ("email_user", ":include:", "':'"),
    ("email_user", "x" * 65, "longer than 64"),
    ("email_user", "a.", "end with '.'"),
    ("list_name", "", "empty"),
    ("list_name", "team-request", "-request"),
    ("list_name", "a-unsubscribe", "-unsubscribe"),
    ("list_name", "postmaster", "reserved"),
    ("list_name", "a+b", "'+'"),
    ("list_name", "a..b", "no '..'"),
    ("list_name", "_x", "start with a letter"),
    ("list_name", "x" * 65, "longer than 64"),
    ("port", 0, "between 1 and 65535"),
    ("port", 65536, "between 1 and 65535"),
    ("port", "80", "whole number"),
    ("port", True, "whole number"),
    ("port", 80.0, "whole number"),
    ("member_port", 80, "between 1024 and 65535"),
    ("unix_name", "Alice", "lower-case"),
    ("unix_name", "1alice", "lower-case"),
    ("unix_name", "a" * 33, "31"),
    ("unix_name", "al ice", "lower-case"),
    ("unix_name", "alice$", "lower-case"),
    ("abs_path", "home/alice", "start with '/'"),
    ("abs_path", "", "start with '/'"),
    ("abs_path", "/home/alice/my site", "whitespace"),
    ("abs_path", "/home/alice/a\nb", "newline"),
    ("abs_path", "/home/alice/a\x00b", "control character"),
    ("abs_path", '/home/alice/"x', "'\"'"),
    ("abs_path", "/home/alice/a\\b", "'\\\\'"),
    ("abs_path", "/home/alice/*", "'*'"),
    ("abs_path", "/home/alice/${X}", "'$'"),
    ("abs_path", "/home/alice/~x", "'~'"),
    ("abs_path", "/home/" + "a" * 256, "longer than 255"),
    ("abs_path", "/" + "a/" * 2048 + "b", "longer than 4096"),
    ("url_path", "manual", "start with '/'"),
    ("url_path", "/a b", "whitespace"),
    ("url_path", "/a?b", "'?'"),
    ("url_path", "/a#b", "'#'"),
    ("url_path", "/a/../b", "'..'"),
    ("url_path", "/a%2", "%XX"),
    ("url_path", "/<x>", "'<'"),
    ("url_path", "/${x}", "'$'"),
    ("url", "ftp://example.org/", "only http and https"),
    ("url", "example.org/", "expected http"),
    ("url", "javascript:alert(1)", "expected http"),
    ("url", "http://user@example.org/", "user names"),
    ("url", "http://example.org/#top", "fragments"),
    ("url", "http://example.org:0/", "bad port"),
    ("url", "http://example.org:99999/", "bad port"),
    ("url", "http://ex ample.org/", "bad host"),
    ("url", "http://example.org/a b", "whitespace"),
    ("url", 'http://example.org/"', "'\"'"),
    ("url", "http://example.org/?q=<x>", "'<'"),
    ("url", "http:///path", "bad host"),
    ("txt", "line\nbreak", "newline"),
    ("txt", "tab\there", "whitespace"),
    ("txt", "caf\u00e9", "non-ASCII"),
    ("txt", "x" * 4001, "longer than 4000"),
    ("caa_tag", "issuer", "expected issue"),
    ("caa_value", 'a"b', "'\"'"),
    ("caa_value", "a\nb", "newline"),
    ("caa_value", "x" * 256, "longer than 255"),
    ("ttl", -1, "between 0"),
    ("ttl", 2147483648, "between 0"),
    ("priority", 65536, "between 0 and 65535"),
    ("http_status", 200, "expected 301"),
    ("http_status", 304, "expected 301"),
    ("redirect_status", 404, "expected one of"),
    ("error_status", 302, "between 400 and 599"),
    ("realm", "", "1 to 200"),
    ("realm", 'a"b', "'\"'"),
    ("realm", "a\\b", "'\\\\'"),
    ("realm", "a\nb", "newline"),
    ("realm", " padded", "starts or ends with a space"),
    ("realm", "x${APACHE_LOG_DIR}", "'${'"),
    ("realm", "%{REMOTE_ADDR}", "'%{'"),
    ("apache_option", "All", "expected one of"),
    ("apache_option", "+Indexes -ExecCGI", "expected one of"),
    ("apache_option", "++Indexes", "expected one of"),
    ("file_name", "..", "not '.' or '..'"),
    ("file_name", "a/b", "expected 1-255"),
    ("file_name", "", "expected 1-255"),
    ("regex", "a b", "whitespace"),
    ("regex", "a{2}", "'{'"),
    ("regex", "(", "does not compile"),
    ("regex", "[[a]", "ambiguous"),
    ("regex", "[a--b]", "ambiguous"),
    ("regex", "x\\", "does not compile"),
    ("regex", '"', "'\"'"),
    ("regex", "", "1 to 512"),
    ("regex", "a" * 513, "1 to 512"),
    ("rewrite_target", "", "1 to 2048"),
    ("rewrite_target", "new/$1", "expected '-'"),
    ("rewrite_target", "/${HOME}", "'$'"),
    ("rewrite_target", "/%{ENV:SECRET}", "'%'"),
    ("rewrite_target", "/a b", "whitespace"),
    ("rewrite_target", '/a"', "'\"'"),
    ("rewrite_target", "/a\\b", "'\\\\'"),
    ("rewrite_target", "/a#b", "'#'"),
    ("rewrite_target", "/etc/passwd", "from the filesystem"),
    ("rewrite_target", "/var", "from the filesystem"),
    ("rewrite_target", "ftp://example.org/", "expected '-'"),
    ("rewrite_target", "http://ex_ample.org/", "bad host"),
    ("rewrite_target", "http://example.org:0/", "bad port"),
    ("rewrite_target", "http://example.org$1", "after the host"),
    ("rewrite_flag", "P", "expected one of"),
    ("rewrite_flag", "H=cgi-script", "expected one of"),
    ("rewrite_flag", "E=VAR:1", "expected one of"),
    ("rewrite_flag", "N", "expected one of"),
    ("rewrite_flag", "R=200", "only R takes a value"),
    ("rewrite_flag", "L=1", "only R takes a value"),
    ("rewrite_cond_test", "%{ENV:SECRET}", "expected one of"),
    ("rewrite_cond_test", "%{HTTP_HOST}x", "expected one of"),
    ("rewrite_cond_flag", "X", "expected NC"),
]


@pytest.mark.parametrize(("kind", "value", "expected"), ACCEPTED)
def test_accepted_examples(kind, value, expected):
    """Each documented example is accepted and returned in its canonical form."""
    assert v.check(kind, value) == expected
    assert getattr(v, f"check_{kind}")(value) == expected
    assert getattr(v, f"is_{kind}")(value) is True


@pytest.mark.parametrize(("kind", "value", "reason"), REFUSED)
def test_refused_examples(kind, value, reason):
    """Each documented counter-example is refused with a message naming the value and why."""
    with pytest.raises(Invalid) as info:
        v.check(kind, value)
    assert reason in str(info.value)
    assert str(info.value).startswith(repr(value)[:60])
    assert getattr(v, f"is_{kind}")(value) is False


def test_every_kind_has_examples():
    """The example tables cover every registered kind, both ways."""
    assert {k for k, _, _ in ACCEPTED} == set(v.KINDS)
    assert {k for k, _, _ in REFUSED} == set(v.KINDS)


def test_message_for_a_person():
    """The message says what the value is, what it is not, and why."""
    with pytest.raises(Invalid) as info:
        v.check_domain("ex ample.org")
    assert str(info.value) == (
        "'ex ample.org' is not a domain name: labels may contain only letters, digits "
        "and '-'; found whitespace"
    )
    assert isinstance(info.value, ValueError)
    assert info.value.kind == "a domain name" and info.value.value == "ex ample.org"


def test_long_values_are_cut_in_messages():
    """A huge refused value does not flood the message."""
    with pytest.raises(Invalid) as info:
        v.check_domain("x" * 10000)
    assert len(str(info.value)) < 200


# ---------------------------------------------------------------------------
# Properties: whatever is accepted stays in its slot.

CONTROL = {chr(c) for c in range(0x20)} | {chr(0x7F)}
STRICT = CONTROL | set(" \t\"'\\;{}<>#`$|")
FORBIDDEN = {
    "domain": STRICT | set("_*/@:"),
    "label": STRICT | set("._*/@:"),
    "record_name": STRICT | set("/:"),  # '@' alone is the apex, see below
    "hostname": STRICT | set("_*/@:"),
    "ipv4": STRICT | set("/@:"),
    "ipv6": STRICT | set("/@%"),
    "ip": STRICT | set("/@%"),
    "email": STRICT | set("/:,%&"),
    "email_user": STRICT | set("/:,%&@"),
    "unix_name": STRICT | set("./@:"),
    "abs_path": STRICT | set("*?[]~%:&()!"),
    "url_path": STRICT | set("?"),
    "url": STRICT,
    "txt": CONTROL,
    "caa_tag": STRICT,
    "caa_value": CONTROL | set('"\\'),
    "realm": CONTROL | set('"\\'),
    "apache_option": STRICT,
    "file_name": STRICT | set("/"),
    "regex": CONTROL | set(" \"'{}<>#"),
    "rewrite_target": STRICT - set("$"),  # '$' only as a $N back-reference, see below
    "rewrite_flag": STRICT | set("$%/:"),
    "rewrite_cond_test": (STRICT | set("/:")) - set("{}"),
    "rewrite_cond_flag": STRICT | set("=/"),
}
STRING_KINDS = sorted(FORBIDDEN)
INT_KINDS = {
    "port": (1, 65535),
    "member_port": (1024, 65535),
    "ttl": (0, 2147483647),
    "priority": (0, 65535),
    "error_status": (400, 599),
}

NASTY = list("\n\r\x00\t \"'\\;{}<>#$`|*?%@:/._-+~[]()&!=,") + [
    "\u00e9",
    "\u0661",
    "\u2028",
    "\ufeff",
    "xn--",
    "..",
    "${",
    "%{",
    "\r\n",
]
SEEDS = [a for _, a, _ in ACCEPTED if isinstance(a, str)]


def texts():
    """Random text biased towards near-misses: valid examples with nasty pieces spliced in."""
    nasty = st.sampled_from(NASTY)
    spliced = st.builds(
        lambda seed, i, bit: seed[: i % (len(seed) + 1)] + bit + seed[i % (len(seed) + 1) :],
        st.sampled_from(SEEDS),
        st.integers(0, 10000),
        nasty,
    )
    mixed = st.lists(st.one_of(nasty, st.sampled_from(SEEDS), st.text(max_size=3))).map("".join)
    long = st.builds(lambda seed, n: seed * n, st.sampled_from(SEEDS), st.integers(50, 3000))
    return st.one_of(st.text(), spliced, mixed, long)


@pytest.mark.parametrize("kind", STRING_KINDS)
@given(text=texts())
def test_accepted_text_contains_nothing_forbidden(kind, text):
    """For every string grammar, random text is refused or yields an ASCII value free of
    that grammar's forbidden characters; the canonical value is itself accepted unchanged."""
    try:
        out = v.check(kind, text)
    except Invalid:
        assert v.is_valid(kind, text) is False
        return
    assert out.isascii()
    assert not (set(out) & FORBIDDEN[kind]), (kind, out)
    if kind == "record_name":
        assert out == "@" or "@" not in out
    if kind == "rewrite_target":
        assert re.fullmatch(r"(?:[^$%]|[$%][0-9])*", out), out
    if kind == "rewrite_cond_test":
        assert out in v.REWRITE_COND_TESTS
    if kind not in (
        "txt",
        "caa_value",
        "rewrite_cond_test",
    ):  # only these may hold '%{' (or '${' for TXT)
        assert "${" not in out and "%{" not in out
    assert v.check(kind, out) == out


@pytest.mark.parametrize("kind", STRING_KINDS)
@given(bit=st.sampled_from(["\n", "\r", "\x00", "\x1b", "\x7f"]), i=st.integers(0, 100))
def test_control_characters_are_always_refused(kind, bit, i):
    """Splicing a control character into an otherwise valid value of the kind is refused."""
    good = next(a for k, a, _ in ACCEPTED if k == kind and isinstance(a, str) and a)
    bad = good[: i % (len(good) + 1)] + bit + good[i % (len(good) + 1) :]
    with pytest.raises(Invalid):
        v.check(kind, bad)


@pytest.mark.parametrize(("kind", "bounds"), sorted(INT_KINDS.items()))
@given(value=st.one_of(st.integers(-(2**40), 2**40), st.integers(-5, 70000), st.booleans()))
def test_integer_kinds_accept_exactly_their_range(kind, bounds, value):
    """Integer grammars accept exactly the ints in range (never bools)."""
    lo, hi = bounds
    expected = not isinstance(value, bool) and lo <= value <= hi
    assert v.is_valid(kind, value) is expected


@given(value=st.one_of(st.text(), st.floats(), st.none(), st.lists(st.integers())))
def test_integer_kinds_refuse_non_integers(value):
    """Text, floats, None and lists are never a port, TTL, priority or status."""
    for kind in [*INT_KINDS, "http_status", "redirect_status"]:
        assert not v.is_valid(kind, value)


@given(value=st.one_of(st.integers(), st.none(), st.binary(), st.floats()))
def test_string_kinds_refuse_non_text(value):
    """String grammars refuse non-text values instead of crashing."""
    for kind in STRING_KINDS:
        assert not v.is_valid(kind, value)


# ---------------------------------------------------------------------------
# Paths

SEGMENTS = st.sampled_from(["", ".", "..", "a", "b", "alice", "bob", "x.y", "..."])


@given(segs=st.lists(SEGMENTS, max_size=12))
def test_path_normalisation_matches_posix_and_never_escapes_root(segs):
    """Lexical normalisation agrees with posixpath.normpath for single-slash roots and
    yields a canonical path: no empty, '.' or '..' segments, never above '/'."""
    p = "/" + "/".join(segs)
    out = v.check_abs_path(p)
    assert out == posixpath.normpath("/" + p.lstrip("/"))
    assert out.startswith("/")
    assert out == "/" or not out.endswith("/")
    assert all(s not in ("", ".", "..") for s in out.split("/")[1:]) or out == "/"
    assert v.normalise_path(out) == out


# ---------------------------------------------------------------------------
# Quoting


def _unquote_zone(quoted: str) -> str:
    """Read back one BIND character-string (``"..."`` with backslash escapes)."""
    assert quoted.startswith('"') and quoted.endswith('"')
    body, out, i = quoted[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        assert ch != '"', "unescaped quote inside a character-string"
        if ch == "\\":
            i += 1
            ch = body[i]
        out.append(ch)
        i += 1
    return "".join(out)


def test_zone_txt_strings_examples():
    """Quotes and backslashes are escaped; ';' stays inside the quotes."""
    assert v.zone_txt_strings('v=spf1 "x" \\ ;') == ['"v=spf1 \\"x\\" \\\\ ;"']
    assert v.zone_txt_strings("") == ['""']
    parts = v.zone_txt_strings("a" * 600)
    assert [len(_unquote_zone(p)) for p in parts] == [255, 255, 90]
    with pytest.raises(Invalid):
        v.zone_txt_strings("a\nb")


@given(text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=1200))
def test_zone_txt_strings_round_trip(text):
    """Chunks read back to the original text, each at most 255 bytes, with no bare quote."""
    parts = v.zone_txt_strings(text)
    raw = [_unquote_zone(p) for p in parts]
    assert "".join(raw) == text
    assert all(len(r.encode()) <= 255 for r in raw)
    assert all("\n" not in p for p in parts)


def _apache_getword_conf(line: str) -> tuple[str, str]:
    """Apache 2.4's ap_getword_conf for a double-quoted word: (word, rest of line)."""
    assert line[0] == '"'
    end = 1
    while end < len(line) and line[end] != '"':
        if line[end] == "\\" and end + 1 < len(line) and line[end + 1] in '"\\':
            end += 2
        else:
            end += 1
    body, out, i = line[1:end], [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] in '"\\':
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out), line[end + 1 :]


def test_apache_quote_examples():
    """Backslash and quote are escaped; control characters and '${' are refused."""
    assert v.apache_quote("Members only") == '"Members only"'
    assert v.apache_quote('a"b\\') == '"a\\"b\\\\"'
    assert v.apache_quote(r"^(.*)\.html$") == r'"^(.*)\\.html$"'
    for bad in ["a\nb", "a\rb", "a\x00b", "caf\u00e9", "${HOME}", 3]:
        with pytest.raises(Invalid):
            v.apache_quote(bad)


@given(text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_apache_quote_is_one_word_that_reads_back(text):
    """Apache reads the quoted value back as exactly one word equal to the input."""
    assume("${" not in text)
    quoted = v.apache_quote(text)
    word, rest = _apache_getword_conf(quoted + " Next")
    assert word == text
    assert rest == " Next"


@given(text=st.text())
def test_apache_quote_refuses_or_is_single_line(text):
    """Anything apache_quote returns is one printable ASCII line."""
    try:
        q = v.apache_quote(text)
    except Invalid:
        return
    assert q.isascii() and q.isprintable() and "\n" not in q


def test_zone_fqdn():
    """Host names get exactly one trailing dot; invalid names are refused."""
    assert v.zone_fqdn("NS1.coop.example") == "ns1.coop.example."
    for bad in ["ns1.coop.example.", "a b.example", "localhost", "a;b.example"]:
        with pytest.raises(Invalid):
            v.zone_fqdn(bad)


def test_regex_keeps_backslashes():
    """Regex escapes are kept verbatim; only apache_quote doubles them for the file."""
    assert v.check_regex(r"\.php$") == r"\.php$"
    assert re.compile(v.check_regex(r"^/a/(\d+)$")).match("/a/12")


def test_punycode_hint_only_when_faithful():
    """Non-ASCII names get their punycode form as a hint only when it round-trips; IDNA
    2003's lossy mappings (ß -> ss) get the general advice instead."""
    with pytest.raises(Invalid) as info:
        v.check_domain("Bücher.de")
    assert info.value.hint == "write it in punycode: xn--bcher-kva.de"
    with pytest.raises(Invalid) as info:
        v.check_domain("straße.de")
    assert "strasse" not in str(info.value) and "xn--" in str(info.value)
    with pytest.raises(Invalid) as info:
        v.check_label("bücher")
    assert info.value.hint == "write it in punycode: xn--bcher-kva"


def test_zone_quote():
    """One character-string: escaped, and refused beyond 255 characters."""
    assert v.zone_quote('a"b\\c;') == '"a\\"b\\\\c;"'
    assert _unquote_zone(v.zone_quote('a"b\\c;')) == 'a"b\\c;'
    assert v.zone_quote("") == '""'
    for bad in ["x" * 256, "a\nb", "caf\u00e9"]:
        with pytest.raises(Invalid):
            v.zone_quote(bad)


# ---------------------------------------------------------------------------
# Against the real parsers: dnspython (always), named-checkzone and apache2 (daemons).

ZONE_HEAD = (
    "$TTL 3600\n"
    "@ IN SOA ns1.coop.example. hostmaster.coop.example. 1 7200 900 1209600 300\n"
    "@ IN NS ns1.coop.example.\n"
)
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=700)


def _zone(records: list[str]) -> str:
    return ZONE_HEAD + "".join(r + "\n" for r in records)


def _txt_of(zone_text: str, name: str) -> list[bytes]:
    zone = dns.zone.from_text(zone_text, origin="example.org", relativize=True)
    rdataset = zone.find_rdataset(name, "TXT")
    return [b"".join(r.strings) for r in rdataset]


@given(text=PRINTABLE, name=st.sampled_from(["@", "www", "_dmarc", "s1._domainkey", "*.dev"]))
def test_dnspython_reads_back_zone_txt_strings(text, name):
    """A TXT record written with zone_txt_strings under a checked record name parses
    (dnspython) back to exactly the text, whatever quotes, ';' or '(' it holds."""
    owner = v.check_record_name(name)
    zone = _zone([f"{owner} 300 IN TXT {' '.join(v.zone_txt_strings(text))}"])
    assert _txt_of(zone, owner) == [text.encode()]


NASTY_TXT = [
    'v=spf1 "include:x" ; -all',
    "back\\slash\\",
    "(paren) $ORIGIN evil. @ IN A 1.2.3.4",
    '"' * 300,
    "\\" * 300,
    "x" * 4000,
]


@pytest.mark.daemons
def test_named_checkzone_reads_back_zone_txt_strings(tmp_path):
    """BIND's own parser accepts the quoted TXT records and dumps back the same texts."""
    require_binary("named-checkzone")
    records = [f"t{i} IN TXT {' '.join(v.zone_txt_strings(t))}" for i, t in enumerate(NASTY_TXT)]
    records.append(f"@ IN CAA 0 issue {v.zone_quote('letsencrypt.org; accounturi=x')}")
    records.append(f"mx IN MX 10 {v.zone_fqdn('Mail.Example.org')}")
    zone_file = tmp_path / "example.org.zone"
    zone_file.write_text(_zone(records))
    out = subprocess.run(
        ["named-checkzone", "-o", "-", "example.org", str(zone_file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for i, t in enumerate(NASTY_TXT):
        assert _txt_of(out, f"t{i}") == [t.encode()]


APACHE_VALUES = [
    "a\"b\\c d#e;f'g",
    "ends with backslash\\",
    '\\"',
    "%{REMOTE_ADDR} <Directory /> </VirtualHost>",
    "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "$"),
]


@pytest.mark.daemons
def test_apache_reads_back_apache_quote(tmp_path):
    """apache2's config parser reads each apache_quote'd value back as one word, equal to
    the original (seen through ``Define`` and ``-D DUMP_RUN_CFG``)."""
    require_binary("apache2")
    lines = [
        f"ServerRoot {tmp_path}",
        "LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so",
        "ServerName localhost",
        f"PidFile {tmp_path}/pid",
        f"ErrorLog {tmp_path}/error.log",
    ]
    lines += [f"Define V{i} {v.apache_quote(x)}" for i, x in enumerate(APACHE_VALUES)]
    conf = tmp_path / "t.conf"
    conf.write_text("\n".join(lines) + "\n")
    apache2 = "/usr/sbin/apache2" if os.path.exists("/usr/sbin/apache2") else "apache2"
    out = subprocess.run(
        [apache2, "-f", str(conf), "-t", "-D", "DUMP_RUN_CFG"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    defines = dict(
        line.split(": ", 1)[1].split("=", 1)
        for line in out.splitlines()
        if "=" in line and line.startswith("Define: ")
    )
    assert defines == {f"V{i}": x for i, x in enumerate(APACHE_VALUES)}


def test_ipv4_mapped_ipv6_is_accepted():
    """An IPv4-mapped IPv6 address is accepted (its printed form varies across Python
    versions, so compare addresses)."""
    out = v.check_ipv6("::ffff:192.0.2.1")
    assert ipaddress.IPv6Address(out) == ipaddress.IPv6Address("::ffff:192.0.2.1")
    assert v.check_ipv6(out) == out
