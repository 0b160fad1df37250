"""The apply engine's errors: each says what it left live (engine, generation store, bisector)."""

from __future__ import annotations

import errno


class EngineError(Exception):
    """The apply could not be carried out; each subclass says what it left live."""


class DiskFull(EngineError):
    """Disk full (ENOSPC): the apply was abandoned, staging removed, nothing live changed."""


class StalePrepare(EngineError):
    """The live generation moved since this prepare; prepare again."""


class RollbackFailed(EngineError):
    """A reload or probe failed and switching back failed too; the new generation stays
    live until ``recover()`` (which goes back to the last verified generation)."""


class CheckFailed(EngineError):
    """The staged configuration fails its checker even with no member change applied."""


class BackendFailed(EngineError):
    """A backend could not render the state at all (not attributable to an owner)."""


class EngineBusy(EngineError):
    """Another call is running on this engine; the agent must serialise them."""


def fs_error(exc: OSError, doing: str) -> EngineError:
    """The engine error for a file system error while ``doing`` something."""
    where = f" at {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return DiskFull(
            f"disk full (ENOSPC){where} while {doing}: the apply was abandoned; "
            "the live configuration is unchanged"
        )
    return EngineError(
        f"file system error{where} while {doing}: {exc.strerror or exc}; "
        "the live configuration is unchanged"
    )
