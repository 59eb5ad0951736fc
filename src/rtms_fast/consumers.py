"""Ready-made ways to consume a session's audio: async iteration, blocking reads from another
thread, and a per-participant callback router for the whole engine.

Audio lives in one ring per participant (``Session.ring(key)``); the session's
``RingNotifier`` is notified once per batch of writes and once when the session ends. All
readers here copy out of the ring (``read_copy``), so what they hand over stays valid
forever; use ``AudioRing.read``/``consume`` directly for zero-copy views (see ``ring.py``
for how long a view stays valid). This module must never write to rings or sockets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from rtms_fast.engine import Engine
from rtms_fast.events import AudioStreamStarted
from rtms_fast.session import Session

__all__ = ["AudioCallback", "audio_chunks", "read_audio_blocking", "route_audio"]

AudioCallback = Callable[[Session, str, npt.NDArray[Any]], Awaitable[None]]


async def audio_chunks(
    session: Session, participant: str, min_samples: int = 320
) -> AsyncGenerator[npt.NDArray[Any], None]:
    """Copies of a participant's audio, at least ``min_samples`` each (except the last),
    until the session has ended and the ring is drained."""
    ring = session.ring(participant)
    min_samples = max(1, min(min_samples, ring.capacity))
    while True:
        await session.notifier.wait_trio(
            lambda: ring.available >= min_samples or session.finished.is_set()
        )
        if ring.available >= min_samples or (session.finished.is_set() and ring.available):
            yield ring.read_copy()
        elif session.finished.is_set():
            return


def read_audio_blocking(
    session: Session, participant: str, min_samples: int, timeout_s: float | None = None
) -> npt.NDArray[Any]:
    """From a worker thread (never the Trio thread): wait for ``min_samples`` (or the end of
    the session, or the timeout) and return a copy of what is there (maybe empty)."""
    ring = session.ring(participant)
    min_samples = max(1, min(min_samples, ring.capacity))
    session.notifier.wait_blocking(
        lambda: ring.available >= min_samples or session.finished.is_set(), timeout_s
    )
    if ring.available == 0:
        return np.empty(0, ring.dtype)
    return ring.read_copy()


async def route_audio(
    engine: Engine, callback: AudioCallback, min_samples: int = 320
) -> None:
    """Run ``callback(session, participant, chunk)`` for every audio chunk of every
    participant of every session of ``engine``, one task per participant, until cancelled
    or the engine stops. A failing callback stops only its own participant's task."""
    subscription = engine.subscribe()
    async with trio.open_nursery() as nursery:
        async for event in subscription:
            if isinstance(event, AudioStreamStarted):
                session = engine.session(event.rtms_stream_id)
                if session is not None:
                    nursery.start_soon(_pipe, session, event.participant, callback, min_samples)


async def _pipe(session: Session, participant: str, callback: AudioCallback,
                min_samples: int) -> None:
    try:
        async with contextlib.aclosing(audio_chunks(session, participant, min_samples)) as it:
            async for chunk in it:
                await callback(session, participant, chunk)
    except Exception:  # a consumer's bug must not take down the other consumers
        session.counters.drop("consumer_failed")
