"""Renewal of the site's CRLs and host certificates, and the status report of everything
that expires (``domtool-admin ca renew`` / ``ca status``; admin tooling, file based).

What renews what:

- each CRL (member, host): ``renew`` re-signs it once half its life has passed, or less
  than ``ca.CRL_WARN`` is left (a CRL is
  valid ``ca.CRL_DAYS``; the package's ``domtool-renew.timer`` runs ``ca renew`` daily),
  so it is renewed about 15 days before its nextUpdate; the dispatcher re-reads the member
  and host CRL files (``session.CrlWatch``); ``renew`` copies the host CRL to
  ``<state>/tls/hosts/host-crl.pem`` for the slaves.
- host certificates kept under ``<state>/tls`` (``dispatcher.pem`` and
  ``hosts/<fqdn>.pem``, as ``domtool-admin init`` writes them): reissued in place, key
  then certificate, once less than a third of their life (at most ``HOST_RENEW``) is left;
  the listeners pick the new pair up (``tlswatch.KeyPairWatch``).
- the CA certificates and member certificates are not renewed automatically: a CA lasts
  ``ca.CA_DAYS``; a member's certificate is reissued by an admin (``ca member``), and
  ``status`` lists those that expire within 30 days.

The clock is passed in (``now``) so tests can age a CRL.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from attrs import frozen
from cryptography import x509

from domtool import identity
from domtool.dispatcher import ca

__all__ = ["HOST_RENEW", "Item", "renew", "status"]

HOST_RENEW = datetime.timedelta(days=30)
HOST_DAYS = 365  # the life of a reissued host certificate
MEMBER_WARN = datetime.timedelta(days=30)


@frozen
class Item:
    """One thing that expires: what it is, when, and what renews it."""

    what: str  # "CA", "CRL", "host certificate", "member certificate"
    kind: str  # member / host (which CA)
    name: str
    expires: datetime.datetime
    renews: str
    due: bool  # needs action now (renew will do it, or an admin must)
    path: str = ""
    serial: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "what": self.what,
            "ca": self.kind,
            "name": self.name,
            "expires": self.expires.isoformat(),
            "renews": self.renews,
            "due": self.due,
            "path": self.path,
            "serial": self.serial,
        }


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now if now is not None else datetime.datetime.now(datetime.UTC)


def _crl_due(pem: bytes, now: datetime.datetime) -> tuple[datetime.datetime, bool]:
    c = x509.load_pem_x509_crl(pem)
    last, nxt = ca._utc(c, "last_update"), ca._utc(c, "next_update")
    if nxt is None:
        raise ca.CAError("the CRL has no nextUpdate")
    return nxt, now >= last + (nxt - last) / 2 or nxt - now < ca.CRL_WARN


def _cert_due(cert: x509.Certificate, now: datetime.datetime) -> tuple[datetime.datetime, bool]:
    start, end = ca._utc(cert, "not_valid_before"), ca._utc(cert, "not_valid_after")
    return end, end - now <= min(HOST_RENEW, (end - start) / 3)


def host_files(state_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """The host certificates kept under ``<state>/tls``: (host name, certificate path)."""
    tls_dir = Path(state_dir) / "tls"
    found = []
    for p in [tls_dir / "dispatcher.pem", *sorted((tls_dir / "hosts").glob("*.pem"))]:
        if not p.exists() or p.name in ("host-ca.pem", "host-crl.pem"):
            continue
        cert = x509.load_pem_x509_certificate(p.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        if dns:
            found.append((dns[0], p))
    return found


def status(
    ca_dir: str | os.PathLike,
    state_dir: str | os.PathLike | None = None,
    *,
    now: datetime.datetime | None = None,
) -> list[Item]:
    """Every CA, CRL and certificate with its expiry and what renews it."""
    now = _now(now)
    items: list[Item] = []
    for kind in (ca.MEMBER, ca.HOST):
        d = Path(ca_dir) / kind
        cert = x509.load_pem_x509_certificate(ca.ca_certificate(ca_dir, kind))
        end = ca._utc(cert, "not_valid_after")
        items.append(
            Item(
                "CA",
                kind,
                cert.subject.rfc4514_string(),
                end,
                "nobody: a new CA means reissuing every certificate it signed "
                "(domtool-admin init --force)",
                end - now < datetime.timedelta(days=365),
                str(d / "ca.pem"),
            )
        )
        nxt, due = _crl_due(ca.current_crl(ca_dir, kind), now)
        items.append(
            Item(
                "CRL",
                kind,
                f"{kind} CRL",
                nxt,
                "domtool-renew.timer (domtool-admin ca renew) once half its life has passed",
                due,
                str(d / "crl.pem"),
            )
        )
    kept = {}
    kept_names = set()
    if state_dir is not None:
        for name, path in host_files(state_dir):
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            kept[cert.serial_number] = path
            kept_names.add(name)
    for kind in (ca.MEMBER, ca.HOST):
        for i in ca.issued(ca_dir, kind):
            if i.revoked_at is not None or i.not_after < now - datetime.timedelta(days=30):
                continue  # revoked, or long expired: nothing to renew
            if kind == ca.HOST:
                path = kept.get(i.serial)
                if path is None and i.name in kept_names:
                    continue  # superseded by the certificate kept in the state dir
                if path is not None:
                    renews = "domtool-renew.timer reissues it in place before it expires"
                    due = _cert_due(x509.load_pem_x509_certificate(path.read_bytes()), now)[1]
                else:
                    renews = "an admin: domtool-admin ca host (not kept under the state dir)"
                    due = i.not_after - now <= HOST_RENEW
                items.append(
                    Item(
                        "host certificate",
                        kind,
                        i.name,
                        i.not_after,
                        renews,
                        due,
                        str(path or ""),
                        format(i.serial, "x"),
                    )
                )
            else:
                items.append(
                    Item(
                        "member certificate",
                        kind,
                        i.name,
                        i.not_after,
                        "an admin: domtool-admin ca member (or rmuser + adduser)",
                        i.not_after - now <= MEMBER_WARN,
                        "",
                        format(i.serial, "x"),
                    )
                )
    return items


def renew(
    ca_dir: str | os.PathLike,
    state_dir: str | os.PathLike | None = None,
    *,
    now: datetime.datetime | None = None,
    force: bool = False,
) -> list[str]:
    """Re-sign each CRL past half its life and reissue each kept host certificate near
    its end (everything with ``force``); what was done, one line each."""
    from domtool.util.files import atomic_write

    now = _now(now)
    done = []
    for kind in (ca.MEMBER, ca.HOST):
        nxt, due = _crl_due(ca.current_crl(ca_dir, kind), now)
        if due or force:
            pem = ca.crl(ca_dir, kind=kind, now=now)
            new_next, _ = _crl_due(pem, now)
            done.append(
                f"re-signed the {kind} CRL (was valid until {nxt:%Y-%m-%d %H:%M}, now until {new_next:%Y-%m-%d %H:%M})"
            )
    if state_dir is None:
        return done
    hosts_dir = Path(state_dir) / "tls" / "hosts"
    if hosts_dir.is_dir():
        crl = ca.current_crl(ca_dir, ca.HOST)
        target = hosts_dir / "host-crl.pem"
        if not target.exists() or target.read_bytes() != crl:
            atomic_write(target, crl, 0o644)
            done.append(f"copied the host CRL to {target} (give it to every slave)")
    for name, path in host_files(state_dir):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        end, due = _cert_due(cert, now)
        if not (due or force):
            continue
        cert_pem, key_pem = ca.issue_host(ca_dir, identity.host(name).name, HOST_DAYS, now=now)
        atomic_write(path.with_suffix(".key"), key_pem, 0o600)
        atomic_write(path, cert_pem, 0o644)
        done.append(
            f"reissued the host certificate of {name} ({path}; was valid until {end:%Y-%m-%d})"
        )
    return done
