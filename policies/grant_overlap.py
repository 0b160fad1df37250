"""Whether a new grant overlaps another member's: the same domain, a subdomain or parent of
it, a path inside or around another's path, the same Unix user or group.

Two members holding overlapping names lock each other out at the slaves (the live holder
of a name keeps it), so ``Store.grant`` refuses an overlapping grant unless an
administrator says it is shared (``domtool-admin grant --shared``), and shows the
overlap either way. Pure: values come in already canonical (``domtool.perms``).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["overlaps"]


def _domain_overlap(a: str, b: str) -> str | None:
    if a == b:
        return "the same domain"
    if a.endswith("." + b):
        return f"inside {b}"
    if b.endswith("." + a):
        return f"{b} is inside it"
    return None


def _path_overlap(a: str, b: str) -> str | None:
    if a == b:
        return "the same path"
    if a.startswith(b.rstrip("/") + "/"):
        return f"inside {b}"
    if b.startswith(a.rstrip("/") + "/"):
        return f"{b} is inside it"
    return None


def overlaps(cls: str, value: str, others: Iterable[tuple[str, str]]) -> list[str]:
    """How ``cls value`` overlaps each ``(member, value)`` of the same class held by
    another member: one line each, e.g. ``bob holds domain example.org (inside it)``."""
    out = []
    for member, held in sorted(others):
        if cls == "domain":
            why = _domain_overlap(value, held)
        elif cls == "path":
            why = _path_overlap(value, held)
        else:
            why = "the same name" if value == held else None
        if why is not None:
            out.append(f"{member} holds {cls} {held} ({why})")
    return out
