"""msgspec Structs for every RTMS message (msg_type 1-29), and their JSON encode/decode.

One tagged union, ``Message``, covers all 29 message types; ``decode_message`` dispatches on
``msg_type`` in a single msgspec call and ``encode_message`` writes compact JSON. Field names
and shapes follow RTMS_PROTOCOL.md (sections 3-9, 15).

Conventions, so that encoding a Struct gives exactly what the wire expects:

* Optional wire fields are ``X | None = None`` and message Structs use ``omit_defaults``,
  so an unset field is left out of the JSON. The two client handshake requests (msgs 1
  and 3) are the exception: they always write ``protocol_version`` (default 1) and mark
  their optional fields ``UNSET`` instead, because callers build them directly.
* Fields the official SDK requires in server replies (``status_code``, ``payload_encrypted``,
  ``reason`` of msg 8) are optional in the Struct for tolerant decoding; whoever builds a
  reply for the SDK sets them (the server state machines do).
* ``MediaHandshakeResponse.media_params`` defaults to ``UNSET`` (absent) so that ``None``
  encodes as JSON ``null``, which the SDK accepts for the transcript socket.
* Parameter Structs (``AudioParams`` ...) encode every key: the SDK needs all of them.
  Their defaults are the protocol defaults of section 17 (L16, 16 kHz, mono, mixed, 20 ms).
* Open-ended codes (``status_code``, ``state``, ``reason``, ``event_type``) are plain ``int``
  so an unknown value is carried through; the enums in ``enums.py`` name them.
* Media payloads of msgs 14-16 are ``bytes`` (standard base64 on the wire); transcript and
  chat ``data`` is text (section 9.1).

Decoding is strict first (one msgspec call, the fast path). Only when that fails does
``decode_message`` parse the message generically, apply the documented repairs of
``tolerance.py`` (counting each) and try again; what still fails raises a ``ProtocolError``
naming the field path and the msg_type. Unknown extra fields are ignored silently: the
protocol adds fields over time and ignoring them is forward compatibility, not a deviation.

This module must never touch sockets, clocks or Trio.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any, Final, Union

import msgspec
from msgspec import UNSET, UnsetType

from .enums import (
    AudioChannel,
    AudioSampleRate,
    DataOption,
    MediaCodec,
    MediaContentType,
    MediaType,
    MsgType,
    Resolution,
    url_key_for_media_type,
)
from .errors import (
    InvalidField,
    MalformedJSON,
    MissingField,
    ProtocolError,
    UnknownMessageType,
)
from .tolerance import ToleranceStats, note_handshake_response, note_keep_alive, repair

__all__ = [
    "MEDIA_URL_KEYS",
    "AudioParams",
    "ChatContent",
    "ClientReadyAck",
    "DeskshareParams",
    "Event",
    "EventSubscription",
    "EventSubscriptionItem",
    "EventUpdate",
    "KeepAliveRequest",
    "KeepAliveResponse",
    "MediaContent",
    "MediaDataAudio",
    "MediaDataChat",
    "MediaDataShare",
    "MediaDataTranscript",
    "MediaDataVideo",
    "MediaHandshakeRequest",
    "MediaHandshakeResponse",
    "MediaParams",
    "MediaServer",
    "Message",
    "MetaDataAudio",
    "MetaDataChat",
    "MetaDataShare",
    "MetaDataTranscript",
    "MetaDataVideo",
    "Participant",
    "ServerUrls",
    "SessionStateRequest",
    "SessionStateResponse",
    "SessionStateUpdate",
    "SignalingHandshakeRequest",
    "SignalingHandshakeResponse",
    "StreamCloseRequest",
    "StreamCloseResponse",
    "StreamStateRequest",
    "StreamStateResponse",
    "StreamStateUpdate",
    "TranscriptContent",
    "TranscriptParams",
    "VideoParams",
    "VideoSubscriptionRequest",
    "VideoSubscriptionResponse",
    "decode_message",
    "encode_message",
    "message_class",
]


class _Value(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of nested JSON objects: unset optional fields are omitted."""


class _Params(msgspec.Struct, frozen=True, kw_only=True):
    """Base of media parameter objects: every key is always written."""


class _Message(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="msg_type"):
    """Base of all messages; ``msg_type`` is the msgspec tag."""

    @property
    def msg_type(self) -> MsgType:
        """This message's ``msg_type``."""
        return MsgType(typing.cast(int, self.__struct_config__.tag))


# --- media parameters (sections 4.1, 4.2, 17) -----------------------------------------------


class AudioParams(_Params, frozen=True, kw_only=True):
    """``media_params.audio``: all six keys are required by the SDK in msg 4."""

    content_type: MediaContentType = MediaContentType.RAW_AUDIO
    codec: MediaCodec = MediaCodec.L16
    sample_rate: AudioSampleRate = AudioSampleRate.SR_16K
    channel: AudioChannel = AudioChannel.MONO
    data_opt: DataOption = DataOption.AUDIO_MIXED_STREAM
    send_rate: int = 20
    """Chunk interval in ms (the SDK's ``duration``)."""


class VideoParams(_Params, frozen=True, kw_only=True):
    """``media_params.video``."""

    content_type: MediaContentType = MediaContentType.RAW_VIDEO
    codec: MediaCodec = MediaCodec.H264
    resolution: Resolution = Resolution.HD
    data_opt: DataOption = DataOption.VIDEO_SINGLE_ACTIVE_STREAM
    fps: int = 30


class DeskshareParams(_Params, frozen=True, kw_only=True):
    """``media_params.deskshare`` (no ``data_opt``)."""

    content_type: MediaContentType = MediaContentType.RAW_VIDEO
    codec: MediaCodec = MediaCodec.H264
    resolution: Resolution = Resolution.HD
    fps: int = 30


class TranscriptParams(_Params, frozen=True, kw_only=True):
    """``media_params.transcript``; ``src_language`` -1 means auto-detect."""

    content_type: MediaContentType = MediaContentType.TEXT
    src_language: int = -1
    enable_lid: bool = True


class MediaParams(_Value, frozen=True, kw_only=True):
    """``media_params``: the SDK sends only the sub-object of the socket's media type."""

    audio: AudioParams | None = None
    video: VideoParams | None = None
    deskshare: DeskshareParams | None = None
    transcript: TranscriptParams | None = None


MEDIA_URL_KEYS: Final = ("audio", "video", "deskshare", "transcript", "chat")
"""The per-type ``server_urls`` keys, in media type bit order."""


class ServerUrls(_Value, frozen=True, kw_only=True):
    """``media_server.server_urls``: per-type media URLs and/or ``all`` (unified mode)."""

    audio: str | None = None
    video: str | None = None
    deskshare: str | None = None
    transcript: str | None = None
    chat: str | None = None
    all: str | None = None

    @classmethod
    def uniform(cls, url: str) -> ServerUrls:
        """Every per-type key and ``all`` set to ``url`` (section 15: what every client reads)."""
        return cls(audio=url, video=url, deskshare=url, transcript=url, chat=url, all=url)

    def url_for(self, media_type: MediaType | int) -> str | None:
        """The URL for one media type: its own key, else ``all``, else None."""
        own: str | None = getattr(self, url_key_for_media_type(media_type))
        return own if own is not None else self.all


class MediaServer(_Value, frozen=True, kw_only=True):
    """``media_server`` of the signaling handshake response."""

    server_urls: ServerUrls


# --- content objects (section 9) ------------------------------------------------------------


class MediaContent(_Value, frozen=True, kw_only=True):
    """``content`` of audio/video/share (14-16); ``data`` is base64 on the wire.

    Zoom Contact Center identifies the speaker by ``channel_id`` instead of ``user_id``.
    """

    user_id: int | None = None
    channel_id: str | None = None
    user_name: str
    data: bytes
    timestamp: int


class TranscriptContent(_Value, frozen=True, kw_only=True):
    """``content`` of a transcript (17); ``data`` is plain text, not base64."""

    user_id: int | None = None
    channel_id: str | None = None
    user_name: str
    data: str
    timestamp: int
    start_time: int
    end_time: int
    language: int | None = None
    attribute: str | None = None


class ChatContent(_Value, frozen=True, kw_only=True):
    """``content`` of a chat message (18); ``data`` is the text."""

    user_id: int | None = None
    channel_id: str | None = None
    user_name: str
    data: str
    timestamp: int


class Participant(_Value, frozen=True, kw_only=True):
    """One entry of ``event.participants``."""

    user_id: int
    user_name: str | None = None


class Event(_Value, frozen=True, kw_only=True):
    """The nested ``event`` object of EVENT_UPDATE (section 6.2)."""

    event_type: int
    user_id: int | None = None
    user_name: str | None = None
    timestamp: int | None = None
    participants: list[Participant] | None = None


class EventSubscriptionItem(_Value, frozen=True, kw_only=True):
    """One entry of ``events`` in EVENT_SUBSCRIPTION (``subscribe`` false unsubscribes)."""

    event_type: int
    subscribe: bool


# --- messages -------------------------------------------------------------------------------


class SignalingHandshakeRequest(
    _Message, tag=1, frozen=True, kw_only=True, omit_defaults=False
):
    """SIGNALING_HAND_SHAKE_REQ, client to server. ``meeting_uuid`` carries the meeting,
    webinar, session or engagement id alike (section 3.1).

    ``protocol_version`` is always written (1 unless given); the optional fields are
    ``UNSET`` (left out) unless given, as the SDK sends no ``media_type``."""

    meeting_uuid: str
    rtms_stream_id: str
    signature: str
    protocol_version: int = 1
    sequence: int | UnsetType = UNSET
    rtms_client_agent: str | UnsetType = UNSET
    media_type: int | UnsetType = UNSET


class SignalingHandshakeResponse(_Message, tag=2, frozen=True, kw_only=True):
    """SIGNALING_HAND_SHAKE_RESP. ``status_code`` 0 means accepted (section 3.2)."""

    status_code: int | None = None
    reason: str | None = None
    protocol_version: int | None = None
    sequence: int | None = None
    media_server: MediaServer | None = None


class MediaHandshakeRequest(
    _Message, tag=3, frozen=True, kw_only=True, omit_defaults=False
):
    """DATA_HAND_SHAKE_REQ, the first message on each media socket (section 4.1).

    ``protocol_version`` is always written; ``media_params`` None is written as ``null``
    (what the SDK sends for a transcript socket); the other optional fields are ``UNSET``
    (left out) unless given."""

    meeting_uuid: str
    rtms_stream_id: str
    signature: str
    media_type: MediaType
    media_params: MediaParams | None = None
    protocol_version: int = 1
    sequence: int | UnsetType = UNSET
    payload_encryption: bool | UnsetType = UNSET


class MediaHandshakeResponse(_Message, tag=4, frozen=True, kw_only=True):
    """DATA_HAND_SHAKE_RESP (section 4.2). The SDK needs ``status_code``,
    ``payload_encrypted`` and, except on the transcript socket, ``media_params``."""

    status_code: int | None = None
    reason: str | None = None
    protocol_version: int | None = None
    sequence: int | None = None
    payload_encrypted: bool | None = None
    media_params: MediaParams | UnsetType | None = UNSET


class EventSubscription(_Message, tag=5, frozen=True, kw_only=True):
    """EVENT_SUBSCRIPTION, client to server; no reply (section 6.1)."""

    events: list[EventSubscriptionItem]


class EventUpdate(_Message, tag=6, frozen=True, kw_only=True):
    """EVENT_UPDATE, server to client: one nested ``event``."""

    event: Event


class ClientReadyAck(_Message, tag=7, frozen=True, kw_only=True):
    """CLIENT_READY_ACK, client to server after every media handshake succeeded."""

    rtms_stream_id: str


class StreamStateUpdate(_Message, tag=8, frozen=True, kw_only=True):
    """STREAM_STATE_UPDATE: ``state`` is a StreamState, ``reason`` a StopReason."""

    state: int
    reason: int | None = None
    timestamp: int | None = None
    rtms_stream_id: str | None = None


class SessionStateUpdate(_Message, tag=9, frozen=True, kw_only=True):
    """SESSION_STATE_UPDATE: ``state`` is a SessionState."""

    rtms_session_id: str
    state: int
    reason: int | None = None
    timestamp: int | None = None


class SessionStateRequest(_Message, tag=10, frozen=True, kw_only=True):
    """SESSION_STATE_REQ. Layout undocumented (section 16); this minimal shape is ours."""

    rtms_stream_id: str | None = None
    rtms_session_id: str | None = None
    timestamp: int | None = None


class SessionStateResponse(_Message, tag=11, frozen=True, kw_only=True):
    """SESSION_STATE_RESP. Layout undocumented (section 16); this minimal shape is ours."""

    rtms_stream_id: str | None = None
    rtms_session_id: str | None = None
    state: int | None = None
    status_code: int | None = None
    reason: str | None = None
    timestamp: int | None = None


class KeepAliveRequest(_Message, tag=12, frozen=True, kw_only=True):
    """KEEP_ALIVE_REQ, server to client on every socket; answer with the same values."""

    timestamp: int | None = None
    sequence: int | None = None


class KeepAliveResponse(_Message, tag=13, frozen=True, kw_only=True):
    """KEEP_ALIVE_RESP: echoes ``sequence`` and ``timestamp`` of the request."""

    timestamp: int | None = None
    sequence: int | None = None


class MediaDataAudio(_Message, tag=14, frozen=True, kw_only=True):
    """MEDIA_DATA_AUDIO."""

    content: MediaContent


class MediaDataVideo(_Message, tag=15, frozen=True, kw_only=True):
    """MEDIA_DATA_VIDEO."""

    content: MediaContent


class MediaDataShare(_Message, tag=16, frozen=True, kw_only=True):
    """MEDIA_DATA_SHARE (deskshare)."""

    content: MediaContent


class MediaDataTranscript(_Message, tag=17, frozen=True, kw_only=True):
    """MEDIA_DATA_TRANSCRIPT."""

    content: TranscriptContent


class MediaDataChat(_Message, tag=18, frozen=True, kw_only=True):
    """MEDIA_DATA_CHAT."""

    content: ChatContent


class StreamStateRequest(_Message, tag=19, frozen=True, kw_only=True):
    """STREAM_STATE_REQ. Layout undocumented (section 16); this minimal shape is ours."""

    rtms_stream_id: str | None = None
    timestamp: int | None = None


class StreamStateResponse(_Message, tag=20, frozen=True, kw_only=True):
    """STREAM_STATE_RESP. Layout undocumented (section 16); this minimal shape is ours."""

    rtms_stream_id: str | None = None
    state: int | None = None
    reason: int | None = None
    status_code: int | None = None
    timestamp: int | None = None


class StreamCloseRequest(_Message, tag=21, frozen=True, kw_only=True):
    """STREAM_CLOSE_REQ, client to server on signaling (graceful close, section 18).
    Layout undocumented; this minimal shape is ours."""

    rtms_stream_id: str | None = None
    timestamp: int | None = None


class StreamCloseResponse(_Message, tag=22, frozen=True, kw_only=True):
    """STREAM_CLOSE_RESP. Layout undocumented; this minimal shape is ours."""

    rtms_stream_id: str | None = None
    status_code: int | None = None
    reason: str | None = None
    timestamp: int | None = None


class _MetaData(_Message, frozen=True, kw_only=True):
    """META_DATA_* (23-27). Layouts undocumented (section 16): ``content`` is kept as
    generic JSON (e.g. ``interpreter`` for audio) so nothing is lost."""

    rtms_stream_id: str | None = None
    timestamp: int | None = None
    content: dict[str, Any] | None = None


class MetaDataAudio(_MetaData, tag=23, frozen=True, kw_only=True):
    """META_DATA_AUDIO."""


class MetaDataVideo(_MetaData, tag=24, frozen=True, kw_only=True):
    """META_DATA_VIDEO."""


class MetaDataShare(_MetaData, tag=25, frozen=True, kw_only=True):
    """META_DATA_SHARE."""


class MetaDataTranscript(_MetaData, tag=26, frozen=True, kw_only=True):
    """META_DATA_TRANSCRIPT."""


class MetaDataChat(_MetaData, tag=27, frozen=True, kw_only=True):
    """META_DATA_CHAT."""


class VideoSubscriptionRequest(_Message, tag=28, frozen=True, kw_only=True):
    """VIDEO_SUBSCRIPTION_REQ (section 9.5); the SDK's timestamp is a counter, not epoch."""

    user_id: int
    subscribe: bool
    timestamp: int | None = None


class VideoSubscriptionResponse(_Message, tag=29, frozen=True, kw_only=True):
    """VIDEO_SUBSCRIPTION_RESP."""

    user_id: int
    status_code: int | None = None
    reason: str | None = None
    timestamp: int | None = None
    sequence: int | None = None


Message = Union[  # noqa: UP007 - a runtime alias that msgspec and isinstance both take
    SignalingHandshakeRequest,
    SignalingHandshakeResponse,
    MediaHandshakeRequest,
    MediaHandshakeResponse,
    EventSubscription,
    EventUpdate,
    ClientReadyAck,
    StreamStateUpdate,
    SessionStateUpdate,
    SessionStateRequest,
    SessionStateResponse,
    KeepAliveRequest,
    KeepAliveResponse,
    MediaDataAudio,
    MediaDataVideo,
    MediaDataShare,
    MediaDataTranscript,
    MediaDataChat,
    StreamStateRequest,
    StreamStateResponse,
    StreamCloseRequest,
    StreamCloseResponse,
    MetaDataAudio,
    MetaDataVideo,
    MetaDataShare,
    MetaDataTranscript,
    MetaDataChat,
    VideoSubscriptionRequest,
    VideoSubscriptionResponse,
]
"""Any RTMS message; ``decode_message`` returns one of these."""

_CLASSES: Final[dict[int, type[_Message]]] = {
    typing.cast(int, cls.__struct_config__.tag): cls for cls in typing.get_args(Message)
}


def message_class(msg_type: int) -> type[_Message]:
    """The Struct class for ``msg_type``; UnknownMessageType if there is none."""
    try:
        return _CLASSES[msg_type]
    except KeyError:
        raise UnknownMessageType(
            f"msg_type {msg_type} names no RTMS message", field="msg_type", msg_type=msg_type
        ) from None


_NOTES: Final[dict[type[_Message], Callable[[Any, ToleranceStats], None]]] = {
    KeepAliveRequest: note_keep_alive,
    SignalingHandshakeResponse: note_handshake_response,
    MediaHandshakeResponse: note_handshake_response,
}
"""Post-decode deviation checks, by message class (only these types can deviate silently)."""

_DECODER: Final = msgspec.json.Decoder(Message)
_ANY_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()
_PATH_RE: Final = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING_RE: Final = re.compile(r"^Object missing required field `(?P<name>[^`]+)`")


def encode_message(msg: Message) -> bytes:
    """Compact JSON of ``msg`` (``msg_type`` first), ready to send as a WebSocket frame."""
    return _ENCODER.encode(msg)


def decode_message(data: bytes | bytearray | memoryview | str,
                   stats: ToleranceStats | None = None) -> Message:
    """Parse one WebSocket message (text or binary, compact or pretty JSON).

    Returns the typed message. Raises a ``ProtocolError`` subclass naming the field path
    and msg_type when the message cannot be understood even after the repairs of section 19;
    each repair or tolerated deviation is counted in ``stats`` when given.
    """
    try:
        msg: Message = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        msg = _decode_lenient(data, exc, stats)
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"not a JSON message: {exc}") from None
    except UnicodeDecodeError as exc:
        raise MalformedJSON(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if stats is not None:
        note = _NOTES.get(type(msg))
        if note is not None:
            note(msg, stats)
    return msg


def _decode_lenient(data: bytes | bytearray | memoryview | str,
                    strict_error: msgspec.ValidationError,
                    stats: ToleranceStats | None) -> Message:
    """Slow path: find msg_type, repair known deviations, decode again or raise typed."""
    try:
        raw = _ANY_DECODER.decode(data)
    except msgspec.DecodeError as exc:  # the strict pass stopped before the bad syntax
        raise MalformedJSON(f"not a JSON message: {exc}") from None
    except UnicodeDecodeError as exc:
        raise MalformedJSON(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if not isinstance(raw, dict):
        raise InvalidField(
            f"a message must be a JSON object, got {type(raw).__name__}", field=""
        )
    if "msg_type" not in raw:
        raise MissingField("the message has no msg_type", field="msg_type")
    msg_type = raw["msg_type"]
    if not isinstance(msg_type, int) or isinstance(msg_type, bool):
        raise InvalidField(
            f"msg_type must be an integer, got {type(msg_type).__name__}", field="msg_type"
        )
    message_class(msg_type)  # raises UnknownMessageType
    repaired = repair(raw, msg_type, stats)
    if repaired is None:
        raise _translate(strict_error, msg_type)
    try:
        msg: Message = _DECODER.decode(_ENCODER.encode(repaired))
    except msgspec.ValidationError as exc:
        raise _translate(exc, msg_type) from None
    return msg


def _translate(exc: msgspec.ValidationError, msg_type: int | None) -> ProtocolError:
    """A msgspec ValidationError as a typed ProtocolError with a dotted field path."""
    text = str(exc)
    match = _PATH_RE.search(text)
    path = match.group("path") if match else ""
    detail = text[: match.start()] if match else text
    path = path.lstrip(".")
    missing = _MISSING_RE.match(detail)
    if missing:
        name = missing.group("name")
        return MissingField(
            f"required field {name!r} is missing",
            field=f"{path}.{name}" if path else name,
            msg_type=msg_type,
        )
    return InvalidField(detail, field=path, msg_type=msg_type)
