"""dom's defaults yield to the member's own directive for the same name (byDefault), in
every position the language allows; two explicit directives for one name stay an error
with both spans."""

from __future__ import annotations

import pytest

from domtool.lang.api import check_source
from domtool.model import Record
from domtool.perms import parse_perms

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)


def state(text: str):
    r = check_source([("f", text)], ALICE)
    assert r.ok, "\n".join(d.format() for d in r.diagnostics)
    return r.state


def errors(text: str):
    r = check_source([("f", text)], ALICE)
    assert r.state is None
    return r.diagnostics


def vhosts(st) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {v.fqdn: (v.document_root, v.aliases) for v in st.vhosts}


OWN_WWW = {
    "direct": """dom "example.org" with
  vhost "www" where DocumentRoot = "/home/alice/own" with serverAliasDefault end
end""",
    "web-direct": """dom "example.org" with
  web "www" where DocumentRoot = "/home/alice/own" with serverAliasDefault end
end""",
    "let": """dom "example.org" with
  let DocumentRoot = "/home/alice/own" in
    vhost "www" with serverAliasDefault end
  end
end""",
    "let-val": """dom "example.org" with
  let
    val root = "/home/alice/own"
  in
    vhost "www" where DocumentRoot = root with serverAliasDefault end
  end
end""",
    "function": """val site = \\root -> vhost "www" where DocumentRoot = root with serverAliasDefault end
dom "example.org" with
  site "/home/alice/own"
end""",
    "block-function": """val www = \\\\body : Vhost -> web "www" where DocumentRoot = "/home/alice/own" with body end
dom "example.org" with
  www with serverAliasDefault end
end""",
    "if-then": """dom "example.org" with
  if true then
    vhost "www" where DocumentRoot = "/home/alice/own" with serverAliasDefault end
  else
    vhost "www" where DocumentRoot = "/home/alice/other" with end
  end
end""",
    "if-else": """dom "example.org" with
  if false then
    vhost "www" where DocumentRoot = "/home/alice/other" with end
  else
    vhost "www" where DocumentRoot = "/home/alice/own" with serverAliasDefault end
  end
end""",
    "after-other-directives": """dom "example.org" with
  dnsA "x" "192.0.2.1";
  emailAlias "sales" "alice";
  vhost "beta" with end;
  vhost "www" where DocumentRoot = "/home/alice/own" with serverAliasDefault end
end""",
}


@pytest.mark.parametrize("shape", sorted(OWN_WWW))
def test_own_www_replaces_doms_default(shape):
    """The member's www wins wherever it is written: one www vhost, with the member's
    root; the rest of dom (name servers, mail, defaultAlias) is still there."""
    st = state(OWN_WWW[shape])
    v = vhosts(st)
    assert v["www.example.org"] == ("/home/alice/own", ("example.org",))
    (zone,) = st.zones
    recs = set(zone.records)
    assert Record("@", "NS", ("ns1.coop.example",)) in recs
    assert Record("www", "A", ("127.0.0.1",)) in recs
    assert Record("@", "A", ("127.0.0.1",)) in recs
    (m,) = st.mail
    assert ("default",) in {a.source for a in m.aliases}


def test_own_www_without_server_alias_default_leaves_the_bare_domain_unserved():
    """dom's default site is replaced whole: without serverAliasDefault in the member's
    www, nothing answers on (or points) the bare domain at a web node."""
    st = state('dom "example.org" with vhost "www" with end end')
    assert vhosts(st) == {"www.example.org": ("/home/alice/public_html", ())}
    recs = {(r.name, r.rtype) for r in st.zones[0].records}
    assert ("www", "A") in recs and ("@", "A") not in recs


@pytest.mark.parametrize(
    "body, kept",
    [
        ('dnsCNAME "www" "alice.pages.example"', ("www", "CNAME")),
        ('dnsA "www" "192.0.2.7"', ("www", "A")),
        ('dnsAAAA "www" "2001:db8::7"', ("www", "AAAA")),
        (
            'if true then dnsCNAME "www" "alice.pages.example" else dnsA "x" "192.0.2.1" end',
            ("www", "CNAME"),
        ),
    ],
)
def test_own_records_for_www_leave_the_default_site_out(body, kept):
    """www pointed elsewhere by the member: no default vhost and none of its records."""
    st = state(f'dom "example.org" with {body} end')
    assert st.vhosts == ()
    recs = {(r.name, r.rtype): r for r in st.zones[0].records}
    assert kept in recs
    assert [k for k in recs if k[0] == "www"] == [kept]
    assert ("@", "A") not in recs  # the default site's apex went with it


def test_another_vhost_claiming_the_bare_domain_takes_it_from_the_default():
    """The default www stays, but gives the apex to the member's own site."""
    st = state('dom "example.org" with web "site" with serverAliasDefault end end')
    assert vhosts(st) == {
        "site.example.org": ("/home/alice/public_html", ("example.org",)),
        "www.example.org": ("/home/alice/public_html", ()),
    }


def test_own_server_alias_on_www_replaces_the_default_site():
    """A member's vhost answering on www.example.org is their www."""
    st = state('dom "example.org" with web "site" with serverAlias "www.example.org" end end')
    assert set(vhosts(st)) == {"site.example.org"}


def test_own_apex_record_keeps_the_default_www_off_the_bare_domain():
    st = state('dom "example.org" with dnsA "@" "192.0.2.9" end')
    assert vhosts(st)["www.example.org"] == ("/home/alice/public_html", ())
    apex = [r for r in st.zones[0].records if r.name == "@" and r.rtype == "A"]
    assert [r.data for r in apex] == [("192.0.2.9",)]


@pytest.mark.parametrize(
    "body",
    [
        'defaultAlias "someone@elsewhere.example"',
        'let val a = "someone@elsewhere.example" in defaultAlias a end',
        'if true then defaultAlias "someone@elsewhere.example" else defaultAliasDrop end',
        'if false then defaultAliasDrop else defaultAlias "someone@elsewhere.example" end',
    ],
)
def test_own_default_alias_replaces_doms(body):
    st = state(f'dom "example.org" with {body} end')
    (m,) = st.mail
    assert {a.source: a.targets for a in m.aliases}[("default",)] == ("someone@elsewhere.example",)


def test_settings_before_dom_apply_to_its_default_site_and_body_settings_do_not():
    """The default runs with the settings of where it is written (dom's where), not a
    bare setting later in the body."""
    st = state(
        'dom "example.org" where DocumentRoot = "/home/alice/a" with\n'
        '  DocumentRoot = "/home/alice/b";\n'
        '  web "beta" with end\n'
        "end"
    )
    assert vhosts(st) == {
        "www.example.org": ("/home/alice/a", ("example.org",)),
        "beta.example.org": ("/home/alice/b", ()),
    }


def test_members_own_shorthand_can_use_by_default():
    """byDefault works in a member's shorthand too: its default yields to an explicit www."""
    text = """val mine = \\d -> \\\\config : Domain ->
  domain d with
    byDefault with web "www" where DocumentRoot = "/home/alice/default" with end end;
    config
  end
mine "example.org" with end;
mine "example.net" with vhost "www" where DocumentRoot = "/home/alice/own" with end end
"""
    v = vhosts(state(text))
    assert v["www.example.org"][0] == "/home/alice/default"
    assert v["www.example.net"][0] == "/home/alice/own"


def test_two_explicit_www_are_an_error_with_both_spans():
    text = 'dom "example.org" with\n  vhost "www" with end;\n  web "www" with end\nend'
    (d,) = errors(text)
    assert d.message == "Virtual host www.example.org is configured twice."
    assert str(d.span) == "3.2-3.10"
    assert d.details == ("First configured at: f:2.2-2.12",)


def test_two_explicit_www_through_functions_and_let_have_both_spans():
    text = (
        'val w = \\r -> web "www" where DocumentRoot = r with end\n'
        'dom "example.org" with\n'
        '  w "/home/alice/a";\n'
        '  let DocumentRoot = "/home/alice/b" in vhost "www" with end end\n'
        "end"
    )
    (d,) = errors(text)
    assert "configured twice" in d.message
    assert str(d.span) == "4.40-4.50"
    assert d.details == ("First configured at: f:1.14-1.22",)


def test_one_domain_twice_is_an_error_with_both_spans():
    text = 'dom "example.org" with end;\ndomain "example.org" with end'
    (d,) = errors(text)
    assert d.message == "Domain example.org is configured twice."
    assert str(d.span) == "2.0-2.19"
    assert d.details == ("First configured at: f:1.0-1.25",)


def test_an_error_inside_a_default_points_at_the_members_dom():
    """The default site runs late, but its error is placed at the member's dom."""
    (d,) = errors('\n\ndom "example.org" where WebNodes = [] with\nend')
    assert "WebNodes is empty" in d.message
    assert d.span is not None and d.span.start.line == 3


def test_one_vhost_in_two_files_is_an_error_with_both_spans():
    a = 'dom "example.org" with end'
    b = 'domain "example.org" with\n  web "www" with end\nend'
    r = check_source([("one", a), ("two", b)], ALICE)
    got = sorted((d.file, str(d.span), d.message, d.details) for d in r.diagnostics)
    assert got == [
        (
            "two",
            "1.0-1.19",
            "Domain example.org is also configured in another file.",
            ("First configured at: one:1.0-1.25",),
        ),
        (
            "two",
            "2.2-2.10",
            "Virtual host www.example.org is also configured in another file.",
            ("First configured at: one:1.0-1.25",),
        ),
    ]


def test_a_vhost_of_another_domain_answering_on_www_replaces_the_default():
    """example.net's site also answering on www.example.org (a name alice owns): dom's
    default www.example.org gives way to it."""
    text = (
        'domain "example.net" with web "www" with serverAlias "www.example.org" end end;\n'
        'dom "example.org" with end'
    )
    assert {v.fqdn for v in state(text).vhosts} == {"www.example.net"}
