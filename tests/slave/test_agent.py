"""The slave agent's controller over the real apply engine (fake file system, fake daemon):
two-phase transactions, one at a time, timeouts, per-owner refusals, state across restarts."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from domtool import model
from domtool.model import DesiredState, Record, Zone
from domtool.slave import ops
from domtool.slave.agent import Agent, Failed, Refused
from domtool.slave.backends.apache import ApacheBackend, ApacheConfig
from domtool.slave.backends.bind import BindBackend, BindConfig
from domtool.slave.engine import Engine
from domtool.slave.ops import Grants, OwnerChange, PrepareArgs
from domtool.slave.seams import (
    Crash,
    FakeClock,
    FakeFileSystem,
    FakeProcessRunner,
    RealFileSystem,
    Result,
    makedirs,
)
from domtool.states import compose
from tests.slave.fake_backend import FakeBackend, FakeDaemon, zone

STATE_DIR = "/var/lib/domtool-slave"
NODE = "local"


@attrs.define
class Host:
    """An agent over the engine over fakes, with handles on each."""

    agent: Agent
    engine: Engine
    fs: FakeFileSystem
    daemon: FakeDaemon
    clock: Clock

    def run(self, op: str, args) -> dict:
        """Run one op to completion (everything is synchronous here) and return its result."""
        results: list = []
        self.agent.handle(op, args).addBoth(results.append)
        assert len(results) == 1, "the operation did not finish"
        if isinstance(results[0], Exception) or hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]

    def restart(self) -> Agent:
        """A new agent (and engine) over the same disk, as after a reboot."""
        engine = Engine(
            STATE_DIR,
            {"fake": FakeBackend()},
            self.fs,
            FakeProcessRunner(handler=self.daemon),
            FakeClock(),
            self.daemon,
        )
        agent = Agent(engine, host="ns1.example.coop", state_dir=STATE_DIR, clock=self.clock)
        agent.node = NODE
        done: list = []
        agent.start().addBoth(done.append)
        assert done == [None]
        self.agent, self.engine = agent, engine
        return agent


def make_host(fs: FakeFileSystem | None = None) -> Host:
    """An agent over a fresh engine, on ``fs`` (a new fake file system by default)."""
    if fs is None:
        fs = FakeFileSystem()
        makedirs(fs, STATE_DIR)
    daemon = FakeDaemon(fs, STATE_DIR)
    host = Host(None, None, fs, daemon, Clock())  # type: ignore[arg-type]
    host.restart()
    return host


@pytest.fixture
def host() -> Host:
    return make_host()


def part(*zones: Zone) -> OwnerChange:
    """An owner's complete part made of these zones (no paths, users or groups needed)."""
    return OwnerChange(DesiredState(zones=zones).normalised(), Grants())


def prepare(txid: str, **owners: OwnerChange) -> PrepareArgs:
    return PrepareArgs(txid, owners)


def tx(txid: str) -> ops.TxArgs:
    return ops.TxArgs(txid)


def test_prepare_then_commit_makes_a_generation_live(host):
    """alice and bob's zones are staged as generation 1, committed, probed and served."""
    answer = host.run(
        "prepare",
        prepare(
            "t1", alice=part(zone("alice.example", "alice")), bob=part(zone("bob.example", "bob"))
        ),
    )
    assert answer["base_generation"] == 0 and answer["staged_generation"] == 1
    assert answer["owners"] == {
        "alice": {"ok": True, "message": ""},
        "bob": {"ok": True, "message": ""},
    }
    assert host.engine.current_generation() == 0  # nothing live before commit
    result = host.run("commit", tx("t1"))
    assert result["status"] == "applied" and result["generation"] == 1
    assert sorted(v["target"][2] for v in result["verified"]) == ["alice.example", "bob.example"]
    assert set(host.daemon.loaded) == {"zone:alice.example", "zone:bob.example"}
    status = host.run("status", ops.StatusArgs())
    assert status == {
        "host": "ns1.example.coop",
        "generation": 1,
        "verified": True,
        "owners": ["alice", "bob"],
        "pending_txid": None,
        "state_known": True,
    }


def test_a_change_replaces_only_the_named_owners_parts(host):
    """A later prepare for alice alone keeps bob's zone; an empty part removes alice."""
    host.run(
        "prepare",
        prepare(
            "t1", alice=part(zone("alice.example", "alice")), bob=part(zone("bob.example", "bob"))
        ),
    )
    host.run("commit", tx("t1"))
    host.run("prepare", prepare("t2", alice=part(zone("alice.example", "alice", "v2"))))
    assert host.run("commit", tx("t2"))["generation"] == 2
    assert b"v2" in host.daemon.loaded["zone:alice.example"]
    assert "zone:bob.example" in host.daemon.loaded
    host.run("prepare", prepare("t3", alice=part()))
    assert host.run("commit", tx("t3"))["generation"] == 3
    assert set(host.daemon.loaded) == {"zone:bob.example"}
    assert host.run("status", ops.StatusArgs())["owners"] == ["bob"]


def test_prepare_then_abort_leaves_the_generation_unchanged(host):
    """An aborted transaction changes nothing live, leaves no staging, and cannot be committed."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    assert host.fs.listdir(STATE_DIR + "/staging") == ["1"]
    assert host.run("abort", tx("t1")) == {"txid": "t1", "aborted": True, "generation": 0}
    assert host.engine.current_generation() == 0
    assert host.fs.listdir(STATE_DIR + "/staging") == []
    assert host.daemon.reloads == 0
    with pytest.raises(Refused, match="t1 is not pending"):
        host.run("commit", tx("t1"))
    assert host.run("status", ops.StatusArgs())["owners"] == []


def test_one_transaction_at_a_time(host):
    """A second prepare while one is pending is refused; repeating the same txid gets the
    same answer; after commit the next one may go."""
    first = host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    with pytest.raises(Refused, match="transaction t1 is pending on ns1.example.coop"):
        host.run("prepare", prepare("t2", bob=part(zone("bob.example", "bob"))))
    assert host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice")))) == first
    host.run("commit", tx("t1"))
    assert host.run("prepare", prepare("t2", bob=part(zone("bob.example", "bob"))))["owners"] == {
        "bob": {"ok": True, "message": ""}
    }


def test_a_repeated_commit_returns_the_same_result(host):
    """A dispatcher that lost the commit's answer may ask again and gets it, nothing re-run."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    first = host.run("commit", tx("t1"))
    reloads = host.daemon.reloads
    assert host.run("commit", tx("t1")) == first
    assert host.daemon.reloads == reloads


def test_an_uncommitted_prepare_is_aborted_after_the_timeout(host):
    """Left pending past prepare_timeout, a transaction is aborted and its staging removed."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    host.clock.advance(host.agent.prepare_timeout - 1)
    assert host.agent.pending_txid == "t1"
    host.clock.advance(1)
    assert host.agent.pending_txid is None
    assert host.fs.listdir(STATE_DIR + "/staging") == []
    with pytest.raises(Refused, match="expired or aborted"):
        host.run("commit", tx("t1"))
    assert host.engine.current_generation() == 0


def test_a_committed_transaction_cancels_its_timeout(host):
    """After commit the timer is gone: advancing the clock aborts nothing."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    host.run("commit", tx("t1"))
    assert host.clock.getDelayedCalls() == []


def test_a_unit_of_another_owner_is_refused_and_the_others_go_ahead(host):
    """bob's zone sent under alice is refused (naming both); carol's change applies."""
    answer = host.run(
        "prepare",
        prepare(
            "t1",
            alice=part(zone("bob.example", "bob")),
            carol=part(zone("carol.example", "carol")),
        ),
    )
    assert answer["owners"]["alice"] == {
        "ok": False,
        "message": "alice: zone bob.example: owner: belongs to 'bob', not to 'alice'",
    }
    assert answer["owners"]["carol"]["ok"] is True
    committed = host.run("commit", tx("t1"))
    assert committed["owners"]["alice"]["ok"] is False  # every owner of the transaction
    assert committed["owners"]["carol"] == {"ok": True, "message": ""}
    assert set(host.daemon.loaded) == {"zone:carol.example"}


def test_a_name_another_owner_holds_is_refused(host):
    """bob cannot take over alice's zone: refused, alice's zone stays hers."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    host.run("commit", tx("t1"))
    answer = host.run("prepare", prepare("t2", bob=part(zone("alice.example", "bob", "mine"))))
    assert answer["owners"]["bob"] == {
        "ok": False,
        "message": "bob: zone alice.example: already held by alice",
    }
    assert answer["staged_generation"] == 1  # nothing to stage
    host.run("commit", tx("t2"))
    assert b"mine" not in host.daemon.loaded["zone:alice.example"]


def test_the_checker_refuses_one_owner_and_keeps_their_live_part(host):
    """The daemon's checker refuses alice's broken change (its message comes back); bob's
    goes live, and the agent's state keeps alice's previous zone."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice", "v1"))))
    host.run("commit", tx("t1"))
    answer = host.run(
        "prepare",
        prepare(
            "t2",
            alice=part(zone("alice.example", "alice", "BROKEN")),
            bob=part(zone("bob.example", "bob")),
        ),
    )
    assert answer["owners"]["alice"]["ok"] is False
    assert "BROKEN record" in answer["owners"]["alice"]["message"]
    assert answer["owners"]["bob"]["ok"] is True
    assert host.run("commit", tx("t2"))["status"] == "applied"
    assert b"v1" in host.daemon.loaded["zone:alice.example"]
    zones = {z.name: z for z in host.agent.state.zones}
    assert zones["alice.example"].records[0].data == ("v1",)
    assert host.restart().state == host.agent.state


def test_a_failed_reload_rolls_back_and_keeps_the_state(host):
    """A generation the daemon will not load is rolled back; the agent says so."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice", "v1"))))
    host.run("commit", tx("t1"))
    before = host.agent.state
    host.run("prepare", prepare("t2", alice=part(zone("alice.example", "alice", "NORELOAD"))))
    result = host.run("commit", tx("t2"))
    assert result["status"] == "rolled_back" and result["generation"] == 1
    assert result["verified"] == []
    assert result["owners"]["alice"]["ok"] is False
    assert "rolled back to generation 1" in result["message"]
    assert host.agent.state == before


def test_a_restarted_agent_knows_the_live_state(host):
    """The state of each staged generation is on disk: a new agent over the same disk
    reports the same owners and generation, even when it died right after the engine's
    commit (before it could update anything in memory)."""
    host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    host.run("commit", tx("t1"))
    host.run("prepare", prepare("t2", bob=part(zone("bob.example", "bob"))))
    host.engine.commit(host.agent._pending.prepared)  # the engine committed; the agent died
    agent = host.restart()
    assert agent.state.zones == (zone("alice.example", "alice"), zone("bob.example", "bob"))
    assert host.run("status", ops.StatusArgs())["generation"] == 2


def _crashing_apply(crash_at: int | None) -> Host:
    """alice and bob live at generation 1; then, with a crash armed before mutating
    operation ``crash_at``, a prepare and commit changing alice, adding carol, removing bob."""
    host = make_host()
    host.run(
        "prepare",
        prepare(
            "t1",
            alice=part(zone("alice.example", "alice", "v1")),
            bob=part(zone("bob.example", "bob")),
        ),
    )
    host.run("commit", tx("t1"))
    host.fs.arm(crash_at=crash_at)
    try:
        host.run(
            "prepare",
            prepare(
                "t2",
                alice=part(zone("alice.example", "alice", "v2")),
                carol=part(zone("carol.example", "carol")),
                bob=part(),
            ),
        )
        host.run("commit", tx("t2"))
    except Crash:
        pass
    return host


def test_a_crash_at_any_step_leaves_the_agent_knowing_the_live_state():
    """Killed before each mutating operation of a prepare and commit (the agent's own
    record writes included), the host comes back (from what was synced, or from all that
    was done) with generation 1 or 2, and the restarted agent's state is exactly that
    generation's: never the other one's, never unknown."""
    reference = _crashing_apply(None)
    before = make_host()  # what generation 1 holds
    before.run(
        "prepare",
        prepare(
            "t1",
            alice=part(zone("alice.example", "alice", "v1")),
            bob=part(zone("bob.example", "bob")),
        ),
    )
    before.run("commit", tx("t1"))
    states = {1: before.agent.state, 2: reference.agent.state}
    assert states[1] != states[2] and reference.engine.current_generation() == 2
    total = len(reference.fs.ops)
    assert total > 10
    seen = set()
    for k in range(total):
        crashed = _crashing_apply(k)
        for image_name, image in crashed.fs.crash_images():
            host = make_host(image)
            generation = host.engine.current_generation()
            assert generation in states, (k, image_name)
            assert host.agent.state == states[generation], (k, image_name)
            assert host.run("status", ops.StatusArgs())["state_known"] is True
            seen.add(generation)
    assert seen == {1, 2}


def test_a_complete_prepare_removes_the_owners_it_does_not_name(host):
    """With complete: true the named owners are the whole host: bob, not named, is removed."""
    host.run(
        "prepare",
        prepare(
            "t1", alice=part(zone("alice.example", "alice")), bob=part(zone("bob.example", "bob"))
        ),
    )
    host.run("commit", tx("t1"))
    answer = host.run(
        "prepare",
        PrepareArgs("t2", {"alice": part(zone("alice.example", "alice"))}, complete=True),
    )
    assert answer["owners"]["bob"] == {"ok": True, "message": ""}
    host.run("commit", tx("t2"))
    assert set(host.daemon.loaded) == {"zone:alice.example"}
    assert host.run("status", ops.StatusArgs())["owners"] == ["alice"]


def test_a_host_that_lost_its_state_record_accepts_only_a_complete_prepare(host):
    """Without the record of the live generation's state, a prepare for some owners would
    silently drop the others: it is refused until a complete prepare restores the state."""
    both = {
        "alice": part(zone("alice.example", "alice")),
        "bob": part(zone("bob.example", "bob")),
    }
    host.run("prepare", PrepareArgs("t1", both))
    host.run("commit", tx("t1"))
    host.fs.remove(host.agent.records.path(1))
    host.restart()
    assert host.run("status", ops.StatusArgs())["state_known"] is False
    with pytest.raises(Refused, match="no record of generation 1's state"):
        host.run("prepare", prepare("t2", alice=part(zone("alice.example", "alice", "v2"))))
    assert host.run("prepare", PrepareArgs("t3", both, complete=True))["staged_generation"] == 1
    assert host.run("commit", tx("t3"))["status"] == "unchanged"
    status = host.run("status", ops.StatusArgs())
    assert status["state_known"] is True and status["owners"] == ["alice", "bob"]
    assert host.restart().state == compose_parts(both)


def compose_parts(parts: dict) -> DesiredState:
    """The host state made of these owners' parts."""
    return compose({o: c.state for o, c in parts.items()})


def test_operations_wait_for_a_slow_engine_one_at_a_time(host):
    """With the engine running elsewhere (a thread, in the service), a second prepare that
    arrives while the first is still staging waits for it and is then refused; status is
    answered meanwhile."""
    held: list = []

    def later(fn, *args):
        d = defer.Deferred()
        held.append((d, fn, args))
        return d

    def release_all():
        while held:
            d, fn, args = held.pop(0)
            d.callback(fn(*args))

    host.agent._run_blocking = later
    first, second, status = [], [], []
    host.agent.handle("prepare", prepare("t1", alice=part(zone("alice.example", "alice")))).addBoth(
        first.append
    )
    host.agent.handle("prepare", prepare("t2", bob=part(zone("bob.example", "bob")))).addBoth(
        second.append
    )
    host.agent.handle("status", ops.StatusArgs()).addBoth(status.append)
    assert first == [] and second == [] and status[0]["pending_txid"] is None
    release_all()
    assert first[0]["staged_generation"] == 1
    second[0].trap(Refused)
    assert "transaction t1 is pending" in str(second[0].value)


def test_a_full_disk_when_recording_the_staged_state_fails_cleanly(host):
    """ENOSPC on the agent's own record of the staged state: a clean 'failed', the staged
    generation discarded, nothing pending, nothing live changed."""
    reference = make_host()
    reference.fs.arm()
    reference.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    writes = [path for kind, path in reference.fs.ops if kind == "write"]
    assert writes[-1].startswith(STATE_DIR + "/agent/states/1.json")
    host.fs.arm(fail={"write": len(writes)})
    with pytest.raises(Failed, match="could not record the staged state: disk full|No space"):
        host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    assert host.agent.pending_txid is None
    assert host.fs.listdir(STATE_DIR + "/staging") == []
    assert host.engine.current_generation() == 0


def test_describe_returns_the_units_of_a_domain(host):
    """describe gives the zone of a domain (and its subdomains) as model JSON, with the
    generation; other domains are not included."""
    z = Zone("alice.example", "alice", (Record("www", "A", ("192.0.2.7",)),), (NODE,))
    host.run("prepare", prepare("t1", alice=part(z), bob=part(zone("notalice.example", "bob"))))
    host.run("commit", tx("t1"))
    out = host.run("describe", ops.DescribeArgs("alice.example"))
    assert out["generation"] == 1 and out["host"] == "ns1.example.coop"
    assert [model.from_json(j) for j in out["zones"]] == [z]
    assert out["vhosts"] == [] and out["mail"] == []


def test_engine_errors_are_reported_as_failed(host):
    """A full disk while staging is a clean 'failed', and no transaction is left pending."""
    host.fs.fail["write"] = len([k for k, _ in host.fs.ops if k == "write"]) + 1
    with pytest.raises(Failed, match="disk full"):
        host.run("prepare", prepare("t1", alice=part(zone("alice.example", "alice"))))
    assert host.agent.pending_txid is None
    assert host.engine.current_generation() == 0


# -- the real Apache backend ----------------------------------------------------------


@attrs.define
class RecordingProber:
    """Answers every probe yes, and remembers what it was asked."""

    asked: list = attrs.field(factory=list)

    def probe(self, probe) -> bool:
        self.asked.append(probe)
        return True


def test_prepare_and_commit_with_the_real_apache_backend(tmp_path):
    """The agent over the engine and the real Apache backend in a tmp state directory (the
    daemon's commands answered by a FakeProcessRunner): alice's vhost is re-checked against
    her real home directory, rendered, checked with apache2 -t, made live, reloaded and
    probed; bob's vhost whose document root is a symlink into alice's home is refused
    before anything of his is rendered."""
    alice_home = tmp_path / "home" / "alice"
    bob_home = tmp_path / "home" / "bob"
    (alice_home / "www").mkdir(parents=True)
    bob_home.mkdir(parents=True)
    os.symlink(alice_home / "www", bob_home / "www")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    config = ApacheConfig(
        base_config=str(tmp_path / "base.conf"),
        live_config=str(tmp_path / "apache2.conf"),
        server_root=str(tmp_path),
        log_dir=str(tmp_path / "log"),
        port=8080,
        tls_port=None,
        node="web1",
    )
    runner = FakeProcessRunner(handler=lambda cmd: Result(0, "Syntax OK"))
    prober = RecordingProber()
    engine = Engine(
        str(state_dir),
        {"apache": ApacheBackend(config)},
        RealFileSystem(),
        runner,
        FakeClock(),
        prober,
    )
    clock = Clock()
    agent = Agent(engine, host="web1.example.coop", state_dir=state_dir, clock=clock, node="web1")
    done: list = []
    agent.start().addBoth(done.append)
    assert done == [None]

    def site(owner: str, home, fqdn: str) -> OwnerChange:
        v = model.Vhost(
            fqdn=fqdn,
            owner=owner,
            domain=fqdn.split(".", 1)[1],
            nodes=("web1",),
            document_root=str(home / "www"),
            user=owner,
            group=owner,
            server_admin=f"{owner}@{fqdn.split('.', 1)[1]}",
        )
        grants = Grants(paths=(str(home),), users=(owner,), groups=(owner,))
        return OwnerChange(DesiredState(vhosts=(v,)), grants)

    results: list = []
    args = prepare(
        "t1",
        alice=site("alice", alice_home, "www.alice.org"),
        bob=site("bob", bob_home, "www.bob.org"),
    )
    agent.handle("prepare", args).addBoth(results.append)
    answer = results.pop()
    assert answer["owners"]["alice"] == {"ok": True, "message": ""}
    assert answer["owners"]["bob"]["ok"] is False
    assert answer["owners"]["bob"]["message"].startswith("bob: vhost www.bob.org: document_root: ")
    agent.handle("commit", tx("t1")).addBoth(results.append)
    result = results.pop()
    assert result["status"] == "applied" and result["generation"] == 1
    assert result["verified"] == [
        {
            "kind": "http",
            "target": ["127.0.0.1", 8080, "www.alice.org", 204, "/.well-known/domtool-probe"],
            "owner": "alice",
        }
    ]
    sites = (state_dir / "current" / "apache" / "sites.conf").read_text()
    included = [line.split('"')[1] for line in sites.splitlines() if line.startswith("Include")]
    assert len(included) == 1
    unit = Path(included[0]).read_text()
    assert 'ServerName "www.alice.org"' in unit and "www.bob.org" not in sites + unit
    argvs = [cmd.argv for cmd in runner.ran]
    assert any("-t" in a for a in argvs) and any("graceful" in a for a in argvs)
    assert [p.target[2] for p in prober.asked] == ["www.alice.org"]


@pytest.mark.parametrize("what", ["zone", "vhost fqdn", "vhost alias", "mail domain"])
def test_a_name_another_member_serves_is_refused_in_every_kind(host, tmp_path, what):
    """The (kind of name x another member's name) matrix at the slave: alice claiming
    bob's zone, vhost name, a vhost alias equal to bob's vhost name, or bob's mail domain
    is refused naming the kind, the name and bob; bob's unit stays his."""
    home = {o: tmp_path / o for o in ("alice", "bob")}
    for d in home.values():
        (d / "www").mkdir(parents=True)

    def site(owner: str, fqdn: str, aliases=()) -> model.Vhost:
        return model.Vhost(
            fqdn=fqdn,
            owner=owner,
            domain=fqdn.split(".", 1)[1],
            nodes=(NODE,),
            document_root=str(home[owner] / "www"),
            user=owner,
            group=owner,
            server_admin=f"{owner}@example.org",
            aliases=tuple(aliases),
        )

    def grants(owner: str) -> Grants:
        return Grants(paths=(str(home[owner]),), users=(owner,), groups=(owner,))

    bob = DesiredState(
        zones=(zone("bob.example", "bob"),),
        vhosts=(site("bob", "www.bob.example"),),
        mail=(model.MailDomain("bob.example", "bob", (NODE,)),),
    )
    host.run("prepare", prepare("t1", bob=OwnerChange(bob, grants("bob"))))
    host.run("commit", tx("t1"))
    claim, expected = {
        "zone": (DesiredState(zones=(zone("bob.example", "alice"),)), "zone bob.example"),
        "vhost fqdn": (
            DesiredState(vhosts=(site("alice", "www.bob.example"),)),
            "vhost www.bob.example",
        ),
        "vhost alias": (
            DesiredState(vhosts=(site("alice", "www.alice.example", ["www.bob.example"]),)),
            "vhost www.bob.example",
        ),
        "mail domain": (
            DesiredState(mail=(model.MailDomain("bob.example", "alice", (NODE,)),)),
            "mail domain bob.example",
        ),
    }[what]
    answer = host.run("prepare", prepare("t2", alice=OwnerChange(claim, grants("alice"))))
    assert answer["owners"]["alice"] == {
        "ok": False,
        "message": f"alice: {expected}: already held by bob",
    }
    host.run("commit", tx("t2"))
    assert host.agent.state == bob.normalised()


def test_prepare_and_commit_with_the_real_bind_backend(tmp_path):
    """The agent over the engine and the real BIND backend (commands answered by a
    FakeProcessRunner): alice's zone becomes a zone file with a system-owned SOA, listed in
    the live zones index, checked, reloaded and probed; a second prepare that changes
    nothing stages nothing and reloads nothing."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    backend = BindBackend(
        BindConfig(
            base_config=str(tmp_path / "options.conf"),
            live_config=str(tmp_path / "named.conf"),
            rndc_config=str(tmp_path / "rndc.conf"),
            port=5353,
            node=NODE,
        )
    )
    runner = FakeProcessRunner(handler=lambda cmd: Result(0, "OK"))
    prober = RecordingProber()
    engine = Engine(
        str(state_dir), {"bind": backend}, RealFileSystem(), runner, FakeClock(), prober
    )
    agent = Agent(engine, host="ns1.example.coop", state_dir=state_dir, clock=Clock(), node=NODE)
    h = Host(agent, engine, None, None, agent.clock)  # type: ignore[arg-type]
    h.run("prepare", prepare("t0", bob=part(zone("bob.example", "bob"))))
    h.run("commit", tx("t0"))
    z = Zone("alice.example", "alice", (Record("www", "A", ("192.0.2.7",)),), (NODE,))
    answer = h.run("prepare", prepare("t1", alice=part(z)))
    assert answer["owners"] == {"alice": {"ok": True, "message": ""}}
    result = h.run("commit", tx("t1"))
    assert result["status"] == "applied" and result["generation"] == 2
    assert [v["target"][2] for v in result["verified"]] == ["alice.example"]
    zone_files = [
        p.read_text() for p in (state_dir / "units" / "bind").iterdir() if "alice" in p.read_text()
    ]
    assert len(zone_files) == 1 and "www.alice.example.\tIN\tA\t192.0.2.7" in zone_files[0]
    assert "SOA" in zone_files[0]
    ran = len(runner.ran)
    again = h.run("prepare", prepare("t2", alice=part(z)))
    assert again["staged_generation"] == 2
    assert h.run("commit", tx("t2"))["status"] == "unchanged"
    assert len(runner.ran) == ran


def test_describe_agrees_with_the_fake_slave_and_with_rmdom(host):
    """The agent's describe and the dispatcher's FakeSlave answer alike for every kind
    (they used to disagree about vhosts), and show exactly what rmdom removes."""
    from domtool.dispatcher.testing import FakeSlave
    from domtool.model import ListDomain, MailDomain, Vhost
    from domtool.states import under_domain, without_domain

    def vhost(fqdn, domain, aliases=()):
        return Vhost(
            fqdn, "alice", domain, (NODE,), "/home/alice/www", "alice", "alice",
            "alice@alice.example", aliases=aliases,
        )  # fmt: skip

    state = DesiredState(
        zones=(zone("alice.example", "alice"), zone("notalice.example", "bob")),
        vhosts=(
            vhost("www.alice.example", "alice.example"),
            vhost("www.other.example", "other.example", aliases=("www.alice.example.",)),
            vhost("odd.example", "sub.alice.example"),  # hand-built: its domain counts
        ),
        mail=(MailDomain("ALICE.example", "alice", (NODE,)),),
        lists=(ListDomain("lists.alice.example", "alice", (NODE,), "web.alice.example"),),
    ).normalised()
    host.agent._state = state  # what a committed generation would hold
    fake = FakeSlave("ns1.example.coop", state=state)
    for d in ("alice.example", "Alice.Example.", "other.example", "sub.alice.example"):
        mine = host.run("describe", ops.DescribeArgs(d.lower().rstrip(".")))
        theirs = fake.handle("describe", {"domain": d.lower().rstrip(".")})
        assert {k: v for k, v in mine.items() if k != "generation"} == {
            k: v for k, v in theirs.items() if k != "generation"
        }
        inside = under_domain(state, d)
        assert [model.from_json(j) for j in mine["vhosts"]] == list(inside.vhosts)
        assert without_domain(state, d) == attrs.evolve(
            state, **{k: tuple(u for u in getattr(state, k) if u not in getattr(inside, k))
                      for k in ("zones", "vhosts", "mail", "lists")}
        )  # fmt: skip
    alice = host.run("describe", ops.DescribeArgs("alice.example"))
    assert [j["fqdn"] for j in alice["vhosts"]] == ["odd.example", "www.alice.example"]
    assert len(alice["zones"]) == len(alice["mail"]) == len(alice["lists"]) == 1
    other = host.run("describe", ops.DescribeArgs("other.example"))
    assert [j["fqdn"] for j in other["vhosts"]] == ["www.other.example"]  # not by its alias


def test_a_prepare_of_few_owners_recomposes_and_stages_what_compose_gives(host, monkeypatch):
    """Among 40 owners, a prepare changing, adding or removing one owner stages (and the
    commit makes live) exactly ``compose`` of the new parts, without composing them all."""
    from domtool.slave import agent as agent_module

    owners = [f"m{i:02d}" for i in range(40)]
    parts = {o: part(zone(f"{o}.example", o), zone(f"z.{o}.example", o)) for o in owners}
    host.run("prepare", PrepareArgs("t0", dict(parts)))
    host.run("commit", tx("t0"))
    live = {o: c.state for o, c in parts.items()}
    assert host.agent.state == compose(live)
    calls: list = []
    real = agent_module.compose
    monkeypatch.setattr(agent_module, "compose", lambda p: calls.append(p) or real(p))
    steps = [
        ("m07", part(zone("m07.example", "m07", "v2"), zone("a.m07.example", "m07"))),
        ("new", part(zone("new.example", "new"))),
        ("m13", part()),
        ("m00", part(zone("zz.m00.example", "m00"))),
    ]
    for i, (owner, change) in enumerate(steps, 1):
        host.run("prepare", prepare(f"t{i}", **{owner: change}))
        assert host.run("commit", tx(f"t{i}"))["status"] == "applied"
        if change.state == DesiredState():
            live.pop(owner)
        else:
            live[owner] = change.state
        assert host.agent.state == compose(live)
    assert calls == []
    assert host.run("status", ops.StatusArgs())["owners"] == sorted(live)
