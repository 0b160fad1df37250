"""The BIND backend against a real named on loopback, through the slave's engine.

Each test starts named on 127.0.0.1 with a free port and a config root of its own (see
``named_daemon``) and applies members' zones with ``domtool.slave.engine.Engine`` over
the real seams and the slave's real prober: content-addressed zone files, each changed zone's ``named-checkzone``,
``named-checkconf -z`` over the staged generation, the atomic ``current`` switch,
``rndc reload`` and SOA probes. Then it asks named over DNS with dnspython.

named.conf includes ``state/current/bind/zones.conf``. Before the first generation,
``current`` points at an empty bootstrap index (the site setup's job), so named can
start; the engine's first switch replaces it.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from domtool.model import DesiredState, Record, Zone
from domtool.slave.backends.bind import BindBackend, serial_of
from domtool.slave.engine import Engine
from domtool.slave.probes import RealProber
from domtool.slave.seams import RealClock, RealFileSystem, SubprocessRunner
from tests.conftest import require_binary
from tests.slave.named_daemon import free_port, query, soa_serial, start_named

pytestmark = pytest.mark.daemons

LONG_TXT = 'v=x1; "quoted" \\back\\slash; (paren) $INCLUDE /etc/passwd ' + "abcdefghij" * 55


@attrs.define
class Site:
    """A running named, the engine applying to it, and its state directory."""

    named: object
    engine: Engine
    backend: BindBackend
    state_dir: Path

    def units(self) -> dict[str, bytes]:
        """Zone name -> the live unit file's bytes, read through the live index."""
        out = {}
        for u in self.engine.manifest()["backends"]["bind"]["units"]:
            path = self.state_dir / "units" / "bind" / f"{u['sha']}.{u['ext']}"
            out[u["key"].split(":", 1)[1]] = path.read_bytes()
        return out


def _site(tmp_path: Path, prober=None, probe_timeout: float = 5.0, **config_kw) -> Site:
    require_binary("named", "named-checkzone", "named-checkconf", "rndc")
    state_dir = tmp_path / "state"
    (state_dir / "bootstrap" / "bind").mkdir(parents=True)
    (state_dir / "bootstrap" / "bind" / "zones.conf").write_bytes(b"")
    os.symlink("bootstrap", state_dir / "current")
    named = start_named(
        tmp_path / "named", free_port(), state_dir / "current" / "bind" / "zones.conf", **config_kw
    )
    backend = BindBackend(named.config)
    engine = Engine(
        str(state_dir),
        {"bind": backend},
        RealFileSystem(),
        SubprocessRunner(),
        RealClock(),
        prober or RealProber(timeout=1.0),
        probe_timeout=probe_timeout,
        probe_interval=0.05,
    )
    return Site(named, engine, backend, state_dir)


@pytest.fixture
def site(tmp_path):
    s = _site(tmp_path)
    yield s
    s.named.stop()


def alice_zone(a: str = "192.0.2.1") -> Zone:
    return Zone(
        name="example.org",
        owner="alice",
        records=(
            Record("@", "A", (a,)),
            Record("@", "NS", ("ns1.coop.example",)),
            Record("@", "NS", ("ns2.coop.example",)),
            Record("@", "MX", (10, "mail.example.org")),
            Record("@", "TXT", (LONG_TXT,), ttl=120),
            Record("@", "CAA", (0, "issue", "letsencrypt.org")),
            Record("@", "CAA", (128, "iodef", "mailto:hostmaster@example.org")),
            Record("mail", "A", ("192.0.2.25",)),
            Record("mail", "AAAA", ("2001:db8::25",)),
            Record("www", "CNAME", ("example.org",)),
            Record("_sip._tcp", "SRV", (10, 60, 5060, "sip.example.org")),
            Record("sip", "A", ("192.0.2.26",)),
        ),
        nodes=("local",),
        ttl=3600,
    )


def answer(port: int, name: str, rtype: str):
    """The answer RRset for (name, rtype), checking named answered authoritatively."""
    r = query(port, name, rtype)
    assert r.flags & dns.flags.AA, f"{name} {rtype}: not authoritative: {r}"
    sets = [s for s in r.answer if s.rdtype == dns.rdatatype.from_text(rtype)]
    assert sets, f"{name} {rtype}: no answer: {r}"
    return sets[0]


def test_every_record_type_is_served(site):
    """Each modelled record type answers with the modelled data (TXT of 600+ characters
    with quotes, backslashes, ';', '(' and '$INCLUDE' comes back byte for byte, in
    character-strings of at most 255), and the SOA carries the system's primary, the
    hostmaster and the serial the probe expected."""
    out = site.engine.apply(DesiredState(zones=(alice_zone(),)))
    assert out.status == "applied", out.message
    port = site.named.port
    assert {rr.address for rr in answer(port, "example.org", "A")} == {"192.0.2.1"}
    assert {rr.address for rr in answer(port, "mail.example.org", "AAAA")} == {"2001:db8::25"}
    assert [rr.target.to_text() for rr in answer(port, "www.example.org", "CNAME")] == [
        "example.org."
    ]
    mx = answer(port, "example.org", "MX")
    assert [(rr.preference, rr.exchange.to_text()) for rr in mx] == [(10, "mail.example.org.")]
    ns = answer(port, "example.org", "NS")
    assert sorted(rr.target.to_text() for rr in ns) == ["ns1.coop.example.", "ns2.coop.example."]
    txt = answer(port, "example.org", "TXT")
    assert txt.ttl == 120
    (rr,) = list(txt)
    assert b"".join(rr.strings).decode() == LONG_TXT
    assert len(LONG_TXT) > 600 and all(len(s) <= 255 for s in rr.strings)
    srv = answer(port, "_sip._tcp.example.org", "SRV")
    assert [(r.priority, r.weight, r.port, r.target.to_text()) for r in srv] == [
        (10, 60, 5060, "sip.example.org.")
    ]
    caa = answer(port, "example.org", "CAA")
    assert sorted((r.flags, r.tag, r.value) for r in caa) == [
        (0, b"issue", b"letsencrypt.org"),
        (128, b"iodef", b"mailto:hostmaster@example.org"),
    ]
    (soa,) = list(answer(port, "example.org", "SOA"))
    assert soa.mname.to_text() == "ns1.coop.example."
    assert soa.rname.to_text() == "hostmaster.coop.example."
    assert soa.serial == serial_of(site.units()["example.org"])
    assert soa.minimum == site.backend.config.negative_ttl


def test_zone_without_ns_gets_the_site_name_servers(site):
    """A zone with no apex NS record is served with the site's name servers."""
    z = Zone("example.net", "bob", (Record("@", "A", ("192.0.2.9",)),), ("local",))
    assert site.engine.apply(DesiredState(zones=(z,))).status == "applied"
    ns = answer(site.named.port, "example.net", "NS")
    assert sorted(rr.target.to_text() for rr in ns) == [
        f"{n}." for n in sorted(site.backend.config.nameservers)
    ]


def test_change_raises_serial_and_serves_new_data(site):
    """Changing a record gives a higher serial and named answers the new data after the
    reload; applying the same state again changes nothing (no generation, same serial)."""
    first = site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.1"),)))
    assert first.status == "applied", first.message
    s1 = soa_serial(site.named.port, "example.org")
    second = site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.2"),)))
    assert second.status == "applied", second.message
    assert second.generation == first.generation + 1
    s2 = soa_serial(site.named.port, "example.org")
    assert s1 is not None and s2 is not None and s2 > s1
    assert {rr.address for rr in answer(site.named.port, "example.org", "A")} == {"192.0.2.2"}
    again = site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.2"),)))
    assert again.status == "unchanged"
    assert soa_serial(site.named.port, "example.org") == s2


def bad_bob_zone() -> Zone:
    """Something the model can express and the grammars allow but BIND refuses: a CNAME
    beside other data at the same name."""
    return Zone(
        "example.com",
        "bob",
        (
            Record("www", "CNAME", ("example.org",)),
            Record("www", "A", ("192.0.2.7",)),
        ),
        ("local",),
    )


@pytest.mark.parametrize("unit_checks", [True, False], ids=["named-checkzone", "checkconf-z"])
def test_zone_bind_refuses_is_refused_with_binds_message(tmp_path, unit_checks):
    """bob's zone with a CNAME beside an A record is refused for bob with BIND's own
    message (from named-checkzone on his unit, or from named-checkconf -z over the staged
    generation when per-unit checks are off); alice's zone in the same batch goes live,
    and named never serves bob's zone."""
    site = _site(tmp_path, unit_checks=unit_checks)
    try:
        out = site.engine.apply(DesiredState(zones=(alice_zone(), bad_bob_zone())))
        assert out.status == "applied", out.message
        assert out.applied == ("alice",)
        message = out.refused["bob"]
        assert "www.example.com: CNAME and other data" in message, message
        # Per-unit checks name the unit; the whole-generation check (bisected) names the
        # backend and carries named-checkconf's view-qualified line.
        if unit_checks:
            assert message.startswith("bind zone:example.com: ")
        else:
            assert message.startswith("bind: ") and "_default/example.com/IN" in message
        assert soa_serial(site.named.port, "example.org") is not None
        r = query(site.named.port, "www.example.com", "A")
        assert not r.answer and r.rcode() == dns.rcode.REFUSED
    finally:
        site.named.stop()


# Other zones the grammars allow and named refuses to load, with named-checkzone's words.
REFUSED_BY_BIND = {
    "underscore-host": (
        (Record("_x", "A", ("192.0.2.7",)),),
        "_x.example.com: bad owner name (check-names)",
    ),
    "in-zone-ns-without-address": (
        (Record("@", "NS", ("ns.example.com",)),),
        "NS 'ns.example.com' has no address records",
    ),
    "cname-at-apex": ((Record("@", "CNAME", ("example.org",)),), "CNAME and other data"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BY_BIND))
def test_other_zones_bind_refuses_are_refused_with_its_message(tmp_path, case):
    """An A record at an '_' name (check-names), an in-zone NS without an address and a
    CNAME at the apex (beside the system's SOA and NS) pass the grammars but not
    named-checkzone: each is refused for bob with named-checkzone's own words, and alice's
    zone in the same batch goes live."""
    records, words = REFUSED_BY_BIND[case]
    site = _site(tmp_path)
    try:
        bob = Zone("example.com", "bob", records, ("local",))
        out = site.engine.apply(DesiredState(zones=(alice_zone(), bob)))
        assert out.applied == ("alice",), out
        assert words in out.refused["bob"], out.refused["bob"]
        assert out.refused["bob"].startswith("bind zone:example.com: ")
        assert soa_serial(site.named.port, "example.com") is None
    finally:
        site.named.stop()


class FailingOnce:
    """A prober that fails every probe of one serial (as if named had not loaded it)."""

    def __init__(self):
        self.fail_serials: set[int] = set()
        self.real = RealProber(timeout=1.0)

    def probe(self, probe):
        if probe.target[4] in self.fail_serials:
            return "injected failure"
        return self.real.probe(probe)


def test_rollback_serves_the_older_zone_file_again(tmp_path):
    """When a probe fails after the reload, the engine switches back and reloads: named
    then serves the previous generation's zone file again, although that file is older
    than the one it had just loaded (content-addressed files keep their old mtime)."""
    prober = FailingOnce()
    site = _site(tmp_path, prober=prober, probe_timeout=0.3)
    try:
        assert site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.1"),))).status == (
            "applied"
        )
        s1 = soa_serial(site.named.port, "example.org")
        # The next serial is s1 + 1 (same day) or today's first; fail both.
        prober.fail_serials = {s1 + 1, (s1 // 100 + 1) * 100}
        out = site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.3"),)))
        assert out.status == "rolled back", out.message
        assert "injected failure" in out.message
        loads = [line for line in site.named.log().splitlines() if "loaded serial" in line]
        assert [line.rsplit(" ", 1)[1] for line in loads[-2:]] == [str(s1 + 1), str(s1)] or [
            line.rsplit(" ", 1)[1] for line in loads[-2:]
        ] == [str((s1 // 100 + 1) * 100), str(s1)]
        assert soa_serial(site.named.port, "example.org") == s1
        assert {rr.address for rr in answer(site.named.port, "example.org", "A")} == {"192.0.2.1"}
    finally:
        site.named.stop()


def test_probe_catches_a_zone_named_did_not_load(tmp_path):
    """With both checkers switched off, bob's CNAME-and-other-data zone reaches named,
    which refuses to load it although ``rndc reload`` succeeds; the SOA probe sees it
    (SERVFAIL), the engine rolls back and applies again without bob: alice's change is
    live, bob is refused with the probe's message, and named never serves bob's zone."""
    site = _site(tmp_path, probe_timeout=1.0, unit_checks=False, check_zones=False)
    try:
        first = site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.1"),)))
        assert first.status == "applied", first.message
        s1 = soa_serial(site.named.port, "example.org")
        out = site.engine.apply(DesiredState(zones=(alice_zone("192.0.2.4"), bad_bob_zone())))
        assert out.applied == ("alice",), out
        message = out.refused["bob"]
        assert "example.com" in message and "SERVFAIL" in message, message
        assert "CNAME and other data" in site.named.log()
        s2 = soa_serial(site.named.port, "example.org")
        assert s1 is not None and s2 is not None and s2 > s1
        assert {rr.address for rr in answer(site.named.port, "example.org", "A")} == {"192.0.2.4"}
        assert not query(site.named.port, "www.example.com", "A").answer
    finally:
        site.named.stop()
