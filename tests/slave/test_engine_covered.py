"""Many changed units of a backend whose whole check validates every unit
(``check_all_covers_units``, BIND's named-checkconf -z) are checked by that one whole
check, not one checker each; a broken one is still found (by bisection) and refused
alone; a backend without that flag keeps its per-unit checks."""

from __future__ import annotations

import attrs

from domtool.slave.engine import UNIT_CHECKS_MAX
from tests.slave.fake_backend import FakeBackend, state, zone
from tests.slave.test_engine import make_host


@attrs.define
class CoveringBackend(FakeBackend):
    check_all_covers_units: bool = True


def _zones(n: int, broken: str | None = None):
    return state(
        *(
            zone(f"m{i:02d}.example", f"m{i:02d}", "BROKEN" if f"m{i:02d}" == broken else "v1")
            for i in range(n)
        )
    )


def _host(backend):
    host = make_host()
    host.engine.backends["fake"] = host.backend = backend
    return host


def test_many_new_units_are_checked_by_the_whole_check_once():
    host = _host(CoveringBackend())
    out = host.engine.apply(_zones(UNIT_CHECKS_MAX + 12))
    assert out.status == "applied", out.message
    ran = [c.argv[0] for c in host.runner.ran]
    assert "fake-check-unit" not in ran and ran.count("fake-check-all") == 1


def test_a_broken_unit_among_many_is_found_and_refused_alone():
    host = _host(CoveringBackend())
    out = host.engine.apply(_zones(UNIT_CHECKS_MAX + 12, broken="m05"))
    assert out.status == "applied", out.message
    assert out.refused.keys() == {"m05"}
    assert "zone:m05.example" not in host.live() and len(host.live()) == UNIT_CHECKS_MAX + 11
    assert "fake-check-unit" not in [c.argv[0] for c in host.runner.ran]


def test_few_units_or_a_backend_without_the_flag_keep_their_own_checks():
    host = _host(CoveringBackend())
    assert host.engine.apply(_zones(UNIT_CHECKS_MAX)).status == "applied"
    assert [c.argv[0] for c in host.runner.ran].count("fake-check-unit") == UNIT_CHECKS_MAX
    plain = make_host()
    assert plain.engine.apply(_zones(UNIT_CHECKS_MAX + 12)).status == "applied"
    assert [c.argv[0] for c in plain.runner.ran].count("fake-check-unit") == UNIT_CHECKS_MAX + 12
