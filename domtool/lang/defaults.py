"""Defaults that yield: ``byDefault with ... end`` and how a default gives way to the
member's own directive for the same name.

``dom`` (``stdlib/dom.dtl``) puts its ``web "www"`` and ``defaultAlias`` in a
``byDefault`` block. Such a body is not run where it is written: it is kept, with the
environment variables of that moment, and run when the enclosing domain's own body is
done, so every explicit directive of the domain is known by then, wherever it was written
(directly, in a ``let``, through a user function, in either branch of an ``if``). While
a default body runs (:attr:`Builder.defaulting`):

- a ``web`` block for a name the member configured (a vhost of that name, or one of its
  server aliases, or an A/AAAA/CNAME record on it) is skipped with its whole body;
- a default vhost leaves out a server alias another vhost of the member already claims
  (or one the member gave A/AAAA/CNAME records);
- a record yields to the member's records of the same name and type (and to a CNAME there);
- an alias rule yields to the member's rule for the same source.

Two explicit directives for one name stay an error (``Builder.first``), with both spans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from domtool.lang.primitives import Builder, DomainFrame, block

_ADDRESS_RECORDS = ("A", "AAAA", "CNAME")


@attrs.frozen
class Deferred:
    """A ``byDefault`` body and the environment variables it was written under."""

    body: Callable[[], None]
    env: dict[str, Any]


@block("byDefault")
def by_default(b: Builder, body: Callable[[], None]) -> None:
    frame = b.top(DomainFrame)
    if b.defaulting is frame:  # already running this domain's defaults
        body()
        return
    frame.defaults.append(Deferred(body, dict(b.env)))


def run_defaults(b: Builder, frame: DomainFrame) -> None:
    """Run ``frame``'s default bodies, after its explicit body (see the module doc)."""
    if not frame.defaults:
        return
    frame.explicit_records = frozenset((r.name, r.rtype) for r in frame.records)
    saved = (b.env, b.span, b.user_span, b.defaulting)
    b.defaulting = frame
    try:
        while frame.defaults:
            d = frame.defaults.pop(0)
            b.env = dict(d.env)
            d.body()
    finally:
        b.env, b.span, b.user_span, b.defaulting = saved


def _label_of(dom: DomainFrame, name: str) -> str | None:
    if name == dom.name:
        return "@"
    if name.endswith("." + dom.name):
        return name[: -len(dom.name) - 1]
    return None


def _claimed(b: Builder, dom: DomainFrame) -> set[str]:
    """Names the member's own vhosts serve (names and server aliases, in any domain of
    the file)."""
    out = set(dom.vhosts)
    for v in b.vhosts.values():
        out.add(v.fqdn)
        out.update(v.aliases)
    return out


def _has_address_records(dom: DomainFrame, label: str) -> bool:
    return any((label, t) in dom.explicit_records for t in _ADDRESS_RECORDS)


def vhost_yields(b: Builder, dom: DomainFrame, label: str, fqdn: str) -> bool:
    """A default ``web label`` gives way: the member configured that name."""
    return fqdn in _claimed(b, dom) or _has_address_records(dom, label)


def drop_claimed_aliases(b: Builder, frame: Any) -> None:
    """A default vhost leaves out the server aliases the member's own vhosts claim."""
    dom = frame.domain
    claimed = _claimed(b, dom) - {frame.fqdn}
    keep = []
    for name in frame.aliases:
        label = _label_of(dom, name)
        if name in claimed or (label is not None and _has_address_records(dom, label)):
            if name == dom.name:
                frame.apex = False
            continue
        keep.append(name)
    frame.aliases[:] = keep


def record_yields(frame: DomainFrame, name: str, rtype: str) -> bool:
    """A default record gives way to the member's records of that name and type."""
    have = frame.explicit_records
    if (name, rtype) in have or (name, "CNAME") in have:
        return True
    return rtype == "CNAME" and any(n == name for n, _ in have)
