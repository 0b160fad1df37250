"""The Apache renderer: what it renders, and that no member value escapes its slot.

A small Apache config reader (below) mirrors Apache's own tokenisers: one directive per
line, ``<Section>`` nesting, ``ap_getword_conf`` quoting for most directives and
mod_rewrite's ``parseargline`` for RewriteRule/RewriteCond. The property tests put
hostile text in every member-controlled field and require either a refusal naming the
owner and the field, or a file that reads back as exactly the intended directives.
"""

from __future__ import annotations

import subprocess
from pathlib import Path, PurePosixPath

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.model import (
    TLS,
    BasicAuth,
    Block,
    DesiredState,
    ProxyPass,
    Redirect,
    Rewrite,
    Vhost,
    WebSettings,
)
from domtool.slave.backends import apache
from domtool.slave.backends.apache import (
    ApacheBackend,
    ApacheConfig,
    RenderRefused,
    site_config,
)
from tests.conftest import require_binary

CONFIG = ApacheConfig(
    base_config="/etc/domtool/apache/base.conf",
    live_config="/etc/domtool/apache/apache2.conf",
    server_root="/etc/domtool/apache",
    log_dir="/var/log/domtool/apache",
    port=8080,
    tls_port=8443,
    suexec=True,
)
BACKEND = ApacheBackend(CONFIG)


def vhost(**kw) -> Vhost:
    base = dict(
        fqdn="www.example.org",
        owner="alice",
        domain="example.org",
        nodes=("local",),
        document_root="/home/alice/www",
        user="alice",
        group="alice",
        server_admin="webmaster@example.org",
    )
    base.update(kw)
    return Vhost(**base)


# ---------------------------------------------------------------------------
# A reader for the Apache config syntax we render


class ParseError(ValueError):
    pass


def getword_conf(line: str) -> list[str]:
    """Apache's ap_getword_conf over a whole argument string (quotes, \\\\ and \\")."""
    words, i, n = [], 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return words
        q = line[i]
        if q in "\"'":
            j, out = i + 1, []
            while j < n and line[j] != q:
                if line[j] == "\\" and j + 1 < n and line[j + 1] in (q, "\\"):
                    out.append(line[j + 1])
                    j += 2
                else:
                    out.append(line[j])
                    j += 1
            if j >= n:
                raise ParseError(f"unterminated quote in {line!r}")
            words.append("".join(out))
            i = j + 1
        else:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            words.append(line[i:j].replace("\\\\", "\\"))
            i = j


def rewrite_args(line: str) -> list[str]:
    """mod_rewrite's parseargline: quotes delimit, a backslash only protects a space."""
    words, i, n = [], 0, len(line)
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return words
        quote = line[i] if line[i] in "\"'" else ""
        if quote:
            i += 1
        j = i
        while j < n:
            if (line[j].isspace() and not quote) or (quote and line[j] == quote):
                break
            if line[j] == "\\" and j + 1 < n and line[j + 1].isspace():
                j += 2
                continue
            j += 1
        if quote and j >= n:
            raise ParseError(f"unterminated quote in {line!r}")
        words.append(line[i:j])
        i = j + 1 if quote else j


@attrs.frozen
class Node:
    name: str
    args: tuple[str, ...]
    children: tuple[Node, ...] | None = None  # None for a directive, a tuple for a section


def parse(text: str) -> list[Node]:
    """The directive tree of a config file; raises ParseError on anything Apache would
    read differently from a plain one-directive-per-line file."""
    stack: list[tuple[str, tuple[str, ...], list[Node]]] = [("", (), [])]
    for raw in text.split("\n"):
        if "\r" in raw or "\x00" in raw or "${" in raw:
            raise ParseError(f"forbidden character in line {raw!r}")
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            raise ParseError(f"line continuation in {raw!r}")
        if line.startswith("</"):
            if not line.endswith(">"):
                raise ParseError(f"bad section end {raw!r}")
            name = line[2:-1]
            open_name, args, children = stack.pop()
            if name != open_name or not stack:
                raise ParseError(f"{name} closes {open_name}")
            stack[-1][2].append(Node(name, args, tuple(children)))
        elif line.startswith("<"):
            if not line.endswith(">"):
                raise ParseError(f"section start without a closing '>' at the end: {raw!r}")
            name, _, rest = line[1:].partition(" ")
            rest = rest[: rest.rfind(">")] if ">" in rest else ""
            name = name.rstrip(">")
            stack.append((name, tuple(getword_conf(rest)), []))
        else:
            name, _, rest = line.partition(" ")
            args = rewrite_args(rest) if name in ("RewriteRule", "RewriteCond") else None
            stack[-1][2].append(Node(name, tuple(args or getword_conf(rest))))
    if len(stack) != 1:
        raise ParseError(f"unclosed section {stack[-1][0]}")
    return stack[0][2]


def replaced(nodes, old: str, new: str):
    """The tree with ``old`` replaced by ``new`` inside every argument."""
    return [
        Node(
            n.name,
            tuple(a.replace(old, new) for a in n.args),
            None if n.children is None else tuple(replaced(n.children, old, new)),
        )
        for n in nodes
    ]


def render(v: Vhost, backend: ApacheBackend = BACKEND) -> str:
    return backend.render_vhost(v).content.decode()


# ---------------------------------------------------------------------------
# Plain rendering


def test_full_vhost_renders_the_intended_directives():
    """A vhost using every feature renders each directive once, quoted, in both
    listeners, with suexec, and without any per-vhost log directive."""
    ws = WebSettings(
        directory_index=("index.html", "index.php"),
        options=("+Indexes", "-MultiViews"),
        error_documents=((404, "/errors/404.html"),),
        redirects=(Redirect("/old", "https://example.org/new", 301),),
        rewrites=(Rewrite("^/a/(.*)$", "/b/$1", ("L",), (("%{HTTP_HOST}", "^www\\.", ("NC",)),)),),
        auth=BasicAuth("Members only", "/home/alice/.htpasswd"),
        ssi=True,
        cgi=True,
    )
    v = vhost(
        aliases=("example.org",),
        tls=TLS("/home/alice/tls/cert.pem", "/home/alice/tls/key.pem", "/home/alice/tls/chain.pem"),
        url_aliases=(("/files", "/home/alice/files"),),
        script_aliases=(("/cgi-bin/", "/home/alice/cgi-bin/"),),
        proxies=(ProxyPass("/app", 8081, "/"),),
        settings=ws,
        blocks=(Block("location", "/private", WebSettings(auth=BasicAuth("P", "/home/alice/p"))),),
    )
    text = render(v)
    tree = parse(text)
    assert [n.name for n in tree] == ["VirtualHost", "VirtualHost"]
    assert tree[0].args == ("127.0.0.1:8080",) and tree[1].args == ("127.0.0.1:8443",)
    http = {n.name: n for n in tree[0].children}
    assert http["ServerName"].args == ("www.example.org",)
    assert http["ServerAlias"].args == ("example.org",)
    assert http["DocumentRoot"].args == ("/home/alice/www",)
    assert http["SuexecUserGroup"].args == ("alice", "alice")
    assert http["Alias"].args == ("/files", "/home/alice/files")
    assert http["ScriptAlias"].args == ("/cgi-bin", "/home/alice/cgi-bin")
    assert http["ProxyPass"].args == ("/app", "http://127.0.0.1:8081/")
    assert http["Redirect"].args == ("301", "/old", "https://example.org/new")
    assert http["RewriteCond"].args == ("%{HTTP_HOST}", "^www\\.", "[NC]")
    assert http["RewriteRule"].args == ("^/a/(.*)$", "/b/$1", "[L,PT]")
    assert http["ErrorDocument"].args == ("404", "/errors/404.html")
    assert http["DirectoryIndex"].args == ("index.html", "index.php")
    assert "SSLEngine" not in http
    tls = {n.name: n for n in tree[1].children}
    assert tls["SSLEngine"].args == ("on",)
    assert tls["SSLCertificateChainFile"].args == ("/home/alice/tls/chain.pem",)
    for word in ("CustomLog", "ErrorLog", "TransferLog"):
        assert word not in text
    docroot = [n for n in tree[0].children if n.args == ("/home/alice/www",)][-1]
    assert ("Options", ("+Indexes", "-MultiViews", "+IncludesNOEXEC", "+ExecCGI")) in {
        (n.name, n.args) for n in docroot.children
    }


def test_units_index_and_commands():
    """units() keys each vhost by name; the index includes unit files sorted by key after
    the site's catch-all; check_all and reload are argv lists against the site config."""
    state = DesiredState(vhosts=(vhost(fqdn="b.example.org"), vhost(fqdn="a.example.org")))
    units = BACKEND.units(state, {}, 0)
    assert [u.key for u in units] == ["vhost:a.example.org", "vhost:b.example.org"]
    assert all(u.owner == "alice" and u.ext == "conf" for u in units)
    paths = {u.key: PurePosixPath(f"/s/units/apache/{u.key[6:]}.conf") for u in reversed(units)}
    index = BACKEND.index(paths)["sites.conf"].decode()
    tree = parse(index)
    includes = [n.args[0] for n in tree if n.name == "Include"]
    assert includes == ["/s/units/apache/a.example.org.conf", "/s/units/apache/b.example.org.conf"]
    assert tree[[n.name for n in tree].index("VirtualHost")].children[-1].args == ("421", "/")
    assert [n for n in tree if n.name == "CustomLog"][0].args[1] == "domtool_vhost"
    (check,) = BACKEND.check_all(PurePosixPath("/s/generations/7"))
    assert check.argv[:3] == ("/usr/sbin/apache2", "-t", "-f")
    assert check.argv[-1] == 'Include "/s/generations/7/apache/sites.conf"'
    assert units[0].checks == ()  # whole-site check and the engine's bisection by default
    (own,) = ApacheBackend(attrs.evolve(CONFIG, unit_checks=True)).render_vhost(vhost()).checks
    assert own.argv[-1] == 'Include "{path}"' and own.argv[1] == "-t"
    (reload,) = BACKEND.reload()
    assert reload.argv[-2:] == ("-k", "graceful") and CONFIG.live_config in reload.argv
    probes = BACKEND.probes(state)
    assert sorted(p.target for p in probes) == [
        ("127.0.0.1", 8080, f"{n}.example.org", 204, "/.well-known/domtool-probe") for n in "ab"
    ]
    first = [(n.name, n.args) for n in parse(units[0].content.decode())[0].children]
    probe = ("Redirect", ("204", "/.well-known/domtool-probe"))
    assert first.index(probe) < first.index(("DocumentRoot", ("/home/alice/www",)))


def test_two_vhosts_claiming_one_name_are_both_refused_whatever_the_order():
    """A name served twice (as a name or an alias) refuses every vhost claiming it, so a
    vhost that sorts first cannot take another member's name; the rest still render."""
    alice_site = vhost()
    bobs_grab = vhost(fqdn="a.bob.example", owner="bob", aliases=("www.example.org",))
    carol = vhost(fqdn="www.carol.example", owner="carol")
    for order in ((alice_site, bobs_grab, carol), (bobs_grab, carol, alice_site)):
        state = DesiredState(vhosts=order)
        with pytest.raises(RenderRefused) as e:
            BACKEND.units(state, {}, 0)
        assert e.value.owners == ("alice", "bob")
        assert {(x.owner, x.field) for x in e.value.errors} == {
            ("alice", "fqdn"),
            ("bob", "aliases"),
        }
        assert "a.bob.example of bob" in str(e.value)
        units, errors = BACKEND.render(state)
        assert [u.key for u in units] == ["vhost:www.carol.example"] and len(errors) == 2
    same_twice = DesiredState(vhosts=(vhost(aliases=("www.example.org",)),))
    assert [u.key for u in BACKEND.units(same_twice, {}, 0)] == ["vhost:www.example.org"]


def test_tls_without_a_tls_listener_is_refused_and_index_wants_absolute_paths():
    """A TLS vhost on a host without a TLS listener is refused, naming the field; the
    index refuses a unit path that is not absolute (an engine bug, never member input)."""
    backend = ApacheBackend(attrs.evolve(CONFIG, tls_port=None))
    with pytest.raises(RenderRefused) as e:
        render(vhost(tls=TLS("/home/alice/c", "/home/alice/k")), backend)
    assert [x.field for x in e.value.errors] == ["tls"]
    with pytest.raises(ValueError, match="not absolute"):
        BACKEND.index({"vhost:a.example": PurePosixPath("units/a.conf")})
    with pytest.raises(ValueError, match="not absolute"):
        BACKEND.index({"vhost:a.example": PurePosixPath("/u/a\n.conf")})


def test_an_internationalised_name_is_refused_with_its_punycode():
    """A non-ASCII host name is refused, and the message says how to write it."""
    with pytest.raises(RenderRefused) as e:
        render(vhost(aliases=("bücher.example",)))
    (err,) = e.value.errors
    assert (err.owner, err.field) == ("alice", "aliases[0]")
    assert "xn--bcher-kva.example" in str(e.value)
    assert "xn--bcher-kva.example" in render(vhost(aliases=("xn--bcher-kva.example",)))


def test_cgi_without_suexec_is_refused():
    """Without suexec a member's CGI would run as the web server's user: refused."""
    backend = ApacheBackend(attrs.evolve(CONFIG, suexec=False))
    with pytest.raises(RenderRefused) as e:
        render(vhost(script_aliases=(("/cgi-bin/", "/home/alice/cgi"),)), backend)
    assert "suexec" in str(e.value)
    assert "SuexecUserGroup" not in render(vhost(), backend)


@pytest.mark.parametrize(
    ("field", "v"),
    [
        ("settings.options[0]", vhost(settings=WebSettings(options=("+FollowSymLinks",)))),
        ("settings.options[0]", vhost(settings=WebSettings(options=("Indexes",)))),
        (
            "settings.redirects[0].status",
            vhost(settings=WebSettings(redirects=(Redirect("/a", "http://x.example/", 200),))),
        ),
        (
            "settings.rewrites[0].flags",
            vhost(settings=WebSettings(rewrites=(Rewrite("^/a", "/b", ("P",)),))),
        ),
        (
            "settings.rewrites[0].target",
            vhost(settings=WebSettings(rewrites=(Rewrite("^/a", "${map:x}"),))),
        ),
        ("proxies[0].port", vhost(proxies=(ProxyPass("/a", 22),))),
        ("user", vhost(user="root")),
        ("blocks[0].kind", vhost(blocks=(Block("files", "/x"),))),
        ("document_root", vhost(document_root="/home/*/www")),
    ],
)
def test_closed_sets_refuse_outsiders(field, v):
    """Options, statuses, rewrite flags, ports, users and block kinds come from closed
    sets; wildcards never reach a <Directory>."""
    with pytest.raises(RenderRefused) as e:
        render(v)
    assert [(x.owner, x.field) for x in e.value.errors] == [("alice", field)]


# ---------------------------------------------------------------------------
# Hostile values in every member-controlled field

S = "sentinelvalue"


def _ws(**kw) -> WebSettings:
    return WebSettings(**kw)


def _cond(test: str, pattern: str) -> Vhost:
    rule = Rewrite("^/a", "-", (), ((test, pattern, ()),))
    return vhost(settings=_ws(rewrites=(rule,)))


# field name in errors -> (build a vhost from one value, the benign value of that slot)
FIELDS = {
    "fqdn": (lambda x: vhost(fqdn=x), f"{S}.example"),
    "aliases[0]": (lambda x: vhost(aliases=(x,)), f"{S}.example"),
    "server_admin": (lambda x: vhost(server_admin=x), f"web@{S}.example"),
    "document_root": (lambda x: vhost(document_root=x), f"/home/alice/{S}"),
    "user": (lambda x: vhost(user=x), S),
    "url_aliases[0].url_path": (lambda x: vhost(url_aliases=((x, "/home/alice/f"),)), f"/{S}"),
    "url_aliases[0].path": (lambda x: vhost(url_aliases=(("/f", x),)), f"/home/alice/{S}"),
    "script_aliases[0].path": (lambda x: vhost(script_aliases=(("/c/", x),)), f"/home/alice/{S}"),
    "proxies[0].path": (lambda x: vhost(proxies=(ProxyPass(x, 8000),)), f"/{S}"),
    "proxies[0].target": (lambda x: vhost(proxies=(ProxyPass("/p", 8000, x),)), f"/{S}"),
    "settings.redirects[0].path": (
        lambda x: vhost(settings=_ws(redirects=(Redirect(x, "http://t.example/"),))),
        f"/{S}",
    ),
    "settings.redirects[0].target": (
        lambda x: vhost(settings=_ws(redirects=(Redirect("/r", x),))),
        f"https://{S}.example/",
    ),
    "settings.rewrites[0].pattern": (
        lambda x: vhost(settings=_ws(rewrites=(Rewrite(x, "/t", ("R=302",)),))),
        f"^/{S}$",
    ),
    "settings.rewrites[0].target": (
        lambda x: vhost(settings=_ws(rewrites=(Rewrite("^/a", x, ("R=302",)),))),
        f"/{S}",
    ),
    "settings.rewrites[0].conditions[0].test": (
        lambda x: _cond(x, "^a"),
        "%{QUERY_STRING}",
    ),
    "settings.rewrites[0].conditions[0].pattern": (
        lambda x: _cond("%{HTTP_HOST}", x),
        f"^{S}",
    ),
    "settings.auth.realm": (
        lambda x: vhost(settings=_ws(auth=BasicAuth(x, "/home/alice/pw"))),
        f"{S} realm",
    ),
    "settings.auth.user_file": (
        lambda x: vhost(settings=_ws(auth=BasicAuth("r", x))),
        f"/home/alice/{S}",
    ),
    "settings.auth.require[0]": (
        lambda x: vhost(settings=_ws(auth=BasicAuth("r", "/home/alice/pw", (x,)))),
        S,
    ),
    "settings.directory_index[0]": (
        lambda x: vhost(settings=_ws(directory_index=(x,))),
        f"{S}.html",
    ),
    "settings.error_documents[0].document": (
        lambda x: vhost(settings=_ws(error_documents=((404, x),))),
        f"/{S}.html",
    ),
    "blocks[0].path": (lambda x: vhost(blocks=(Block("location", x),)), f"/{S}"),
    "blocks[0].settings.auth.realm": (
        lambda x: vhost(
            blocks=(Block("directory", "/home/alice/d", _ws(auth=BasicAuth(x, "/home/alice/p"))),)
        ),
        f"{S} realm",
    ),
    "tls.certificate": (
        lambda x: vhost(tls=TLS(x, "/home/alice/key.pem")),
        f"/home/alice/{S}",
    ),
    "tls.key": (lambda x: vhost(tls=TLS("/home/alice/c.pem", x)), f"/home/alice/{S}"),
    "tls.chain": (
        lambda x: vhost(tls=TLS("/home/alice/c", "/home/alice/k", x)),
        f"/home/alice/{S}",
    ),
    "group": (lambda x: vhost(group=x), S),
    "script_aliases[0].url_path": (
        lambda x: vhost(script_aliases=((x, "/home/alice/cgi"),)),
        f"/{S}",
    ),
    "blocks[1].path": (
        lambda x: vhost(blocks=(Block("location", "/a"), Block("directory", x))),
        f"/home/alice/{S}",
    ),
    "settings.options[0]": (lambda x: vhost(settings=_ws(options=(x,))), "+Indexes"),
    "blocks[0].settings.rewrites[0].pattern": (
        lambda x: vhost(blocks=(Block("location", "/b", _ws(rewrites=(Rewrite(x, "/t"),))),)),
        f"^{S}$",
    ),
}

# Normalisation the renderer applies to an accepted value: paths lose '//', '.', '..' and a
# final '/' (an alias's URL path its final '/'s); names and URL hosts are lower-cased.
NORMALISE = {
    "fqdn": apache.check_domain,
    "aliases[0]": apache.check_domain,
    "server_admin": apache.check_email,
    "settings.redirects[0].target": apache.check_url,
    "settings.error_documents[0].document": apache._error_document,
    "document_root": apache.check_abs_path,
    "url_aliases[0].path": apache.check_abs_path,
    "script_aliases[0].path": apache.check_abs_path,
    # an alias's URL loses its trailing slashes (its file path has none either)
    "url_aliases[0].url_path": lambda x: apache.check_url_path(x).rstrip("/"),
    "script_aliases[0].url_path": lambda x: apache.check_url_path(x).rstrip("/"),
    "settings.auth.user_file": apache.check_abs_path,
    "tls.certificate": apache.check_abs_path,
    "tls.key": apache.check_abs_path,
    "tls.chain": apache.check_abs_path,
    "blocks[1].path": apache.check_abs_path,
    "settings.options[0]": apache._check_option,
    "settings.rewrites[0].target": apache._check_rewrite_target,
    "settings.rewrites[0].conditions[0].test": apache._check_cond_test,
}

HOSTILE_CHARS = "\n\r\x00\"'\\<>#$ {}%*?[]\t\x0b\x7f/.:@&;=,-_|~`éü\u2028"
PREFIXES = (
    "",
    "/",
    "/home/alice/",
    "^/",
    "http://x.example/",
    "https://bücher.example/",
    "%{HTTP_HOST}",
    "www.",
    "realm ",
    "a@b.example",
    "xn--bcher-kva.example",
)


def hostile() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=40),
        st.builds(
            lambda p, mid, end: p + mid + end,
            st.sampled_from(PREFIXES),
            st.text(alphabet=HOSTILE_CHARS, max_size=12),
            st.sampled_from(("", "x", "/x", ".example", "${HOME}", "\\", '"', ">")),
        ),
        st.sampled_from(
            (
                "a" * 5000,
                "/" + "a" * 2000,
                "/home/alice/a\nDocumentRoot /",
                '/x" \n<Directory />\nRequire all granted\n</Directory>\n#',
                "/x>\n</VirtualHost>\n<VirtualHost *:80>",
                "bücher.example",
                "/a b/c",
                "/it's #1",
            )
        ),
    )


def check_one(field: str, value: str) -> None:
    build, benign = FIELDS[field]
    try:
        got = parse(render(build(value)))
    except RenderRefused as e:
        assert any(x.owner == "alice" and x.field == field for x in e.errors), e.errors
        assert "alice" in str(e) and field in str(e)
        return
    expected_value = NORMALISE.get(field, lambda x: x)(value)
    want = replaced(parse(render(build(benign))), benign, expected_value)
    assert got == want, (field, value)


@pytest.mark.parametrize("field", sorted(FIELDS))
@settings(max_examples=300)
@given(value=hostile())
def test_hostile_values_are_refused_or_stay_in_their_slot(field, value):
    """In every member-controlled field, a hostile value is refused (naming alice and the
    field) or reads back as exactly the intended directives with the value in its slot."""
    check_one(field, value)


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_field_refuses_a_newline_and_accepts_its_benign_value(field):
    """The property above is not vacuous: a newline is refused and the benign value
    renders, in each field."""
    build, benign = FIELDS[field]
    with pytest.raises(RenderRefused):
        render(build(benign[:-1] + "\n" + benign[-1]))
    assert benign in render(build(benign)) or benign.rstrip("/") in render(build(benign))


# Values with quotes, '#', spaces, backslashes and apostrophes that are legal in their slot.
LEGAL_HOSTILE = {
    "document_root": "/tmp/a,b=c+d@e-f_g.h",
    "url_aliases[0].url_path": "/a(b)!~x,=:@%41+&",
    "settings.rewrites[0].pattern": "^/a\\.b/(.*)\\x20(c|d)?[\\\\;]$",
    "settings.rewrites[0].target": "/t/$1?h=%1&x=(y)!*,~",
    "settings.redirects[0].target": "https://t.example/a?b=(c)&d=!*",
    "settings.auth.realm": "Alice's 'private' #1 <keep> {out} 100%",
    "settings.error_documents[0].document": "/err/a(1)!.html",
}


@pytest.mark.parametrize("field", sorted(LEGAL_HOSTILE))
def test_legal_hostile_values_render_into_their_slot(field):
    """Each legal-but-awkward value is accepted and reads back unchanged in its slot."""
    build, benign = FIELDS[field]
    value = LEGAL_HOSTILE[field]
    got = parse(render(build(value)))
    assert got == replaced(parse(render(build(benign))), benign, value)


@pytest.mark.daemons
def test_apache_accepts_the_legal_hostile_values(tmp_path: Path):
    """apache2 -t accepts one vhost carrying every legal-but-awkward value at once."""
    require_binary("apache2")
    from tests.slave.apache_daemon import APACHE, apache_config

    cfg = attrs.evolve(apache_config(tmp_path, 18080), suexec=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    ws = WebSettings(
        redirects=(Redirect("/r", LEGAL_HOSTILE["settings.redirects[0].target"]),),
        rewrites=(
            Rewrite(
                LEGAL_HOSTILE["settings.rewrites[0].pattern"],
                LEGAL_HOSTILE["settings.rewrites[0].target"],
                ("L", "QSA"),
                (("%{HTTP_HOST}", "^www\\.a|b$", ("NC", "OR")),),
            ),
        ),
        auth=BasicAuth(LEGAL_HOSTILE["settings.auth.realm"], "/tmp/pw", ("bob", "alice.x")),
        error_documents=((404, LEGAL_HOSTILE["settings.error_documents[0].document"]),),
        directory_index=("index.html", "it-s.html"),
    )
    v = vhost(
        user="nobody",
        group="nogroup",
        document_root=LEGAL_HOSTILE["document_root"],
        url_aliases=((LEGAL_HOSTILE["url_aliases[0].url_path"], "/tmp/a,b"),),
        script_aliases=(("/cgi-bin/", "/tmp/c=gi"),),
        proxies=(ProxyPass("/app(s)", 8000, "/x*y"),),
        settings=ws,
        blocks=(
            Block("location", "/p!q", WebSettings(options=("+Indexes",), ssi=True)),
            Block("directory", "/tmp/d@x", WebSettings(auth=BasicAuth("x", "/tmp/p"), cgi=True)),
        ),
    )
    unit = tmp_path / "vhost.conf"
    unit.write_bytes(ApacheBackend(cfg).render_vhost(v).content)
    for path, content in site_config(cfg, str(unit), run_dir=str(tmp_path / "run")).items():
        Path(path).write_bytes(content)
    argv = [a.replace("{path}", str(unit)) for a in cfg.check_argv("{path}")]
    assert argv[0] == APACHE
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Syntax OK" in done.stderr + done.stdout


def _random_hostile(rng, benign: str) -> str:
    """One hostile value: the benign value with hostile characters spliced in, a hostile
    prefix and tail, or random text."""
    pick = rng.random()
    junk = "".join(rng.choice(HOSTILE_CHARS) for _ in range(rng.randint(1, 4)))
    if pick < 0.5:
        i = rng.randint(0, len(benign))
        return benign[:i] + junk + benign[i:]
    if pick < 0.8:
        return rng.choice(PREFIXES) + junk + rng.choice(("", "x", "/x", ".example", "${HOME}"))
    return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 20)))


@pytest.mark.slow
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_ten_thousand_hostile_values_per_field(field):
    """The reliability floor: 10,000 generated hostile values in each field, 0 escapes
    (each is refused naming alice and the field, or reads back exactly in its slot)."""
    import random

    rng = random.Random(f"apache:{field}")
    _build, benign = FIELDS[field]
    for _ in range(10_000):
        check_one(field, _random_hostile(rng, benign))


@given(st.text(max_size=30) | st.text(alphabet=HOSTILE_CHARS + "ab", max_size=30))
def test_fast_quoting_agrees_with_validate(value):
    """The renderer's quoting fast path gives exactly validate.apache_quote's result,
    and refuses exactly what it refuses."""
    from domtool import validate

    try:
        want = validate.apache_quote(value)
    except validate.Invalid:
        with pytest.raises(ValueError):
            apache.apache_quote(value)
        return
    assert apache.apache_quote(value) == want


@pytest.mark.daemons
def test_apache_accepts_every_accepted_hostile_value(tmp_path: Path):
    """Generated hostile values that the renderer accepts (up to 100 per field) all
    load: one vhost per value, all in one file, and apache2 -t says Syntax OK. (TLS
    files, users and groups are left out: Apache opens or resolves them at load.)"""
    require_binary("apache2")
    import random

    from tests.slave.apache_daemon import apache_config

    cfg = attrs.evolve(apache_config(tmp_path, 18080), suexec=True)
    backend = ApacheBackend(cfg)
    (tmp_path / "run").mkdir()
    (tmp_path / "logs").mkdir()
    chunks, count = [], 0
    for field, (build, benign) in sorted(FIELDS.items()):
        if field.startswith("tls.") or field in ("user", "group"):
            continue
        rng = random.Random(f"apache-t:{field}")
        accepted = 0
        for _ in range(2000):
            value = _random_hostile(rng, benign)
            v = build(value)
            if field not in ("fqdn", "aliases[0]"):
                v = attrs.evolve(v, fqdn=f"v{count}.example.org")
            elif field == "aliases[0]":
                v = attrs.evolve(v, fqdn=f"v{count}.example.org", aliases=(f"a{count}.{value}",))
            v = attrs.evolve(v, user="nobody", group="nogroup")
            try:
                chunks.append(backend.render_vhost(v).content)
            except RenderRefused:
                continue
            count += 1
            accepted += 1
            if accepted == 100:
                break
    assert count > 1000
    unit = tmp_path / "many.conf"
    unit.write_bytes(b"".join(chunks))
    for path, content in site_config(cfg, str(unit), run_dir=str(tmp_path / "run")).items():
        Path(path).write_bytes(content)
    done = subprocess.run(cfg.check_argv(str(unit)), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]


def test_an_unchanged_vhost_is_not_rendered_again():
    """After a render, only vhosts that differ from the last render's are rendered again:
    a one-vhost change costs one render, not one per vhost of the host; the units are
    the same as a fresh backend's."""
    calls: list[str] = []

    @attrs.frozen
    class Counting(ApacheBackend):
        def render_vhost(self, v: Vhost):
            calls.append(v.fqdn)
            return super().render_vhost(v)

    b = Counting(CONFIG)
    names = [f"www{i}.example.org" for i in range(5)]
    first = DesiredState(vhosts=tuple(vhost(fqdn=n) for n in names))
    b.units(first, {}, 0)
    assert sorted(calls) == names
    calls.clear()
    changed = attrs.evolve(first.vhosts[2], document_root="/home/alice/other")
    second = DesiredState(vhosts=first.vhosts[:2] + (changed,) + first.vhosts[3:])
    units = b.units(second, {}, 0)
    assert calls == ["www2.example.org"]
    assert units == ApacheBackend(CONFIG).units(second, {}, 0)
