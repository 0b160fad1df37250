"""The per-member limits model (policies/limits.py): units, bounds, overrides, errors."""

from __future__ import annotations

import pytest

from domtool.policies import limits as L


@pytest.mark.parametrize(
    ("resource", "text", "value"),
    [
        ("memory", "512M", 512 * 1024**2),
        ("memory", "2G", 2 * 1024**3),
        ("memory", "1.5G", 3 * 1024**3 // 2),
        ("memory", "100k", 100 * 1024),
        ("memory", "2GiB", 2 * 1024**3),
        ("disk", "1048576", 1048576),
        ("cgi_cpu", "30", 30),
        ("cgi_cpu", "30s", 30),
        ("cgi_wall", "5m", 300),
        ("cgi_wall", "1h", 3600),
        ("processes", "100", 100),
        ("processes", 100, 100),
        ("cpu_weight", " 50 ", 50),
    ],
)
def test_units_parse(resource, text, value):
    assert L.parse_value(resource, text) == value


@pytest.mark.parametrize(
    ("resource", "text", "message"),
    [
        ("memory", "512X", "is not a size"),
        ("memory", "lots", "is not a size"),
        ("memory", "-1G", "is not a size"),
        ("cgi_cpu", "2d", "is not a duration"),
        ("processes", "1e3", "is not a whole number"),
        ("processes", True, "boolean"),
        ("bandwidth", "1G", "unknown limit 'bandwidth'"),
    ],
)
def test_bad_units_are_refused_clearly(resource, text, message):
    with pytest.raises(L.LimitError, match=message):
        L.parse_value(resource, text)


def test_format_round_trips():
    for r, n in (("memory", 512 * 1024**2), ("disk", 5 * 1024**3), ("memory", 1000)):
        assert L.parse_value(r, L.format_value(r, n)) == n
    assert L.format_value("memory", 512 * 1024**2) == "512M"
    assert L.format_value("cgi_cpu", 30) == "30s"


def test_effective_defaults_then_overrides():
    site = L.SiteLimits()
    ml = L.effective(site, "alice", {"memory": 512 * 1024**2})
    assert ml.memory == 512 * 1024**2
    assert ml.processes == L.DEFAULT_BOUNDS["processes"].default
    assert ml.overridden == {"memory"}
    assert L.MemberLimits.from_json(ml.to_json()) == ml


def test_out_of_bounds_and_unknown_member_change_nothing():
    site = L.SiteLimits.from_config({"memory": {"minimum": "128M", "maximum": "4G"}})
    current = {"processes": 100}
    with pytest.raises(L.LimitError) as e:
        L.set_overrides(
            site,
            ["alice"],
            "alice",
            current,
            {"memory": "64M", "processes": "100000", "cgi_cpu": "x"},
        )
    text = str(e.value)
    assert "memory: 64M is below what the site allows (at least 128M)" in text
    assert "processes: 100000 is above the site's maximum (4096)" in text
    assert "cgi_cpu: 'x' is not a duration" in text
    assert current == {"processes": 100}
    with pytest.raises(L.LimitError, match="unknown member 'mallory'"):
        L.set_overrides(site, ["alice"], "mallory", {}, {"memory": "1G"})
    assert L.set_overrides(site, ["alice"], "alice", current, {"memory": "1G"}) == {
        "processes": 100,
        "memory": 1024**3,
    }


def test_reset_and_assignments():
    assert L.reset_overrides(["a"], "a", {"memory": 1, "disk": 2}, ["memory"]) == {"disk": 2}
    assert L.reset_overrides(["a"], "a", {"memory": 1}, []) == {}
    with pytest.raises(L.LimitError, match="unknown limit 'ram'"):
        L.reset_overrides(["a"], "a", {}, ["ram"])
    assert L.parse_assignments(["memory=512M", "processes=9"]) == {
        "memory": "512M",
        "processes": "9",
    }
    with pytest.raises(L.LimitError, match="LIMIT=VALUE"):
        L.parse_assignments(["memory"])


def test_site_config_is_checked():
    with pytest.raises(L.LimitError, match="minimum <= default <= maximum"):
        L.SiteLimits.from_config({"memory": {"default": "32M"}})
    with pytest.raises(L.LimitError, match="unknown limit 'ram'"):
        L.SiteLimits.from_config({"ram": {}})


def test_stored_overrides_outside_narrowed_bounds_are_clamped():
    site = L.SiteLimits.from_config({"processes": {"maximum": 300}})
    assert L.effective(site, "a", {"processes": 4000}).processes == 300


def test_cpu_shares():
    assert L.cpu_shares(100) == 1024
    assert L.cpu_shares(1) == 10
    assert L.cpu_shares(10000) == 102400
