"""``model.from_json`` shares equal values (hash-consing) without changing what it decodes:
the same values, field by field and type by type, as a plain decode; equal values of one
call are one object; short strings are one object across calls."""

from __future__ import annotations

import json
import random

import attrs
import pytest

from domtool import model
from domtool.model import DesiredState, MailDomain, Record, Vhost, WebSettings, Zone


def plain(data):
    """The decode without any sharing (what from_json did before), as the reference."""
    if isinstance(data, dict):
        if data.get("kind") in model.BLOCK_KINDS:
            return model.Block(**{k: plain(v) for k, v in data.items()})
        cls = model._CLASSES[data["kind"]]
        return cls(**{k: plain(v) for k, v in data.items() if k != "kind"})
    if isinstance(data, list):
        return tuple(plain(v) for v in data)
    return data


def typed(value):
    """``value`` with every scalar's type beside it, so True and 1 differ."""
    if attrs.has(type(value)):
        return (
            type(value),
            tuple(typed(getattr(value, f.name)) for f in attrs.fields(type(value))),
        )
    if isinstance(value, tuple):
        return (tuple, tuple(typed(v) for v in value))
    return (type(value), value)


def zone(rng: random.Random, owner: str, name: str) -> Zone:
    records = [Record("@", "NS", ("ns1.coop.example",)), Record("@", "NS", ("ns2.coop.example",))]
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(["A", "MX", "TXT", "SRV"])
        if kind == "A":
            records.append(Record(rng.choice(["@", "www"]), "A", ("127.0.0.1",)))
        elif kind == "MX":
            records.append(Record("@", "MX", (rng.choice([0, 10]), f"mail.{name}"), ttl=300))
        elif kind == "TXT":
            records.append(Record("@", "TXT", (rng.choice(["1", "True", "v=spf1 -all"]),)))
        else:
            records.append(Record("_sip._tcp", "SRV", (1, 1, rng.choice([1, 5060]), name)))
    return Zone(name, owner, tuple(records), ("local",))


def state(rng: random.Random, owner: str, n: int) -> DesiredState:
    names = [f"{owner}d{i}.example" for i in range(n)]
    vhosts = tuple(
        Vhost(
            f"www.{d}",
            owner,
            d,
            ("local",),
            f"/home/{owner}/www",
            owner,
            owner,
            f"{owner}@example.org",
            settings=WebSettings(ssi=rng.random() < 0.5, cgi=rng.random() < 0.5),
        )
        for d in names
    )
    mail = tuple(MailDomain(d, owner, ("local",), spam_threshold=rng.choice([1, 5])) for d in names)
    return DesiredState(
        zones=tuple(zone(rng, owner, d) for d in names), vhosts=vhosts, mail=mail
    ).normalised()


def test_a_decode_is_the_plain_decode_value_by_value_and_type_by_type():
    rng = random.Random(12)
    for i in range(30):
        data = json.loads(json.dumps(model.to_json(state(rng, f"m{i}", rng.randint(1, 12)))))
        got, want = model.from_json(data), plain(data)
        assert got == want and typed(got) == typed(want)
        assert json.dumps(model.to_json(got)) == json.dumps(model.to_json(want))


def test_true_and_1_are_not_shared():
    """Equal under ``==`` but not the same value: each keeps its own type."""
    got = model.from_json([[True], [1], [1.0], [False], [0], ["1"]])
    assert [type(t[0]) for t in got] == [bool, int, float, bool, int, str]
    settings = model.from_json(
        [
            model.to_json(WebSettings(ssi=True)),
            {**model.to_json(WebSettings()), "ssi": 1},
        ]
    )
    assert type(settings[0].ssi) is bool and type(settings[1].ssi) is int
    assert settings[0] is not settings[1]


def test_equal_values_of_one_decode_are_one_object():
    rng = random.Random(3)
    s = model.from_json(model.to_json(state(rng, "bob", 20)))
    ns = {id(r) for z in s.zones for r in z.records if r.rtype == "NS"}
    assert len(ns) == 2  # one per name server, among 20 zones
    assert len({id(z.nodes) for z in s.zones} | {id(v.nodes) for v in s.vhosts}) == 1
    assert len({id(v.owner) for v in s.vhosts} | {id(m.owner) for m in s.mail}) == 1


def test_short_strings_are_shared_across_calls_and_long_ones_are_not_kept():
    a, b = (
        model.from_json(json.loads(json.dumps(model.to_json(MailDomain(d, "alice", ("local",))))))
        for d in ("a.example", "b.example")
    )
    assert a.owner is b.owner and a.nodes[0] is b.nodes[0]
    long = "x" * (model.INTERN_MAX + 1) + ".example"
    c, d = (
        model.from_json(json.loads(json.dumps(model.to_json(MailDomain(long, "x", ("local",))))))
        for _ in range(2)
    )
    assert c == d and c.name is not d.name


@pytest.mark.parametrize(
    "data, message",
    [
        ({"kind": "Nope"}, "unknown model object kind 'Nope'"),
        ({"kind": "TLS", "certificate": "/c", "key": "/k", "x": 1}, "unexpected fields for TLS"),
        ({"kind": "location", "path": "/", "x": 1}, "unexpected fields for Block"),
        ({"kind": ["Zone"]}, "unknown model object kind"),
    ],
)
def test_bad_objects_are_refused_as_before(data, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        model.from_json(data)
