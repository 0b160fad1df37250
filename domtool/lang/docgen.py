"""The standard library reference, generated from the ``{{ }}`` documentation comments.

:func:`reference_markdown` lists every declaration of the library (contexts, extern
types, directives and their types, environment variables), grouped by library file;
``domtool doc`` prints it. :func:`reference_html` wraps the same content in a minimal
HTML page.
"""

from __future__ import annotations

import html
import re

from domtool.lang import ast
from domtool.lang import types as T
from domtool.lang.checker import Library
from domtool.stdlib import domtool2

_TITLES = {
    "base.dtl": "Contexts and basic types",
    "dns.dtl": "Domains and DNS",
    "web.dtl": "Web sites",
    "mail.dtl": "Mail",
    "lists.dtl": "Mailing lists",
    "dom.dtl": "Shorthands",
    "compat.dtl": "Domtool 2's names",
}


#: What each environment variable of the library means, and its default.
ENV_DOCS = {
    "DocumentRoot": "directory a vhost serves; default /home/USER/public_html",
    "WebNodes": "web nodes serving a vhost; default every web node of the site",
    "MailNodes": "mail nodes handling a domain's mail; default every mail node",
    "DnsNodes": "DNS nodes serving a zone; default every DNS node",
    "ListNodes": "nodes running a domain's mailing lists (Mailman); default every list node",
    "User": "Unix user CGI and other programs of a vhost run as; default you",
    "Group": "Unix group for a vhost's programs; default your own group",
    "TTL": "time to live of records (seconds); default the site's (3600)",
    "SSL": "when true, every vhost must have a certificate (`ssl`); default false",
    "ServerAdmin": "contact address on a vhost's error pages; default webmaster@DOMAIN",
    "Nameservers": "name servers `dom` declares; default the site's",
}


def _doc(text: str | None) -> str:
    if not text:
        return "_(undocumented)_"
    return re.sub(r"\s+", " ", text).strip()


def _entries(library: Library, f: ast.File) -> list[tuple[str, str, str]]:
    """(heading, signature, documentation) for each declaration of a library file."""
    out = []
    for d in f.decls:
        if isinstance(d, ast.DContext):
            out.append((d.name, f"context {d.name}", _doc(d.doc)))
        elif isinstance(d, ast.DExternType):
            out.append((d.name, f"extern type {d.name}", _doc(d.doc)))
        elif isinstance(d, ast.DExternVal | ast.DVal):
            t = library.globals.get(d.name)
            sig = f"{d.name} : {T.show(t)}" if t is not None else d.name
            out.append((d.name, sig, _doc(d.doc)))
    return out


def reference_markdown(library: Library | None = None) -> str:
    """The library reference as Markdown."""
    if library is None:
        from domtool.lang.api import load_library

        library = load_library()
    lines = [
        "# Domtool standard library reference",
        "",
        "Generated from the library's `{{ }}` comments (`domtool doc`). A type `[P]` is an",
        "action allowed where the context predicate `P` holds; `P => T` is a block directive",
        "(`... with ... end`) whose body runs where `P` holds.",
        "",
    ]
    for f in library.files:
        lines += [f"## {_TITLES.get(f.name, f.name)} (`{f.name}`)", ""]
        for name, sig, doc in _entries(library, f):
            suffix = " (type)" if sig.startswith("extern type") else ""
            suffix = " (context)" if sig.startswith("context") else suffix
            lines += [f"### `{name}`{suffix}", "", f"    {sig}", "", doc, ""]
    lines += ["## Environment variables", ""]
    lines += ["| variable | type | meaning |", "|---|---|---|"]
    for name, t in sorted(library.env_types.items()):
        lines.append(f"| `{name}` | `{T.show(t)}` | {ENV_DOCS.get(name, '')} |")
    lines += ["", "## Domtool 2 name → ours", ""]
    lines += [
        "Every name of Domtool 2's modules and member commands, what it is here, and its",
        "status (from `domtool/stdlib/domtool2.py`; a Domtool 2 name this library does not",
        "define is refused with a hint taken from this table).",
        "",
    ]
    lines += domtool2.table_markdown()
    lines.append("")
    return "\n".join(lines)


def reference_html(library: Library | None = None) -> str:
    """The library reference as a small standalone HTML page."""
    if library is None:
        from domtool.lang.api import load_library

        library = load_library()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>Domtool standard library reference</title></head><body>",
        "<h1>Domtool standard library reference</h1>",
    ]
    for f in library.files:
        parts.append(f"<h2>{html.escape(_TITLES.get(f.name, f.name))}</h2>")
        for name, sig, doc in _entries(library, f):
            anchor = name + ("-type" if sig.startswith("extern type") else "")
            parts.append(
                f"<h3 id='{html.escape(anchor)}'>{html.escape(name)}</h3>"
                f"<pre>{html.escape(sig)}</pre><p>{html.escape(doc)}</p>"
            )
    parts.append("<h2>Environment variables</h2><table>")
    for name, t in sorted(library.env_types.items()):
        parts.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(T.show(t))}</td>"
            f"<td>{html.escape(ENV_DOCS.get(name, ''))}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)
