"""``domtool-admin init``: a site from nothing, idempotent, conflicts refused without
--force (nothing written), --force replaces exactly what differs."""

from __future__ import annotations

import hashlib
from pathlib import Path

from domtool.client.admin_cli import main
from domtool.dispatcher import ca
from domtool.dispatcher.store import Store


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock" and "sqlite3" not in p.name
    }


def init(state: Path, *extra: str) -> int:
    return main(
        ["init", "--site", "example.coop", "--dispatcher", "d.example.coop", "--state", str(state)]
        + list(extra)
    )


def test_init_makes_the_site_and_a_second_run_changes_nothing(tmp_path, capsys):
    state = tmp_path / "state"
    assert init(state, "--host", "ns1.example.coop") == 0
    out = capsys.readouterr().out
    assert out.count("created") == 6
    for rel in ("tls/dispatcher.pem", "tls/hosts/ns1.example.coop.key", "admin/client.toml"):
        assert (state / rel).exists(), rel
    assert (state / "tls/dispatcher.key").stat().st_mode & 0o777 == 0o600
    assert (state / "admin/admin.key").stat().st_mode & 0o777 == 0o600
    assert 'address = "d.example.coop:1234"' in (state / "admin/client.toml").read_text()
    store = Store.open(state)
    rec = store.member("admin")
    store.close()
    assert rec is not None and rec.is_admin and rec.cert_serial is not None
    before = _tree(state)
    assert init(state, "--host", "ns1.example.coop") == 0
    assert capsys.readouterr().out.count("kept") == 6
    assert _tree(state) == before


def test_a_conflict_is_refused_and_nothing_is_written(tmp_path, capsys):
    state = tmp_path / "state"
    assert init(state) == 0
    before = _tree(state)
    # Another site's name, and a dispatcher certificate from another CA.
    other = tmp_path / "other"
    ca.init_ca(other, "example.coop")
    cert, key = ca.issue_host(other, "d.example.coop")
    (state / "tls/dispatcher.pem").write_bytes(cert)
    (state / "tls/dispatcher.key").write_bytes(key)
    before = _tree(state)
    capsys.readouterr()
    assert init(state) == 1
    err = capsys.readouterr().err
    assert "dispatcher certificate" in err and "not signed by this site's host CA" in err
    assert "--force" in err
    assert _tree(state) == before
    assert (
        main(
            [
                "init",
                "--site",
                "other.coop",
                "--dispatcher",
                "d.example.coop",
                "--state",
                str(state),
            ]
        )
        == 1
    )
    assert "made for site 'example.coop', not 'other.coop'" in capsys.readouterr().err
    assert _tree(state) == before


def test_force_replaces_only_what_differs(tmp_path, capsys):
    state = tmp_path / "state"
    assert init(state) == 0
    admin_before = (state / "admin/admin.pem").read_bytes()
    (state / "tls/dispatcher.pem").write_bytes(b"junk")
    assert init(state) == 1
    assert init(state, "--force") == 0
    out = capsys.readouterr().out
    assert "replaced dispatcher certificate" in out and "kept     CAs" in out
    assert (state / "admin/admin.pem").read_bytes() == admin_before
    assert init(state) == 0  # and now it is consistent again


def test_an_expired_admin_certificate_is_reissued_with_force_and_the_store_follows(tmp_path):
    state = tmp_path / "state"
    assert init(state) == 0
    import datetime

    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=400)
    cert, key = ca.issue_member(state / "ca", "admin", 30, now=old)
    (state / "admin/admin.pem").write_bytes(cert)
    assert init(state) == 1
    assert init(state, "--force") == 0
    from cryptography import x509

    serial = x509.load_pem_x509_certificate((state / "admin/admin.pem").read_bytes()).serial_number
    store = Store.open(state)
    assert store.member("admin").cert_serial == serial
    store.close()


def test_the_admins_files_once_handed_over_are_not_reissued(tmp_path, capsys):
    """deploy.md says: give STATE/admin to the admin, then delete it. Running init again
    must not mint a new admin certificate (the store would pin it and lock them out)."""
    import shutil

    state = tmp_path / "state"
    assert init(state) == 0
    store = Store.open(state)
    serial = store.member("admin").cert_serial
    store.close()
    shutil.rmtree(state / "admin")
    capsys.readouterr()
    assert init(state) == 0
    assert "handed over" in capsys.readouterr().out
    assert not (state / "admin").exists()
    store = Store.open(state)
    assert store.member("admin").cert_serial == serial
    store.close()
    assert len(ca.issued(state / "ca", ca.MEMBER)) == 1
    # Once that certificate is revoked, init issues a new one.
    ca.revoke(state / "ca", "admin")
    assert init(state) == 0
    assert (state / "admin" / "admin.pem").exists()
