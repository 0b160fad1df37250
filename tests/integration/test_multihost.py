"""A two-host site of real processes: one dispatcher, a DNS host (its slave on 127.0.0.2,
named with a state and port of its own) and a web host (slave and apache2 on 127.0.0.3),
the member alice added through
the real admin operations over TLS. Built from the quickstart's pieces
(``quickstart.LocalSite`` for the CAs, the operator and alice's client files;
``slave_toml``/``dispatcher_toml``/``add_admin``; ``localdaemons`` for the daemons).

named listens only on the addresses of the machine's interfaces, and lo here carries only
127.0.0.1/8 (the test adds no address), so named answers on 127.0.0.1 at its own port.

Shows the two-phase apply across hosts: a change spanning both goes live on both; with
the web slave down nothing changes anywhere; a web slave killed after it prepared
converges once it is back (the dispatcher's retry)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import attrs
import pytest

from domtool.client import config as client_config
from domtool.client.connection import RemoteError, call
from domtool.devsite import localdaemons as L
from domtool.devsite import quickstart as Q
from domtool.slave.sitefiles import bootstrap_state
from tests.conftest import require_binary
from tests.served_site import processes_mentioning

pytestmark = [pytest.mark.daemons, pytest.mark.slow]

BIN = Path(sys.executable).parent
DNS_ADDR, WEB_ADDR = "127.0.0.2", "127.0.0.3"
NAMED_ADDR = "127.0.0.1"


@attrs.define
class SlaveHost:
    """One host of the site: its node, slave config, daemon config, ports, processes."""

    node: Q.NodeSpec
    dir: Path
    config: Path
    daemon_port: int
    slave: L.Daemon | None = None
    started: list[L.Daemon] = attrs.field(factory=list)

    @property
    def log(self) -> Path:
        return self.dir / "slave.log"

    def start(self) -> L.Daemon:
        """Start (or restart) this host's slave and wait until it listens."""
        argv = Q.console_script("domtool-slave", "domtool.slave.service")
        d = L.spawn(
            f"domtool-slave-{self.node.name}",
            argv + ["--config", str(self.config)],
            self.log,
            cwd=self.dir,
        )
        self.slave = d
        self.started.append(d)
        return d.wait_ready(
            lambda: L.connects(self.node.port, self.node.address),
            what=f"slave {self.node.name} listening",
            timeout=20,
        )


@attrs.define
class Site:
    local: Q.LocalSite
    dns: SlaveHost
    web: SlaveHost
    processes: list[L.Daemon]

    def submit(self, version: str) -> dict:
        """alice submits example.org version ``version``: an A record ``VERSION`` and the
        vhost www.example.org serving ``DIR/home/alice/VERSION/index.html``."""
        www = self.local.home / version
        www.mkdir(parents=True, exist_ok=True)
        for p in (self.local.root / "home", self.local.home, www):
            p.chmod(0o755)
        (www / "index.html").write_text(f"{version}\n")
        (www / "index.html").chmod(0o644)
        # ``domain``, not ``dom``: this site has no mail node for dom's handleMail.
        text = (
            'domain "example.org" with\n'
            f'  dnsA "{version}" "127.0.0.9";\n'
            f'  web "www" where DocumentRoot = "{www}" with end;\nend;\n'
        )
        member = client_config.load(self.local.member_config)
        return call(member, "submit", {"files": [{"name": "example.org", "text": text}]})

    def hosts(self) -> dict:
        """``domtool-admin hosts --json`` as the operator: each host's status."""
        done = subprocess.run(
            [str(BIN / "domtool-admin"), "--config", str(self.local.admin_config), "hosts"]
            + ["--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)["hosts"]

    def a_record(self, name: str) -> list[str]:
        return L.dns_records(self.dns.daemon_port, name, "A", address=NAMED_ADDR)

    def web_get(self) -> tuple[int, bytes]:
        return L.http_get(self.web.daemon_port, "www.example.org", address=WEB_ADDR)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    Q._write(path, data, mode)


def _slave_host(local: Q.LocalSite, name: str, address: str, role: str) -> SlaveHost:
    """Certificate, daemon (named or apache2) and slave config of one host; the daemon
    is started, the slave is not."""
    from domtool.dispatcher import ca

    d = local.root / f"slave-{name}"
    cert_name = f"{name}.coop.example"
    cert, key = ca.issue_host(local.ca_dir, cert_name)
    _write(d / "host.pem", cert)
    _write(d / "host.key", key, 0o600)
    _write(d / "host-ca.pem", ca.ca_certificate(local.ca_dir, ca.HOST))
    _write(d / "host-crl.pem", ca.current_crl(local.ca_dir, ca.HOST))
    state = d / "state"
    bind = apache = None
    if role == "dns":
        bootstrap_state(state, {"bind": "zones.conf"})
        # named binds only interface addresses: 127.0.0.1 (see the module docstring).
        port = L.free_port(udp=True, address=NAMED_ADDR)
        rndc = L.free_port(address=NAMED_ADDR)
        bind = L.prepare_named(
            d / "bind", port, rndc, state / "current" / "bind" / "zones.conf", address=NAMED_ADDR
        )
        local.daemons.append(L.start_named(bind))
    else:
        bootstrap_state(state, {"apache": "sites.conf"})
        port = L.free_port(address=address)
        apache = L.prepare_apache(
            d / "apache", port, state / "current" / "apache" / "sites.conf", address=address
        )
        local.daemons.append(L.start_apache(apache))
    node = Q.NodeSpec(name, (role,), cert_name, address, L.free_port(address=address))
    config = d / "slave.toml"
    text = Q.slave_toml(cert_name, name, node.port, address=address, apache=apache, bind=bind)
    _write(config, text.encode())
    return SlaveHost(node, d, config, port)


@pytest.fixture
def site():
    """The whole two-host site, running; afterwards every process it started is gone."""
    require_binary("named", "named-checkzone", "named-checkconf", "rndc", "apache2")
    # Apache's children (www-data when root) must reach alice's pages: not under pytest's
    # private tmp directory.
    top = Path(tempfile.mkdtemp(prefix="domtool-multihost-"))
    top.chmod(0o755)
    root = top / "site"
    local = Q.LocalSite(root, Q.Progress(0, quiet=True))
    hosts: list[SlaveHost] = []
    try:
        local.prepare_dir()
        local.build_pki()
        dns = _slave_host(local, "ns", DNS_ADDR, "dns")
        hosts.append(dns)
        web = _slave_host(local, "web", WEB_ADDR, "web")
        hosts.append(web)
        dns.start()
        web.start()
        d = root / "dispatcher"
        text = Q.dispatcher_toml(
            local.ports["dispatcher"],
            [dns.node, web.node],
            extra=("retry_initial = 0.5", "retry_max = 2"),
        )
        _write(d / "dispatcher.toml", text.encode())
        Q.add_admin(d / "state", local.admin_serial)
        argv = Q.console_script("domtool-dispatcher", "domtool.dispatcher.service")
        disp = L.spawn(
            "domtool-dispatcher",
            argv + ["--config", str(d / "dispatcher.toml")],
            d / "dispatcher.log",
            cwd=d,
        )
        local.daemons.append(disp)
        local._wait_listening(disp, local.ports["dispatcher"])
        # alice, through the operator's admin operations over TLS.
        admin = client_config.load(local.admin_config)
        added = call(admin, "adduser", {"user": "alice"})
        local.member_config = local._member_files(
            "alice", added["cert_pem"].encode(), added["key_pem"].encode()
        )
        grants = [("domain", "example.org"), ("path", str(local.home))]
        grants += [("user", "alice"), ("group", "alice")]
        for cls, value in grants:
            call(admin, "grant", {"user": "alice", "class": cls, "value": value})
        yield Site(local, dns, web, local.daemons)
    finally:
        everything = list(local.daemons) + [p for h in hosts for p in h.started]
        pids = [p.pid for p in everything]
        for p in everything:
            if p.alive():
                os.kill(p.pid, signal.SIGCONT)  # a test may have stopped one
        for h in hosts:
            for p in h.started:
                p.stop()
        local.stop()
        try:
            for pid in pids:
                with pytest.raises(ProcessLookupError):
                    os.kill(pid, 0)
            assert processes_mentioning(str(root)) == []
        finally:
            shutil.rmtree(top, ignore_errors=True)


def _gens(hosts: dict) -> dict[str, int]:
    return {name: h["generation"] for name, h in hosts.items()}


def test_a_change_spanning_both_hosts_goes_live_on_both(site):
    """One submit (a zone with a record, and a vhost) is applied on the DNS host and the
    web host: the DNS host's named answers the new record and the vhost's A record (the web
    node's address), apache2 on 127.0.0.3 serves the new document root, and each host's
    generation advanced as the operator's ``hosts --json`` shows."""
    before = site.hosts()
    assert before["ns"]["roles"] == ["dns"] and before["web"]["roles"] == ["web"]
    assert before["ns"]["reachable"] and before["web"]["reachable"]
    assert site.a_record("v1.example.org") == []
    result = site.submit("v1")
    assert result["applied"] is True, result
    assert {h: r["status"] for h, r in result["hosts"].items()} == {
        "ns": "applied",
        "web": "applied",
    }
    assert site.a_record("v1.example.org") == ["v1.example.org. 3600 A 127.0.0.9"]
    assert site.a_record("www.example.org") == [f"www.example.org. 3600 A {WEB_ADDR}"]
    assert site.web_get() == (200, b"v1\n")
    after = site.hosts()
    for h in ("ns", "web"):
        assert after[h]["generation"] > before[h]["generation"], (before, after)
        assert after[h]["pending"] is False
        assert after[h]["generation"] == result["hosts"][h]["generation"]


def test_with_the_web_slave_down_nothing_changes_on_either_host(site):
    """The web slave is stopped (SIGTERM) before a submit that changes both hosts: the
    submit is refused or applies nothing, naming the web host; the DNS host, which could
    have prepared, keeps its generation and still answers the old record, not the new.
    When the web slave is back, the refused change does not reach it either, and the next
    change applies on both (the DNS host was left with no prepared transaction)."""
    first = site.submit("v1")
    assert first["applied"] is True, first
    before = site.hosts()
    assert site.web.slave.stop() is not None
    try:
        result = site.submit("v2")
    except RemoteError as e:  # refused outright: fine, as long as it says why
        text = str(e) + " ".join(e.details)
        assert "web" in text, text
    else:
        assert result["applied"] is False, result
        statuses = {h: r.get("status") for h, r in result.get("hosts", {}).items()}
        assert "applied" not in statuses.values(), result
        assert any(r.startswith("web is unreachable") for r in result["refused"]), result
    assert site.a_record("v2.example.org") == []
    assert site.a_record("v1.example.org") == ["v1.example.org. 3600 A 127.0.0.9"]
    assert site.web_get() == (200, b"v1\n")  # apache2 itself still runs, unchanged
    after = site.hosts()
    assert after["ns"]["generation"] == before["ns"]["generation"], (before, after)
    assert after["ns"]["pending"] is False and after["web"]["pending"] is False
    assert after["web"]["reachable"] is False
    # The refused change is not carried to the web host when it comes back either.
    site.web.start()
    time.sleep(3)  # longer than the dispatcher's retry_max (2 s)
    assert site.web_get() == (200, b"v1\n")
    assert site.a_record("v2.example.org") == []
    again = site.hosts()
    assert _gens(again) == _gens(before), (before, again)
    assert again["web"]["reachable"] is True and again["web"]["pending"] is False
    # The DNS host holds no transaction left over (it was aborted, not left prepared): the
    # next change applies on both hosts at once.
    third = site.submit("v3")
    assert third["applied"] is True, third
    assert {h: r["status"] for h, r in third["hosts"].items()} == {
        "ns": "applied",
        "web": "applied",
    }
    assert site.a_record("v3.example.org") == ["v3.example.org. 3600 A 127.0.0.9"]
    assert site.web_get() == (200, b"v3\n")


def _waiting_in_epoll(pid: int) -> bool:
    """The process's main thread sleeps in epoll_wait (its reactor is idle), sampled
    twice 50 ms apart."""
    for _ in range(2):
        try:
            if "epoll" not in Path(f"/proc/{pid}/wchan").read_text():
                return False
        except OSError:
            return False
        time.sleep(0.05)
    return True


def _prepared_lines(log: Path) -> int:
    try:
        return sum("prepared " in line for line in log.read_text(errors="replace").splitlines())
    except OSError:
        return 0


def test_a_web_slave_killed_after_prepare_converges_when_it_returns(site):
    """The DNS slave is paused (SIGSTOP) so the web slave prepares first; once the web
    slave has logged its prepare (and answered), it is killed (SIGKILL) and the DNS slave
    resumed: the submit commits on the DNS host and leaves the web host pending. The web
    slave is restarted; within 30 s the dispatcher's retry brings the change there:
    apache2 serves it and the web host's generation advanced, nothing pending."""
    first = site.submit("v1")
    assert first["applied"] is True, first
    before = _gens(site.hosts())
    seen = _prepared_lines(site.web.log)
    dns_slave = site.dns.slave
    os.kill(dns_slave.pid, signal.SIGSTOP)
    outcome: dict = {}

    def submit() -> None:
        try:
            outcome["result"] = site.submit("v2")
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = e

    t = threading.Thread(target=submit, daemon=True)
    try:
        t.start()
        L.wait_for(
            lambda: _prepared_lines(site.web.log) > seen,
            timeout=20,
            what="the web slave's prepare",
        )
        # Its answer is written right after the log line, by the reactor, which then
        # waits in epoll again: wait for that, and at least 0.3 s.
        time.sleep(0.3)
        L.wait_for(
            lambda: _waiting_in_epoll(site.web.slave.pid),
            timeout=5,
            what="the web slave idle after its prepare",
        )
        site.web.slave.proc.kill()
        site.web.slave.proc.wait(timeout=10)
    finally:
        os.kill(dns_slave.pid, signal.SIGCONT)
    t.join(timeout=90)
    assert not t.is_alive(), "the submit did not return"
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result["hosts"]["ns"]["status"] == "applied", result
    assert result["hosts"]["web"]["status"] == "pending", result
    assert site.a_record("v2.example.org") == ["v2.example.org. 3600 A 127.0.0.9"]
    assert site.web_get() == (200, b"v1\n")
    middle = site.hosts()
    assert middle["web"]["pending"] is True and middle["web"]["reachable"] is False
    assert middle["ns"]["generation"] > before["ns"]

    t0 = time.monotonic()
    site.web.start()
    L.wait_for(lambda: site.web_get() == (200, b"v2\n"), timeout=30, what="web converging")
    took = time.monotonic() - t0
    after = L.wait_for(
        lambda: (h := site.hosts())["web"]["pending"] is False and h,
        timeout=10,
        what="web no longer pending",
    )
    assert after["web"]["reachable"] is True
    assert after["web"]["generation"] > before["web"], (before, after)
    assert after["ns"]["generation"] == middle["ns"]["generation"]
    assert took < 30
