"""The slave's ``tls_update``: what the dispatcher sends is checked before anything is
written, and a refusal changes nothing (a CRL or certificate of another CA, an older CRL,
a certificate for another host, revoked, expired or older than the one in force, a key
that is not its own); good files are installed and put in force at once."""

from __future__ import annotations

import datetime
from pathlib import Path

import attrs
import pytest
from cryptography import x509

from domtool.dispatcher import ca
from domtool.net import tls
from domtool.slave import ops
from domtool.slave.agent import Refused
from domtool.slave.tlsupdate import TlsUpdater

HOST = "ns1.example.coop"


@attrs.frozen
class Cfg:
    host: str
    ca: str
    crl: str
    certificate: str
    key: str


@pytest.fixture
def slave(tmp_path):
    d = tmp_path / "ca"
    ca.init_ca(d, "example.coop")
    cert, key = ca.issue_host(d, HOST)
    files = tmp_path / "tls"
    files.mkdir()
    (files / "host-ca.pem").write_bytes(ca.ca_certificate(d, ca.HOST))
    (files / "crl.pem").write_bytes(ca.current_crl(d, ca.HOST))
    (files / "slave.pem").write_bytes(cert)
    (files / "slave.key").write_bytes(key)
    cfg = Cfg(HOST, *(str(files / n) for n in ("host-ca.pem", "crl.pem", "slave.pem", "slave.key")))
    server = tls.slave_listener(
        tls.KeyPair(cert, key), tls.Trust(ca.ca_certificate(d, ca.HOST), ca.current_crl(d, ca.HOST))
    )
    return d, cfg, TlsUpdater(cfg, server), server


def _args(crl: bytes, cert: bytes | None = None, key: bytes | None = None):
    raw = {"crl_pem": crl.decode()}
    if cert is not None:
        raw |= {"cert_pem": cert.decode(), "key_pem": key.decode()}
    return ops.parse("tls_update", raw)


def _files(cfg) -> dict[str, bytes]:
    return {n: Path(getattr(cfg, n)).read_bytes() for n in ("crl", "certificate", "key")}


def test_a_renewed_crl_and_certificate_are_installed_and_in_force(slave):
    d, cfg, up, server = slave
    crl = ca.crl(d, kind=ca.HOST)
    cert, key = ca.issue_host(d, HOST)
    assert up.update(_args(crl, cert, key)) == {"crl": "updated", "certificate": "updated"}
    assert _files(cfg) == {"crl": crl, "certificate": cert, "key": key}
    assert server.trust.crl_pem == crl
    assert up.update(_args(crl, cert, key)) == {"crl": "unchanged", "certificate": "unchanged"}
    assert up.update(_args(crl)) == {"crl": "unchanged", "certificate": "not sent"}


def test_every_bad_update_is_refused_and_changes_nothing(slave, tmp_path):
    d, cfg, up, _ = slave
    other = tmp_path / "other"
    ca.init_ca(other, "example.coop")
    old_crl = ca.current_crl(d, ca.HOST)
    good_crl = ca.crl(d, kind=ca.HOST)
    (Path(cfg.crl)).write_bytes(good_crl)
    before = _files(cfg)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    expired = ca.issue_host(d, HOST, 1, now=past)
    older = ca.issue_host(d, HOST, 365, now=past)
    revoked = ca.issue_host(d, HOST)
    wrong_key = (ca.issue_host(d, HOST)[0], ca.issue_host(d, HOST)[1])
    cases = {
        "another CA's CRL": (_args(ca.current_crl(other, ca.HOST)), "was not signed"),
        "an older CRL": (_args(old_crl), "older than the one in force"),
        "another CA's certificate": (_args(good_crl, *ca.issue_host(other, HOST)), "not"),
        "another host's certificate": (
            _args(good_crl, *ca.issue_host(d, "ns2.example.coop")),
            "does not name domtool-host:ns1.example.coop",
        ),
        "an expired certificate": (_args(good_crl, *expired), "not valid now"),
        "an older certificate": (_args(good_crl, *older), "older than the one in force"),
        "a key of another certificate": (_args(good_crl, *wrong_key), "does not belong"),
    }
    for what, (args, why) in cases.items():
        with pytest.raises(Refused, match=why):
            up.update(args)
        assert _files(cfg) == before, what
    ca.revoke(d, x509.load_pem_x509_certificate(revoked[0]).serial_number, kind=ca.HOST)
    with pytest.raises(Refused, match="revoked"):
        up.update(_args(ca.current_crl(d, ca.HOST), *revoked))
    assert _files(cfg) == before


def test_cert_and_key_go_together():
    with pytest.raises(ops.BadArgs):
        ops.parse("tls_update", {"crl_pem": "x", "cert_pem": "y"})
