"""The standard library: it loads, every primitive is implemented, every declaration is
documented, and the reference is generated from it."""

from __future__ import annotations

from domtool.lang import ast
from domtool.lang import types as T
from domtool.lang.api import load_library
from domtool.lang.docgen import ENV_DOCS, reference_html, reference_markdown
from domtool.lang.evaluator import Unimplemented, prim_value
from domtool.lang.primitives import REGISTRY

REQUIRED = """domain dom nameserver dnsA dnsAAAA dnsCNAME dnsMX dnsNS dnsTXT dnsSRV dnsCAA
web vhost serverAlias serverAliasDefault alias scriptAlias location directory redirect
rewriteRule proxyPass errorDocument directoryIndex options basicAuth ssl handleMail
relayMail emailAlias aliasMulti aliasDrop defaultAlias catchAllAlias defaultAliasDrop
aliasPrim userSource defaultSource catchAllSource addressTarget addressesTarget dropTarget
spamFilter""".split()


def test_required_directives_exist():
    """Everything language.md asks of the library is defined."""
    lib = load_library()
    missing = [n for n in REQUIRED if n not in lib.globals]
    assert missing == []


def test_every_library_extern_val_is_implemented_with_the_right_kind():
    """Each library primitive has a Python body whose kind matches its type."""
    lib = load_library()
    unimplemented = [
        n for n, t in lib.extern_vals.items() if isinstance(prim_value(n, t), Unimplemented)
    ]
    assert unimplemented == []
    assert set(REGISTRY) <= set(lib.extern_vals)


def test_every_declaration_is_documented():
    """No declaration of the library lacks a ``{{ }}`` comment."""
    lib = load_library()
    undocumented = [
        d.name for f in lib.files for d in f.decls if not (getattr(d, "doc", None) or "").strip()
    ]
    assert undocumented == []


def test_environment_variables_and_their_types():
    """The published variables have the published types."""
    env = {k: T.show(v) for k, v in load_library().env_types.items()}
    assert env["DocumentRoot"] == "your_path"
    assert env["WebNodes"] == "[web_node]"
    assert env["MailNodes"] == "[mail_node]"
    assert env["User"] == "your_user"
    assert env["Group"] == "your_group"
    assert env["TTL"] == "ttl"
    assert {"SSL", "ServerAdmin", "DnsNodes", "Nameservers"} <= set(env)


def test_published_signatures():
    """Placement rules of the published directives."""
    g = {k: T.show(v) for k, v in load_library().globals.items()}
    assert g["alias"] == "url_path -> your_path -> [Vhost]"
    assert g["domain"].startswith("your_domain -> Domain => [Root]")
    assert g["location"] == "url_path -> ^Vhost & Location => [Vhost]"
    assert g["dom"].startswith("your_domain -> Domain => [Root]")


def test_dom_is_written_in_the_language():
    """``dom`` is a val of the library, not a primitive."""
    lib = load_library()
    assert "dom" not in lib.extern_vals and "dom" not in REGISTRY
    decls = [d for f in lib.files for d in f.decls if getattr(d, "name", None) == "dom"]
    assert len(decls) == 1 and isinstance(decls[0], ast.DVal)


def test_reference_lists_every_declaration_with_its_doc():
    """The generated reference has a section per declaration, with type and doc."""
    lib = load_library()
    md = reference_markdown(lib)
    for f in lib.files:
        for d in f.decls:
            assert f"### `{d.name}`" in md, d.name
    assert "    alias : url_path -> your_path -> [Vhost]" in md
    assert "| `DocumentRoot` | `your_path` | directory a vhost serves" in md
    assert all(f"| `{v}` |" in md for v in lib.env_types)
    assert set(lib.env_types) <= set(ENV_DOCS)
    html = reference_html(lib)
    assert "<h3 id='alias'>alias</h3>" in html


def test_library_values_must_have_fixed_types():
    """A library value whose type is still open (``\\x -> x``, or an action parameter)
    is a library error, so no member file can fix it for everyone."""
    from domtool.lang.checker import check_library
    from domtool.lang.parser import parse_file

    for text in ("val ident = \\x -> x\n", "context C\nval twice = \\x -> (x; x)\n"):
        f, diags = parse_file("lib.dtl", text)
        assert f is not None and not diags
        _, problems = check_library([f])
        assert len(problems) == 1 and "not fully known" in problems[0].message
