"""Integer enumerations of the RTMS wire protocol (RTMS_PROTOCOL.md sections 3, 6, 8-11).

Values are the numbers that travel in JSON. Message Structs keep open-ended codes (status
codes, stop reasons, states, event types) as plain ``int`` so that a value this module does
not know yet is carried through instead of failing the whole message; these enums are how
callers name and interpret them. This module must never import anything beyond the standard
library.
"""

from __future__ import annotations

import enum

__all__ = [
    "AudioChannel",
    "AudioSampleRate",
    "DataOption",
    "EventType",
    "MediaCodec",
    "MediaContentType",
    "MediaType",
    "MsgType",
    "Resolution",
    "SessionState",
    "StatusCode",
    "StopReason",
    "StreamState",
    "TranscriptLanguage",
    "ZccEventType",
    "media_type_from_url_key",
    "url_key_for_media_type",
]


class MsgType(enum.IntEnum):
    """MESSAGE_TYPE: the ``msg_type`` of every message (section 9.4)."""

    UNDEFINED = 0
    SIGNALING_HAND_SHAKE_REQ = 1
    SIGNALING_HAND_SHAKE_RESP = 2
    DATA_HAND_SHAKE_REQ = 3
    DATA_HAND_SHAKE_RESP = 4
    EVENT_SUBSCRIPTION = 5
    EVENT_UPDATE = 6
    CLIENT_READY_ACK = 7
    STREAM_STATE_UPDATE = 8
    SESSION_STATE_UPDATE = 9
    SESSION_STATE_REQ = 10
    SESSION_STATE_RESP = 11
    KEEP_ALIVE_REQ = 12
    KEEP_ALIVE_RESP = 13
    MEDIA_DATA_AUDIO = 14
    MEDIA_DATA_VIDEO = 15
    MEDIA_DATA_SHARE = 16
    MEDIA_DATA_TRANSCRIPT = 17
    MEDIA_DATA_CHAT = 18
    STREAM_STATE_REQ = 19
    STREAM_STATE_RESP = 20
    STREAM_CLOSE_REQ = 21
    STREAM_CLOSE_RESP = 22
    META_DATA_AUDIO = 23
    META_DATA_VIDEO = 24
    META_DATA_SHARE = 25
    META_DATA_TRANSCRIPT = 26
    META_DATA_CHAT = 27
    VIDEO_SUBSCRIPTION_REQ = 28
    VIDEO_SUBSCRIPTION_RESP = 29


class StatusCode(enum.IntEnum):
    """RTMS_STATUS_CODE in handshake responses (section 3.2). 18-30 are not assigned."""

    OK = 0
    CONNECTION_TIMEOUT = 1
    INVALID_JSON_MSG_SIZE = 2
    INVALID_JSON_MSG = 3
    INVALID_MESSAGE_TYPE = 4
    MSG_TYPE_NOT_EXIST = 5
    MSG_TYPE_NOT_UINT = 6
    MEETING_UUID_NOT_EXIST = 7
    MEETING_UUID_NOT_STRING = 8
    MEETING_UUID_IS_EMPTY = 9
    RTMS_STREAM_ID_NOT_EXIST = 10
    RTMS_STREAM_ID_NOT_STRING = 11
    RTMS_STREAM_ID_IS_EMPTY = 12
    SESSION_NOT_FOUND = 13
    SIGNATURE_NOT_EXIST = 14
    INVALID_SIGNATURE = 15
    INVALID_MEETING_OR_STREAM_ID = 16
    DUPLICATE_SIGNAL_REQUEST = 17
    DUPLICATE_MEDIA_DATA_CONNECTION = 31


class StopReason(enum.IntEnum):
    """STOP_REASON carried as ``reason`` in STREAM_STATE_UPDATE (section 10)."""

    UNDEFINED = 0
    HOST_TRIGGERED = 1
    USER_TRIGGERED = 2
    USER_LEFT = 3
    USER_EJECTED = 4
    HOST_DISABLED_APP = 5
    MEETING_ENDED = 6
    STREAM_CANCELED = 7
    STREAM_REVOKED = 8
    ALL_APPS_DISABLED = 9
    INTERNAL_EXCEPTION = 10
    CONNECTION_TIMEOUT = 11
    INSTANCE_CONNECTION_INTERRUPTED = 12
    SIGNAL_CONNECTION_INTERRUPTED = 13
    DATA_CONNECTION_INTERRUPTED = 14
    SIGNAL_CONNECTION_CLOSED_ABNORMALLY = 15
    DATA_CONNECTION_CLOSED_ABNORMALLY = 16
    EXIT_SIGNAL = 17
    AUTHENTICATION_FAILURE = 18
    AWAIT_RECONNECTION_TIMEOUT = 19
    RECEIVER_REQUEST_CLOSE = 20
    CUSTOMER_DISCONNECTED = 21
    AGENT_DISCONNECTED = 22
    ADMIN_DISABLED_APP = 23
    KEEP_ALIVE_TIMEOUT = 24
    MANUAL_API_TRIGGERED = 25
    STREAMING_NOT_SUPPORTED = 26

    @classmethod
    def coerce(cls, value: int) -> StopReason | int:
        """The member for ``value``, or ``value`` itself when it has no name yet."""
        try:
            return cls(value)
        except ValueError:
            return value


class EventType(enum.IntEnum):
    """EVENT_TYPE of ``event.event_type`` in EVENT_UPDATE for meetings (section 6.2)."""

    UNDEFINED = 0
    FIRST_PACKET_TIMESTAMP = 1
    ACTIVE_SPEAKER_CHANGE = 2
    PARTICIPANT_JOIN = 3
    PARTICIPANT_LEAVE = 4
    SHARING_START = 5
    SHARING_STOP = 6
    MEDIA_CONNECTION_INTERRUPTED = 7
    PARTICIPANT_VIDEO_ON = 8
    PARTICIPANT_VIDEO_OFF = 9


class ZccEventType(enum.IntEnum):
    """Contact Center voice event types; 8 and 9 clash with EventType (section 6.2)."""

    CONSUMER_ANSWERED = 8
    CONSUMER_END = 9
    USER_ANSWERED = 10
    USER_END = 11
    USER_HOLD = 12
    USER_UNHOLD = 13
    MONITOR_STARTED = 14
    MONITOR_TRANSITIONED = 15
    MONITOR_ENDED = 16
    TAKEOVER_STARTED = 17
    TRANSFER_INITIATED = 18
    TRANSFER_CANCELED = 19
    TRANSFER_ACCEPTED = 20
    TRANSFER_COMPLETED = 21
    TRANSFER_REJECTED = 22
    TRANSFER_TIMEOUT = 23
    CONFERENCE_CANCELED = 24
    CONFERENCE_PARTICIPANT_CANCELED = 25
    CONFERENCE_PARTICIPANT_INVITED = 26
    CONFERENCE_PARTICIPANT_REJECTED = 27
    CONFERENCE_PARTICIPANT_TIMEOUT = 28


class StreamState(enum.IntEnum):
    """STREAM_STATE of ``state`` in STREAM_STATE_UPDATE (section 8)."""

    INACTIVE = 0
    ACTIVE = 1
    INTERRUPTED = 2
    TERMINATING = 3
    TERMINATED = 4
    PAUSED = 5
    RESUMED = 6


class SessionState(enum.IntEnum):
    """SESSION_STATE of ``state`` in SESSION_STATE_UPDATE (section 8)."""

    INACTIVE = 0
    INITIALIZE = 1
    STARTED = 2
    PAUSED = 3
    RESUMED = 4
    STOPPED = 5


class MediaType(enum.IntFlag):
    """MEDIA_DATA_TYPE bitmask of ``media_type`` in the media handshake (section 11)."""

    AUDIO = 1
    VIDEO = 2
    DESKSHARE = 4
    TRANSCRIPT = 8
    CHAT = 16
    ALL = 32


class MediaContentType(enum.IntEnum):
    """MEDIA_CONTENT_TYPE of ``content_type`` in media params."""

    UNDEFINED = 0
    RTP = 1
    RAW_AUDIO = 2
    RAW_VIDEO = 3
    FILE_STREAM = 4
    TEXT = 5


class MediaCodec(enum.IntEnum):
    """MEDIA_PAYLOAD_TYPE of ``codec`` in media params."""

    UNDEFINED = 0
    L16 = 1
    G711 = 2
    G722 = 3
    OPUS = 4
    JPG = 5
    PNG = 6
    H264 = 7


class AudioSampleRate(enum.IntEnum):
    """AUDIO_SAMPLE_RATE of ``sample_rate`` in audio params (an index, not Hz)."""

    SR_8K = 0
    SR_16K = 1
    SR_32K = 2
    SR_48K = 3

    @property
    def hz(self) -> int:
        """The sample rate in Hz."""
        return _RATE_HZ[self.value]

    @classmethod
    def from_hz(cls, rate_hz: int) -> AudioSampleRate:
        """The member whose rate is ``rate_hz``; ValueError for any other rate."""
        for index, hz in enumerate(_RATE_HZ):
            if hz == rate_hz:
                return cls(index)
        raise ValueError(f"no RTMS sample rate of {rate_hz} Hz (have {_RATE_HZ})")


_RATE_HZ = (8000, 16000, 32000, 48000)


class AudioChannel(enum.IntEnum):
    """AUDIO_CHANNEL of ``channel`` in audio params (the channel count)."""

    MONO = 1
    STEREO = 2


class DataOption(enum.IntEnum):
    """MEDIA_DATA_OPTION of ``data_opt`` in audio and video params."""

    UNDEFINED = 0
    AUDIO_MIXED_STREAM = 1
    AUDIO_MULTI_STREAMS = 2
    VIDEO_SINGLE_ACTIVE_STREAM = 3
    VIDEO_SINGLE_INDIVIDUAL_STREAM = 4
    VIDEO_MIXED_GALLERY_VIEW = 5


class Resolution(enum.IntEnum):
    """MEDIA_RESOLUTION of ``resolution`` in video and deskshare params."""

    UNDEFINED = 0
    SD = 1
    HD = 2
    FHD = 3
    QHD = 4


class TranscriptLanguage(enum.IntEnum):
    """TRANSCRIPT_LANGUAGE of ``src_language``; NONE (-1) means auto-detect (LID)."""

    NONE = -1
    ARABIC = 0
    BENGALI = 1
    CANTONESE = 2
    CATALAN = 3
    CHINESE_SIMPLIFIED = 4
    CHINESE_TRADITIONAL = 5
    CZECH = 6
    DANISH = 7
    DUTCH = 8
    ENGLISH = 9
    ESTONIAN = 10
    FINNISH = 11
    FRENCH_CANADA = 12
    FRENCH_FRANCE = 13
    GERMAN = 14
    HEBREW = 15
    HINDI = 16
    HUNGARIAN = 17
    INDONESIAN = 18
    ITALIAN = 19
    JAPANESE = 20
    KOREAN = 21
    MALAY = 22
    PERSIAN = 23
    POLISH = 24
    PORTUGUESE = 25
    ROMANIAN = 26
    RUSSIAN = 27
    SPANISH = 28
    SWEDISH = 29
    TAGALOG = 30
    TAMIL = 31
    TELUGU = 32
    THAI = 33
    TURKISH = 34
    UKRAINIAN = 35
    VIETNAMESE = 36


# server_urls keys of the signaling handshake response, one per single-bit media type.
_URL_KEYS: dict[MediaType, str] = {
    MediaType.AUDIO: "audio",
    MediaType.VIDEO: "video",
    MediaType.DESKSHARE: "deskshare",
    MediaType.TRANSCRIPT: "transcript",
    MediaType.CHAT: "chat",
    MediaType.ALL: "all",
}
_URL_KEY_TYPES: dict[str, MediaType] = {key: kind for kind, key in _URL_KEYS.items()}


def url_key_for_media_type(media_type: MediaType | int) -> str:
    """The ``server_urls`` key for one media type bit; ValueError for combinations."""
    try:
        return _URL_KEYS[MediaType(media_type)]
    except (KeyError, ValueError):
        raise ValueError(
            f"media type {int(media_type)} is not a single media type with a server_urls key"
        ) from None


def media_type_from_url_key(key: str) -> MediaType:
    """The media type bit for a ``server_urls`` key; ValueError for an unknown key."""
    try:
        return _URL_KEY_TYPES[key]
    except KeyError:
        raise ValueError(f"unknown server_urls key {key!r}") from None
