"""Keeps Python's cyclic garbage collector off the engine's long-lived state.

An engine with a thousand sessions holds millions of long-lived objects (sessions, their
sockets, protocol machines, Trio tasks). CPython's collector re-scans all of them on every
full pass, and it starts one after enough survivors pile up: at 1,000 sessions a full pass
took ~140 ms here (a pause longer than a sweep) and about 5 % of a core. The engine makes
few new objects per message, so most of that work is spent proving old objects alive.

``run_gc_policy`` is a Trio task (the engine's nursery owns it) that, every
``freeze_interval_s``, collects the young generations and then moves every object still
alive into the collector's permanent generation (``gc.freeze()``): later passes only look
at objects made since. Cyclic garbage that was already old when frozen (mostly what ended
sessions leave behind) is reclaimed by a full pass (``gc.unfreeze(); gc.collect()``) every
``full_collect_interval_s``, sooner (at the next freeze) once ``sessions_ended()`` has grown
by ``_ENDED_FOR_EARLY_PASS`` since the last pass, and when the last policy task stops. A
full pass pauses the Trio thread (~150 ms at 1,000 sessions here: rings absorb it; the
longest is in the engine's stats). The collector is process-wide, hence a setting
(``EngineSettings.gc_freeze_interval_s``; 0 leaves the collector alone).

This module must never touch sockets or sessions: it only times the collector.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

__all__ = ["GcPolicyStats", "run_gc_policy"]

#: Policy tasks running in this process: the collector is restored when the last one ends.
_running = 0
#: Sessions ended since the last full pass that make the next freeze a full pass instead.
_ENDED_FOR_EARLY_PASS = 100


@dataclass
class GcPolicyStats:
    """What the policy did (engine stats)."""

    freezes: int = 0
    full_collections: int = 0
    #: Objects the full collections found unreachable (cyclic garbage reclaimed).
    collected: int = 0
    #: Longest full collection, in seconds (the pause it caused).
    longest_full_collection_s: float = 0.0


async def run_gc_policy(
    freeze_interval_s: float,
    full_collect_interval_s: float,
    sessions_ended: Callable[[], int],
    stats: GcPolicyStats,
) -> None:
    """Freeze every ``freeze_interval_s``; collect fully every ``full_collect_interval_s``
    (or once ``sessions_ended()`` grew by ``_ENDED_FOR_EARLY_PASS``). Runs until
    cancelled; on the way out (last policy task of the process) unfreezes and collects."""
    global _running
    if freeze_interval_s <= 0:
        return
    _running += 1
    try:
        ended_at_last_full = sessions_ended()
        next_full = trio.current_time() + full_collect_interval_s
        while True:
            await trio.sleep(freeze_interval_s)
            now = trio.current_time()
            ended = sessions_ended()
            if now >= next_full or ended - ended_at_last_full >= _ENDED_FOR_EARLY_PASS:
                _full_collection(stats)
                ended_at_last_full = ended
                next_full = now + full_collect_interval_s
            # young objects first, so fresh cyclic garbage is not frozen with the survivors
            gc.collect(1)
            gc.freeze()
            stats.freezes += 1
    finally:
        _running -= 1
        if _running == 0:
            _full_collection(stats, refreeze=False)


def _full_collection(stats: GcPolicyStats, refreeze: bool = True) -> None:
    started = time.perf_counter()
    gc.unfreeze()
    stats.collected += gc.collect()
    stats.full_collections += 1
    if refreeze:
        gc.freeze()
    stats.longest_full_collection_s = max(stats.longest_full_collection_s,
                                          time.perf_counter() - started)
