"""Benchmark ``domtool db create`` end to end on the local site, against the servers' floor.

Builds the quickstart's site (``bench_e2e.start_site``: CAs, real ``domtool-dispatcher``
and ``domtool-slave`` processes, real PostgreSQL and MariaDB on loopback; named and
apache2 too), then for each kind:

1. end to end, as alice over mutual TLS with a fresh connection per request (what
   ``domtool db create KIND NAME`` does): N creates of ``alice_bN``, timed from connect
   until the answer (the dispatcher's name and quota checks, its ``db_list`` and
   ``db_create`` to the slave, the slave's re-check and the SQL). After each answer the
   database is looked up directly on the server (it must already exist, owned by alice);
   then each is dropped again with ``db_drop --doit`` (timed too).
2. the server's floor: the same SQL the slave runs for a create, on one open admin
   connection (PostgreSQL: ``CREATE DATABASE ... OWNER``, ``REVOKE ... FROM PUBLIC``;
   MariaDB: ``CREATE DATABASE ... COMMENT``, ``GRANT``), and its ``DROP``, median of N.

    .venv/bin/python bench/bench_db.py [--n 20] [--keep DIR]

Needs root (the servers run as postgres/mysql, Apache's children as www-data).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_e2e import ms, percentile, start_site  # noqa: E402

from domtool.client import config as client_config  # noqa: E402
from domtool.client.connection import call  # noqa: E402


def server_of(site, kind: str):
    from domtool.slave.db_mysql import MariaDBConfig, MariaDBServer
    from domtool.slave.db_postgres import PostgresConfig, PostgresServer

    s = site.db_servers[kind]
    if kind == "postgres":
        return PostgresServer(PostgresConfig(**s.slave_table()))
    return MariaDBServer(MariaDBConfig(**s.slave_table()))


def end_to_end(site, kind: str, n: int) -> dict:
    member = client_config.load(site.member_config)
    server = server_of(site, kind)
    create, drop, failures = [], [], []
    for i in range(n):
        name = f"alice_b{i}"
        t0 = time.perf_counter()
        answer = call(member, "db_create", {"kind": kind, "name": name})
        create.append(time.perf_counter() - t0)
        held = server.databases().get(name)
        if not answer.get("changed") or held is None or held.owner != "alice":
            failures.append(f"create {name}: {answer} / {held}")
    for i in range(n):
        name = f"alice_b{i}"
        t0 = time.perf_counter()
        call(member, "db_drop", {"kind": kind, "name": name, "apply": True})
        drop.append(time.perf_counter() - t0)
        if name in server.databases():
            failures.append(f"drop {name}: still there")
    return {"create": create, "drop": drop, "failures": failures}


def baseline(site, n: int) -> list[float]:
    """``whoami`` over a fresh TLS connection: the request's fixed cost."""
    member = client_config.load(site.member_config)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call(member, "whoami", {})
        out.append(time.perf_counter() - t0)
    return out


def floor(site, kind: str, n: int) -> dict:
    """The slave's own SQL for a create and a drop, on one open admin connection."""
    from domtool import dbnames

    create, drop = [], []
    if kind == "postgres":
        from psycopg import sql

        server = server_of(site, kind)
        with server._connect() as conn:
            conn.execute("CREATE ROLE floor LOGIN")
            for i in range(n):
                db = sql.Identifier(f"floor_{i}")
                t0 = time.perf_counter()
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER floor").format(db))
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
                create.append(time.perf_counter() - t0)
            for i in range(n):
                t0 = time.perf_counter()
                conn.execute(
                    sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(f"floor_{i}"))
                )
                drop.append(time.perf_counter() - t0)
            conn.execute("DROP ROLE floor")
    else:
        server = server_of(site, kind)
        conn = server._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER 'floor'@'%' IDENTIFIED VIA unix_socket")
                for i in range(n):
                    t0 = time.perf_counter()
                    cur.execute(f"CREATE DATABASE {dbnames.backtick(f'floor_{i}')} COMMENT 'floor'")
                    cur.execute(f"GRANT ALL ON `floor\\_{i}`.* TO 'floor'@'%'")
                    create.append(time.perf_counter() - t0)
                for i in range(n):
                    t0 = time.perf_counter()
                    cur.execute(f"DROP DATABASE {dbnames.backtick(f'floor_{i}')}")
                    drop.append(time.perf_counter() - t0)
                cur.execute("DROP USER 'floor'@'%'")
        finally:
            conn.close()
    return {"create": create, "drop": drop}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="creates (and drops) of each kind")
    ap.add_argument("--keep", help="build the site in this directory and leave it there")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-db-"))
    t0 = time.perf_counter()
    site = start_site(root / "site")
    print(f"local site up in {time.perf_counter() - t0:.1f} s ({root / 'site'})")
    results, floors = {}, {}
    try:
        call(client_config.load(site.admin_config), "set_quota",
             {"user": "alice", "resource": "databases", "value": args.n + 5})  # fmt: skip
        base = baseline(site, args.n)
        for kind in ("postgres", "mysql"):
            if kind in site.db_servers:
                results[kind] = end_to_end(site, kind, args.n)
                floors[kind] = floor(site, kind, args.n)
    finally:
        site.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ndomtool db, request -> answer, fresh TLS connection each ({args.n} each):")
    print(f"{'':<28} {'p50':>11} {'p99':>11} {'max':>11}   server floor p50  failures")
    for kind, r in results.items():
        for what in ("create", "drop"):
            lat = r[what]
            fl = statistics.median(floors[kind][what])
            print(
                f"{kind + ' db ' + what:<28} {ms(percentile(lat, 50))} {ms(percentile(lat, 99))}"
                f" {ms(max(lat))}   {ms(fl)}  {len(r['failures']) if what == 'create' else ''}"
            )
        for f in r["failures"][:5]:
            print(f"    {f}")
    print(
        f"{'whoami (connect + TLS + login)':<28} {ms(percentile(base, 50))} {ms(percentile(base, 99))}"
    )


if __name__ == "__main__":
    main()
