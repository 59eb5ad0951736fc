"""Wire formats of the media path, from Python: WebSocket frames, base64, the media
JSON envelope and RTP headers, all backed by the native parsers in ``csrc/``.

The batched ingest kernel (``rtms_fast.ingest``) runs these same parsers inside one
native call per sweep; this module exposes them one at a time for tests, for the
simulator (frame and base64 encoders) and for control-plane code that needs a frame
encoder (keep-alive answers from the batched pump) without a WebSocket library.

Every parser is bounds-checked and O(n); a malformed input raises a typed
``WireError`` subclass whose ``code`` is the native ``ErrorCode``. This module must
never guess: what the native scanner cannot prove is an error, not a default.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from rtms_fast.native import ffi, lib

__all__ = [
    "Base64Error",
    "EnvelopeError",
    "ErrorCode",
    "FrameError",
    "FrameHeader",
    "MediaEnvelope",
    "Opcode",
    "RtpError",
    "RtpHeader",
    "RtpSequenceTracker",
    "ScanMode",
    "WireError",
    "b64decode",
    "b64encode",
    "encode_frame",
    "json_unescape",
    "parse_frame_header",
    "parse_rtp",
    "scan_envelope",
    "split_frames",
    "unmask",
]

#: Default ceiling for a frame payload (and a reassembled message): 16 MiB.
DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024


class ErrorCode(enum.IntEnum):
    """The native parsers' error codes (``RTMS_ERR_*`` in ``csrc/rtms_native.h``)."""

    NONE = 0
    WS_RSV = 1
    WS_OPCODE = 2
    WS_LENGTH_NOT_MINIMAL = 3
    WS_LENGTH_MSB = 4
    WS_TOO_BIG = 5
    WS_MASKED = 6
    WS_CONTROL_TOO_BIG = 7
    WS_CONTROL_FRAGMENTED = 8
    WS_UNEXPECTED_CONTINUATION = 9
    WS_EXPECTED_CONTINUATION = 10
    WS_CONNECTION_FAILED = 11
    SPACE = 12
    NO_MEMORY = 13
    B64_CHAR = 20
    B64_PADDING = 21
    B64_LENGTH = 22
    MSG_SYNTAX = 30
    MSG_NOT_OBJECT = 31
    MSG_TYPE = 32
    MSG_CONTENT = 33
    MSG_USER = 34
    MSG_USER_TYPE = 35
    MSG_KEY_AMBIGUOUS = 36
    MSG_NAME = 37
    MSG_TIMESTAMP = 38
    MSG_DATA = 39
    MSG_DUPLICATE_KEY = 40
    MSG_DEPTH = 41
    MSG_NUMBER_RANGE = 42
    MSG_KEY_TOO_LONG = 43
    RTP_SHORT = 50
    RTP_VERSION = 51
    RTP_PADDING = 52
    RTP_PAYLOAD_TYPE = 53
    RTP_LATE = 54
    RTP_DUPLICATE = 55
    INGEST_SLOTS_FULL = 60
    INGEST_BUDGET = 61
    INGEST_AUDIO_LENGTH = 62
    INGEST_CODEC = 63


class WireError(ValueError):
    """Malformed wire data; ``code`` says what was wrong."""

    def __init__(self, code: int, what: str = "") -> None:
        self.code = ErrorCode(code)
        super().__init__(f"{self.code.name}" + (f": {what}" if what else ""))


class FrameError(WireError):
    """A WebSocket frame a client must reject (RFC 6455)."""


class Base64Error(WireError):
    """Invalid base64 text."""


class EnvelopeError(WireError):
    """A media message whose JSON envelope cannot be read with certainty.

    ``msg_type`` is the message type when the scanner got that far, else -1.
    """

    def __init__(self, code: int, what: str = "", msg_type: int = -1) -> None:
        super().__init__(code, what)
        self.msg_type = msg_type


class RtpError(WireError):
    """An RTP packet that cannot be used."""


class Opcode(enum.IntEnum):
    """WebSocket frame opcodes (RFC 6455 section 5.2)."""

    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


class ScanMode(enum.IntEnum):
    """What ``scan_envelope`` insists on besides ``msg_type``."""

    CLASSIFY = 0  #: only msg_type
    AUDIO = 1  #: the audio fields, whatever msg_type says
    AUDIO_IF_14 = 2  #: the audio fields when msg_type is 14 (MEDIA_DATA_AUDIO)
    MIXED_AUDIO_IF_14 = 3  #: as AUDIO_IF_14, but user key and name optional (mixed stream)


def _ptr(data: Any) -> Any:
    return ffi.from_buffer("uint8_t[]", data)


# ---- WebSocket frames ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """One parsed WebSocket frame header; the payload follows ``header_len`` bytes in."""

    fin: bool
    opcode: Opcode
    masked: bool
    mask_key: bytes
    header_len: int
    payload_len: int

    @property
    def frame_len(self) -> int:
        """Header plus payload, in bytes."""
        return self.header_len + self.payload_len


def parse_frame_header(
    data: bytes | bytearray | memoryview,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    allow_masked: bool = False,
) -> FrameHeader | None:
    """Parse the frame header at the start of ``data``; ``None`` if more bytes are needed.

    Raises ``FrameError`` for what a client must reject in a server frame: RSV bits,
    reserved opcodes, non-minimal or oversized lengths, a mask (unless
    ``allow_masked``, for tests that feed client frames), control frames over 125
    bytes or fragmented. The payload itself may still be incomplete.
    """
    out = ffi.new("rtms_ws_frame *")
    view = memoryview(data).cast("B")
    r = lib.rtms_ws_parse_header(_ptr(view), len(view), max_payload_bytes, int(allow_masked), out)
    if r == 0:
        return None
    if r < 0:
        raise FrameError(-r)
    return FrameHeader(
        fin=bool(out.fin),
        opcode=Opcode(out.opcode),
        masked=bool(out.masked),
        mask_key=bytes(out.mask_key),
        header_len=int(out.header_len),
        payload_len=int(out.payload_len),
    )


def split_frames(
    data: bytes | bytearray | memoryview,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    allow_masked: bool = False,
) -> tuple[list[tuple[FrameHeader, bytes]], int]:
    """Split ``data`` into complete frames: ``([(header, unmasked payload), ...], consumed)``.

    Bytes after ``consumed`` are an incomplete trailing frame. Raises ``FrameError``
    at the first invalid header.
    """
    view = memoryview(data).cast("B")
    frames: list[tuple[FrameHeader, bytes]] = []
    pos = 0
    while pos < len(view):
        header = parse_frame_header(
            view[pos:], max_payload_bytes=max_payload_bytes, allow_masked=allow_masked
        )
        if header is None or header.frame_len > len(view) - pos:
            break
        payload = bytes(view[pos + header.header_len : pos + header.frame_len])
        if header.masked:
            payload = unmask(payload, header.mask_key)
        frames.append((header, payload))
        pos += header.frame_len
    return frames, pos


def encode_frame(
    opcode: Opcode | int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    mask_key: bytes | None = None,
    fin: bool = True,
) -> bytes:
    """One WebSocket frame. A client must pass a fresh 4-byte ``mask_key`` (RFC 6455
    section 5.3); servers (the simulator) pass ``None``.

    Raises ``FrameError`` for a frame no peer may accept (reserved opcode, control
    frame over 125 bytes or without FIN).
    """
    view = memoryview(payload).cast("B")
    if mask_key is not None and len(mask_key) != 4:
        raise ValueError(f"mask_key must be 4 bytes, got {len(mask_key)}")
    cap = len(view) + 14
    out = bytearray(cap)
    key = ffi.NULL if mask_key is None else _ptr(mask_key)
    src = _ptr(view) if len(view) else ffi.NULL
    n = lib.rtms_ws_encode(int(opcode), int(fin), src, len(view), key, _ptr(out), cap)
    if n < 0:
        raise FrameError(-n)
    return bytes(out[:n])


def unmask(data: bytes | bytearray | memoryview, mask_key: bytes) -> bytes:
    """``data`` XOR the 4-byte key, repeated (masking and unmasking are the same)."""
    if len(mask_key) != 4:
        raise ValueError(f"mask_key must be 4 bytes, got {len(mask_key)}")
    buf = bytearray(data)
    if buf:
        lib.rtms_ws_unmask(_ptr(buf), len(buf), _ptr(mask_key), 0)
    return bytes(buf)


# ---- base64 ----------------------------------------------------------------------


def b64decode(text: bytes | bytearray | memoryview | str) -> bytes:
    """Strict standard base64 (padded, length a multiple of 4), as found in a JSON
    string: the escape ``\\/`` stands for ``/``. Raises ``Base64Error``."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    view = memoryview(raw).cast("B")
    cap = int(lib.rtms_b64_decoded_max(len(view)))
    out = bytearray(cap)
    n = lib.rtms_b64_decode(_ptr(view), len(view), _ptr(out), cap)
    if n < 0:
        raise Base64Error(-n)
    return bytes(out[:n])


def b64encode(data: bytes | bytearray | memoryview) -> bytes:
    """Standard padded base64 of ``data``."""
    view = memoryview(data).cast("B")
    out = bytearray((len(view) + 2) // 3 * 4)
    if len(view):
        lib.rtms_b64_encode(_ptr(view), len(view), _ptr(out))
    return bytes(out)


# ---- the media envelope --------------------------------------------------------------


def json_unescape(body: bytes | bytearray | memoryview) -> bytes:
    """Decode the body of a JSON string (between the quotes) to UTF-8 bytes."""
    view = memoryview(body).cast("B")
    cap = len(view) + 4  # an escape never decodes to more bytes than it spells
    out = bytearray(cap)
    n = lib.rtms_json_unescape(_ptr(view) if len(view) else ffi.NULL, len(view), _ptr(out), cap)
    if n < 0:
        raise EnvelopeError(-n)
    return bytes(out[:n])


@dataclass(frozen=True, slots=True)
class MediaEnvelope:
    """The fields of a media message the scanner found.

    Ranges are ``(start, end)`` byte offsets into the scanned message, inside the
    quotes, still JSON-escaped; the decoded values are given alongside.
    """

    msg_type: int
    user_id: int | None
    channel_id: str | None
    user_name: str | None
    timestamp_ms: int | None
    data_range: tuple[int, int] | None
    name_range: tuple[int, int] | None
    data_escaped: bool

    def data_text(self, message: bytes | bytearray | memoryview) -> bytes:
        """The raw ``data`` string body (base64 for audio/video, text for transcripts)."""
        if self.data_range is None:
            raise EnvelopeError(ErrorCode.MSG_DATA, "no data field")
        start, end = self.data_range
        return bytes(memoryview(message).cast("B")[start:end])


def scan_envelope(
    message: bytes | bytearray | memoryview, mode: ScanMode = ScanMode.AUDIO_IF_14
) -> MediaEnvelope:
    """Scan one RTMS JSON message with the native envelope scanner.

    Finds ``msg_type`` always and, in ``content``, ``user_id`` or ``channel_id``,
    ``user_name``, ``timestamp`` and ``data``, in any key order among unknown keys.
    Raises ``EnvelopeError`` (with the msg_type, if found, in ``.msg_type``) when the
    message is not well-formed where the scanner had to look or, per ``mode``, an
    audio field is missing or mistyped.
    """
    view = memoryview(message).cast("B")
    out = ffi.new("rtms_media_msg *")
    r = lib.rtms_media_msg_scan(_ptr(view) if len(view) else ffi.NULL, len(view), int(mode), out)
    if r < 0:
        raise EnvelopeError(-r, msg_type=int(out.msg_type))

    def text(off: int, length: int, escaped: int) -> str:
        body = bytes(view[off : off + length])
        return (json_unescape(body) if escaped else body).decode("utf-8", "replace")

    kind = int(out.key_kind)
    return MediaEnvelope(
        msg_type=int(out.msg_type),
        user_id=int(out.user_id) if kind in (1, 3) else None,
        channel_id=text(out.channel_off, out.channel_len, out.channel_escaped)
        if kind in (2, 3)
        else None,
        user_name=text(out.name_off, out.name_len, out.name_escaped) if out.has_name else None,
        timestamp_ms=int(out.timestamp_ms) if out.has_timestamp else None,
        data_range=(int(out.data_off), int(out.data_off + out.data_len)) if out.has_data else None,
        name_range=(int(out.name_off), int(out.name_off + out.name_len)) if out.has_name else None,
        data_escaped=bool(out.data_escaped),
    )


# ---- RTP ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """One RTP fixed header (RFC 3550 section 5.1) and where its payload lies."""

    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    extension_profile: int
    payload_offset: int
    payload_len: int

    def payload(self, packet: bytes | bytearray | memoryview) -> bytes:
        """The payload bytes of ``packet`` (CSRCs, extension and padding removed)."""
        end = self.payload_offset + self.payload_len
        return bytes(memoryview(packet).cast("B")[self.payload_offset : end])


def parse_rtp(packet: bytes | bytearray | memoryview, expected_payload_type: int = -1) -> RtpHeader:
    """Parse an RTP packet; raise ``RtpError`` for a short packet, a version other than
    2, bad padding, or (when ``expected_payload_type`` >= 0) another payload type."""
    view = memoryview(packet).cast("B")
    out = ffi.new("rtms_rtp_header *")
    src = _ptr(view) if len(view) else ffi.NULL
    r = lib.rtms_rtp_parse(src, len(view), expected_payload_type, out)
    if r < 0:
        raise RtpError(-r)
    return RtpHeader(
        padding=bool(out.padding),
        extension=bool(out.extension),
        csrc_count=int(out.csrc_count),
        marker=bool(out.marker),
        payload_type=int(out.payload_type),
        sequence=int(out.sequence),
        timestamp=int(out.timestamp),
        ssrc=int(out.ssrc),
        extension_profile=int(out.extension_profile),
        payload_offset=int(out.payload_off),
        payload_len=int(out.payload_len),
    )


class RtpSequenceTracker:
    """Per-stream RTP sequence accounting (16-bit wrap aware), the kernel's own logic.

    ``update(seq)`` returns how many packets were lost just before this one (the
    packet is to be used), or raises ``RtpError`` with ``RTP_LATE`` (it arrived after
    its place was filled) or ``RTP_DUPLICATE``; both mean: drop it. A forward jump
    above ``max_gap`` packets, or far backwards, is a sender restart (``resync``).
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = ffi.new("rtms_rtp_seq *")
        lib.rtms_rtp_seq_init(self._state)

    def update(self, sequence: int, max_gap: int = 0xFFFFFFFF) -> int:
        """Account for one packet; see the class docstring."""
        if not 0 <= sequence <= 0xFFFF:
            raise ValueError(f"sequence must be 0..65535, got {sequence}")
        r = int(lib.rtms_rtp_seq_update(self._state, sequence, max_gap))
        if r < 0:
            raise RtpError(-r)
        return r

    @property
    def lost(self) -> int:
        """Packets counted lost so far."""
        return int(self._state.lost)

    @property
    def late(self) -> int:
        """Packets that came after their place was filled."""
        return int(self._state.late)

    @property
    def duplicate(self) -> int:
        """Packets seen twice."""
        return int(self._state.duplicate)

    @property
    def resync(self) -> int:
        """Times the sequence jumped too far and tracking restarted."""
        return int(self._state.resync)

    @property
    def accepted(self) -> int:
        """Packets accepted."""
        return int(self._state.accepted)
