"""One RTMS session over Trio: join, stream, keep alive, reconnect, close.

A ``Session`` owns one signaling WebSocket (trio-websocket; control plane) and its media
sockets (``pump.MediaSocket``; data plane). Under trio-websocket sits a ``SignalingStream``:
once the signaling handshake is accepted, keep-alive requests are answered there as they are
read (the machine still reads each one), instead of travelling through trio-websocket's
message queue to the session's task; the engine's pump does that reading in its sweeps
(``SignalingStream.read_through``), decrypting over TLS. Lifecycle:

1. signaling: connect, SIGNALING_HAND_SHAKE_REQ (1) -> RESP (2) with the media URLs
   (per-type keys, ``all``, or a bare string are all accepted);
2. media: one socket per media type (``split``) or one for all (``unified``), each with
   DATA_HAND_SHAKE_REQ (3) -> RESP (4); then CLIENT_READY_ACK (7) and EVENT_SUBSCRIPTION (5);
3. streaming: the engine's pump (or a per-socket task) delivers media messages to
   ``on_media_messages`` synchronously; keep-alives (12) are answered right there, on the
   socket they came in on, before anything else; audio goes into one ring per participant
   (decoded by the native batched kernel with the pump, or here in Python otherwise),
   everything else becomes typed events;
4. end: the server ends the stream (STREAM_STATE_UPDATE terminated) or ``close()`` asks for
   a graceful close (STREAM_CLOSE_REQ 21, wait for 22 within ``close_timeout_s``, close 1000
   on every socket); an abnormal drop reconnects within Zoom's windows (media 30 s,
   signaling 60 s), with backoff and jitter, against an ABSOLUTE deadline set at the first
   drop of an episode: repeated drops never extend it. Past it, the outcome is StreamLost.

The protocol rules (handshakes, status codes, states, keep-alive answers on signaling, the
close request and its timeout) are kept by the sans-IO machines of ``rtms_fast.protocol``: one
``ClientSignalingConnection`` per join attempt and one ``ClientMediaConnection`` per media
handshake; this module does the I/O and turns their events into engine events.

The outcome is always one typed ``StreamStopped`` event. A session never raises into the
engine: any unexpected error becomes outcome ``failed``. This module must never parse
WebSocket frames itself (``pump`` and ``signaling_stream`` do), block the Trio thread, or
wait on a consumer.
"""

from __future__ import annotations

import enum
import random
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

import msgspec
import numpy as np
import numpy.typing as npt
import trio
import trio_websocket

from rtms_fast import codecs
from rtms_fast.events import (
    ActiveSpeakerChanged,
    AudioStreamStarted,
    ChatReceived,
    EngineEvent,
    EventBroadcaster,
    MediaFrameReceived,
    MediaInterrupted,
    MediaReconnected,
    ParticipantJoined,
    ParticipantLeft,
    RtmsSessionStateChanged,
    ServerEvent,
    SessionStateChanged,
    StreamLost,
    StreamStateChanged,
    StreamStopped,
    TranscriptReceived,
)
from rtms_fast.ingest import (
    Codec,
    ContentType,
    IngestConfig,
    IngestConnection,
    IngestError,
    IngestRecord,
    RecordKind,
    SampleFormat,
)
from rtms_fast.protocol import (
    AudioParams,
    ClientMediaConnection,
    ClientSignalingConnection,
    ClientSignalingState,
    CloseAcknowledged,
    CloseOutcome,
    CloseTimeout,
    ConnectionEvent,
    DeskshareParams,
    Event,
    EventReceived,
    EventType,
    EventUpdate,
    HandshakeAccepted,
    HandshakeRejected,
    KeepAliveRequest,
    KeepAliveRequested,
    KeepAliveResponse,
    MediaContent,
    MediaDataAudio,
    MediaDataChat,
    MediaDataShare,
    MediaDataTranscript,
    MediaDataVideo,
    MediaHandshakeResponse,
    MediaParams,
    MediaReceived,
    MediaType,
    MissingField,
    ProtocolError,
    ProtocolViolation,
    SignalingHandshakeResponse,
    StateError,
    StreamClosed,
    ToleranceStats,
    TranscriptParams,
    UnknownMessageType,
    VideoParams,
    decode_message,
    encode_message,
)
from rtms_fast.protocol import ChatReceived as ProtoChatReceived
from rtms_fast.protocol import SessionStateChanged as ProtoSessionStateChanged
from rtms_fast.protocol import StreamStateChanged as ProtoStreamStateChanged
from rtms_fast.protocol import TranscriptReceived as ProtoTranscriptReceived
from rtms_fast.protocol.enums import (
    AudioChannel,
    AudioSampleRate,
    DataOption,
    MediaCodec,
    MediaContentType,
    StopReason,
)
from rtms_fast.protocol.messages import ChatContent, TranscriptContent
from rtms_fast.protocol.signature import rtms_signature
from rtms_fast.protocol.webhook import Product, StreamStart
from rtms_fast.pump import (
    MediaPump,
    MediaSocket,
    MediaSocketError,
    open_tcp_socket,
    run_socket_task,
)
from rtms_fast.ring import (
    AudioRing,
    MemoryBudget,
    RingBudgetExceededError,
    RingNotifier,
    RingOverflowPolicy,
)
from rtms_fast.settings import EngineSettings
from rtms_fast.signaling_stream import SignalingStream
from rtms_fast.stats import DropReason, MediaCounters, RingStats, SessionCounters, SessionStats
from rtms_fast.tls import NativeTLSContext
from rtms_fast.tls_stream import TLSSocketStream

if sys.version_info < (3, 11):  # pragma: no cover - trio brings the backport there
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "CLIENT_AGENT",
    "Session",
    "SessionPhase",
    "SessionSpec",
]

CLIENT_AGENT: Final = "rtms-fast-0.1.0"
_MEDIA_BITS: Final = {
    "audio": MediaType.AUDIO,
    "video": MediaType.VIDEO,
    "deskshare": MediaType.DESKSHARE,
    "transcript": MediaType.TRANSCRIPT,
    "chat": MediaType.CHAT,
}
_CODECS: Final = {"l16": MediaCodec.L16, "g711": MediaCodec.G711, "g722": MediaCodec.G722,
                  "opus": MediaCodec.OPUS}
_POLICIES: Final = {
    "drop_oldest": RingOverflowPolicy.DROP_OLDEST,
    "drop_newest": RingOverflowPolicy.DROP_NEWEST,
    "backpressure": RingOverflowPolicy.BACKPRESSURE,
}
_SUBSCRIBED_EVENTS: Final = (2, 3, 4, 5, 6, 7, 8, 9)
_MIXED_KEY: Final = "mixed"
_INGEST_DROPS: Final = {
    "INGEST_SLOTS_FULL": DropReason.TOO_MANY_PARTICIPANTS,
    "INGEST_BUDGET": DropReason.RING_MEMORY_CEILING,
    "INGEST_CODEC": DropReason.UNSUPPORTED_CODEC,
}
_CLEAN_CLOSE_CODES: Final = (1000, 1001)


class SessionPhase(str, enum.Enum):
    """The engine-side lifecycle of one session."""

    PENDING = "pending"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    STOPPED = "stopped"


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What is needed to join one RTMS stream.

    ``signature_id`` is the product's id (meeting/webinar ``meeting_uuid``, Video SDK
    ``session_id``, Contact Center ``engagement_id``); it always travels as ``meeting_uuid``.
    Give ``signature`` or both ``client_id`` and ``client_secret``.
    """

    rtms_stream_id: str
    signature_id: str
    server_urls: str
    product: Product = Product.MEETING
    client_id: str | None = None
    client_secret: str | None = None
    signature: str | None = None

    @classmethod
    def from_start(
        cls, start: StreamStart, client_id: str | None, client_secret: str | None
    ) -> SessionSpec:
        return cls(
            rtms_stream_id=start.rtms_stream_id,
            signature_id=start.signature_id,
            server_urls=start.server_urls,
            product=start.product,
            client_id=client_id,
            client_secret=client_secret,
            signature=start.signature,
        )

    def resolved_signature(self) -> str:
        if self.signature:
            return self.signature
        if not self.client_id or not self.client_secret:
            raise ValueError(
                f"stream {self.rtms_stream_id}: need a signature or client_id and client_secret"
            )
        return rtms_signature(
            self.client_id, self.signature_id, self.rtms_stream_id, self.client_secret
        )


class _Rejected(Exception):
    def __init__(self, status_code: int | None, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class _Ended(Exception):
    """The server ended the stream (``stop_reason`` may be None: closed without a reason)."""

    def __init__(self, stop_reason: int | None, detail: str) -> None:
        super().__init__(detail)
        self.stop_reason = stop_reason


class _Lost(Exception):
    def __init__(self, socket_kind: Literal["signaling", "media"], detail: str) -> None:
        super().__init__(detail)
        self.socket_kind: Literal["signaling", "media"] = socket_kind


class _SignalingDropped(Exception):
    pass


class _Participant:
    __slots__ = ("channels", "key", "ring", "user_id", "user_name")

    def __init__(self, key: str, user_id: int | None, user_name: str | None,
                 ring: AudioRing, channels: int) -> None:
        self.key = key
        self.user_id = user_id
        self.user_name = user_name
        self.ring = ring
        self.channels = channels


class _AudioDecoder:
    """Negotiated audio format -> int16 PCM (and resampled/converted for the rings)."""

    def __init__(self, params: AudioParams, settings: EngineSettings) -> None:
        self.codec = int(params.codec)
        self.rtp = int(params.content_type) == MediaContentType.RTP
        self.rate_hz = AudioSampleRate(int(params.sample_rate)).hz
        self.channels = int(params.channel)
        self.mixed = int(params.data_opt) == DataOption.AUDIO_MIXED_STREAM
        self.output_rate_hz = settings.output_sample_rate or self.rate_hz
        self.float_output = settings.output_dtype == "float32"
        self.supported = self.codec in (MediaCodec.L16, MediaCodec.G711, MediaCodec.G722)
        self._g722: dict[str, codecs.G722Decoder] = {}  # stateful: one per participant

    def pcm(self, payload: bytes, key: str) -> npt.NDArray[np.int16] | None:
        """int16 samples of one message payload of participant ``key``; None if the codec
        is not supported."""
        pt = -1
        if self.rtp:
            payload, pt = _strip_rtp(payload)
        if self.codec == MediaCodec.L16:
            usable = len(payload) - (len(payload) % 2)
            return np.frombuffer(payload, dtype="<i2", count=usable // 2).astype(
                np.int16, copy=False
            )
        if self.codec == MediaCodec.G711:
            return codecs.decode_ulaw(payload) if pt == 0 else codecs.decode_alaw(payload)
        if self.codec == MediaCodec.G722:
            decoder = self._g722.get(key)
            if decoder is None:
                decoder = self._g722[key] = codecs.G722Decoder()
            return decoder.decode(payload)
        return None


def _strip_rtp(packet: bytes) -> tuple[bytes, int]:
    """(payload, payload type) of an RFC 3550 packet; ValueError if it is not one."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        raise ValueError("not an RTP packet")
    csrc_count = packet[0] & 0x0F
    offset = 12 + 4 * csrc_count
    if packet[0] & 0x10:
        if len(packet) < offset + 4:
            raise ValueError("truncated RTP header extension")
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    end = len(packet)
    if packet[0] & 0x20 and end > offset:
        end -= packet[-1]
    if offset > end:
        raise ValueError("RTP header longer than the packet")
    return packet[offset:end], packet[1] & 0x7F


class _MediaSlot:
    """One media socket position (one media type, or all of them in unified mode)."""

    def __init__(self, session: Session, name: str, bits: int, url: str) -> None:
        self.session = session
        self.name = name
        self.bits = bits
        self.url = url
        self.socket: MediaSocket | None = None
        self.closed_event = trio.Event()
        self.last_rx = trio.current_time()
        self.heard_since_reconnect = True
        self.ingest: IngestConnection | None = None
        self.ingest_format: tuple[int, int, int, int] | None = None
        #: The pump's doorbell for this slot's socket (registered on the session notifier).
        self.doorbell: Callable[[], None] | None = None

    # MediaSocketOwner
    def on_media_messages(self, media_socket: MediaSocket, messages: list[bytes]) -> None:
        self.last_rx = trio.current_time()
        self.heard_since_reconnect = True
        self.session._on_media_messages(self, media_socket, messages)

    def on_media_closed(self, media_socket: MediaSocket, code: int, reason: str) -> None:
        self.closed_event.set()

    def on_ingest_record(self, media_socket: MediaSocket, record: IngestRecord) -> None:
        self.last_rx = trio.current_time()
        self.heard_since_reconnect = True
        self.session._on_ingest_record(self, record)

    def on_audio_ingested(self, media_socket: MediaSocket) -> None:
        # Called only when a reader waits (the pump's doorbell); whether the socket was
        # heard at all is read from its activity time when it drops (``heard_on``).
        self.session.notifier.notify()

    def heard_on(self, media_socket: MediaSocket) -> bool:
        """True when anything arrived since the last reconnect (on this or an earlier
        socket of the slot): the pump records reads as activity time."""
        return self.heard_since_reconnect or media_socket.last_activity_s > 0.0


#: Reconnect jitter and first sequence numbers of sessions not given an ``rng`` (one
#: generator for all: a Mersenne Twister state is 2.5 KB, per session that adds up).
_SHARED_RNG = random.Random()


def keepalive_check_period_s(settings: EngineSettings) -> float:
    """How often ``Session.check_keepalive`` runs: a dead socket is found within the
    timeout plus this (every 5 s at most; the default timeout is 65 s)."""
    return min(5.0, settings.keepalive_timeout_s / 4)


class Session:
    """One RTMS stream, joined and ingested until it ends; ``await run()`` in a nursery.

    ``events`` is the session's broadcaster (``events.subscribe()`` for an async iterator);
    ``participants()`` lists the audio streams, ``ring(key)`` gives a participant's ring.
    """

    def __init__(
        self,
        spec: SessionSpec,
        settings: EngineSettings,
        *,
        pump: MediaPump | None = None,
        budget: MemoryBudget | None = None,
        engine_events: EventBroadcaster | None = None,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
        external_watchdog: bool = False,
        native_tls: NativeTLSContext | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self._signature = spec.resolved_signature()
        self._pump = pump
        self._budget = budget
        self._engine_events = engine_events
        self._ssl_context = ssl_context
        self._native_tls = native_tls  # media TLS in the native module (wss)
        self._rng = rng or _SHARED_RNG
        self.events = EventBroadcaster(settings.event_queue_size, settings.event_overflow)
        self.counters = SessionCounters()
        self.tolerance = ToleranceStats()
        self.phase = SessionPhase.PENDING
        self.outcome: StreamStopped | None = None
        self.finished = trio.Event()
        self.notifier = RingNotifier()
        self._participants: dict[str, _Participant] = {}
        self._audio: _AudioDecoder | None = None
        self._resamplers: dict[str, Any] = {}
        self._close_requested = trio.Event()
        self._close_response = trio.Event()
        self._stream_end: _Ended | None = None
        self._stream_end_event = trio.Event()
        self._end_done = trio.Event()
        self._close_done = trio.Event()
        self._signaling: trio_websocket.WebSocketConnection | None = None
        self._signaling_stream: SignalingStream | None = None
        # The signaling protocol rules (handshake, states, close) live in this machine;
        # one per join attempt. Its clock is Trio's, in ms.
        self._sig: ClientSignalingConnection | None = None
        self._slots: list[_MediaSlot] = []
        self._sequence = self._rng.randrange(100_000, 10_000_000)
        self._started_at = time.monotonic()
        self._wall_started_at = time.time()
        self._signaling_last_rx = 0.0
        self._media_deadline: float | None = None
        self._heard_since_reconnect = True
        self._ingests: list[IngestConnection] = []
        # keep-alive starvation: see check_keepalive
        self._external_watchdog = external_watchdog
        self._guarding = False
        self._starved = trio.Event()

    # ---- public --------------------------------------------------------------------------
    @property
    def rtms_stream_id(self) -> str:
        return self.spec.rtms_stream_id

    def participants(self) -> list[tuple[str, int | None, str | None]]:
        """(key, user_id, user_name) of every participant with an audio ring."""
        return [(p.key, p.user_id, p.user_name) for p in self._participants.values()]

    @property
    def participant_count(self) -> int:
        """Participants with an audio ring (cheap: to notice new ones without listing)."""
        return len(self._participants)

    def ring(self, key: str) -> AudioRing:
        """The audio ring of participant ``key`` (str(user_id), a channel id, or "mixed")."""
        return self._participants[key].ring

    @property
    def native_ingest_active(self) -> bool:
        """True when this session's audio is decoded by the native batched kernel."""
        return bool(self._ingests)

    def channels(self, key: str) -> int:
        """Interleaved channels in participant ``key``'s ring (1 mono, 2 stereo)."""
        return self._participants[key].channels

    @property
    def audio_sample_rate_hz(self) -> int | None:
        """Sample rate of the audio in the rings (None before the audio handshake)."""
        return None if self._audio is None else self._audio.output_rate_hz

    def latest_audio_timestamps_ms(self) -> list[int]:
        """Sender ``timestamp`` (ms) of the newest audio message now readable in each
        participant ring fed by the native kernel: ``now - t`` is how old the freshest
        readable audio is (latency measurement; the sender's clock)."""
        out = []
        for ingest in self._ingests:
            for slot in range(ingest.participant_count):
                last = ingest.participant(slot).last_timestamp_ms
                if last is not None:
                    out.append(last)
        return out

    def close(self) -> None:
        """Ask for a graceful close (STREAM_CLOSE_REQ, then WebSocket closes); returns at once."""
        self._close_requested.set()

    async def run(self) -> StreamStopped:
        """Join and ingest until the stream ends, is closed, is lost or fails.

        Always ends with exactly one ``StreamStopped`` event, closed event streams and
        ``finished`` set, even when cancelled (outcome ``closed``, then re-raised).
        """
        try:
            try:
                outcome = await self._run()
            except Exception as exc:  # contained: a session never takes the engine down
                outcome = self._stopped("failed", detail=f"{type(exc).__name__}: {exc}")
            finally:
                with trio.CancelScope(shield=True):
                    await self._teardown()
            if self.outcome is None:
                self.outcome = outcome
        finally:
            if self.outcome is None:
                self.outcome = self._stopped("closed", detail="cancelled")
            self._set_phase(SessionPhase.STOPPED)
            self._publish(self.outcome)
            self.events.close()
            self.notifier.notify()
            self.finished.set()
        return self.outcome

    def stats(self) -> SessionStats:
        c = self.counters
        rings = []
        ring_lost = 0
        for p in self._participants.values():
            s = p.ring.stats()
            # nothing retries a refused write, so refused samples are lost too
            lost = s.dropped + s.refused
            ring_lost += lost
            rings.append(RingStats(participant=p.key, capacity_samples=s.capacity,
                                   fill_samples=s.fill, written_samples=s.written,
                                   dropped_samples=lost))
        tolerated = {k: v for k, v in self.tolerance.as_dict().items() if v}
        tolerated.update({k: v for k, v in c.tolerated.items() if v})
        media = c.media_snapshot()
        drops = dict(c.drops)
        if self._ingests:
            # Refused slots and undecodable audio arrive as ERROR records (counted per
            # message in ``drops``); only ring refusals are counted here.
            audio_messages = audio_bytes = 0
            for ingest in self._ingests:
                st = ingest.stats()
                audio_messages += st.audio_messages
                audio_bytes += st.bytes_consumed
            old = media.get("audio", MediaCounters())
            media["audio"] = MediaCounters(messages=old.messages + audio_messages,
                                           bytes=old.bytes + audio_bytes)
        if ring_lost:
            drops[DropReason.RING_OVERFLOW] = ring_lost  # in samples, from the rings
        outcome = self.outcome
        return SessionStats(
            rtms_stream_id=self.rtms_stream_id,
            state=self.phase.value,
            stop_reason=None if outcome is None else (outcome.stop_reason or outcome.outcome),
            media=dict(sorted(media.items())),
            drops=drops,
            tolerated=tolerated,
            reconnects=c.reconnects,
            gaps_ms=c.gaps_ms,
            keepalives_answered=c.keepalives_answered,
            keepalive_lag_ms=c.keepalive_lag_ms,
            participants=len(self._participants),
            rings=rings,
            started_at_s=self._wall_started_at,
            uptime_s=time.monotonic() - self._started_at,
            keepalive_max_lag_ms=c.keepalive_max_lag_ms,
        )

    # ---- helpers -------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    @staticmethod
    def _clock_ms() -> int:
        """The protocol machines' clock: Trio's, so timeouts follow the Trio clock."""
        return int(trio.current_time() * 1000)

    def _publish(self, event: EngineEvent) -> None:
        self.events.publish(event)
        if self._engine_events is not None:
            self._engine_events.publish(event)

    def _set_phase(self, phase: SessionPhase) -> None:
        if phase is self.phase:
            return
        previous, self.phase = self.phase, phase
        self._publish(SessionStateChanged(rtms_stream_id=self.rtms_stream_id,
                                          received_at_ms=self._now_ms(),
                                          previous=previous.value, state=phase.value))

    def _stopped(self, outcome: Literal["ended", "closed", "lost", "rejected", "failed"],
                 **kw: Any) -> StreamStopped:
        return StreamStopped(rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
                             outcome=outcome, **kw)

    def _lost(self, socket_kind: Literal["signaling", "media"], detail: str) -> StreamLost:
        reason = (StopReason.DATA_CONNECTION_INTERRUPTED if socket_kind == "media"
                  else StopReason.SIGNAL_CONNECTION_INTERRUPTED)
        window = (self.settings.media_reconnect_window_s if socket_kind == "media"
                  else self.settings.signaling_reconnect_window_s)
        return StreamLost(rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
                          outcome="lost", stop_reason=reason.name, detail=detail,
                          socket=socket_kind, window_s=window)

    def _next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def _backoff_s(self, attempt: int) -> float:
        s = self.settings
        delay = min(s.reconnect_backoff_max_s, s.reconnect_backoff_base_s * (2 ** attempt))
        spread = delay * s.reconnect_backoff_jitter
        return float(max(0.0, delay + self._rng.uniform(-spread, spread)))

    # ---- main loop -----------------------------------------------------------------------
    async def _run(self) -> StreamStopped:
        window = self.settings.signaling_reconnect_window_s
        deadline: float | None = None  # absolute (Trio clock) end of the current episode
        attempt = 0
        while True:
            try:
                await self._connect_and_stream(reconnecting=deadline is not None)
                return self._stopped("closed", detail="closed by the client")
            except BaseException as raised:
                exc = _classify(raised)
                if exc is None:
                    raise
            if isinstance(exc, _Rejected):
                return self._stopped("rejected", status_code=exc.status_code, detail=exc.detail)
            if isinstance(exc, _Ended):
                name = None
                if exc.stop_reason is not None:
                    reason = StopReason.coerce(exc.stop_reason)
                    name = reason.name if isinstance(reason, StopReason) else str(reason)
                return self._stopped("ended", stop_reason=name, detail=str(exc))
            if isinstance(exc, _Lost):
                return self._lost("media", str(exc))
            if isinstance(exc, _ClosedByClient) or self._close_requested.is_set():
                return self._stopped("closed", detail="closed by the client")
            # An abnormal drop of signaling (or a failed join): rejoin from scratch within
            # the signaling window, counted from the FIRST drop of this episode.
            now = trio.current_time()
            # A new episode (and deadline) only once the previous reconnect proved itself
            # by receiving something; a zombie reconnect does not reset the clock.
            if deadline is None or (now > deadline and self._heard_since_reconnect):
                deadline = now + window
                attempt = 0
                self._publish(MediaInterrupted(
                    rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
                    socket="signaling", deadline_in_s=window))
            self._heard_since_reconnect = False
            self._set_phase(SessionPhase.RECONNECTING)
            await self._teardown()
            delay = min(self._backoff_s(attempt), max(0.0, deadline - trio.current_time()))
            attempt += 1
            with trio.move_on_after(delay):
                await self._close_requested.wait()
            if self._close_requested.is_set():
                return self._stopped("closed", detail="closed while reconnecting")
            if window <= 0 or trio.current_time() >= deadline:
                return self._lost(
                    "signaling", f"signaling not back within {window} s of the first drop: {exc}")
            self.counters.reconnects += 1

    async def _connect_and_stream(self, reconnecting: bool) -> None:
        s = self.settings
        self._set_phase(SessionPhase.CONNECTING)
        interrupted_at = trio.current_time() if reconnecting else None
        self._stream_end = None
        self._stream_end_event = trio.Event()
        self._end_done = trio.Event()
        url = urlsplit(self.spec.server_urls)
        if url.scheme not in ("ws", "wss") or not url.hostname:
            raise _Rejected(None, f"server_urls must be a ws:// or wss:// URL, "
                                  f"got {self.spec.server_urls!r}")
        tls = url.scheme == "wss"
        port = url.port or (443 if tls else 80)
        resource = (url.path or "/") + (f"?{url.query}" if url.query else "")
        async with trio.open_nursery() as ws_nursery:
            stream: trio.abc.Stream | None = None
            try:
                with trio.fail_after(s.handshake_timeout_s):
                    # a stdlib socket (and TLS state) of our own: the pump reads it later
                    raw = await open_tcp_socket(url.hostname, port, s.proxy)
                    if tls:
                        context = self._ssl_for(self.spec.server_urls)
                        assert context is not None
                        tls_stream = TLSSocketStream(raw, context, url.hostname)
                        stream = tls_stream
                        await tls_stream.do_handshake()
                    else:
                        stream = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
                    signaling_stream = SignalingStream(stream, self._on_tapped_message,
                                                       raw_socket=raw, take_messages=True)
                    self._signaling_stream = signaling_stream
                    ws = await trio_websocket.wrap_client_stream(
                        ws_nursery,
                        # any trio Stream works; the annotation names only the usual two
                        cast("trio.SocketStream", signaling_stream),
                        url.hostname if port == (443 if tls else 80)
                        else f"{url.hostname}:{port}", resource,
                        message_queue_size=64, max_message_size=s.max_message_bytes)
                self._signaling = ws
                graceful = False
                try:
                    await self._handshake_and_stream(ws, interrupted_at)
                    graceful = True
                except BaseException as exc:
                    # Cancelled (engine shutdown deadline): no close handshake, just close.
                    graceful = not any(isinstance(e, trio.Cancelled) for e in _leaves(exc))
                    raise
                finally:
                    self._signaling = None
                    if graceful:
                        with trio.CancelScope(shield=True), \
                                trio.move_on_after(s.close_timeout_s):
                            await ws.aclose(code=1000)
            finally:
                if self._signaling_stream is not None:  # the pump lets go before the close
                    self._signaling_stream.stop_reading_through()
                # trio-websocket leaves the stream open after a server-initiated close.
                if stream is not None:
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(stream)
                ws_nursery.cancel_scope.cancel()

    async def _handshake_and_stream(
        self, ws: trio_websocket.WebSocketConnection, interrupted_at: float | None
    ) -> None:
        s = self.settings
        with trio.fail_after(s.handshake_timeout_s):
            response = await self._signaling_handshake(ws)
        self._slots = self._plan_slots(self._media_urls(response))
        async with trio.open_nursery() as nursery:
            with trio.fail_after(s.handshake_timeout_s):
                async with trio.open_nursery() as handshakes:
                    for slot in self._slots:
                        handshakes.start_soon(self._open_media, slot)
            sig = self._sig
            assert sig is not None
            await ws.send_message(sig.ready_ack().decode())
            await ws.send_message(sig.subscribe(_SUBSCRIBED_EVENTS).decode())
            if interrupted_at is not None:
                gap_s = trio.current_time() - interrupted_at
                self._account_gap(gap_s)
                self._publish(MediaReconnected(rtms_stream_id=self.rtms_stream_id,
                                               received_at_ms=self._now_ms(),
                                               gap_ms=gap_s * 1000))
            self._set_phase(SessionPhase.STREAMING)
            for slot in self._slots:
                self._attach(nursery, slot)
                nursery.start_soon(self._supervise_media, nursery, slot)
            nursery.start_soon(self._keepalive_guard)
            nursery.start_soon(self._close_watcher, ws)
            nursery.start_soon(self._end_watcher, ws)
            await self._signaling_loop(ws)
            nursery.cancel_scope.cancel()

    def _ssl_for(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("wss://"):
            return None
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.settings.ca_file)
        return self._ssl_context

    async def _signaling_handshake(
        self, ws: trio_websocket.WebSocketConnection
    ) -> SignalingHandshakeResponse:
        s = self.settings
        sig = ClientSignalingConnection(
            self.spec.signature_id, self.rtms_stream_id, self._signature,
            handshake_timeout_ms=int(s.handshake_timeout_s * 1000),
            close_timeout_ms=int(s.close_timeout_s * 1000),
            client_agent=CLIENT_AGENT, tolerance=self.tolerance)
        self._sig = sig
        await ws.send_message(sig.handshake(self._clock_ms(), self._next_sequence()).decode())
        while True:
            raw = await ws.get_message()
            self._signaling_last_rx = trio.current_time()
            events = self._sig_receive(sig, raw)
            # counted now: the stream takes nothing before the handshake is accepted, and the
            # count must be complete when it starts to (below)
            self._signaling_processed()
            for event in events:
                if isinstance(event, KeepAliveRequested):
                    await self._answer_keepalive_ws(ws, sig, event)
                elif isinstance(event, HandshakeAccepted):
                    assert sig.response is not None
                    # from now on keep-alives are answered where they are read: in the
                    # pump's sweeps where it can read the socket
                    if self._signaling_stream is not None:
                        self._signaling_stream.tap.enabled = True
                        if self._pump is not None:
                            self._signaling_stream.read_through(self._pump)
                    return sig.response
                elif isinstance(event, HandshakeRejected):
                    if any(isinstance(e, ProtocolViolation) for e in events):
                        raise _Rejected(None, "signaling handshake response has no media_server")
                    raise _Rejected(event.status_code,
                                    f"signaling handshake refused: status {event.status_code} "
                                    f"{event.reason}".strip())
                elif isinstance(event, StreamClosed):
                    raise _Ended(int(event.reason), "the server ended the stream")
                elif not isinstance(event, ProtocolViolation):
                    # anything but the answer while joining is not used
                    self.counters.drop(DropReason.UNEXPECTED_MESSAGE)

    def _media_urls(self, response: SignalingHandshakeResponse) -> dict[str, str]:
        server = response.media_server
        assert server is not None  # the machine rejects an answer without one
        urls = server.server_urls
        if isinstance(urls, str):  # tolerated shape (section 19)
            return {"all": urls}
        found = {key: getattr(urls, key) for key in (*_MEDIA_BITS, "all")}
        return {k: v for k, v in found.items() if isinstance(v, str) and v}

    def _plan_slots(self, urls: dict[str, str]) -> list[_MediaSlot]:
        wanted = self.settings.media_types
        if not urls:
            raise _Rejected(None, "the server offered no media URL")
        if self.settings.media_mode == "unified":
            url = urls.get("all") or next(iter(urls.values()))
            bits = 0
            for name in wanted:
                bits |= int(_MEDIA_BITS[name])
            return [_MediaSlot(self, "all", bits, url)]
        slots = []
        for name in wanted:
            slot_url = urls.get(name) or urls.get("all")
            if slot_url is None:
                self.counters.tolerated[f"no_url_for_{name}"] += 1
                continue
            slots.append(_MediaSlot(self, name, int(_MEDIA_BITS[name]), slot_url))
        if not slots:
            raise _Rejected(None, f"the server offered no URL for {', '.join(wanted)}")
        return slots

    def _media_params(self, bits: int) -> MediaParams | None:
        s = self.settings
        audio = video = deskshare = transcript = None
        if bits & MediaType.AUDIO:
            audio = AudioParams(
                content_type=MediaContentType.RTP if s.audio_content_type == "rtp"
                else MediaContentType.RAW_AUDIO,
                codec=_CODECS[s.audio_codec_preferences[0]],
                sample_rate=AudioSampleRate.from_hz(s.audio_sample_rate_hz),
                channel=AudioChannel(s.audio_channels),
                data_opt=DataOption.AUDIO_MULTI_STREAMS if s.audio_data_opt == "multi"
                else DataOption.AUDIO_MIXED_STREAM,
                send_rate=s.audio_send_rate_ms,
            )
        if bits & MediaType.VIDEO:
            video = VideoParams(codec=MediaCodec.JPG, fps=5)
        if bits & MediaType.DESKSHARE:
            deskshare = DeskshareParams(codec=MediaCodec.JPG, fps=1)
        if bits & MediaType.TRANSCRIPT:
            transcript = TranscriptParams(src_language=s.transcript_language,
                                          enable_lid=s.transcript_language == -1)
        if audio is None and video is None and deskshare is None and transcript is None:
            return None
        return MediaParams(audio=audio, video=video, deskshare=deskshare, transcript=transcript)

    async def _open_media(self, slot: _MediaSlot) -> None:
        s = self.settings
        sock = await MediaSocket.connect(
            slot.url, ssl_context=self._ssl_for(slot.url), timeout_s=s.handshake_timeout_s,
            max_message_bytes=s.max_message_bytes, proxy=s.proxy, native_tls=self._native_tls)
        try:
            # The handshake rules live in the machine; the data phase after it is the pump's.
            machine = ClientMediaConnection(
                self.spec.signature_id, self.rtms_stream_id, self._signature,
                MediaType(slot.bits), self._media_params(slot.bits),
                handshake_timeout_ms=int(s.handshake_timeout_s * 1000), tolerance=self.tolerance)
            sock.send_message(machine.handshake(self._clock_ms(), self._next_sequence()))
            early: list[bytes] = []
            accepted = False
            while not accepted:
                raw = await sock.receive_message()
                keep = False
                for event in machine.receive(raw, self._clock_ms()):
                    if isinstance(event, HandshakeAccepted):
                        accepted = True
                    elif isinstance(event, HandshakeRejected):
                        raise _Rejected(event.status_code,
                                        f"{slot.name} media handshake refused: status "
                                        f"{event.status_code} {event.reason}".strip())
                    elif isinstance(event, KeepAliveRequested):
                        sock.send_message(
                            machine.keep_alive_response(event.sequence, event.timestamp))
                        self._note_keepalive(event.timestamp)
                    elif isinstance(event, ProtocolViolation):
                        self.counters.drop(_drop_reason(event.error))
                    elif isinstance(event, StreamClosed):
                        raise _Ended(int(event.reason), "the server ended the stream")
                    else:
                        keep = True
                if keep:
                    # data before the handshake answer: keep it, in order (section 19); media
                    # is counted by the machine (and accepts implicitly), the rest here
                    if not accepted:
                        self.tolerance.media_before_handshake += 1
                    early.append(raw)
            self._negotiated(slot, machine.media_params)
            sock.start_data_phase(slot.ingest if self._pump is not None else None)
            sock._early[:0] = early
        except BaseException:
            sock.abort()
            raise
        slot.socket = sock
        slot.closed_event = trio.Event()
        slot.last_rx = trio.current_time()

    def _negotiated(self, slot: _MediaSlot, params: MediaParams | None) -> None:
        if not slot.bits & MediaType.AUDIO:
            return
        audio = params.audio if params is not None and params.audio is not None else None
        if audio is None:  # no answer: assume what we asked for
            requested = self._media_params(slot.bits)
            assert requested is not None and requested.audio is not None
            audio = requested.audio
        decoder = _AudioDecoder(audio, self.settings)
        self._setup_ingest(slot, audio, decoder)
        if self._audio is not None and (
            (self._audio.codec, self._audio.rate_hz, self._audio.channels)
            != (decoder.codec, decoder.rate_hz, decoder.channels)
        ):
            self._resamplers.clear()
        self._audio = decoder

    def _setup_ingest(self, slot: _MediaSlot, audio: AudioParams,
                      decoder: _AudioDecoder) -> None:
        """Native ingest state for an audio socket (kept across reconnects of the slot)."""
        s = self.settings
        if self._pump is None or not s.native_ingest:
            return
        codec = {MediaCodec.L16: Codec.L16, MediaCodec.G711: Codec.PCMA,
                 MediaCodec.G722: Codec.G722}.get(MediaCodec(decoder.codec)) \
            if decoder.codec in MediaCodec._value2member_map_ else None
        fmt = (decoder.codec, decoder.rate_hz, decoder.channels, int(decoder.rtp))
        if slot.ingest is not None and slot.ingest_format == fmt:
            slot.ingest.reset()
            return
        slot.ingest = None
        if codec is None:
            return
        try:
            config = IngestConfig(
                codec=codec,
                content_type=ContentType.RTP if decoder.rtp else ContentType.RAW,
                input_rate_hz=decoder.rate_hz, channels=decoder.channels,
                output_rate_hz=s.output_sample_rate or None,
                sample_format=SampleFormat.FLOAT32 if decoder.float_output
                else SampleFormat.INT16,
                ring_capacity_ms=s.ring_capacity_ms, ring_policy=_POLICIES[s.overflow_policy],
                max_participants=s.max_participants_per_session,
                max_message_bytes=s.max_message_bytes, mixed=decoder.mixed,
                fill_gaps=s.continuous_timeline)
            slot.ingest = IngestConnection(config, self._budget)
        except (IngestError, ValueError):
            self.counters.tolerated["native_ingest_unavailable"] += 1
            return
        slot.ingest_format = fmt
        self._ingests.append(slot.ingest)

    def _on_ingest_record(self, slot: _MediaSlot, record: IngestRecord) -> None:
        if record.kind is RecordKind.NEW_PARTICIPANT:
            ingest = slot.ingest
            if ingest is None:
                return
            if record.user_id is not None:
                key, user_id = str(record.user_id), record.user_id
            elif record.channel_id:
                key, user_id = record.channel_id, None
            else:
                key, user_id = _MIXED_KEY, None
            ring = ingest.ring(record.slot)
            ring.notifier = self.notifier
            known = key in self._participants
            channels = ingest.config.channels
            self._participants[key] = _Participant(key, user_id, record.user_name, ring,
                                                   channels)
            if not known:
                self._publish(AudioStreamStarted(
                    rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
                    participant=key, user_id=user_id, user_name=record.user_name,
                    sample_rate_hz=ingest.config.out_rate_hz, channels=channels,
                    dtype=str(ingest.config.dtype)))
        elif record.kind is RecordKind.ERROR:
            self.counters.drop(_INGEST_DROPS.get(record.error.name,
                                                 f"audio_{record.error.name.lower()}"))

    def _attach(self, nursery: trio.Nursery, slot: _MediaSlot) -> None:
        sock = slot.socket
        assert sock is not None
        if self._pump is not None:
            self._pump.register(sock, slot)
            slot.doorbell = self._pump.audio_doorbell(sock)
            self.notifier.add_doorbell(slot.doorbell)
        else:
            nursery.start_soon(run_socket_task, sock, slot)

    async def _supervise_media(self, nursery: trio.Nursery, slot: _MediaSlot) -> None:
        """Wait for the slot's socket to close; reconnect it after an abnormal drop."""
        window = self.settings.media_reconnect_window_s
        while True:
            await slot.closed_event.wait()
            sock = slot.socket
            assert sock is not None
            if self._pump is not None:
                self._pump.unregister(sock)
            if slot.doorbell is not None:
                self.notifier.remove_doorbell(slot.doorbell)
                slot.doorbell = None
            code = sock.close_code or 1006
            heard = slot.heard_on(sock)
            sock.abort()
            if self._close_requested.is_set() or self._stream_end_event.is_set():
                return
            if code in _CLEAN_CLOSE_CODES:
                # The server closed this media socket on purpose: give signaling a moment to
                # say why (stream terminated); if it says nothing, the stream is over.
                with trio.move_on_after(self.settings.close_timeout_s):
                    await self._stream_end_event.wait()
                self._end_stream(_Ended(None, f"{slot.name} media socket closed by the "
                                              f"server ({code})"))
                return
            now = trio.current_time()
            if self._media_deadline is None or (
                now > self._media_deadline and heard
            ):
                self._media_deadline = now + window
            slot.heard_since_reconnect = False
            deadline = self._media_deadline
            interrupted_at = now
            self._set_phase(SessionPhase.RECONNECTING)
            self._publish(MediaInterrupted(rtms_stream_id=self.rtms_stream_id,
                                           received_at_ms=self._now_ms(), socket="media",
                                           deadline_in_s=max(0.0, deadline - now)))
            attempt = 0
            while True:
                if window <= 0 or trio.current_time() >= deadline:
                    raise _Lost("media", f"{slot.name} media not back within {window} s "
                                         f"of the first drop")
                delay = min(self._backoff_s(attempt),
                            max(0.0, deadline - trio.current_time()))
                await trio.sleep(delay)
                attempt += 1
                try:
                    with trio.move_on_at(deadline) as scope:
                        await self._open_media(slot)
                    if scope.cancelled_caught:
                        continue
                except (MediaSocketError, OSError, _Rejected):
                    # e.g. status 31 while the server still holds the dropped socket
                    self.counters.tolerated["media_reconnect_failure"] += 1
                    continue
                break
            self.counters.reconnects += 1
            gap_s = trio.current_time() - interrupted_at
            self._account_gap(gap_s)
            self._publish(MediaReconnected(rtms_stream_id=self.rtms_stream_id,
                                           received_at_ms=self._now_ms(), gap_ms=gap_s * 1000))
            if all(sl.socket is not None and not sl.socket.closed for sl in self._slots):
                self._set_phase(SessionPhase.STREAMING)
            self._attach(nursery, slot)

    def _account_gap(self, gap_s: float) -> None:
        self.counters.gaps_ms += gap_s * 1000.0
        # The native kernel fills gaps itself from the senders' timestamps (exact when the
        # server's clock runs on across the interruption); only the Python path fills here.
        if self.settings.continuous_timeline and self._audio is not None and not self._ingests:
            n = round(gap_s * self._audio.output_rate_hz) * self._audio.channels
            for participant in self._participants.values():
                participant.ring.write_silence(n)
            self.notifier.notify()

    def check_keepalive(self, now: float) -> None:
        """Starvation check (Trio time ``now``), synchronous and cheap: a media socket
        silent for ``keepalive_timeout_s`` is aborted (then reconnected); silent signaling
        ends the stream attempt (``_keepalive_guard`` raises). The engine calls this for
        every session from ONE task, so idle sessions cost no timer of their own."""
        if not self._guarding or self._starved.is_set():
            return
        timeout = self.settings.keepalive_timeout_s
        if now - self._signaling_last_rx > timeout:
            self.counters.tolerated["signaling_keepalive_timeout"] += 1
            self._starved.set()
            return
        for slot in self._slots:
            sock = slot.socket
            last_rx = max(slot.last_rx, sock.last_activity_s) if sock is not None else 0.0
            if sock is not None and not sock.closed and now - last_rx > timeout:
                self.counters.tolerated["media_keepalive_timeout"] += 1
                sock.abort()
                slot.closed_event.set()

    async def _keepalive_guard(self) -> None:
        """Ends the stream attempt when signaling starves. Checks on its own timer unless
        the engine's watchdog calls ``check_keepalive`` (``external_watchdog``)."""
        self._starved = trio.Event()
        self._guarding = True
        try:
            if self._external_watchdog:
                await self._starved.wait()
            else:
                period = keepalive_check_period_s(self.settings)
                while not self._starved.is_set():
                    await trio.sleep(period)
                    self.check_keepalive(trio.current_time())
        finally:
            self._guarding = False
        raise _SignalingDropped(
            f"nothing received on signaling for {self.settings.keepalive_timeout_s} s")

    async def _signaling_loop(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Read signaling until it closes; raise what that close means."""
        sig = self._sig
        assert sig is not None
        self._signaling_last_rx = trio.current_time()
        while True:
            try:
                raw = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                code = exc.reason.code if exc.reason is not None else 1006
                reason = (exc.reason.reason or "") if exc.reason is not None else ""
                # The machine classifies the close (its state says whether the stream was over)
                closed = sig.connection_closed(code, reason)
                outcome = closed[0].outcome if closed else CloseOutcome.COMPLETED
                if self._close_requested.is_set():
                    with trio.move_on_after(2 * self.settings.close_timeout_s):
                        await self._close_done.wait()
                    raise _ClosedByClient() from None
                if self._stream_end is not None:
                    with trio.move_on_after(2 * self.settings.close_timeout_s):
                        await self._end_done.wait()
                    raise self._stream_end from None
                if outcome in _ENDED_OUTCOMES:
                    raise _Ended(None, f"signaling closed by the server ({code})") from None
                raise _SignalingDropped(f"signaling dropped ({code})") from None
            self._signaling_last_rx = trio.current_time()
            self._heard_since_reconnect = True
            for event in self._sig_receive(sig, raw):
                await self._on_signaling_event(ws, sig, event)
            self._signaling_processed()

    def _signaling_processed(self) -> None:
        """One more message from trio-websocket handled: messages the signaling stream
        takes itself may go straight to ``_on_tapped_message`` again once all are."""
        if self._signaling_stream is not None:
            self._signaling_stream.messages_processed += 1

    async def _on_signaling_event(self, ws: trio_websocket.WebSocketConnection,
                                  sig: ClientSignalingConnection,
                                  event: ConnectionEvent) -> None:
        if isinstance(event, KeepAliveRequested):
            await self._answer_keepalive_ws(ws, sig, event)
        else:
            self._on_signaling_event_now(event)

    def _on_signaling_event_now(self, event: ConnectionEvent) -> None:
        """Every signaling event but a keep-alive request (answered where it was read)."""
        if isinstance(event, EventReceived):
            self._on_event(event.event)
        elif isinstance(event, ProtoStreamStateChanged):
            self._publish(StreamStateChanged(
                rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
                state=int(event.state),
                reason=int(event.reason) if event.reason_given else None))
        elif isinstance(event, StreamClosed):
            self._end_stream(_Ended(int(event.reason), "the server ended the stream"))
        elif isinstance(event, ProtoSessionStateChanged):
            self._publish(RtmsSessionStateChanged(
                rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
                rtms_session_id=event.rtms_session_id, state=int(event.state),
                reason=None if event.reason is None else int(event.reason)))
        elif isinstance(event, CloseAcknowledged):
            self._close_response.set()
        elif isinstance(event, MediaReceived):
            if event.media_type is MediaType.AUDIO:
                self.counters.count_media("audio", len(event.content.data))
                if self._on_audio(event.content):
                    self.notifier.notify()
            else:
                self._on_frame("video" if event.media_type is MediaType.VIDEO
                               else "deskshare", event.content)
        elif isinstance(event, ProtoTranscriptReceived):
            self._on_transcript(event.content)
        elif isinstance(event, ProtoChatReceived):
            self._on_chat(event.content)
        elif not isinstance(event, ProtocolViolation):  # violations are counted on receipt
            self.counters.drop(DropReason.UNEXPECTED_MESSAGE)

    def _sig_receive(self, sig: ClientSignalingConnection,
                     raw: bytes | str) -> list[ConnectionEvent]:
        """Feed one signaling message to the machine; count what it dropped."""
        events = sig.receive(raw, self._clock_ms())
        if not events:  # after the stream ended: nothing more is taken from the server
            self.counters.drop(DropReason.UNEXPECTED_MESSAGE)
        for event in events:
            if isinstance(event, ProtocolViolation):
                error = event.error
                if isinstance(error, MissingField) and error.field == "media_server":
                    continue  # a refused join, reported as such
                self.counters.drop(_drop_reason(error))
        return events

    def _end_stream(self, end: _Ended) -> None:
        if self._stream_end is None:
            self._stream_end = end
            self._stream_end_event.set()

    async def _end_watcher(self, ws: trio_websocket.WebSocketConnection) -> None:
        """When the stream ends (server said so), close every socket with 1000."""
        await self._stream_end_event.wait()
        self._set_phase(SessionPhase.CLOSING)
        try:
            await self._close_sockets(ws)
        finally:
            self._end_done.set()

    async def _close_watcher(self, ws: trio_websocket.WebSocketConnection) -> None:
        """On ``close()``: STREAM_CLOSE_REQ, wait for the answer (bounded), close 1000."""
        await self._close_requested.wait()
        self._set_phase(SessionPhase.CLOSING)
        sig = self._sig
        try:
            if sig is not None and sig.state in _CLOSABLE:
                await ws.send_message(sig.close_request(self._clock_ms()).decode())
                await self._await_close_response(sig)
        except trio_websocket.ConnectionClosed:
            pass
        try:
            await self._close_sockets(ws)
        finally:
            self._close_done.set()

    async def _await_close_response(self, sig: ClientSignalingConnection) -> None:
        """Until STREAM_CLOSE_RESP or the machine's close timeout, whichever comes first."""
        while not self._close_response.is_set():
            deadline_ms = sig.next_deadline_ms()
            if deadline_ms is None:  # the machine left CLOSING (answered, ended, closed)
                return
            with trio.move_on_at(deadline_ms / 1000):
                await self._close_response.wait()
            if self._close_response.is_set():
                return
            if any(isinstance(e, CloseTimeout)
                   for e in sig.poll(max(self._clock_ms(), deadline_ms))):
                return

    async def _close_sockets(self, ws: trio_websocket.WebSocketConnection) -> None:
        """Close 1000 on every socket, each bounded by close_timeout_s."""
        timeout = self.settings.close_timeout_s
        async with trio.open_nursery() as nursery:
            for slot in self._slots:
                sock = slot.socket
                if sock is not None and not sock.closed:
                    nursery.start_soon(self._close_media, slot, sock, timeout)
            with trio.move_on_after(timeout):
                await ws.aclose(code=1000)

    async def _close_media(self, slot: _MediaSlot, sock: MediaSocket, timeout_s: float) -> None:
        """Send close 1000 and keep the socket with its reader (the pump, or its task) until
        the server's close frame: media the server sent before it is still ingested (a
        server behind its schedule may have a lot in flight). Bounded by ``timeout_s``."""
        sock.start_close(1000)  # written at once; the pump flushes what the kernel refuses
        with trio.move_on_after(timeout_s):
            await slot.closed_event.wait()
        if self._pump is not None:
            self._pump.unregister(sock)
        sock.abort()

    async def _teardown(self) -> None:
        for slot in self._slots:
            sock = slot.socket
            if sock is not None:
                if self._pump is not None:
                    self._pump.unregister(sock)
                sock.abort()
        ws = self._signaling
        if ws is not None and not ws.closed:
            with trio.move_on_after(self.settings.close_timeout_s):
                await ws.aclose(code=1000)

    # ---- messages ------------------------------------------------------------------------
    def _decode(self, raw: bytes | str) -> Any:
        try:
            return decode_message(raw, self.tolerance)
        except UnknownMessageType:
            self.counters.drop(DropReason.UNKNOWN_MESSAGE_TYPE)
        except ProtocolError:
            self.counters.drop(DropReason.MALFORMED_MESSAGE)
        return None

    async def _answer_keepalive_ws(self, ws: trio_websocket.WebSocketConnection,
                                   sig: ClientSignalingConnection,
                                   request: KeepAliveRequested) -> None:
        await ws.send_message(
            sig.keep_alive_response(request.sequence, request.timestamp).decode())
        self._note_keepalive(request.timestamp)

    def _on_tapped_message(self, payload: bytes) -> bytes | None:
        """A message ``SignalingStream`` took off the signaling socket (a keep-alive request,
        or with nothing else pending any message): the machine reads it like any message
        and it is handled here; returns the keep-alive response to send, if any."""
        self._signaling_last_rx = trio.current_time()
        self._heard_since_reconnect = True
        sig = self._sig
        if sig is None:  # no machine to read it (never after the handshake): counted
            self.counters.drop(DropReason.UNEXPECTED_MESSAGE)
            return None
        body = None
        for event in self._sig_receive(sig, payload):
            if isinstance(event, KeepAliveRequested):
                body = sig.keep_alive_response(event.sequence, event.timestamp)
                self._note_keepalive(event.timestamp)
            else:
                self._on_signaling_event_now(event)
        return body

    def _answer_keepalive_sock(self, sock: MediaSocket, msg: KeepAliveRequest) -> None:
        sock.send_message(encode_message(KeepAliveResponse(
            timestamp=msg.timestamp, sequence=msg.sequence)))
        self._note_keepalive(msg.timestamp)

    def _note_keepalive(self, timestamp_ms: int | None) -> None:
        self.counters.keepalives_answered += 1
        if timestamp_ms is not None:
            lag = max(0.0, time.time() * 1000 - timestamp_ms)
            self.counters.keepalive_lag_ms = lag
            if lag > self.counters.keepalive_max_lag_ms:
                self.counters.keepalive_max_lag_ms = lag

    def _on_media_messages(self, slot: _MediaSlot, sock: MediaSocket,
                           messages: list[bytes]) -> None:
        wrote_audio = False
        for raw in messages:
            msg = self._decode(raw)
            if msg is None:
                continue
            kind = type(msg)
            if kind is MediaDataAudio:
                self.counters.count_media("audio", len(msg.content.data))
                wrote_audio = self._on_audio(msg.content) or wrote_audio
            elif kind is KeepAliveRequest:
                self._answer_keepalive_sock(sock, msg)
            elif kind is MediaHandshakeResponse:
                self.counters.drop(DropReason.UNEXPECTED_MESSAGE)
            else:
                self._route_data(msg, slot.name)
        if wrote_audio:
            self.notifier.notify()

    def _route_data(self, msg: Any, where: str) -> None:
        if isinstance(msg, MediaDataTranscript):
            self._on_transcript(msg.content)
        elif isinstance(msg, MediaDataChat):
            self._on_chat(msg.content)
        elif isinstance(msg, (MediaDataVideo, MediaDataShare)):
            self._on_frame("video" if isinstance(msg, MediaDataVideo) else "deskshare",
                           msg.content)
        elif isinstance(msg, MediaDataAudio):
            self.counters.count_media("audio", len(msg.content.data))
            if self._on_audio(msg.content):
                self.notifier.notify()
        elif isinstance(msg, EventUpdate):
            self._on_event(msg.event)
        else:
            self.counters.drop(DropReason.UNEXPECTED_MESSAGE)

    def _on_transcript(self, c: TranscriptContent) -> None:
        self.counters.count_media("transcript", len(c.data))
        self._publish(TranscriptReceived(
            rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
            user_id=c.user_id, user_name=c.user_name, text=c.data, timestamp_ms=c.timestamp,
            start_time_ms=c.start_time, end_time_ms=c.end_time))

    def _on_chat(self, c: ChatContent) -> None:
        self.counters.count_media("chat", len(c.data))
        self._publish(ChatReceived(
            rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
            user_id=c.user_id, user_name=c.user_name, text=c.data, timestamp_ms=c.timestamp))

    def _on_frame(self, media: Literal["video", "deskshare"], c: MediaContent) -> None:
        self.counters.count_media(media, len(c.data))
        if media not in self.settings.media_types:
            self.counters.drop(DropReason.UNWANTED_MEDIA)
            return
        self._publish(MediaFrameReceived(
            rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(), media=media,
            user_id=c.user_id, user_name=c.user_name, timestamp_ms=c.timestamp, data=c.data))

    def _on_event(self, ev: Event) -> None:
        now_ms = self._now_ms()
        sid = self.rtms_stream_id
        if ev.event_type == EventType.PARTICIPANT_JOIN and ev.participants:
            for p in ev.participants:
                self._publish(ParticipantJoined(rtms_stream_id=sid, received_at_ms=now_ms,
                                                user_id=p.user_id, user_name=p.user_name or "",
                                                timestamp_ms=ev.timestamp))
        elif ev.event_type == EventType.PARTICIPANT_LEAVE and ev.participants:
            for p in ev.participants:
                self._publish(ParticipantLeft(rtms_stream_id=sid, received_at_ms=now_ms,
                                              user_id=p.user_id, user_name=p.user_name,
                                              timestamp_ms=ev.timestamp))
        elif ev.event_type == EventType.ACTIVE_SPEAKER_CHANGE and ev.user_id is not None:
            self._publish(ActiveSpeakerChanged(rtms_stream_id=sid, received_at_ms=now_ms,
                                               user_id=ev.user_id, user_name=ev.user_name,
                                               timestamp_ms=ev.timestamp))
        else:
            fields = msgspec.to_builtins(ev)
            self._publish(ServerEvent(rtms_stream_id=sid, received_at_ms=now_ms,
                                      event_type=ev.event_type, fields=fields))

    def _on_audio(self, c: MediaContent) -> bool:
        """Decode one audio message into its participant's ring; True if samples were written."""
        decoder = self._audio
        if decoder is None or "audio" not in self.settings.media_types:
            self.counters.drop(DropReason.UNWANTED_MEDIA)
            return False
        if not decoder.supported:
            self.counters.drop(DropReason.UNSUPPORTED_CODEC)
            return False
        if decoder.mixed:
            key, user_id, user_name = _MIXED_KEY, None, None
        elif c.user_id is not None:
            key, user_id, user_name = str(c.user_id), c.user_id, c.user_name
        elif c.channel_id is not None:
            key, user_id, user_name = c.channel_id, None, c.user_name
        else:
            key, user_id, user_name = _MIXED_KEY, None, c.user_name
        participant = self._participants.get(key)
        if participant is None:
            participant = self._new_participant(key, user_id, user_name, decoder)
            if participant is None:
                return False
        try:
            pcm = decoder.pcm(c.data, key)
        except ValueError:
            self.counters.drop(DropReason.MALFORMED_MESSAGE)
            return False
        if pcm is None:
            self.counters.drop(DropReason.UNSUPPORTED_CODEC)
            return False
        samples: npt.NDArray[Any] = pcm
        if decoder.output_rate_hz != decoder.rate_hz:
            resampler = self._resamplers.get(key)
            if resampler is None:
                from rtms_fast.resample import Resampler

                resampler = Resampler(decoder.rate_hz, decoder.output_rate_hz, np.int16)
                self._resamplers[key] = resampler
            samples = resampler.process(pcm)
        if decoder.float_output:
            samples = samples.astype(np.float32) * np.float32(1.0 / 32768.0)
        participant.ring.write(samples)  # what does not fit is counted by the ring
        return True

    def _new_participant(self, key: str, user_id: int | None, user_name: str | None,
                         decoder: _AudioDecoder) -> _Participant | None:
        s = self.settings
        if len(self._participants) >= s.max_participants_per_session:
            self.counters.drop(DropReason.TOO_MANY_PARTICIPANTS)
            return None
        capacity = max(1, s.ring_capacity_ms * decoder.output_rate_hz // 1000) * decoder.channels
        dtype = np.float32 if decoder.float_output else np.int16
        try:
            ring = AudioRing(capacity, dtype, _POLICIES[s.overflow_policy], self._budget,
                             notifier=self.notifier)
        except RingBudgetExceededError:
            self.counters.drop(DropReason.RING_MEMORY_CEILING)
            return None
        participant = _Participant(key, user_id, user_name, ring, decoder.channels)
        self._participants[key] = participant
        self._publish(AudioStreamStarted(
            rtms_stream_id=self.rtms_stream_id, received_at_ms=self._now_ms(),
            participant=key, user_id=user_id, user_name=user_name,
            sample_rate_hz=decoder.output_rate_hz, channels=decoder.channels,
            dtype="float32" if decoder.float_output else "int16"))
        return participant


class _ClosedByClient(Exception):
    pass


_CLOSABLE: Final = (ClientSignalingState.CONNECTED, ClientSignalingState.READY)


_ENDED_OUTCOMES: Final = (CloseOutcome.COMPLETED, CloseOutcome.NORMAL, CloseOutcome.GOING_AWAY)


def _drop_reason(error: ProtocolError) -> str:
    """How a message the signaling machine refused is counted."""
    if isinstance(error, UnknownMessageType):
        return DropReason.UNKNOWN_MESSAGE_TYPE
    if isinstance(error, StateError):  # well formed, but not legal here
        return DropReason.UNEXPECTED_MESSAGE
    return DropReason.MALFORMED_MESSAGE


_KNOWN: Final = (_Rejected, _Ended, _Lost, _ClosedByClient)
_DROPS: Final = (_SignalingDropped, MediaSocketError, trio_websocket.HandshakeError,
                 trio.BrokenResourceError,
                 trio_websocket.ConnectionClosed, OSError, trio.TooSlowError)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(_leaves(inner))
        return out
    return [exc]


def _classify(raised: BaseException) -> BaseException | None:
    """The exception that decides a join attempt's fate, or None to re-raise (cancellation,
    bugs). Definite outcomes win over transport drops."""
    leaves = _leaves(raised)
    if any(isinstance(e, (trio.Cancelled, KeyboardInterrupt, SystemExit)) for e in leaves):
        return None
    for kind in _KNOWN:
        for e in leaves:
            if isinstance(e, kind):
                return e
    for e in leaves:
        if isinstance(e, _DROPS):
            return e
    return None

