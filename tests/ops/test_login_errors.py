"""A member whose certificate is refused, expired, revoked, unknown or removed, or whose
login breaks inside the dispatcher, gets a clear message at once from the real
dispatcher (a site made by ``domtool-admin init``), never the handshake timeout."""

from __future__ import annotations

import datetime
import sqlite3
import time
from pathlib import Path

import pytest

from domtool.client import config as client_config
from domtool.dispatcher import ca
from domtool.util.files import atomic_write

from . import opsite

FAST = 5.0  # seconds; the dispatcher's handshake timeout is 30


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = opsite.make(tmp_path_factory.mktemp("login") / "site")
    s.start()
    yield s
    s.stop()


def _member_dir(site, d: Path, name: str, cert: bytes, key: bytes) -> str:
    d.mkdir(parents=True)
    atomic_write(d / f"{name}.pem", cert, 0o644)
    atomic_write(d / f"{name}.key", key, 0o600)
    atomic_write(d / "host-ca.pem", ca.ca_certificate(site.ca_dir, ca.HOST), 0o644)
    toml = client_config.dump(
        f"127.0.0.1:{site.dport}", opsite.DISPATCHER, f"{name}.pem", f"{name}.key", "host-ca.pem"
    )
    atomic_write(d / "client.toml", toml.encode(), 0o644)
    return str(d / "client.toml")


def _whoami(config: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    code, out = opsite.run_cli("domtool", "whoami", config=config)
    return code, out, time.monotonic() - t0


def _adduser(site, name: str) -> str:
    code, out = site.admin("adduser", name, "--out", str(site.root / name))
    assert code == 0, out
    return str(site.root / name / "client.toml")


@pytest.mark.slow
def test_each_refusal_is_explained_at_once(site, tmp_path):
    alice = _adduser(site, "alice")
    code, out, _ = _whoami(alice)
    assert code == 0 and "alice" in out, out

    now = datetime.datetime.now(datetime.UTC)
    cert, key = ca.issue_member(site.ca_dir, "carol", 1, now=now - datetime.timedelta(days=3))
    expired = _member_dir(site, tmp_path / "carol", "carol", cert, key)
    other = tmp_path / "otherca"
    ca.init_ca(other, "example.coop")
    foreign = _member_dir(site, tmp_path / "eve", "eve", *ca.issue_member(other, "eve"))
    unknown = _member_dir(
        site, tmp_path / "mallory", "mallory", *ca.issue_member(site.ca_dir, "mallory")
    )
    bob = _adduser(site, "bob")
    ca.revoke(site.ca_dir, "bob")
    dave = _adduser(site, "dave")
    code, out = site.admin("rmuser", "dave", "--doit")
    assert code == 0, out
    time.sleep(1.0)  # the dispatcher re-reads the CRL every 0.3 s here

    cases = {
        "expired": (expired, 3, "your certificate has expired"),
        "revoked": (bob, 3, "your certificate has been revoked"),
        "another CA": (foreign, 3, "not issued by this site's member CA"),
        "unknown member": (unknown, 1, "mallory is not a member"),
        "removed member": (dave, 3, "revoked"),
    }
    for what, (config, want_code, want) in cases.items():
        code, out, took = _whoami(config)
        assert code == want_code and want in out, f"{what}: exit {code}: {out}"
        assert took < FAST, f"{what}: {took:.1f} s"
        print(f"{what}: exit {code} in {took:.2f} s")


@pytest.mark.slow
def test_a_login_that_breaks_is_reported_at_once_not_after_the_timeout(site):
    alice = str(site.root / "alice" / "client.toml")
    if not Path(alice).exists():
        alice = _adduser(site, "alice")
    db = sqlite3.connect(site.state / "domtool.sqlite3")
    db.execute("ALTER TABLE members RENAME TO members_gone")
    db.commit()
    try:
        code, out, took = _whoami(alice)
    finally:
        db.execute("ALTER TABLE members_gone RENAME TO members")
        db.commit()
        db.close()
    assert code == 1 and "the login failed: internal error" in out, out
    assert took < FAST, f"{took:.1f} s"
    assert "the login failed" in (site.root / "dispatcher.log").read_text()
