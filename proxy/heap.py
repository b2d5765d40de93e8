"""The API process's garbage collector: what the process holds once it has started is frozen out of its
full passes.

CPython's full collection walks every tracked object the process holds, with the event loop stopped. Once
started, an API process holds about 115,000 (the frameworks, the SDKs, the pools, the embedder's
tokenizer), nearly all for its whole life, and a full pass over them stopped every call in flight for
about 55 ms. Under load one came every two seconds: at 16 calls at once that pause was the proxy's p99,
and the calls it caught bunched up behind it, so the latency of the same work swung from one second to
the next (bench.perf, memory off at concurrency 16: p50 6.3 to 13.3 ms between 3-second slices).

:func:`settle` collects what start left behind, then freezes the rest (``gc.freeze``): later full passes
walk only what the calls make, about 13,000 objects, in 2 to 4 ms. A frozen object is still freed when
nothing refers to it; only a cycle among frozen objects is never collected, which is why settling
collects first. The app settles once it has started and again when the embedder has loaded, and thaws
(``gc.unfreeze``) when it stops, so a process that hosts one app after another leaks nothing.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def settle() -> None:
    """Collect what start left behind, then move what survives out of the collector's sight."""
    gc.collect()
    gc.freeze()
    log.debug("heap settled: %d objects frozen", gc.get_freeze_count())


def thaw() -> None:
    """Give the frozen objects back to the collector."""
    gc.unfreeze()


def frozen() -> int:
    """How many objects the collector's passes leave out."""
    return gc.get_freeze_count()
