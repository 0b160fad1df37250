"""A tiny backend and a pretend daemon for the engine tests.

:class:`FakeBackend` renders one unit per zone of the desired state (the records as
text). :class:`FakeDaemon` plays its checker, its reload and its probes by reading the
files through the same file system seam the engine writes with, so a test sees exactly
what a daemon would have loaded. Markers in a record's text steer it:

- ``BROKEN``: the unit's own check fails (and so does the whole-config check);
- ``CONFLICT``: only the whole-config check fails;
- ``CLAIM:<x>``: fine alone; two units claiming the same ``x`` fail the whole check;
- ``NORELOAD``: the daemon refuses to reload a generation holding it;
- ``DEAD``: the daemon loads it but the zone's probe never answers;
- an index header (``FakeBackend.index_header``, site-wide) holding ``BROKEN`` fails
  the whole check.

The daemon fails the test (AssertionError) if asked to reload a configuration that
never passed its whole check and is not one it already ran.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

import attrs

from domtool.model import DesiredState, Record, Zone
from domtool.slave.backend import Command, Probe, Unit
from domtool.slave.seams import FileSystem, Result


def zone(name: str, owner: str, *texts: str) -> Zone:
    """A zone with one TXT record per text (the markers above go in a text)."""
    records = tuple(Record("@", "TXT", (t,)) for t in texts) or (Record("@", "A", ("192.0.2.1",)),)
    return Zone(name=name, owner=owner, records=records, nodes=("local",))


def state(*zones: Zone) -> DesiredState:
    return DesiredState(zones=tuple(zones)).normalised()


class RenderRefusedFake(ValueError):
    """A renderer refused some owners' values (shaped like the Apache backend's)."""

    def __init__(self, owners: tuple[str, ...]):
        self.owners = owners
        self.errors = tuple(_Err(o, f"{o}: zone text holds a forbidden byte") for o in owners)
        super().__init__("; ".join(str(e) for e in self.errors))


@attrs.frozen
class _Err:
    owner: str
    text: str

    def __str__(self) -> str:
        return self.text


@attrs.define
class FakeBackend:
    """One unit per zone; checks, reload and probes are ``fake-*`` commands."""

    name: str = "fake"
    unit_checks: bool = True
    refuse_marker: str = "\x00"  # a record text holding it is refused at render time
    index_header: str = ""  # a comment line on top of the index (site-wide settings)
    rendered: int = 0  # how many times units() ran

    def units(self, state: DesiredState, previous: Mapping[str, Unit], now: int) -> list[Unit]:
        self.rendered += 1
        bad = tuple(
            sorted(
                {
                    z.owner
                    for z in state.zones
                    if any(self.refuse_marker in str(r.data) for r in z.records)
                }
            )
        )
        if bad:
            raise RenderRefusedFake(bad)
        checks = (Command(("fake-check-unit", "{path}"), timeout=5.0),) if self.unit_checks else ()
        out = []
        for z in state.zones:
            lines = [f"zone {z.name}"] + [
                f"{r.name} {r.rtype} {' '.join(map(str, r.data))}" for r in z.records
            ]
            content = ("\n".join(lines) + "\n").encode()
            out.append(Unit(f"zone:{z.name}", z.owner, "zone", content, checks))
        return out

    def index(self, units: Mapping[str, PurePosixPath]) -> dict[str, bytes]:
        lines = [f"# {self.index_header}\n"] if self.index_header else []
        lines += [f"{k} {units[k]}\n" for k in sorted(units)]
        return {"index": "".join(lines).encode()}

    def check_all(self, generation_dir: PurePosixPath) -> tuple[Command, ...]:
        return (Command(("fake-check-all", str(generation_dir / self.name / "index"))),)

    def reload(self) -> tuple[Command, ...]:
        return (Command(("fake-reload", self.name)),)

    def probes(self, state: DesiredState) -> list[Probe]:
        # (The fake daemon reads the "server" as the backend whose zones to look in.)
        return [Probe("dns", (self.name, 53, z.name, "SOA", None), z.owner) for z in state.zones]


@attrs.define
class FakeDaemon:
    """Answers the ``fake-*`` commands (a FakeProcessRunner handler) and the probes."""

    fs: FileSystem
    state_dir: str
    loaded: dict[str, bytes] = attrs.field(factory=dict)  # by the last reload
    loaded_by: dict[str, dict[str, bytes]] = attrs.field(factory=dict)  # per backend
    reloads: int = 0
    checked_all: list[dict[str, bytes]] = attrs.field(factory=list)
    good: list[dict[str, bytes]] = attrs.field(factory=list)  # passed check-all, or ran

    def boot(self) -> FakeDaemon:
        """Start as a daemon would at boot: serving whatever ``current`` holds, and
        remembering every generation on disk as checked (each was, before its switch)."""
        try:
            self.loaded = self.read_index(f"{self.state_dir}/current/fake/index")
        except OSError:
            self.loaded = {}
        self.good.append(self.loaded)
        try:
            generations = self.fs.listdir(f"{self.state_dir}/generations")
        except OSError:
            generations = []
        for g in generations:
            try:
                self.good.append(self.read_index(f"{self.state_dir}/generations/{g}/fake/index"))
            except OSError:
                pass
        return self

    def read_index(self, index: str) -> dict[str, bytes]:
        out = {}
        for line in self.fs.read(index).decode().splitlines():
            if line.startswith("#"):
                if "BROKEN" in line:
                    out["#"] = line.encode()  # the whole check refuses it
                continue
            key, path = line.split(" ", 1)
            out[key] = self.fs.read(path)
        return out

    def __call__(self, cmd: Command) -> Result:
        verb, arg = cmd.argv[0], cmd.argv[1]
        if verb == "fake-check-unit":
            assert arg.startswith(self.state_dir + "/units/"), arg
            if b"BROKEN" in self.fs.read(arg):
                return Result(1, "", f"{arg}:2: BROKEN record: bad rdata")
            return Result(0, "zone loaded serial 1\nOK\n")
        if verb == "fake-check-all":
            units = self.read_index(arg)
            self.checked_all.append(units)
            claims: dict[str, str] = {}
            for key, data in sorted(units.items()):
                if b"BROKEN" in data or b"CONFLICT" in data:
                    return Result(1, "", f"{key}: refused by the whole-configuration check")
                for claim in re.findall(rb"CLAIM:(\w+)", data):
                    other = claims.setdefault(claim.decode(), key)
                    if other != key:
                        return Result(1, "", f"{key}: {claim.decode()} already claimed by {other}")
            self.good.append(units)
            return Result(0)
        if verb == "fake-reload":
            try:
                units = self.read_index(f"{self.state_dir}/current/{arg}/index")
            except FileNotFoundError as exc:
                return Result(1, "", f"open: {exc.filename}: file not found")
            # The invariant "never a reload of a tree that failed (or skipped) its check":
            if units not in self.good:
                raise AssertionError(f"reload of a configuration never checked: {sorted(units)}")
            if any(b"NORELOAD" in data for data in units.values()):
                return Result(1, "", "rndc: 'reload' failed: failure")
            self.loaded = self.loaded_by[arg] = units
            self.reloads += 1
            return Result(0, "server reload successful\n")
        raise AssertionError(f"unknown fake command {cmd.argv!r}")

    def probe(self, probe: Probe) -> bool | str:
        data = self.loaded_by.get(probe.target[0], self.loaded).get(f"zone:{probe.target[2]}")
        if data is None:
            return "SERVFAIL: zone not loaded"
        if b"DEAD" in data:
            return "timed out"
        return True
