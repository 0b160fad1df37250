"""The configurations of the published shapes (tests/data/published): each `ok` directory
checks and evaluates for alice to what its comment says; each refused one gets the error
its first comment names, at a FILE:L.C-L.C span."""

from __future__ import annotations

from pathlib import Path

import pytest

from domtool.lang.api import check_source
from domtool.perms import parse_perms

DATA = Path(__file__).resolve().parent.parent / "data"
PUBLISHED = DATA / "published"
ALICE = parse_perms((DATA / "examples" / "alice.perms").read_text(), "alice")
OK = ("www-direct", "www-let", "www-function", "www-if", "www-cname", "literals", "guide-mix")


def files(d: Path) -> list[tuple[str, str]]:
    return [(p.name, p.read_text()) for p in sorted(d.iterdir())]


def check(rel: str, offline: bool = False):
    return check_source(files(PUBLISHED / rel), ALICE, offline=offline)


def test_every_directory_is_covered():
    dirs = {p.name for p in PUBLISHED.iterdir() if p.is_dir()} - {"errors"}
    assert dirs == set(OK) | {"selfcontained"}
    errs = {p.name for p in (PUBLISHED / "errors").iterdir()}
    assert errs == {"two-www", "selfcontained-context", "email-space", "unchecked-type"}


@pytest.mark.parametrize("rel", OK)
def test_published_shapes_check_and_evaluate(rel):
    r = check(rel)
    assert r.ok, "\n".join(d.format() for d in r.diagnostics)
    assert r.state.zones


def roots(rel: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {v.fqdn: (v.document_root, v.aliases) for v in check(rel).state.vhosts}


def test_what_each_shape_gives():
    own = ("/home/alice/www", ("example.org",))
    assert roots("www-direct") == {
        "www.example.org": own,
        "www.example.net": ("/home/alice/public_html", ()),
    }
    assert roots("www-function") == {"www.example.org": own}
    assert roots("www-if") == {"www.example.org": own}
    assert roots("www-let") == {
        "www.example.org": ("/home/alice/sites/shared", ("example.org",)),
        "beta.example.org": ("/home/alice/sites/shared", ()),
    }
    assert roots("www-cname") == {}
    assert roots("guide-mix") == {
        "www.example.org": ("/home/alice/public_html", ("example.org",)),
        "www.example.net": ("/home/alice/net", ()),
    }
    mix = check("guide-mix").state
    assert {v.fqdn: v.server_admin for v in mix.vhosts}["www.example.net"] == "alice@example.net"
    mail = {m.name: {a.source: a.targets for a in m.aliases} for m in mix.mail}
    assert mail["example.net"] == {("default",): ("alice",)}
    assert mail["example.org"][("user", "postmaster")] == ("alice@example.net",)
    lit = check("literals").state
    admins = {v.fqdn: v.server_admin for v in lit.vhosts}
    assert admins == {
        "www.example.org": "alice@example.org",
        "shop.example.org": "shop@example.org",
    }


def test_self_contained_checks_offline_and_is_refused_on_submit():
    r = check("selfcontained", offline=True)
    assert r.diagnostics == ()
    (n,) = r.notes
    assert (n.file, str(n.span)) == ("example.org", "20.0-20.19")
    (d,) = check("selfcontained").diagnostics
    assert (d.file, str(d.span)) == ("example.org", "20.0-20.19")
    assert "has no implementation" in d.message


REFUSED = {
    "two-www": ("7.4-7.14", "Virtual host www.example.org is configured twice."),
    "selfcontained-context": ("12.2-12.36", "Context incompatibility for nested action."),
    "email-space": ("7.9-7.30", "Function argument has wrong type."),
    "unchecked-type": ("8.7-8.13", "Function argument has wrong type."),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_shapes_have_their_error_at_its_span(name):
    span, message = REFUSED[name]
    path = PUBLISHED / "errors" / name / "example.org"
    first_comment = path.read_text().split("*)", 1)[0]
    assert message in " ".join(first_comment.split())
    r = check_source([("example.org", path.read_text())], ALICE, offline=True)
    assert r.state is None
    (d,) = r.diagnostics
    assert d.format().startswith(f"example.org:{span}:error: {message}")
    if name == "two-www":
        assert d.details == ("First configured at: example.org:4.2-4.12",)
