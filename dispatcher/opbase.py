"""What the dispatcher's member and admin operations share: the op error, the evaluated
state, and small helpers (``member_ops.py``, ``admin_ops.py``, ``controller.py``)."""

from __future__ import annotations

from typing import Any

import attrs

from domtool import protocol, wire
from domtool.dispatcher.links import LinkError, RemoteError
from domtool.model import DesiredState
from domtool.perms import Permissions

#: How many of a domain's newest versions ``history`` sends with their text (64 of the
#: largest files would not fit one 20 MiB frame).
HISTORY_TEXTS = 20


class OpError(Exception):
    """An op that cannot be done: ``kind`` (one of ``wire.ERROR_KINDS``), message, details."""

    def __init__(self, kind: str, message: str, details: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.failure = wire.Failure(kind, message, tuple(details))


def _refused(message: str) -> OpError:
    return OpError("refused", message)


def _perms_json(perms: Permissions) -> dict[str, Any]:
    return protocol.PermsAnswer(
        perms.user,
        tuple({"class": c, "value": v} for c, v in perms.grants()),
        {
            "domains": sorted(perms.domains),
            "paths": sorted(perms.paths),
            "users": sorted(perms.users),
            "groups": sorted(perms.groups),
        },
    ).to_json()


def _empty(state: DesiredState) -> bool:
    return state == DesiredState()


@attrs.frozen
class Evaluated:
    """A member's files evaluated: the state (None if refused) and why not."""

    state: DesiredState | None
    diagnostics: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    dropped: tuple[dict[str, Any], ...] = ()


def _why(failure: Any) -> str:
    e = getattr(failure, "value", failure)
    if isinstance(e, LinkError | RemoteError):
        return str(e)
    return f"{type(e).__name__}: {e}"
