"""Ready-made ways to consume a session's audio: async iteration, blocking reads from another
thread, a per-participant callback router for the whole engine, and every participant's audio
of every session in one array per interval (``audio_batches``).

Audio lives in one ring per participant (``Session.ring(key)``); the session's
``RingNotifier`` is notified once per batch of writes and once when the session ends. All
readers here copy out of the ring (``read_copy``), so what they hand over stays valid
forever; use ``AudioRing.read``/``consume`` directly for zero-copy views (see ``ring.py``
for how long a view stays valid). This module must never write to rings or sockets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from rtms_fast.engine import Engine
from rtms_fast.events import AudioStreamStarted, EventSubscription, StreamStopped
from rtms_fast.ring import AudioRing
from rtms_fast.ring_group import AudioRingGroup, GroupRead
from rtms_fast.session import Session

__all__ = ["AudioBatch", "AudioCallback", "EngineRings", "audio_batches", "audio_chunks",
           "read_audio_blocking", "route_audio"]

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


class AudioBatch(GroupRead):
    """Every participant's audio of every session that arrived in one interval.

    ``labels[i]`` is ``(rtms_stream_id, participant)`` of ring ``i``, whose samples are
    ``of(i)``; ``counts[i]`` of them (0 for a ring that had nothing new).
    """

    __slots__ = ("labels",)

    def __init__(self, read: GroupRead, labels: tuple[tuple[str, str], ...]) -> None:
        super().__init__(read.samples, read.counts, read.rings)
        self.labels = labels

    def chunks(self) -> Iterator[tuple[str, str, npt.NDArray[Any]]]:
        """``(rtms_stream_id, participant, samples)`` of every ring that gave something."""
        for i in self.nonempty().tolist():
            stream_id, participant = self.labels[i]
            yield stream_id, participant, self.of(i)


class EngineRings:
    """The rings of every participant of every running session of an engine, in one group:
    added as their audio starts, dropped once their session has ended and been drained.

    ``follow(subscription)`` applies the engine's queued events (call it from the Trio
    thread before each ``read``); ``read`` drains every ring in one native call. What
    ``audio_batches`` runs on, for a consumer that keeps its own schedule."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.group: AudioRingGroup | None = None
        self.labels: list[tuple[str, str]] = []
        self._ended: list[AudioRing] = []  # rings of stopped sessions, still to drain once
        self._dropped = 0  # events the subscription dropped, as of the last rescan

    def add(self, stream_id: str, participant: str) -> None:
        session = self.engine.session(stream_id)
        if session is None:
            return
        try:
            ring = session.ring(participant)
        except KeyError:
            return
        if self.group is None:
            self.group = AudioRingGroup(ring.dtype)
        if ring not in self.group:
            self.group.add(ring)
            self.labels.append((stream_id, participant))

    def rescan(self) -> None:
        """Events were dropped (a full subscription queue): find every ring again, and
        retire (after one more read) the rings of sessions that are no longer running."""
        live: set[int] = set()
        for session in self.engine.sessions():
            for key, _, _ in session.participants():
                self.add(session.rtms_stream_id, key)
                live.add(id(session.ring(key)))
        if self.group is not None:
            pending = {id(ring) for ring in self._ended}
            self._ended.extend(ring for ring in self.group.rings
                               if id(ring) not in live and id(ring) not in pending)

    def follow(self, subscription: EventSubscription) -> bool:
        """Apply the queued events; True once the engine has closed and all are applied."""
        while True:
            try:
                event = subscription.get_nowait()
            except trio.WouldBlock:
                break
            except trio.EndOfChannel:
                return True
            if isinstance(event, AudioStreamStarted):
                self.add(event.rtms_stream_id, event.participant)
            elif isinstance(event, StreamStopped) and self.group is not None:
                # the rings it has now: a session started again under the same id has new ones
                self._ended.extend(ring for ring, (stream_id, _) in
                                   zip(self.group.rings, self.labels, strict=True)
                                   if stream_id == event.rtms_stream_id)
        if subscription.dropped != self._dropped:
            self._dropped = subscription.dropped
            self.rescan()
        return False

    def read(self, buffer: npt.NDArray[Any] | None = None) -> AudioBatch:
        """Every ring's new audio (into ``buffer`` if given: ``AudioRingGroup.read``), then
        the rings of stopped sessions leave. Empty before the first audio started."""
        if self.group is None:
            return AudioBatch(GroupRead(np.empty(0, np.int16), np.zeros(0, np.intp), ()), ())
        batch = AudioBatch(self.group.read(buffer), tuple(self.labels))
        if self._ended:  # their last audio is in this batch: stop reading them
            gone = {id(ring) for ring in self._ended}
            self.labels = [label for ring, label in zip(self.group.rings, self.labels, strict=True)
                           if id(ring) not in gone]
            self.group.remove(*{id(ring): ring for ring in self._ended
                                 if ring in self.group}.values())
            self._ended.clear()
        return batch


async def audio_batches(
    engine: Engine, interval_s: float = 0.1, *, reuse_buffer: bool = False,
    max_queued: int | None = None,
) -> AsyncGenerator[AudioBatch, None]:
    """Every participant's new audio of every session of ``engine``, copied out of all their
    rings in one native call every ``interval_s`` (batches with no audio are skipped), until
    the engine closes. For a worker that serves many streams at once (batched ASR): one
    Python step per interval instead of one per participant.

    Rings join as their participant's audio starts (``AudioStreamStarted``) and leave after
    the batch that drained them once their session stopped. Batches are new arrays, valid
    forever, unless ``reuse_buffer``: then every batch shares one buffer (no allocation per
    batch) and is valid only until the next one is requested. ``max_queued`` bounds the
    event subscription this uses (default: the engine's ``event_queue_size``); if it
    overflows (counted in the engine's ``event_queue_full`` drops), the rings are found
    again by listing the running sessions, which misses a session that started and ended
    entirely between two batches: size the queue for the events of one interval.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    subscription = engine.subscribe(max_queued)
    rings = EngineRings(engine)
    rings.rescan()  # sessions already running when we subscribed
    buffer: npt.NDArray[Any] | None = None
    next_tick = trio.current_time()
    try:
        while True:
            next_tick = max(next_tick + interval_s, trio.current_time())
            await trio.sleep_until(next_tick)
            closed = rings.follow(subscription)
            if rings.group is not None:
                if reuse_buffer:
                    need = rings.group.available
                    if buffer is None or buffer.shape[0] < need:
                        buffer = np.empty(max(2 * need, 4096), rings.group.dtype)
                batch = rings.read(buffer if reuse_buffer else None)
                if len(batch):
                    yield batch
            if closed:
                return
    finally:
        subscription.close()
