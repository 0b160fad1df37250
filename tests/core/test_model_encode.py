"""``model.to_json`` (field names looked up once per class) writes exactly what the
plain attrs walk wrote: the same JSON, key order and scalar types included."""

from __future__ import annotations

import json
import random

import attrs

from domtool import model
from domtool.model import Block, Record, WebSettings

from .test_model_decode import state


def plain(value):
    """The encode as it was (``attrs.fields`` asked per object), as the reference."""
    if attrs.has(type(value)):
        out = {"kind": type(value).__name__}
        for f in attrs.fields(type(value)):
            out[f.name] = plain(getattr(value, f.name))
        return out
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def test_the_encode_is_the_plain_encode():
    rng = random.Random(7)
    for i in range(20):
        s = state(rng, f"m{i}", rng.randint(1, 8))
        got, want = model.to_json(s), plain(s)
        assert json.dumps(got) == json.dumps(want)  # key order too
        assert model.from_json(json.loads(json.dumps(got))) == s


def test_scalars_keep_their_types_and_odd_values_pass_through():
    values = [True, 1, 1.5, None, "x", ("a", 2), [False], Record("@", "MX", (10, "m.example"))]
    assert [model.to_json(v) for v in values] == [plain(v) for v in values]
    assert [type(x) for x in model.to_json((True, 1, 1.0))] == [bool, int, float]
    block = Block("directory", "/home/a/www", WebSettings(ssi=True))
    assert json.dumps(model.to_json(block)) == json.dumps(plain(block))
