"""The quickstart daemons test's database part: against the running local site (real
dispatcher and slave processes over mutual TLS, real PostgreSQL and MariaDB), alice's
``domtool db`` commands create, list, set a password, connect, are refused outside her
prefix, and drop; the operator's ``quota alice`` shows her databases' sizes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_databases(ep: dict) -> None:
    import psycopg
    import pymysql

    cfg = ep["client_config"]
    pg_port = int(ep["postgres"].rsplit(":", 1)[1])
    my_port = int(ep["mysql"].rsplit(":", 1)[1])
    # The summary's database of alice's is there.
    listed = _run("domtool", "--config", cfg, "db", "list")
    assert listed.returncode == 0 and "alice_www" in listed.stdout, listed.stderr
    made = _run("domtool", "--config", cfg, "db", "create", "mysql", "alice_shop")
    assert made.returncode == 0, made.stderr
    for kind in ("postgres", "mysql"):
        pw = _run(
            "domtool", "--config", cfg, "db", "passwd", kind, "alice", "--password-stdin",
            stdin="qs-Secret-1\n",
        )  # fmt: skip
        assert pw.returncode == 0 and "qs-Secret-1" not in pw.stdout + pw.stderr, pw.stderr
    psycopg.connect(
        host="127.0.0.1", port=pg_port, user="alice", password="qs-Secret-1", dbname="alice_www"
    ).close()
    pymysql.connect(
        host="127.0.0.1", port=my_port, user="alice", password="qs-Secret-1", database="alice_shop"
    ).close()
    foreign = _run("domtool", "--config", cfg, "db", "drop", "mysql", "bob_x", "--doit")
    assert foreign.returncode == 1 and "must be 'alice' or start with 'alice_'" in foreign.stderr
    quota = _run("domtool-admin", "--config", ep["admin_config"], "quota", "alice")
    assert quota.returncode == 0 and "alice_www" in quota.stdout and "alice_shop" in quota.stdout
    dry = _run("domtool", "--config", cfg, "db", "drop", "mysql", "alice_shop")
    assert dry.returncode == 0 and "dry run" in dry.stdout
    gone = _run("domtool", "--config", cfg, "db", "drop", "mysql", "alice_shop", "--doit")
    assert gone.returncode == 0, gone.stderr
    after = _run("domtool", "--config", cfg, "db", "list")
    assert "alice_shop" not in after.stdout and "alice_www" in after.stdout
