"""What a member's ``.htaccess`` can do with expressions, checked with the real Apache.

Issue 13 asked whether ``AllowOverride AuthConfig`` (our default overrides are
``AuthConfig Indexes Limit``) lets a member's ``.htaccess`` read files through
``Require expr`` with ``file()``. With Debian's Apache 2.4 it does not: expressions in
``.htaccess`` are parsed in the restricted context, and ``file()`` (in ``Require expr``
and in ``<If>``) is refused with "file not available in restricted context" (a 500 for
every request, whatever the file holds). So the overrides are left as they are.

What restricted expressions still allow (found while checking, documented in
docs/grammars.md, not fixed): the ``-f``/``-d``/``-s`` tests, which tell bob whether a
path exists (and is non-empty) where the web server's user can look.
"""

from __future__ import annotations

import shutil

import pytest

from domtool.model import DesiredState, Vhost
from domtool.slave.backends import apache
from tests.slave.apache_daemon import get, public_dir
from tests.slave.engine_site import engine_site
from tests.slave.test_snapshot import make_cert


def bob(root) -> Vhost:
    return Vhost(
        fqdn="www.bob.example",
        owner="bob",
        domain="bob.example",
        nodes=("local",),
        document_root=str(root),
        user="bob",
        group="bob",
        server_admin="bob@bob.example",
    )


@pytest.fixture
def web():
    root = public_dir()
    (root / "bob").mkdir()
    (root / "bob" / "index.html").write_text("bob\n")
    (root / "alice").mkdir()
    (root / "alice" / "secret.txt").write_text("alice's token: letmein\n")
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    yield root
    shutil.rmtree(root)


def _status_with(web, site, htaccess: str) -> int:
    ht = web / "bob" / ".htaccess"
    ht.write_text(htaccess)
    ht.chmod(0o644)
    return get(site.port, "www.bob.example", "/index.html").status


@pytest.mark.daemons
def test_require_expr_cannot_read_another_members_file(web, tmp_path):
    """bob's .htaccess tests alice's file with ``Require expr file(...)``: the answer
    must not depend on what her file says (it is refused either way)."""
    secret = web / "alice" / "secret.txt"
    with engine_site(tmp_path, make_cert(tmp_path, "default.invalid")) as site:
        assert site.engine.apply(DesiredState(vhosts=(bob(web / "bob"),))).status == "applied"
        assert get(site.port, "www.bob.example", "/index.html").status == 200
        match = _status_with(web, site, f"Require expr \"file('{secret}') =~ /letmein/\"\n")
        miss = _status_with(web, site, f"Require expr \"file('{secret}') =~ /nothere/\"\n")
        assert match == miss, (match, miss)
        assert match == 500
        log = site.proc.config.log_dir + "/error.log"
        with open(log) as f:
            assert "file not available in restricted context" in f.read()
        # Nor in an <If> condition.
        cond = f"<If \"file('{secret}') =~ /letmein/\">\nRequire all denied\n</If>\n"
        assert _status_with(web, site, cond) == 500
        # The override itself is on: a plain Require in .htaccess is obeyed.
        assert _status_with(web, site, "Require all denied\n") == 403


@pytest.mark.daemons
def test_the_remaining_overrides_still_work(web, tmp_path):
    """Indexes (DirectoryIndex) and Limit (Order/Deny) still apply from .htaccess."""
    (web / "bob" / "home.html").write_text("home\n")
    (web / "bob" / "home.html").chmod(0o644)
    with engine_site(tmp_path, make_cert(tmp_path, "default.invalid")) as site:
        assert site.engine.apply(DesiredState(vhosts=(bob(web / "bob"),))).status == "applied"
        ht = web / "bob" / ".htaccess"
        ht.write_text("DirectoryIndex home.html\n")
        ht.chmod(0o644)
        r = get(site.port, "www.bob.example", "/")
        assert (r.status, r.body) == (200, b"home\n")


def test_the_default_overrides_are_the_ones_checked_here():
    """If a site's overrides change, this file's conclusions must be checked again."""
    assert apache.ALLOW_OVERRIDE == "AuthConfig Indexes Limit"
