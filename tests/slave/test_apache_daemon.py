"""The Apache backend against a real apache2 on loopback, through the slave's engine.

Each test starts apache2 on 127.0.0.1 with free ports and a config root of its own and
installs members' vhosts with ``domtool.slave.engine.Engine`` over the real seams:
content-addressed unit files, a staged generation, each changed unit's own
``apache2 -t`` and the whole-site ``apache2 -t``, an atomic ``current`` switch, a
graceful reload (which also starts the server the first time) and the real HTTP
prober (``domtool.slave.probes``). Then it
asks the server over HTTP and HTTPS.
"""

from __future__ import annotations

import datetime
import http.server
import os
import shutil
import threading
from pathlib import Path

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
from domtool.slave.backends.apache import ApacheBackend
from domtool.slave.engine import Engine, Outcome
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.conftest import require_binary
from tests.slave.apache_daemon import (
    ApacheProcess,
    free_port,
    get,
    prepare_site,
    public_dir,
    start_apache,
)

pytestmark = pytest.mark.daemons


@attrs.define
class Site:
    """A slave's engine with the Apache backend, and the apache2 it drives."""

    engine: Engine
    backend: ApacheBackend
    state_dir: Path
    port: int
    tls_port: int
    proc: ApacheProcess

    def apply(self, state: DesiredState) -> Outcome:
        return self.engine.apply(state)


def self_signed(directory: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate and key for ``name``; returns (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def web():
    """World-readable document roots for alice and bob (Apache's children are www-data)."""
    root = public_dir()
    for member, text in (("alice", "alice's site"), ("bob", "bob's site")):
        (root / member / "www" / "errors").mkdir(parents=True)
        (root / member / "www" / "index.html").write_text(f"<p>{text}</p>\n")
        (root / member / "www" / "errors" / "404.html").write_text(f"{member} lost it\n")
        (root / member / "files").mkdir()
        (root / member / "files" / "doc.txt").write_text(f"{member}'s aliased file\n")
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    yield root
    shutil.rmtree(root)


@pytest.fixture(params=[True, False], ids=["unit-checks", "bisection"])
def site(request, tmp_path: Path):
    """apache2 on free loopback ports, started by the engine's first apply (generation 1:
    the catch-all only). Runs once with per-unit checks and once with whole-site checks
    and the engine's bisection alone."""
    require_binary("apache2")
    port, tls_port = free_port(), free_port()
    state_dir = tmp_path / "state"
    cert, key = self_signed(tmp_path, "default.invalid")
    root = tmp_path / "apache"
    sites = str(state_dir / "current" / "apache" / "sites.conf")
    tls = dict(tls_port=tls_port, default_certificate=cert, default_key=key)
    config = attrs.evolve(prepare_site(root, port, sites, **tls), unit_checks=request.param)
    backend = ApacheBackend(config)
    engine = Engine(
        str(state_dir),
        {"apache": backend},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(),
        probe_timeout=10.0,
        probe_interval=0.02,
    )
    s = Site(engine, backend, state_dir, port, tls_port, ApacheProcess(config, root))
    try:
        first = s.apply(DesiredState())
        assert first.status == "applied", first.message
        yield s
    finally:
        s.proc.stop()


def alice(web: Path, **kw) -> Vhost:
    base = dict(
        fqdn="www.example.org",
        owner="alice",
        domain="example.org",
        nodes=("local",),
        document_root=str(web / "alice" / "www"),
        user="alice",
        group="alice",
        server_admin="alice@example.org",
        aliases=("example.org",),
        url_aliases=(("/files", str(web / "alice" / "files")),),
        settings=WebSettings(
            redirects=(Redirect("/old", "https://www.example.org/new", 301),),
            error_documents=((404, "/errors/404.html"),),
        ),
    )
    base.update(kw)
    return Vhost(**base)


def bob(web: Path, **kw) -> Vhost:
    base = dict(
        fqdn="www.bob.example",
        owner="bob",
        domain="bob.example",
        nodes=("local",),
        document_root=str(web / "bob" / "www"),
        user="bob",
        group="bob",
        server_admin="bob@bob.example",
    )
    base.update(kw)
    return Vhost(**base)


def test_each_member_serves_their_own_content(site: Site, web: Path):
    """Two members' vhosts answer with their own files, by Host header; an unknown name
    gets the site's 421, never a member's page; the alias, URL alias, redirect and error
    document all work."""
    assert get(site.port, "www.example.org").status == 421  # nothing installed yet
    state = DesiredState(vhosts=(alice(web), bob(web)))
    out = site.apply(state)
    assert (out.status, out.applied) == ("applied", ("alice", "bob")), out.message
    a = get(site.port, "www.example.org")
    assert (a.status, a.body) == (200, b"<p>alice's site</p>\n")
    b = get(site.port, "www.bob.example")
    assert (b.status, b.body) == (200, b"<p>bob's site</p>\n")
    assert get(site.port, "example.org").body == b"<p>alice's site</p>\n"
    assert get(site.port, "www.example.org", "/files/doc.txt").body == b"alice's aliased file\n"
    assert get(site.port, "www.bob.example", "/files/doc.txt").status == 404
    r = get(site.port, "www.example.org", "/old/page")
    assert r.status == 301 and r.headers["location"] == "https://www.example.org/new/page"
    e = get(site.port, "www.example.org", "/missing")
    assert (e.status, e.body) == (404, b"alice lost it\n")
    assert get(site.port, "nobody.example").status == 421
    log = (Path(site.backend.config.log_dir) / "access.log").read_text()
    assert any(line.startswith("www.bob.example ") for line in log.splitlines())


def test_an_alias_written_with_trailing_slashes_serves_its_files(site: Site, web: Path):
    """``alias "/files/" "/path/"``: the path grammar drops the path's trailing slash, and
    Apache replaces the URL prefix by the path as written, so the rendered path keeps a
    slash when the URL has one (else /files/doc.txt would map to .../filesdoc.txt)."""
    v = alice(web, url_aliases=(("/files/", str(web / "alice" / "files") + "/"),))
    assert site.apply(DesiredState(vhosts=(v,))).status == "applied"
    assert get(site.port, "www.example.org", "/files/doc.txt").body == b"alice's aliased file\n"


def test_proxy_to_a_member_daemon(site: Site, web: Path):
    """ProxyPass sends a vhost's path to the member's own HTTP server on a member port;
    an .htaccess RewriteRule [P] towards that same server (proxying as www-data, past
    <Proxy> access control) is refused and never reaches it."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            body = f"member daemon saw {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert port >= 1024
        v = bob(web, proxies=(ProxyPass("/app/", port, "/api/"),))
        assert site.apply(DesiredState(vhosts=(v,))).status == "applied"
        r = get(site.port, "www.bob.example", "/app/hello?x=1")
        assert (r.status, r.body) == (200, b"member daemon saw /api/hello?x=1")
        assert get(site.port, "www.bob.example").body == b"<p>bob's site</p>\n"
        assert seen == ["/api/hello?x=1"]
        htaccess = web / "bob" / "www" / ".htaccess"
        htaccess.write_text(f"RewriteEngine on\nRewriteRule ^x$ http://127.0.0.1:{port}/s [P]\n")
        htaccess.chmod(0o644)
        assert get(site.port, "www.bob.example", "/x").status == 500
        assert seen == ["/api/hello?x=1"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tls_vhost_serves_its_own_certificate(site: Site, web: Path, tmp_path: Path):
    """A TLS vhost answers on the TLS listener with its own certificate (chosen by SNI);
    a name without TLS gets the site's default certificate and the 421 catch-all."""
    cert, key = self_signed(tmp_path, "www.example.org")
    v = alice(web, tls=TLS(cert, key))
    assert site.apply(DesiredState(vhosts=(v, bob(web)))).status == "applied"
    r = get(site.tls_port, "www.example.org", tls=True)
    assert (r.status, r.body) == (200, b"<p>alice's site</p>\n")
    served = x509.load_der_x509_certificate(r.peer_cert)
    assert served.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "www.example.org"
    )
    other = get(site.tls_port, "www.bob.example", tls=True)
    assert other.status == 421
    cn = x509.load_der_x509_certificate(other.peer_cert).subject
    assert cn.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "default.invalid"


def test_a_change_apache_refuses_never_goes_live(site: Site, web: Path, tmp_path: Path):
    """bob adds TLS with a certificate file that does not exist: the renderer accepts it,
    apache2 -t refuses it, and the engine refuses bob with Apache's own message while
    alice's change in the same apply goes live; bob's previous site keeps answering."""
    assert site.apply(DesiredState(vhosts=(alice(web), bob(web)))).status == "applied"
    before = os.readlink(site.state_dir / "current")
    missing = str(tmp_path / "no-such.crt")
    bad_bob = bob(web, tls=TLS(missing, missing))
    new_alice = alice(web, aliases=("example.org", "alice.example.org"))
    out = site.apply(DesiredState(vhosts=(new_alice, bad_bob)))
    assert (out.status, out.applied, sorted(out.refused)) == ("applied", ("alice",), ["bob"])
    assert "SSLCertificateFile" in out.refused["bob"] and "no-such.crt" in out.refused["bob"]
    assert os.readlink(site.state_dir / "current") != before
    assert get(site.port, "alice.example.org").body == b"<p>alice's site</p>\n"
    assert get(site.port, "www.example.org").body == b"<p>alice's site</p>\n"
    assert get(site.port, "www.bob.example").body == b"<p>bob's site</p>\n"
    assert get(site.tls_port, "www.bob.example", tls=True).status == 421


def test_a_refused_change_alone_changes_nothing(site: Site, web: Path, tmp_path: Path):
    """When the only change is one Apache refuses, no generation goes live, nothing is
    reloaded, and the sites answer as before; applying the same state twice is a no-op."""
    state = DesiredState(vhosts=(alice(web), bob(web)))
    assert site.apply(state).status == "applied"
    assert site.apply(state).status == "unchanged"
    before = os.readlink(site.state_dir / "current")
    missing = str(tmp_path / "no-such.crt")
    out = site.apply(DesiredState(vhosts=(alice(web), bob(web, tls=TLS(missing, missing)))))
    assert out.status == "unchanged" and sorted(out.refused) == ["bob"], out
    assert os.readlink(site.state_dir / "current") == before
    assert get(site.port, "www.bob.example").body == b"<p>bob's site</p>\n"


def test_probe_answers_whatever_the_member_site_does(site: Site, web: Path):
    """The probe path answers 204 on a vhost whose member proxies everything to a dead
    port, forbids every URL by rewrite and demands a password; the catch-all answers
    421 there. So a member's broken site cannot fail the probe of an apply."""
    dead = free_port()
    hostile = bob(
        web,
        proxies=(ProxyPass("/", dead, "/"),),
        settings=WebSettings(
            rewrites=(Rewrite("^/(.*)$", "-", ("F",)),),
            auth=BasicAuth("locked", str(web / "bob" / "pw")),
        ),
        blocks=(Block("location", "/", WebSettings(auth=BasicAuth("x", str(web / "bob" / "p")))),),
    )
    assert site.apply(DesiredState(vhosts=(hostile,))).status == "applied"
    (probe,) = site.backend.probes(DesiredState(vhosts=(hostile,)))
    _addr, port, host, expected, path = probe.target
    assert (port, host, expected) == (site.port, "www.bob.example", 204)
    assert get(port, host, path).status == 204
    assert get(port, host, "/").status == 403
    assert get(port, "unknown.example", path).status == 421


def test_a_failed_reload_rolls_back_to_the_last_good_generation(
    site: Site, web: Path, tmp_path: Path
):
    """alice's certificate is deleted between prepare and commit: the graceful reload
    refuses the new generation, the engine puts the previous one back (well within the
    30 s floor) and both sites answer as before."""
    import time

    assert site.apply(DesiredState(vhosts=(alice(web), bob(web)))).status == "applied"
    before = os.readlink(site.state_dir / "current")
    cert, key = self_signed(tmp_path, "www.example.org")
    prepared = site.engine.prepare(DesiredState(vhosts=(alice(web, tls=TLS(cert, key)), bob(web))))
    assert prepared.changed and prepared.applied == ("alice",)
    os.remove(cert)
    t = time.monotonic()
    out = site.engine.commit(prepared)
    elapsed = time.monotonic() - t
    assert out.status == "rolled back", out.message
    assert "SSLCertificateFile" in out.message
    assert elapsed < 30
    assert os.readlink(site.state_dir / "current") == before
    assert get(site.port, "www.example.org").body == b"<p>alice's site</p>\n"
    assert get(site.port, "www.bob.example").body == b"<p>bob's site</p>\n"


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("count", [1, 3000])
def test_file_descriptors_do_not_grow_with_vhosts(tmp_path: Path, web: Path, count: int):
    """The CustomLog-per-vhost trap is avoided: Apache's parent holds the same number of
    open files with 3,000 member vhosts as with one (one site-wide log with %v)."""
    require_binary("apache2")
    port = free_port()
    root = tmp_path / "apache"
    units = tmp_path / "units"
    units.mkdir()
    sites = tmp_path / "sites.conf"
    config = prepare_site(root, port, str(sites))
    backend = ApacheBackend(config)
    state = DesiredState(
        vhosts=tuple(
            bob(web, fqdn=f"www.site{i}.example", owner=f"m{i % 50}") for i in range(count)
        )
    )
    paths = {}
    for unit in backend.units(state, {}, 0):
        path = units / f"{unit.key[6:]}.conf"
        path.write_bytes(unit.content)
        paths[unit.key] = path
    sites.write_bytes(backend.index(paths)["sites.conf"])
    proc = start_apache(root, port, str(sites))
    try:
        assert get(port, f"www.site{count - 1}.example").body == b"<p>bob's site</p>\n"
        pid = int(proc.pid_file.read_text())
        assert _open_files(pid) <= 16, sorted(os.listdir(f"/proc/{pid}/fd"))
        logs = [
            f for f in os.listdir(f"/proc/{pid}/fd") if "log" in os.readlink(f"/proc/{pid}/fd/{f}")
        ]
        assert len(logs) <= 3
    finally:
        proc.stop()
