"""Snapshots of member files a root daemon opens: copied, validated, and rendered instead.

Apache opens a vhost's TLS certificate, key and chain as root, at every start and
graceful. If it opened the member's own files, the member could later delete, replace or
re-symlink them: ``apache2 -t`` would then fail for everybody (and bisection would blame
other members' changes), or a garbage key would stop Apache at the next reload (issue
13, finding 3). So at prepare time the slave copies each such file into root-owned
storage and the vhost is rendered with the copy's path:

- the member's path must lie inside the owner's granted paths once symlinks are resolved
  (``slave.pathcheck``); the resolved path is opened with ``O_NOFOLLOW | O_NONBLOCK``
  (no symlink swapped in at the last component, no FIFO to hang on), must be a regular
  file of at most :data:`MAX_BYTES`, and what was opened (``/proc/self/fd``) is checked
  against the grants again (a directory swapped in between check and open is caught);
- it is validated: the certificate (and every chain certificate) parses as PEM and is in
  date, the key is an unencrypted PEM private key whose public key is the certificate's;
- it is stored content-addressed, ``STORE/<sha256>.pem`` (directory 0700, files 0600,
  never rewritten once there), and the vhost's ``tls`` is rewritten to those paths.

A member who renews their certificate submits again (or an admin runs ``regen``); until
then Apache keeps serving the validated copy. Other member paths (document roots, alias
targets, htpasswd files) are opened by Apache's workers as ``www-data``, not by root, and
are not copied.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from collections.abc import Callable, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from domtool.model import TLS, DesiredState
from domtool.slave.pathcheck import PathRefused, check_member_path
from domtool.util.files import atomic_write

__all__ = ["MAX_BYTES", "SnapshotRefused", "Snapshotter"]

MAX_BYTES = 64 * 1024


class SnapshotRefused(ValueError):
    """A member file that cannot be snapshotted (the message says why)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def read_member_file(path: str, granted: Sequence[str], limit: int = MAX_BYTES) -> bytes:
    """The bytes of a member's regular file inside ``granted``, read without following a
    symlink at the last component; :class:`SnapshotRefused` otherwise."""
    try:
        real = check_member_path(path, tuple(granted), must_exist=True)
    except PathRefused as e:
        raise SnapshotRefused(str(e)) from None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SnapshotRefused(f"{path}: cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SnapshotRefused(f"{path}: not a regular file")
        if st.st_size > limit:
            raise SnapshotRefused(f"{path}: {st.st_size} bytes, at most {limit}")
        opened = os.readlink(f"/proc/self/fd/{fd}")
        try:
            check_member_path(opened, tuple(granted))
        except PathRefused as e:
            raise SnapshotRefused(f"{path}: changed while being opened: {e}") from None
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > limit:
            raise SnapshotRefused(f"{path}: more than {limit} bytes")
        return data
    finally:
        os.close(fd)


def _certificates(data: bytes, path: str, now: datetime.datetime) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SnapshotRefused(f"{path}: not a PEM certificate") from None
    for c in certs:
        if now < c.not_valid_before_utc:
            raise SnapshotRefused(f"{path}: not valid before {c.not_valid_before_utc:%Y-%m-%d}")
        if now > c.not_valid_after_utc:
            raise SnapshotRefused(f"{path}: expired on {c.not_valid_after_utc:%Y-%m-%d}")
    return certs


def _public(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def validate_tls(
    cert: bytes, key: bytes, chain: bytes | None, tls: TLS, now: datetime.datetime
) -> None:
    """The files make a usable TLS set-up, or :class:`SnapshotRefused`."""
    leaf = _certificates(cert, tls.certificate, now)[0]
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise SnapshotRefused(
            f"{tls.key}: an encrypted key (Apache would ask for its passphrase)"
        ) from None
    except ValueError:
        raise SnapshotRefused(f"{tls.key}: not a PEM private key") from None
    if _public(private.public_key()) != _public(leaf.public_key()):
        raise SnapshotRefused(f"{tls.key}: does not match the certificate {tls.certificate}")
    if chain is not None:
        _certificates(chain, tls.chain or "", now)


@attrs.define
class Snapshotter:
    """Copies and validates member TLS files into ``store`` (root-owned, 0700)."""

    store: str
    now: Callable[[], datetime.datetime] = _now

    def _put(self, data: bytes) -> str:
        os.makedirs(self.store, mode=0o700, exist_ok=True)
        path = os.path.join(self.store, hashlib.sha256(data).hexdigest() + ".pem")
        if os.path.exists(path):
            return path
        atomic_write(path, data, 0o600)
        return path

    def snapshot(
        self, owner: str, state: DesiredState, granted: Sequence[str]
    ) -> tuple[DesiredState, list[str]]:
        """``state`` with every vhost's TLS files replaced by validated snapshots, and the
        refusals (``owner: vhost F: tls: why``); on any refusal the state is unchanged."""
        problems: list[str] = []
        vhosts = []
        for v in state.vhosts:
            if v.tls is None:
                vhosts.append(v)
                continue
            t = v.tls
            try:
                cert = read_member_file(t.certificate, granted)
                key = read_member_file(t.key, granted)
                chain = None if t.chain is None else read_member_file(t.chain, granted)
                validate_tls(cert, key, chain, t, self.now())
                new = TLS(
                    self._put(cert), self._put(key), None if chain is None else self._put(chain)
                )
            except SnapshotRefused as e:
                problems.append(f"{owner}: vhost {v.fqdn}: tls: {e}")
                continue
            vhosts.append(attrs.evolve(v, tls=new))
        if problems:
            return state, problems
        return attrs.evolve(state, vhosts=tuple(vhosts)), []

    def is_snapshot(self, path: str) -> bool:
        return os.path.dirname(path) == self.store
