"""Running a coroutine function under a Twisted ``DeferredLock``: one at a time, in the
order they asked, the lock released however the call ends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet import defer

__all__ = ["run_locked"]

T = TypeVar("T")


async def run_locked(lock: defer.DeferredLock, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await fn(*args)`` while holding ``lock``."""
    await lock.acquire()
    try:
        return await fn(*args)
    finally:
        lock.release()
