"""Member permissions: parsing the file form and the ownership rules for domains and paths."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domtool.perms import Permissions, PermsError, format_perms, parse_perms
from domtool.validate import Invalid

EXAMPLES = Path("/work/shared/examples")
ALICE = """\
# alice's grants
domain: example.org Example.NET   # case does not matter
path: /home/alice
user: alice
group: alice

"""


def alice() -> Permissions:
    return parse_perms(ALICE, "alice")


def test_parse_file_form():
    """Classes, values, comments, blank lines and case-folding of domains."""
    p = alice()
    assert p == Permissions(
        user="alice",
        domains=frozenset({"example.org", "example.net"}),
        paths=frozenset({"/home/alice"}),
        users=frozenset({"alice"}),
        groups=frozenset({"alice"}),
    )


@pytest.mark.skipif(not EXAMPLES.exists(), reason="shared examples not present")
def test_parse_published_examples():
    """The published alice.perms and bob.perms parse to what they say."""
    a = parse_perms((EXAMPLES / "alice.perms").read_text(), "alice")
    b = parse_perms((EXAMPLES / "bob.perms").read_text(), "bob")
    assert a.owns_domain("www.example.org") and not a.owns_domain("bob.example")
    assert b.owns_path("/home/bob/public_html") and not b.owns_path("/home/alice")


def test_duplicates_and_repeated_classes_are_merged():
    """A value may be granted twice and a class may appear on several lines."""
    p = parse_perms("domain: a.example a.example\ndomain: b.example\n", "alice")
    assert p.domains == frozenset({"a.example", "b.example"})


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("domain: example.org\nshell: /bin/sh\n", 2, "unknown permission class 'shell'"),
        ("\n\ndomain example.org\n", 3, "expected 'CLASS: VALUE"),
        ("domain: ex_ample.org\n", 1, "is not a domain name"),
        ("path: home/alice\n", 1, "must start with '/'"),
        ("path: /\n", 1, "whole filesystem"),
        ("path: /home/..\n", 1, "whole filesystem"),
        ("user: Root!\n", 1, "Unix user"),
        ("Domain: example.org\n", 1, "unknown permission class 'Domain'"),
    ],
)
def test_parse_errors_name_the_line(text, line, words):
    """Every malformed line is refused with its line number and what was wrong."""
    with pytest.raises(PermsError) as info:
        parse_perms(text, "alice")
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert words in str(info.value)


def test_bad_member_name_is_refused():
    """The member name itself must be a Unix name."""
    with pytest.raises(PermsError):
        parse_perms("", "Al ice")


def test_empty_permissions_own_nothing():
    """No grants means no for everything, including odd inputs."""
    p = Permissions.none("alice")
    assert p == parse_perms("# nothing\n\n", "alice")
    for d in ["example.org", "org", ""]:
        assert not p.owns_domain(d)
    for path in ["/", "/home/alice", ""]:
        assert not p.owns_path(path)
    assert not p.owns_user("alice") and not p.owns_group("alice")
    assert "owns no domains" in p.owned_domains_hint()
    assert "no granted paths" in p.owned_paths_hint()


@pytest.mark.parametrize(
    ("domain", "owned"),
    [
        ("example.org", True),
        ("EXAMPLE.org", True),
        ("www.example.org", True),
        ("a.b.example.org", True),
        ("example.net", True),
        ("notexample.org", False),
        ("org", False),
        ("example.org.evil.com", False),
        ("xexample.org", False),
        ("example.com", False),
        ("www.example.org.", False),
        ("www example.org", False),
        (None, False),
        (42, False),
    ],
)
def test_domain_ownership(domain, owned):
    """A granted domain covers its subdomains, never its parent or look-alike siblings."""
    assert alice().owns_domain(domain) is owned


@pytest.mark.parametrize(
    ("path", "owned"),
    [
        ("/home/alice", True),
        ("/home/alice/", True),
        ("/home/alice/x", True),
        ("/home/alice/a/b/../c", True),
        ("/home//alice/./x", True),
        ("/home/alicex", False),
        ("/home/alice/../bob", False),
        ("/home/alice/../../etc", False),
        ("/home", False),
        ("/", False),
        ("home/alice/x", False),
        ("/home/alice/x y", False),
        ("/home/alice/x\n", False),
        (None, False),
    ],
)
def test_path_ownership(path, owned):
    """A granted path covers itself and what lies under it after lexical normalisation."""
    assert alice().owns_path(path) is owned


def test_user_and_group_ownership_is_exact():
    """Users and groups are compared exactly."""
    p = alice()
    assert p.owns_user("alice") and p.owns_group("alice")
    assert not p.owns_user("Alice") and not p.owns_user("bob") and not p.owns_user(None)


def test_hints_name_what_is_owned():
    """Error hints list the member's domains and paths, sorted."""
    p = alice()
    assert p.owned_domains_hint() == "alice owns: example.net, example.org (and their subdomains)"
    assert "/home/alice" in p.owned_paths_hint()


def test_constructor_validates_and_canonicalises():
    """Constructing Permissions directly validates every value (fail closed)."""
    p = Permissions(user="alice", domains=["Example.ORG"], paths=["/home/alice/x/.."])
    assert p.domains == frozenset({"example.org"}) and p.paths == frozenset({"/home/alice"})
    with pytest.raises(Invalid):
        Permissions(user="alice", paths=["/"])
    with pytest.raises(Invalid):
        Permissions(user="alice", domains=["org"])
    with pytest.raises(TypeError):
        Permissions(user="alice", domains="example.org")


def test_grants_round_trip():
    """(class, value) pairs and the file form both round-trip."""
    p = alice()
    assert Permissions.from_grants("alice", p.grants()) == p
    assert parse_perms(format_perms(p), "alice") == p
    assert ("domain", "example.org") in p.grants()
    with pytest.raises(PermsError):
        Permissions.from_grants("alice", [("shell", "/bin/sh")])
    with pytest.raises(PermsError):
        Permissions.from_grants("alice", [("domain", "not a domain")])


# ---------------------------------------------------------------------------
# Properties

SEGMENT = st.sampled_from(["", ".", "..", "alice", "alicex", "bob", "x", "home", "..."])


@given(segs=st.lists(SEGMENT, max_size=10), grant=st.sampled_from(["/home/alice", "/srv/a/b"]))
def test_owned_paths_lie_under_the_grant(segs, grant):
    """For random paths with '..', '.', '//': owned iff the normalised path is the grant or
    starts with grant + '/'; a grant never covers its look-alike siblings."""
    p = Permissions(user="alice", paths=[grant])
    path = "/" + "/".join(segs)
    norm = posixpath.normpath("/" + path.lstrip("/"))
    expected = norm == grant or norm.startswith(grant + "/")
    assert p.owns_path(path) is expected
    below_sibling = "/".join(s for s in segs if s != "..")
    assert not p.owns_path(grant + "x/" + below_sibling)


LABEL = st.sampled_from(["www", "a", "b", "example", "notexample", "org", "net", "xn--p1ai"])


@given(labels=st.lists(LABEL, min_size=1, max_size=5), upper=st.booleans())
def test_owned_domains_are_the_grant_or_below(labels, upper):
    """owns_domain(d) holds exactly when d (case-folded) equals the grant or ends with
    '.' + grant."""
    p = Permissions(user="alice", domains=["example.org"])
    d = ".".join(labels)
    if upper:
        d = d.upper()
    folded = d.lower()
    expected = len(labels) >= 2 and (folded == "example.org" or folded.endswith(".example.org"))
    assert p.owns_domain(d) is expected


@given(text=st.text())
def test_parse_perms_never_crashes_on_random_text(text):
    """Random text either parses or raises PermsError: nothing else escapes."""
    try:
        p = parse_perms(text, "alice")
    except PermsError:
        return
    assert all("\n" not in d and " " not in d for d in p.domains | p.paths)


def test_from_grants_refuses_a_bad_member_name():
    """A member name that is not a Unix name is a PermsError, like any other bad grant."""
    with pytest.raises(PermsError, match="bad member name"):
        Permissions.from_grants("Not A User", [("domain", "example.org")])


@pytest.mark.parametrize(
    "value",
    [
        "example.org",
        "EXAMPLE.org",
        "\u212aexample.org",  # KELVIN SIGN: lower() gives an ASCII k, the name is not ASCII
        "example.org.",
        ["example.org"],  # unhashable
        ("example.org",),
        b"example.org",
        "/home/alice",
        "/home/alice/",
        "/home//alice",
        ["/home/alice"],
        b"/home/alice",
        None,
    ],
)
def test_a_grant_asked_for_itself_is_owned_exactly_as_after_validation(value):
    """``owns_domain`` and ``owns_path`` answer a grant itself without validating it
    again: the same answers as validating first (odd and unhashable values included)."""
    from domtool import validate

    p = alice()

    def domain_the_long_way(v):
        try:
            labels = validate.check_domain(v).split(".")
        except Invalid:
            return False
        return any(".".join(labels[i:]) in p.domains for i in range(len(labels)))

    def path_the_long_way(v):
        try:
            q = validate.check_abs_path(v)
        except Invalid:
            return False
        while q not in p.paths:
            if q == "/":
                return False
            q = q.rsplit("/", 1)[0] or "/"
        return True

    assert p.owns_domain(value) is domain_the_long_way(value)
    assert p.owns_path(value) is path_the_long_way(value)
