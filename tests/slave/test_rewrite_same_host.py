"""A rewrite target that is an absolute URL to the vhost's own host is the path it names.

Issue 13, finding 4. mod_rewrite reduces ``http://THIS-HOST/x`` to ``/x`` (reduce_uri),
so ``http://www.bob.example/etc/passwd`` passed the '/etc' refusal and skipped the [PT]
flag. With the real Apache, bob's rule ``^/x$ -> http://www.bob.example/tmp/.../secret``
served alice's file before the fix (seen failing first:
``test_a_same_host_url_cannot_read_a_file_outside_the_tree``).
"""

from __future__ import annotations

import shutil

import pytest

from domtool.model import DesiredState, Rewrite, Vhost, WebSettings
from domtool.slave.backend import RenderRefused
from tests.slave.apache_daemon import get, public_dir
from tests.slave.engine_site import engine_site
from tests.slave.test_apache_render import BACKEND, render, vhost
from tests.slave.test_snapshot import make_cert


def rule(target: str, *flags: str, **kw) -> Vhost:
    return vhost(settings=WebSettings(rewrites=(Rewrite("^/x$", target, tuple(flags)),)), **kw)


EXISTS = "exists on the server"


@pytest.mark.parametrize(
    "target,expect",
    [
        ("http://www.example.org/etc/passwd", EXISTS),
        ("https://www.example.org/etc/passwd", EXISTS),
        ("HTTP://WWW.Example.ORG/etc/passwd", EXISTS),
        ("http://www.example.org:8080/etc/passwd", EXISTS),
        ("http://example.org/home/bob/secret", EXISTS),  # an alias of the vhost
        ("http://www.example.org./etc/passwd", "ends with '.'"),  # the grammar's refusal
    ],
)
def test_a_same_host_url_to_a_server_directory_is_refused(target, expect):
    v = rule(target, aliases=("example.org",))
    with pytest.raises(RenderRefused) as e:
        BACKEND.units(DesiredState(vhosts=(v,)), {}, 0)
    [err] = e.value.errors
    assert err.field == "settings.rewrites[0].target"
    assert expect in str(e.value)


def test_a_same_host_url_is_rendered_as_its_path_with_pt():
    text = render(rule("http://www.example.org/~bob/x"))
    assert 'RewriteRule "^/x$" "/~bob/x" [PT]' in text
    text = render(rule("https://www.example.org"))
    assert 'RewriteRule "^/x$" "/" [PT]' in text


def test_another_host_or_a_redirect_stays_an_absolute_url():
    assert '"http://www.bob.example/etc/passwd"' in render(
        rule("http://www.bob.example/etc/passwd")
    )
    text = render(rule("http://www.example.org/etc/x", "R=302"))
    assert '"http://www.example.org/etc/x" [R=302]' in text


@pytest.mark.daemons
def test_a_same_host_url_cannot_read_a_file_outside_the_tree(tmp_path):
    """bob's rule names alice's secret through his own host: refused at render, so the
    real Apache never serves it (before the fix it answered 200 with the secret)."""
    web = public_dir()
    try:
        (web / "bob").mkdir()
        (web / "bob" / "index.html").write_text("bob\n")
        (web / "alice").mkdir()
        secret = web / "alice" / "secret.txt"
        secret.write_text("alice's secret\n")
        for p in web.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        v = Vhost(
            fqdn="www.bob.example",
            owner="bob",
            domain="bob.example",
            nodes=("local",),
            document_root=str(web / "bob"),
            user="bob",
            group="bob",
            server_admin="bob@bob.example",
            settings=WebSettings(rewrites=(Rewrite("^/x$", f"http://www.bob.example{secret}"),)),
        )
        with engine_site(tmp_path, make_cert(tmp_path, "default.invalid")) as site:
            out = site.engine.apply(DesiredState(vhosts=(v,)))
            assert out.status != "applied" or "bob" not in out.applied, out
            r = get(site.port, "www.bob.example", "/x")
            assert b"alice's secret" not in r.body, r
    finally:
        shutil.rmtree(web)
