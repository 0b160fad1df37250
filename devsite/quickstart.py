"""``domtool-quickstart``: a whole domtool site on this machine, in one directory.

What it builds under ``--dir`` (default ``./site``), then runs, all on loopback:

1. ``ca/``: the member and host CAs (``dispatcher.ca.init_ca``), site ``coop.example``.
2. host certificates for the dispatcher (``dispatcher.coop.example``) and the one slave
   (``local.coop.example``, model node ``local``: the node the language's default site
   puts every zone, vhost and mail domain on).
3. ``bind/`` and ``apache/``: the real ``named`` and ``apache2`` on free high ports,
   with config roots of their own whose live configs include the slave's
   ``state/current/<backend>/<index>`` (``domtool.devsite.localdaemons``); ``postgres/``
   and ``mariadb/``: PostgreSQL and MariaDB on data directories of their own, socket
   and loopback TCP (``domtool.devsite.localdb``), driven by the slave's ``[databases]``
   (in ``/tmp/domtool-site-db-*``, linked from DIR, when root runs a DIR its ``postgres``
   and ``mysql`` users cannot reach).
4. ``slave/``: ``slave.toml`` and ``domtool-slave --config slave/slave.toml``.
5. ``dispatcher/``: its config and state, and ``domtool-dispatcher --config ...``.
6. ``admin/``: the operator's admin certificate and client config; ``alice/``: the member
   alice's certificate, key and ``client.toml``; alice is added with the grants of
   ``alice.perms`` through ``domtool-admin``'s operations over TLS.
7. submits the example configs (``../shared/examples/alice`` when present, else the
   package's copies) as alice, over TLS, like ``domtool FILE...``, and creates alice's
   database ``alice_www`` (PostgreSQL, else MariaDB) like ``domtool db create``;
8. prints what each host now serves: each zone's records as ``named`` answers them
   (dnspython), each vhost's answer over HTTP with its Host header; and what to try next.

Home directories: alice's grants are those of ``alice.perms`` (``/home/alice``), so her
example configs type-check as written. This machine may have no ``/home/alice``; the
site does not create it (it writes nothing outside ``--dir``). It grants alice one more
path, ``DIR/home/alice``, creates ``DIR/home/alice/public_html`` with a page, and writes
``DIR/alice/example.org``: the example with ``DocumentRoot`` there, which serves that
page once submitted. Vhosts whose document root does not exist still answer (Apache
says 404 at ``/``, and 204 at the reserved probe path).

Without ``--serve`` everything started is stopped before exiting. With ``--serve`` it
keeps running until SIGTERM or SIGINT and writes ``DIR/endpoints.json``::

    {"dispatcher": "127.0.0.1:P", "dns": "127.0.0.1:P", "http": "127.0.0.1:P",
     "postgres": "127.0.0.1:P", "mysql": "127.0.0.1:P",
     "client_config": "/abs/DIR/alice/client.toml",
     "admin_config": "/abs/DIR/admin/client.toml", "pids": {"named": N, ...},
     "smtp": "127.0.0.1:P", "imap": "127.0.0.1:P", "vmail_root": "/abs/DIR/mail/vmail",
     "mailman_rest": "http://USER:PASS@127.0.0.1:P/3.1"}

Mail (as root, with Exim and Courier installed): ``DIR/mail`` holds a real Exim and
Courier imapd on loopback (``domtool.devsite.quickmail``); after the submit, the site makes
alice's mailbox alice@example.org (the ``vmail`` operation), sends to two of example.net's
aliases over SMTP and reads one back over IMAP; the summary shows it.

With Mailman 3 installed, a Mailman core runs too and alice's list team@lists.example.org
is submitted with her examples (``domtool.devsite.quickstart_lists``).

A re-run replaces a directory an earlier quickstart made (it holds ``quickstart.json``);
it refuses any other non-empty directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs

from domtool.client import config as client_config
from domtool.devsite import localdaemons as L
from domtool.devsite import localdb, quickstart_lists
from domtool.slave.sitefiles import bootstrap_state
from domtool.util.files import atomic_write

SITE = "coop.example"
DISPATCHER = "dispatcher.coop.example"
SLAVE_HOST = "local.coop.example"
NODE = "local"
ADMIN = "operator"
MEMBER = "alice"
MEMBER_DATABASE = "alice_www"
MARKER = "quickstart.json"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class SiteError(Exception):
    """A step of building or starting the site failed; the message says which and why."""


def examples_dir() -> Path:
    """``../shared/examples`` beside the checkout when present, else tests/data/examples."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "shared" / "examples", here / "tests" / "data" / "examples"):
        if (candidate / "alice.perms").is_file():
            return candidate
    raise SiteError("cannot find the example configs (../shared/examples or tests/data/examples)")


def console_script(name: str, module: str) -> list[str]:
    """argv prefix running a console script of this venv, or ``python -m module``."""
    exe = Path(sys.executable).parent / name
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", module]


class Progress:
    """Numbered steps on stderr: ``[3/9] starting named``; silent with ``quiet``."""

    def __init__(self, total: int, quiet: bool = False) -> None:
        self.total, self.n, self.quiet = total, 0, quiet
        self.t0 = time.monotonic()

    def step(self, what: str) -> None:
        self.n += 1
        if not self.quiet:
            print(f"[{self.n}/{self.total}] {what}", file=sys.stderr, flush=True)

    def note(self, what: str) -> None:
        if not self.quiet:
            print(f"      {what}", file=sys.stderr, flush=True)


@attrs.define
class LocalSite:
    """Everything one quickstart made and started (see the module docstring)."""

    root: Path
    progress: Progress
    daemons: list[L.Daemon] = attrs.field(factory=list)
    ports: dict[str, int] = attrs.field(factory=dict)
    admin_config: Path | None = None
    member_config: Path | None = None
    bind_config: object = None
    apache_config: object = None
    mailman: object = None  # domtool.devsite.mailman_daemon.MailmanSite when Mailman runs
    submitted: object = None
    db_servers: dict = attrs.field(factory=dict)  # kind -> localdb.Postgres / MariaDB
    database: object = None  # the answer to alice's db_create
    db_tmp: Path | None = None  # the servers' trees when DIR is not reachable by them
    admin_serial: int | None = None
    mail: object = None  # Exim and Courier (domtool.devsite.quickmail), when they run
    mail_uid: int = 0
    mail_demo: object = None

    # -- paths ---------------------------------------------------------------------

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def state_dir(self) -> Path:
        return self.root / "slave" / "state"

    @property
    def home(self) -> Path:
        return self.root / "home" / MEMBER

    # -- building ------------------------------------------------------------------

    def prepare_dir(self) -> None:
        r = self.root
        if r.exists() and any(r.iterdir()):
            if not (r / MARKER).is_file():
                raise SiteError(
                    f"{r} is not empty and was not made by domtool-quickstart; "
                    "choose another --dir or empty it"
                )
            self.progress.note(f"replacing the previous local site in {r}")
            shutil.rmtree(r)
        r.mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)  # Apache's children (www-data) must reach DIR/home/alice/public_html
        (r / MARKER).write_text(json.dumps({"site": SITE, "created": time.time()}) + "\n")

    def build_pki(self) -> None:
        from cryptography import x509

        from domtool.dispatcher import ca

        ca.init_ca(self.ca_dir, SITE)
        for host, d in ((DISPATCHER, "dispatcher"), (SLAVE_HOST, "slave")):
            cert, key = ca.issue_host(self.ca_dir, host)
            _write(self.root / d / "host.pem", cert)
            _write(self.root / d / "host.key", key, 0o600)
        for sub in ("dispatcher", "slave"):
            _write(self.root / sub / "host-ca.pem", ca.ca_certificate(self.ca_dir, ca.HOST))
            _write(self.root / sub / "host-crl.pem", ca.current_crl(self.ca_dir, ca.HOST))
        _write(
            self.root / "dispatcher" / "member-ca.pem", ca.ca_certificate(self.ca_dir, ca.MEMBER)
        )
        _write(self.root / "dispatcher" / "member-crl.pem", ca.current_crl(self.ca_dir, ca.MEMBER))
        # The admin's grant signing key (never the dispatcher's); the slave trusts its .pub.
        from domtool import grantsig

        private, public = grantsig.new_signing_key()
        _write(self.root / "admin" / "grant-signing.key", private, 0o600)
        _write(self.root / "slave" / "grant-signing.pub", public)
        self.ports["dispatcher"] = L.free_port()
        cert, key = ca.issue_member(self.ca_dir, ADMIN)
        self.admin_serial = x509.load_pem_x509_certificate(cert).serial_number
        self.admin_config = self._member_files(ADMIN, cert, key)

    def _member_files(self, user: str, cert: bytes, key: bytes) -> Path:
        from domtool.dispatcher import ca

        d = self.root / ("admin" if user == ADMIN else user)
        _write(d / f"{user}.pem", cert)
        _write(d / f"{user}.key", key, 0o600)
        _write(d / "host-ca.pem", ca.ca_certificate(self.ca_dir, ca.HOST))
        text = client_config.dump(
            f"127.0.0.1:{self.ports['dispatcher']}",
            DISPATCHER,
            f"{user}.pem",
            f"{user}.key",
            "host-ca.pem",
        )
        _write(d / "client.toml", text.encode())
        return d / "client.toml"

    def start_daemons(self) -> None:
        have_named = all(
            L.binary(b) for b in ("named", "named-checkzone", "named-checkconf", "rndc")
        )
        have_apache = L.apache_binary() is not None
        indexes = {}
        if have_apache:
            indexes["apache"] = "sites.conf"
        if have_named:
            indexes["bind"] = "zones.conf"
        if not indexes:
            raise SiteError("neither named nor apache2 is installed (run scripts/setup as root)")
        bootstrap_state(self.state_dir, indexes)
        current = self.state_dir / "current"
        quickstart_lists.start_mailman(self)  # it starts slowly: waited for below
        if have_named:
            self.ports["dns"] = L.free_port(udp=True)
            self.ports["rndc"] = L.free_port()
            self.bind_config = L.prepare_named(
                self.root / "bind",
                self.ports["dns"],
                self.ports["rndc"],
                current / "bind" / "zones.conf",
            )
            self.progress.note(
                f"named on 127.0.0.1:{self.ports['dns']} (config {self.root / 'bind'})"
            )
            self.daemons.append(L.start_named(self.bind_config))
        else:
            self.progress.note("named is not installed: no DNS in this site")
        if have_apache:
            self.ports["http"] = L.free_port()
            self.apache_config = L.prepare_apache(
                self.root / "apache", self.ports["http"], current / "apache" / "sites.conf"
            )
            self.progress.note(
                f"apache2 on 127.0.0.1:{self.ports['http']} (config {self.root / 'apache'})"
            )
            self.daemons.append(L.start_apache(self.apache_config))
        else:
            self.progress.note("apache2 is not installed: no web in this site")
        from domtool.devsite import quickmail

        why = quickmail.available()
        if why is None:
            quickmail.start(self, MEMBER)
        else:
            self.progress.note(why)
        self.start_databases()
        quickstart_lists.wait_mailman(self)  # started first: it boots while the others do

    def start_databases(self) -> None:
        """PostgreSQL and MariaDB, whichever is installed, under DIR/postgres, DIR/mariadb.

        Run as root, the servers run as the ``postgres`` and ``mysql`` users, who must
        reach their trees: when a directory above DIR shuts others out (``/root``), the
        trees go to a fresh ``/tmp/domtool-site-db-*`` instead (linked from DIR, and
        removed when the site stops)."""
        base = self.root
        if os.geteuid() == 0 and not localdb.reachable_by_others(self.root):
            self.db_tmp = Path(tempfile.mkdtemp(prefix="domtool-site-db-"))
            self.db_tmp.chmod(0o755)
            base = self.db_tmp
        for kind, name, start, have in (
            ("postgres", "postgres", localdb.start_postgres, localdb.postgres_bindir()),
            ("mysql", "mariadb", localdb.start_mariadb, localdb.mariadb_binaries()),
        ):
            if not have:
                self.progress.note(f"{name} is not installed: no {kind} databases in this site")
                continue
            if base != self.root:
                (self.root / name).symlink_to(base / name)
            server = start(base / name)
            self.daemons.append(server.daemon)
            self.db_servers[kind] = server
            self.ports[kind] = server.port
            self.progress.note(f"{name} on 127.0.0.1:{server.port} (data {self.root / name})")

    def start_slave(self) -> None:
        self.ports["slave"] = L.free_port()
        text = slave_toml(
            SLAVE_HOST,
            NODE,
            self.ports["slave"],
            apache=self.apache_config,
            bind=self.bind_config,
            databases={k: s.slave_table() for k, s in self.db_servers.items()},
            grant_keys=("grant-signing.pub",),
        )
        if self.mail:
            from domtool.devsite import quickmail

            text += "\n".join(quickmail.slave_lines(self.mail["exim"])) + "\n"
        text += quickstart_lists.slave_backend(self)
        path = self.root / "slave" / "slave.toml"
        _write(path, text.encode())
        argv = console_script("domtool-slave", "domtool.slave.service") + ["--config", str(path)]
        d = L.spawn(
            "domtool-slave", argv, self.root / "slave" / "slave.log", cwd=self.root / "slave"
        )
        self.daemons.append(d)
        self._wait_listening(d, self.ports["slave"])
        self.progress.note(f"domtool-slave on 127.0.0.1:{self.ports['slave']} (log {d.log})")

    def _wait_listening(self, d: L.Daemon, port: int, timeout: float = 20.0) -> None:
        """Wait until ``d`` listens on ``port``; else it is stopped and SiteError says why,
        with its log."""
        try:
            d.wait_ready(
                lambda: L.connects(port), what=f"{d.name} listening on {port}", timeout=timeout
            )
        except (RuntimeError, TimeoutError) as e:
            raise SiteError(str(e)) from None

    def start_dispatcher(self) -> None:
        """dispatcher.toml (one node, ``local``, with every role, whose slave is ours),
        the store with the operator as its first admin (pinned to the operator's
        certificate), then ``domtool-dispatcher --config``."""
        from domtool.model import ROLES

        d = self.root / "dispatcher"
        node = NodeSpec(NODE, ROLES, SLAVE_HOST, "127.0.0.1", self.ports["slave"])
        text = dispatcher_toml(self.ports["dispatcher"], [node])
        path = d / "dispatcher.toml"
        _write(path, text.encode())
        add_admin(d / "state", self.admin_serial)
        argv = console_script("domtool-dispatcher", "domtool.dispatcher.service")
        proc = L.spawn(
            "domtool-dispatcher", argv + ["--config", str(path)], d / "dispatcher.log", cwd=d
        )
        self.daemons.append(proc)
        self._wait_listening(proc, self.ports["dispatcher"])
        self.progress.note(
            f"domtool-dispatcher on 127.0.0.1:{self.ports['dispatcher']} (log {proc.log})"
        )

    def register_members(self) -> None:
        """alice with alice.perms plus DIR/home/alice, through the admin operations."""
        from domtool.client.connection import call
        from domtool.perms import parse_perms

        perms = parse_perms((examples_dir() / "alice.perms").read_text(), MEMBER)
        admin = client_config.load(self.admin_config)
        grants = [*perms.grants(), ("path", str(self.home))]
        added = call(admin, "adduser", {"user": MEMBER})
        self.member_config = self._member_files(
            MEMBER, added["cert_pem"].encode(), added["key_pem"].encode()
        )
        for cls, value in grants:
            call(admin, "grant", {"user": MEMBER, "class": cls, "value": value})
        self.progress.note(f"alice may use: {', '.join(f'{c} {v}' for c, v in grants)}")
        # What domtool-admin sign-grants does: the slave checks alice's units against it.
        from domtool.client.grant_signing import sign_held

        key = (self.root / "admin" / "grant-signing.key").read_bytes()
        sign_held(lambda op, a: call(admin, op, a), MEMBER, key, serial=1)
        # alice's own home inside the site, and her editable config serving it.
        www = self.home / "public_html"
        www.mkdir(parents=True, exist_ok=True)
        for p in (self.root / "home", self.home, www):
            p.chmod(0o755)
        (www / "index.html").write_text("<h1>Hello from alice's example.org</h1>\n")
        (www / "index.html").chmod(0o644)
        _write(
            self.root / MEMBER / "example.org",
            (
                "(* alice's example.org, serving a page from her home inside the local site. *)\n"
                f'dom "example.org" where\n  DocumentRoot = "{www}"\nwith\n'
                '  dnsA "hello" "127.0.0.1";\nend;\n'
            ).encode(),
        )

    def submit_examples(self) -> dict:
        from domtool.client.connection import call

        files = []
        for p in sorted((examples_dir() / "alice").iterdir()):
            files.append({"name": p.name, "text": p.read_text(encoding="utf-8")})
        files += quickstart_lists.files(self)
        self.progress.note("submitting " + ", ".join(f["name"] for f in files) + " as alice")
        member = client_config.load(self.member_config)
        self.submitted = call(member, "submit", {"files": files}, self._progress_frame)
        if self.mail:
            from domtool.devsite import quickmail

            self.mail_demo = quickmail.demo(self, member)
        for kind in ("postgres", "mysql"):
            if kind in self.db_servers:
                self.database = call(member, "db_create", {"kind": kind, "name": MEMBER_DATABASE})
                self.progress.note(f"created alice's {kind} database {MEMBER_DATABASE}")
                break
        return self.submitted

    def _progress_frame(self, p: dict) -> None:
        self.progress.note(f"[{p.get('done')}/{p.get('total')}] {p.get('what', '')}")

    # -- what is served --------------------------------------------------------------

    def served(self) -> dict:
        """Each zone's records from named, each vhost's HTTP answer (from the state
        alice's examples evaluate to)."""
        from domtool.lang.api import check_source
        from domtool.perms import parse_perms

        ex = examples_dir()
        perms = parse_perms((ex / "alice.perms").read_text(), MEMBER)
        sources = [(p.name, p.read_text()) for p in sorted((ex / "alice").iterdir())]
        state = check_source(sources, perms).state
        out: dict = {"dns": {}, "http": {}, "lists": quickstart_lists.served(self)}
        if state is None:
            return out
        if "dns" in self.ports:
            for z in state.zones:
                try:
                    out["dns"][z.name] = L.dns_records(self.ports["dns"], z.name, "ANY")
                    names = sorted({r.name for r in z.records if r.name != "@"})
                    for n in names:
                        out["dns"][z.name] += L.dns_records(self.ports["dns"], f"{n}.{z.name}", "A")
                except Exception as e:  # noqa: BLE001 - shown to the user as is
                    out["dns"][z.name] = [f"(no answer: {e})"]
        if "http" in self.ports:
            for v in state.vhosts:
                try:
                    status, body = L.http_get(self.ports["http"], v.fqdn)
                    out["http"][v.fqdn] = {
                        "status": status,
                        "body": body[:200].decode(errors="replace"),
                    }
                except OSError as e:
                    out["http"][v.fqdn] = {"status": None, "body": f"(no answer: {e})"}
        return out

    def endpoints(self) -> dict:
        return {
            "dispatcher": f"127.0.0.1:{self.ports['dispatcher']}",
            "dns": f"127.0.0.1:{self.ports['dns']}" if "dns" in self.ports else None,
            "http": f"127.0.0.1:{self.ports['http']}" if "http" in self.ports else None,
            **{
                k: f"127.0.0.1:{self.ports[k]}" if k in self.ports else None
                for k in ("postgres", "mysql")
            },
            "client_config": str(self.member_config.resolve()) if self.member_config else None,
            "admin_config": str(self.admin_config.resolve()) if self.admin_config else None,
            "pids": {d.name: d.pid for d in self.daemons},
            **_mail_endpoints(self),
            **quickstart_lists.endpoints(self),
        }

    # -- stopping ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything started, newest first (dispatcher, slave, then the daemons)."""
        for d in reversed(self.daemons):
            d.stop()
        self.daemons.clear()
        if self.db_tmp is not None:
            shutil.rmtree(self.db_tmp, ignore_errors=True)
            self.db_tmp = None


@attrs.frozen
class NodeSpec:
    """One node of a site and where its slave listens (a ``[[nodes]]`` table)."""

    name: str
    roles: tuple[str, ...]
    host: str  # the slave's certificate name
    address: str  # where the slave listens, and the node's ipv4
    port: int


def slave_toml(
    host: str,
    node: str,
    port: int,
    *,
    address: str = "127.0.0.1",
    apache=None,
    bind=None,
    databases=None,
    state_dir: str = "state",
    grant_keys: tuple[str, ...] = (),
) -> str:
    """A ``slave.toml`` for a slave of the local site (certificate files ``host.pem``,
    ``host.key``, ``host-ca.pem``, ``host-crl.pem`` beside it) driving the given
    ``ApacheConfig``/``BindConfig`` (None: that backend is off)."""
    lines = [
        "# domtool slave of a local site",
        "[slave]",
        f'host = "{host}"',
        f'node = "{node}"',
        f'dispatcher = ["{DISPATCHER}"]',
        f'state_dir = "{state_dir}"',
        f'listen_address = "{address}"',
        f"listen_port = {port}",
        "",
        "[tls]",
        'certificate = "host.pem"',
        'key = "host.key"',
        'ca = "host-ca.pem"',
        'crl = "host-crl.pem"',
    ]
    if grant_keys:
        lines.append("grant_keys = [" + ", ".join(f'"{k}"' for k in grant_keys) + "]")
    if apache is not None:
        c = apache
        lines += [
            "",
            "[backends.apache]",
            f'base_config = "{c.base_config}"',
            f'live_config = "{c.live_config}"',
            f'server_root = "{c.server_root}"',
            f'log_dir = "{c.log_dir}"',
            f'address = "{c.address}"',
            f"port = {c.port}",
            f'binary = "{c.binary}"',
        ]
    if bind is not None:
        c = bind
        lines += [
            "",
            "[backends.bind]",
            f'base_config = "{c.base_config}"',
            f'live_config = "{c.live_config}"',
            f'rndc_config = "{c.rndc_config}"',
            f'address = "{c.address}"',
            f"port = {c.port}",
            f'control_address = "{c.control_address}"',
            f"control_port = {c.control_port}",
            f'checkzone = "{c.checkzone}"',
            f'checkconf = "{c.checkconf}"',
            f'rndc = "{c.rndc}"',
        ]
    for kind, table in sorted((databases or {}).items()):
        lines += ["", f"[databases.{kind}]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in sorted(table.items())]
    return "\n".join(lines) + "\n"


def dispatcher_toml(port: int, nodes: list[NodeSpec], *, extra: tuple[str, ...] = ()) -> str:
    """A ``dispatcher.toml`` for the local site's dispatcher (files ``host.pem``,
    ``host.key`` beside it, CAs in ``../ca``) on 127.0.0.1:``port`` with these nodes;
    ``extra`` lines are added to its ``[dispatcher]`` table (e.g. ``retry_max = 2``)."""
    lines = [
        "# domtool dispatcher of a local site",
        "[dispatcher]",
        f'host = "{DISPATCHER}"',
        'state_dir = "state"',
        'ca_dir = "../ca"',
        'listen_address = "127.0.0.1"',
        f"listen_port = {port}",
        f'site_domains = ["{SITE}"]',
        "slave_timeout = 60",
        *extra,
        "",
        "[tls]",
        'certificate = "host.pem"',
        'key = "host.key"',
        'member_ca = "../ca/member/ca.pem"',
        'member_crl = "../ca/member/crl.pem"',
        'host_ca = "../ca/host/ca.pem"',
        'host_crl = "../ca/host/crl.pem"',
    ]
    for n in nodes:
        lines += [
            "",
            "[[nodes]]",
            f'name = "{n.name}"',
            "roles = [" + ", ".join(f'"{r}"' for r in n.roles) + "]",
            f'ipv4 = "{n.address}"',
            f'host = "{n.host}"',
            f'address = "{n.address}"',
            f"port = {n.port}",
        ]
    return "\n".join(lines) + "\n"


def add_admin(state_dir: Path, serial: int | None) -> None:
    """Create the dispatcher's store with the operator as its first admin, pinned to the
    operator's certificate serial."""
    from domtool.dispatcher.store import Store

    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(state_dir)
    try:
        store.add_member(ADMIN, is_admin=True, cert_serial=serial)
    finally:
        store.close()


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode)


def _gist(body: str) -> str:
    """An HTML page's <title> or first heading, else its first words."""
    import re

    m = re.search(r"<(title|h1)>(.*?)</\1>", body, re.I | re.S)
    text = m.group(2) if m else re.sub(r"<[^>]*>", " ", body)
    return " ".join(text.split())[:60]


def _mail_endpoints(site: LocalSite) -> dict:
    from domtool.devsite import quickmail

    return quickmail.endpoints(site)


def report(site: LocalSite, served: dict) -> str:
    """What each host serves now, and the exact commands to try next."""
    from domtool.client.domtool_cli import render_apply

    cfg = site.member_config.resolve()
    lines = ["", "== alice's examples were submitted through the dispatcher:"]
    lines += ["  " + line for line in render_apply(site.submitted).split("\n")]
    if served["dns"]:
        lines.append(f"== named on 127.0.0.1:{site.ports['dns']} answers:")
        for zone, records in served["dns"].items():
            lines.append(f"  {zone}")
            lines += [f"    {r}" for r in records]
    if served["http"]:
        lines.append(f"== apache2 on 127.0.0.1:{site.ports['http']} answers GET / with each Host:")
        for host, r in served["http"].items():
            lines.append(f"  {host:<20} {r['status']}  {_gist(str(r['body']))}")
        lines.append(
            "  (403/404: the example's DocumentRoot under /home/alice does not exist on this "
            "machine; the site's own DIR/home/alice is served by the config below)"
        )
    from domtool.devsite import quickmail

    lines += quickmail.report_lines(site, site.mail_demo)
    lines += quickstart_lists.report(site, served)
    if site.database is not None:
        d = site.database
        lines.append(f"== alice's databases (domtool db list): {d['kind']} {d['name']}")
        ep = d.get("endpoint", {})
        where = ep.get("socket_dir") or ep.get("socket")
        lines.append(f"  socket {where}; TCP {ep.get('host')}:{ep.get('port')} (after db passwd)")
    dom = f"{sys.executable.rsplit('/', 1)[0]}/domtool"
    lines += [
        "",
        "== try next (as alice):",
        f"  {dom} --config {cfg} perms",
        f"  {dom} --config {cfg} {site.root.resolve() / MEMBER / 'example.org'}"
        "    # serves DIR/home/alice/public_html",
        f"  {dom} --config {cfg} describe example.org",
        f"  {dom} --config {cfg} history example.org",
    ]
    if site.database is not None:
        lines.append(f"  {dom} --config {cfg} db list")
    if "http" in site.ports:
        lines.append(f"  curl -H 'Host: www.example.org' http://127.0.0.1:{site.ports['http']}/")
    if "dns" in site.ports:
        lines.append(f"  dig @127.0.0.1 -p {site.ports['dns']} hello.example.org A")
    lines.append(
        f"  {dom.replace('domtool', 'domtool-admin')} --config {site.admin_config.resolve()} hosts"
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="domtool-quickstart",
        description="Build and run a whole domtool site on this machine (CAs, dispatcher, one "
        "slave with real named and apache2 on loopback, the member alice), submit alice's "
        "example configs over TLS, and show what is served.",
        epilog="Without --serve everything is stopped before exiting. Exit status: 0 ok, 1 a "
        "step failed (the message says which), 2 usage.",
    )
    p.add_argument("--dir", default="site", help="where to build the site (default ./site)")
    p.add_argument(
        "--serve",
        action="store_true",
        help="keep running until SIGTERM/SIGINT; write DIR/endpoints.json",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    root = Path(args.dir).resolve()
    progress = Progress(8, quiet=args.quiet)
    site = LocalSite(root, progress)
    stop = threading.Event()

    serving = False

    def on_signal(signum, frame) -> None:
        stop.set()
        if not serving:  # still building: stop at once (the finally below cleans up)
            raise SiteError(
                f"interrupted by {signal.Signals(signum).name}; stopping what was started"
            )

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        progress.step(f"site directory {root}")
        site.prepare_dir()
        progress.step("certificate authorities and certificates")
        site.build_pki()
        progress.step("named and apache2 on loopback")
        site.start_daemons()
        progress.step("the slave agent")
        site.start_slave()
        progress.step("the dispatcher")
        site.start_dispatcher()
        progress.step("the member alice")
        site.register_members()
        progress.step("submitting alice's examples as alice over TLS")
        site.submit_examples()
        progress.step("asking the daemons what they serve")
        served = site.served()
        if args.json:
            print(
                json.dumps(
                    {
                        "endpoints": site.endpoints(),
                        "served": served,
                        "submit": site.submitted,
                        "mail": site.mail_demo,
                        "database": site.database,
                    },
                    indent=2,
                )
            )
        else:
            print(report(site, served))
        if args.serve:
            serving = True
            ep = root / "endpoints.json"
            _write(ep, (json.dumps(site.endpoints(), indent=2) + "\n").encode())
            if not args.json:
                print(
                    f"\nserving; endpoints in {ep}; stop with Ctrl-C or SIGTERM (pid {os.getpid()})"
                )
            sys.stdout.flush()
            while not stop.wait(0.5):
                dead = [d for d in site.daemons if not d.alive()]
                if dead:
                    raise SiteError(f"{dead[0].name} exited; its log:\n{dead[0].log_tail()}")
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - every failure is reported, then everything stops
        from domtool.client.connection import RemoteError, Unreachable

        if isinstance(
            e, SiteError | Unreachable | RemoteError | TimeoutError | RuntimeError | OSError
        ):
            print(f"domtool-quickstart: {e}", file=sys.stderr)
            if isinstance(e, RemoteError):
                for d in e.details:
                    print(f"  {d}", file=sys.stderr)
            return EXIT_FAILED
        raise
    finally:
        serving = True  # a second signal must not interrupt the clean-up
        site.stop()
        for s, h in old.items():
            signal.signal(s, h)
        try:
            (root / "endpoints.json").unlink()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
