"""The BIND backend's rendering: zone files, serials, the index, commands and probes.

Every zone file here is read back with dnspython's zone parser (``dns.zone.from_text``,
``$INCLUDE`` refused) and compared with the records the model asked for, computed from
the model on its own: a hostile value is either refused (naming the owner and the field)
or lands in its slot, never as an extra record or directive.
"""

from __future__ import annotations

import ipaddress
import random
import subprocess
from pathlib import Path, PurePosixPath

import attrs
import dns.rdatatype
import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domtool.model import DesiredState, Record, Zone
from domtool.slave.backend import Command, Unit
from domtool.slave.backends import bind
from domtool.slave.backends.bind import (
    BindBackend,
    BindConfig,
    RenderRefused,
    next_serial,
    probes_for,
    serial_of,
    site_config,
)
from tests.conftest import require_binary

NOW = 1_795_000_000  # 2026-11-18 08:53 UTC
TODAY = 2026111800
CONFIG = BindConfig(
    base_config="/etc/bind/domtool-base.conf",
    live_config="/etc/bind/named.conf",
    rndc_config="/etc/bind/rndc.conf",
    port=5353,
    control_port=9953,
)


def backend(**kw) -> BindBackend:
    return BindBackend(attrs.evolve(CONFIG, **kw))


def zone(records=(), name="example.org", owner="alice", ttl=3600, nodes=("local",)) -> Zone:
    return Zone(name=name, owner=owner, records=tuple(records), nodes=nodes, ttl=ttl)


def render(z: Zone, previous=None, now: int = NOW, b: BindBackend | None = None) -> Unit:
    (unit,) = (b or backend()).units(DesiredState(zones=(z,)), previous or {}, now)
    return unit


# ---------------------------------------------------------------------------
# Reading a zone back, and what the model asked for


def parse(z: Zone, content: bytes) -> set[tuple]:
    """Every (name, type, ttl, data) of a rendered zone file, as dnspython reads it."""
    parsed = dns.zone.from_text(
        content.decode("ascii"), origin=z.name + ".", relativize=False, allow_include=False
    )
    out = set()
    for name, rdataset in parsed.iterate_rdatasets():
        owner = name.to_text(omit_final_dot=True)
        rtype = dns.rdatatype.to_text(rdataset.rdtype)
        for rd in rdataset:
            out.add((owner, rtype, rdataset.ttl, _data(rtype, rd)))
    return out


def _host(n) -> str:
    return n.to_text(omit_final_dot=True)


def _data(rtype: str, rd) -> tuple:
    if rtype == "A":
        return (rd.address,)
    if rtype == "AAAA":  # compared as bytes: text forms of IPv4-mapped addresses vary
        return (ipaddress.IPv6Address(rd.address).packed,)
    if rtype in ("CNAME", "NS"):
        return (_host(rd.target),)
    if rtype == "MX":
        return (rd.preference, _host(rd.exchange))
    if rtype == "TXT":
        assert all(len(s) <= 255 for s in rd.strings)
        return (b"".join(rd.strings).decode("ascii"),)
    if rtype == "SRV":
        return (rd.priority, rd.weight, rd.port, _host(rd.target))
    if rtype == "CAA":
        return (rd.flags, rd.tag.decode("ascii"), rd.value.decode("ascii"))
    if rtype == "SOA":
        return (
            _host(rd.mname),
            _host(rd.rname),
            rd.serial,
            rd.refresh,
            rd.retry,
            rd.expire,
            rd.minimum,
        )
    raise AssertionError(f"unexpected record type {rtype}")


def expected(z: Zone, serial: int, config: BindConfig = CONFIG) -> set[tuple]:
    """What the model asks for, computed from the model alone (canonical forms: names
    lower-cased, IPv6 as its 16 bytes, CAA tags lower-cased), plus the system's SOA and, when
    the zone has no apex NS, the site's name servers."""
    origin = z.name.lower()

    def owner(name: str) -> str:
        return origin if name == "@" else f"{name.lower()}.{origin}"

    def data(r: Record) -> tuple:
        d = r.data
        return {
            "A": lambda: d,
            "AAAA": lambda: (ipaddress.IPv6Address(d[0]).packed,),
            "CNAME": lambda: (d[0].lower(),),
            "NS": lambda: (d[0].lower(),),
            "MX": lambda: (d[0], d[1].lower()),
            "TXT": lambda: d,
            "SRV": lambda: (d[0], d[1], d[2], d[3].lower()),
            "CAA": lambda: (d[0], d[1].lower(), d[2]),
        }[r.rtype]()

    rows = [(owner(r.name), r.rtype, z.ttl if r.ttl is None else r.ttl, data(r)) for r in z.records]
    apex_ns = [r.data[0].lower() for r in z.records if r.rtype == "NS" and r.name == "@"]
    if not apex_ns:
        rows += [(origin, "NS", z.ttl, (ns,)) for ns in config.nameservers]
    # An RRset has one TTL: dnspython keeps the smallest of its records'.
    ttls: dict[tuple, int] = {}
    for name, rtype, ttl, _ in rows:
        ttls[(name, rtype)] = min(ttl, ttls.get((name, rtype), ttl))
    out = {(name, rtype, ttls[(name, rtype)], d) for name, rtype, _, d in rows}
    primary = apex_ns[0] if apex_ns else config.nameservers[0]
    soa = (primary, config.hostmaster, serial, config.refresh, config.retry, config.expire)
    out.add((origin, "SOA", z.ttl, (*soa, config.negative_ttl)))
    return out


# ---------------------------------------------------------------------------
# Plain rendering

EVERY_TYPE = (
    Record("@", "A", ("192.0.2.1",)),
    Record("@", "NS", ("ns.other.example",)),
    Record("@", "MX", (10, "Mail.Example.org")),
    Record("@", "TXT", ('a "q" \\ b; (c) $INCLUDE /etc/passwd' + "x" * 600,), ttl=60),
    Record("@", "CAA", (0, "Issue", "letsencrypt.org")),
    Record("@", "CAA", (128, "iodef", "mailto:h@example.org")),
    Record("mail", "AAAA", ("2001:DB8:0:0::1",)),
    Record("www", "CNAME", ("example.org",)),
    Record("_sip._tcp", "SRV", (1, 2, 5060, "sip.example.org")),
    Record("*.dyn", "A", ("192.0.2.2",), ttl=0),
    Record("lab", "NS", ("ns.lab.example",)),
)


def test_every_record_type_reads_back_as_modelled():
    """A zone with each type (TXT over 600 characters with quotes, backslashes, ';', '('
    and '$INCLUDE', mixed-case names, a wildcard, a delegation) reads back as exactly the
    model's records plus the system's SOA, with today's first serial."""
    z = zone(EVERY_TYPE)
    unit = render(z)
    assert unit.key == "zone:example.org" and unit.owner == "alice" and unit.ext == "zone"
    assert serial_of(unit.content) == TODAY
    assert parse(z, unit.content) == expected(z, TODAY)
    assert b"$INCLUDE /etc/passwd" in unit.content  # inside a quoted string, harmless
    assert [line for line in unit.content.splitlines() if line.startswith(b"$")] == [b"$TTL 3600"]


def test_unit_check_is_named_checkzone_on_the_staged_path():
    """Each unit carries named-checkzone with named's primary rules (check-names fail,
    in-zone integrity only) on its zone name and the staged path placeholder."""
    unit = render(zone(EVERY_TYPE))
    assert unit.checks == (
        Command(
            ("/usr/bin/named-checkzone", "-k", "fail", "-i", "local", "example.org", "{path}"),
            120.0,
        ),
    )
    assert render(zone(EVERY_TYPE), b=backend(unit_checks=False)).checks == ()


def test_zone_without_apex_ns_gets_site_name_servers_and_soa_primary():
    """No apex NS: the site's name servers are added and the first is the SOA primary;
    with apex NS records the zone's first one is the primary and none are added."""
    bare = zone([Record("@", "A", ("192.0.2.1",))])
    got = parse(bare, render(bare).content)
    assert {d[0] for n, t, _, d in got if t == "NS"} == set(CONFIG.nameservers)
    assert [d[0] for n, t, _, d in got if t == "SOA"] == [CONFIG.nameservers[0]]
    own = zone([Record("@", "NS", ("b.example.net",)), Record("@", "NS", ("a.example.net",))])
    got = parse(own, render(own).content)
    assert {d[0] for n, t, _, d in got if t == "NS"} == {"a.example.net", "b.example.net"}
    assert [d[0] for n, t, _, d in got if t == "SOA"] == ["b.example.net"]


def test_hostmaster_as_address_escapes_dots_in_the_local_part():
    """A hostmaster given as an address becomes an RNAME whose local part keeps its dot."""
    z = zone([Record("@", "A", ("192.0.2.1",))])
    unit = render(z, b=backend(hostmaster="dns.admin@coop.example"))
    assert b" dns\\.admin.coop.example. " in unit.content
    soa = [d for n, t, _, d in parse(z, unit.content) if t == "SOA"][0]
    assert soa[1] == "dns\\.admin.coop.example"


# ---------------------------------------------------------------------------
# Serials and unchanged zones


def test_unchanged_zone_returns_the_previous_unit_itself():
    """Rendering the same zone again, even a day later, returns the previous Unit object
    (same bytes, same serial), so the engine writes and checks nothing."""
    first = render(zone(EVERY_TYPE))
    again = render(zone(EVERY_TYPE), {first.key: first}, NOW + 86400)
    assert again is first


def test_changed_zone_gets_a_higher_serial():
    """A change the same day gives serial + 1; the next day gives that day's first serial;
    the SOA is the only other difference."""
    first = render(zone(EVERY_TYPE))
    changed = zone(EVERY_TYPE + (Record("new", "A", ("192.0.2.9",)),))
    second = render(changed, {first.key: first}, NOW + 60)
    assert serial_of(second.content) == TODAY + 1
    third = render(zone(EVERY_TYPE), {first.key: second}, NOW + 86400)
    assert serial_of(third.content) == TODAY + 100
    assert parse(changed, second.content) == expected(changed, TODAY + 1)


def test_config_change_also_raises_the_serial():
    """The SOA's own fields (hostmaster, timers) are part of the zone: changing them is a
    change, with a new serial."""
    first = render(zone(EVERY_TYPE))
    b = backend(negative_ttl=600)
    assert serial_of(render(zone(EVERY_TYPE), {first.key: first}, NOW, b).content) == TODAY + 1


def test_owner_change_is_a_change():
    """The zone file's header comment names its owner, so a zone handed to another member
    is a new unit owned by them, with the next serial and the same records."""
    first = render(zone(EVERY_TYPE))
    moved = render(zone(EVERY_TYPE, owner="bob"), {first.key: first})
    assert moved.owner == "bob" and moved.content.startswith(b"; domtool: zone example.org of bob.")
    assert serial_of(moved.content) == TODAY + 1
    assert parse(zone(EVERY_TYPE), moved.content) == expected(zone(EVERY_TYPE), TODAY + 1)


@pytest.mark.parametrize(
    ("previous", "now", "want"),
    [
        (None, NOW, TODAY),
        (TODAY - 100, NOW, TODAY),  # yesterday's
        (TODAY + 41, NOW, TODAY + 42),  # same day
        (TODAY + 99, NOW, TODAY + 100),  # the 101st change today runs into tomorrow
        (2030010100, NOW, 2030010101),  # a serial from the future is only ever increased
        (1700000000, NOW, TODAY),  # a unix-time serial from an older system
        (2**32 - 1, NOW, TODAY),  # RFC 1982: today is greater than 2**32 - 1
        (TODAY + 2**31 - 1, NOW, (TODAY + 2**31) % 2**32),  # today is "smaller": wrap
    ],
)
def test_next_serial_cases(previous, now, want):
    """The serial rule at the day boundary, past 100 changes a day and across 2**32."""
    assert next_serial(previous, now) == want


@given(previous=st.integers(0, 2**32 - 1), now=st.integers(0, 2**34))
def test_next_serial_is_always_greater_in_rfc1982(previous, now):
    """Whatever the previous serial and the clock, the next serial is greater than it in
    RFC 1982 serial arithmetic, and fits in 32 bits."""
    s = next_serial(previous, now)
    assert 0 <= s < 2**32
    assert s != previous and (s - previous) % 2**32 < 2**31


# ---------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (Record("www", "A", ("192.0.2.300",)), "records[0].data[0]"),
        (Record("www", "AAAA", ("2001:db8::1%eth0",)), "records[0].data[0]"),
        (Record("w w", "A", ("192.0.2.1",)), "records[0].name"),
        (Record("www.", "A", ("192.0.2.1",)), "records[0].name"),
        (Record("www", "CNAME", ("evil.example.\nx IN A 1.2.3.4",)), "records[0].data[0]"),
        (Record("www", "TXT", ("a\nb",)), "records[0].data[0]"),
        (Record("www", "TXT", ("caf\u00e9",)), "records[0].data[0]"),
        (Record("www", "TXT", ("a\x00b",)), "records[0].data[0]"),
        (Record("www", "TXT", ("x" * 4001,)), "records[0].data[0]"),
        (Record("@", "MX", (True, "mail.example.org")), "records[0].data[0]"),
        (Record("@", "MX", (65536, "mail.example.org")), "records[0].data[0]"),
        (Record("@", "MX", ("10", "mail.example.org")), "records[0].data[0]"),
        (Record("_s._tcp", "SRV", (1, 2, 0, "s.example.org")), "records[0].data[2]"),
        (Record("@", "CAA", (256, "issue", "ca.example")), "records[0].data[0]"),
        (Record("@", "CAA", (0, "issue\n", "ca.example")), "records[0].data[1]"),
        (Record("@", "CAA", (0, "issue", 'ca"x')), "records[0].data[2]"),
        (Record("@", "SOA", ("a", "b")), "records[0].rtype"),
        (Record("@", "$INCLUDE", ("/etc/passwd",)), "records[0].rtype"),
        (Record("@", "A", ("192.0.2.1", "192.0.2.2")), "records[0].data"),
        (Record("@", "A", ("192.0.2.1",), ttl=-1), "records[0].ttl"),
        (Record("@", "A", ("192.0.2.1",), ttl=2**31), "records[0].ttl"),
        # 242 characters: a record name on its own, but 254 with ".example.org".
        (Record(".".join(["a" * 63] * 3 + ["d" * 50]), "A", ("192.0.2.1",)), "records[0].name"),
    ],
)
def test_bad_values_are_refused_naming_owner_zone_and_field(record, field):
    """Each bad value refuses the whole zone, naming the owner, the zone and the field."""
    with pytest.raises(RenderRefused) as info:
        render(zone([record]))
    (err,) = info.value.errors
    assert (err.owner, err.zone, err.field) == ("alice", "example.org", field)
    assert info.value.owners == ("alice",)
    assert str(err).startswith(f"alice: zone 'example.org': {field}: ")


def test_bad_zone_fields_and_duplicates_are_refused_for_their_owner_only():
    """A bad zone name, TTL or owner, and a zone configured twice, are refused with every
    error at once; render() still returns the good zones of other owners."""
    good = zone([Record("@", "A", ("192.0.2.1",))], name="good.example", owner="carol")
    bad = [
        zone(name="exa mple.org", owner="alice"),
        zone(name="ok.example", owner="bob", ttl=-5),
        zone(name="x.example", owner="Root\n"),
        zone(name="good.example", owner="dave"),
    ]
    units, errors = backend().render(DesiredState(zones=(good, *bad)), {}, NOW)
    assert [u.key for u in units] == ["zone:good.example"]
    assert [(e.owner, e.field) for e in errors] == [
        ("alice", "name"),
        ("bob", "ttl"),
        ("Root\n", "owner"),
        ("dave", "name"),
    ]
    with pytest.raises(RenderRefused) as info:
        backend().units(DesiredState(zones=(good, *bad)), {}, NOW)
    assert info.value.owners == ("Root\n", "alice", "bob", "dave")


def test_only_this_nodes_zones_are_rendered():
    """With ``node`` set, zones served by other DNS nodes are left out (and not probed)."""
    here = zone([Record("@", "A", ("192.0.2.1",))], name="here.example", nodes=("ns1",))
    there = zone([Record("@", "A", ("192.0.2.1",))], name="there.example", nodes=("ns2",))
    b = backend(node="ns1")
    state = DesiredState(zones=(here, there))
    assert [u.key for u in b.units(state, {}, NOW)] == ["zone:here.example"]
    assert [p.target[2] for p in b.probes(state)] == ["here.example"]


# ---------------------------------------------------------------------------
# Index, commands and probes


def test_index_lists_zones_sorted_and_check_conf_includes_the_base():
    """zones.conf has one primary zone statement per unit, sorted by key; check.conf is
    the site's base config plus the same statements; a quoted or relative unit path is
    refused."""
    paths = {
        "zone:b.example": PurePosixPath("/var/lib/domtool/units/bind/bb.zone"),
        "zone:a.example": PurePosixPath("/var/lib/domtool/units/bind/aa.zone"),
    }
    files = backend().index(paths)
    assert set(files) == {"zones.conf", "check.conf"}
    zones = files["zones.conf"].decode().splitlines()[1:]
    assert zones == [
        'zone "a.example" { type primary; file "/var/lib/domtool/units/bind/aa.zone"; };',
        'zone "b.example" { type primary; file "/var/lib/domtool/units/bind/bb.zone"; };',
    ]
    check = files["check.conf"].decode().splitlines()
    assert 'include "/etc/bind/domtool-base.conf";' in check and check[-2:] == zones
    for bad in ('/x/"; };zone "evil', "relative/x.zone", "/x/\n.zone"):
        with pytest.raises(ValueError):
            backend().index({"zone:a.example": PurePosixPath(bad)})
    with pytest.raises(ValueError):
        backend().index({'zone:a"b.example': PurePosixPath("/x.zone")})


def test_check_all_and_reload_commands():
    """check_all runs named-checkconf -z on the staged check.conf (without -z when
    check_zones is off); reload is rndc with the site's key file, server and port."""
    gen = PurePosixPath("/var/lib/domtool/staging/7")
    assert backend().check_all(gen) == (
        Command(("/usr/bin/named-checkconf", "-z", f"{gen}/bind/check.conf"), 120.0),
    )
    assert backend(check_zones=False).check_all(gen)[0].argv[1:] == (f"{gen}/bind/check.conf",)
    assert backend().reload() == (
        Command(
            (
                "/usr/sbin/rndc",
                "-c",
                "/etc/bind/rndc.conf",
                "-s",
                "127.0.0.1",
                "-p",
                "9953",
                "reload",
            ),
            120.0,
        ),
    )


def test_probes_expect_the_rendered_serial_of_changed_zones():
    """Probes ask for the SOA of each zone whose text changed, expecting the serial just
    rendered; with nothing changed, only the first zone is probed (named is alive);
    probes_for gives the same from units alone."""
    b = backend()
    a = zone([Record("@", "A", ("192.0.2.1",))], name="a.example")
    c = zone([Record("@", "A", ("192.0.2.1",))], name="c.example", owner="carol")
    state = DesiredState(zones=(a, c))
    first = {u.key: u for u in b.units(state, {}, NOW)}
    assert [p.target for p in b.probes(state)] == [
        ("127.0.0.1", 5353, "a.example", "SOA", TODAY),
        ("127.0.0.1", 5353, "c.example", "SOA", TODAY),
    ]
    assert [p.owner for p in b.probes(state)] == ["alice", "carol"]
    assert probes_for(CONFIG, first.values()) == b.probes(state)
    c2 = attrs.evolve(c, records=(Record("@", "A", ("192.0.2.2",)),))
    b.units(DesiredState(zones=(a, c2)), first, NOW + 1)
    assert [p.target[2:] for p in b.probes(DesiredState(zones=(a, c2)))] == [
        ("c.example", "SOA", TODAY + 1)
    ]
    b.units(state, first, NOW + 2)
    assert [p.target[2:] for p in b.probes(state)] == [("a.example", "SOA", TODAY)]
    assert [p.target[4] for p in backend().probes(state)] == [None, None]


@pytest.mark.daemons
def test_named_checkconf_accepts_the_site_config_and_a_generation(tmp_path: Path):
    """named-checkconf accepts site_config's base and live files and a rendered
    generation's check.conf (with -z, loading the zone), and refuses the generation when
    a unit file is missing."""
    require_binary("named-checkconf", "named-checkzone")
    config = BindConfig(
        base_config=str(tmp_path / "base.conf"),
        live_config=str(tmp_path / "named.conf"),
        rndc_config=str(tmp_path / "rndc.conf"),
    )
    (tmp_path / "current").mkdir()
    (tmp_path / "current" / "zones.conf").write_text("")
    files = site_config(
        config, str(tmp_path / "current/zones.conf"), directory=str(tmp_path), rndc_secret="A" * 44
    )
    for path, content in files.items():
        Path(path).write_bytes(content)
    b = BindBackend(config)
    unit = b.units(DesiredState(zones=(zone(EVERY_TYPE),)), {}, NOW)[0]
    zfile = tmp_path / "u.zone"
    zfile.write_bytes(unit.content)
    (tmp_path / "gen" / "bind").mkdir(parents=True)
    for name, data in b.index({unit.key: PurePosixPath(zfile)}).items():
        (tmp_path / "gen" / "bind" / name).write_bytes(data)

    def run(argv) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=30)

    assert run([config.checkconf, config.live_config]).returncode == 0
    argv = [a.replace("{path}", str(zfile)) for a in unit.checks[0].argv]
    done = run(argv)
    assert done.returncode == 0, done.stdout + done.stderr
    done = run(b.check_all(PurePosixPath(tmp_path / "gen"))[0].argv)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "example.org/IN: loaded serial" in done.stdout
    zfile.unlink()
    done = run(b.check_all(PurePosixPath(tmp_path / "gen"))[0].argv)
    assert done.returncode != 0 and "file not found" in done.stdout + done.stderr


# ---------------------------------------------------------------------------
# Hostile values in every member-controlled field

HOSTILE_CHARS = "\"\\\n\r\t ;()$@.*_-/{}<>#'\x00\x7fé\u2028"
TOKENS = (
    "$INCLUDE /etc/passwd",
    "$ORIGIN evil.example.",
    "$TTL 0",
    "\nevil.example. IN A 192.0.2.66",
    '" IN A 192.0.2.66 "',
    "\\010",
    "\\\n",
    "x" * 256,
    "x" * 300 + '"',
    "a\x00b",
    "(\n",
    "@",
    "*",
)

# field -> (build a zone with the value in that field, a benign value)
INT_FIELDS = {
    "ttl": (lambda v: zone([Record("@", "A", ("192.0.2.1",))], ttl=v), 300),
    "records[0].ttl": (lambda v: zone([Record("t", "A", ("192.0.2.1",), ttl=v)]), 60),
    "records[0].data[0]@MX": (lambda v: zone([Record("m", "MX", (v, "mx.example.net"))]), 10),
    "records[0].data[0]@SRV": (
        lambda v: zone([Record("_s._tcp", "SRV", (v, 1, 80, "s.example.net"))]),
        5,
    ),
    "records[0].data[1]@SRV": (
        lambda v: zone([Record("_s._tcp", "SRV", (1, v, 80, "s.example.net"))]),
        5,
    ),
    "records[0].data[2]@SRV": (
        lambda v: zone([Record("_s._tcp", "SRV", (1, 1, v, "s.example.net"))]),
        443,
    ),
    "records[0].data[0]@CAA": (lambda v: zone([Record("@", "CAA", (v, "issue", "ca.net"))]), 0),
}
STR_FIELDS = {
    "name": (lambda v: zone([Record("@", "A", ("192.0.2.1",))], name=v), "example.org"),
    "owner": (lambda v: zone([Record("@", "A", ("192.0.2.1",))], owner=v), "alice"),
    "records[0].name": (lambda v: zone([Record(v, "A", ("192.0.2.1",))]), "www"),
    "records[0].rtype": (lambda v: zone([Record("r", v, ("192.0.2.1",))]), "A"),
    "records[0].data[0]@A": (lambda v: zone([Record("a", "A", (v,))]), "192.0.2.1"),
    "records[0].data[0]@AAAA": (lambda v: zone([Record("a", "AAAA", (v,))]), "2001:db8::1"),
    "records[0].data[0]@CNAME": (lambda v: zone([Record("c", "CNAME", (v,))]), "t.example.net"),
    "records[0].data[0]@NS": (lambda v: zone([Record("@", "NS", (v,))]), "ns.example.net"),
    "records[0].data[1]@MX": (lambda v: zone([Record("m", "MX", (10, v))]), "mx.example.net"),
    "records[0].data[3]@SRV": (
        lambda v: zone([Record("_s._tcp", "SRV", (1, 1, 80, v))]),
        "s.example.net",
    ),
    "records[0].data[0]@TXT": (lambda v: zone([Record("t", "TXT", (v,))]), "v=spf1 -all"),
    "records[0].data[1]@CAA": (lambda v: zone([Record("@", "CAA", (0, v, "ca.net"))]), "issue"),
    "records[0].data[2]@CAA": (
        lambda v: zone([Record("@", "CAA", (0, "issue", v))]),
        "ca.example.net",
    ),
}
FIELDS = {**INT_FIELDS, **STR_FIELDS}


def check_one(field: str, value: object) -> bool:
    """Render the field's zone with ``value``: refused naming the owner and the field, or
    read back as exactly the model's records. True when it was accepted."""
    z = FIELDS[field][0](value)
    try:
        unit = render(z)
    except RenderRefused as e:
        (err,) = e.errors
        want = {field.split("@")[0]}
        if field == "records[0].rtype":  # a known type whose data does not fit it
            want |= {"records[0].data", "records[0].data[0]"}
        assert err.owner == z.owner and err.zone == z.name and err.field in want, err
        return False
    assert parse(z, unit.content) == expected(z, TODAY), (field, value)
    return True


def hostile_text(benign: str):
    splice = st.builds(
        lambda i, junk: benign[: i % (len(benign) + 1)] + junk + benign[i % (len(benign) + 1) :],
        st.integers(0, 100),
        st.text(alphabet=HOSTILE_CHARS, min_size=1, max_size=4) | st.sampled_from(TOKENS),
    )
    return st.one_of(
        splice,
        st.sampled_from(TOKENS),
        st.text(alphabet=HOSTILE_CHARS + "ab0", max_size=40),
        st.text(max_size=300),
        st.just(benign.upper()),
    )


HOSTILE_INTS = st.one_of(
    st.integers(-(2**40), 2**40),
    st.sampled_from([-1, 0, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, True, False]),
    st.sampled_from(["10", "1e3", 1.5, None, "0x10", " 1"]),
)


@pytest.mark.parametrize("field", sorted(FIELDS))
@settings(max_examples=200)
@given(data=st.data())
def test_hostile_values_are_refused_or_read_back_exactly(field, data):
    """In every member-controlled field, a hostile value (quotes, backslashes, newlines,
    ';', '(', '$INCLUDE', NUL, long and non-ASCII text) is refused naming the owner and
    the field, or the zone reads back as exactly the model's records and nothing else."""
    benign = FIELDS[field][1]
    strategy = HOSTILE_INTS if field in INT_FIELDS else hostile_text(benign)
    check_one(field, data.draw(strategy))


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_each_field_refuses_a_newline_and_accepts_its_benign_value(field):
    """The property above is not vacuous: each field's benign value renders, and a value
    with a newline (or, for numbers, a string) is refused for that field."""
    benign = FIELDS[field][1]
    assert check_one(field, benign)
    bad = "1\n" if field in INT_FIELDS else benign[:-1] + "\n" + benign[-1]
    assert not check_one(field, bad)


def _awkward_name(rng: random.Random) -> str:
    """A name that is often legal but awkward: mixed case, digits, inner hyphens, labels
    up to 64 characters, a leading '_' or a '*' label; sometimes just over a limit."""
    labels = []
    for _ in range(rng.randint(1, 5)):
        n = rng.choice([1, 2, 5, 62, 63, 64])
        label = "".join(rng.choice("aZz09-") for _ in range(n))
        labels.append(rng.choice(["", "", "", "_"]) + label)
    if rng.random() < 0.1:
        labels[0] = "*"
    return ".".join(labels + [rng.choice(["example", "ORG", "net", "x1", "1"])])


def _awkward_address(rng: random.Random, benign: str) -> str:
    """An address that is often legal but awkward: IPv4 parts 0-256 (sometimes with a
    leading zero); IPv6 in upper case, with '::' anywhere, or with an IPv4 tail."""
    if ":" not in benign:
        parts = [str(rng.choice([0, 1, 9, 10, 99, 100, 199, 249, 250, 255, 256])) for _ in range(4)]
        if rng.random() < 0.1:
            parts[rng.randrange(4)] = "01"
        return ".".join(parts)
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        i = rng.randint(0, 7)
        groups[i : rng.randint(i + 1, 8)] = [""]
    text = ":".join(groups).replace(":::", "::")
    if text.startswith(":") and not text.startswith("::"):
        text = ":" + text
    if text.endswith(":") and not text.endswith("::"):
        text += ":"
    if rng.random() < 0.2:
        text = "::ffff:192.0.2." + str(rng.randint(0, 300))
    return text.upper() if rng.random() < 0.3 else text


def _random_hostile(rng: random.Random, benign: object) -> object:
    """One hostile value: the benign value with hostile characters or tokens spliced in,
    a token alone, an awkward name, random text, or (for numbers) an out-of-range or
    mistyped number."""
    if isinstance(benign, int):
        return rng.choice(
            [rng.randint(-(2**33), 2**33), rng.randint(-2, 70000), str(benign), True, 1.0 * benign]
        )
    pick = rng.random()
    if pick < 0.45:
        i = rng.randint(0, len(benign))
        junk = rng.choice(
            ["".join(rng.choice(HOSTILE_CHARS) for _ in range(rng.randint(1, 4))), *TOKENS]
        )
        return benign[:i] + junk + benign[i:]
    if pick < 0.7:
        if benign[0].isdigit():
            return _awkward_address(rng, benign)
        return _awkward_name(rng)
    if pick < 0.75:
        return rng.choice(TOKENS)
    if pick < 0.9:
        return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(rng.randint(0, 600)))
    return "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 40)))


@pytest.mark.slow
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_ten_thousand_hostile_values_per_field(field):
    """The reliability floor: 10,000 generated hostile values in each field, 0 escapes
    (each refused naming the owner and the field, or read back exactly)."""
    rng = random.Random(f"bind:{field}")
    benign = FIELDS[field][1]
    accepted = sum(check_one(field, _random_hostile(rng, benign)) for _ in range(10_000))
    assert accepted < 10_000  # every field refuses some of them
    if field in STR_FIELDS and field not in ("records[0].rtype", "owner", "records[0].data[1]@CAA"):
        assert accepted > 100  # and accepts awkward legal ones too: not only refusals


def test_bind_module_does_no_io():
    """The renderer is pure: the module imports no subprocess, socket or os."""
    source = Path(bind.__file__).read_text()
    for name in ("subprocess", "socket", "import os", "open("):
        assert name not in source


NAMEISH = st.text(alphabet="ab0-_.*@Z9", max_size=12) | st.builds(
    lambda parts: ".".join(parts),
    st.lists(
        st.sampled_from(["a" * 63, "_" + "a" * 62, "_" + "a" * 63, "a" * 64, "-a", "a-", "1", "x"])
        | st.text(alphabet="ab0-_*", max_size=5),
        min_size=1,
        max_size=6,
    ),
)


@settings(max_examples=2000)
@given(value=NAMEISH | st.text(max_size=20) | st.integers() | st.booleans())
def test_fast_paths_agree_with_validate(value):
    """Each renderer fast path returns exactly what validate's grammar returns, and
    refuses exactly what it refuses (host names, record names, IPv4, priorities, TXT)."""
    from domtool import validate as V

    pairs = [
        (bind.zone_fqdn, V.zone_fqdn),
        (bind.check_record_name, V.check_record_name),
        (bind.check_ipv4, V.check_ipv4),
        (bind.check_priority, V.check_priority),
        (bind.zone_txt_strings, V.zone_txt_strings),
    ]
    for fast, slow in pairs:
        try:
            want = slow(value)
        except V.Invalid:
            with pytest.raises(ValueError):
                fast(value)
            continue
        assert fast(value) == want, (fast.__name__, value)


@pytest.mark.parametrize(
    "value", ["192.168.0.1", "0.0.0.0", "a" * 255, 'a"b', "a\\b", "x" * 256, "1.2.3.04", 65535]
)
def test_fast_paths_agree_on_edges(value):
    """The same agreement on hand-picked edges (lengths 255/256, quotes, leading zeros)."""
    test_fast_paths_agree_with_validate.hypothesis.inner_test(value)


@pytest.mark.daemons
def test_bind_reads_accepted_hostile_values_back_exactly(tmp_path: Path):
    """BIND itself, not only dnspython: one zone carrying 100 accepted hostile TXT texts,
    CAA values, record names, MX/SRV/NS targets and A/AAAA addresses passes named-checkzone, and its
    canonical dump (``named-checkzone -D``) holds exactly the model's records."""
    require_binary("named-checkzone")
    rng = random.Random("bind:named-dump")
    per_field = {
        "records[0].data[0]@TXT": lambda i, v: Record(f"t{i}", "TXT", (v,)),
        "records[0].data[2]@CAA": lambda i, v: Record(f"c{i}", "CAA", (0, "issue", v)),
        "records[0].name": lambda i, v: Record(v, "TXT", (f"n{i}",)),
        "records[0].data[1]@MX": lambda i, v: Record(f"m{i}", "MX", (i, v)),
        "records[0].data[3]@SRV": lambda i, v: Record(f"_s{i}._tcp", "SRV", (1, 2, 3, v)),
        "records[0].data[0]@NS": lambda i, v: Record(f"d{i}", "NS", (v,)),
        "records[0].data[0]@A": lambda i, v: Record(f"a{i}", "A", (v,)),
        "records[0].data[0]@AAAA": lambda i, v: Record(f"a{i}", "AAAA", (v,)),
    }
    records = [Record("@", "NS", ("ns1.coop.example",))]
    for field, make in per_field.items():
        benign, got = FIELDS[field][1], 0
        for _ in range(20_000):
            value = _random_hostile(rng, benign)
            try:  # only render here; the whole zone is read back below
                render(FIELDS[field][0](value))
            except RenderRefused:
                continue
            records.append(make(got, value))
            got += 1
            if got == 100:
                break
        assert got == 100, field
    z = zone(records)
    unit = render(z)
    path = tmp_path / "z.zone"
    path.write_bytes(unit.content)
    argv = [a.replace("{path}", str(path)) for a in unit.checks[0].argv]
    done = subprocess.run(
        [argv[0], "-D", "-o", "-", *argv[1:]], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    dumped = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("zone "))
    assert parse(z, dumped.encode()) == expected(z, TODAY)
    assert len(expected(z, TODAY)) > 700


def test_an_unchanged_zone_is_not_rendered_again():
    """A zone equal to the last render's, whose live unit is that render's unit, is not
    rendered again; a changed zone is, and gets a higher serial."""
    calls: list[str] = []

    class Counting(BindBackend):
        def render_zone(self, z, previous, now):
            calls.append(z.name)
            return super().render_zone(z, previous, now)

    b = Counting(CONFIG)
    zones = [
        zone(name=f"z{i}.example", records=(Record("www", "A", ("192.0.2.1",)),)) for i in range(5)
    ]
    units = {u.key: u for u in b.units(DesiredState(zones=tuple(zones)), {}, 1_700_000_000)}
    assert sorted(calls) == sorted(z.name for z in zones)
    calls.clear()
    zones[3] = zone(name="z3.example", records=(Record("www", "A", ("192.0.2.9",)),))
    again = {u.key: u for u in b.units(DesiredState(zones=tuple(zones)), units, 1_700_000_000)}
    assert calls == ["z3.example"]
    assert again["zone:z0.example"] is units["zone:z0.example"]
    assert serial_of(again["zone:z3.example"].content) > serial_of(units["zone:z3.example"].content)
