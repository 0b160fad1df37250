"""The slave's path re-check on a real filesystem: symlinks inside a member's tree may not
lead out of it, and open_nofollow never follows a link."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import domtool.slave.pathcheck as pc
from domtool.slave.pathcheck import PathRefused, check_member_path, open_nofollow, resolve


@pytest.fixture
def tree(tmp_path):
    """A small site: alice's and bob's homes, assorted symlinks, and carol whose home is
    itself a symlink to a directory elsewhere."""
    root = tmp_path.resolve()
    home = root / "home"
    alice = home / "alice"
    (alice / "www").mkdir(parents=True)
    (alice / "www" / "index.html").write_text("hello")
    (alice / "htpasswd").write_text("alice:x\n")
    (home / "bob").mkdir()
    (home / "bob" / "secret").write_text("bob's")
    (home / "alicex").mkdir()
    os.symlink("www", alice / "link_in")
    os.symlink("./www/../www/index.html", alice / "link_file")
    os.symlink("../bob", alice / "link_out")
    os.symlink(str(home / "bob" / "secret"), alice / "link_abs_out")
    os.symlink("/etc", alice / "link_etc")
    os.symlink("missing", alice / "dangling_in")
    os.symlink("../bob/missing", alice / "dangling_out")
    os.symlink("loop2", alice / "loop1")
    os.symlink("loop1", alice / "loop2")
    os.symlink("..", alice / "up")
    os.symlink("/", alice / "slash")
    os.mkfifo(alice / "fifo")
    (root / "real" / "carol" / "site").mkdir(parents=True)
    os.symlink("../real/carol", home / "carol")
    return {"root": root, "home": home, "alice": str(alice), "carol": str(home / "carol")}


def test_plain_paths_inside_are_allowed(tree):
    """Existing and not-yet-existing paths under the grant are allowed and returned real."""
    a = tree["alice"]
    assert check_member_path(a + "/www", [a]) == a + "/www"
    assert check_member_path(a, [a]) == a
    assert check_member_path(a + "/www/new/dir", [a]) == a + "/www/new/dir"
    assert check_member_path(a + "/x/../www", [a], must_exist=True) == a + "/www"


def test_symlink_inside_to_inside_is_allowed(tree):
    """A link that stays in the tree resolves to its real target."""
    a = tree["alice"]
    assert check_member_path(a + "/link_in", [a]) == a + "/www"
    assert check_member_path(a + "/link_in/index.html", [a], must_exist=True) == (
        a + "/www/index.html"
    )
    assert check_member_path(a + "/link_file", [a]) == a + "/www/index.html"


@pytest.mark.parametrize(
    "name",
    ["link_out", "link_out/secret", "link_abs_out", "link_etc", "link_etc/passwd", "up", "slash"],
)
def test_symlink_inside_to_outside_is_refused(tree, name):
    """Links from alice's tree to bob's, to /etc, to the parent or to / are refused."""
    a = tree["alice"]
    with pytest.raises(PathRefused) as info:
        check_member_path(f"{a}/{name}", [a])
    assert "not under any granted path" in str(info.value)


def test_dangling_links(tree):
    """A dangling link is judged by where it points: inside is fine unless it must exist,
    outside is refused."""
    a = tree["alice"]
    assert check_member_path(a + "/dangling_in", [a]) == a + "/missing"
    with pytest.raises(PathRefused, match="does not exist"):
        check_member_path(a + "/dangling_in", [a], must_exist=True)
    with pytest.raises(PathRefused, match="not under any granted path"):
        check_member_path(a + "/dangling_out", [a])


def test_loops_are_refused(tree):
    """A symlink loop is refused rather than followed forever."""
    a = tree["alice"]
    with pytest.raises(PathRefused, match="too many levels"):
        check_member_path(a + "/loop1/x", [a])


@pytest.mark.parametrize(
    "suffix",
    ["/../bob/secret", "/../../../etc/passwd", "x", "x/www", "/www/index.html/x"],
)
def test_lexical_tricks_are_refused(tree, suffix):
    """'..' escapes, look-alike siblings and paths through a file are refused."""
    a = tree["alice"]
    with pytest.raises(PathRefused):
        check_member_path(a + suffix, [a])


@pytest.mark.parametrize("bad", ["relative/path", "/home/alice/a b", "/home/alice/\n", ""])
def test_invalid_text_is_refused(tree, bad):
    """Text that fails the abs_path grammar never reaches the filesystem."""
    with pytest.raises(PathRefused):
        check_member_path(bad, [tree["alice"]])


def test_granted_directory_that_is_a_symlink(tree):
    """carol's home is a symlink: paths under it resolve to the real directory and pass."""
    c = tree["carol"]
    real = str(tree["root"] / "real" / "carol")
    assert check_member_path(c + "/site", [c], must_exist=True) == real + "/site"
    with pytest.raises(PathRefused):
        check_member_path(c + "/../alice", [c])


def test_empty_grants_and_root_grant_refuse_everything(tree):
    """No grants, or a grant of '/', allow nothing (fail closed)."""
    a = tree["alice"]
    with pytest.raises(PathRefused):
        check_member_path(a + "/www", [])
    with pytest.raises(PathRefused):
        check_member_path(a + "/www", ["/"])
    with pytest.raises(PathRefused):
        check_member_path(a + "/www", [a + "/slash"])


def test_resolve_reports_existence(tree):
    """resolve() returns the real path and whether it exists."""
    a = tree["alice"]
    assert resolve(a + "/link_in") == (a + "/www", True)
    assert resolve(a + "/nope/deeper") == (a + "/nope/deeper", False)


def test_open_nofollow_reads_a_member_file(tree):
    """A regular file under the grant opens for reading."""
    a = tree["alice"]
    with open_nofollow(a + "/htpasswd", [a]) as f:
        assert f.read() == b"alice:x\n"
    with open_nofollow(a + "/link_file", [a]) as f:
        assert f.read() == b"hello"


def test_open_nofollow_refuses_links_outside_and_odd_files(tree):
    """Links out of the tree, directories, FIFOs and missing files are refused."""
    a = tree["alice"]
    for name in ["link_abs_out", "link_out/secret", "www", "fifo", "missing", "loop1"]:
        with pytest.raises(PathRefused):
            open_nofollow(f"{a}/{name}", [a])


def test_open_nofollow_without_grants_refuses_any_symlink(tree):
    """Without grants, a symlink in any component (even one staying inside) is refused,
    which is what protects against a link swapped in after the check."""
    a = tree["alice"]
    with open_nofollow(a + "/www/index.html") as f:
        assert f.read() == b"hello"
    for name in ["link_in/index.html", "link_file"]:
        with pytest.raises(PathRefused, match="link"):
            open_nofollow(f"{a}/{name}")
    with pytest.raises(PathRefused):
        open_nofollow("/")


def test_open_nofollow_under_a_symlinked_grant(tree):
    """A granted directory that is itself a symlink still works: the walk uses the
    resolved path, which holds no links."""
    c = tree["carol"]
    (tree["root"] / "real" / "carol" / "site" / "key.pem").write_text("k")
    with open_nofollow(c + "/site/key.pem", [c]) as f:
        assert f.read() == b"k"


def test_open_nofollow_refuses_a_link_swapped_in_after_the_check(tree, monkeypatch):
    """If a directory is replaced by a symlink between the check and the open, the
    O_NOFOLLOW walk refuses it (simulated by a check that returns the swapped path)."""
    a = tree["alice"]
    monkeypatch.setattr(pc, "check_member_path", lambda *args, **kw: a + "/link_out/secret")
    with pytest.raises(PathRefused, match="symbolic link"):
        pc.open_nofollow(a + "/www/index.html", [a])


def test_broken_grant_grants_nothing_but_others_still_apply(tree):
    """A grant that cannot be resolved is ignored; the other grants still count."""
    a = tree["alice"]
    broken = a + "/www/index.html/sub"
    with pytest.raises(PathRefused):
        check_member_path(broken + "/x", [broken])
    assert check_member_path(a + "/www", [broken, a]) == a + "/www"


NAMES = ["a", "b", "d", "l1", "l2"]
TARGETS = ["a", "d", "d/a", "..", "../..", "../bob", "/", "l1", "l2", "d/../a", "nowhere", "."]


LINK = st.tuples(st.sampled_from(["", "d/"]), st.sampled_from(NAMES), st.sampled_from(TARGETS))
STEP = st.sampled_from([*NAMES, "..", ".", "x"])


@settings(max_examples=100, deadline=None)
@given(
    links=st.lists(LINK, min_size=1, max_size=6),
    query=st.tuples(
        st.sampled_from(["", "d/"]), st.sampled_from(NAMES), st.lists(STEP, max_size=3)
    ),
    abs_target=st.booleans(),
)
def test_agrees_with_the_kernel_on_random_symlink_trees(links, query, abs_target):
    """On random trees of links (relative, absolute, up, loops, dangling), an accepted
    path's answer is the kernel's realpath and lies under the grant; an existing path
    whose real location and text are both under the grant is accepted."""
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.realpath(tmp)
        alice = os.path.join(root, "home", "alice")
        os.makedirs(os.path.join(alice, "d", "a"))
        os.makedirs(os.path.join(alice, "a"))
        os.makedirs(os.path.join(root, "home", "bob"))
        for where, name, target in links:
            link = os.path.join(alice, where, name)
            if os.path.lexists(link):
                continue
            if abs_target and not target.startswith("/"):
                target = os.path.join(alice, where, target)
            os.symlink(target, link)
        where, first, rest = query
        path = alice + "/" + where + "/".join([first, *rest])
        lexical = os.path.normpath(path)
        try:
            got = check_member_path(path, [alice])
        except PathRefused:
            got = None
        if got is not None:
            assert got == alice or got.startswith(alice + "/")
            if os.path.exists(lexical):
                assert got == os.path.realpath(lexical)
        elif os.path.exists(lexical):
            real = os.path.realpath(lexical)
            under = real == alice or real.startswith(alice + "/")
            assert not (under and (lexical == alice or lexical.startswith(alice + "/")))
