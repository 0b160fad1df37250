"""The generation store's manifest JSON: kept in pieces, always the plain JSON."""

from __future__ import annotations

import json
import random

from domtool.slave.generations import PIECE, GenerationStore, UnitRef
from domtool.slave.seams import FakeFileSystem


def plain(manifest: dict) -> bytes:
    return (json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n").encode()


def test_dump_is_the_plain_json_through_random_changes():
    """Random edits of two backends' unit lists (one entry changed, inserted, removed,
    an unshared dict, a list shorter than a piece): the dump stays byte-identical to
    ``json.dumps``, and an unchanged piece is the very bytes object of last time."""
    rng = random.Random(12)
    store = GenerationStore("/s", FakeFileSystem(), {})

    def ref(i: int, v: int) -> UnitRef:
        return UnitRef(f"zone:z{i:05d}.example", f"o{i % 7}", f"{v:064x}", "zone", f"z{i}.zone")

    lists = {
        "bind": [store.entry(ref(i, 0)) for i in range(3 * PIECE + 17)],
        "web": [store.entry(ref(i, 1)) for i in range(5)],
    }
    for step in range(60):
        b = rng.choice(["bind", "bind", "web"])
        entries = list(lists[b])
        what = rng.choice(["change", "insert", "remove", "foreign"])
        i = rng.randrange(len(entries))
        if what == "change":
            entries[i] = store.entry(ref(i, step + 2))
        elif what == "insert":
            entries.insert(i, store.entry(ref(10_000 + step, 0)))
        elif what == "remove" and len(entries) > 1:
            del entries[i]
        else:
            entries[i] = {"key": f"k{step}", "owner": "x", "sha": "0" * 64, "ext": "e"}
        lists[b] = entries
        manifest = {
            "format": 1,
            "generation": step + 1,
            "backends": {
                name: {"units": units, "index": {"zones.conf": "ab" * 32}}
                for name, units in lists.items()
            },
        }
        before = store._pieces.get("bind")
        assert store.dump(manifest) == plain(manifest)
        after = store._pieces["bind"]
        if b == "web" and before is not None:  # bind untouched: every piece reused
            assert all(x is y for x, y in zip(before.pieces, after.pieces, strict=True))
        if b == "bind" and what == "change" and before is not None:
            reused = sum(x is y for x, y in zip(before.pieces, after.pieces, strict=False))
            assert reused == len(after.pieces) - 1
