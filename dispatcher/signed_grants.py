"""The dispatcher's copy of each member's administrator-signed grant record, to relay.

The dispatcher cannot make or change these records (it never holds the signing key); it
keeps the newest one per member (``put_grants``, an admin op whose record must match the
store's grants for that member exactly) in ``STATE_DIR/signed-grants/MEMBER.json`` and
sends it with the member's part in every ``prepare`` (``controller._changes``). Slaves
that trust the key check each unit against it (``domtool.slave.verified``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from domtool import grantsig
from domtool.perms import Permissions
from domtool.util.files import atomic_write

__all__ = ["SignedGrantFiles", "mismatch"]


def mismatch(record: grantsig.GrantRecord, current: Permissions) -> list[str]:
    """How a signed record differs from the store's grants (empty: identical)."""
    signed, have = set(record.grants), set(current.grants())
    out = [f"signed but not granted: {c} {v}" for c, v in sorted(signed - have)]
    out += [f"granted but not signed: {c} {v}" for c, v in sorted(have - signed)]
    return out


class SignedGrantFiles:
    """Signed records by member, one JSON file each under ``directory``."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def _path(self, member: str) -> Path:
        return self.directory / f"{Permissions.none(member).user}.json"

    def get(self, member: str) -> dict[str, Any] | None:
        """The member's signed record in its JSON form, or None."""
        try:
            return json.loads(self._path(member).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def serial(self, member: str) -> int:
        obj = self.get(member)
        return 0 if obj is None else int(obj["record"]["serial"])

    def put(self, signed: grantsig.SignedGrants) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(signed.record.member)
        atomic_write(path, json.dumps(signed.to_json(), sort_keys=True).encode(), 0o640)
