"""A member's mailing list from config to Mailman and out again, through the real pieces.

The dispatcher's controller (real store, coordinator) talks to the real slave agent
(``AgentLink``), whose engine drives the real Mailman backend against the session's real
Mailman 3 core: alice submits a config with a list, it exists in Mailman with its owner;
``list_rm`` is refused while the config still declares it, is a dry run without ``doit``,
is refused for a member the slave's ledger does not name; with ``doit`` the list is gone
from Mailman, its settings and rosters are exported, its archive is kept, and the
removal is audited.
"""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from domtool.devsite.localdaemons import wait_for
from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.controller import Controller, OpError
from domtool.model import Node, Site
from domtool.slave.agent import Agent
from domtool.slave.backends.mailman import MailmanBackend, MailmanConfig
from domtool.slave.engine import Engine
from domtool.slave.mailman_rest import list_id
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from domtool.slave.service import backend_actions
from tests.agent_link import AgentLink
from tests.dispatcher.harness import ALICE, BOB, SITE_DOMAINS, files, make_dispatcher
from tests.mailman_site import unique_domain

pytestmark = [pytest.mark.daemons, pytest.mark.slow]


def result_of(d):
    out = []
    d.addBoth(out.append)
    assert out, "the operation did not finish"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def make_site(mailman, tmp: Path):
    state = tmp / "state"
    state.mkdir()
    backend = MailmanBackend(
        MailmanConfig(
            rest_config=str(mailman.rest_config),
            live_index=str(state / "current" / "mailman" / "lists.json"),
            node="local",
        )
    )
    engine = Engine(
        str(state),
        {"mailman": backend},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(timeout=5.0),
        probe_timeout=10.0,
        probe_interval=0.1,
    )
    agent = Agent(
        engine,
        host="local.coop.example",
        state_dir=str(state),
        clock=Clock(),
        node="local",
        actions=backend_actions(engine.backends),
    )
    result_of(agent.start())
    base = make_dispatcher()
    site = Site(nodes=(Node("local", ("dns", "web", "mail", "lists")),))
    coordinator = Coordinator(base.store, {"local": AgentLink("local", agent)}, base.clock)
    controller = Controller(base.store, site, coordinator, site_domains=SITE_DOMAINS)
    return base.store, controller


def config(domain: str, *lists: str) -> str:
    body = "".join(f'  mailingList "{n}" with owner "alice@example.org" end;\n' for n in lists)
    return f'dom "{domain}" with\n{body}end;\n'


def test_a_list_from_config_to_mailman_and_removed_with_doit(mailman_site, tmp_path):
    d = unique_domain("e2e")
    store, controller = make_site(mailman_site, tmp_path)
    store.grant("alice", "domain", d)
    rest = mailman_site.client()
    fq = f"team@{d}"

    out = result_of(controller.handle(ALICE, "submit", {"files": files(**{d: config(d, "team")})}))
    assert out["applied"], out
    assert out["hosts"]["local"]["status"] == "applied"
    assert [v["target"][1] for v in out["hosts"]["local"]["verified"]] == [fq]
    assert sorted(rest.owners(fq)) == ["alice@example.org"]

    # A message is archived (the list accepts non-members here), so there is an archive.
    rest.request("PATCH", f"/lists/{list_id(fq)}/config", {"default_nonmember_action": "accept"})
    msg = f"From: x@elsewhere.example\r\nTo: {fq}\r\nSubject: archived\r\n\r\nkeep me\r\n"
    with smtplib.LMTP("127.0.0.1", mailman_site.lmtp_port) as lmtp:
        lmtp.sendmail("x@elsewhere.example", [fq], msg)
    archive = mailman_site.var_dir / "archives" / "prototype" / fq
    wait_for(
        lambda: (archive / "new").is_dir() and any((archive / "new").iterdir()),
        timeout=30,
        what="the message in the list's archive",
    )

    with pytest.raises(OpError) as e:
        result_of(controller.handle(ALICE, "list_rm", {"list": fq, "doit": True}))
    assert "still in your configuration" in e.value.failure.message

    out = result_of(controller.handle(ALICE, "submit", {"files": files(**{d: config(d)})}))
    assert out["applied"], out
    assert fq in rest.lists()  # out of the config: no longer routed, not yet deleted

    dry = result_of(controller.handle(ALICE, "list_rm", {"list": fq}))
    assert dry["removed"] is False and "would remove" in dry["hosts"]["local"]["message"]
    assert fq in rest.lists()

    store.grant("bob", "domain", d, shared=True)  # an admin shares the domain
    theirs = result_of(controller.handle(BOB, "list_rm", {"list": fq, "doit": True}))
    assert theirs["removed"] is False
    assert "member alice's list" in theirs["hosts"]["local"]["error"]
    assert fq in rest.lists()

    done = result_of(controller.handle(ALICE, "list_rm", {"list": fq, "doit": True}))
    assert done["removed"] is True, done
    assert fq not in rest.lists()
    assert not rest.exists(f"/lists/{list_id(fq)}")
    export = json.loads(Path(done["hosts"]["local"]["export"]).read_text())
    assert export["owners"] == ["alice@example.org"] and export["list"] == fq
    assert list((archive / "new").iterdir()), "the archive was kept"
    entries = [a for a in store.audit_log(who="alice") if a.action == "list_rm"]
    assert [a.outcome for a in entries][-2:] == ["dry run", "removed"]
