"""``domtool-admin init``: a new site in one command: the member and host CAs, the
dispatcher's host certificate, the slaves' host certificates, and the first admin (a
member certificate, a client.toml, and the store's first admin member).

Layout under the dispatcher's state directory (``/var/lib/domtool`` in the package)::

    <state>/ca/                 the two CAs (dispatcher/ca.py)
    <state>/tls/dispatcher.pem  the dispatcher's certificate; .key 0600 (renewed in place)
    <state>/tls/hosts/<fqdn>.{pem,key}   each slave's certificate, to copy to that slave
    <state>/domtool.sqlite3     the store, with the first admin member
    <out>/                      the admin's ~/.domtool/: client.toml, <admin>.pem/.key,
                                host-ca.pem (default <state>/admin; hand it over, delete it)

Idempotent: each item is checked first; one that is already right is kept, a missing one
is made (except the admin's files once handed over: when the store pins a live
certificate of theirs, it is kept, not reissued, so the admin is not locked out). One that exists but differs (another site name, a certificate for another name
or from another CA, an expired one, an admin that is not an admin) is a conflict: nothing
at all is written and every conflict is listed, unless ``force`` is given, which replaces
exactly the conflicting items (a replaced CA reissues everything it signed).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from attrs import define, field
from cryptography import x509

from domtool import identity
from domtool.client import config as client_config
from domtool.dispatcher import ca
from domtool.util.files import atomic_write

__all__ = ["InitError", "InitResult", "init_site"]


class InitError(Exception):
    """The site cannot be set up as asked; ``conflicts`` lists every reason."""

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        super().__init__("; ".join(conflicts))


@define
class InitResult:
    """What init did to each item: ``created``, ``kept`` or ``replaced``."""

    items: dict[str, str] = field(factory=dict)
    paths: dict[str, str] = field(factory=dict)


def _cert_problem(
    cert_path: Path, key_path: Path, ca_dir: Path, kind: str, principal: identity.Principal
) -> str | None:
    """Why the certificate at ``cert_path`` is not a usable one for ``principal`` from the
    ``kind`` CA in ``ca_dir`` (None: it is)."""
    if not cert_path.exists() or not key_path.exists():
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca_cert = x509.load_pem_x509_certificate(ca.ca_certificate(ca_dir, kind))
    except (ValueError, ca.CAError) as e:
        return f"unreadable ({e})"
    if cert.issuer != ca_cert.subject:
        return f"issued by {cert.issuer.rfc4514_string()}, not this site's {kind} CA"
    try:
        ca_cert.public_key().verify(
            cert.signature, cert.tbs_certificate_bytes, _ec_sig(cert.signature_hash_algorithm)
        )
    except Exception:  # InvalidSignature and friends: another CA with the same name
        return f"not signed by this site's {kind} CA"
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = uris.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        names = []
    if principal.uri() not in names:
        return f"names {', '.join(names) or 'nobody'}, not {principal.uri()}"
    if ca._utc(cert, "not_valid_after") <= datetime.datetime.now(datetime.UTC):
        return "expired"
    revoked = {i.serial for i in ca.issued(ca_dir, kind) if i.revoked_at is not None}
    if cert.serial_number in revoked:
        return "revoked"
    return None


def _ec_sig(algorithm):
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.ECDSA(algorithm)


def _issue_pair(
    ca_dir: Path, kind: str, name: str, cert_path: Path, key_path: Path, days: int
) -> bytes:
    issue = ca.issue_member if kind == ca.MEMBER else ca.issue_host
    cert, key = issue(ca_dir, name, days)
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(key_path, key, 0o600)
    atomic_write(cert_path, cert, 0o644)
    return cert


def init_site(
    state_dir: str | os.PathLike,
    site: str,
    dispatcher: str,
    *,
    address: str | None = None,
    admin: str = "admin",
    out: str | os.PathLike | None = None,
    hosts: tuple[str, ...] = (),
    days: int = 365,
    force: bool = False,
) -> InitResult:
    """Set up (or check) the site in ``state_dir``; see the module docstring."""
    from domtool.dispatcher.store import Store

    state = Path(state_dir)
    ca_dir = state / "ca"
    tls_dir = state / "tls"
    out_dir = Path(out) if out is not None else state / "admin"
    address = address or f"{dispatcher}:1234"
    conflicts: list[str] = []
    if not identity.valid_name(identity.HOST, dispatcher):
        conflicts.append(f"{dispatcher!r} is not a host name")
    for h in hosts:
        if not identity.valid_name(identity.HOST, h):
            conflicts.append(f"{h!r} is not a host name")
    if not identity.valid_name(identity.MEMBER, admin):
        conflicts.append(f"{admin!r} is not a member (Unix user) name")
    try:
        client_config.split_address(address)
    except ValueError as e:
        conflicts.append(str(e))
    if conflicts:
        raise InitError(conflicts)

    result = InitResult()
    # 1. The CAs.
    ca_state = "missing"
    if (ca_dir / "site.json").exists():
        have = ca.site_name(ca_dir)
        ca_state = "ok" if have == site else f"made for site {have!r}, not {site!r}"
    # 2. Certificates: (item, kind, name, cert path, key path).
    certs = [("dispatcher certificate", ca.HOST, dispatcher, tls_dir / "dispatcher")]
    certs += [(f"host certificate of {h}", ca.HOST, h, tls_dir / "hosts" / h) for h in hosts]
    certs.append((f"admin certificate of {admin}", ca.MEMBER, admin, out_dir / admin))
    cert_state = {}
    for item, kind, name, base in certs:
        if ca_state != "ok":
            cert_state[item] = "missing" if not Path(f"{base}.pem").exists() else "new CA"
            continue
        principal = identity.member(name) if kind == ca.MEMBER else identity.host(name)
        cert_state[item] = (
            _cert_problem(Path(f"{base}.pem"), Path(f"{base}.key"), ca_dir, kind, principal) or "ok"
        )
    toml_path = out_dir / "client.toml"
    toml = client_config.dump(address, dispatcher, f"{admin}.pem", f"{admin}.key", "host-ca.pem")
    toml_state = "missing"
    if toml_path.exists():
        toml_state = "ok" if toml_path.read_text() == toml else "differs from what init writes"
    # 3. The store's admin.
    member_state = "missing"
    rec = None
    if (state / "domtool.sqlite3").exists():
        store = Store.open(state)
        try:
            rec = store.member(admin)
        finally:
            store.close()
        if rec is not None and rec.active:
            member_state = "ok" if rec.is_admin else f"{admin} is a member but not an admin"
    # The admin's files were handed over (and deleted here, as deploy.md says): the store
    # pins a live certificate of theirs, so a new one would lock them out. Keep it.
    admin_item = certs[-1][0]
    handed_over = (
        member_state == "ok"
        and cert_state[admin_item] == "missing"
        and rec.cert_serial is not None
        and any(
            i.serial == rec.cert_serial
            and i.revoked_at is None
            and i.not_after > datetime.datetime.now(datetime.UTC)
            for i in ca.issued(ca_dir, ca.MEMBER)
        )
    )
    if handed_over:
        cert_state[admin_item] = "handed over"
        if toml_state == "missing":
            toml_state = "handed over"

    def bad(s: str) -> bool:
        return s not in ("ok", "missing", "new CA", "handed over")

    found = [("CAs", ca_state)] + list(cert_state.items()) + [("admin client.toml", toml_state)]
    found.append((f"store member {admin}", member_state))
    conflicts = [f"{item} in {state}: {s}" for item, s in found if bad(s)]
    if conflicts and not force:
        raise InitError(conflicts + ["nothing was changed; run again with --force to replace"])

    # Write: a CA made anew invalidates every certificate it would have signed.
    state.mkdir(parents=True, exist_ok=True)
    if ca_state != "ok":
        if ca_state != "missing":
            _move_aside(ca_dir)
        ca.init_ca(ca_dir, site)
        result.items["CAs"] = "created" if ca_state == "missing" else "replaced"
    else:
        result.items["CAs"] = "kept"
    admin_serial = None
    for item, kind, name, base in certs:
        s = cert_state[item]
        cert_path, key_path = Path(f"{base}.pem"), Path(f"{base}.key")
        if s == "handed over":
            result.items[item] = "kept (handed over: not in the state dir any more)"
            admin_serial = rec.cert_serial
            continue
        if s == "ok" and ca_state == "ok":
            result.items[item] = "kept"
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        else:
            cert = x509.load_pem_x509_certificate(
                _issue_pair(ca_dir, kind, name, cert_path, key_path, days)
            )
            result.items[item] = "created" if s == "missing" else "replaced"
        if kind == ca.MEMBER:
            admin_serial = cert.serial_number
        result.paths[item] = str(cert_path)
    host_ca = ca.ca_certificate(ca_dir, ca.HOST)
    for d in (
        ([] if handed_over else [out_dir]) + [tls_dir] + ([tls_dir / "hosts"] if hosts else [])
    ):
        atomic_write(d / "host-ca.pem", host_ca, 0o644)
    if hosts:
        atomic_write(tls_dir / "hosts" / "host-crl.pem", ca.current_crl(ca_dir, ca.HOST), 0o644)
    if toml_state not in ("ok", "handed over"):
        atomic_write(toml_path, toml.encode(), 0o644)
    result.items["admin client.toml"] = (
        "created" if toml_state not in ("ok", "handed over") else "kept"
    )
    result.paths["admin client.toml"] = str(toml_path)
    store = Store.open(state)
    try:
        rec = store.member(admin)
        if rec is None or not rec.active:
            store.add_member(admin, is_admin=True, cert_serial=admin_serial)
            result.items[f"store member {admin}"] = "created"
        else:
            if not rec.is_admin:
                store.set_admin(admin, True)
            changed = rec.cert_serial not in (None, admin_serial) or not rec.is_admin
            store.set_cert_serial(admin, admin_serial)
            result.items[f"store member {admin}"] = "replaced" if changed else "kept"
    finally:
        store.close()
    result.paths["state"] = str(state)
    result.paths["ca"] = str(ca_dir)
    result.paths["admin files"] = str(out_dir)
    return result


def _move_aside(path: Path) -> None:
    """Keep a replaced CA (its keys signed live certificates) as ``<path>.replaced-<time>``."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    path.rename(path.with_name(f"{path.name}.replaced-{stamp}"))


# ---------------------------------------------------------------------------
# The command


def add_parser(add) -> None:
    """Register ``init`` with ``domtool-admin``'s ``add(name, help, func, remote)``."""
    import argparse

    sp = add(
        "init",
        "set up a new site (CAs, the dispatcher's and slaves' certificates, the first "
        "admin); idempotent, refuses to overwrite anything that differs without --force",
        cmd_init,
        False,
    )
    sp.add_argument("--site", required=True, help="the site's name, e.g. example.coop")
    sp.add_argument(
        "--dispatcher", required=True, metavar="FQDN", help="the dispatcher's host name"
    )
    sp.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="where members reach the dispatcher (default FQDN:1234), for client.toml",
    )
    sp.add_argument(
        "--state",
        default="/var/lib/domtool",
        metavar="DIR",
        help="the dispatcher's state directory (default /var/lib/domtool)",
    )
    sp.add_argument("--admin", default="admin", metavar="USER", help="the first admin's name")
    sp.add_argument(
        "--out", metavar="DIR", help="the admin's files (default STATE/admin): their ~/.domtool/"
    )
    sp.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="FQDN",
        help="also issue a slave's host certificate into STATE/tls/hosts (repeatable)",
    )
    sp.add_argument("--days", type=int, default=365, help="certificate validity (default 365)")
    sp.add_argument("--force", action="store_true", help="replace items that differ")
    sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="as JSON")


def cmd_init(args) -> int:
    """``domtool-admin init``: exit 0 when the site is in place, 1 on conflicts."""
    import sys

    from domtool.client.connection import dumps

    try:
        result = init_site(
            args.state,
            args.site,
            args.dispatcher,
            address=args.address,
            admin=args.admin,
            out=args.out,
            hosts=tuple(args.host),
            days=args.days,
            force=args.force,
        )
    except InitError as e:
        for c in e.conflicts:
            print(f"domtool-admin: init: {c}", file=sys.stderr)
        return 1
    except (OSError, ca.CAError, ValueError) as e:
        print(f"domtool-admin: init: {e}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        print(dumps({"items": result.items, "paths": result.paths}))
        return 0
    print(f"site {args.site} in {result.paths['state']}:")
    for item, what in result.items.items():
        where = result.paths.get(item)
        print(f"  {what:<8} {item}" + (f" ({where})" if where else ""))
    print(
        f"give {result.paths['admin files']}/ to {args.admin} (it holds a private key): it is "
        "their ~/.domtool/; the dispatcher's [tls] is STATE/tls/dispatcher.{pem,key} and "
        "STATE/ca/{member,host}/{ca,crl}.pem"
    )
    return 0
