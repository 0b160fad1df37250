"""``db_*`` through the dispatcher's controller and the real slave agent onto the REAL
PostgreSQL and MariaDB (one of each per session): a drop of another member's database is
refused before it reaches the server, a dropped database is gone, and hostile names
(hypothesis) get a clear refusal with nothing changed on the server."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.controller import Controller, OpError
from domtool.model import Node, Site
from domtool.slave.agent import Agent
from domtool.slave.db_mysql import MariaDBConfig, MariaDBServer
from domtool.slave.db_postgres import PostgresConfig, PostgresServer
from domtool.slave.dbagent import DatabaseOps
from tests.agent_link import AgentLink
from tests.dispatcher.harness import ALICE, BOB, Dispatcher, make_dispatcher

pytestmark = pytest.mark.daemons

SITE = Site(nodes=(Node("db1", ("db",)),))
KINDS = ["postgres", "mysql"]


class Watched:
    """A real server whose calls are recorded (to show what reached it)."""

    def __init__(self, server) -> None:
        self.server, self.calls = server, []
        self.kind = server.kind

    def __getattr__(self, name):
        method = getattr(self.server, name)

        def call(*args):
            self.calls.append(name)
            return method(*args)

        return call


@pytest.fixture
def site(request, tmp_path):
    pg = request.getfixturevalue("postgres_server")
    my = request.getfixturevalue("mariadb_server")
    servers = {
        "postgres": Watched(PostgresServer(PostgresConfig(**pg.slave_table()))),
        "mysql": Watched(MariaDBServer(MariaDBConfig(**my.slave_table()))),
    }
    base = make_dispatcher()
    agent = Agent(
        None, host="db1", state_dir=tmp_path, clock=Clock(), databases=DatabaseOps(servers)
    )
    links = {"db1": AgentLink("db1", agent)}
    coordinator = Coordinator(base.store, links, base.clock)
    controller = Controller(base.store, SITE, coordinator)
    yield Dispatcher(base.store, base.clock, {}, links, coordinator, controller), servers
    for s in servers.values():
        s.server.close()


@pytest.mark.parametrize("kind", KINDS)
def test_another_members_drop_is_refused_before_the_server_and_a_drop_is_final(site, kind):
    d, servers = site
    real = servers[kind].server
    d.run(BOB, "db_create", kind=kind, name="bob_shop")
    d.run(ALICE, "db_create", kind=kind, name="alice_gone")
    assert real.databases()["bob_shop"].owner == "bob"
    d.links["db1"].calls.clear()
    servers[kind].calls.clear()
    with pytest.raises(OpError) as e:
        d.run(ALICE, "db_drop", kind=kind, name="bob_shop", apply=True)
    assert "must be 'alice' or start with 'alice_'" in e.value.failure.message
    assert d.links["db1"].calls == [] and servers[kind].calls == []
    assert "bob_shop" in real.databases()
    d.run(ALICE, "db_drop", kind=kind, name="alice_gone", apply=True)
    assert "alice_gone" not in real.databases()
    if kind == "postgres":
        with real._session() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'alice_gone'")
            assert row.fetchone() is None
    else:
        (rows,) = real._query([("SHOW DATABASES LIKE %s", ("alice\\_gone",))])
        assert rows == []
    d.run(BOB, "db_drop", kind=kind, name="bob_shop", apply=True)


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_names_through_the_dispatcher_change_nothing(site, kind):
    d, servers = site
    real = servers[kind].server

    def held() -> dict[str, str]:  # name -> owner (sizes move on their own)
        return {n: i.owner for n, i in real.databases().items()}

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.one_of(st.text(max_size=70), st.from_regex(r"alice_[a-z0-9_`'\";%\\ -]{0,12}")))
    def hostile(name):
        before = held()
        try:
            out = d.run(ALICE, "db_create", kind=kind, name=name)
        except OpError as e:
            # Refused by the database rules (naming alice's prefix), or, for a name the
            # request schema already refuses (too long, not text), a bad_request naming the
            # field, as the dispatcher's service answers it over the wire.
            f = e.failure
            if f.kind == "bad_request":
                assert any(d.startswith("name:") for d in f.details), f.details
            else:
                assert f.kind == "refused" and "alice" in f.message
            assert held() == before
            return
        # Accepted: only a name of the strict grammar under alice's prefix.
        assert out["changed"] and real.databases()[name].owner == "alice"
        d.run(ALICE, "db_drop", kind=kind, name=name, apply=True)
        assert held() == before

    hostile()
