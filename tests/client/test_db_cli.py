"""``domtool db`` over real mutual TLS against the stand-in dispatcher: what each action
sends (the password only from stdin or the terminal, never argv), how answers and
refusals print, the exit codes."""

from __future__ import annotations

import io

import pytest

from domtool.client.domtool_cli import main
from domtool.dispatcher import ca

from .fake_dispatcher import FakeDispatcher, Refuse, member_config

EP = {"socket_dir": "/run/pg", "host": "127.0.0.1", "port": 5432}


def _create(member, args, progress):
    if not args["name"].startswith(member):
        raise Refuse("refused", f"{args['name']!r} is not a database name of {member}'s")
    return {
        "kind": args["kind"],
        "name": args["name"],
        "changed": True,
        "message": "created",
        "endpoint": EP,
        "host": "db1",
        "quota": {"used": 1, "limit": 20},
    }


HANDLERS = {
    "db_create": _create,
    "db_drop": lambda m, a, p: {"message": "dry run: would drop" if not a["apply"] else "dropped"},
    "db_list": lambda m, a, p: {
        "host": "db1",
        "databases": [{"kind": "postgres", "name": "alice_blog", "owner": m, "size": 7471619}],
        "roles": {"postgres": ["alice"]},
        "endpoints": {"postgres": EP},
        "errors": {},
        "quota": {"used": 1, "limit": 20},
    },
    "db_passwd": lambda m, a, p: {"kind": a["kind"], "role": a["role"], "created": False},
    "db_grant": lambda m, a, p: {"kind": a["kind"], "database": a["database"], "role": a["role"]},
}


@pytest.fixture
def site(tmp_path):
    ca_dir = tmp_path / "ca"
    ca.init_ca(ca_dir, "example.coop")
    fake = FakeDispatcher(ca_dir, dict(HANDLERS), {"alice"}).start()
    cfg = member_config(ca_dir, tmp_path / "alice", "alice", fake.port)
    yield fake, str(cfg)
    fake.stop()


def test_create_list_grant_and_drop(site, capsys):
    fake, cfg = site
    assert main(["db", "create", "postgres", "alice_blog", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "created: postgres database alice_blog on db1 (1/20" in out and "/run/pg" in out
    assert main(["--config", cfg, "db", "list"]) == 0  # options before the command too
    out = capsys.readouterr().out
    assert "alice_blog" in out and "7.1 MiB" in out and "postgres roles: alice" in out
    assert main(["db", "grant", "postgres", "alice_blog", "alice_ro", "--config", cfg]) == 0
    assert "granted alice_ro" in capsys.readouterr().out
    assert main(["db", "drop", "postgres", "alice_blog", "--config", cfg]) == 0
    assert "dry run" in capsys.readouterr().out
    assert main(["db", "drop", "postgres", "alice_blog", "--doit", "--config", cfg]) == 0
    ops = [str(r) for r in fake.requests]
    assert any("'apply': False" in r for r in ops) and any("'apply': True" in r for r in ops)


def test_a_refusal_exits_1_with_the_message(site, capsys):
    _, cfg = site
    assert main(["db", "create", "mysql", "bob_x", "--config", cfg]) == 1
    assert "is not a database name of alice's" in capsys.readouterr().err


def test_passwd_reads_stdin_and_never_prints_it(site, capsys, monkeypatch):
    fake, cfg = site
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    args = ["db", "passwd", "mysql", "alice", "--password-stdin", "--config", cfg]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "password of mysql role alice set" in out and "correct horse" not in out + err
    assert "'password': 'correct horse'" in str(fake.requests[-1])


def test_passwd_without_a_terminal_or_stdin_flag_is_a_usage_error(site, capsys, monkeypatch):
    _, cfg = site
    monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
    assert main(["db", "passwd", "mysql", "alice", "--config", cfg]) == 2
    assert "--password-stdin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["db", "passwd", "mysql", "alice", "--password-stdin", "--config", cfg]) == 2


def test_a_bad_kind_is_a_usage_error(capsys):
    assert main(["db", "create", "oracle", "alice"]) == 2
    assert "invalid choice" in capsys.readouterr().err
