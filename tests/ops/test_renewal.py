"""Renewal without a restart, on a site made by ``domtool-admin init`` with the real
dispatcher and slave running: the clock is moved past half the CRLs' lives (they are
re-signed as if issued 30 days minus a few seconds ago, so they go stale seconds from
now), and the host certificates are swapped for ones that expire in seconds too.
``domtool-admin ca renew`` (what the package's timer runs) renews them all; after the old
ones' end has passed, the same two processes still let alice in, still refuse revoked
bob, and the dispatcher still reaches the slave, which got its renewed certificate and
the host CRL from the dispatcher (``tls_update``), not from a copy."""

from __future__ import annotations

import datetime
import time
from pathlib import Path

import pytest
from cryptography import x509

from domtool.dispatcher import ca, renewal
from domtool.util.files import atomic_write

from . import opsite

LEFT = 12.0  # seconds the aged CRLs and certificates have left


@pytest.fixture
def site(tmp_path):
    s = opsite.make(tmp_path / "site")
    s.start()
    yield s
    s.stop()


def _whoami(site, who: str) -> tuple[int, str]:
    return opsite.run_cli("domtool", "whoami", config=str(site.root / who / "client.toml"))


@pytest.mark.slow
def test_a_crl_past_half_its_life_and_expiring_certificates_are_renewed_without_restart(site):
    for who in ("alice", "bob"):
        code, out = site.admin("adduser", who, "--out", str(site.root / who))
        assert code == 0, out
    ca.revoke(site.ca_dir, "bob")
    opsite.wait_for(lambda: _whoami(site, "bob")[0] != 0, timeout=10, what="bob refused")
    pids = [d.pid for d in site.daemons]

    # Move the clock: every CRL and host certificate is near its end.
    now = datetime.datetime.now(datetime.UTC)
    end = now + datetime.timedelta(seconds=LEFT)
    aged = now - datetime.timedelta(days=ca.CRL_DAYS) + datetime.timedelta(seconds=LEFT)
    for kind in (ca.MEMBER, ca.HOST):
        ca.crl(site.ca_dir, kind=kind, now=aged)
    tls = site.state / "tls"
    stls = site.slave_state / "tls"  # the slave's own copies (it is "another host")
    short = {}
    atomic_write(stls / "host-crl.pem", ca.current_crl(site.ca_dir, ca.HOST), 0o644)
    for name, bases in (
        (opsite.DISPATCHER, [tls / "dispatcher"]),
        (opsite.SLAVE, [stls / "slave", tls / "hosts" / opsite.SLAVE]),
    ):
        cert, key = ca.issue_host(site.ca_dir, name, 1, now=end - datetime.timedelta(days=1))
        for base in bases:
            atomic_write(Path(f"{base}.key"), key, 0o600)
            atomic_write(Path(f"{base}.pem"), cert, 0o644)
        short[name] = x509.load_pem_x509_certificate(cert).serial_number
    time.sleep(1.0)  # the services poll every 0.3 s
    ports = {opsite.DISPATCHER: site.dport, opsite.SLAVE: site.sport}
    for name, port in ports.items():
        assert opsite.served_serial(site, port, name) == short[name], name
    assert site.admin("ping")[0] == 0  # the short-lived certificates are in use
    due = {(i.what, i.kind) for i in renewal.status(site.ca_dir, site.state) if i.due}
    assert {("CRL", "member"), ("CRL", "host"), ("host certificate", "host")} <= due
    code, out = opsite.run_cli(
        "domtool-admin", "ca", "status", str(site.ca_dir), "--state", str(site.state)
    )
    assert code == 1 and out.count("DUE") >= 4, out

    # The timer's job.
    code, out = opsite.run_cli(
        "domtool-admin", "ca", "renew", str(site.ca_dir), "--state", str(site.state)
    )
    assert code == 0, out
    assert "re-signed the member CRL" in out and "re-signed the host CRL" in out
    assert f"reissued the host certificate of {opsite.DISPATCHER}" in out
    assert f"reissued the host certificate of {opsite.SLAVE}" in out
    assert not [i for i in renewal.status(site.ca_dir, site.state) if i.due and i.what != "CA"]
    for base in (tls / "dispatcher", tls / "hosts" / opsite.SLAVE):
        cert = x509.load_pem_x509_certificate(Path(f"{base}.pem").read_bytes())
        assert ca._utc(cert, "not_valid_after") > now + datetime.timedelta(days=300)

    # Past the old CRLs' nextUpdate and the old certificates' notAfter.
    time.sleep(max(0.0, (end - datetime.datetime.now(datetime.UTC)).total_seconds()) + 1.0)
    code, out = _whoami(site, "alice")
    assert code == 0 and "alice" in out, out + site.logs()
    code, out = _whoami(site, "bob")
    assert code == 3 and "revoked" in out, out
    code, out = site.admin("ping")
    assert code == 0 and "ns1: up" in out, out + site.logs()
    for name, port in ports.items():
        base = tls / "dispatcher" if name == opsite.DISPATCHER else tls / "hosts" / name
        renewed = x509.load_pem_x509_certificate(Path(f"{base}.pem").read_bytes())
        assert opsite.served_serial(site, port, name) == renewed.serial_number, name
    assert [d.pid for d in site.daemons] == pids and all(d.alive() for d in site.daemons)
    # The slave got its renewed certificate, key and the host CRL from the dispatcher
    # (nobody copied them: the test never wrote its files after the renewal).
    assert (stls / "slave.pem").read_bytes() == (tls / "hosts" / f"{opsite.SLAVE}.pem").read_bytes()
    assert (stls / "host-crl.pem").read_bytes() == ca.current_crl(site.ca_dir, ca.HOST)
    logs = site.logs()
    assert "loaded the renewed CRL" in logs
    assert "installed the renewed certificate from the dispatcher" in logs
    assert "installed the renewed host CRL from the dispatcher" in logs
