"""Member TLS files snapshotted into root-owned storage before a root daemon opens them.

Issue 13, finding 3. Before: the vhost was rendered with the member's own paths, so the
member could swap in a garbage key afterwards and ``apache2 -t`` failed for everybody
(``test_a_member_replacing_their_key_breaks_apache_without_snapshots`` shows it with the
real Apache: seen failing first, and kept as the control). After: the slave copies and
validates the files at prepare time and renders only the copies.
"""

from __future__ import annotations

import datetime
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from domtool.model import TLS, DesiredState, Vhost
from domtool.slave import ops
from domtool.slave.snapshot import MAX_BYTES, SnapshotRefused, Snapshotter, read_member_file
from domtool.states import by_owner
from tests.slave.apache_daemon import (
    get,
    public_dir,
)
from tests.slave.engine_site import EngineSite, engine_site

NOW = datetime.datetime.now(datetime.UTC)


def make_cert(
    directory: Path, name: str, *, days: int = 1, start: int = -1, key=None
) -> tuple[str, str]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=start))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    c, k = directory / f"{name}.crt", directory / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(c), str(k)


@pytest.fixture
def homes(tmp_path):
    for m in ("alice", "bob"):
        (tmp_path / "home" / m).mkdir(parents=True)
    return tmp_path / "home"


def vhost(home: Path, tls: TLS | None, fqdn="www.alice.example") -> Vhost:
    return Vhost(
        fqdn=fqdn,
        owner="alice",
        domain="alice.example",
        nodes=("local",),
        document_root=str(home),
        user="alice",
        group="alice",
        server_admin="alice@alice.example",
        tls=tls,
    )


def snap(tmp_path, homes, tls) -> tuple[DesiredState, list[str]]:
    s = Snapshotter(str(tmp_path / "state" / "tls"))
    state = DesiredState(vhosts=(vhost(homes / "alice", tls),))
    return s.snapshot("alice", state, [str(homes / "alice")])


def test_valid_files_are_copied_root_only_and_the_vhost_points_at_the_copies(tmp_path, homes):
    cert, key = make_cert(homes / "alice", "www.alice.example")
    state, problems = snap(tmp_path, homes, TLS(cert, key))
    assert problems == []
    t = state.vhosts[0].tls
    store = tmp_path / "state" / "tls"
    assert Path(t.certificate).parent == store and Path(t.key).parent == store
    assert Path(t.certificate).read_bytes() == Path(cert).read_bytes()
    assert Path(t.key).read_bytes() == Path(key).read_bytes()
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(t.key).st_mode) == 0o600
    # The member changes their files afterwards: the copies do not move.
    Path(key).write_text("garbage\n")
    os.unlink(cert)
    assert b"PRIVATE KEY" in Path(t.key).read_bytes() and Path(t.certificate).exists()
    # Same content again: the same snapshot paths (nothing rewritten).
    cert2, key2 = make_cert(homes / "alice", "again")
    a, _ = snap(tmp_path, homes, TLS(cert2, key2))
    b, _ = snap(tmp_path, homes, TLS(cert2, key2))
    assert a == b


def _bad_cases(homes: Path) -> dict[str, tuple[TLS, str]]:
    a, b = homes / "alice", homes / "bob"
    cert, key = make_cert(a, "www.alice.example")
    _other_cert, other_key = make_cert(a, "other")
    old_cert, old_key = make_cert(a, "old", days=-1, start=-3)
    future_cert, future_key = make_cert(a, "future", days=5, start=2)
    bob_cert, _bob_key = make_cert(b, "bob")
    os.symlink(bob_cert, a / "link.crt")
    os.mkfifo(a / "fifo.key")
    (a / "big.key").write_bytes(b"x" * (MAX_BYTES + 1))
    (a / "text.crt").write_text("hello\n")
    k = ec.generate_private_key(ec.SECP256R1())
    enc = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    enc_cert, _ = make_cert(a, "enc", key=k)
    (a / "enc.key").write_bytes(enc)  # over make_cert's unencrypted one
    return {
        "a key that does not match": (TLS(cert, other_key), "does not match the certificate"),
        "an expired certificate": (TLS(old_cert, old_key), "expired on"),
        "a certificate not valid yet": (TLS(future_cert, future_key), "not valid before"),
        "a file outside the grants": (TLS(bob_cert, key), "not under any granted path"),
        "a symlink out of the grants": (TLS(str(a / "link.crt"), key), "not under any granted"),
        "a missing file": (TLS(str(a / "nope.crt"), key), "does not exist"),
        "a FIFO": (TLS(cert, str(a / "fifo.key")), "not a regular file"),
        "a file too large": (TLS(cert, str(a / "big.key")), f"at most {MAX_BYTES}"),
        "not PEM": (TLS(str(a / "text.crt"), key), "not a PEM certificate"),
        "an encrypted key": (TLS(enc_cert, str(a / "enc.key")), "an encrypted key"),
        "a bad chain": (TLS(cert, key, str(a / "text.crt")), "not a PEM certificate"),
    }


def test_every_bad_file_refuses_the_vhost_and_keeps_the_state(tmp_path, homes):
    cases = _bad_cases(homes)
    for what, (tls, expect) in cases.items():
        state, problems = snap(tmp_path, homes, tls)
        assert len(problems) == 1 and expect in problems[0], (what, problems)
        assert problems[0].startswith("alice: vhost www.alice.example: tls: "), problems
        assert state.vhosts[0].tls == tls, what  # nothing rewritten on refusal


def test_reading_never_follows_a_symlink_at_the_last_component(tmp_path, homes):
    """Even a symlink to the member's own file is read at its target (resolved first),
    and opening goes through O_NOFOLLOW: a race that swaps the resolved file for a
    symlink fails to open."""
    a = homes / "alice"
    cert, _key = make_cert(a, "www.alice.example")
    os.symlink(cert, a / "mine.crt")
    assert read_member_file(str(a / "mine.crt"), [str(a)]) == Path(cert).read_bytes()
    fd = os.open(cert, os.O_RDONLY)
    os.close(fd)
    os.rename(cert, str(a / "moved.crt"))
    os.symlink("/etc/passwd", cert)
    with pytest.raises(SnapshotRefused):
        read_member_file(cert, [str(a)])


def test_the_agent_renders_only_snapshots(tmp_path, homes):
    """A real Agent over the real engine (fake seams) with a Snapshotter: the committed
    vhost's TLS paths are the snapshots; a key that does not match refuses alice."""
    from tests.integration.test_authz_matrix_slave import make_agent, run

    agent = make_agent(tmp_path)
    agent.snapshotter = Snapshotter(str(tmp_path / "tls"))
    cert, key = make_cert(homes / "alice", "www.alice.example")
    grants = ops.Grants((str(homes / "alice"),), ("alice",), ("alice",))
    state = DesiredState(vhosts=(vhost(homes / "alice", TLS(cert, key)),))
    answer = run(agent, "prepare", ops.PrepareArgs("t1", {"alice": ops.OwnerChange(state, grants)}))
    assert answer["owners"]["alice"]["ok"], answer
    run(agent, "commit", ops.TxArgs("t1"))
    tls = by_owner(agent.state)["alice"].vhosts[0].tls
    assert tls.certificate.startswith(str(tmp_path / "tls")) and tls.key.startswith(
        str(tmp_path / "tls")
    )
    _c, other = make_cert(homes / "alice", "other")
    bad = DesiredState(vhosts=(vhost(homes / "alice", TLS(cert, other)),))
    answer = run(agent, "prepare", ops.PrepareArgs("t2", {"alice": ops.OwnerChange(bad, grants)}))
    assert not answer["owners"]["alice"]["ok"]
    assert "does not match the certificate" in answer["owners"]["alice"]["message"]


# -- with the real Apache -----------------------------------------------------------------


@pytest.fixture
def apache_site(tmp_path):
    with engine_site(tmp_path, make_cert(tmp_path, "default.invalid")) as site:
        yield site


def _kill_orphans(site: EngineSite) -> None:
    """The parent died in the graceful: end its children (this test's server only)."""
    import signal

    mark = site.proc.config.live_config.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"apache2" in cmd and mark in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _serves(site: EngineSite, tries: int = 30) -> bool:
    """Whether the TLS listener answers for alice's vhost within ~3 s (after a graceful)."""
    import time

    for _ in range(tries):
        try:
            get(site.tls_port, "www.alice.example", tls=True, timeout=1)
            return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.mark.daemons
def test_a_member_replacing_their_key_breaks_apache_without_snapshots(apache_site, tmp_path):
    """The control (the old way): alice's own paths in the config. She deletes her
    certificate: ``apache2 -t`` fails for the whole site. She puts it back and replaces
    her key with garbage: the next graceful restart takes the whole server down."""
    web = public_dir()
    try:
        cert, key = make_cert(web, "www.alice.example")
        v = vhost(web, TLS(cert, key))
        assert apache_site.engine.apply(DesiredState(vhosts=(v,))).status == "applied"
        saved = Path(cert).read_bytes()
        os.unlink(cert)
        check = apache_site.apache_t()
        assert check.returncode != 0 and "SSLCertificateFile" in check.stderr, check.stderr
        Path(cert).write_bytes(saved)
        Path(key).write_text("garbage\n")
        try:
            apache_site.proc.graceful()
        except RuntimeError:
            pass
        assert not _serves(apache_site), apache_site.proc.error_log()[-2000:]
    finally:
        _kill_orphans(apache_site)
        shutil.rmtree(web)


@pytest.mark.daemons
def test_with_snapshots_a_member_cannot_break_apache_by_changing_their_files(apache_site, tmp_path):
    """The snapshotted vhost serves its certificate; alice then deletes her certificate
    and replaces her key with garbage: ``apache2 -t`` still passes, a graceful restart
    keeps serving her (validated) certificate."""
    web = public_dir()
    try:
        cert, key = make_cert(web, "www.alice.example")
        state = DesiredState(vhosts=(vhost(web, TLS(cert, key)),))
        snapped, problems = Snapshotter(str(tmp_path / "state" / "tls")).snapshot(
            "alice", state, [str(web)]
        )
        assert problems == []
        assert apache_site.engine.apply(snapped).status == "applied"
        served = get(apache_site.tls_port, "www.alice.example", tls=True).peer_cert
        want = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        assert served == want.public_bytes(serialization.Encoding.DER)
        os.unlink(cert)
        Path(key).write_text("garbage\n")
        check = apache_site.apache_t()
        assert check.returncode == 0, check.stderr
        apache_site.proc.graceful()
        assert _serves(apache_site), apache_site.proc.error_log()[-2000:]
        served = get(apache_site.tls_port, "www.alice.example", tls=True).peer_cert
        assert served == want.public_bytes(serialization.Encoding.DER)
    finally:
        shutil.rmtree(web)
