"""How the slave uses Python's cyclic garbage collector with a host of 10,000 domains.

A slave holding 10,000 domains keeps about a million long-lived objects (every owner's
part, the backends' units and memos, the engine's manifests). Python's collector
walks all of them in each generation-2 collection (0.3 to 0.8 s here), and a change
that allocates a little triggers one every few changes; a complete prepare (``regen``)
allocates millions of objects and spent ~2.6 of its ~10 s in the collector (measured
with ``bench/bench_slave_site.py``). Nearly none of that is garbage: the state is
replaced by reference counting, which the collector is not needed for.

So: while the agent's blocking work runs (an engine call, a state record write), the
automatic collector is off; when the last one ends, every object alive is moved to the
permanent generation (``gc.freeze()``, constant time), so later collections walk only
what was allocated since. Cyclic garbage frozen that way is not lost for good:
:meth:`GcPolicy.idle_collect` (the service calls it every :data:`IDLE_COLLECT` seconds,
skipping it while a transaction is pending or work runs) unfreezes and collects
everything once, then freezes again.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import Any

IDLE_COLLECT = 600.0  # seconds between whole collections while idle


class GcPolicy:
    """Wraps the agent's ``run_blocking`` (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self.collections = 0  # idle collections done (for tests and logs)

    def wrap(self, run_blocking: Callable[..., Any]) -> Callable[..., Any]:
        def run(fn: Callable, *args: Any) -> Any:
            return run_blocking(self.call, fn, *args)

        return run

    def call(self, fn: Callable, *args: Any) -> Any:
        with self._lock:
            self._running += 1
            gc.disable()
        try:
            return fn(*args)
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    gc.freeze()
                    gc.enable()

    def idle_collect(self, idle: Callable[[], bool] = lambda: True) -> bool:
        """One whole collection of everything (frozen too), unless work runs or
        ``idle()`` says no; whether it ran."""
        with self._lock:
            if self._running or not idle():
                return False
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self.collections += 1
            return True
