"""Client-side sans-IO machines: ``ClientSignalingConnection`` and ``ClientMediaConnection``.

Feed each received WebSocket message to ``receive(data, now_ms)`` and act on the returned
events; call the sending methods (``handshake``, ``ready_ack``, ``subscribe``,
``keep_alive_response``, ``close_request``, ...) to get the bytes to send, which also
advances the state; call ``poll(now_ms)`` when ``next_deadline_ms()`` has passed to get the
timeout events. Time is always an argument. The transition rules live in ``_state.py``.

Tolerance (section 19): any server message is accepted on any socket as the SDK does
(media on the signaling socket, events on a media socket); media before the media handshake
response counts as an implicit acceptance; handshake responses without ``status_code`` are
accepted unless they carry a ``reason``. Every deviation is counted in
``stats.tolerance``; every dropped message in ``stats.messages_dropped``.

This module must never touch sockets, clocks or Trio.
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import UNSET

from ._connection import BaseConnection, WireData
from ._state import (
    CLIENT_REQUEST_STATES,
    KEEP_ALIVE_STATES,
    TERMINAL_STATES,
    ClientMediaState,
    ClientSignalingState,
    Trigger,
    check,
)
from .enums import MediaType, SessionState, StopReason, StreamState
from .errors import MissingField, StateError, UnexpectedMessage
from .events import (
    ChatReceived,
    CloseAcknowledged,
    CloseTimeout,
    ConnectionEvent,
    EventReceived,
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeTimeout,
    KeepAliveRequested,
    KeepAliveTimeout,
    MediaReceived,
    MetadataReceived,
    ProtocolViolation,
    SessionStateChanged,
    StateResponseReceived,
    StreamClosed,
    StreamStateChanged,
    TranscriptReceived,
    VideoSubscriptionResult,
)
from .messages import (
    ClientReadyAck,
    EventSubscription,
    EventSubscriptionItem,
    EventUpdate,
    KeepAliveRequest,
    KeepAliveResponse,
    MediaContent,
    MediaDataAudio,
    MediaDataChat,
    MediaDataShare,
    MediaDataTranscript,
    MediaDataVideo,
    MediaHandshakeRequest,
    MediaHandshakeResponse,
    MediaParams,
    Message,
    MetaDataAudio,
    MetaDataChat,
    MetaDataShare,
    MetaDataTranscript,
    MetaDataVideo,
    SessionStateRequest,
    SessionStateResponse,
    SessionStateUpdate,
    SignalingHandshakeRequest,
    SignalingHandshakeResponse,
    StreamCloseRequest,
    StreamCloseResponse,
    StreamStateRequest,
    StreamStateResponse,
    StreamStateUpdate,
    VideoSubscriptionRequest,
    VideoSubscriptionResponse,
)
from .tolerance import ToleranceStats

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_MS",
    "DEFAULT_HANDSHAKE_TIMEOUT_MS",
    "PROTOCOL_VERSION",
    "ClientMediaConnection",
    "ClientSignalingConnection",
]

PROTOCOL_VERSION = 1
DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
"""The official SDK's join timeout (section 3.2)."""
DEFAULT_CLOSE_TIMEOUT_MS = 5_000

_MEDIA_TYPES: dict[type[Message], MediaType] = {
    MediaDataAudio: MediaType.AUDIO,
    MediaDataVideo: MediaType.VIDEO,
    MediaDataShare: MediaType.DESKSHARE,
}
_METADATA = (MetaDataAudio, MetaDataVideo, MetaDataShare, MetaDataTranscript, MetaDataChat)


def _default_sequence(now_ms: int) -> int:
    # Any number will do (section 3.1); derived from time so runs stay reproducible.
    return now_ms % 1_000_000_000


class _ClientConnection(BaseConnection[ClientSignalingState | ClientMediaState]):
    """Server-to-client message handling shared by both client machines."""

    _HANDSHAKING: ClientSignalingState | ClientMediaState
    _STREAMING: ClientSignalingState | ClientMediaState
    _response_type: type[Message]

    def __init__(self, state: ClientSignalingState | ClientMediaState, *, meeting_uuid: str,
                 rtms_stream_id: str, signature: str, handshake_timeout_ms: int,
                 keep_alive_timeout_ms: int | None,
                 tolerance: ToleranceStats | None = None) -> None:
        super().__init__(state, tolerance)
        self.meeting_uuid = meeting_uuid
        self.rtms_stream_id = rtms_stream_id
        self.signature = signature
        self.handshake_timeout_ms = handshake_timeout_ms
        self.keep_alive_timeout_ms = keep_alive_timeout_ms
        self._handshake_sent_ms: int | None = None
        self._last_heard_ms: int | None = None
        self._silence_reported = False
        self.stop_reason: StopReason | int | None = None
        """The reason of the msg 8 TERMINATED that ended the stream, if one came."""

    # -- receiving --------------------------------------------------------------------------

    def receive(self, data: WireData, now_ms: int) -> list[ConnectionEvent]:
        """Process one received WebSocket message (text or binary)."""
        msg = self._decode(data)
        if msg is None:
            return []
        self._last_heard_ms = now_ms
        self._silence_reported = False
        if isinstance(msg, ProtocolViolation):
            return [msg]
        try:
            return self._dispatch(msg, now_ms)
        except StateError as exc:  # a peer message must never raise out of receive()
            exc.msg_type = msg.msg_type
            return self._violation(exc)

    def _dispatch(self, msg: Message, now_ms: int) -> list[ConnectionEvent]:
        kind = type(msg)
        media_type = _MEDIA_TYPES.get(kind)
        if media_type is not None:
            content: MediaContent = msg.content  # type: ignore[union-attr,assignment]
            if self._state is self._STREAMING:
                return [MediaReceived(media_type, content)]
            return [*self._media_early(), MediaReceived(media_type, content)]
        if isinstance(msg, KeepAliveRequest):
            self.stats.keep_alive_requests += 1
            return [KeepAliveRequested(msg.sequence, msg.timestamp)]
        if isinstance(msg, MediaDataTranscript):
            return [*self._media_early(), TranscriptReceived(msg.content)]
        if isinstance(msg, MediaDataChat):
            return [*self._media_early(), ChatReceived(msg.content)]
        if isinstance(msg, EventUpdate):
            return [EventReceived(msg.event)]
        if isinstance(msg, StreamStateUpdate):
            return self._on_stream_state(msg)
        if isinstance(msg, SessionStateUpdate):
            return [SessionStateChanged(
                msg.rtms_session_id,
                _coerce(SessionState, msg.state),
                None if msg.reason is None else StopReason.coerce(msg.reason),
                msg.timestamp,
            )]
        if kind is self._response_type:
            if self._state is not self._HANDSHAKING:
                return self._violation(UnexpectedMessage(
                    f"handshake response in state {self._state.name}", msg_type=msg.msg_type
                ))
            return self._on_handshake_response(msg)
        if isinstance(msg, _METADATA):
            return [MetadataReceived(msg)]
        if isinstance(msg, VideoSubscriptionResponse):
            return [VideoSubscriptionResult(msg.user_id, msg.status_code, msg.reason or "")]
        if isinstance(msg, SessionStateResponse | StreamStateResponse):
            return [StateResponseReceived(msg)]
        if isinstance(msg, StreamCloseResponse):
            return self._on_close_response(msg)
        return self._violation(UnexpectedMessage(
            f"{kind.__name__} is not sent by a server on this socket", msg_type=msg.msg_type
        ))

    def _media_early(self) -> list[ConnectionEvent]:
        return []

    def _on_handshake_response(self, msg: Message) -> list[ConnectionEvent]:
        raise NotImplementedError

    def _on_close_response(self, msg: StreamCloseResponse) -> list[ConnectionEvent]:
        return self._violation(UnexpectedMessage(
            "STREAM_CLOSE_RESP on a media socket", msg_type=msg.msg_type
        ))

    def _on_stream_state(self, msg: StreamStateUpdate) -> list[ConnectionEvent]:
        reason = StopReason.coerce(msg.reason if msg.reason is not None else 0)
        events: list[ConnectionEvent] = [
            StreamStateChanged(_coerce(StreamState, msg.state), reason, msg.timestamp,
                               reason_given=msg.reason is not None)
        ]
        if msg.state == StreamState.TERMINATED:
            self._advance(Trigger.RECV_TERMINATED)
            self.stop_reason = reason
            events.append(StreamClosed(reason))
        return events

    @staticmethod
    def _rejection(status_code: int | None, reason: str | None) -> HandshakeRejected | None:
        """A rejection, or None when the response accepts (section 19: a missing
        ``status_code`` with no ``reason`` counts as acceptance)."""
        if status_code is None:
            return HandshakeRejected(None, reason) if reason else None
        if status_code != 0:
            return HandshakeRejected(status_code, reason or "")
        return None

    # -- sending ----------------------------------------------------------------------------

    def keep_alive_response(self, sequence: int | None, timestamp: int | None) -> bytes:
        """Msg 13 echoing a KeepAliveRequested (fields that were absent stay absent)."""
        check(self._state, KEEP_ALIVE_STATES, "answer a keep-alive")
        self.stats.keep_alive_responses += 1
        return self._encode(KeepAliveResponse(sequence=sequence, timestamp=timestamp))

    def _start_handshake(self, now_ms: int) -> None:
        self._advance(Trigger.SEND_HANDSHAKE)
        self._handshake_sent_ms = now_ms
        self._last_heard_ms = now_ms

    # -- timers -----------------------------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        """When ``poll`` next has something to report (None: no timer armed)."""
        deadlines = []
        if self._state is self._HANDSHAKING and self._handshake_sent_ms is not None:
            deadlines.append(self._handshake_sent_ms + self.handshake_timeout_ms)
        if (self.keep_alive_timeout_ms is not None and self._last_heard_ms is not None
                and not self._silence_reported and self._state not in TERMINAL_STATES):
            deadlines.append(self._last_heard_ms + self.keep_alive_timeout_ms)
        return min(deadlines) if deadlines else None

    def poll(self, now_ms: int) -> list[ConnectionEvent]:
        """Timeout events due at ``now_ms``: HandshakeTimeout, KeepAliveTimeout, ..."""
        events: list[ConnectionEvent] = []
        if (self._state is self._HANDSHAKING and self._handshake_sent_ms is not None
                and now_ms - self._handshake_sent_ms >= self.handshake_timeout_ms):
            self._advance(Trigger.HANDSHAKE_TIMEOUT)
            events.append(HandshakeTimeout(now_ms - self._handshake_sent_ms))
        if (self.keep_alive_timeout_ms is not None and self._last_heard_ms is not None
                and not self._silence_reported and self._state not in TERMINAL_STATES
                and now_ms - self._last_heard_ms >= self.keep_alive_timeout_ms):
            self._silence_reported = True
            events.append(KeepAliveTimeout(now_ms - self._last_heard_ms))
        return events


class ClientSignalingConnection(_ClientConnection):
    """The client end of the signaling socket.

    ``meeting_uuid`` is the product's id (meeting/webinar uuid, session_id, engagement_id);
    the key on the wire is always ``meeting_uuid`` (section 3.1). ``keep_alive_timeout_ms``
    (None: off) reports KeepAliveTimeout when the server sends nothing for that long; the
    SDK has no such check, so it is off by default.
    """

    _HANDSHAKING = ClientSignalingState.HANDSHAKING
    _STREAMING = ClientSignalingState.READY
    _response_type = SignalingHandshakeResponse

    def __init__(self, meeting_uuid: str, rtms_stream_id: str, signature: str, *,
                 handshake_timeout_ms: int = DEFAULT_HANDSHAKE_TIMEOUT_MS,
                 close_timeout_ms: int = DEFAULT_CLOSE_TIMEOUT_MS,
                 keep_alive_timeout_ms: int | None = None,
                 client_agent: str | None = None,
                 tolerance: ToleranceStats | None = None) -> None:
        super().__init__(ClientSignalingState.IDLE, meeting_uuid=meeting_uuid,
                         rtms_stream_id=rtms_stream_id, signature=signature,
                         handshake_timeout_ms=handshake_timeout_ms,
                         keep_alive_timeout_ms=keep_alive_timeout_ms, tolerance=tolerance)
        self.close_timeout_ms = close_timeout_ms
        self.client_agent = client_agent
        self.response: SignalingHandshakeResponse | None = None
        """The accepted handshake response."""
        self._close_sent_ms: int | None = None

    def handshake(self, now_ms: int, sequence: int | None = None) -> bytes:
        """Msg 1 (SIGNALING_HAND_SHAKE_REQ); arms the handshake timeout."""
        self._start_handshake(now_ms)
        return self._encode(SignalingHandshakeRequest(
            meeting_uuid=self.meeting_uuid,
            rtms_stream_id=self.rtms_stream_id,
            signature=self.signature,
            protocol_version=PROTOCOL_VERSION,
            sequence=_default_sequence(now_ms) if sequence is None else sequence,
            rtms_client_agent=UNSET if self.client_agent is None else self.client_agent,
        ))

    def _on_handshake_response(self, msg: Message) -> list[ConnectionEvent]:
        assert isinstance(msg, SignalingHandshakeResponse)
        rejected = self._rejection(msg.status_code, msg.reason)
        if rejected is None and msg.media_server is None:
            # Accepted but nowhere to go: the SDK fails the join with status 6 the same way.
            self._advance(Trigger.RECV_REJECT)
            self.stats.messages_dropped += 1
            return [
                ProtocolViolation(MissingField(
                    "accepted handshake without media_server", field="media_server",
                    msg_type=2,
                )),
                HandshakeRejected(msg.status_code, "no media_server in handshake response"),
            ]
        if rejected is not None:
            self._advance(Trigger.RECV_REJECT)
            return [rejected]
        self._advance(Trigger.RECV_ACCEPT)
        self.response = msg
        assert msg.media_server is not None
        return [HandshakeAccepted(server_urls=msg.media_server.server_urls)]

    def ready_ack(self) -> bytes:
        """Msg 7 (CLIENT_READY_ACK): send once every media handshake succeeded."""
        self._advance(Trigger.SEND_READY_ACK)
        return self._encode(ClientReadyAck(rtms_stream_id=self.rtms_stream_id))

    def subscribe(self, event_types: Iterable[int], subscribe: bool = True) -> bytes:
        """Msg 5 (EVENT_SUBSCRIPTION) for ``event_types``; ``subscribe=False`` unsubscribes."""
        check(self._state, CLIENT_REQUEST_STATES, "send an event subscription")
        items = [EventSubscriptionItem(event_type=int(t), subscribe=subscribe)
                 for t in event_types]
        return self._encode(EventSubscription(events=items))

    def subscribe_video(self, user_id: int, subscribe: bool = True,
                        timestamp: int | None = None) -> bytes:
        """Msg 28 (VIDEO_SUBSCRIPTION_REQ) for one participant's camera."""
        check(self._state, CLIENT_REQUEST_STATES, "send a video subscription")
        return self._encode(VideoSubscriptionRequest(
            user_id=user_id, subscribe=subscribe, timestamp=timestamp
        ))

    def session_state_request(self, now_ms: int, rtms_session_id: str | None = None) -> bytes:
        """Msg 10 (layout ours, section 16)."""
        check(self._state, CLIENT_REQUEST_STATES, "request the session state")
        return self._encode(SessionStateRequest(
            rtms_stream_id=self.rtms_stream_id, rtms_session_id=rtms_session_id,
            timestamp=now_ms,
        ))

    def stream_state_request(self, now_ms: int) -> bytes:
        """Msg 19 (layout ours, section 16)."""
        check(self._state, CLIENT_REQUEST_STATES, "request the stream state")
        return self._encode(StreamStateRequest(rtms_stream_id=self.rtms_stream_id,
                                               timestamp=now_ms))

    def close_request(self, now_ms: int) -> bytes:
        """Msg 21 (STREAM_CLOSE_REQ): graceful close; arms the close-response timeout."""
        self._advance(Trigger.SEND_CLOSE_REQUEST)
        self._close_sent_ms = now_ms
        return self._encode(StreamCloseRequest(rtms_stream_id=self.rtms_stream_id,
                                               timestamp=now_ms))

    def _on_close_response(self, msg: StreamCloseResponse) -> list[ConnectionEvent]:
        if self._state not in (ClientSignalingState.CLOSING, ClientSignalingState.CONNECTED,
                               ClientSignalingState.READY):
            return self._violation(UnexpectedMessage(
                f"STREAM_CLOSE_RESP in state {self._state.name}", msg_type=msg.msg_type
            ))
        self._advance(Trigger.RECV_CLOSE_RESPONSE)
        return [CloseAcknowledged(msg.status_code, msg.reason or "")]

    def next_deadline_ms(self) -> int | None:
        deadline = super().next_deadline_ms()
        if self._state is ClientSignalingState.CLOSING and self._close_sent_ms is not None:
            close_deadline = self._close_sent_ms + self.close_timeout_ms
            deadline = close_deadline if deadline is None else min(deadline, close_deadline)
        return deadline

    def poll(self, now_ms: int) -> list[ConnectionEvent]:
        events = super().poll(now_ms)
        if (self._state is ClientSignalingState.CLOSING and self._close_sent_ms is not None
                and now_ms - self._close_sent_ms >= self.close_timeout_ms):
            self._advance(Trigger.CLOSE_TIMEOUT)
            events.append(CloseTimeout(now_ms - self._close_sent_ms))
        return events


class ClientMediaConnection(_ClientConnection):
    """The client end of one media socket, for ``media_type`` (one bit in split mode as the
    SDK does, several bits or ALL in unified mode). ``media_params`` is what to ask for:
    in split mode only that type's sub-object (section 4.1)."""

    _HANDSHAKING = ClientMediaState.HANDSHAKING
    _STREAMING = ClientMediaState.STREAMING
    _response_type = MediaHandshakeResponse

    def __init__(self, meeting_uuid: str, rtms_stream_id: str, signature: str,
                 media_type: MediaType | int, media_params: MediaParams | None = None, *,
                 handshake_timeout_ms: int = DEFAULT_HANDSHAKE_TIMEOUT_MS,
                 keep_alive_timeout_ms: int | None = None,
                 tolerance: ToleranceStats | None = None) -> None:
        super().__init__(ClientMediaState.IDLE, meeting_uuid=meeting_uuid,
                         rtms_stream_id=rtms_stream_id, signature=signature,
                         handshake_timeout_ms=handshake_timeout_ms,
                         keep_alive_timeout_ms=keep_alive_timeout_ms, tolerance=tolerance)
        self.media_type = MediaType(media_type)
        self.requested_params = media_params
        self.media_params: MediaParams | None = None
        """The negotiated parameters once accepted (the server's answer decides)."""
        self.payload_encrypted = False

    def handshake(self, now_ms: int, sequence: int | None = None) -> bytes:
        """Msg 3 (DATA_HAND_SHAKE_REQ); arms the handshake timeout."""
        self._start_handshake(now_ms)
        return self._encode(MediaHandshakeRequest(
            meeting_uuid=self.meeting_uuid,
            rtms_stream_id=self.rtms_stream_id,
            signature=self.signature,
            media_type=self.media_type,
            media_params=self.requested_params,
            protocol_version=PROTOCOL_VERSION,
            sequence=_default_sequence(now_ms) if sequence is None else sequence,
        ))

    def _on_handshake_response(self, msg: Message) -> list[ConnectionEvent]:
        assert isinstance(msg, MediaHandshakeResponse)
        rejected = self._rejection(msg.status_code, msg.reason)
        if rejected is not None:
            self._advance(Trigger.RECV_REJECT)
            return [rejected]
        self._advance(Trigger.RECV_ACCEPT)
        params = msg.media_params
        self.media_params = params if isinstance(params, MediaParams) else self.requested_params
        self.payload_encrypted = bool(msg.payload_encrypted)
        return [HandshakeAccepted(media_params=self.media_params,
                                  payload_encrypted=self.payload_encrypted)]

    def _media_early(self) -> list[ConnectionEvent]:
        if self._state is ClientMediaState.STREAMING:
            return []
        if self._state in (ClientMediaState.IDLE, ClientMediaState.HANDSHAKING):
            # Section 19: media before (or without) the handshake response means accepted.
            self.stats.tolerance.media_before_handshake += 1
            self._advance(Trigger.RECV_MEDIA_EARLY)
            self.media_params = self.requested_params
            return [HandshakeAccepted(media_params=self.media_params, implicit=True)]
        return []


def _coerce(
    enum_type: type[StreamState] | type[SessionState], value: int
) -> StreamState | SessionState | int:
    try:
        return enum_type(value)
    except ValueError:
        return value
