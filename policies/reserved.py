"""Reserved names: what no member may configure even with a matching grant (pure).

- The site's own domains (``site_domains``, e.g. the cooperative's domain and its name
  server names) and everything under them belong to the site, except each member's own
  name under a site domain: ``alice.coop.example`` and its subdomains are alice's, and
  ``bob.coop.example`` (``www.bob.coop.example``...) is never alice's.
- Reserved labels (``hostmaster``, ``postmaster``, ...) at the front of a site domain's
  subdomain stay the site's as well (covered by the rule above).

A grant mistake (an admin granting ``coop.example`` to a member) thus cannot hand over
the site's zone or another member's web space.
"""

from __future__ import annotations

from collections.abc import Iterable

from domtool.model import DesiredState
from domtool.states import names, under


def reserved_reason(member: str, name: str, site_domains: Iterable[str]) -> str | None:
    """Why ``name`` is reserved for ``member`` (None when it is not)."""
    for site in site_domains:
        if not under(name, site):
            continue
        own = f"{member}.{site}"
        if under(name, own):
            return None
        label = name.lower()[: -len(site) - 1].rsplit(".", 1)[-1] if name.lower() != site else ""
        if label and label != member:
            return f"{name} is reserved: names under {site} belong to the site or to member {label}"
        return f"{name} is reserved: {site} is the site's own domain"
    return None


def check(member: str, state: DesiredState, site_domains: Iterable[str]) -> list[str]:
    """A refusal for each reserved name ``state`` configures (empty: none)."""
    site_domains = tuple(site_domains)
    out = []
    for n in names(state):
        if n.kind == "list":  # an address, not a domain name (its domain is checked)
            continue
        why = reserved_reason(member, n.name, site_domains)
        if why is not None:
            out.append(f"{n.kind} {why}")
    return out
