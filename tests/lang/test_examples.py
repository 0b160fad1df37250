"""The shared examples: alice's configs check and evaluate to the expected state; the
error examples are refused with the published error, at the right span."""

from __future__ import annotations

from pathlib import Path

import pytest

from domtool.lang.api import check_source
from domtool.model import Alias, Record
from domtool.perms import parse_perms

_HERE = Path(__file__).resolve().parent
_CANDIDATES = [_HERE.parent / "data" / "examples", _HERE.parents[2] / "shared" / "examples"]
EXAMPLES = next((p for p in _CANDIDATES if (p / "alice.perms").exists()), _CANDIDATES[-1])

pytestmark = pytest.mark.skipif(
    not (EXAMPLES / "alice.perms").exists(), reason="shared examples not found"
)


def perms(user: str):
    return parse_perms((EXAMPLES / f"{user}.perms").read_text(), user)


def run(rel: str, user: str = "alice"):
    path = EXAMPLES / rel
    return check_source([(path.name, path.read_text())], perms(user))


def test_example_org_is_the_dom_shorthand():
    """``dom "example.org" with end``: NS, MX, www and apex A records, a www vhost on the
    bare domain too, mail delivered to alice."""
    r = run("alice/example.org")
    assert r.diagnostics == ()
    st = r.state
    (zone,) = st.zones
    assert zone.name == "example.org" and zone.owner == "alice" and zone.nodes == ("local",)
    recs = set(zone.records)
    assert Record("@", "NS", ("ns1.coop.example",)) in recs
    assert Record("@", "NS", ("ns2.coop.example",)) in recs
    assert Record("www", "A", ("127.0.0.1",)) in recs
    assert Record("@", "A", ("127.0.0.1",)) in recs
    assert Record("@", "MX", (10, "mail.example.org")) in recs
    (v,) = st.vhosts
    assert v.fqdn == "www.example.org" and v.aliases == ("example.org",)
    assert v.document_root == "/home/alice/public_html"
    assert (v.owner, v.user, v.group, v.nodes) == ("alice", "alice", "alice", ("local",))
    (m,) = st.mail
    assert m.name == "example.org" and m.handle == "local" and m.owner == "alice"
    assert m.aliases == (Alias(("default",), ("alice",)),)


def test_example_net_written_out():
    """The explicit domain block: two vhosts sharing a root, one with its own root and a
    URL alias, and the mail aliases."""
    r = run("alice/example.net")
    assert r.diagnostics == ()
    st = r.state
    (zone,) = st.zones
    recs = set(zone.records)
    for name in ("www", "beta", "docs", "@"):
        assert Record(name, "A", ("127.0.0.1",)) in recs, name
    assert {r.data[0] for r in recs if r.rtype == "NS"} == {"ns1.coop.example", "ns2.coop.example"}
    vh = {v.fqdn: v for v in st.vhosts}
    assert sorted(vh) == ["beta.example.net", "docs.example.net", "www.example.net"]
    assert vh["www.example.net"].aliases == ("example.net",)
    assert vh["www.example.net"].document_root == "/home/alice/sites/shared"
    assert vh["beta.example.net"].document_root == "/home/alice/sites/shared"
    assert vh["beta.example.net"].aliases == ()
    assert vh["docs.example.net"].document_root == "/home/alice/sites/docs"
    assert vh["docs.example.net"].url_aliases == (("/manual", "/home/alice/sites/manual"),)
    (m,) = st.mail
    assert {a.source: a.targets for a in m.aliases} == {
        ("user", "sales"): ("alice@example.org",),
        ("user", "team"): ("alice", "carol@elsewhere.example"),
        ("user", "noreply"): (),
        ("default",): ("alice",),
    }


def test_both_files_together_merge():
    """Submitting both files gives one state with both domains."""
    files = [(p.name, p.read_text()) for p in sorted((EXAMPLES / "alice").iterdir())]
    r = check_source(files, perms("alice"))
    assert r.diagnostics == ()
    assert [z.name for z in r.state.zones] == ["example.net", "example.org"]


def test_alice_examples_are_refused_for_bob():
    """The same files name alice's domains: bob gets a your_domain error for each."""
    r = run("alice/example.org", user="bob")
    assert r.state is None
    assert [d.details[-1] for d in r.diagnostics] == ["Needed type: your_domain"]


def test_error_bob_example():
    """errors/bob.example: one error at the literal, with the published details."""
    r = run("errors/bob.example")
    assert r.state is None
    (d,) = r.diagnostics
    assert str(d.span) == "3.4-3.16"
    assert d.message == "Function argument has wrong type."
    assert d.details == (
        'Expression: "bob.example"',
        "Actual type: string",
        "Needed type: your_domain",
    )
    assert "example.org" in d.hint and "example.net" in d.hint
    assert d.format().startswith("bob.example:3.4-3.16:error: Function argument has wrong type.")


def test_error_alias_in_domain():
    """errors/alias-in-domain: the context error at the alias application."""
    r = run("errors/alias-in-domain")
    (d,) = r.diagnostics
    assert d.message == "Context incompatibility for nested action."
    assert d.details == ("Have: Domain", "Need: Vhost")
    assert str(d.span) == "4.2-4.31"


def test_error_foreign_path():
    """errors/foreign-path: the literal DocumentRoot value needs your_path."""
    r = run("errors/foreign-path")
    (d,) = r.diagnostics
    assert str(d.span) == "4.19-4.41"
    assert d.details[0] == 'Expression: "/home/bob/public_html"'
    assert d.details[1:] == ("Actual type: string", "Needed type: your_path")


def test_bob_may_use_his_own_domain():
    """errors/bob.example is fine for bob himself."""
    r = run("errors/bob.example", user="bob")
    assert r.diagnostics == ()
    assert r.state.vhosts[0].document_root == "/home/bob/public_html"
