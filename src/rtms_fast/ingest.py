"""The batched ingest kernel from Python: media WebSocket bytes in, audio in rings out.

One ``IngestConnection`` per media socket holds the native state negotiated for it
(codec, content type, rates, ring settings, participant table). ``IngestBatch.run``
hands the bytes that every ready socket returned in one sweep (after TLS) to ONE
native call, which parses the WebSocket frames, reassembles fragments, scans the JSON
envelopes, decodes base64, strips RTP, decodes L16 / G.711 (G.722 when built),
resamples to the consumer's rate and appends each participant's audio to its own
``AudioRing``. What Python must see comes back as ``IngestRecord`` objects: control
frames (ping, pong, close), non-audio messages (keep-alives, events, transcripts...),
new participants (wrap their ring with ``IngestConnection.ring``) and errors.

For each connection the batch reports the bytes consumed (whole frames); the caller
keeps the rest and prepends it to the next read. If the record array fills up the
kernel stops cleanly (``BatchResult.call_again``): process the records, call again
with the remainders; nothing is lost.

Per message this module does no Python work at all for audio; it must never copy
audio, allocate per message, or call up into sessions (it returns records).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtms_fast.native import ffi, lib
from rtms_fast.ring import AudioRing, MemoryBudget, RingOverflowPolicy, RingStats
from rtms_fast.wire import ErrorCode, json_unescape

__all__ = [
    "BatchResult",
    "Codec",
    "ContentType",
    "IngestBatch",
    "IngestConfig",
    "IngestConnection",
    "IngestError",
    "IngestRecord",
    "IngestStats",
    "ParticipantInfo",
    "RecordKind",
    "SampleFormat",
    "ingest_batch",
]


class Codec(enum.IntEnum):
    """Audio codecs the kernel decodes (values of the C ``RTMS_CODEC_*``)."""

    L16 = 1  #: 16-bit signed little-endian PCM (RTMS codec 1)
    PCMA = 2  #: G.711 A-law (RTMS codec 2, RTP payload type 8)
    G722 = 3  #: G.722 (RTMS codec 3, RTP payload type 9)
    PCMU = 100  #: G.711 mu-law (RTP payload type 0)


class ContentType(enum.IntEnum):
    """How the audio sits in ``content.data`` (RTMS content_type)."""

    RTP = 1  #: one RTP packet per message (RFC 3550 header stripped here)
    RAW = 2  #: bare codec bytes


class SampleFormat(enum.IntEnum):
    """What the rings hold."""

    INT16 = 0
    FLOAT32 = 1  #: int16 / 32768


class RecordKind(enum.IntEnum):
    """What an ``IngestRecord`` reports."""

    CONTROL = 1  #: a ping, pong or close frame; ``payload`` is its payload
    MESSAGE = 2  #: a complete non-audio message; ``payload`` is the whole message
    NEW_PARTICIPANT = 3  #: a new slot and ring; wrap it with ``IngestConnection.ring``
    ERROR = 4  #: a message (or, if ``fatal``, the connection) failed; see ``error``


class IngestError(RuntimeError):
    """A connection could not be created (bad or unsupported configuration)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestConfig:
    """What was negotiated for one media connection, plus the ring settings.

    Rates are in Hz, durations in ms. ``ring_capacity_ms`` is converted to items at
    the output rate (times ``channels``). ``max_gap_ms`` bounds the silence inserted
    for one gap (RTP loss or a timestamp jump with ``fill_gaps``); longer gaps are
    counted (``gaps_too_long``) and left out. ``allow_masked`` accepts masked frames,
    which servers never send: it exists for simulator tests only.
    """

    codec: Codec = Codec.L16
    content_type: ContentType = ContentType.RAW
    input_rate_hz: int = 16000
    channels: int = 1
    output_rate_hz: int | None = None  #: None: the input rate
    sample_format: SampleFormat = SampleFormat.INT16
    ring_capacity_ms: int = 2000
    ring_policy: RingOverflowPolicy = RingOverflowPolicy.DROP_OLDEST
    max_participants: int = 64
    max_message_bytes: int = 1 << 20
    mixed: bool = False
    fill_gaps: bool = True
    max_gap_ms: int = 5000
    rtp_payload_type: int | None = None  #: None: the codec's static payload type
    allow_masked: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {self.channels}")
        if self.ring_capacity_ms <= 0:
            raise ValueError(f"ring_capacity_ms must be > 0, got {self.ring_capacity_ms}")
        if not 1 <= self.max_participants <= 1 << 20:
            raise ValueError(f"max_participants must be 1..{1 << 20}, got {self.max_participants}")
        if not 16 <= self.max_message_bytes <= 1 << 30:
            raise ValueError(f"max_message_bytes must be 16..2**30, got {self.max_message_bytes}")
        if self.max_gap_ms < 0:
            raise ValueError(f"max_gap_ms must be >= 0, got {self.max_gap_ms}")
        if self.rtp_payload_type is not None and not 0 <= self.rtp_payload_type <= 127:
            raise ValueError(f"rtp_payload_type must be 0..127, got {self.rtp_payload_type}")

    @property
    def out_rate_hz(self) -> int:
        """The rings' sample rate."""
        return self.output_rate_hz if self.output_rate_hz is not None else self.input_rate_hz

    @property
    def ring_capacity_items(self) -> int:
        """``ring_capacity_ms`` in ring items (samples of all channels)."""
        return max(1, self.ring_capacity_ms * self.out_rate_hz * self.channels // 1000)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The rings' numpy dtype."""
        return np.dtype(np.float32 if self.sample_format == SampleFormat.FLOAT32 else np.int16)


@dataclass(frozen=True, slots=True)
class IngestStats:
    """One connection's counters since creation (``errors`` by ``ErrorCode``)."""

    bytes_consumed: int
    frames: int
    control_frames: int
    messages: int  #: complete data messages
    audio_messages: int  #: msg_type 14
    audio_ingested: int  #: audio messages decoded into a ring
    other_messages: int  #: returned as MESSAGE records
    message_errors: int  #: audio messages returned as ERROR records
    samples_out: int  #: items offered to rings, silence included
    silence_samples: int
    ring_dropped: int  #: items a ring refused (drop-newest / backpressure)
    rtp_lost: int
    rtp_late: int
    rtp_duplicate: int
    rtp_resync: int
    gaps_filled: int
    gaps_too_long: int
    slots_created: int
    slots_refused: int
    errors_total: int
    errors: dict[ErrorCode, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """One participant slot: its key and timeline.

    ``position_at_last_timestamp`` is the number of ring items produced before the
    last audio message, whose ``timestamp_ms`` is ``last_timestamp_ms``: the pair
    maps ring positions to sender time (latency measurement, timeline alignment).
    """

    slot: int
    user_id: int | None
    channel_id: str | None
    last_timestamp_ms: int | None
    position_at_last_timestamp: int
    items_produced: int
    silence_items: int
    messages: int
    rtp_lost: int
    rtp_late: int
    rtp_duplicate: int


@dataclass(frozen=True, slots=True)
class IngestRecord:
    """One thing the kernel returned (see ``RecordKind``).

    ``payload`` holds the frame payload (CONTROL) or the whole message (MESSAGE,
    ERROR of a message) as a copy, valid forever. For NEW_PARTICIPANT, ``user_id`` or
    ``channel_id`` (the key) and ``user_name`` are decoded, ``payload`` is empty, and
    ``slot`` indexes ``IngestConnection.ring``. ``offset``/``length`` locate the
    payload in the caller's buffer unless ``in_connection_buffer`` (reassembled or
    unmasked data). ``error`` on a MESSAGE says why the native scanner could not
    read it (the control plane may still parse it); on an ERROR it says why the
    audio was dropped, and ``fatal`` means the connection's byte stream is unusable
    (close the socket, or ``reset()`` for a new one).
    """

    conn: int
    kind: RecordKind
    error: ErrorCode
    opcode: int
    msg_type: int
    slot: int
    user_id: int | None
    channel_id: str | None
    user_name: str | None
    timestamp_ms: int
    payload: bytes
    offset: int
    length: int
    in_connection_buffer: bool
    fatal: bool


class IngestConnection:
    """The native ingest state of one media connection.

    Create it when the media handshake has fixed the audio format. Rings are created
    in native code on each new participant's first message (a NEW_PARTICIPANT
    record) and reached through ``ring(slot)``. After a reconnect, ``reset()`` clears
    the framing state and keeps the participants, their rings and the counters.
    Not thread-safe: one batch at a time touches a connection.
    """

    __slots__ = ("_budget", "_handle", "_rings", "config")

    def __init__(self, config: IngestConfig, budget: MemoryBudget | None = None) -> None:
        cfg = ffi.new("rtms_ingest_config *")
        cfg.codec = int(config.codec)
        cfg.content_type = int(config.content_type)
        cfg.input_rate_hz = config.input_rate_hz
        cfg.channels = config.channels
        cfg.output_rate_hz = config.out_rate_hz
        cfg.sample_format = int(config.sample_format)
        cfg.ring_policy = int(config.ring_policy)
        cfg.max_participants = config.max_participants
        cfg.mixed = int(config.mixed)
        cfg.fill_gaps = int(config.fill_gaps)
        cfg.allow_masked = int(config.allow_masked)
        cfg.rtp_payload_type = -1 if config.rtp_payload_type is None else config.rtp_payload_type
        cfg.ring_capacity_items = config.ring_capacity_items
        cfg.max_message_bytes = config.max_message_bytes
        cfg.max_gap_ms = config.max_gap_ms
        cfg.budget = ffi.NULL if budget is None else budget._handle
        error = ffi.new("int *")
        raw = lib.rtms_ingest_conn_new(cfg, error)
        if raw == ffi.NULL:
            if error[0] == -lib.RTMS_ERR_INGEST_CODEC:
                raise IngestError(
                    f"unsupported: {config.codec.name} at {config.input_rate_hz} Hz -> "
                    f"{config.out_rate_hz} Hz"
                )
            if error[0] == -2:
                raise MemoryError("cannot allocate an ingest connection")
            raise IngestError(f"invalid ingest configuration: {config!r}")
        self._handle: Any = ffi.gc(raw, lib.rtms_ingest_conn_free)
        self._budget = budget  # the native connection charges new rings to it
        self._rings: dict[int, AudioRing] = {}
        self.config = config

    @property
    def native_handle(self) -> Any:
        """The ``rtms_ingest_conn *`` (for the batch arrays)."""
        return self._handle

    def reset(self) -> None:
        """Forget framing and reassembly state (a new socket for the same stream)."""
        lib.rtms_ingest_conn_reset(self._handle)

    @property
    def participant_count(self) -> int:
        """Slots created so far."""
        return int(lib.rtms_ingest_conn_slot_count(self._handle))

    def ring(self, slot: int) -> AudioRing:
        """The ring of participant ``slot`` (wrapped once, then cached)."""
        ring = self._rings.get(slot)
        if ring is None:
            ptr = lib.rtms_ingest_slot_ring(self._handle, slot)
            if ptr == ffi.NULL:
                raise IndexError(f"no participant slot {slot}")
            ring = AudioRing._from_native(ptr, self.config.dtype)
            self._rings[slot] = ring
        return ring

    def participant(self, slot: int) -> ParticipantInfo:
        """Key and timeline of participant ``slot``."""
        info = ffi.new("rtms_ingest_slot_info *")
        if lib.rtms_ingest_slot_get_info(self._handle, slot, info) < 0:
            raise IndexError(f"no participant slot {slot}")
        kind = int(info.key_kind)
        channel = bytes(info.key[0 : info.key_len]).decode("utf-8", "replace")
        return ParticipantInfo(
            slot=slot,
            user_id=int(info.user_id) if kind == 1 else None,
            channel_id=channel if kind == 2 else None,
            last_timestamp_ms=int(info.last_timestamp_ms) if info.last_timestamp_ms >= 0 else None,
            position_at_last_timestamp=int(info.position_at_last_timestamp),
            items_produced=int(info.items_produced),
            silence_items=int(info.silence_items),
            messages=int(info.messages),
            rtp_lost=int(info.rtp_lost),
            rtp_late=int(info.rtp_late),
            rtp_duplicate=int(info.rtp_duplicate),
        )

    def ring_stats(self) -> dict[int, RingStats]:
        """Every participant ring's counters, by slot."""
        return {slot: self.ring(slot).stats() for slot in range(self.participant_count)}

    def stats(self) -> IngestStats:
        """A snapshot of the connection's counters."""
        s = ffi.new("rtms_ingest_stats *")
        lib.rtms_ingest_conn_stats(self._handle, s)
        errors = {ErrorCode(code): int(s.errors[code]) for code in ErrorCode if s.errors[code]}
        return IngestStats(
            bytes_consumed=int(s.bytes_consumed),
            frames=int(s.frames),
            control_frames=int(s.control_frames),
            messages=int(s.messages),
            audio_messages=int(s.audio_messages),
            audio_ingested=int(s.audio_ingested),
            other_messages=int(s.other_messages),
            message_errors=int(s.message_errors),
            samples_out=int(s.samples_out),
            silence_samples=int(s.silence_samples),
            ring_dropped=int(s.ring_dropped),
            rtp_lost=int(s.rtp_lost),
            rtp_late=int(s.rtp_late),
            rtp_duplicate=int(s.rtp_duplicate),
            rtp_resync=int(s.rtp_resync),
            gaps_filled=int(s.gaps_filled),
            gaps_too_long=int(s.gaps_too_long),
            slots_created=int(s.slots_created),
            slots_refused=int(s.slots_refused),
            errors_total=int(s.errors_total),
            errors=errors,
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch call produced: records, and bytes consumed per input.

    ``call_again``: some connection stopped before the end of its complete frames,
    either because the record array was full (``records_full``) or right after a
    record whose payload lives in a connection buffer (a reassembled or unmasked
    message, copied into the record by now). Handle the records, then call again
    with the remainders; nothing is lost.
    """

    records: list[IngestRecord]
    consumed: list[int]
    records_full: bool
    call_again: bool


_FLAG_IN_REASSEMBLY = 1
_FLAG_IN_CONTROL = 2
_FLAG_NAME_ESCAPED = 4
_FLAG_FATAL = 8


def _text(raw: bytes, escaped: bool) -> str:
    try:
        return (json_unescape(raw) if escaped else raw).decode("utf-8", "replace")
    except ValueError:
        return raw.decode("utf-8", "replace")


class IngestBatch:
    """Reusable native arrays for ``run``: create once per sweeping task.

    ``max_connections`` bounds the inputs of one call; ``max_records`` the records it
    can return before stopping early (``records_full``).
    """

    __slots__ = (
        "_bufs",
        "_conns",
        "_consumed",
        "_lens",
        "_records",
        "_status",
        "max_connections",
        "max_records",
    )

    def __init__(self, max_connections: int = 1024, max_records: int = 4096) -> None:
        if max_connections < 1 or max_records < 2:
            raise ValueError("need max_connections >= 1 and max_records >= 2")
        self.max_connections = max_connections
        self.max_records = max_records
        self._conns = ffi.new("rtms_ingest_conn *[]", max_connections)
        self._bufs = ffi.new("const uint8_t *[]", max_connections)
        self._lens = ffi.new("size_t[]", max_connections)
        self._consumed = ffi.new("size_t[]", max_connections)
        self._records = ffi.new("rtms_ingest_record[]", max_records)
        self._status = ffi.new("uint32_t *")

    def run(
        self, inputs: Sequence[tuple[IngestConnection, bytes | bytearray | memoryview]]
    ) -> BatchResult:
        """Ingest every ``(connection, bytes read)`` pair in one native call.

        Each connection may appear once per call. Audio lands in the rings; the
        result lists the records and, per input, the bytes consumed.
        """
        n = len(inputs)
        if n > self.max_connections:
            raise ValueError(f"{n} inputs, this batch holds {self.max_connections}")
        keep: list[Any] = []  # buffers stay pinned until the call returns
        for i, (conn, data) in enumerate(inputs):
            buf = ffi.from_buffer("uint8_t[]", data)
            keep.append(buf)
            self._conns[i] = conn._handle
            self._bufs[i] = buf
            self._lens[i] = len(buf)
        count = lib.rtms_ingest_batch(
            self._conns,
            self._bufs,
            self._lens,
            n,
            self._consumed,
            self._records,
            self.max_records,
            self._status,
        )
        records = [self._record(self._records[k], inputs) for k in range(count)]
        consumed = [int(self._consumed[i]) for i in range(n)]
        status = int(self._status[0])
        return BatchResult(
            records,
            consumed,
            records_full=bool(status & lib.RTMS_BATCH_RECORDS_FULL),
            call_again=bool(status & lib.RTMS_BATCH_CALL_AGAIN),
        )

    @staticmethod
    def _record(
        rec: Any, inputs: Sequence[tuple[IngestConnection, bytes | bytearray | memoryview]]
    ) -> IngestRecord:
        conn, data = inputs[rec.conn]
        flags = int(rec.flags)
        view = memoryview(data).cast("B")
        if flags & _FLAG_IN_REASSEMBLY:
            source: Any = ffi.buffer(
                lib.rtms_ingest_conn_reassembly(conn._handle), conn.config.max_message_bytes
            )
        elif flags & _FLAG_IN_CONTROL:
            source = ffi.buffer(lib.rtms_ingest_conn_control(conn._handle), 125)
        else:
            source = view
        off, length = int(rec.offset), int(rec.length)
        kind = RecordKind(rec.kind)
        user_name = channel_id = None
        user_id: int | None = None
        if kind == RecordKind.NEW_PARTICIPANT:
            name_raw = bytes(source[rec.name_offset : rec.name_offset + rec.name_length])
            user_name = _text(name_raw, bool(flags & _FLAG_NAME_ESCAPED))
            if rec.key_kind == 1:
                user_id = int(rec.user_id)
            elif rec.key_kind == 2:
                channel_id = _text(bytes(source[off : off + length]), True)
            payload = b""
        else:
            payload = bytes(source[off : off + length])
        return IngestRecord(
            conn=int(rec.conn),
            kind=kind,
            error=ErrorCode(rec.error),
            opcode=int(rec.opcode),
            msg_type=int(rec.msg_type),
            slot=int(rec.slot),
            user_id=user_id,
            channel_id=channel_id,
            user_name=user_name,
            timestamp_ms=int(rec.timestamp_ms),
            payload=payload,
            offset=off,
            length=length,
            in_connection_buffer=bool(flags & (_FLAG_IN_REASSEMBLY | _FLAG_IN_CONTROL)),
            fatal=bool(flags & _FLAG_FATAL),
        )


def ingest_batch(
    inputs: Sequence[tuple[IngestConnection, bytes | bytearray | memoryview]],
    max_records: int = 1024,
) -> BatchResult:
    """One-off ``IngestBatch(len(inputs), max_records).run(inputs)``; sweeping code
    should keep an ``IngestBatch`` instead of allocating its arrays every call."""
    return IngestBatch(max(1, len(inputs)), max_records).run(inputs)
