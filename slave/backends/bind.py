"""The BIND 9 backend: one zone file per zone, a ``zones.conf`` index, rndc to reload.

Rendering is pure. Every name and value of a zone is validated again with
``domtool.validate`` (defence in depth: the language already checked them) and written
so that nothing escapes its slot: owner names and host names are absolute (no
``$ORIGIN`` is ever relied on, no ``$`` directive but ``$TTL`` is ever written), text is
quoted with ``"`` and ``\\`` escaped and split into character-strings of at most 255
bytes. A zone with a value that fails is refused with :class:`ZoneRefused` naming the
owner, the zone and the field; it is never rendered. What the grammars allow but BIND
refuses (a CNAME beside other data at one name, an A record at an ``_underscore`` name,
an in-zone NS without an address) is left to ``named-checkzone``, whose own message the
engine reports for the owner's unit.

The system owns the SOA: primary name server (the zone's first apex NS record, else the
site's first name server), hostmaster and timers from :class:`BindConfig`, and the
serial. A zone without an apex NS record gets the site's name servers.

Serial: ``YYYYMMDDnn`` in UTC. When a zone's rendered text differs from the previous
unit's, the new serial is today's ``YYYYMMDD00`` if that is greater than the previous
serial in RFC 1982 serial arithmetic, else the previous serial plus one (mod 2**32): a
zone changed more than 100 times a day runs ahead into tomorrow's numbers and stays
increasing. When nothing changed, :meth:`BindBackend.units` returns the previous unit
itself, byte-identical, so the engine writes and checks nothing. Date-based rather than
unix time so that DNS nodes applying the same changes on the same UTC day (each is a
primary with its own copy, no zone transfer) compute the same serials.

Files and commands (``state_dir`` is the slave's state directory)::

    state_dir/units/bind/<sha256>.zone   one zone
    generation/bind/zones.conf           one ``zone "NAME" { type primary; file ...; };``
                                         per zone, sorted by name
    generation/bind/check.conf           ``include "<base_config>";`` plus the same zone
                                         statements: what the live named.conf will load,
                                         with this generation's zones in place

The site's own config is split in two (see :func:`site_config`): ``base_config`` (options,
listeners, the rndc key and ``controls``; no zones) and the live ``named.conf`` that
includes it and ``state_dir/current/bind/zones.conf``. Each unit is checked with
``named-checkzone -k fail -i local ZONE {path}`` (named's own rules for a primary zone,
without looking names up on the network); the whole generation with ``named-checkconf
[-z] generation/bind/check.conf`` (named-checkconf resolves a relative ``include`` from
its working directory, not the including file, so ``check.conf`` holds the zone
statements itself rather than including the staged ``zones.conf``). Reload is ``rndc
reload`` with the site's rndc config.

Probes: an SOA query per changed zone expecting the serial this backend rendered. The
protocol's ``probes(state)`` does not receive the units, so the backend remembers the
serial each zone got in its latest :meth:`BindBackend.units` call, and whether its text
changed (a cache, not a decision: a zone with nothing cached is probed without a serial,
i.e. any SOA answer passes); :func:`probes_for` computes probes from units alone. The
engine drops probes of owners it refused, so a refused zone's new serial is never
expected.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath

import attrs

from domtool import validate
from domtool.model import DesiredState, Record, Zone
from domtool.slave.backend import (
    BadValue,
    Command,
    Probe,
    RenderRefused,
    Unit,
    UnitRefused,
    memo_get,
    memo_put,
)
from domtool.slave.backend import renderer_check as recheck  # validate.check_* -> BadValue

__all__ = [
    "BindBackend",
    "BindConfig",
    "RenderRefused",
    "ZoneRefused",
    "next_serial",
    "probes_for",
    "serial_of",
    "site_config",
]

INDEX_FILE = "zones.conf"
CHECK_FILE = "check.conf"
NARROW_RELOADS = 16  # more changed zones than this: one whole-server rndc reload
RTYPES = ("A", "AAAA", "CNAME", "MX", "NS", "TXT", "SRV", "CAA")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/-]{1,4095}")
_SOA_LINE = re.compile(rb"^\S+\t\d+\tIN\tSOA\t\S+ \S+ (\d+) ", re.MULTILINE)
_SERIAL_MOD = 2**32


# ---------------------------------------------------------------------------
# Errors


class ZoneRefused(UnitRefused):
    """A value of a zone failed its grammar; the zone was not rendered."""

    kind = "zone"

    @property
    def zone(self) -> str:
        return self.name


# ---------------------------------------------------------------------------
# Configuration


@attrs.frozen
class BindConfig:
    """How this host's named is laid out, and the site's SOA settings.

    ``base_config``: the site's options file (``options``, the rndc ``key`` and
    ``controls``; no zones), included by the live ``named.conf`` and by every
    generation's ``check.conf``. ``rndc_config`` holds the key rndc uses; rndc talks to
    ``control_address``:``control_port``. Probes query ``address``:``port``.
    ``node``: only zones served by this node are rendered (None: every zone).
    ``unit_checks``: a ``named-checkzone`` per unit (about 10 ms each); ``check_zones``:
    ``named-checkconf -z`` loads every zone of the generation again in the final check.
    """

    base_config: str
    live_config: str
    rndc_config: str
    address: str = "127.0.0.1"
    port: int = 53
    control_address: str = "127.0.0.1"
    control_port: int = 953
    hostmaster: str = "hostmaster.coop.example"
    nameservers: tuple[str, ...] = ("ns1.coop.example", "ns2.coop.example")
    default_ttl: int = 3600
    refresh: int = 3600
    retry: int = 900
    expire: int = 1209600
    negative_ttl: int = 300
    node: str | None = None
    checkzone: str = "/usr/bin/named-checkzone"
    checkconf: str = "/usr/bin/named-checkconf"
    rndc: str = "/usr/sbin/rndc"
    check_timeout: float = 120.0
    unit_checks: bool = True
    check_zones: bool = True

    def checkzone_argv(self, zone: str, path: str) -> tuple[str, ...]:
        """named-checkzone with named's rules for a primary zone, no network lookups."""
        return (self.checkzone, "-k", "fail", "-i", "local", zone, path)

    def checkconf_argv(self, conf: str) -> tuple[str, ...]:
        return (self.checkconf, *(("-z",) if self.check_zones else ()), conf)

    def rndc_argv(self, *verb: str) -> tuple[str, ...]:
        return (
            self.rndc,
            "-c",
            self.rndc_config,
            "-s",
            self.control_address,
            "-p",
            str(self.control_port),
            *verb,
        )


def _conf_path(path: str) -> str:
    """A path for a named.conf string: absolute, and nothing that needs quoting."""
    if not _SAFE_PATH.fullmatch(path) or "/../" in path + "/":
        raise ValueError(f"not a plain absolute path for named.conf: {path!r}")
    return path


def site_config(
    config: BindConfig,
    zones_include: str,
    *,
    directory: str,
    rndc_secret: str,
    key_name: str = "domtool-rndc",
    extra_options: Iterable[str] = (),
) -> dict[str, bytes]:
    """The site's BIND files, by path: ``base_config``, ``live_config`` and ``rndc_config``.

    ``zones_include`` is the live index (``state_dir/current/bind/zones.conf``);
    ``directory`` is named's working directory (pid file, session key); ``rndc_secret`` is
    a base64 HMAC-SHA256 secret (the caller generates it: this function is pure).
    """
    if not re.fullmatch(r"[A-Za-z0-9+/=]{16,200}", rndc_secret):
        raise ValueError("rndc_secret must be base64")
    if not re.fullmatch(r"[a-z0-9-]{1,64}", key_name):
        raise ValueError(f"bad key name {key_name!r}")
    d = _conf_path(directory)
    key = f'key "{key_name}" {{\n    algorithm hmac-sha256;\n    secret "{rndc_secret}";\n}};\n'
    options = [
        f'directory "{d}";',
        f'pid-file "{d}/named.pid";',
        f'session-keyfile "{d}/session.key";',
        f'managed-keys-directory "{d}";',
        f"listen-on port {int(config.port)} {{ {validate.check_ipv4(config.address)}; }};",
        "listen-on-v6 { none; };",
        "recursion no;",
        "allow-query { any; };",
        "allow-transfer { none; };",
        "notify no;",
        "dnssec-validation no;",
        *extra_options,
    ]
    base = (
        "# domtool: the site's BIND options (no zones). Written by the site setup.\n"
        + key
        + "controls {\n"
        + f"    inet {validate.check_ipv4(config.control_address)} port {int(config.control_port)}"
        + f' allow {{ 127.0.0.1; }} keys {{ "{key_name}"; }};\n}};\n'
        + "options {\n"
        + "".join(f"    {o}\n" for o in options)
        + "};\n"
    )
    live = (
        "# domtool: the live named.conf. Written by the site setup.\n"
        f'include "{_conf_path(config.base_config)}";\n'
        f'include "{_conf_path(zones_include)}";\n'
    )
    rndc = (
        key
        + f'options {{\n    default-key "{key_name}";\n'
        + f"    default-server {validate.check_ipv4(config.control_address)};\n"
        + f"    default-port {int(config.control_port)};\n}};\n"
    )
    return {
        config.base_config: base.encode(),
        config.live_config: live.encode(),
        config.rndc_config: rndc.encode(),
    }


# ---------------------------------------------------------------------------
# Serials


def serial_of(content: bytes) -> int | None:
    """The SOA serial of a zone file this backend rendered (None if it has none)."""
    m = _SOA_LINE.search(content)
    return int(m.group(1)) if m else None


def _serial_gt(a: int, b: int) -> bool:
    """RFC 1982: is serial ``a`` greater than serial ``b``?"""
    return a != b and (a - b) % _SERIAL_MOD < 2**31


def next_serial(previous: int | None, now: int) -> int:
    """The serial of a changed zone: today's ``YYYYMMDD00`` (UTC) if that is greater than
    ``previous`` (RFC 1982), else ``previous + 1`` modulo 2**32."""
    today = int(time.strftime("%Y%m%d", time.gmtime(now))) * 100
    if previous is None or _serial_gt(today, previous):
        return today
    return (previous + 1) % _SERIAL_MOD


# ---------------------------------------------------------------------------
# Checks: domtool.validate's grammars turned into renderer checks


check_domain = recheck(validate.check_domain)
check_hostname = recheck(validate.check_hostname)
_check_record_name = recheck(validate.check_record_name)
_check_ipv4 = recheck(validate.check_ipv4)
check_ipv6 = recheck(validate.check_ipv6)
check_ttl = recheck(validate.check_ttl)
_check_priority = recheck(validate.check_priority)
check_port = recheck(validate.check_port)
check_caa_tag = recheck(validate.check_caa_tag)
check_caa_value = recheck(validate.check_caa_value)
check_owner = recheck(validate.check_unix_name)
_zone_fqdn = recheck(validate.zone_fqdn)
zone_quote = recheck(validate.zone_quote)
_zone_txt_strings = recheck(validate.zone_txt_strings)

# Fast paths for the common shapes: each accepts only values that validate's grammar
# accepts unchanged (lower-case LDH labels, a last label starting with a letter, printable
# text without quote or backslash), and sends everything else to validate.
# tests/slave/test_bind_render.py shows they agree with validate.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_HOST = re.compile(rf"(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?")
_RLABEL = rf"(?:{_LABEL}|_[a-z0-9](?:[a-z0-9-]{{0,60}}[a-z0-9])?)"  # '_' counts in the 63
_FAST_RNAME = re.compile(rf"@|\*|(?:\*\.)?(?:{_RLABEL}\.)*{_RLABEL}")
_FAST_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
)
_FAST_TXT = re.compile(r"[ !#-\[\]-~]{0,255}")


def zone_fqdn(value: object) -> str:
    """``validate.zone_fqdn`` (host name made absolute), with a fast path."""
    if type(value) is str and len(value) <= 253 and _FAST_HOST.fullmatch(value):
        return value + "."
    return _zone_fqdn(value)


def check_record_name(value: object) -> str:
    """``validate.check_record_name``, with a fast path."""
    if type(value) is str and len(value) <= 253 and _FAST_RNAME.fullmatch(value):
        return value
    return _check_record_name(value)


def check_ipv4(value: object) -> str:
    """``validate.check_ipv4``, with a fast path."""
    if type(value) is str and _FAST_IPV4.fullmatch(value):
        return value
    return _check_ipv4(value)


def check_priority(value: object) -> int:
    """``validate.check_priority``, with a fast path."""
    if type(value) is int and 0 <= value <= 65535:
        return value
    return _check_priority(value)


def zone_txt_strings(value: object) -> list[str]:
    """``validate.zone_txt_strings``, with a fast path for short text needing no escape."""
    if type(value) is str and _FAST_TXT.fullmatch(value):
        return [f'"{value}"']
    return _zone_txt_strings(value)


def check_caa_flags(value: object) -> int:
    if type(value) is not int or not 0 <= value <= 255:
        raise BadValue(f"{value!r} is not CAA flags: expected a number 0-255")
    return value


def _rname(hostmaster: str) -> str:
    """The SOA RNAME for a hostmaster given as ``user@domain`` or as a domain name."""
    if "@" in hostmaster:
        address = validate.check_email(hostmaster)
        local, domain = address.split("@")
        return local.replace(".", "\\.") + "." + domain + "."
    return validate.check_domain(hostmaster) + "."


# ---------------------------------------------------------------------------
# Rendering one zone


class _BadPart(BadValue):
    """Internal: one part of a record's data failed (``index`` says which)."""

    def __init__(self, index: int | None, reason: str):
        self.index = index
        super().__init__(reason)


def _rdata(rtype: object, data: object) -> str:
    """The presentation form of one record's data, every part checked first."""

    def arity(n: int) -> tuple:
        if not isinstance(data, tuple) or len(data) != n:
            raise _BadPart(None, f"{rtype} data needs {n} values, got {data!r:.80}")
        return data

    def part(i: int, checker) -> object:
        try:
            return checker(data[i])
        except BadValue as exc:
            raise _BadPart(i, str(exc)) from None

    if type(rtype) is not str:
        raise _BadPart(-1, f"record type {rtype!r:.40} is not text")
    if rtype == "A":
        arity(1)
        return part(0, check_ipv4)
    if rtype == "AAAA":
        arity(1)
        return part(0, check_ipv6)
    if rtype in ("CNAME", "NS"):
        arity(1)
        return part(0, zone_fqdn)
    if rtype == "MX":
        arity(2)
        return f"{int(part(0, check_priority))} {part(1, zone_fqdn)}"
    if rtype == "TXT":
        arity(1)
        return " ".join(part(0, zone_txt_strings))
    if rtype == "SRV":
        arity(4)
        return (
            f"{int(part(0, check_priority))} {int(part(1, check_priority))} "
            f"{int(part(2, check_port))} {part(3, zone_fqdn)}"
        )
    if rtype == "CAA":
        arity(3)
        value = part(2, lambda v: zone_quote(check_caa_value(v)))
        return f"{int(part(0, check_caa_flags))} {part(1, check_caa_tag)} {value}"
    raise _BadPart(-1, f"record type {rtype!r:.40} is not one of {', '.join(RTYPES)}")


class _ZoneRenderer:
    """Renders one zone's text (serial left as a parameter), collecting every refusal."""

    def __init__(self, config: BindConfig, zone: Zone):
        self.config = config
        self.zone = zone
        self.errors: list[ZoneRefused] = []
        self.owner = zone.owner if isinstance(zone.owner, str) else repr(zone.owner)
        self.name = zone.name if isinstance(zone.name, str) else repr(zone.name)
        self.origin = ""

    def refuse(self, field: str, value: object, reason: str) -> None:
        self.errors.append(ZoneRefused(self.owner, self.name, field, value, reason))

    def check(self, field: str, checker, value):
        try:
            return checker(value)
        except BadValue as exc:
            self.refuse(field, value, str(exc))
            return None

    def owner_name(self, field: str, name: object, origin: str) -> str | None:
        rel = self.check(field, check_record_name, name)
        if rel is None:
            return None
        if rel == "@":
            return origin + "."
        full = f"{rel}.{origin}"
        if len(full) > 253:
            self.refuse(
                field, name, f"with the zone it makes a name of {len(full)} > 253 characters"
            )
            return None
        return full + "."

    def record(self, i: int, r: Record, origin: str) -> str | None:
        field = f"records[{i}]"
        if not isinstance(r, Record):
            self.refuse(field, r, "not a Record")
            return None
        owner = self.owner_name(f"{field}.name", r.name, origin)
        ttl = ""
        if r.ttl is not None:
            t = self.check(f"{field}.ttl", check_ttl, r.ttl)
            if t is None:
                return None
            ttl = f"{int(t)}\t"
        try:
            rdata = _rdata(r.rtype, r.data)
        except _BadPart as exc:
            if exc.index == -1:
                self.refuse(f"{field}.rtype", r.rtype, str(exc))
            elif exc.index is None:
                self.refuse(f"{field}.data", r.data, str(exc))
            else:
                self.refuse(f"{field}.data[{exc.index}]", r.data[exc.index], str(exc))
            return None
        if owner is None:
            return None
        return f"{owner}\t{ttl}IN\t{r.rtype}\t{rdata}"

    def render(self) -> tuple[str, str] | None:
        """(text before the serial, text after it), or None with ``self.errors`` set."""
        c, z = self.config, self.zone
        owner = self.check("owner", check_owner, z.owner)
        origin = self.check("name", check_domain, z.name)
        zttl = self.check("ttl", check_ttl, z.ttl)
        if not isinstance(z.records, tuple):
            self.refuse("records", z.records, "not a tuple of records")
            return None
        if origin is None:
            return None
        self.origin = origin
        lines = [self.record(i, r, origin) for i, r in enumerate(z.records)]
        if self.errors or owner is None or zttl is None:
            return None
        zttl = int(zttl)
        apex_ns = [
            r.data[0] for r in z.records if r.rtype == "NS" and check_record_name(r.name) == "@"
        ]
        extra = []
        if not apex_ns:
            extra = [f"{origin}.\tIN\tNS\t{validate.zone_fqdn(ns)}" for ns in c.nameservers]
        primary = validate.zone_fqdn(apex_ns[0] if apex_ns else c.nameservers[0])
        head = (
            f"; domtool: zone {origin} of {owner}. Generated; do not edit.\n"
            f"$TTL {zttl}\n"
            f"{origin}.\t{zttl}\tIN\tSOA\t{primary} {_rname(c.hostmaster)} "
        )
        tail = (
            f" {int(c.refresh)} {int(c.retry)} {int(c.expire)} {int(c.negative_ttl)}\n"
            + "".join(line + "\n" for line in extra + lines)
        )
        return head, tail


# ---------------------------------------------------------------------------
# The backend


def probes_for(config: BindConfig, units: Iterable[Unit]) -> list[Probe]:
    """One SOA probe per zone unit, expecting the serial written in the unit."""
    return [
        Probe(
            "dns",
            (config.address, config.port, u.key.split(":", 1)[1], "SOA", serial_of(u.content)),
            u.owner,
        )
        for u in units
        if u.key.startswith("zone:")
    ]


@attrs.frozen
class BindBackend:
    """The Backend protocol for BIND 9 (see ``domtool.slave.backend``)."""

    config: BindConfig
    name: str = "bind"
    pure_index = True  # index() depends only on the units (the config is frozen)
    # zone name -> (serial, or the unchanged unit's content, changed) of the latest
    # units() call; only probes() reads it.
    _serials: dict[str, tuple[int | bytes | None, bool]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    # zone -> its unit, from the latest render: an unchanged zone whose live unit is that
    # unit is not rendered again (a one-zone change costs a lookup per unrelated zone).
    _memo: dict[Zone, Unit] = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # (unit key, path) -> its checked zone statement: the index of 10,000 zones is written
    # on every change, but only a changed zone's statement is built again.
    _statements: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # tag -> the latest index text (_Text: paths, statements, pieces, positions)
    _lines: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # (state.zones, this node's zones) of the latest call: units() and probes() of one
    # prepare filter the same 10,000 zones once
    _mine: list = attrs.field(factory=list, init=False, eq=False, repr=False)
    # key -> unit of the latest render (probes() tells rendered zones from the others)
    _units: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # The latest render by zone object (see _update): [_Incremental] or [].
    _inc: list = attrs.field(factory=list, init=False, eq=False, repr=False)
    # key -> zone, for the zones whose text the latest render changed
    _changed_zones: dict = attrs.field(factory=dict, init=False, eq=False, repr=False)
    # [this node's zones] when the latest units() rendered every one of them, else []
    _complete: list = attrs.field(factory=list, init=False, eq=False, repr=False)

    def _zones(self, state: DesiredState) -> list[Zone]:
        last = self._mine[0] if self._mine else None
        if last is not None and last[0] is state.zones:
            return last[1]
        node = self.config.node
        # (a tuple of node names: a plain string would match by substring)
        zones = [
            z
            for z in state.zones
            if node is None or (isinstance(z.nodes, tuple) and node in z.nodes)
        ]
        self._mine[:] = [(state.zones, zones)]
        return zones

    def render_zone(self, zone: Zone, previous: Unit | None, now: int) -> Unit:
        """One zone's unit; raises :class:`RenderRefused` listing every refused field.

        ``previous`` is the live unit of this zone, if any: when the text is the same the
        previous unit comes back (the same object when owner and checks match too)."""
        r = _ZoneRenderer(self.config, zone)
        parts = r.render()
        if parts is None:
            raise RenderRefused(r.errors)
        head, tail = parts
        key = f"zone:{r.origin}"
        checks: tuple[Command, ...] = ()
        if self.config.unit_checks:
            argv = self.config.checkzone_argv(r.origin, "{path}")
            checks = (Command(argv, timeout=self.config.check_timeout),)
        live = f"{r.origin}.zone"
        prev_serial = serial_of(previous.content) if previous is not None else None
        if prev_serial is not None:
            same = f"{head}{prev_serial}{tail}".encode()
            if same == previous.content:
                unit = Unit(key, zone.owner, "zone", previous.content, checks, live)
                return previous if unit == previous else unit
        content = f"{head}{next_serial(prev_serial, now)}{tail}".encode()
        return Unit(
            key=key, owner=zone.owner, ext="zone", content=content, checks=checks, live=live
        )

    def render(
        self, state: DesiredState, previous: Mapping[str, Unit], now: int
    ) -> tuple[list[Unit], list[ZoneRefused]]:
        """The units that rendered and the refusals, so a caller can keep the good ones."""
        units, errors, _changed = self._render(state, previous, now)
        return units, errors

    def _render(
        self, state: DesiredState, previous: Mapping[str, Unit], now: int
    ) -> tuple[list[Unit], list[ZoneRefused], dict[str, bool]]:
        """``render``, and per zone name whether its text differs from ``previous``."""
        zones = self._zones(state)
        fast = self._update(zones, previous, now)
        if fast is not None:
            return fast
        self._inc.clear()
        units: dict[str, Unit] = {}
        errors: list[ZoneRefused] = []
        memo: dict[Zone, Unit] = {}
        changed: dict[str, bool] = {}
        zone_of: dict[str, Zone] = {}
        get = previous.get
        for z in zones:
            key = f"zone:{z.name.lower()}" if isinstance(z.name, str) else ""
            if key in units:
                errors.append(
                    ZoneRefused(z.owner, z.name, "name", z.name, "the zone is configured twice")
                )
                continue
            prev = get(key)
            unit = memo_get(self._memo, z)
            # The engine's previous units are read back from disk without their checks:
            # compare what the zone file holds, not the whole unit.
            if (
                unit is None
                or prev is None
                or unit.owner != prev.owner
                or (unit.content is not prev.content and unit.content != prev.content)
            ):
                try:
                    unit = self.render_zone(z, prev, now)
                except RenderRefused as exc:
                    errors.extend(exc.errors)
                    continue
                changed[key] = prev is None or prev.content != unit.content
                zone_of[key] = z
            units[key] = unit
            memo_put(memo, z, unit)
        self._changed_zones.clear()
        self._changed_zones.update(zone_of)
        self._memo.clear()
        self._memo.update(memo)
        self._units.clear()
        self._units.update(units)
        if not errors and len(units) == len(zones):
            self._inc[:] = [_Incremental.of(zones, units, changed, len(previous))]
            return list(self._inc[0].ordered), errors, changed
        return sorted(units.values(), key=_by_key), errors, changed

    def _update(
        self, zones: list[Zone], previous: Mapping[str, Unit], now: int
    ) -> tuple[list[Unit], list, dict[str, bool]] | None:
        """``_render`` from the latest render, looking only at the zone objects it did not
        have and at the zones whose text it changed (10,000 zones, one changed: not
        10,000 memo and ``previous`` lookups). Sound because ``previous`` is the live
        generation's units, which since that render changed only for the keys it changed
        (a commit) or not at all (an abort, a refusal, a roll back): every other zone's
        live unit is still the unit that render kept. None (render whole) when there is
        no such render, the live units are not those of either case (their count), many
        zones are new, or anything is refused or twice."""
        inc = self._inc[0] if self._inc else None
        if inc is None or len(previous) not in (inc.previous_len, len(inc.units)):
            return None
        now_ids = dict(zip(map(id, zones), zones, strict=True))
        if len(now_ids) != len(zones):
            return None
        gone = inc.by_id.keys() - now_ids.keys()
        new = now_ids.keys() - inc.by_id.keys()
        if len(gone) + len(new) > 64 + len(zones) // 8:
            return None
        units, by_id, memo = dict(inc.units), dict(inc.by_id), self._memo
        for i in gone:
            z, key, unit = by_id.pop(i)
            if units.get(key) is unit:
                del units[key]
        # the new zones, and the zones whose text that render changed (their live unit
        # is the one rendered, or the one before it if that did not go live)
        todo = [now_ids[i] for i in new]
        for i in [i for i in inc.changed_ids if i in by_id]:
            z, key, unit = by_id.pop(i)
            if units.get(key) is unit:
                del units[key]
            todo.append(z)
        changed: dict[str, bool] = {}
        zone_of: dict[str, Zone] = {}
        fresh: list[tuple[Zone, str, Unit]] = []
        for z in todo:
            if not isinstance(z.name, str):
                return None
            key = f"zone:{z.name.lower()}"
            if key in units:
                return None  # twice: the whole render refuses it
            prev = previous.get(key)
            unit = memo_get(memo, z)
            if (
                unit is None
                or prev is None
                or unit.owner != prev.owner
                or (unit.content is not prev.content and unit.content != prev.content)
            ):
                try:
                    unit = self.render_zone(z, prev, now)
                except RenderRefused:
                    return None
                changed[key] = prev is None or prev.content != unit.content
                zone_of[key] = z
            units[key] = unit
            fresh.append((z, key, unit))
        for z, key, unit in fresh:
            by_id[id(z)] = (z, key, unit)
        for i in gone:
            z, _key, unit = inc.by_id[i]
            try:
                if memo.get(z) is unit:
                    del memo[z]
            except TypeError:
                pass
        for z, _key, unit in fresh:
            memo_put(memo, z, unit)
        self._units.clear()
        self._units.update(units)
        self._changed_zones.clear()
        self._changed_zones.update(zone_of)
        changed_ids = {id(z) for z, key, _u in fresh if changed.get(key)}
        if units.keys() == inc.units.keys():  # the same zones: the same order, a few new
            ordered = list(inc.ordered)
            for _z, key, unit in fresh:
                ordered[inc.positions[key]] = unit
            positions = inc.positions
        else:
            ordered = sorted(units.values(), key=_by_key)
            positions = {u.key: i for i, u in enumerate(ordered)}
        self._inc[:] = [_Incremental(by_id, units, changed_ids, len(previous), ordered, positions)]
        return list(ordered), [], changed

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        """Every zone of this host. Raises :class:`RenderRefused` with all refusals (of
        every owner) if any zone has a value that fails its grammar or is there twice."""
        self._complete.clear()
        units, errors, changed = self._render(state, previous, now)
        if errors:
            raise RenderRefused(errors)
        self._complete.append(self._zones(state))  # every one of these zones rendered
        # Only the zones whose text changed are probed for their serial; the others are
        # known by key (no loop or regex over 10,000 unchanged zones per change).
        self._serials.clear()
        for key, moved in changed.items():
            if moved:
                unit = self._units.get(key)
                self._serials[key[5:]] = (serial_of(unit.content) if unit else None, True)
        return units

    def _zone_text(self, units: Mapping[str, PurePosixPath], tag: str = "") -> bytes:
        """The sorted zone statements of ``units``, one a line, as bytes. The latest
        text of each ``tag`` is kept in pieces of :data:`PIECE_LINES` lines: when the
        keys are those of the latest call, only the moved units' statements are built
        and only their pieces joined and encoded again (the index of 10,000 zones is
        written on every change; sorting, joining and encoding all of it was ~10 % of a
        one-zone change)."""
        last = self._lines.get(tag)
        if last is not None and last.paths.keys() == units.keys():
            try:
                moved = [k for k, _ in units.items() ^ last.paths.items()]
            except TypeError:
                moved = list(units)
            if len(moved) < 64:
                lines, pieces, pos = list(last.lines), list(last.pieces), last.positions
                touched = set()
                for k in {*moved}:
                    i = pos[k]
                    lines[i] = self._statement(k, units[k])
                    touched.add(i // PIECE_LINES)
                for n in touched:
                    pieces[n] = _piece(lines[n * PIECE_LINES : (n + 1) * PIECE_LINES])
                self._lines[tag] = _Text(dict(units), lines, pieces, pos)
                return b"".join(pieces)
        if len(self._statements) > 4 * len(units) + 1000:  # drop what no generation names now
            self._statements.clear()
        keys = sorted(units)
        lines = [self._statement(k, units[k]) for k in keys]
        pieces = [_piece(lines[i : i + PIECE_LINES]) for i in range(0, len(lines), PIECE_LINES)]
        self._lines[tag] = _Text(dict(units), lines, pieces, {k: i for i, k in enumerate(keys)})
        return b"".join(pieces)

    def _statement(self, key: str, path: PurePosixPath) -> str:
        """One zone's checked statement (memoised per key and path)."""
        line = self._statements.get((key, path))
        if line is None:
            kind, _, zone = key.partition(":")
            if kind != "zone":
                raise ValueError(f"not a zone unit key: {key!r}")
            name = validate.check_domain(zone)
            line = f'zone "{name}" {{ type primary; file "{_conf_path(str(path))}"; }};'
            self._statements[(key, path)] = line
        return line

    # The engine keeps each zone at a stable path (``state_dir/live/bind/ZONE.zone``), so a
    # changed zone is reloaded in place (never dropped and re-added: no SERVFAIL), and a
    # change of zone contents only is ``rndc reload ZONE`` without the whole-config check.
    live_files = True
    live_index_files = (INDEX_FILE,)

    @property
    def check_all_covers_units(self) -> bool:
        """``named-checkconf -z`` loads every zone: it checks what named-checkzone would."""
        return self.config.check_zones

    def index(
        self, units: Mapping[str, PurePosixPath], live: Mapping[str, PurePosixPath] | None = None
    ) -> dict[str, bytes]:
        """``zones.conf`` (one zone statement per unit, sorted; each zone at its stable
        ``live`` path when given) and ``check.conf`` (the site's base config plus the
        statements naming the staged unit files, for :meth:`check_all`)."""
        if live and live.keys() <= units.keys():
            at = {**units, **live}  # each zone at its live path (C speed)
        else:
            at = {k: (live or {}).get(k, p) for k, p in units.items()}
        body = self._zone_text(at, "live")
        checked_body = self._zone_text(units, "staged") if live else body
        head = b"# domtool: the zones of this generation. Generated; do not edit.\n"
        check = (
            "# domtool: what named.conf loads, with this generation's zones. For\n"
            "# named-checkconf only.\n"
            f'include "{_conf_path(self.config.base_config)}";\n'
        ).encode()
        return {INDEX_FILE: head + body, CHECK_FILE: check + checked_body}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        """``named-checkconf [-z]`` over the staged ``check.conf``."""
        staged = str(PurePosixPath(generation_dir) / self.name / CHECK_FILE)
        return (Command(self.config.checkconf_argv(staged), timeout=self.config.check_timeout),)

    def reload(self) -> tuple[Command, ...]:
        """``rndc reload``: named re-reads named.conf (the new zones.conf) and every
        zone whose file changed."""
        return (Command(self.config.rndc_argv("reload"), timeout=self.config.check_timeout),)

    def reload_units(self, keys: Iterable[str]) -> tuple[Command, ...]:
        """``rndc reload ZONE`` for each changed zone (the zone set and zones.conf are
        the same); more than :data:`NARROW_RELOADS` zones: one ``rndc reload``."""
        zones = [validate.check_domain(k.partition(":")[2]) for k in sorted(keys)]
        if len(zones) > NARROW_RELOADS:
            return self.reload()
        t = self.config.check_timeout
        return tuple(Command(self.config.rndc_argv("reload", z), timeout=t) for z in zones)

    def probes(self, state: DesiredState) -> list[Probe]:
        """SOA queries expecting the serials of the latest :meth:`units` call.

        Only zones whose text changed in that call are probed (10,000 unchanged zones
        are not queried after every change); when none changed (a zone removed, or a
        reload of an unverified generation), the first zone is probed to show named
        answers. Zones :meth:`units` did not render are probed without a serial."""
        c = self.config
        zones = self._zones(state)
        serials, rendered = self._serials, self._units
        if self._complete and self._complete[0] is zones:
            # the zones the latest units() rendered, all of them: the changed ones are
            # known by key (no loop over 10,000 zones per change)
            of = self._changed_zones
            picked = [of[f"zone:{name}"] for name in serials if f"zone:{name}" in of]
        else:
            picked = [
                z
                for z in zones
                if (name := str(z.name).lower()) in serials or f"zone:{name}" not in rendered
            ]
        if not picked and zones:
            picked = [min(zones, key=lambda z: str(z.name))]
        out = []
        for z in sorted(picked, key=lambda z: str(z.name)):
            name = str(z.name).lower()
            serial = serials[name][0] if name in serials else None
            if serial is None and f"zone:{name}" in rendered:
                serial = serial_of(rendered[f"zone:{name}"].content)
            out.append(Probe("dns", (c.address, c.port, name, "SOA", serial), z.owner))
        return out


def _by_key(unit: Unit) -> str:
    return unit.key


PIECE_LINES = 256  # zone statements per cached piece of zones.conf and check.conf


def _piece(lines: list[str]) -> bytes:
    return "".join([line + "\n" for line in lines]).encode()


@attrs.frozen(slots=True)
class _Text:
    """The latest zone statements of one tag of :meth:`BindBackend._zone_text`: the paths
    they name by key, the sorted statements, their text in pieces of
    :data:`PIECE_LINES` lines (bytes), each key's position."""

    paths: dict
    lines: list
    pieces: list
    positions: dict


@attrs.define
class _Incremental:
    """The latest whole or partial render of :class:`BindBackend` by zone object:
    id(zone) -> (zone, key, unit) (it holds the zones, so the ids stay theirs), the units
    by key, the ids of the zones whose text it changed, how many units ``previous``
    held then, and the units in key order with each key's place (so a render of the same
    zones replaces a few, not sorts 10,000)."""

    by_id: dict
    units: dict
    changed_ids: set
    previous_len: int
    ordered: list  # the units sorted by key (what units() returned)
    positions: dict  # key -> its place in ordered

    @classmethod
    def of(cls, zones, units: dict, changed: dict, previous_len: int) -> _Incremental:
        by_id = {}
        for z in zones:
            key = f"zone:{z.name.lower()}"
            by_id[id(z)] = (z, key, units[key])
        ids = {i for i, (_z, key, _u) in by_id.items() if changed.get(key)}
        ordered = sorted(units.values(), key=_by_key)
        positions = {u.key: i for i, u in enumerate(ordered)}
        return cls(by_id, dict(units), ids, previous_len, ordered, positions)
