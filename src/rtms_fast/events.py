"""Typed events that sessions publish, and the bounded queues that carry them to consumers.

Every event is a small frozen msgspec Struct tagged with its class name (so a JSONL sink
writes ``{"type": "ParticipantJoined", ...}``). Publishing never blocks and never waits on a
consumer: each subscriber has its own bounded queue, and a full queue drops (oldest or
newest, per ``EngineSettings.event_overflow``) and counts the drop. A session with no
subscriber drops nothing: events only queue for subscribers that exist.

This module must never parse wire bytes or touch sockets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Literal

import msgspec
import trio

__all__ = [
    "ActiveSpeakerChanged",
    "AudioStreamStarted",
    "ChatReceived",
    "EngineEvent",
    "EventBroadcaster",
    "EventSubscription",
    "MediaFrameReceived",
    "MediaInterrupted",
    "MediaReconnected",
    "ParticipantJoined",
    "ParticipantLeft",
    "RtmsSessionStateChanged",
    "ServerEvent",
    "SessionRefused",
    "SessionStateChanged",
    "StreamLost",
    "StreamStateChanged",
    "StreamStopped",
    "SubscriptionStatistics",
    "TranscriptReceived",
]


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Common fields: which stream the event belongs to, and when it was made (local ms)."""

    rtms_stream_id: str
    received_at_ms: int


class SessionStateChanged(_Event, frozen=True, kw_only=True, tag=True):
    """The engine-side lifecycle of a session moved (connecting, streaming, ..., stopped)."""

    previous: str
    state: str


class ParticipantJoined(_Event, frozen=True, kw_only=True, tag=True):
    user_id: int
    user_name: str
    timestamp_ms: int | None


class ParticipantLeft(_Event, frozen=True, kw_only=True, tag=True):
    user_id: int
    user_name: str | None
    timestamp_ms: int | None


class ActiveSpeakerChanged(_Event, frozen=True, kw_only=True, tag=True):
    user_id: int
    user_name: str | None
    timestamp_ms: int | None


class ServerEvent(_Event, frozen=True, kw_only=True, tag=True):
    """Any other EVENT_UPDATE (sharing, video on/off, Contact Center events, unknown types)."""

    event_type: int
    fields: dict[str, object]


class TranscriptReceived(_Event, frozen=True, kw_only=True, tag=True):
    user_id: int | None
    user_name: str | None
    text: str
    timestamp_ms: int | None
    start_time_ms: int | None
    end_time_ms: int | None


class ChatReceived(_Event, frozen=True, kw_only=True, tag=True):
    user_id: int | None
    user_name: str | None
    text: str
    timestamp_ms: int | None


class MediaFrameReceived(_Event, frozen=True, kw_only=True, tag=True):
    """A video (``media == "video"``) or screen-share (``"deskshare"``) frame, bytes as sent."""

    media: str
    user_id: int | None
    user_name: str | None
    timestamp_ms: int | None
    data: bytes


class AudioStreamStarted(_Event, frozen=True, kw_only=True, tag=True):
    """A participant's audio ring exists (first audio from them): read it with
    ``session.ring(participant)``. ``participant`` is str(user_id), a Contact Center
    channel id, or ``"mixed"`` for a mixed stream."""

    participant: str
    user_id: int | None
    user_name: str | None
    sample_rate_hz: int
    channels: int
    dtype: str


class StreamStateChanged(_Event, frozen=True, kw_only=True, tag=True):
    """STREAM_STATE_UPDATE from the server (``state``: RTMS StreamState number)."""

    state: int
    reason: int | None


class RtmsSessionStateChanged(_Event, frozen=True, kw_only=True, tag=True):
    """SESSION_STATE_UPDATE from the server (an RTMS session inside the stream)."""

    rtms_session_id: str | None
    state: int
    reason: int | None


class MediaInterrupted(_Event, frozen=True, kw_only=True, tag=True):
    """A socket dropped abnormally; reconnecting until ``deadline_in_s`` from now."""

    socket: Literal["signaling", "media"]
    deadline_in_s: float


class MediaReconnected(_Event, frozen=True, kw_only=True, tag=True):
    """The stream is back after an interruption of ``gap_ms``."""

    gap_ms: float


class StreamStopped(_Event, frozen=True, kw_only=True, tag=True):
    """The session is over. ``outcome`` is one of: ``ended`` (the server ended the stream,
    ``stop_reason`` says why), ``closed`` (we closed it), ``lost`` (reconnect windows ran
    out: StreamLost), ``rejected`` (handshake refused, ``status_code``), ``failed``
    (an unexpected error, ``detail``)."""

    outcome: Literal["ended", "closed", "lost", "rejected", "failed"]
    stop_reason: str | None = None
    status_code: int | None = None
    detail: str | None = None


class StreamLost(StreamStopped, frozen=True, kw_only=True, tag=True):
    """``outcome == "lost"``: ``socket`` did not come back within its reconnect window
    (``window_s``, counted from the first drop of the episode)."""

    socket: Literal["signaling", "media"] = "signaling"
    window_s: float = 0.0


class SessionRefused(_Event, frozen=True, kw_only=True, tag=True):
    """The engine refused a start (admission control)."""

    reason: str


EngineEvent = (
    SessionStateChanged
    | AudioStreamStarted
    | ParticipantJoined
    | ParticipantLeft
    | ActiveSpeakerChanged
    | ServerEvent
    | TranscriptReceived
    | ChatReceived
    | MediaFrameReceived
    | StreamStateChanged
    | RtmsSessionStateChanged
    | MediaInterrupted
    | MediaReconnected
    | StreamStopped
    | StreamLost
    | SessionRefused
)


class SubscriptionStatistics(msgspec.Struct, frozen=True):
    queued: int
    max_queued: int
    delivered: int
    dropped: int
    closed: bool


class EventSubscription:
    """A bounded queue of events for one consumer; iterate with ``async for``.

    When full, ``overflow == "drop_oldest"`` discards the oldest queued event and
    ``"drop_newest"`` discards the incoming one; either way ``dropped`` counts it.
    Iteration ends when the publisher closes (the session or engine finished) and the
    queue is drained, or when the consumer calls ``close()``.
    """

    def __init__(
        self,
        broadcaster: EventBroadcaster,
        max_queued: int,
        overflow: Literal["drop_oldest", "drop_newest"],
    ) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self._broadcaster = broadcaster
        self._queue: deque[EngineEvent] = deque()
        self._max_queued = max_queued
        self._overflow = overflow
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.delivered = 0
        self.dropped = 0

    def _offer(self, event: EngineEvent) -> bool:
        """Queue ``event`` without blocking; False if something was dropped."""
        if self._closed:
            return True
        kept = True
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            kept = False
            if self._overflow == "drop_newest":
                return False
            self._queue.popleft()
        self._queue.append(event)
        self._lot.unpark_all()
        return kept

    def _finish(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def get_nowait(self) -> EngineEvent:
        """The next queued event; ``trio.WouldBlock`` if none, ``trio.EndOfChannel`` at end."""
        if self._queue:
            self.delivered += 1
            return self._queue.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def get(self) -> EngineEvent:
        """Wait for the next event; ``trio.EndOfChannel`` once finished and drained."""
        while True:
            try:
                event = self.get_nowait()
            except trio.WouldBlock:
                await self._lot.park()
                continue
            await trio.lowlevel.checkpoint()
            return event

    def close(self) -> None:
        """Stop receiving; queued events stay readable."""
        self._broadcaster._unsubscribe(self)
        self._finish()

    def __aiter__(self) -> AsyncIterator[EngineEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[EngineEvent]:
        while True:
            try:
                yield await self.get()
            except trio.EndOfChannel:
                return

    def statistics(self) -> SubscriptionStatistics:
        return SubscriptionStatistics(
            queued=len(self._queue),
            max_queued=self._max_queued,
            delivered=self.delivered,
            dropped=self.dropped,
            closed=self._closed,
        )


class EventBroadcaster:
    """Fan-out of events to every current subscriber; ``publish`` never blocks."""

    def __init__(
        self,
        max_queued: int = 1024,
        overflow: Literal["drop_oldest", "drop_newest"] = "drop_oldest",
    ) -> None:
        self._subscribers: list[EventSubscription] = []
        self._max_queued = max_queued
        self._overflow: Literal["drop_oldest", "drop_newest"] = overflow
        self._closed = False
        self.published = 0
        #: Events dropped by full subscriber queues (one per subscriber that dropped).
        self.dropped = 0

    def subscribe(self, max_queued: int | None = None) -> EventSubscription:
        """A new subscription that receives every event published from now on."""
        subscription = EventSubscription(
            self, self._max_queued if max_queued is None else max_queued, self._overflow
        )
        if self._closed:
            subscription._finish()
        else:
            self._subscribers.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: EventSubscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, event: EngineEvent) -> None:
        self.published += 1
        for subscription in self._subscribers:
            if not subscription._offer(event):
                self.dropped += 1

    def close(self) -> None:
        """No more events: every subscription ends once drained."""
        self._closed = True
        for subscription in self._subscribers:
            subscription._finish()
        self._subscribers.clear()

    @property
    def closed(self) -> bool:
        return self._closed
