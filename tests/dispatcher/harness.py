"""A dispatcher in memory for controller, apply and regen tests: an in-memory store with
alice and bob (and admin root), a site of two hosts with different roles (``ns1`` serves
DNS, ``web1`` web and mail), a FakeSlave behind a FakeLink for each, the coordinator on a
Clock, and the controller."""

from __future__ import annotations

from pathlib import Path

import attrs
from twisted.internet import defer
from twisted.internet.task import Clock

from domtool.dispatcher.apply import Coordinator
from domtool.dispatcher.auth import Member
from domtool.dispatcher.controller import Controller, OpError
from domtool.dispatcher.store import Store
from domtool.dispatcher.testing import FakeLink, FakeSlave
from domtool.model import Node, Site

EXAMPLES = Path(__file__).parent.parent / "data" / "examples"
SITE = Site(nodes=(Node("ns1", ("dns",)), Node("web1", ("web", "mail"))))
SITE_DOMAINS = ("coop.example",)

ALICE = Member("alice")
BOB = Member("bob")
ROOT = Member("root", True)


def example(name: str) -> str:
    """The text of one of alice's example files."""
    return (EXAMPLES / "alice" / name).read_text()


def files(**texts: str) -> list[dict[str, str]]:
    """A ``files`` argument: name=text (underscores in names stand for dots)."""
    return [{"name": k.replace("_", "."), "text": v} for k, v in texts.items()]


def result_of(d: defer.Deferred):
    """The result of an already fired Deferred (raising its failure)."""
    out: list = []
    d.addBoth(out.append)
    assert out, "the operation did not finish"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


@attrs.define
class Dispatcher:
    """The dispatcher's controller over fake slaves, with handles on everything."""

    store: Store
    clock: Clock
    slaves: dict[str, FakeSlave]
    links: dict[str, FakeLink]
    coordinator: Coordinator
    controller: Controller
    crls: list = attrs.field(factory=list)

    def run(self, member: Member, op: str, **args):
        """Run one op to completion and return its result (raises OpError)."""
        return result_of(self.controller.handle(member, op, args))

    def refusal(self, member: Member, op: str, **args) -> OpError:
        """Run an op that must fail with OpError, and return the error."""
        try:
            self.run(member, op, **args)
        except OpError as e:
            return e
        raise AssertionError(f"{op} was not refused")

    def ops(self) -> dict[str, list[str]]:
        """The ops each slave was sent so far."""
        return {h: link.ops() for h, link in self.links.items()}

    def forget_calls(self) -> None:
        for link in self.links.values():
            link.calls.clear()


def make_dispatcher(links=None, *, ca_dir=None, store: Store | None = None) -> Dispatcher:
    """A fresh dispatcher whose store has alice (example.org, example.net) and bob
    (bob.org, bob.net), each with their own home, user and group; root is an admin."""
    if store is None:
        store = Store.connect(":memory:")
        store.add_member("root", is_admin=True)
        for user, domains in (
            ("alice", ("example.org", "example.net")),
            ("bob", ("bob.org", "bob.net")),
        ):
            store.add_member(user)
            for d in domains:
                store.grant(user, "domain", d)
            store.grant(user, "path", f"/home/{user}")
            store.grant(user, "user", user)
            store.grant(user, "group", user)
    clock = Clock()
    slaves = {n.name: FakeSlave(n.name) for n in SITE.nodes}
    if links is None:
        links = {h: FakeLink(h, s) for h, s in slaves.items()}
    coordinator = Coordinator(store, links, clock)
    crls: list = []
    controller = Controller(
        store, SITE, coordinator, site_domains=SITE_DOMAINS, ca_dir=ca_dir, on_crl=crls.append
    )
    return Dispatcher(store, clock, slaves, links, coordinator, controller, crls)
