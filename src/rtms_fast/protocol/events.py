"""Events returned by the connection state machines' ``receive``, ``poll`` and
``connection_closed``.

Small frozen value types with ``__slots__``: msgspec Structs, which are frozen, slotted and
cheap to create (one is made per media message). Each describes one thing that happened on
one socket. The state machines return them and never call up; the caller acts on them. This
module must never import I/O libraries.
"""

from __future__ import annotations

import enum

import msgspec

from .enums import MediaType, SessionState, StatusCode, StopReason, StreamState
from .errors import ProtocolError
from .messages import (
    ChatContent,
    Event,
    EventSubscriptionItem,
    MediaContent,
    MediaHandshakeRequest,
    MediaParams,
    Message,
    ServerUrls,
    SignalingHandshakeRequest,
    TranscriptContent,
)

__all__ = [
    "ChatReceived",
    "ClientReady",
    "CloseAcknowledged",
    "CloseOutcome",
    "CloseRequested",
    "CloseTimeout",
    "ConnectionClosed",
    "ConnectionEvent",
    "EventReceived",
    "EventSubscriptionReceived",
    "HandshakeAccepted",
    "HandshakeRejected",
    "HandshakeTimeout",
    "KeepAliveAnswered",
    "KeepAliveDue",
    "KeepAliveRequested",
    "KeepAliveTimeout",
    "MediaHandshakeReceived",
    "MediaReceived",
    "MetadataReceived",
    "ProtocolViolation",
    "SessionStateChanged",
    "SignalingHandshakeReceived",
    "StateRequested",
    "StateResponseReceived",
    "StreamClosed",
    "StreamStateChanged",
    "TranscriptReceived",
    "VideoSubscriptionRequested",
    "VideoSubscriptionResult",
]


class ConnectionEvent(msgspec.Struct, frozen=True):
    """Base class of every event."""



# --- both sides ----------------------------------------------------------------------------


class ProtocolViolation(ConnectionEvent, frozen=True):
    """A received message was dropped (malformed, or not legal here); the connection stays."""

    error: ProtocolError


class HandshakeTimeout(ConnectionEvent, frozen=True):
    """No handshake (response) within the handshake timeout."""

    waited_ms: int


class KeepAliveTimeout(ConnectionEvent, frozen=True):
    """Client side: the server went silent for ``silent_ms``. Server side: a keep-alive
    request has been unanswered for ``silent_ms``. Reported once per silence."""

    silent_ms: int


class CloseOutcome(enum.Enum):
    """How a WebSocket ended (section 19), from the machine's point of view."""

    COMPLETED = "completed"
    """After the stream ended (msg 8 TERMINATED, close acknowledged, handshake rejected)."""
    NORMAL = "normal"
    """Close code 1000 while the stream was live: the peer ended it on purpose."""
    GOING_AWAY = "going_away"
    """Close code 1001 (server restart or shutdown)."""
    NO_STATUS = "no_status"
    """A close frame without a code (1005)."""
    ABNORMAL = "abnormal"
    """Close code 1006: the connection dropped without a close frame."""
    RESET = "reset"
    """No close code at all (TCP reset or EOF reported by the transport)."""
    ERROR = "error"
    """Any other close code (protocol error, internal error, ...)."""


class ConnectionClosed(ConnectionEvent, frozen=True):
    """The socket is gone; ``outcome`` classifies ``code``."""

    code: int | None
    reason: str
    outcome: CloseOutcome

    @property
    def should_reconnect(self) -> bool:
        """True when the stream may still be live and a rejoin is worth trying."""
        return self.outcome not in (CloseOutcome.COMPLETED, CloseOutcome.NORMAL)


# --- client side ---------------------------------------------------------------------------


class HandshakeAccepted(ConnectionEvent, frozen=True):
    """Signaling: ``server_urls`` to open media sockets on. Media: the negotiated
    ``media_params`` (what the server answered, else what was requested). ``implicit`` when
    media arrived before any handshake response (tolerated, section 19)."""

    server_urls: ServerUrls | None = None
    media_params: MediaParams | None = None
    payload_encrypted: bool = False
    implicit: bool = False


class HandshakeRejected(ConnectionEvent, frozen=True):
    """The server refused the handshake; ``status_code`` None if it sent only a reason."""

    status_code: int | None
    reason: str

    @property
    def status(self) -> StatusCode | int | None:
        """``status_code`` as a StatusCode when it has a name."""
        if self.status_code is None:
            return None
        try:
            return StatusCode(self.status_code)
        except ValueError:
            return self.status_code


class KeepAliveRequested(ConnectionEvent, frozen=True):
    """Msg 12: answer with ``keep_alive_response(sequence, timestamp)`` (echo what came)."""

    sequence: int | None
    timestamp: int | None


class EventReceived(ConnectionEvent, frozen=True):
    """Msg 6: the nested ``event`` (meeting or Contact Center event types)."""

    event: Event


class StreamStateChanged(ConnectionEvent, frozen=True):
    """Msg 8. A TERMINATED state is followed by ``StreamClosed``. A message without a
    ``reason`` reports UNDEFINED with ``reason_given`` False."""

    state: StreamState | int
    reason: StopReason | int
    timestamp: int | None
    reason_given: bool = True


class SessionStateChanged(ConnectionEvent, frozen=True):
    """Msg 9: a session inside the stream started, paused, resumed or stopped; the
    connection stays open even for STOPPED (section 8)."""

    rtms_session_id: str
    state: SessionState | int
    reason: StopReason | int | None
    timestamp: int | None


class StreamClosed(ConnectionEvent, frozen=True):
    """The stream ended (msg 8 TERMINATED): close every socket of the stream."""

    reason: StopReason | int


class CloseAcknowledged(ConnectionEvent, frozen=True):
    """Msg 22 answered our STREAM_CLOSE_REQ."""

    status_code: int | None
    reason: str


class CloseTimeout(ConnectionEvent, frozen=True):
    """No STREAM_CLOSE_RESP within the close timeout; the stream counts as closed."""

    waited_ms: int


class MediaReceived(ConnectionEvent, frozen=True):
    """Msg 14/15/16: ``media_type`` is AUDIO, VIDEO or DESKSHARE."""

    media_type: MediaType
    content: MediaContent


class TranscriptReceived(ConnectionEvent, frozen=True):
    """Msg 17."""

    content: TranscriptContent


class ChatReceived(ConnectionEvent, frozen=True):
    """Msg 18."""

    content: ChatContent


class MetadataReceived(ConnectionEvent, frozen=True):
    """Msg 23-27 (shapes undocumented; the message is passed on whole)."""

    message: Message


class VideoSubscriptionResult(ConnectionEvent, frozen=True):
    """Msg 29: the answer to ``subscribe_video``."""

    user_id: int
    status_code: int | None
    reason: str


class StateResponseReceived(ConnectionEvent, frozen=True):
    """Msg 11 or 20: the answer to a state request."""

    message: Message


# --- server side ---------------------------------------------------------------------------


class SignalingHandshakeReceived(ConnectionEvent, frozen=True):
    """Msg 1 arrived. ``verdict`` is the machine's own check (field rules, signature);
    answer with ``accept(...)`` or ``reject(verdict)``. Duplicate-stream checks (status 17)
    belong to the caller's registry."""

    request: SignalingHandshakeRequest
    verdict: StatusCode


class MediaHandshakeReceived(ConnectionEvent, frozen=True):
    """Msg 3 arrived. ``media_params`` is what ``accept()`` will answer by default: the
    request where section 17 allows it, the configured default otherwise."""

    request: MediaHandshakeRequest
    verdict: StatusCode
    media_params: MediaParams | None


class ClientReady(ConnectionEvent, frozen=True):
    """Msg 7 (CLIENT_READY_ACK)."""

    rtms_stream_id: str


class EventSubscriptionReceived(ConnectionEvent, frozen=True):
    """Msg 5; ``subscribed`` is the connection's whole subscription set afterwards."""

    items: tuple[EventSubscriptionItem, ...]
    subscribed: frozenset[int]


class KeepAliveDue(ConnectionEvent, frozen=True):
    """Time to send ``keep_alive_request(now_ms)``."""


class KeepAliveAnswered(ConnectionEvent, frozen=True):
    """Msg 13; ``rtt_ms`` when it echoed the sequence of a request we sent."""

    sequence: int | None
    timestamp: int | None
    rtt_ms: int | None


class VideoSubscriptionRequested(ConnectionEvent, frozen=True):
    """Msg 28; answer with ``video_subscription_response``."""

    user_id: int
    subscribe: bool


class CloseRequested(ConnectionEvent, frozen=True):
    """Msg 21; answer with ``close_response()``."""

    rtms_stream_id: str | None


class StateRequested(ConnectionEvent, frozen=True):
    """Msg 10 or 19 (layouts are ours, section 16)."""

    message: Message
