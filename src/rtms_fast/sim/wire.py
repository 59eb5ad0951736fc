"""Server-side WebSocket connections for the simulator, over raw non-blocking sockets.

The upgrade, incoming frames and close handshake go through wsproto (sans-IO); outgoing
data frames are framed here (server frames are unmasked, so a frame is a 2-10 byte header
plus the payload) and written with non-blocking `send` calls, so one sweep task can feed
thousands of sockets without a task switch per message. TLS is an `ssl.SSLObject` over a
pair of `MemoryBIO`s, driven synchronously. `PacedAudioSender` is the native paced sender
that writes audio frames straight to many plain-TCP sockets in one call; a connection tells
it to stop (`on_queue_or_close`) before any byte could overtake another. This module must
never block: a socket that does not take bytes gets them buffered (up to a cap, then dropped
and counted).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import trio
import wsproto
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from rtms_fast.native import ffi, lib

__all__ = [
    "OP_BINARY",
    "OP_TEXT",
    "AudioVoice",
    "PacedAudioSender",
    "SenderEvent",
    "ServerConnection",
    "SweepTotals",
    "frame_header",
    "send_frames_batch",
]

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
_RECV_BYTES: Final = 65536
_MAX_MESSAGE_BYTES: Final = 1 << 20  # client messages are small JSON
_PROTOCOL_ERROR_CODES: Final = frozenset({1002, 1007, 1009})


def frame_header(opcode: int, length: int) -> bytes:
    """Header of one final, unmasked frame (RFC 6455 section 5.2)."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, length)
    return struct.pack("!BBQ", 0x80 | opcode, 127, length)


class ServerConnection:
    """One accepted TCP (or TLS) connection speaking WebSocket as the server.

    `receive()` waits for bytes and returns wsproto events (complete messages only);
    `send_message()` frames and writes at once; `flush()` retries buffered bytes.
    """

    def __init__(
        self,
        sock: socket.socket,
        ssl_context: ssl.SSLContext | None,
        max_buffer_bytes: int,
    ) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.fd = sock.fileno()
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        self.path = ""
        self.max_buffer_bytes = max_buffer_bytes
        self.outbuf = bytearray()
        self.closed = False
        self.upgraded = False
        self.bytes_buffered_total = 0  # bytes that did not fit the socket at once
        self.messages_dropped = 0  # dropped because the buffer was over its cap
        self.protocol_errors = 0  # bad HTTP or WebSocket framing from the client
        self.messages_too_big = 0  # client messages over _MAX_MESSAGE_BYTES, dropped
        # Set by a writer that bypasses this object (the native paced sender), which is
        # only safe while nothing is queued: called once, then cleared, when bytes get
        # queued in `outbuf` or the connection closes (before its descriptor is freed).
        self.on_queue_or_close: Callable[[], None] | None = None
        # awaited between "readable" and the read: lets the owner bound how much control
        # work runs between two media sweeps
        self.read_gate: Callable[[], Awaitable[None]] | None = None
        self.closed_event = trio.Event()  # set when the connection closes
        self._text_parts: list[str] = []
        self._bytes_parts: list[bytes] = []
        self._tls: ssl.SSLObject | None = None
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._tls_handshaken = False
        if ssl_context is not None:
            self._tls = ssl_context.wrap_bio(self._tls_in, self._tls_out, server_side=True)

    # ---- writing -------------------------------------------------------------------

    def _write_transport(self, data: bytes | bytearray) -> None:
        """Write bytes below the WebSocket layer (through TLS when on)."""
        if self.closed:
            return
        if self._tls is not None:
            if data:
                self._tls.write(data)
            data = self._tls_out.read()
        if not data:
            return
        if self.outbuf:
            self.outbuf += data
            self.flush()
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._mark_dead()
            return
        if sent < len(data):
            self.queue_unsent(data[sent:])

    def queue_unsent(self, data: bytes | bytearray) -> None:
        """Queue bytes a direct write did not get out (they go before anything later)."""
        if not data or self.closed:
            return
        self.outbuf += data
        self.bytes_buffered_total += len(data)
        self._release_bypass()

    def _release_bypass(self) -> None:
        hook = self.on_queue_or_close
        if hook is not None:
            self.on_queue_or_close = None
            hook()

    def flush(self) -> None:
        """Send what is buffered, without blocking."""
        while self.outbuf and not self.closed:
            try:
                sent = self.sock.send(self.outbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._mark_dead()
                return
            if sent == 0:
                return
            del self.outbuf[:sent]

    def over_cap(self) -> bool:
        return len(self.outbuf) > self.max_buffer_bytes

    def send_message(self, payload: bytes, opcode: int = OP_TEXT) -> bool:
        """Frame and write one message; False (and counted) when dropped for backpressure."""
        if self.closed or not self.upgraded:
            return False
        if len(self.outbuf) > self.max_buffer_bytes:
            self.messages_dropped += 1
            return False
        self._write_transport(frame_header(opcode, len(payload)) + payload)
        return True

    def send_raw_frames(self, data: bytes) -> None:
        """Write pre-framed bytes (one or more complete frames)."""
        if self.closed or not self.upgraded:
            return
        self._write_transport(data)

    @property
    def batchable(self) -> bool:
        """True when a write can go through `send_frames_batch` (plain TCP, nothing queued)."""
        return self._tls is None and not self.outbuf and not self.closed and self.upgraded

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed or self.ws.state not in (
            ConnectionState.OPEN,
            ConnectionState.REMOTE_CLOSING,
        ):
            return
        self._write_transport(self.ws.send(CloseConnection(code=code, reason=reason)))

    async def drain(self, timeout_s: float) -> None:
        """Wait (bounded) until the buffered bytes are on the wire."""
        with trio.move_on_after(timeout_s):
            while self.outbuf and not self.closed:
                try:
                    await trio.lowlevel.wait_writable(self.sock)
                except trio.ClosedResourceError:
                    return
                self.flush()

    # ---- reading -------------------------------------------------------------------

    async def receive(self) -> list[Event]:
        """Wait for bytes and return the events they complete (empty list at EOF)."""
        while not self.closed:
            try:
                data = self.sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                try:
                    await trio.lowlevel.wait_readable(self.sock)
                except trio.ClosedResourceError:  # closed by a fault or a session end
                    return []
                if self.read_gate is not None:
                    await self.read_gate()
                continue
            except OSError:
                self._mark_dead()
                return []
            if not data:
                return []
            events = self._feed(data)
            if events or self.closed:
                return events
        return []

    def _feed(self, data: bytes) -> list[Event]:
        if self._tls is not None:
            self._tls_in.write(data)
            if not self._tls_handshaken:
                try:
                    self._tls.do_handshake()
                    self._tls_handshaken = True
                except ssl.SSLWantReadError:
                    self._write_transport(b"")
                    return []
                except ssl.SSLError:
                    self._mark_dead()
                    return []
                self._write_transport(b"")
            chunks = []
            while True:
                try:
                    chunk = self._tls.read(_RECV_BYTES)
                except ssl.SSLWantReadError:
                    break
                except (ssl.SSLZeroReturnError, ssl.SSLError):
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
            if not data:
                return []
        try:
            self.ws.receive_data(data)
            return self._events()
        except RemoteProtocolError:
            # bad HTTP or a WebSocket protocol violation: this connection only
            self.protocol_errors += 1
            if self.upgraded:
                with contextlib.suppress(LocalProtocolError):
                    self._write_transport(self.ws.send(CloseConnection(code=1002)))
            self._mark_dead()
            return []

    def _events(self) -> list[Event]:
        out: list[Event] = []
        for event in self.ws.events():
            if isinstance(event, Request):
                self.path = event.target
                out.append(event)
            elif isinstance(event, TextMessage):
                self._text_parts.append(event.data)
                if sum(len(p) for p in self._text_parts) > _MAX_MESSAGE_BYTES:
                    self._text_parts.clear()
                    self.messages_too_big += 1
                    continue
                if event.message_finished:
                    out.append(TextMessage(data="".join(self._text_parts)))
                    self._text_parts.clear()
            elif isinstance(event, BytesMessage):
                self._bytes_parts.append(bytes(event.data))
                if sum(len(p) for p in self._bytes_parts) > _MAX_MESSAGE_BYTES:
                    self._bytes_parts.clear()
                    self.messages_too_big += 1
                    continue
                if event.message_finished:
                    out.append(BytesMessage(data=b"".join(self._bytes_parts)))
                    self._bytes_parts.clear()
            elif isinstance(event, Ping):
                self._write_transport(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if event.code in _PROTOCOL_ERROR_CODES:  # wsproto's parser reports these
                    self.protocol_errors += 1
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self._write_transport(self.ws.send(event.response()))
                out.append(event)
            else:
                out.append(event)
        return out

    def accept(self) -> None:
        self._write_transport(self.ws.send(AcceptConnection()))
        self.upgraded = True

    def reject(self, status: int = 404) -> None:
        self._write_transport(self.ws.send(RejectConnection(status_code=status)))

    # ---- closing -------------------------------------------------------------------

    def _mark_dead(self) -> None:
        if not self.closed:
            self._release_bypass()  # before the descriptor can be reused
            self.closed = True
            self.closed_event.set()
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()

    def close_socket(self) -> None:
        """Close the TCP connection (FIN), with or without a close frame sent before."""
        self._mark_dead()

    def abort(self) -> None:
        """Drop the TCP connection with a reset (no FIN, no close frame)."""
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._mark_dead()


def send_frames_batch(conns: list[ServerConnection], frames: list[bytes]) -> None:
    """Write ``frames[i]`` (complete pre-framed bytes) to ``conns[i]`` with one native call.

    Every connection must be `batchable`. What a socket did not take is queued in its
    ``outbuf`` (as `send_raw_frames` does); a socket that failed is marked dead.
    """
    n = len(conns)
    if n == 0:
        return
    lens = [len(f) for f in frames]
    data = b"".join(frames)
    results = ffi.new("int64_t[]", n)
    complete = lib.rtms_send_batch(ffi.new("int[]", [c.fd for c in conns]),
                                   ffi.from_buffer("uint8_t[]", data),
                                   ffi.new("size_t[]", lens), n, results)
    if complete == n:
        return
    for i, sent in enumerate(ffi.unpack(results, n)):
        if sent == lens[i]:
            continue
        conn = conns[i]
        if sent < 0:
            conn._mark_dead()
        else:
            conn.queue_unsent(frames[i][sent:])


# ---- the native paced audio sender ---------------------------------------------------------

_EVENT_PARTIAL: Final[int] = lib.RTMS_SIM_EV_PARTIAL
_EVENT_ERROR: Final[int] = lib.RTMS_SIM_EV_ERROR
_EVENT_TOO_BIG: Final[int] = lib.RTMS_SIM_EV_TOO_BIG


@dataclass(frozen=True, slots=True)
class AudioVoice:
    """One message per frame of a stream: a constant JSON prefix and a payload table."""

    prefix: bytes  # up to the opening quote of "data"
    table: int  # from `PacedAudioSender.add_table`
    frame_offset: int  # loop position (in samples) of frame 0


class SenderEvent(NamedTuple):
    """A stream the sweep could not finish; it is paused until removed."""

    slot: int
    kind: int  # PacedAudioSender.PARTIAL | ERROR | TOO_BIG
    first_index: int  # frames of the send, inclusive
    last_index: int
    sent_bytes: int  # PARTIAL: bytes the socket took (0: it would block); ERROR: -errno
    total_bytes: int


class SweepTotals(NamedTuple):
    frames: int  # frames sent (a partial send or a failed socket counts as sent)
    messages: int  # frames x voices
    misses: int  # frames sent more than one period after they were due
    sends: int
    bytes: int
    max_lag_s: float
    events: list[SenderEvent]


class PacedAudioSender:
    """Native sender of paced audio messages (csrc/sim_sender.c): per registered stream a
    socket, JSON prefixes, base64 payload tables and a frame clock; `sweep` formats and
    sends every due frame of every stream in one call.

    Streams that do not complete (partial send, would-block, socket error, too many frames
    at once) come back as `SenderEvent`s and are paused until `remove`d: the caller queues
    the rest (`format_frames(...)[sent:]`) and sends that stream itself from then on.
    """

    PARTIAL: Final = _EVENT_PARTIAL
    ERROR: Final = _EVENT_ERROR
    TOO_BIG: Final = _EVENT_TOO_BIG
    MAX_PREFIX_BYTES: Final[int] = lib.RTMS_SIM_MAX_PREFIX
    MAX_VOICES: Final[int] = lib.RTMS_SIM_MAX_VOICES

    def __init__(self, scratch_bytes: int = 1 << 20) -> None:
        handle = lib.rtms_sim_sender_new(scratch_bytes)
        if handle == ffi.NULL:
            raise OSError("the native paced sender is not available on this platform")
        self._handle: Any = ffi.gc(handle, lib.rtms_sim_sender_free)
        self._totals: Any = ffi.new("rtms_sim_sweep_result *")
        self._params: Any = ffi.new("rtms_sim_stream_params *")

    @staticmethod
    def available() -> bool:
        handle = lib.rtms_sim_sender_new(0)
        if handle == ffi.NULL:
            return False
        lib.rtms_sim_sender_free(handle)
        return True

    def __len__(self) -> int:
        return int(lib.rtms_sim_sender_count(self._handle))

    def add_table(self, entries: Sequence[bytes], step: int, loop_samples: int) -> int:
        """Copy a payload table (entry i is the base64 for loop position i * step; all
        entries the same length) and return its id."""
        if not entries or len({len(e) for e in entries}) != 1:
            raise ValueError("a payload table needs entries of one length")
        data = b"".join(entries)
        table = int(lib.rtms_sim_sender_add_table(
            self._handle, ffi.from_buffer("uint8_t[]", data), len(entries[0]), len(entries),
            step, loop_samples))
        _check_sender_result(table)
        return table

    def add_stream(self, fd: int, *, phase: int, opcode: int, t0_s: float, period_s: float,
                   period_ms: int, base_ms: int, next_index: int, total: int,
                   samples_per_frame: int, voices: Sequence[AudioVoice]) -> int:
        """Register a stream; returns its slot. Frame k is due at t0_s + k * period_s."""
        if not 1 <= len(voices) <= self.MAX_VOICES:
            raise ValueError(f"a stream has 1..{self.MAX_VOICES} voices")
        p = self._params
        p.fd, p.phase, p.opcode, p.n_voices = fd, phase, opcode, len(voices)
        p.t0_s, p.period_s, p.period_ms, p.base_ms = t0_s, period_s, period_ms, base_ms
        p.next_index, p.total, p.samples_per_frame = next_index, total, samples_per_frame
        keep = []
        for i, voice in enumerate(voices):
            prefix = ffi.from_buffer("uint8_t[]", voice.prefix)
            keep.append(prefix)
            p.voices[i].prefix = prefix
            p.voices[i].prefix_len = len(voice.prefix)
            p.voices[i].table = voice.table
            p.voices[i].frame_offset = voice.frame_offset
        slot = int(lib.rtms_sim_sender_add(self._handle, p))
        del keep  # the prefixes were copied
        _check_sender_result(slot)
        return slot

    def remove(self, slot: int) -> int:
        """Unregister a stream; returns the index of its first frame not sent."""
        next_index = int(lib.rtms_sim_sender_remove(self._handle, slot))
        _check_sender_result(next_index)
        return next_index

    def next_index(self, slot: int) -> int:
        next_index = int(lib.rtms_sim_sender_next_index(self._handle, slot))
        _check_sender_result(next_index)
        return next_index

    def sweep(self, now_s: float, phase_mask: int, max_lag_s: float) -> SweepTotals:
        """Send every due frame of the streams whose phase bit is in `phase_mask`."""
        t = self._totals
        t.frames = t.messages = t.misses = t.sends = t.bytes = 0
        t.max_lag_s = max_lag_s
        n = lib.rtms_sim_sender_sweep(self._handle, now_s, phase_mask, t)
        events: list[SenderEvent] = []
        if n:
            raw = lib.rtms_sim_sender_events(self._handle)
            events = [SenderEvent(e.slot, e.kind, e.first_index, e.last_index, e.sent_bytes,
                                  e.total_bytes) for e in (raw[i] for i in range(n))]
        return SweepTotals(t.frames, t.messages, t.misses, t.sends, t.bytes, t.max_lag_s,
                           events)

    def format_frames(self, slot: int, first: int, last: int) -> bytes:
        """The bytes a sweep sends for frames first..last of `slot`, without sending."""
        size = 4096 * (last - first + 1)
        while True:
            out = bytearray(size)
            n = int(lib.rtms_sim_sender_format(self._handle, slot, first, last,
                                               ffi.from_buffer("uint8_t[]", out), size))
            if n != lib.RTMS_SIM_ESPACE:
                _check_sender_result(n)
                return bytes(out[:n])
            size *= 4


def _check_sender_result(value: int) -> None:
    if value == lib.RTMS_SIM_ENOMEM:
        raise MemoryError("the native paced sender is out of memory")
    if value < 0:
        raise ValueError(f"the native paced sender refused the request (error {value})")
