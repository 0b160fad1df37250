"""The standard library against Domtool 2's modules: the table (domtool/stdlib/domtool2.py)
has a known status on every row, the names it says exist do, the ones it says are
replaced are refused with its hint, and Domtool 2's forms of the shorthands work."""

from __future__ import annotations

import re

import pytest

from domtool.lang.api import check_source, load_library
from domtool.lang.docgen import reference_markdown
from domtool.model import Record
from domtool.perms import parse_perms
from domtool.stdlib import domtool2

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)
MODULES = {
    "apache", "bind/dns", "easy_domain", "exim/alias", "mailman", "vmail", "postgres",
    "mysql", "firewall", "spamassassin", "webalizer/logs", "ssl",
}  # fmt: skip
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def defined(name: str) -> bool:
    lib = load_library()
    return name in lib.globals or name in lib.env_types or name in {"true", "false"}


def test_every_row_has_a_known_status_and_every_module_is_covered():
    assert {r.status for r in domtool2.ROWS} <= set(domtool2.STATUSES)
    assert all(r.status and r.name for r in domtool2.ROWS)
    assert {r.module for r in domtool2.ROWS} == MODULES
    assert len({r.name for r in domtool2.ROWS}) == len(domtool2.ROWS)


@pytest.mark.parametrize(
    "r", [r for r in domtool2.ROWS if r.status in domtool2.DEFINED], ids=lambda r: r.name
)
def test_names_said_to_exist_exist(r):
    """same / shorthand / different: the Domtool 2 name is defined here, and so is the
    first name of *ours*."""
    assert defined(r.name)
    ours = re.findall(r"`([^`]*)`", r.ours)
    if ours:
        first = IDENT.match(ours[0])
        assert first is not None and defined(first.group()), r.ours


@pytest.mark.parametrize(
    "r",
    [
        r
        for r in domtool2.ROWS
        if r.status in {"renamed", "not supported"} and IDENT.fullmatch(r.name)
    ],
    ids=lambda r: r.name,
)
def test_replaced_names_are_refused_with_the_tables_hint(r):
    """A Domtool 2 name this library does not define: 'Unknown variable' with the row's
    advice as the hint, at the name's span."""
    assert not defined(r.name)
    if r.name[0].isupper():  # an environment variable
        text = f'dom "example.org" with\n  {r.name} = 1\nend'
        what, end = "environment variable", 5 + len(r.name)
    else:
        text = f'dom "example.org" with\n  {r.name}\nend'
        what, end = "variable", 1 + len(r.name)
    (d,) = [d for d in check_source([("f", text)], ALICE).diagnostics if d.span.start.line == 2]
    assert d.message == f"Unknown {what} {r.name}."
    assert str(d.span) == f"2.2-2.{end}"
    assert d.hint == domtool2.hint(r.name) and d.hint.startswith(f"{r.name} is Domtool 2's")


def test_the_reference_holds_the_table_with_every_row():
    md = reference_markdown()
    assert "## Domtool 2 name → ours" in md
    table = md.split("## Domtool 2 name → ours", 1)[1]
    for r in domtool2.ROWS:
        assert f"| {r.module} | `{r.name}` |" in table
        line = next(x for x in table.splitlines() if x.startswith(f"| {r.module} | `{r.name}` |"))
        assert f"| {r.status} |" in line


def test_domtool_2_forms_check_and_evaluate():
    """A config in Domtool 2's words: dns (dnsA ...), dnsMail, dnsDefault, dnsAlias,
    addDefaultAlias, addWWW, webAt, serverAliasHost, SSL = no_ssl."""
    text = """domain "example.org" with
  nameserver "ns1.coop.example";
  dns (dnsA "host" "192.0.2.10");
  dns (dnsDefaultA "192.0.2.11");
  dnsIP "ip4" "192.0.2.12";
  dnsIPv6 "ip6" "2001:db8::12";
  dnsAlias "blog" "alice.pages.example";
  dnsMail 20 "mx.elsewhere.example";
  handleMail;
  addDefaultAlias;
  addWWW;
  webAt "local" "beta" where SSL = no_ssl with
    serverAliasHost "b.example.org"
  end
end
"""
    r = check_source([("f", text)], ALICE)
    assert r.ok, "\n".join(d.format() for d in r.diagnostics)
    recs = set(r.state.zones[0].records)
    for rec in (
        Record("host", "A", ("192.0.2.10",)),
        Record("@", "A", ("192.0.2.11",)),
        Record("ip4", "A", ("192.0.2.12",)),
        Record("ip6", "AAAA", ("2001:db8::12",)),
        Record("blog", "CNAME", ("alice.pages.example",)),
        Record("@", "MX", (20, "mx.elsewhere.example")),
        Record("b", "A", ("127.0.0.1",)),
    ):
        assert rec in recs
    v = {x.fqdn: x for x in r.state.vhosts}
    assert set(v) == {"www.example.org", "beta.example.org"}
    assert v["beta.example.org"].nodes == ("local",)
    assert v["beta.example.org"].aliases == ("b.example.org",)
    (m,) = r.state.mail
    assert {a.source: a.targets for a in m.aliases}[("default",)] == ("alice",)


def test_domtool_2_form_of_a_different_directive_gets_the_tables_note():
    """`dnsMX 10 "mail.x"` (Domtool 2's arguments) is a type error whose hint says how to
    write it here."""
    text = 'dom "example.org" with\n  dnsMX 10 "mail.example.org"\nend'
    ds = check_source([("f", text)], ALICE).diagnostics
    (d,) = [d for d in ds if str(d.span) == "2.8-2.9"]
    assert d.message == "Function argument has wrong type."
    assert d.hint == "dnsMX takes other arguments than in Domtool 2: " + domtool2.row("dnsMX").note


def test_domtool_2_record_form_in_dns_gets_the_tables_note():
    """`dns (dnsNS HOST)`: the hint on dns's argument says `nameserver HOST`."""
    text = 'domain "example.org" with\n  dns (dnsNS "ns1.coop.example")\nend'
    (d,) = check_source([("f", text)], ALICE).diagnostics
    assert (str(d.span), d.message) == ("2.7-2.30", "Function argument has wrong type.")
    assert "`nameserver HOST`" in d.hint
