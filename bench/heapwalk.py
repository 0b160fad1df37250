"""What a live object graph holds, by holder: the bytes reachable from each named root
that no earlier root reached (``sys.getsizeof`` of each object, shared objects counted
once, under the first root that reaches them), and the biggest kinds of object in each.

Used by the benches' ``--breakdown`` to say where a process's memory is: which structure
holds it, not which line allocated it (``tracemalloc`` says that).
"""

from __future__ import annotations

import gc
import sys
import types
from collections import Counter
from collections.abc import Iterable

# Shared by the whole program, not held by a structure: not walked into.
_STOP = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
)


def walk(roots: Iterable[tuple[str, object]], top: int = 6) -> list[dict]:
    """For each (name, root) in order: the MB and object count reachable from it that no
    earlier root reached, and its ``top`` biggest types (MB)."""
    seen: set[int] = set()
    out = []
    for name, root in roots:
        size, count, kinds = 0, 0, Counter()
        stack = [root]
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, _STOP):
                continue
            seen.add(id(obj))
            s = sys.getsizeof(obj)
            size += s
            count += 1
            kinds[type(obj).__name__] += s
            stack.extend(gc.get_referents(obj))
        out.append(
            {
                "holder": name,
                "mb": round(size / 2**20, 1),
                "objects": count,
                "types_mb": {k: round(v / 2**20, 1) for k, v in kinds.most_common(top)},
            }
        )
    return out


def attributes(owner: str, obj: object) -> list[tuple[str, object]]:
    """``owner.attr`` roots, one per attribute of ``obj`` (``__dict__`` and slots)."""
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names += [n for n in getattr(cls, "__slots__", ()) if n not in names]
    out = []
    for n in names:
        try:
            out.append((f"{owner}.{n}", getattr(obj, n)))
        except AttributeError:
            pass
    return out
