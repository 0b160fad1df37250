"""``domtool-admin``: preview writes what a one-host site would serve (and nothing for a
refused config), the CA commands, and the remote verbs' arguments (dry run unless --doit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from domtool import protocol
from domtool.client import config as client_config
from domtool.client.admin_cli import main
from domtool.dispatcher import ca

from .fake_dispatcher import FakeDispatcher, member_config

EXAMPLES = Path(__file__).resolve().parent.parent / "data" / "examples"
ALICE_PERMS = str(EXAMPLES / "alice.perms")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_writes_units_and_indexes_for_alice(tmp_path, capsys):
    """alice's examples render into DIR/apache and DIR/bind: a vhost file naming
    www.example.org, the sites.conf that includes it, and each zone with its index."""
    files = sorted(str(p) for p in (EXAMPLES / "alice").iterdir())
    out = tmp_path / "site"
    code, stdout, err = run(
        capsys, "preview", "--perms", ALICE_PERMS, "--user", "alice", "--out", str(out), *files
    )
    assert code == 0, err
    vhost = out / "apache" / "units" / "www.example.org.conf"
    assert 'ServerName "www.example.org"' in vhost.read_text()
    assert f'Include "{vhost}"' in (out / "apache" / "sites.conf").read_text()
    zone = out / "bind" / "units" / "example.org.zone"
    assert "example.org." in zone.read_text()
    assert 'zone "example.org"' in (out / "bind" / "zones.conf").read_text()
    assert "no daemon was checked" in stdout


def test_preview_json_lists_the_files(tmp_path, capsys):
    """--json prints every file written, by backend."""
    out = tmp_path / "site"
    code, stdout, _ = run(
        capsys,
        "preview",
        "--json",
        "--perms",
        ALICE_PERMS,
        "--user",
        "alice",
        "--out",
        str(out),
        str(EXAMPLES / "alice" / "example.org"),
    )
    assert code == 0
    listed = json.loads(stdout)["files"]
    assert str(out / "apache" / "units" / "www.example.org.conf") in listed["apache"]
    assert all(Path(f).is_file() for files in listed.values() for f in files)


@pytest.mark.parametrize("name", ["bob.example", "alias-in-domain", "foreign-path"])
def test_preview_of_a_refused_config_exits_1_and_writes_nothing(tmp_path, capsys, name):
    """Each error example: exit 1, the error in the published shape, no file written."""
    out = tmp_path / "site"
    path = str(EXAMPLES / "errors" / name)
    code, _, err = run(
        capsys, "preview", "--perms", ALICE_PERMS, "--user", "alice", "--out", str(out), path
    )
    assert code == 1
    assert f"{path}:" in err and ":error:" in err
    assert not out.exists()


def test_preview_usage_errors_exit_2(tmp_path, capsys):
    """A missing permissions file or config file, or a missing --out, is exit 2."""
    f = str(EXAMPLES / "alice" / "example.org")
    assert (
        run(
            capsys,
            "preview",
            "--perms",
            str(tmp_path / "no"),
            "--user",
            "alice",
            "--out",
            str(tmp_path),
            f,
        )[0]
        == 2
    )
    assert (
        run(
            capsys,
            "preview",
            "--perms",
            ALICE_PERMS,
            "--user",
            "alice",
            "--out",
            str(tmp_path),
            str(tmp_path / "missing.org"),
        )[0]
        == 2
    )
    assert run(capsys, "preview", "--perms", ALICE_PERMS, "--user", "alice", f)[0] == 2


def test_ca_init_member_and_revoke(tmp_path, capsys):
    """ca init creates both CAs (and refuses to overwrite); ca member writes a certificate,
    key (0600) and a client.toml that loads; ca revoke puts it on the CRL."""
    d = str(tmp_path / "ca")
    assert run(capsys, "ca", "init", d, "--site", "example.coop")[0] == 0
    code, _, err = run(capsys, "ca", "init", d, "--site", "example.coop")
    assert code == 1 and "refusing to overwrite" in err
    out = tmp_path / "alice"
    code, _, err = run(
        capsys,
        "ca",
        "member",
        d,
        "alice",
        "--out",
        str(out),
        "--dispatcher",
        "127.0.0.1:1234",
        "--dispatcher-name",
        "d.example.coop",
    )
    assert code == 0, err
    assert (out / "alice.key").stat().st_mode & 0o777 == 0o600
    cfg = client_config.load(out / "client.toml")
    assert cfg.name == "d.example.coop" and cfg.certificate == str(out / "alice.pem")
    code, stdout, _ = run(capsys, "ca", "revoke", d, "alice", "--json")
    assert code == 0 and len(json.loads(stdout)["revoked"]) == 1
    assert any(e.revoked_at for e in ca.issued(d) if e.name == "alice")


def test_remote_verbs_send_their_schema_args_and_dry_run_by_default(tmp_path, capsys):
    """regen/rmdom/rmuser send apply=false unless --doit; perms USER asks perms_of; grant
    sends class and value; the answers are printed, and a dry run says how to apply."""
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")

    def echo(member, args, progress):
        if args.get("apply") is False:
            plan = {"alice": {"local": {"added": [], "changed": [], "removed": ["zone:x.org"]}}}
            return protocol.DryRun("dry run: pass apply", plan, per_member=True).to_json()
        return {"applied": True, "hosts": {}, "refused": [], "args": args}

    ops = ["regen", "admin_rmdom", "rmuser", "grant", "perms_of", "hosts", "set_quota"]
    fake = FakeDispatcher(ca_dir, {op: echo for op in ops}, {"root"}).start()
    try:
        cfg = str(member_config(ca_dir, tmp_path / "root", "root", fake.port))
        code, out, _ = run(capsys, "regen", "--config", cfg)
        assert code == 0 and "--doit" in out and "local: -zone:x.org" in out
        assert fake.requests[-1][1:] == ("regen", {"apply": False})
        assert run(capsys, "regen", "--doit", "--config", cfg)[0] == 0
        assert fake.requests[-1][1:] == ("regen", {"apply": True})
        assert run(capsys, "rmdom", "example.org", "--config", cfg)[0] == 0
        assert fake.requests[-1][1:] == ("admin_rmdom", {"domain": "example.org", "apply": False})
        assert run(capsys, "grant", "alice", "domain", "example.org", "--config", cfg)[0] == 0
        assert fake.requests[-1][2] == {"user": "alice", "class": "domain", "value": "example.org"}
        assert run(capsys, "perms", "alice", "--config", cfg)[0] == 0
        assert fake.requests[-1][1:] == ("perms_of", {"user": "alice"})
        assert run(capsys, "quota", "alice", "disk_mb", "100", "--config", cfg)[0] == 0
        assert fake.requests[-1][1:] == (
            "set_quota",
            {"user": "alice", "resource": "disk_mb", "value": 100},
        )
        code, _, err = run(capsys, "grant", "alice", "colour", "blue", "--config", cfg)
        assert code == 2 and "invalid choice" in err
    finally:
        fake.stop()


def test_every_command_has_help(capsys):
    """--help works on the command and on each subcommand (exit 0, a usage line)."""
    assert run(capsys, "--help")[0] == 0
    for cmd in ("ca init", "ca member", "preview", "adduser", "regen", "rmdom", "quota", "audit"):
        code, out, _ = run(capsys, *cmd.split(), "--help")
        assert code == 0 and out.startswith("usage: domtool-admin"), cmd


def test_adduser_writes_the_issued_certificate_key_and_a_client_config(tmp_path, capsys):
    """adduser writes the certificate the dispatcher issued, its key (0600, never printed),
    the host CA and a client.toml pointing at the admin's dispatcher."""
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")

    def adduser(member, args, progress):
        cert, key = ca.issue_member(ca_dir, args["user"])
        return {
            "user": args["user"],
            "admin": False,
            "serial": "ab",
            "cert_pem": cert.decode(),
            "key_pem": key.decode(),
        }

    fake = FakeDispatcher(ca_dir, {"adduser": adduser}, {"root"}).start()
    try:
        cfg = str(member_config(ca_dir, tmp_path / "root", "root", fake.port))
        out = tmp_path / "bob"
        code, stdout, err = run(capsys, "adduser", "bob", "--out", str(out), "--config", cfg)
        assert code == 0, err
        assert "PRIVATE KEY" not in stdout
        assert (out / "bob.key").stat().st_mode & 0o777 == 0o600
        bob = client_config.load(out / "client.toml")
        assert bob.port == fake.port and bob.certificate == str(out / "bob.pem")
        code, _, err = run(capsys, "adduser", "bob", "--out", str(out), "--config", cfg)
        assert code == 2 and "not empty" in err
    finally:
        fake.stop()


def test_ca_status_warns_about_a_crl_near_its_end_and_says_what_renews_it(tmp_path, capsys):
    """A CRL with less than 7 days left makes `ca status` exit 1 naming what renews it;
    after `ca renew` (the timer's command) it exits 0 and lists every CA, CRL and
    certificate with its expiry."""
    d = str(tmp_path / "ca")
    ca.init_ca(d, "example.coop")
    ca.issue_member(d, "alice")
    ca.crl(d, kind=ca.MEMBER, days=3)
    code, out, _ = run(capsys, "ca", "status", d)
    assert code == 1
    assert "DUE  CRL                member CRL" in out and "domtool-admin ca renew" in out
    code, out, _ = run(capsys, "ca", "renew", d)
    assert code == 0 and "re-signed the member CRL" in out and "host CRL" not in out
    code, out, _ = run(capsys, "ca", "status", d, "--json")
    items = json.loads(out)
    assert code == 0 and not any(i["due"] for i in items)
    assert sorted({(i["what"], i["ca"]) for i in items}) == [
        ("CA", "host"),
        ("CA", "member"),
        ("CRL", "host"),
        ("CRL", "member"),
        ("member certificate", "member"),
    ]
    assert all(i["expires"] and i["renews"] for i in items)
