"""BIND's stable zone paths and narrow reloads, against a real named on loopback.

Each zone is at ``state/live/bind/ZONE.zone`` (a copy of the live generation's unit,
kept by the engine): a change of one zone's records runs that zone's ``named-checkzone``
and ``rndc reload ZONE`` only, never ``named-checkconf -z`` or a whole-server reload,
and named never answers SERVFAIL for it meanwhile. Adding a zone (zones.conf changes)
runs the whole-config check and ``rndc reload``. A crash that leaves a live file of
another generation is repaired by ``recover()``, which reloads.
"""

from __future__ import annotations

import threading

import attrs
import dns.exception
import dns.rcode
import pytest

from domtool.model import DesiredState, Record, Zone
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.slave.named_daemon import query, soa_serial
from tests.slave.test_bind_daemon import _site

pytestmark = pytest.mark.daemons


@attrs.define
class Recording:
    """The real runner, remembering each argv it ran."""

    runner: SubprocessRunner = attrs.field(factory=SubprocessRunner)
    argvs: list = attrs.field(factory=list)

    def run(self, cmd):
        self.argvs.append(tuple(cmd.argv))
        return self.runner.run(cmd)

    def tools(self) -> list[str]:
        """What ran: the program name and, for rndc, its verb and zone."""
        out = []
        for argv in self.argvs:
            name = argv[0].rsplit("/", 1)[1]
            if name == "rndc":
                out.append(" ".join(["rndc", *argv[7:]]))
            else:
                out.append(name)
        return out


def zone(name: str, owner: str, a: str) -> Zone:
    return Zone(name, owner, (Record("@", "A", (a,)),), ("local",), ttl=60)


@pytest.fixture
def live_site(tmp_path):
    s = _site(tmp_path)
    s.engine.runner = Recording()
    yield s
    s.named.stop()


def test_a_one_zone_change_is_checkzone_and_rndc_reload_zone(live_site):
    site, runner = live_site, live_site.engine.runner
    a, b = zone("example.org", "alice", "192.0.2.1"), zone("bob.example", "bob", "192.0.2.9")
    assert site.engine.apply(DesiredState(zones=(a, b))).status == "applied"
    assert "named-checkconf" in runner.tools() and "rndc reload" in runner.tools()
    zones_conf = (site.state_dir / "current" / "bind" / "zones.conf").read_bytes()
    live = site.state_dir / "live" / "bind" / "example.org.zone"
    assert f'file "{live}"'.encode() in zones_conf
    s1 = soa_serial(site.named.port, "example.org")
    runner.argvs.clear()
    out = site.engine.apply(DesiredState(zones=(zone("example.org", "alice", "192.0.2.2"), b)))
    assert out.status == "applied", out.message
    assert runner.tools() == ["named-checkzone", "rndc reload example.org"]
    assert (site.state_dir / "current" / "bind" / "zones.conf").read_bytes() == zones_conf
    assert soa_serial(site.named.port, "example.org") > s1
    assert live.read_bytes() == site.units()["example.org"]
    runner.argvs.clear()
    c = zone("carol.example", "carol", "192.0.2.3")
    out = site.engine.apply(DesiredState(zones=(zone("example.org", "alice", "192.0.2.2"), b, c)))
    assert out.status == "applied", out.message
    assert runner.tools() == ["named-checkzone", "named-checkconf", "rndc reload"]
    assert soa_serial(site.named.port, "carol.example") is not None


def test_no_servfail_while_a_changed_zone_reloads(live_site):
    """Queries run all the time while the zone changes 20 times: every answer is
    NOERROR (the zone is reloaded in place, never dropped)."""
    site = live_site
    others = tuple(zone(f"z{i}.example", f"m{i}", "192.0.2.5") for i in range(20))
    assert (
        site.engine.apply(
            DesiredState(zones=(zone("example.org", "alice", "192.0.2.1"), *others))
        ).status
        == "applied"
    )
    stop = threading.Event()
    rcodes: list[int] = []

    def ask():
        while not stop.is_set():
            try:
                rcodes.append(query(site.named.port, "example.org", "A", timeout=1.0).rcode())
            except dns.exception.Timeout:
                rcodes.append(-1)

    t = threading.Thread(target=ask)
    t.start()
    try:
        for i in range(20):
            state = DesiredState(zones=(zone("example.org", "alice", f"192.0.2.{10 + i}"), *others))
            assert site.engine.apply(state).status == "applied"
    finally:
        stop.set()
        t.join()
    assert len(rcodes) > 20
    assert [r for r in rcodes if r != dns.rcode.NOERROR] == []


def test_recover_repairs_a_live_file_of_another_generation(live_site):
    site = live_site
    assert (
        site.engine.apply(DesiredState(zones=(zone("example.org", "alice", "192.0.2.1"),))).status
        == "applied"
    )
    s1 = soa_serial(site.named.port, "example.org")
    live = site.state_dir / "live" / "bind" / "example.org.zone"
    good = live.read_bytes()
    live.write_bytes(good.replace(str(s1).encode(), str(s1 + 7).encode()))  # a crash's leftover
    (site.state_dir / "live" / "bind" / "gone.example.zone").write_bytes(b"junk")
    engine = Engine(
        str(site.state_dir),
        {"bind": site.backend},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        RealProber(timeout=1.0),
    )
    engine.recover()
    assert "live files repaired" in engine.recovery and "reloaded" in engine.recovery
    assert live.read_bytes() == good
    assert not (site.state_dir / "live" / "bind" / "gone.example.zone").exists()
    assert soa_serial(site.named.port, "example.org") == s1
