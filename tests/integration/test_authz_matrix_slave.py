"""The authorization matrix at the SLAVE: alice's prepare touching bob's resources.

The only slave op that carries member data is ``prepare`` (``commit``/``abort`` carry a
transaction id, ``status`` nothing, ``describe`` one domain to read). It is sent in three
shapes (:data:`OPS`): alice's part alone; alice's part with another member's clean part
(carol, who must go ahead); and a complete prepare (``complete: true``) that also carries
bob's unchanged part. Each is crossed with every resource case (:data:`CASES`), generated
from tables: every kind of unit (Zone, Vhost, MailDomain) with every member-controlled
field that names a resource:

- a name bob already holds on this host: zone name, vhost fqdn and aliases (against bob's
  fqdn and bob's alias), mail domain name;
- the unit's ``owner`` field set to bob;
- every member path of a vhost (the slave's own list, ``states.member_paths``) under bob's
  granted path, directly, through a symlink in alice's home, and through ``..``;
- the vhost's user and group: bob's, root's, a system account's.

Each case runs on a real :class:`Agent` over the real engine with the real Apache and
BIND backends, over fake seams (file system, processes, clock, prober); bob's part is
live first. Every case must be refused for alice, with a message that names alice (the
owner refused) and the field (or the name and its holder, bob); bob's live part and the
clean member's change are unaffected. The count of cases is asserted, and so is 100 %
refused.

The same cases (less the symlink route, which only the slave can see: the dispatcher
checks paths lexically) are fed to the dispatcher's own second check
(``domtool.ownership.ownership_problems``), which tests/dispatcher/test_controller.py covers
per resource kind but not per path field and route.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from twisted.internet.task import Clock

from domtool import model, states, wire
from domtool.model import TLS, BasicAuth, Block, DesiredState, MailDomain, Record, Vhost, Zone
from domtool.ownership import ownership_problems
from domtool.perms import Permissions
from domtool.slave import ops
from domtool.slave.agent import Agent
from domtool.slave.backends.apache import ApacheBackend, ApacheConfig
from domtool.slave.backends.bind import BindBackend, BindConfig
from domtool.slave.engine import Engine
from domtool.slave.ops import Grants, OwnerChange, PrepareArgs
from domtool.slave.seams import FakeClock, FakeFileSystem, FakeProcessRunner, Result, makedirs
from domtool.states import by_owner

NODE = "local"
STATE_DIR = "/var/lib/domtool-slave"
ALICE_DOM, BOB_DOM, CAROL_DOM = "alice.example", "bob.example", "carol.example"


# -- the site: homes on the real file system (the re-check resolves real symlinks) ----


@attrs.frozen
class Homes:
    alice: Path
    bob: Path
    carol: Path


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> Homes:
    """alice's, bob's and carol's homes; ``alice/link`` is a symlink to ``bob/www``."""
    top = tmp_path_factory.mktemp("authz")
    h = Homes(top / "home" / "alice", top / "home" / "bob", top / "home" / "carol")
    for d in (h.alice, h.bob, h.carol):
        (d / "www").mkdir(parents=True)
    os.symlink(h.bob / "www", h.alice / "link")
    return h


def grants(home: Path, user: str) -> Grants:
    return Grants(paths=(str(home),), users=(user,), groups=(user,))


def vhost(owner: str, home: Path, fqdn: str, **kw) -> Vhost:
    values = dict(
        fqdn=fqdn,
        owner=owner,
        domain=fqdn.split(".", 1)[1],
        nodes=(NODE,),
        document_root=str(home / "www"),
        user=owner,
        group=owner,
        server_admin=f"{owner}@{fqdn.split('.', 1)[1]}",
    )
    values.update(kw)
    return Vhost(**values)


def zone(name: str, owner: str) -> Zone:
    return Zone(name, owner, (Record("www", "A", ("192.0.2.1",)),), (NODE,))


def bobs_part(h: Homes) -> DesiredState:
    """bob's live part: zone bob.example, vhost www.bob.example (alias bob.example), mail
    for bob.example."""
    return DesiredState(
        zones=(zone(BOB_DOM, "bob"),),
        vhosts=(vhost("bob", h.bob, f"www.{BOB_DOM}", aliases=(BOB_DOM,)),),
        mail=(MailDomain(BOB_DOM, "bob", (NODE,)),),
    ).normalised()


# -- the cases -----------------------------------------------------------------------


@attrs.frozen
class Case:
    """alice's part touching one of bob's resources, and what the refusal must say."""

    kind: str  # Zone, Vhost, MailDomain
    field: str  # the member-controlled field
    route: str  # how it reaches bob's resource
    state: Callable[[Homes], DesiredState]
    expect: Callable[[Homes], str]  # a substring of alice's refusal
    lexical: bool = True  # the dispatcher (no file system) can see it


def _alice_vhost(h: Homes, **kw) -> DesiredState:
    return DesiredState(vhosts=(vhost("alice", h.alice, f"www.{ALICE_DOM}", **kw),))


AV = f"alice: vhost www.{ALICE_DOM}"

# Names bob holds: (kind, field, route, alice's state, expected message).
NAME_CASES = [
    Case(
        "Zone",
        "name",
        "bob's zone",
        lambda h: DesiredState(zones=(zone(BOB_DOM, "alice"),)),
        lambda h: f"alice: zone {BOB_DOM}: already held by bob",
    ),
    Case(
        "Vhost",
        "fqdn",
        "bob's fqdn",
        lambda h: DesiredState(vhosts=(vhost("alice", h.alice, f"www.{BOB_DOM}"),)),
        lambda h: f"alice: vhost www.{BOB_DOM}: already held by bob",
    ),
    Case(
        "Vhost",
        "fqdn",
        "bob's alias",
        lambda h: DesiredState(
            vhosts=(
                vhost("alice", h.alice, BOB_DOM, domain=BOB_DOM, server_admin=f"alice@{ALICE_DOM}"),
            )
        ),
        lambda h: f"alice: vhost {BOB_DOM}: already held by bob",
    ),
    Case(
        "Vhost",
        "aliases",
        "bob's fqdn",
        lambda h: _alice_vhost(h, aliases=(f"www.{BOB_DOM}",)),
        lambda h: f"alice: vhost www.{BOB_DOM}: already held by bob",
    ),
    Case(
        "Vhost",
        "aliases",
        "bob's alias",
        lambda h: _alice_vhost(h, aliases=(BOB_DOM,)),
        lambda h: f"alice: vhost {BOB_DOM}: already held by bob",
    ),
    Case(
        "MailDomain",
        "name",
        "bob's mail domain",
        lambda h: DesiredState(mail=(MailDomain(BOB_DOM, "alice", (NODE,)),)),
        lambda h: f"alice: mail domain {BOB_DOM}: already held by bob",
    ),
]

# A unit of alice's prepare that says it is bob's.
OWNER_CASES = [
    Case(
        "Zone",
        "owner",
        "bob",
        lambda h: DesiredState(zones=(zone(ALICE_DOM, "bob"),)),
        lambda h: f"alice: zone {ALICE_DOM}: owner: belongs to 'bob'",
    ),
    Case(
        "Vhost",
        "owner",
        "bob",
        lambda h: DesiredState(vhosts=(vhost("bob", h.alice, f"www.{ALICE_DOM}"),)),
        lambda h: f"{AV}: owner: belongs to 'bob'",
    ),
    Case(
        "MailDomain",
        "owner",
        "bob",
        lambda h: DesiredState(mail=(MailDomain(ALICE_DOM, "bob", (NODE,)),)),
        lambda h: f"alice: mail domain {ALICE_DOM}: owner: belongs to 'bob'",
    ),
]

# Every member path of a vhost: the field as the refusal names it, and alice's vhost with
# ``p`` in that field (her other paths are her own).
PATH_FIELDS: dict[str, Callable[[Homes, str], DesiredState]] = {
    "document_root": lambda h, p: _alice_vhost(h, document_root=p),
    "url_aliases[0].path": lambda h, p: _alice_vhost(h, url_aliases=(("/u", p),)),
    "script_aliases[0].path": lambda h, p: _alice_vhost(h, script_aliases=(("/cgi-bin", p),)),
    "tls.certificate": lambda h, p: _alice_vhost(h, tls=TLS(p, f"{h.alice}/k.pem")),
    "tls.key": lambda h, p: _alice_vhost(h, tls=TLS(f"{h.alice}/c.pem", p)),
    "tls.chain": lambda h, p: _alice_vhost(h, tls=TLS(f"{h.alice}/c.pem", f"{h.alice}/k.pem", p)),
    "settings.auth.user_file": lambda h, p: _alice_vhost(
        h, settings=model.WebSettings(auth=BasicAuth("r", p))
    ),
    "blocks[0].path": lambda h, p: _alice_vhost(h, blocks=(Block("directory", p),)),
    "blocks[0].settings.auth.user_file": lambda h, p: _alice_vhost(
        h, blocks=(Block("location", "/private", model.WebSettings(auth=BasicAuth("r", p))),)
    ),
}
# How a path reaches bob's granted tree (bob/www): (route, path, lexically visible).
PATH_ROUTES: dict[str, tuple[Callable[[Homes], str], bool]] = {
    "directly": (lambda h: f"{h.bob}/www/f", True),
    "via symlink": (lambda h: f"{h.alice}/link/f", False),
    "via ..": (lambda h: f"{h.alice}/../bob/www/f", True),
}


def _path_case(field: str, route: str) -> Case:
    path, lexical = PATH_ROUTES[route]
    return Case(
        "Vhost",
        field,
        route,
        lambda h: PATH_FIELDS[field](h, path(h)),
        lambda h: f"{AV}: {field}: ",
        lexical,
    )


PATH_CASES = [_path_case(f, r) for f in PATH_FIELDS for r in PATH_ROUTES]

# The vhost's Unix accounts: another member's, the superuser's, a system account's.
ACCOUNTS = {"another member": "bob", "root": "root", "system account": "daemon"}
ACCOUNT_CASES = [
    Case(
        "Vhost",
        field,
        route,
        (lambda f, n: lambda h: _alice_vhost(h, **{f: n}))(field, name),
        (lambda f, n: lambda h: f"{AV}: {f}: {n!r}")(field, name),
    )
    for field in ("user", "group")
    for route, name in ACCOUNTS.items()
]

CASES = NAME_CASES + OWNER_CASES + PATH_CASES + ACCOUNT_CASES
# The vhost fields that name no resource of another member (values, not resources).
NOT_RESOURCES = {"nodes", "server_admin", "proxies", "domain"}


def _id(c: Case) -> str:
    return f"{c.kind}.{c.field}.{c.route}".replace(" ", "_").replace("'", "")


# -- the slave ops that carry member data ------------------------------------------


def _alone(alice: OwnerChange, h: Homes) -> PrepareArgs:
    return PrepareArgs("t-alice", {"alice": alice})


def _with_carol(alice: OwnerChange, h: Homes) -> PrepareArgs:
    carol = OwnerChange(DesiredState(zones=(zone(CAROL_DOM, "carol"),)), grants(h.carol, "carol"))
    return PrepareArgs("t-both", {"alice": alice, "carol": carol})


def _complete(alice: OwnerChange, h: Homes) -> PrepareArgs:
    bob = OwnerChange(bobs_part(h), grants(h.bob, "bob"))
    return PrepareArgs("t-all", {"alice": alice, "bob": bob}, complete=True)


OPS = {"prepare": _alone, "prepare with another member": _with_carol, "complete prepare": _complete}
# vmail names an owner's mailbox: the slave checks it against its own live state
# (tests/mail/test_vmail_ops.py, tests/mail/test_vmail_daemon.py).
MEMBER_DATA_OPS = {"prepare", "vmail"}
# list_remove names one list of its owner: its refusals (the ledger names another member,
# the list is still configured) are tests/integration/test_lists_e2e.py and
# tests/slave/test_mailman_render.py.
NO_MEMBER_DATA = {
    "commit",
    "abort",
    "status",
    "describe",
    "tls_update",
    "list_remove",
    "policy_held",  # reads an owner's policy back; changes nothing
    "usage",  # reads what an owner uses; changes nothing
}  # tls: the host's files
# The database ops carry owner and names too; their matrix (names, prefixes, owners on the
# server) is tests/slave/test_db_ops.py and test_db_daemons.py.
DB_OPS = {"db_create", "db_drop", "db_list", "db_passwd", "db_grant"}


def make_agent(tmp: Path) -> Agent:
    """A real Agent over the real engine with the real Apache and BIND backends, on a
    fake file system; daemon commands all succeed, every probe answers."""
    fs = FakeFileSystem()
    makedirs(fs, STATE_DIR)
    backends = {
        "apache": ApacheBackend(
            ApacheConfig(
                base_config=str(tmp / "base.conf"),
                live_config=str(tmp / "apache2.conf"),
                server_root=str(tmp),
                log_dir=str(tmp / "log"),
                port=8080,
                tls_port=8443,  # so TLS paths are judged by the re-check too
                suexec=True,  # so a script alias is judged by the re-check, not refused as CGI
                node=NODE,
            )
        ),
        "bind": BindBackend(
            BindConfig(
                base_config=str(tmp / "options.conf"),
                live_config=str(tmp / "named.conf"),
                rndc_config=str(tmp / "rndc.conf"),
                port=5353,
                node=NODE,
            )
        ),
    }

    class Prober:
        def probe(self, probe) -> bool:
            return True

    runner = FakeProcessRunner(handler=lambda cmd: Result(0, "Syntax OK"))
    engine = Engine(STATE_DIR, backends, fs, runner, FakeClock(), Prober())
    agent = Agent(engine, host="local.coop.example", state_dir=STATE_DIR, clock=Clock(), node=NODE)
    done: list = []
    agent.start().addBoth(done.append)
    assert done == [None]
    return agent


def run(agent: Agent, op: str, args) -> dict:
    results: list = []
    agent.handle(op, args).addBoth(results.append)
    assert len(results) == 1, "the operation did not finish"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def refused_at_slave(case: Case, op: str, h: Homes, tmp: Path) -> bool:
    """Run one (op x case) on a fresh agent with bob's part live; assert how alice is
    refused and that nothing else moved; True when alice was refused."""
    agent = make_agent(tmp)
    run(
        agent,
        "prepare",
        PrepareArgs("t-bob", {"bob": OwnerChange(bobs_part(h), grants(h.bob, "bob"))}),
    )
    assert run(agent, "commit", ops.TxArgs("t-bob"))["status"] == "applied"
    alice = OwnerChange(case.state(h).normalised(), grants(h.alice, "alice"))
    args = OPS[op](alice, h)
    answer = run(agent, "prepare", args)
    verdict = answer["owners"]["alice"]
    if verdict["ok"]:
        run(agent, "abort", ops.TxArgs(args.txid))
        return False
    assert verdict["message"].startswith("alice: "), verdict
    assert case.expect(h) in verdict["message"], (case.expect(h), verdict["message"])
    if "carol" in args.changes:
        assert answer["owners"]["carol"] == {"ok": True, "message": ""}
    if "bob" in args.changes:  # the complete prepare: bob, unchanged, is never blamed
        assert answer["owners"]["bob"]["ok"] is True, answer
    run(agent, "commit", ops.TxArgs(args.txid))
    live = by_owner(agent.state)
    assert "alice" not in live and live["bob"].normalised() == bobs_part(h)
    assert ("carol" in live) == ("carol" in args.changes)
    return True


# -- the tests ---------------------------------------------------------------------


def test_the_matrix_covers_every_op_kind_and_field():
    """The ops split exactly into those carrying member data (prepare, in each shape)
    and the others; every unit kind has name and owner cases; every member path the
    slave knows (``states.member_paths`` of a vhost with every path field set) has a case
    per route; every Vhost field is either a case or listed as naming no resource."""
    assert MEMBER_DATA_OPS | NO_MEMBER_DATA | DB_OPS == wire.SLAVE_OPS
    kinds = {"Zone", "Vhost", "MailDomain"}
    assert {c.kind for c in NAME_CASES} == kinds and {c.kind for c in OWNER_CASES} == kinds
    p = "/x"
    full = vhost(
        "alice",
        Path("/home/alice"),
        "www.a.example",
        url_aliases=(("/u", p),),
        script_aliases=(("/c", p),),
        tls=TLS(p, p, p),
        settings=model.WebSettings(auth=BasicAuth("r", p)),
        blocks=(Block("directory", p, model.WebSettings(auth=BasicAuth("r", p))),),
    )
    slave_fields = {f for f, _ in states.member_paths(full)}
    slave_fields.add("blocks[0].settings.auth.user_file")  # a location block's auth file
    assert slave_fields == set(PATH_FIELDS)
    assert {(c.field, c.route) for c in PATH_CASES} == {
        (f, r) for f in PATH_FIELDS for r in PATH_ROUTES
    }
    covered = {c.field.split("[")[0].split(".")[0] for c in CASES if c.kind == "Vhost"}
    assert covered | NOT_RESOURCES == {a.name for a in attrs.fields(Vhost)}


def test_every_case_of_the_matrix_is_refused_at_the_slave(homes, tmp_path):
    """Every (op shape x resource case) is refused for alice by the real agent, naming
    alice and the field (or bob as the holder of the name); bob's live part and carol's
    change are unaffected. 3 op shapes x 42 cases = 126, all refused."""
    results = {(op, _id(c)): refused_at_slave(c, op, homes, tmp_path) for op in OPS for c in CASES}
    assert len(CASES) == 6 + 3 + 9 * 3 + 6 == 42
    assert len(results) == len(OPS) * len(CASES) == 126
    not_refused = sorted(k for k, refused in results.items() if not refused)
    assert not_refused == [], not_refused


def test_alices_own_resources_pass_the_same_agent(homes, tmp_path):
    """The control: alice's zone, vhost (paths inside her home, her user and group; no
    script alias, which this backend refuses without suexec) and mail domain are accepted by the same agent, so the refusals above are
    about bob's resources, not about the shape of the request."""
    agent = make_agent(tmp_path)
    h = homes
    mine = DesiredState(
        zones=(zone(ALICE_DOM, "alice"),),
        vhosts=(
            vhost(
                "alice",
                h.alice,
                f"www.{ALICE_DOM}",
                aliases=(ALICE_DOM,),
                url_aliases=(("/u", f"{h.alice}/www"),),
                blocks=(Block("directory", f"{h.alice}/www"),),
            ),
        ),
        mail=(MailDomain(ALICE_DOM, "alice", (NODE,)),),
    ).normalised()
    answer = run(
        agent, "prepare", PrepareArgs("t1", {"alice": OwnerChange(mine, grants(h.alice, "alice"))})
    )
    assert answer["owners"] == {"alice": {"ok": True, "message": ""}}
    assert run(agent, "commit", ops.TxArgs("t1"))["status"] == "applied"
    assert by_owner(agent.state)["alice"].normalised() == mine


def test_the_dispatchers_check_refuses_every_lexical_case(homes):
    """The same cases fed to the dispatcher's own check (``ownership_problems`` with
    alice's grants: her domain, home, user and group): every case it can see (all but the
    symlink route, which only the slave resolves) gives at least one problem naming the
    unit; and alice's own state gives none."""
    h = homes
    alice = Permissions(
        "alice",
        domains={ALICE_DOM},
        paths={str(h.alice)},
        users={"alice"},
        groups={"alice"},
    )
    assert ownership_problems(_alice_vhost(h), alice) == []
    lexical = [c for c in CASES if c.lexical]
    assert len(lexical) == len(CASES) - len(PATH_FIELDS)
    missed = [_id(c) for c in lexical if not ownership_problems(c.state(h), alice)]
    assert missed == []
    # The symlink route is lexically alice's: only the slave can refuse it.
    for c in CASES:
        if not c.lexical:
            assert ownership_problems(c.state(h), alice) == [], _id(c)


@pytest.mark.parametrize("case", NAME_CASES, ids=_id)
def test_the_live_holder_of_a_name_is_not_refused_for_anothers_claim(homes, tmp_path, case):
    """A prepare carrying bob's part (unchanged, or in a complete prepare) together with
    alice's claim of one of bob's live names refuses alice only: bob, who holds the name
    live, is accepted, not blamed ("already held by alice")."""
    h = homes
    agent = make_agent(tmp_path)
    bob = OwnerChange(bobs_part(h), grants(h.bob, "bob"))
    run(agent, "prepare", PrepareArgs("t-bob", {"bob": bob}))
    run(agent, "commit", ops.TxArgs("t-bob"))
    alice = OwnerChange(case.state(h).normalised(), grants(h.alice, "alice"))
    for complete in (False, True):
        args = PrepareArgs(f"t-{complete}", {"alice": alice, "bob": bob}, complete=complete)
        answer = run(agent, "prepare", args)
        assert answer["owners"]["alice"]["ok"] is False
        assert case.expect(h) in answer["owners"]["alice"]["message"]
        assert answer["owners"]["bob"] == {"ok": True, "message": "unchanged"}, answer
        run(agent, "commit", ops.TxArgs(args.txid))
        assert by_owner(agent.state)["bob"].normalised() == bobs_part(h)
