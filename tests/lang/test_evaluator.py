"""The evaluator: desired state from checked programs, environment scoping, budgets."""

from __future__ import annotations

import time

from domtool.lang.api import check_source, load_library
from domtool.lang.checker import check_file
from domtool.lang.evaluator import evaluate
from domtool.lang.parser import parse_file
from domtool.model import DEFAULT_SITE, Node, Record, Site
from domtool.perms import parse_perms

ALICE = parse_perms(
    "domain: example.org example.net\npath: /home/alice\nuser: alice\ngroup: alice\n", "alice"
)


def state(text: str, perms=ALICE, site: Site = DEFAULT_SITE):
    r = check_source([("f", text)], perms, site)
    assert r.ok, "\n".join(d.format() for d in r.diagnostics)
    return r.state


def eval_errors(text: str, perms=ALICE, **kw):
    """Check (must pass) then evaluate; return the evaluation's diagnostics."""
    f, diags = parse_file("f", text)
    assert f is not None and not diags
    lib = load_library()
    assert check_file(f, perms, lib, source=text) == []
    return evaluate(f, perms, lib, **kw).diagnostics


def roots(st) -> dict[str, str]:
    return {v.fqdn: v.document_root for v in st.vhosts}


def test_let_scopes_settings_to_its_body():
    """``let DocumentRoot = ... in`` covers x and y, and z gets the default again."""
    st = state(
        'domain "example.org" with\n'
        '  let DocumentRoot = "/home/alice/a" in\n'
        '    web "x" with end; web "y" with end;\n'
        "  end;\n"
        '  web "z" with end\n'
        "end"
    )
    assert roots(st) == {
        "x.example.org": "/home/alice/a",
        "y.example.org": "/home/alice/a",
        "z.example.org": "/home/alice/public_html",
    }


def test_where_scopes_settings_to_its_block():
    """``where`` on a block applies to that block only."""
    st = state(
        'domain "example.org" with\n'
        '  web "x" where DocumentRoot = "/home/alice/a" with end;\n'
        '  web "z" with end\n'
        "end"
    )
    assert roots(st) == {
        "x.example.org": "/home/alice/a",
        "z.example.org": "/home/alice/public_html",
    }


def test_bare_setting_lasts_to_the_end_of_the_enclosing_block():
    """``C = e`` in a sequence affects what follows in the block, not what follows it."""
    st = state(
        'domain "example.org" with\n'
        '  web "a" with end;\n'
        '  DocumentRoot = "/home/alice/b";\n'
        '  web "b" with end\n'
        "end;\n"
        'domain "example.net" with web "c" with end end'
    )
    assert roots(st) == {
        "a.example.org": "/home/alice/public_html",
        "b.example.org": "/home/alice/b",
        "c.example.net": "/home/alice/public_html",
    }


def test_setting_inside_the_vhost_body_counts():
    """Vhost settings are read at the end of its body."""
    st = state('domain "example.org" with web "a" with DocumentRoot = "/home/alice/in" end end')
    assert roots(st) == {"a.example.org": "/home/alice/in"}


def test_records_and_ttl():
    """DNS directives make records; TTL set for a record differs from the zone default."""
    st = state(
        'domain "example.org" with\n'
        '  dnsA "x" "192.0.2.1";\n'
        "  TTL = 300;\n"
        '  dnsTXT "@" "v=spf1 -all";\n'
        '  dnsMX "@" 5 "mx.elsewhere.example"\n'
        "end"
    )
    (zone,) = st.zones
    assert zone.owner == "alice" and zone.ttl == 3600
    assert set(zone.records) == {
        Record("x", "A", ("192.0.2.1",)),
        Record("@", "TXT", ("v=spf1 -all",), 300),
        Record("@", "MX", (5, "mx.elsewhere.example"), 300),
    }


def test_web_settings_and_blocks():
    """Location blocks collect their own settings; vhost-level ones stay on the vhost."""
    st = state(
        'domain "example.org" with web "w" with\n'
        '  directoryIndex ["index.html"];\n'
        '  proxyPass "/app" 8080;\n'
        '  location "/private" with basicAuth "Members" "/home/alice/.htpasswd" end;\n'
        '  redirect "/old" "https://example.org/new"\n'
        "end end"
    )
    (v,) = st.vhosts
    assert v.settings.directory_index == ("index.html",)
    assert v.settings.redirects[0].status == 302
    assert v.proxies[0].port == 8080
    (blk,) = v.blocks
    assert blk.kind == "location" and blk.path == "/private"
    assert blk.settings.auth.user_file == "/home/alice/.htpasswd"
    assert v.settings.auth is None


def test_web_nodes_choose_hosts_and_records():
    """WebNodes picks which web nodes serve the vhost; its A records follow them."""
    site = Site(
        nodes=(
            Node("a", ("dns", "web", "mail"), ipv4="192.0.2.1"),
            Node("b", ("web",), ipv4="192.0.2.2", ipv6="2001:db8::2"),
        )
    )
    st = state('domain "example.org" with web "w" where WebNodes = ["b"] with end end', site=site)
    (v,) = st.vhosts
    assert v.nodes == ("b",)
    recs = {r for r in st.zones[0].records if r.name == "w"}
    assert recs == {Record("w", "A", ("192.0.2.2",)), Record("w", "AAAA", ("2001:db8::2",))}
    assert st.zones[0].nodes == ("a",)


def test_same_source_same_state():
    """Evaluation is deterministic: equal sources and permissions give equal states."""
    text = 'dom "example.org" with emailAlias "b" "x@y.example"; emailAlias "a" "alice" end'
    assert state(text) == state(text)


def test_default_document_root_must_be_the_members():
    """With no grant over /home/USER, a vhost without DocumentRoot is refused, clearly."""
    perms = parse_perms(
        "domain: example.org\npath: /srv/www/alice\nuser: alice\ngroup: alice\n", "alice"
    )
    diags = eval_errors('domain "example.org" with web "w" with end end', perms)
    assert len(diags) == 1 and "DocumentRoot has no value" in diags[0].message
    st = state(
        'domain "example.org" with web "w" where DocumentRoot = "/srv/www/alice" with end end',
        perms,
    )
    assert roots(st) == {"w.example.org": "/srv/www/alice"}


def test_exponential_program_stops_on_the_step_budget_fast():
    """``\\x -> (x; x)`` nested 40 times stops with a clear error well under 2 s."""
    lines = ["val f0 = \\x -> (x; x)"]
    lines += [f"val f{i} = \\x -> f{i - 1} (f{i - 1} x)" for i in range(1, 41)]
    lines.append('dom "example.org" with f40 handleMail end')
    text = "\n".join(lines)
    t0 = time.process_time()
    r = check_source([("boom", text)], ALICE)
    elapsed = time.process_time() - t0
    assert r.state is None
    assert [d.message for d in r.diagnostics] == [
        "evaluation exceeded its work budget (500000 units)"
    ]
    assert elapsed < 2.0


def test_output_cap():
    """More units than the cap is an error, not a huge state."""
    text = 'domain "example.org" with ' + "; ".join(f'aliasDrop "u{i}"' for i in range(10)) + " end"
    diags = eval_errors(text, max_units=5)
    assert len(diags) == 1 and "more than 5" in diags[0].message


def test_unimplemented_extern_val_is_a_clear_evaluation_error():
    """A member's own ``extern val`` checks, but has no implementation to run."""
    text = 'extern val magic : [Domain]\ndomain "example.org" with magic end'
    diags = eval_errors(text)
    assert len(diags) == 1 and "no implementation" in diags[0].message
    assert str(diags[0].span).startswith("2.")


def test_member_extern_val_cannot_reach_a_library_primitive():
    """Redeclaring a primitive's name with another type does not bind the primitive."""
    text = 'extern val dnsA : string -> [Domain]\ndomain "example.org" with dnsA "x" end'
    diags = eval_errors(text)
    assert len(diags) == 1 and "no implementation" in diags[0].message


def test_cname_conflict_is_refused():
    """A CNAME beside other records of the same name is an evaluation error."""
    diags = eval_errors(
        'domain "example.org" with dnsCNAME "x" "y.example"; dnsA "x" "192.0.2.1" end'
    )
    assert len(diags) == 1 and "CNAME" in diags[0].message


def test_duplicate_vhost_is_refused():
    """Two vhosts with one name in a domain is an error."""
    diags = eval_errors('domain "example.org" with web "w" with end; web "w" with end end')
    assert len(diags) == 1 and "configured twice" in diags[0].message


def test_later_alias_for_the_same_source_wins():
    """A member's defaultAlias in a dom body replaces dom's own."""
    st = state('dom "example.org" with defaultAlias "someone@elsewhere.example" end')
    (m,) = st.mail
    assert {a.source: a.targets for a in m.aliases}[("default",)] == ("someone@elsewhere.example",)


EVERYTHING = """
domain "example.org" with
  nameservers ["ns1.coop.example", "ns2.coop.example"];
  dnsAAAA "v6" "2001:db8::1";
  dnsCNAME "blog" "example.github.io";
  dnsNS "lab" "ns.lab.example";
  dnsSRV "_xmpp-client._tcp" 5 0 5222 "chat.example.org";
  dnsCAA "@" 0 "issue" "letsencrypt.org";
  relayMail "mx.home.example";
  spamFilter true;
  catchAllAlias "alice";
  web "www" where ServerAdmin = "alice@example.org"; SSL = true with
    serverAliasDefault;
    serverAlias "w3.example.org";
    scriptAlias "/cgi-bin" "/home/alice/cgi-bin";
    ssl "/home/alice/tls/cert.pem" "/home/alice/tls/key.pem";
    errorDocument 404 "/404.html";
    rewriteRule "^/old/(.*)$" "/new/$1";
    redirectPermanent "/x" "https://example.net/";
    directory "/home/alice/public_html/files" with
      options ["+Indexes"];
      execCGI;
      ssi
    end
  end
end
"""


def test_every_directive_reaches_the_state():
    """Each library directive leaves its mark on the desired state."""
    st = state(EVERYTHING)
    (zone,) = st.zones
    recs = {(r.name, r.rtype): r.data for r in zone.records}
    assert recs[("v6", "AAAA")] == ("2001:db8::1",)
    assert recs[("blog", "CNAME")] == ("example.github.io",)
    assert recs[("lab", "NS")] == ("ns.lab.example",)
    assert recs[("_xmpp-client._tcp", "SRV")] == (5, 0, 5222, "chat.example.org")
    assert recs[("@", "CAA")] == (0, "issue", "letsencrypt.org")
    assert ("w3", "A") in recs and ("@", "A") in recs and ("mail", "A") in recs
    (m,) = st.mail
    assert (m.handle, m.relay_host, m.spam_filter) == ("relay", "mx.home.example", True)
    assert m.aliases[0].source == ("catchall",)
    (v,) = st.vhosts
    assert v.server_admin == "alice@example.org"
    assert v.aliases == ("example.org", "w3.example.org")
    assert v.script_aliases == (("/cgi-bin", "/home/alice/cgi-bin"),)
    assert v.tls.certificate == "/home/alice/tls/cert.pem"
    assert v.settings.error_documents == ((404, "/404.html"),)
    assert v.settings.rewrites[0].target == "/new/$1"
    assert v.settings.redirects[0].status == 301
    (blk,) = v.blocks
    assert blk.kind == "directory"
    assert blk.settings.options == ("+Indexes",) and blk.settings.cgi and blk.settings.ssi


def test_ssl_without_certificate_is_refused():
    """SSL = true on a vhost without ``ssl`` is an evaluation error."""
    diags = eval_errors('domain "example.org" with web "w" where SSL = true with end end')
    assert len(diags) == 1 and "no certificate" in diags[0].message


def test_reading_a_variable_without_value_is_a_clear_error():
    """ServerAdmin has no default: reading it before setting it names the variable."""
    text = 'domain "example.org" with a <- ServerAdmin; emailAlias "admin" a end'
    diags = eval_errors(text)
    assert len(diags) == 1
    assert diags[0].message == "Environment variable ServerAdmin has no value here."
    st = state('domain "example.org" with ServerAdmin = "x@y.example"; ' + text[26:])
    assert st.mail[0].aliases[0].targets == ("x@y.example",)


def test_dom_where_sets_the_www_root():
    """``dom ... where DocumentRoot = ...`` reaches the www vhost that dom defines."""
    st = state('dom "example.org" where DocumentRoot = "/home/alice/site" with end')
    assert roots(st) == {"www.example.org": "/home/alice/site"}


def test_where_without_a_block_scopes_its_settings():
    """``e where C = v end`` (no ``with``) applies the setting to ``e`` only."""
    st = state(
        'domain "example.org" with dnsA "a" "192.0.2.1" where TTL = 60 end; dnsA "b" "192.0.2.2" end'
    )
    ttls = {r.name: r.ttl for r in st.zones[0].records}
    assert ttls == {"a": 60, "b": None}
