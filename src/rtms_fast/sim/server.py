"""The RTMS simulator: signaling and media servers on Trio that play the Zoom side.

One listening socket serves both roles by URL path (`/signaling`, `/media/<type>` in split
mode, `/media` for the unified `all` URL). Per-connection tasks do the control plane
(upgrade, handshakes, keep-alive answers, close); ONE sweep task sends every due media
frame of every session with non-blocking writes, so a thousand paced sessions cost one
timer wake-up per tick instead of one per message. Audio-only streams on plain ws://
sockets are swept by native code (`PacedAudioSender`: one call formats and sends every due
frame); everything else (TLS, faults, speaker rotation, pretty JSON, other media, a socket
with queued bytes) goes through the Python path, which produces the same bytes. A
housekeeping task sends keep-alives, closes silent sockets and injects random faults.

This module must never let one client slow the others: a socket that does not read gets
its bytes buffered (capped, then dropped and counted), never awaited in the sweep.
"""

from __future__ import annotations

import binascii
import enum
import functools
import gc
import heapq
import itertools
import json
import math
import random
import socket
import ssl
import struct
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
import trio
from wsproto.events import BytesMessage, CloseConnection, Request, TextMessage

from rtms_fast.protocol.enums import (
    DataOption,
    EventType,
    MediaType,
    MsgType,
    SessionState,
    StatusCode,
    StopReason,
    StreamState,
)
from rtms_fast.protocol.signature import verify_rtms_signature
from rtms_fast.sim import source as src
from rtms_fast.sim.wire import (
    OP_BINARY,
    OP_TEXT,
    AudioVoice,
    PacedAudioSender,
    SenderEvent,
    ServerConnection,
    frame_header,
    send_frames_batch,
)

__all__ = [
    "CODEC_NAMES",
    "FaultKind",
    "MediaStream",
    "SimConfig",
    "SimCounters",
    "SimSession",
    "Simulator",
    "negotiate_audio",
    "run_simulator",
]

CODEC_NAMES: Final = {"l16": src.CODEC_L16, "pcma": src.CODEC_G711, "g722": src.CODEC_G722}
# plain ints: IntFlag arithmetic is slow and these are tested per stream
_AUDIO: Final = int(MediaType.AUDIO)
_VIDEO: Final = int(MediaType.VIDEO)
_DESKSHARE: Final = int(MediaType.DESKSHARE)
_TRANSCRIPT: Final = int(MediaType.TRANSCRIPT)
_CHAT: Final = int(MediaType.CHAT)
_ALL: Final = int(MediaType.ALL)
_URL_KEYS: Final = {
    MediaType.AUDIO: "audio",
    MediaType.VIDEO: "video",
    MediaType.DESKSHARE: "deskshare",
    MediaType.TRANSCRIPT: "transcript",
    MediaType.CHAT: "chat",
}
_TYPE_BY_KEY: Final = {v: k for k, v in _URL_KEYS.items()}
_ALL_TYPES: Final = 1 | 2 | 4 | 8 | 16
_CLOSE_WAIT_S: Final = 1.0
# msg 8 (stream TERMINATED) goes out this long after a session's last media frame was
# written: a client that closes every socket on msg 8 (the official SDK does) has read its
# media sockets by then.
_END_GRACE_S: Final = 0.1
# A session whose media cannot finish (a slowed stream) ends at the latest this long after
# its end time.
_END_MEDIA_WAIT_MAX_S: Final = 1.0
# What one native send may carry: a stream further behind than this goes through Python.
_NATIVE_SCRATCH_BYTES: Final = 1 << 20
# Client reads (upgrades, handshakes, keep-alive answers) processed per millisecond of sweep
# tick. Readable sockets wake together (a client answers a burst of keep-alives at once):
# unbounded, a few hundred ~100 us reads would run back to back and make the next sweep
# late. Beyond the budget a read waits for the next tick; 5 per ms is 5,000 reads/s.
_READS_PER_TICK_MS: Final = 5
# Housekeeping period: short, so each pass sends a few keep-alives instead of a burst.
_HOUSEKEEPING_S: Final = 0.2
#: A keep-alive answered later than this counts as late; one left unanswered this long when
#: its socket or session ends counts as unanswered (younger ones were still in flight).
_KA_LATE_S: Final = 1.0


class FaultKind(enum.Enum):
    """Faults the simulator can inject into a session's sockets."""

    DROP_TCP = "drop_tcp"  # reset, no close frame
    CLOSE_1000 = "close_1000"  # close frame 1000, then FIN
    CLOSE_1006 = "close_1006"  # FIN without a close frame
    STALL = "stall"  # stop sending and stop answering
    MALFORMED = "malformed"  # one message that is not JSON
    TRUNCATED = "truncated"  # one media message cut in half
    SLOW = "slow"  # media goes out late (slow_delay_ms behind schedule)
    KEEPALIVE_SILENCE = "keepalive_silence"  # no keep-alive requests


@dataclass
class SimConfig:
    """Everything that shapes a simulator run. Times are seconds unless named otherwise."""

    host: str = "127.0.0.1"
    port: int = 0
    sessions: int = 1
    participants: int = 1
    codec: str = "l16"  # answered when a client asks for no particular format
    rate_hz: int = 16000
    send_rate_ms: int = 20
    data_opt: int = DataOption.AUDIO_MULTI_STREAMS
    mode: str = "split"  # "split": per-type URLs; "unified": every key is the `all` URL
    duration_s: float = 10.0
    client_id: str = "client"
    client_secret: str = "secret"
    tls: bool = False
    ca_file: str | None = None  # where the CA PEM goes in TLS mode (default: a temp file)
    seed: int = 0
    product: str = "meeting"  # meeting | webinar | session | contact_center
    binary_frames: bool = False  # JSON in binary frames instead of text frames
    pretty: bool = False  # tab-indented JSON like the official servers' JsonCpp output
    keepalive_interval_s: float = 15.0
    #: Which sockets get keep-alive requests: all, signaling or media (measurements).
    keepalive_sockets: str = "all"
    media_timeout_s: float = 65.0
    signaling_timeout_s: float = 60.0
    join_timeout_s: float = 60.0  # a session nobody joins ends after this
    session_state_updates: bool = False  # msg 9 (crashes the official SDK's Python wrapper)
    transcript_interval_ms: int = 2000
    chat_interval_ms: int = 5000
    event_interval_ms: int = 2000
    video_fps: int = 5
    deskshare_fps: int = 1
    max_buffer_bytes: int = 1 << 20  # per socket, beyond the kernel's send buffer
    socket_send_buffer_bytes: int | None = None  # SO_SNDBUF of accepted sockets (tests)
    slow_delay_ms: int = 200
    random_fault_rate_hz: float = 0.0  # expected random faults per second, whole simulator
    random_fault_kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    # Sweep period. Streams are spread over the 20 // tick_ms phases of a 20 ms send
    # interval by their start time, so each sweep sends a fraction of all sessions' frames
    # (short bursts) instead of every session at once.
    tick_ms: int = 5
    # Send audio-only plain ws:// streams from native code (same bytes, less CPU); False
    # sends every stream through the Python path.
    native_sweep: bool = True
    # Keep the cyclic garbage collector's passes short while running: gc.freeze() every
    # sweep tick, gc.unfreeze() at close. Process-wide, hence a setting; cyclic garbage made
    # while running is kept until close().
    freeze_gc: bool = True


@dataclass
class SimCounters:
    """Plain counters; everything dropped or late is counted here."""

    connections_accepted: int = 0
    connections_rejected: int = 0
    handshakes_ok: int = 0
    handshake_rejected_by_status: dict[int, int] = field(default_factory=dict)
    negotiation_fallbacks: int = 0
    messages_sent: int = 0
    media_frames_scheduled: int = 0
    media_frames_sent: int = 0
    audio_frames_scheduled: int = 0
    audio_frames_sent: int = 0
    audio_misses: int = 0  # audio frames written more than one send interval late
    max_audio_lag_ms: float = 0.0
    native_audio_frames_sent: int = 0  # of audio_frames_sent, by the native sender
    native_partial_sends: int = 0  # native sends a socket took in part (rest queued)
    messages_dropped_backpressure: int = 0
    keepalives_sent: int = 0
    keepalive_answers: int = 0
    keepalive_timeouts: int = 0
    # Requests still unanswered when their socket or session ended: older than
    # _KA_LATE_S then (never answered), or younger (in flight at the end, not a fault).
    keepalives_unanswered: int = 0
    keepalives_in_flight_at_end: int = 0
    keepalive_answers_late: int = 0  # answered more than _KA_LATE_S after the request
    keepalive_max_rtt_ms: float = 0.0  # request to answer, the slowest
    client_messages: int = 0
    client_messages_invalid: int = 0
    client_protocol_errors: int = 0  # bad HTTP or WebSocket framing (connection closed)
    client_messages_too_big: int = 0
    stream_close_requests: int = 0
    faults_injected: int = 0
    sweeps: int = 0
    sweeps_late: int = 0
    sweep_busy_s: float = 0.0  # wall time spent inside sweeps
    sessions_ready: int = 0
    sessions_ended: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(self).items()}


def _default_format(cfg: SimConfig) -> src.AudioFormat:
    codec = CODEC_NAMES[cfg.codec]
    if codec == src.CODEC_L16:
        return src.AudioFormat(src.CONTENT_RAW, codec, cfg.rate_hz, 1, cfg.send_rate_ms)
    if codec == src.CODEC_G711:
        return src.AudioFormat(src.CONTENT_RTP, codec, 8000, 1, 20)
    return src.AudioFormat(src.CONTENT_RTP, codec, 16000, 1, 20)


def _format_allowed(fmt: src.AudioFormat) -> bool:
    """RTMS_PROTOCOL.md section 17, plus bare G.711/G.722 over RAW (the SDK's presets)."""
    send_ok = 20 <= fmt.send_rate_ms <= 1000 and fmt.send_rate_ms % 20 == 0
    if fmt.content_type == src.CONTENT_RTP:
        if fmt.send_rate_ms != 20 or fmt.channels != 1:
            return False
        if fmt.codec == src.CODEC_G711:
            return fmt.rate_hz == 8000
        return fmt.codec == src.CODEC_G722 and fmt.rate_hz == 16000 and src.g722_available()
    if fmt.content_type != src.CONTENT_RAW or not send_ok:
        return False
    if fmt.codec == src.CODEC_L16:
        return fmt.rate_hz in src.RATE_CODE_BY_HZ and fmt.channels in (1, 2)
    if fmt.codec == src.CODEC_G711:
        return fmt.rate_hz == 8000 and fmt.channels == 1
    if fmt.codec == src.CODEC_G722:
        return fmt.rate_hz == 16000 and fmt.channels == 1 and src.g722_available()
    return False


def negotiate_audio(
    request: Any, default: src.AudioFormat, default_data_opt: int
) -> tuple[src.AudioFormat, int, bool]:
    """Pick the audio format to serve for a handshake's `media_params.audio`.

    Returns (format, data_opt, fell_back). A request section 17 allows is served as asked
    (missing keys take the defaults); anything else gets the default format.
    """
    if not isinstance(request, dict) or not request:
        return default, default_data_opt, False

    def pick(key: str, fallback: int) -> int:
        value = request.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else fallback

    rate_code = pick("sample_rate", src.RATE_CODE_BY_HZ[default.rate_hz])
    data_opt = pick("data_opt", default_data_opt)
    fmt = src.AudioFormat(
        content_type=pick("content_type", default.content_type),
        codec=pick("codec", default.codec),
        rate_hz=src.RATE_HZ_BY_CODE.get(rate_code, -1),
        channels=pick("channel", default.channels),
        send_rate_ms=pick("send_rate", default.send_rate_ms),
    )
    fell_back = False
    if not _format_allowed(fmt):
        fmt, fell_back = default, True
    if data_opt not in (DataOption.AUDIO_MIXED_STREAM, DataOption.AUDIO_MULTI_STREAMS):
        data_opt, fell_back = default_data_opt, True
    return fmt, data_opt, fell_back


def audio_params_json(fmt: src.AudioFormat, data_opt: int) -> dict[str, int]:
    return {
        "content_type": fmt.content_type,
        "codec": fmt.codec,
        "sample_rate": src.RATE_CODE_BY_HZ[fmt.rate_hz],
        "channel": fmt.channels,
        "data_opt": data_opt,
        "send_rate": fmt.send_rate_ms,
    }


def _epoch_ms() -> int:
    return int(time.time() * 1000)


class _Track:
    """One periodic series of media messages on one media socket."""

    __slots__ = ("build", "first_index", "is_audio", "late", "next_index", "period_s", "total")

    def __init__(
        self,
        period_ms: int,
        total: int,
        is_audio: bool,
        build: Callable[[int, int], list[bytes]],
        late: bool = False,
    ) -> None:
        self.period_s = period_ms / 1000.0
        self.total = total
        self.first_index = 0  # items before it were due before the socket was there
        self.next_index = 0
        self.is_audio = is_audio
        self.build = build
        # media item k goes out at the start of its interval; a transcript or chat line
        # only once its interval has been spoken (late=True)
        self.late = int(late)


@dataclass(frozen=True, slots=True)
class _NativePlan:
    """What the native sender needs to produce a stream's audio messages."""

    voices: tuple[AudioVoice, ...]
    period_ms: int
    base_ms: int
    samples_per_frame: int


@dataclass(eq=False)
class _Peer:
    """A connection and what the simulator knows about it."""

    conn: ServerConnection
    role: str = ""  # "signaling" | "media"
    session: SimSession | None = None
    media_bits: int = 0
    ka_sequence: int = 0
    last_ka_sent: float = 0.0
    last_rx: float = 0.0
    ka_pending: dict[int, float] = field(default_factory=dict)  # sequence -> sent at


@dataclass(eq=False)
class MediaStream:
    """One handshaken media socket of a session, serving the types in `media_bits`."""

    peer: _Peer
    media_bits: int
    audio_format: src.AudioFormat | None = None
    data_opt: int = DataOption.AUDIO_MULTI_STREAMS
    tracks: list[_Track] = field(default_factory=list)
    t0: float | None = None
    sources: list[src.AudioSource] = field(default_factory=list)
    mixed: src.MixedAudioSource | None = None
    phase: int = -1  # the sweep phase it is sent in; -1: every tick
    native_plan: _NativePlan | None = None  # set when the native sender can send it
    native_slot: int = -1  # >= 0 while the native sender sends it


@dataclass(eq=False)
class SimSession:
    """One simulated RTMS stream (a meeting, webinar, Video SDK session or ZCC call)."""

    index: int
    meeting_uuid: str
    rtms_stream_id: str
    participants: int
    signaling: _Peer | None = None
    media: dict[int, MediaStream] = field(default_factory=dict)  # media bit -> stream
    ready_at: float | None = None
    ready_tick: int = 0
    start_epoch_ms: int = 0
    end_at: float | None = None
    ended: bool = False
    stop_reason: int | None = None
    stalled_until: float = 0.0
    slow_until: float = 0.0
    ka_silent_until: float = 0.0
    events: list[tuple[float, bytes]] = field(default_factory=list)
    subscriptions: dict[int, bool] = field(default_factory=dict)
    speaker_changes_sent: int = 0
    media_done_at: float | None = None  # when every stream had sent its last item

    def peers(self) -> list[_Peer]:
        out = [] if self.signaling is None else [self.signaling]
        for stream in self.media.values():
            if stream.peer not in out:
                out.append(stream.peer)
        return out


class Simulator:
    """The simulated Zoom side. Use `run_simulator(config)` to run one."""

    def __init__(self, config: SimConfig) -> None:
        if config.codec not in CODEC_NAMES:
            raise ValueError(f"codec must be one of {sorted(CODEC_NAMES)}, got {config.codec!r}")
        if config.codec == "g722" and not src.g722_available():
            raise ValueError("codec g722 needs rtms_fast.codecs.G722Encoder, which is absent")
        if config.mode not in ("split", "unified"):
            raise ValueError(f"mode must be 'split' or 'unified', got {config.mode!r}")
        if config.send_rate_ms % 20 or not 20 <= config.send_rate_ms <= 1000:
            raise ValueError("send_rate_ms must be a multiple of 20 in 20..1000")
        if config.tick_ms not in (5, 10, 20):
            raise ValueError("tick_ms must be 5, 10 or 20")
        if config.keepalive_sockets not in ("all", "signaling", "media"):
            raise ValueError("keepalive_sockets must be 'all', 'signaling' or 'media'")
        if config.rate_hz not in src.RATE_CODE_BY_HZ:
            raise ValueError(f"rate_hz must be one of {sorted(src.RATE_CODE_BY_HZ)}")
        if config.sessions < 0 or config.participants < 0:
            raise ValueError("sessions and participants must be >= 0 (0 participants: "
                             "sessions without audio)")
        self.config = config
        self.counters = SimCounters()
        self.default_format = _default_format(config)
        self.sessions = [
            SimSession(
                index=i,
                meeting_uuid=src.meeting_uuid_for(config.seed, i),
                rtms_stream_id=src.stream_id_for(config.seed, i),
                participants=config.participants,
            )
            for i in range(config.sessions)
        ]
        self._by_stream = {s.rtms_stream_id: s for s in self.sessions}
        self._peers: set[_Peer] = set()
        # dicts used as ordered sets: O(1) removal when a stream changes hands
        self._streams: dict[MediaStream, None] = {}  # every started media stream
        self._phases = 20 // config.tick_ms
        # streams the Python sweep sends, by phase (native ones are in the native sender)
        self._phase_streams: list[dict[MediaStream, None]] = [{} for _ in range(self._phases)]
        self._every_tick_streams: dict[MediaStream, None] = {}  # periods not a multiple of 20
        self._native: PacedAudioSender | None = None
        if config.native_sweep and PacedAudioSender.available():
            self._native = PacedAudioSender(_NATIVE_SCRATCH_BYTES)
        self._native_streams: dict[int, MediaStream] = {}  # native slot -> stream
        self._reads_per_tick = _READS_PER_TICK_MS * config.tick_ms
        self._reads_left = self._reads_per_tick
        self._read_lot = trio.lowlevel.ParkingLot()
        # id(base64 cache) -> (the cache, kept alive so the id stays unique; native table id)
        self._native_tables: dict[int, tuple[dict[int, bytes], int]] = {}
        self._timeline: list[tuple[float, int]] = []  # (due time, session index) heap
        self._rng = random.Random(config.seed)
        self._opcode = OP_BINARY if config.binary_frames else OP_TEXT
        self.all_ended = trio.Event()
        self.fault_log: list[tuple[int, FaultKind, str]] = []  # (session, kind, target)
        self.ca_file: str | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._listener: socket.socket | None = None
        self._nursery: trio.Nursery | None = None
        self.port = 0
        self._started_at = 0.0
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # ---- URLs and webhook bodies -------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.config.tls:
            return f"wss://localhost:{self.port}"
        return f"ws://{self.config.host}:{self.port}"

    @property
    def signaling_url(self) -> str:
        return f"{self.base_url}/signaling"

    def media_urls(self) -> dict[str, str]:
        all_url = f"{self.base_url}/media"
        urls = {
            key: (all_url if self.config.mode == "unified" else f"{all_url}/{key}")
            for key in _URL_KEYS.values()
        }
        urls["all"] = all_url
        return urls

    def webhook_event(self, session: SimSession, kind: str = "rtms_started") -> dict[str, Any]:
        """The webhook body announcing `session` (`kind`: rtms_started|stopped|interrupted)."""
        product = self.config.product
        id_key = {"session": "session_id", "contact_center": "engagement_id"}.get(
            product, "meeting_uuid"
        )
        event = f"{product}.{kind}"
        if product == "contact_center":
            event = f"contact_center.voice_{kind}"
        return {
            "event": event,
            "event_ts": _epoch_ms(),
            "payload": {
                id_key: session.meeting_uuid,
                "rtms_stream_id": session.rtms_stream_id,
                "server_urls": self.signaling_url,
            },
        }

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        """Bind, listen and start the background tasks in `nursery`."""
        cfg = self.config
        if cfg.tls:
            self._setup_tls()
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((cfg.host, cfg.port))
        lsock.listen(4096)
        lsock.setblocking(False)
        self._listener = lsock
        self.port = lsock.getsockname()[1]
        self._nursery = nursery
        self._started_at = trio.current_time()
        src.warm_voices(self.config.seed, self.default_format)
        nursery.start_soon(self._accept_loop, lsock)
        nursery.start_soon(self._sweep_loop)
        nursery.start_soon(self._housekeeping_loop)

    def _setup_tls(self) -> None:
        import trustme  # only TLS runs need it

        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        self._ssl_context = ctx
        if self.config.ca_file:
            path = Path(self.config.ca_file)
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="rtms-sim-")
            path = Path(self._tmpdir.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(path))
        self.ca_file = str(path)

    def close(self) -> None:
        if self.config.freeze_gc:
            gc.unfreeze()
        for peer in list(self._peers):
            peer.conn.close_socket()
        if self._listener is not None:
            trio.lowlevel.notify_closing(self._listener)
            self._listener.close()
            self._listener = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    async def _accept_loop(self, lsock: socket.socket) -> None:
        assert self._nursery is not None
        while True:
            try:
                sock, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                await trio.lowlevel.wait_readable(lsock)
                continue
            except OSError:
                return
            if self.config.socket_send_buffer_bytes is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                self.config.socket_send_buffer_bytes)
            conn = ServerConnection(sock, self._ssl_context, self.config.max_buffer_bytes)
            conn.read_gate = self._read_gate
            self.counters.connections_accepted += 1
            self._nursery.start_soon(self._serve_peer, _Peer(conn))

    # ---- per-connection control plane ---------------------------------------------------

    def _encode(self, obj: dict[str, Any]) -> bytes:
        if self.config.pretty:
            return (
                json.dumps(obj, indent="\t", separators=(",", " : "), sort_keys=True) + "\n"
            ).encode()
        return msgspec.json.encode(obj)

    def _send_json(self, peer: _Peer, obj: dict[str, Any]) -> None:
        if peer.conn.send_message(self._encode(obj), self._opcode):
            self.counters.messages_sent += 1
        else:
            self.counters.messages_dropped_backpressure += 1

    async def _serve_peer(self, peer: _Peer) -> None:
        conn = peer.conn
        self._peers.add(peer)
        try:
            while not conn.closed:
                events = await conn.receive()
                if not events:  # EOF, reset or a dead TLS session
                    break
                for event in events:
                    if isinstance(event, Request):
                        self._on_request(peer, event)
                    elif isinstance(event, TextMessage | BytesMessage):
                        self._on_message(peer, event.data)
                    elif isinstance(event, CloseConnection):
                        await conn.drain(_CLOSE_WAIT_S)
                        conn.close_socket()
                    if conn.closed:
                        break
                if conn.outbuf and not conn.closed and not conn.upgraded:
                    # TLS handshake bytes that did not fit: no sweep flushes this socket yet
                    await conn.drain(_CLOSE_WAIT_S)
        finally:
            self.counters.client_protocol_errors += conn.protocol_errors
            self.counters.client_messages_too_big += conn.messages_too_big
            self._settle_keepalives(peer, trio.current_time(), final=True)
            self._detach(peer)
            self._peers.discard(peer)
            if not conn.closed:
                conn.close_socket()

    def _on_request(self, peer: _Peer, request: Request) -> None:
        path = request.target.split("?", 1)[0].rstrip("/")
        if path == "/signaling":
            peer.role = "signaling"
        elif path == "/media" or path.startswith("/media/"):
            key = path[len("/media/") :] if path.startswith("/media/") else "all"
            if key != "all" and key not in _TYPE_BY_KEY:
                self._reject_http(peer)
                return
            peer.role = "media"
            peer.media_bits = _ALL_TYPES if key == "all" else int(_TYPE_BY_KEY[key])
        else:
            self._reject_http(peer)
            return
        peer.conn.accept()
        peer.last_rx = trio.current_time()
        peer.last_ka_sent = peer.last_rx

    def _settle_keepalives(self, peer: _Peer, now: float, final: bool) -> None:
        """The session ended (its requests over ``_KA_LATE_S`` old count as unanswered;
        answers to the younger ones may still come while the socket closes) or the socket
        did (``final``: what is left was in flight)."""
        for sequence, sent in list(peer.ka_pending.items()):
            if now - sent > _KA_LATE_S:
                self.counters.keepalives_unanswered += 1
            elif final:
                self.counters.keepalives_in_flight_at_end += 1
            else:
                continue
            del peer.ka_pending[sequence]

    def _reject_http(self, peer: _Peer) -> None:
        self.counters.connections_rejected += 1
        peer.conn.reject(404)
        peer.conn.close_socket()

    def _on_message(self, peer: _Peer, data: str | bytes | bytearray) -> None:
        now = trio.current_time()
        session = peer.session
        if session is not None and session.stalled_until > now:
            return  # a stalled server answers nothing
        peer.last_rx = now
        self.counters.client_messages += 1
        try:
            msg = msgspec.json.decode(data)
        except msgspec.DecodeError:
            self.counters.client_messages_invalid += 1
            return
        msg_type = msg.get("msg_type") if isinstance(msg, dict) else None
        if not isinstance(msg_type, int):
            self.counters.client_messages_invalid += 1
            return
        if msg_type == MsgType.KEEP_ALIVE_RESP:
            self.counters.keepalive_answers += 1
            sequence = msg.get("sequence")
            sent = peer.ka_pending.pop(sequence, None) if isinstance(sequence, int) else None
            if sent is not None:
                rtt = now - sent
                if rtt > _KA_LATE_S:
                    self.counters.keepalive_answers_late += 1
                self.counters.keepalive_max_rtt_ms = max(
                    self.counters.keepalive_max_rtt_ms, rtt * 1000.0)
        elif msg_type == MsgType.KEEP_ALIVE_REQ:
            reply = {"msg_type": int(MsgType.KEEP_ALIVE_RESP), "timestamp": _epoch_ms()}
            if "sequence" in msg:
                reply["sequence"] = msg["sequence"]
            self._send_json(peer, reply)
        elif peer.role in ("signaling", "media"):
            try:
                if peer.role == "signaling":
                    self._on_signaling(peer, msg_type, msg)
                elif msg_type == MsgType.DATA_HAND_SHAKE_REQ:
                    self._on_media_handshake(peer, msg)
                else:
                    self.counters.client_messages_invalid += 1
            except (TypeError, ValueError, AttributeError, KeyError):
                # a field of an unexpected type: this message is dropped, nothing else
                self.counters.client_messages_invalid += 1
        else:
            self.counters.client_messages_invalid += 1

    def _check_identity(self, msg: dict[str, Any]) -> tuple[SimSession | None, int]:
        meeting_uuid = msg.get("meeting_uuid")
        stream_id = msg.get("rtms_stream_id")
        signature = msg.get("signature")
        if not isinstance(meeting_uuid, str):
            return None, StatusCode.MEETING_UUID_NOT_EXIST
        if not isinstance(stream_id, str):
            return None, StatusCode.RTMS_STREAM_ID_NOT_EXIST
        if not isinstance(signature, str):
            return None, StatusCode.SIGNATURE_NOT_EXIST
        session = self._by_stream.get(stream_id)
        if session is None or session.meeting_uuid != meeting_uuid:
            return None, StatusCode.INVALID_MEETING_OR_STREAM_ID
        if not verify_rtms_signature(
            self.config.client_id, meeting_uuid, stream_id, self.config.client_secret, signature
        ):
            return None, StatusCode.INVALID_SIGNATURE
        if session.ended:
            return None, StatusCode.SESSION_NOT_FOUND
        return session, StatusCode.OK

    def _reject_handshake(self, peer: _Peer, reply_type: int, status: int, seq: Any) -> None:
        counts = self.counters.handshake_rejected_by_status
        counts[status] = counts.get(status, 0) + 1
        reply: dict[str, Any] = {
            "msg_type": reply_type,
            "protocol_version": 1,
            "status_code": int(status),
            "reason": StatusCode(status).name if status in StatusCode._value2member_map_ else "",
        }
        if isinstance(seq, int):
            reply["sequence"] = seq
        self._send_json(peer, reply)
        self._close_after_flush(peer)

    def _close_after_flush(self, peer: _Peer, code: int = 1000, reason: str = "") -> None:
        peer.conn.send_close(code, reason)
        assert self._nursery is not None
        self._nursery.start_soon(self._finish_close, peer)

    async def _finish_close(self, peer: _Peer) -> None:
        await peer.conn.drain(_CLOSE_WAIT_S)
        with trio.move_on_after(_CLOSE_WAIT_S):
            # an event, not a poll: a thousand sessions end within a second
            await peer.conn.closed_event.wait()
        peer.conn.close_socket()

    def _on_signaling(self, peer: _Peer, msg_type: int, msg: dict[str, Any]) -> None:
        if msg_type == MsgType.SIGNALING_HAND_SHAKE_REQ:
            session, status = self._check_identity(msg)
            if session is not None and session.signaling is not None:
                status = StatusCode.DUPLICATE_SIGNAL_REQUEST
            if session is None or status != StatusCode.OK:
                self._reject_handshake(peer, MsgType.SIGNALING_HAND_SHAKE_RESP, status,
                                       msg.get("sequence"))
                return
            peer.session = session
            session.signaling = peer
            self.counters.handshakes_ok += 1
            reply: dict[str, Any] = {
                "msg_type": int(MsgType.SIGNALING_HAND_SHAKE_RESP),
                "protocol_version": 1,
                "status_code": 0,
                "reason": "",
                "media_server": {"server_urls": self.media_urls()},
            }
            if isinstance(msg.get("sequence"), int):
                reply["sequence"] = msg["sequence"]
            self._send_json(peer, reply)
            return
        session = peer.session
        if session is None:
            self.counters.client_messages_invalid += 1
            return
        if msg_type == MsgType.CLIENT_READY_ACK:
            self._on_ready(session)
        elif msg_type == MsgType.EVENT_SUBSCRIPTION:
            for item in msg.get("events") or []:
                if isinstance(item, dict) and isinstance(item.get("event_type"), int):
                    session.subscriptions[item["event_type"]] = bool(item.get("subscribe", True))
        elif msg_type == MsgType.STREAM_CLOSE_REQ:
            self.counters.stream_close_requests += 1
            self._send_json(peer, {
                "msg_type": int(MsgType.STREAM_CLOSE_RESP),
                "rtms_stream_id": session.rtms_stream_id,
                "status_code": 0,
                "reason": "",
                "timestamp": _epoch_ms(),
            })
            self._end_session(session, StopReason.RECEIVER_REQUEST_CLOSE, send_state=False)
        elif msg_type == MsgType.VIDEO_SUBSCRIPTION_REQ:
            self._send_json(peer, {
                "msg_type": int(MsgType.VIDEO_SUBSCRIPTION_RESP),
                "user_id": msg.get("user_id", 0),
                "status_code": 0,
                "reason": "",
                "timestamp": _epoch_ms(),
            })
        elif msg_type == MsgType.STREAM_STATE_REQ:
            self._send_json(peer, {
                "msg_type": int(MsgType.STREAM_STATE_RESP),
                "rtms_stream_id": session.rtms_stream_id,
                "state": int(StreamState.ACTIVE if session.ready_at else StreamState.INACTIVE),
                "timestamp": _epoch_ms(),
            })
        else:
            self.counters.client_messages_invalid += 1

    def _on_media_handshake(self, peer: _Peer, msg: dict[str, Any]) -> None:
        session, status = self._check_identity(msg)
        requested = msg.get("media_type")
        bits = peer.media_bits
        if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
            bits = _ALL_TYPES if requested & _ALL else requested & _ALL_TYPES
        if (session is not None and status == StatusCode.OK
                and (any(b & bits for b in session.media) or peer.session is not None)):
            status = StatusCode.DUPLICATE_MEDIA_DATA_CONNECTION
        if session is None or status != StatusCode.OK or not bits:
            self._reject_handshake(peer, MsgType.DATA_HAND_SHAKE_RESP,
                                   status if status else StatusCode.INVALID_MESSAGE_TYPE,
                                   msg.get("sequence"))
            return
        params = msg.get("media_params")
        params = params if isinstance(params, dict) else {}
        stream = MediaStream(peer=peer, media_bits=bits)
        answer: dict[str, Any] = {}
        if bits & _AUDIO:
            fmt, data_opt, fell_back = negotiate_audio(
                params.get("audio"), self.default_format, self.config.data_opt
            )
            self.counters.negotiation_fallbacks += fell_back
            stream.audio_format, stream.data_opt = fmt, data_opt
            src.warm_voices(self.config.seed, fmt)  # once per format, not at ready time
            answer["audio"] = audio_params_json(fmt, data_opt)
        if bits & _VIDEO:
            answer["video"] = _video_answer(params.get("video"), self.config.video_fps, True)
        if bits & _DESKSHARE:
            answer["deskshare"] = _video_answer(
                params.get("deskshare"), self.config.deskshare_fps, False
            )
        if bits & _TRANSCRIPT:
            tp = params.get("transcript")
            answer["transcript"] = tp if isinstance(tp, dict) else {
                "content_type": 5, "src_language": -1, "enable_lid": True}
        if bits & _CHAT:
            answer["chat"] = {"content_type": 5}
        peer.session = session
        peer.media_bits = bits
        for b in (_AUDIO, _VIDEO, _DESKSHARE, _TRANSCRIPT, _CHAT):
            if bits & b:
                session.media[b] = stream
        self.counters.handshakes_ok += 1
        reply: dict[str, Any] = {
            "msg_type": int(MsgType.DATA_HAND_SHAKE_RESP),
            "protocol_version": 1,
            "status_code": 0,
            "reason": "",
            "payload_encrypted": False,
            "media_params": answer,
        }
        if isinstance(msg.get("sequence"), int):
            reply["sequence"] = msg["sequence"]
        self._send_json(peer, reply)
        if session.ready_at is not None:
            self._start_stream(session, stream)

    def _detach(self, peer: _Peer) -> None:
        session = peer.session
        if session is None:
            return
        if session.signaling is peer:
            session.signaling = None
        for bit, stream in list(session.media.items()):
            if stream.peer is peer:
                del session.media[bit]
                if self._unschedule(stream):
                    self._count_scheduled(stream, at_end=False)

    def _unschedule(self, stream: MediaStream) -> bool:
        self._leave_native(stream)
        if stream not in self._streams:
            return False
        del self._streams[stream]
        for group in (*self._phase_streams, self._every_tick_streams):
            group.pop(stream, None)
        return True

    def _count_scheduled(self, stream: MediaStream, *, at_end: bool) -> None:
        """Scheduled = items due while a socket was there: all of them at the stream's end,
        those due so far when the socket goes away early."""
        c = self.counters
        for track in stream.tracks:
            count = (track.total if at_end else track.next_index) - track.first_index
            c.media_frames_scheduled += count
            if track.is_audio:
                c.audio_frames_scheduled += count

    # ---- session timeline --------------------------------------------------------------

    def _grid_tick(self, t: float) -> int:
        """Index of the first sweep tick at or after `t` (frames are scheduled on ticks)."""
        return math.ceil(t * 1000.0 / self.config.tick_ms)

    def _grid_time(self, t: float) -> float:
        return self._grid_tick(t) * self.config.tick_ms / 1000.0

    def _on_ready(self, session: SimSession) -> None:
        if session.ready_at is not None or session.ended:
            return
        now = trio.current_time()
        session.ready_tick = self._grid_tick(now)
        session.ready_at = session.ready_tick * self.config.tick_ms / 1000.0
        session.start_epoch_ms = _epoch_ms()
        session.end_at = session.ready_at + self.config.duration_s
        self.counters.sessions_ready += 1
        session.events = self._event_schedule(session)
        heapq.heappush(self._timeline, (self._session_next_due(session), session.index))
        if self.config.session_state_updates and session.signaling is not None:
            self._send_json(session.signaling, {
                "msg_type": int(MsgType.SESSION_STATE_UPDATE),
                "rtms_session_id": session.rtms_stream_id,
                "state": int(SessionState.STARTED),
                "reason": 0,
                "timestamp": _epoch_ms(),
            })
        seen: list[MediaStream] = []
        for stream in session.media.values():
            if stream not in seen:
                seen.append(stream)
                self._start_stream(session, stream, now)

    def _event_schedule(self, session: SimSession) -> list[tuple[float, bytes]]:
        assert session.ready_at is not None
        t0, dur, n = session.ready_at, self.config.duration_s, session.participants
        base = session.start_epoch_ms

        def ev(offset_s: float, body: dict[str, Any]) -> tuple[float, bytes]:
            body["timestamp"] = base + int(offset_s * 1000)
            return t0 + offset_s, self._encode({"msg_type": int(MsgType.EVENT_UPDATE),
                                                "event": body})

        people = [
            {"user_id": src.participant_id(p), "user_name": src.participant_name(p)}
            for p in range(n)
        ]
        out = [ev(0.0, {"event_type": int(EventType.PARTICIPANT_JOIN), "participants": people})]
        out.append(ev(0.0, self._speaker_event(0, n)))
        out.append(ev(dur / 3, {"event_type": int(EventType.SHARING_START),
                                "user_id": src.participant_id(0),
                                "user_name": src.participant_name(0)}))
        out.append(ev(2 * dur / 3, {"event_type": int(EventType.SHARING_STOP)}))
        if n > 1:
            out.append(ev(3 * dur / 4, {"event_type": int(EventType.PARTICIPANT_LEAVE),
                                        "participants": [people[-1]]}))
        out.sort(key=lambda item: item[0])
        return out

    @staticmethod
    def _speaker_event(k: int, participants: int) -> dict[str, Any]:
        p = k % max(participants, 1)
        return {"event_type": int(EventType.ACTIVE_SPEAKER_CHANGE),
                "user_id": src.participant_id(p), "user_name": src.participant_name(p)}

    def _next_speaker_time(self, session: SimSession) -> float | None:
        """When the next active speaker change is due (they are made when due, not up
        front), or None when there is none left."""
        assert session.ready_at is not None
        offset_ms = (session.speaker_changes_sent + 1) * self.config.event_interval_ms
        if offset_ms >= self.config.duration_s * 1000 or session.participants < 2:
            return None
        return session.ready_at + offset_ms / 1000.0

    def _send_speaker_change(self, session: SimSession) -> None:
        k = session.speaker_changes_sent = session.speaker_changes_sent + 1
        body = self._speaker_event(k, session.participants)
        body["timestamp"] = session.start_epoch_ms + k * self.config.event_interval_ms
        if session.signaling is not None:
            self._send_raw(session.signaling, self._encode(
                {"msg_type": int(MsgType.EVENT_UPDATE), "event": body}))

    def _session_next_due(self, session: SimSession) -> float:
        assert session.end_at is not None
        due = session.end_at
        if session.events:
            due = min(due, session.events[0][0])
        speaker = self._next_speaker_time(session)
        if speaker is not None:
            due = min(due, speaker)
        return due

    def _run_session_timeline(self, now: float) -> None:
        """Signaling events and stream ends that are due, from a heap (not a scan of
        every session per tick)."""
        timeline = self._timeline
        while timeline and timeline[0][0] <= now:
            _, index = heapq.heappop(timeline)
            session = self.sessions[index]
            if session.ended:
                continue
            if session.stalled_until > now:
                heapq.heappush(timeline, (session.stalled_until, index))
                continue
            sig = session.signaling
            while session.events and session.events[0][0] <= now:
                _, body = session.events.pop(0)
                if sig is not None:
                    self._send_raw(sig, body)
            speaker = self._next_speaker_time(session)
            while speaker is not None and speaker <= now:
                self._send_speaker_change(session)
                speaker = self._next_speaker_time(session)
            if session.end_at is not None and now >= session.end_at:
                # the end: msg 8 and the close frames follow the last media after a grace
                if session.media_done_at is None and (
                        now >= session.end_at + _END_MEDIA_WAIT_MAX_S
                        or all(self._stream_done(s) for s in session.media.values())):
                    session.media_done_at = now
                if session.media_done_at is None:
                    heapq.heappush(timeline, (now + self.config.tick_ms / 1000.0, index))
                elif now >= session.media_done_at + _END_GRACE_S - 1e-9:
                    self._end_session(session, StopReason.MEETING_ENDED)
                else:
                    heapq.heappush(timeline, (session.media_done_at + _END_GRACE_S, index))
            else:
                heapq.heappush(timeline, (self._session_next_due(session), index))

    def _start_stream(self, session: SimSession, stream: MediaStream,
                      now: float | None = None) -> None:
        if stream.t0 is not None or session.ended:
            return
        assert session.ready_at is not None and session.end_at is not None
        cfg = self.config
        if now is None:
            now = trio.current_time()
        t0_tick = max(session.ready_tick, self._grid_tick(now))
        # Every stream of a session runs on the session's timeline (frame k is due k send
        # intervals after ready); a socket that joins late, or rejoins after a drop, starts
        # at the first frame due after it arrived. Integer milliseconds, so frame counts
        # never depend on float rounding.
        stream.t0 = session.ready_at
        duration_ms = round(cfg.duration_s * 1000)
        skipped_ms = (t0_tick - session.ready_tick) * cfg.tick_ms
        if stream.audio_format is not None and session.participants > 0:  # 0: nobody talks
            stream.tracks.append(self._audio_track(session, stream, duration_ms))
        if stream.media_bits & _VIDEO:
            stream.tracks.append(self._picture_track(session, 15, cfg.video_fps, duration_ms,
                                                     src.video_frame))
        if stream.media_bits & _DESKSHARE:
            stream.tracks.append(self._picture_track(session, 16, cfg.deskshare_fps,
                                                     duration_ms, src.deskshare_frame))
        if stream.media_bits & _TRANSCRIPT:
            stream.tracks.append(self._transcript_track(session, duration_ms))
        if stream.media_bits & _CHAT:
            stream.tracks.append(self._chat_track(session, duration_ms))
        for track in stream.tracks:
            period_ms = round(track.period_s * 1000)
            track.first_index = track.next_index = max(
                0, -(-skipped_ms // period_ms) - track.late)
        self._streams[stream] = None
        if all(round(track.period_s * 1000) % 20 == 0 for track in stream.tracks):
            # every due time is ready_at + a multiple of 20 ms: always the same phase
            stream.phase = session.ready_tick % self._phases
            self._phase_streams[stream.phase][stream] = None
        else:
            self._every_tick_streams[stream] = None
        if len(stream.tracks) != 1 or stream.phase < 0:
            stream.native_plan = None  # the native sender sends audio-only streams

    def _content_prefix(self, msg_type: int, user_id: int, user_name: str) -> bytes:
        name = msgspec.json.encode(user_name)
        return (b'{"msg_type":%d,"content":{"user_id":%d,"user_name":%s,"data":"'
                % (msg_type, user_id, name))

    def _framed(self, body: bytes) -> bytes:
        return frame_header(self._opcode, len(body)) + body

    def _audio_track(self, session: SimSession, stream: MediaStream, duration_ms: int) -> _Track:
        """Audio messages, already framed. Compact JSON is built from cached pieces (the hot
        path); pretty JSON goes through the generic encoder."""
        fmt = stream.audio_format
        assert fmt is not None
        cfg = self.config
        period = fmt.send_rate_ms
        total = -(-duration_ms // period)
        base_ms = session.start_epoch_ms
        kw = {"content_type": fmt.content_type, "channels": fmt.channels,
              "send_rate_ms": fmt.send_rate_ms}
        enc = self._encode
        opcode = self._opcode
        header = frame_header
        sources: list[src.AudioSource | src.MixedAudioSource]
        if stream.data_opt == DataOption.AUDIO_MIXED_STREAM:
            mixed = src.MixedAudioSource(cfg.seed, session.index, session.participants,
                                         fmt.codec, fmt.rate_hz, **kw)
            stream.mixed = mixed
            sources, ids, names = [mixed], [0], [""]
        else:
            stream.sources = [
                src.AudioSource(cfg.seed, session.index, p, fmt.codec, fmt.rate_hz, **kw)
                for p in range(session.participants)]
            sources = list(stream.sources)
            ids = [src.participant_id(p) for p in range(session.participants)]
            names = [src.participant_name(p) for p in range(session.participants)]
        prefixes = [self._content_prefix(14, uid, name) for uid, name in zip(ids, names,
                                                                             strict=True)]
        n_parts = len(sources)
        mixed_mode = stream.data_opt == DataOption.AUDIO_MIXED_STREAM
        static_speakers = (list(range(n_parts)) if mixed_mode
                           else src.speakers_for_frame(n_parts, 0, period)
                           if n_parts <= 3 else None)

        def speakers_at(k: int) -> list[int]:
            if static_speakers is not None:
                return static_speakers
            return src.speakers_for_frame(n_parts, k, period)

        if cfg.pretty:
            def build_pretty(k0: int, k1: int) -> list[bytes]:
                return [self._framed(enc({"msg_type": 14, "content": {
                    "user_id": ids[p], "user_name": names[p],
                    "data": sources[p].b64_payload(k).decode(),
                    "timestamp": base_ms + k * period}}))
                    for k in range(k0, k1 + 1) for p in speakers_at(k)]

            return _Track(period, total, True, build_pretty)

        n = fmt.samples_per_frame
        caches = [s.b64_cache() for s in sources]
        head16 = struct.Struct("!BBH").pack
        first_byte = 0x80 | opcode

        loop_len = max(1, fmt.rate_hz)
        if static_speakers is not None and all(cache is not None for cache in caches):
            # the hot path: one call per socket per sweep, base64 from a shared cache keyed
            # by sample offset, framing inline
            entries = []
            for p in static_speakers:
                cache = caches[p]
                assert cache is not None
                entries.append((prefixes[p], cache[0], cache[1], sources[p]))
            loop_len = caches[0][2] if caches[0] is not None else loop_len
            stream.native_plan = self._native_plan(
                [(prefixes[p], sources[p], caches[p]) for p in static_speakers], period,
                base_ms, n)

            def build_cached(k0: int, k1: int) -> list[bytes]:
                out = []
                for k in range(k0, k1 + 1):
                    ts = base_ms + k * period
                    offset = k * n
                    for prefix, table, shift, source in entries:
                        b64 = table.get((offset + shift) % loop_len)
                        if b64 is None:
                            b64 = source.b64_payload(k)
                        body = b'%s%s","timestamp":%d}}' % (prefix, b64, ts)
                        size = len(body)
                        if 126 <= size < 65536:
                            out.append(head16(first_byte, 126, size) + body)
                        else:
                            out.append(header(opcode, size) + body)
                return out

            return _Track(period, total, True, build_cached)

        def build(k0: int, k1: int) -> list[bytes]:
            out = []
            for k in range(k0, k1 + 1):
                ts = base_ms + k * period
                for p in speakers_at(k):
                    cache = caches[p]
                    b64 = None
                    if cache is not None:
                        b64 = cache[0].get((k * n + cache[1]) % cache[2])
                    if b64 is None:
                        b64 = sources[p].b64_payload(k)
                    body = b'%s%s","timestamp":%d}}' % (prefixes[p], b64, ts)
                    size = len(body)
                    if 126 <= size < 65536:
                        out.append(head16(first_byte, 126, size) + body)
                    else:
                        out.append(header(opcode, size) + body)
            return out

        return _Track(period, total, True, build)

    def _picture_track(self, session: SimSession, msg_type: int, fps: int, duration_ms: int,
                       frame_fn: Callable[[int, int, int], bytes]) -> _Track:
        fps = max(1, fps)
        period = 1000 // fps
        seed, idx, base_ms, n = self.config.seed, session.index, session.start_epoch_ms, \
            session.participants

        def build_one(k: int) -> bytes:
            p = (k * period // 1000) % max(n, 1)
            return self._framed(self._encode({"msg_type": msg_type, "content": {
                "user_id": src.participant_id(p), "user_name": src.participant_name(p),
                "data": binascii.b2a_base64(frame_fn(seed, idx, k), newline=False).decode(),
                "timestamp": base_ms + k * period}}))

        return _Track(period, -(-duration_ms // period), False, _per_item(build_one))

    def _transcript_track(self, session: SimSession, duration_ms: int) -> _Track:
        period = self.config.transcript_interval_ms
        seed, idx, base_ms, n = self.config.seed, session.index, session.start_epoch_ms, \
            session.participants

        def build_one(k: int) -> bytes:
            p = k % max(n, 1)
            start = base_ms + k * period
            return self._framed(self._encode({"msg_type": 17, "content": {
                "user_id": src.participant_id(p), "user_name": src.participant_name(p),
                "data": src.transcript_text(seed, idx, k), "timestamp": start + period,
                "start_time": start, "end_time": src.transcript_end_ms(start, period)}}))

        return _Track(period, duration_ms // period, False, _per_item(build_one), late=True)

    def _chat_track(self, session: SimSession, duration_ms: int) -> _Track:
        period = self.config.chat_interval_ms
        base_ms, n = session.start_epoch_ms, session.participants

        def build_one(k: int) -> bytes:
            p = k % max(n, 1)
            return self._framed(self._encode({"msg_type": 18, "content": {
                "user_id": src.participant_id(p), "user_name": src.participant_name(p),
                "data": f"chat message {k}", "timestamp": base_ms + k * period}}))

        return _Track(period, duration_ms // period, False, _per_item(build_one), late=True)

    # ---- the media sweep -----------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        tick = self.config.tick_ms / 1000.0
        tick_index = self._grid_tick(trio.current_time())
        freeze_gc = self.config.freeze_gc
        while True:
            await trio.sleep_until(tick_index * tick)
            now = trio.current_time()
            current = math.floor(now / tick + 1e-9)
            if current > tick_index:
                self.counters.sweeps_late += 1
            # every phase whose tick has come since the last sweep (all of them when late)
            phases = {i % self._phases for i in range(tick_index, min(current, tick_index
                                                                      + self._phases - 1) + 1)}
            busy0 = time.perf_counter()
            self._sweep(now, phases)
            self.counters.sweep_busy_s += time.perf_counter() - busy0
            self.counters.sweeps += 1
            tick_index = max(tick_index, current) + 1
            if freeze_gc:
                # A full cyclic collection over a thousand sessions' objects takes 50-150 ms,
                # a middle one up to ~20 ms: either makes every stream late. What survived a
                # tick leaves the collector's view (O(1); the simulator makes no cyclic
                # garbage to speak of), so a collection only scans the last tick's objects.
                # close() undoes it.
                gc.freeze()
            # a new read budget for the control plane until the next tick
            woken = self._read_lot.unpark(count=self._reads_per_tick)
            self._reads_left = self._reads_per_tick - len(woken)

    async def _read_gate(self) -> None:
        """Wait, when this tick's read budget is spent, for the next tick's."""
        if self._reads_left > 0:
            self._reads_left -= 1
            return
        await self._read_lot.park()

    def _sweep(self, now: float, phases: set[int] | None = None) -> None:
        """Send every due item of the streams in `phases` (default: all) and run the
        session timeline."""
        c = self.counters
        tally = _SweepTally(c.max_audio_lag_ms / 1000.0)
        phase_indexes = range(self._phases) if phases is None else phases
        groups = [self._every_tick_streams, *(self._phase_streams[i] for i in phase_indexes)]
        native = self._native
        to_native: list[MediaStream] = []
        for stream in itertools.chain.from_iterable(groups):
            peer = stream.peer
            session = peer.session
            conn = peer.conn
            if session is None or conn.closed or stream.t0 is None:
                continue
            if session.stalled_until > now:
                continue
            if conn.outbuf:
                conn.flush()
            if (stream.native_plan is not None and native is not None and conn.batchable
                    and session.slow_until <= now):
                to_native.append(stream)  # moved after the loop: it changes the groups
                continue
            self._sweep_stream(stream, session, conn, now, tally)
        for stream in to_native:
            if not self._go_native(stream):
                session = stream.peer.session
                assert session is not None
                self._sweep_stream(stream, session, stream.peer.conn, now, tally)
        if native is not None and self._native_streams:
            mask = sum(1 << i for i in phase_indexes)
            totals = native.sweep(now, mask, tally.max_lag_s)
            tally.media_frames += totals.frames
            tally.audio_frames += totals.frames
            tally.messages += totals.messages
            tally.misses += totals.misses
            tally.max_lag_s = totals.max_lag_s
            c.native_audio_frames_sent += totals.frames
            for event in totals.events:
                self._on_sender_event(event, now, tally)
        send_frames_batch(tally.batch_conns, tally.batch_frames)
        c.media_frames_sent += tally.media_frames
        c.audio_frames_sent += tally.audio_frames
        c.messages_sent += tally.messages
        c.audio_misses += tally.misses
        c.max_audio_lag_ms = tally.max_lag_s * 1000.0
        self._run_session_timeline(now)

    def _sweep_stream(self, stream: MediaStream, session: SimSession, conn: ServerConnection,
                      now: float, tally: _SweepTally) -> None:
        """The Python path: build and write (or queue in `tally`) every due item of one
        stream."""
        assert stream.t0 is not None
        effective_now = now
        slow = session.slow_until > now
        if slow:
            effective_now = now - self.config.slow_delay_ms / 1000.0
        elapsed = effective_now - stream.t0
        chunks: list[bytes] = []
        stream_media = stream_audio = 0
        for track in stream.tracks:
            k = track.next_index
            if k >= track.total:
                continue
            period_s = track.period_s
            due = min(int((elapsed + 1e-9) / period_s) - track.late, track.total - 1)
            if due < k:
                continue
            msgs = track.build(k, due)
            chunks.extend(msgs)
            frames = due - k + 1
            stream_media += frames
            if track.is_audio:
                stream_audio += frames
                if not slow:
                    # frame j is late when now - (t0 + j * period) > period; the oldest
                    # frame of this batch is the latest
                    lag = now - (stream.t0 + k * period_s)
                    if lag > tally.max_lag_s:
                        tally.max_lag_s = lag
                    if lag > period_s + 1e-6:
                        last_late = math.ceil((now - stream.t0 - period_s - 1e-6)
                                              / period_s) - 1
                        tally.misses += min(due, last_late) - k + 1
            track.next_index = due + 1
        if not chunks:
            return
        if len(conn.outbuf) > conn.max_buffer_bytes:
            # a reader that does not read loses media, counted
            self.counters.messages_dropped_backpressure += len(chunks)
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if conn.batchable:  # plain TCP, nothing queued: one native call at the sweep's end
            tally.batch_conns.append(conn)
            tally.batch_frames.append(data)
        else:
            conn.send_raw_frames(data)
        tally.media_frames += stream_media
        tally.audio_frames += stream_audio
        tally.messages += len(chunks)

    # ---- the native sender's side of the sweep ----------------------------------------

    def _native_plan(self, voices: list[tuple[bytes, src.AudioSource | src.MixedAudioSource,
                                              tuple[dict[int, bytes], int, int] | None]],
                     period_ms: int, base_ms: int, samples_per_frame: int) -> _NativePlan | None:
        """How the native sender produces these voices' messages, or None when it cannot."""
        native = self._native
        if native is None:
            return None
        out = []
        for prefix, source, cache in voices:
            if cache is None or len(prefix) > PacedAudioSender.MAX_PREFIX_BYTES:
                return None
            table = self._native_table(native, source, cache, samples_per_frame)
            if table is None:
                return None
            out.append(AudioVoice(prefix, table, cache[1]))
        return _NativePlan(tuple(out), period_ms, base_ms, samples_per_frame)

    def _native_table(self, native: PacedAudioSender,
                      source: src.AudioSource | src.MixedAudioSource,
                      cache: tuple[dict[int, bytes], int, int], samples_per_frame: int,
                      ) -> int | None:
        """The native copy of a source's base64 cache, every entry filled from the source
        itself (so native frames carry exactly the Python path's bytes)."""
        by_offset, shift, loop_len = cache
        known = self._native_tables.get(id(by_offset))
        if known is not None:
            return known[1]
        step = math.gcd(samples_per_frame, loop_len)
        if shift % step:
            return None
        entries: list[bytes] = [b""] * (loop_len // step)
        # frames 0..len-1 start at every multiple of step once (k * spf mod loop cycles)
        for k in range(len(entries)):
            entries[((k * samples_per_frame + shift) % loop_len) // step] = \
                source.b64_payload(k)
        try:
            table = native.add_table(entries, step, loop_len)
        except ValueError:
            return None
        self._native_tables[id(by_offset)] = (by_offset, table)
        return table

    def _go_native(self, stream: MediaStream) -> bool:
        """Hand a stream to the native sender (False: it stays on the Python path)."""
        native, plan = self._native, stream.native_plan
        assert native is not None and plan is not None and stream.t0 is not None
        track = stream.tracks[0]
        conn = stream.peer.conn
        try:
            slot = native.add_stream(
                conn.fd, phase=stream.phase, opcode=self._opcode, t0_s=stream.t0,
                period_s=track.period_s, period_ms=plan.period_ms, base_ms=plan.base_ms,
                next_index=track.next_index, total=track.total,
                samples_per_frame=plan.samples_per_frame, voices=plan.voices)
        except (ValueError, MemoryError):
            stream.native_plan = None
            return False
        stream.native_slot = slot
        self._native_streams[slot] = stream
        conn.on_queue_or_close = functools.partial(self._leave_native, stream)
        del self._phase_streams[stream.phase][stream]
        return True

    def _leave_native(self, stream: MediaStream) -> None:
        """Take a stream back from the native sender (its socket got queued bytes, closed,
        or its session a fault); the Python sweep sends it from now on, and hands it back
        once it is clean."""
        slot = stream.native_slot
        if slot < 0 or self._native is None:
            return
        stream.native_slot = -1
        del self._native_streams[slot]
        stream.tracks[0].next_index = self._native.remove(slot)
        stream.peer.conn.on_queue_or_close = None
        if stream in self._streams:
            self._phase_streams[stream.phase][stream] = None

    def _on_sender_event(self, event: SenderEvent, now: float, tally: _SweepTally) -> None:
        stream = self._native_streams[event.slot]
        conn = stream.peer.conn
        if event.kind == PacedAudioSender.PARTIAL:
            assert self._native is not None
            self.counters.native_partial_sends += 1
            data = self._native.format_frames(event.slot, event.first_index, event.last_index)
            conn.queue_unsent(data[event.sent_bytes:])  # takes the stream off the sender
            self._leave_native(stream)
        elif event.kind == PacedAudioSender.ERROR:
            self._leave_native(stream)
            conn.close_socket()
        else:  # TOO_BIG: nothing sent, nothing counted; the Python path sends it now
            self._leave_native(stream)
            session = stream.peer.session
            if session is not None and not conn.closed:
                self._sweep_stream(stream, session, conn, now, tally)

    def _stream_done(self, stream: MediaStream) -> bool:
        """True when the stream has sent (or dropped) its last item."""
        if stream.native_slot >= 0 and self._native is not None:
            return self._native.next_index(stream.native_slot) >= stream.tracks[0].total
        return all(track.next_index >= track.total for track in stream.tracks)

    def _send_raw(self, peer: _Peer, body: bytes) -> None:
        if peer.conn.send_message(body, self._opcode):
            self.counters.messages_sent += 1
        else:
            self.counters.messages_dropped_backpressure += 1

    def _end_session(self, session: SimSession, reason: int, send_state: bool = True) -> None:
        if session.ended:
            return
        session.ended = True
        session.stop_reason = int(reason)
        self.counters.sessions_ended += 1
        # items that were due but never sent (stalls, backpressure drops) stay visible
        for stream in {id(s): s for s in session.media.values()}.values():
            if self._unschedule(stream):
                self._count_scheduled(stream, at_end=True)
        sig = session.signaling
        if sig is not None and send_state:
            if self.config.session_state_updates:
                self._send_json(sig, {
                    "msg_type": int(MsgType.SESSION_STATE_UPDATE),
                    "rtms_session_id": session.rtms_stream_id,
                    "state": int(SessionState.STOPPED), "reason": int(reason),
                    "timestamp": _epoch_ms()})
            self._send_json(sig, {"msg_type": int(MsgType.STREAM_STATE_UPDATE),
                                  "state": int(StreamState.TERMINATED), "reason": int(reason),
                                  "timestamp": _epoch_ms()})
        now = trio.current_time()
        for peer in session.peers():
            self._settle_keepalives(peer, now, final=False)
            self._close_after_flush(peer, 1000, "stream ended")
        if self.counters.sessions_ended >= len(self.sessions):
            self.all_ended.set()

    # ---- keep-alive, timeouts, random faults -------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        cfg = self.config
        period = min(_HOUSEKEEPING_S, cfg.keepalive_interval_s / 4)
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            self._housekeeping(now, period)

    def _housekeeping(self, now: float, period: float) -> None:
        cfg = self.config
        for peer in list(self._peers):
            conn = peer.conn
            if conn.closed or not conn.upgraded or peer.session is None:
                continue
            if conn.outbuf:  # control sockets are not in the media sweep
                conn.flush()
            session = peer.session
            if session.ended:
                continue
            timeout = cfg.signaling_timeout_s if peer.role == "signaling" else cfg.media_timeout_s
            if now - peer.last_rx > timeout:
                self.counters.keepalive_timeouts += 1
                if peer.role == "signaling":
                    self._end_session(session, StopReason.KEEP_ALIVE_TIMEOUT)
                else:
                    self._detach(peer)
                    self._close_after_flush(peer, 1000, "keep-alive timeout")
                continue
            if session.stalled_until > now or session.ka_silent_until > now:
                continue
            if now - peer.last_ka_sent >= cfg.keepalive_interval_s and (
                    cfg.keepalive_sockets in ("all", peer.role)):
                peer.last_ka_sent = now
                peer.ka_sequence += 1
                peer.ka_pending[peer.ka_sequence] = now
                self._send_json(peer, {"msg_type": int(MsgType.KEEP_ALIVE_REQ),
                                       "timestamp": _epoch_ms(), "sequence": peer.ka_sequence})
                self.counters.keepalives_sent += 1
        if cfg.join_timeout_s > 0:
            for session in self.sessions:
                if (session.ready_at is None and not session.ended
                        and now - self._started_at > cfg.join_timeout_s):
                    self._end_session(session, StopReason.CONNECTION_TIMEOUT)
        if cfg.random_fault_rate_hz > 0 and self._rng.random() < cfg.random_fault_rate_hz * period:
            live = [s for s in self.sessions if s.ready_at is not None and not s.ended]
            if live and cfg.random_fault_kinds:
                session = self._rng.choice(live)
                kind = self._rng.choice(list(cfg.random_fault_kinds))
                self.inject_fault(session.index, kind,
                                  target=self._rng.choice(["media", "signaling"]))

    # ---- faults ----------------------------------------------------------------------

    def inject_fault(self, session_index: int, kind: FaultKind, *, target: str = "media",
                     duration_s: float = math.inf) -> None:
        """Inject `kind` into session `session_index`.

        `target` picks the sockets for socket-level faults: "media", "signaling" or "all".
        `duration_s` bounds STALL, SLOW and KEEPALIVE_SILENCE (default: until the end).
        """
        session = self.sessions[session_index]
        self.counters.faults_injected += 1
        self.fault_log.append((session_index, kind, target))
        now = trio.current_time()
        until = now + duration_s
        if kind in (FaultKind.STALL, FaultKind.SLOW):
            if kind is FaultKind.STALL:
                session.stalled_until = until
            else:
                session.slow_until = until
            for stream in list(session.media.values()):
                self._leave_native(stream)  # the Python sweep knows these faults
            return
        if kind is FaultKind.KEEPALIVE_SILENCE:
            session.ka_silent_until = until
            return
        peers: list[_Peer] = []
        if target in ("signaling", "all") and session.signaling is not None:
            peers.append(session.signaling)
        if target in ("media", "all"):
            for stream in session.media.values():
                if stream.peer not in peers:
                    peers.append(stream.peer)
        for peer in peers:
            conn = peer.conn
            if kind is FaultKind.DROP_TCP:
                self._detach(peer)
                conn.abort()
            elif kind is FaultKind.CLOSE_1000:
                self._detach(peer)
                self._close_after_flush(peer, 1000, "closed by server")
            elif kind is FaultKind.CLOSE_1006:
                self._detach(peer)
                conn.close_socket()
            elif kind is FaultKind.MALFORMED:
                self._send_raw(peer, b'{"msg_type":14,"content":{"user_id":,,}')
            elif kind is FaultKind.TRUNCATED:
                body = self._content_prefix(14, src.participant_id(0),
                                            src.participant_name(0)) + b'AAAA","timestamp":1}}'
                self._send_raw(peer, body[: len(body) // 2])


class _SweepTally:
    """What one sweep sent, and the plain-TCP writes it batches into one native call."""

    __slots__ = ("audio_frames", "batch_conns", "batch_frames", "max_lag_s", "media_frames",
                 "messages", "misses")

    def __init__(self, max_lag_s: float) -> None:
        self.media_frames = self.audio_frames = self.messages = self.misses = 0
        self.max_lag_s = max_lag_s
        self.batch_conns: list[ServerConnection] = []
        self.batch_frames: list[bytes] = []


def _per_item(build_one: Callable[[int], bytes]) -> Callable[[int, int], list[bytes]]:
    def build(k0: int, k1: int) -> list[bytes]:
        return [build_one(k) for k in range(k0, k1 + 1)]

    return build


def _video_answer(request: Any, fps: int, with_data_opt: bool) -> dict[str, Any]:
    answer: dict[str, Any] = {"content_type": 3, "codec": 5, "resolution": 2, "fps": fps}
    if with_data_opt:
        answer["data_opt"] = 3
    if isinstance(request, dict):
        for key in answer:
            if isinstance(request.get(key), int):
                answer[key] = request[key]
    return answer


@asynccontextmanager
async def run_simulator(config: SimConfig) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of the block; cancels and closes it on exit."""
    sim = Simulator(config)
    async with trio.open_nursery() as nursery:
        try:
            await sim.start(nursery)
            yield sim
        finally:
            nursery.cancel_scope.cancel()
            sim.close()
