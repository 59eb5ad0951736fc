"""Server-side sans-IO machines, what the RTMS simulator runs: ``ServerSignalingConnection``
and ``ServerMediaConnection``; plus media parameter negotiation (section 17).

``receive(data, now_ms)`` turns each client message into events. The first message must be
the handshake: the machine checks its fields and signature and reports a ``verdict``
(``StatusCode.OK`` or the status to answer) in ``SignalingHandshakeReceived`` /
``MediaHandshakeReceived``; the caller answers with ``accept(...)`` or ``reject(status)``.
Duplicate streams (status 17 and 31) need a registry across connections, so the caller
decides those and uses ``reject`` to send them. A malformed first message yields a
``ProtocolViolation``; ``status_for_error(event.error)`` gives the status to reject with.

Keep-alives: ``poll(now_ms)`` reports ``KeepAliveDue`` every ``keep_alive_interval_ms``
(send ``keep_alive_request(now_ms)``) and ``KeepAliveTimeout`` once a request has been
unanswered for ``keep_alive_timeout_ms`` (60 s signaling, 65 s media by default, section 18);
the caller then ends the stream, e.g. ``stream_state_update(TERMINATED,
KEEP_ALIVE_TIMEOUT)``. A client that never sends its handshake gets ``HandshakeTimeout``.

This module must never touch sockets, clocks or Trio.
"""

from __future__ import annotations

from collections.abc import Callable

from msgspec import UNSET, UnsetType

from ._connection import BaseConnection, WireData
from ._state import (
    KEEP_ALIVE_STATES,
    SERVER_PUSH_STATES,
    ServerMediaState,
    ServerSignalingState,
    Trigger,
    check,
)
from .enums import (
    AudioChannel,
    AudioSampleRate,
    DataOption,
    MediaCodec,
    MediaContentType,
    MediaType,
    Resolution,
    StatusCode,
    StreamState,
    TranscriptLanguage,
)
from .errors import UnexpectedMessage
from .events import (
    ClientReady,
    CloseRequested,
    ConnectionEvent,
    EventSubscriptionReceived,
    HandshakeTimeout,
    KeepAliveAnswered,
    KeepAliveDue,
    KeepAliveTimeout,
    MediaHandshakeReceived,
    ProtocolViolation,
    SignalingHandshakeReceived,
    StateRequested,
    VideoSubscriptionRequested,
)
from .messages import (
    AudioParams,
    ClientReadyAck,
    DeskshareParams,
    Event,
    EventSubscription,
    EventUpdate,
    KeepAliveRequest,
    KeepAliveResponse,
    MediaDataAudio,
    MediaDataChat,
    MediaDataShare,
    MediaDataTranscript,
    MediaDataVideo,
    MediaHandshakeRequest,
    MediaHandshakeResponse,
    MediaParams,
    MediaServer,
    Message,
    MetaDataAudio,
    MetaDataChat,
    MetaDataShare,
    MetaDataTranscript,
    MetaDataVideo,
    ServerUrls,
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
    TranscriptParams,
    VideoParams,
    VideoSubscriptionRequest,
    VideoSubscriptionResponse,
)
from .signature import verify_rtms_signature

__all__ = [
    "DEFAULT_MEDIA_KEEP_ALIVE_TIMEOUT_MS",
    "DEFAULT_MEDIA_PARAMS",
    "DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS",
    "DEFAULT_SERVER_KEEP_ALIVE_INTERVAL_MS",
    "DEFAULT_SIGNALING_KEEP_ALIVE_TIMEOUT_MS",
    "ServerMediaConnection",
    "ServerSignalingConnection",
    "SignatureCheck",
    "audio_params_allowed",
    "deskshare_params_allowed",
    "negotiate_media_params",
    "transcript_params_allowed",
    "video_params_allowed",
]

DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS = 10_000
DEFAULT_SERVER_KEEP_ALIVE_INTERVAL_MS = 10_000
DEFAULT_SIGNALING_KEEP_ALIVE_TIMEOUT_MS = 60_000
"""Not published; 60 s is the safe assumption of section 18."""
DEFAULT_MEDIA_KEEP_ALIVE_TIMEOUT_MS = 65_000
"""Section 18 (March 2026; was 35 s)."""

DEFAULT_MEDIA_PARAMS = MediaParams(
    audio=AudioParams(), video=VideoParams(), deskshare=DeskshareParams(), transcript=None
)
"""Served when a request is missing or outside section 17: L16 16 kHz mono mixed 20 ms,
H.264 HD 30 fps."""

SignatureCheck = Callable[[str, str, str], bool]
"""``check(meeting_uuid, rtms_stream_id, signature) -> bool``."""

_CT = MediaContentType
_C = MediaCodec
_SR = AudioSampleRate


def audio_params_allowed(params: AudioParams) -> bool:
    """True when section 17's audio matrix (plus the SDK's RAW G.711/G.722 presets) allows
    these parameters."""
    if params.data_opt not in (DataOption.AUDIO_MIXED_STREAM, DataOption.AUDIO_MULTI_STREAMS):
        return False
    if params.channel not in (AudioChannel.MONO, AudioChannel.STEREO):
        return False
    mono = params.channel == AudioChannel.MONO
    twenty_ms = params.send_rate == 20
    codec, rate, content = params.codec, params.sample_rate, params.content_type
    if content not in (_CT.RTP, _CT.RAW_AUDIO):
        return False
    if codec == _C.OPUS:
        return rate == _SR.SR_48K and twenty_ms
    if codec == _C.G711:
        return rate == _SR.SR_8K and mono and twenty_ms
    if codec == _C.G722:
        return rate == _SR.SR_16K and mono and twenty_ms
    if codec == _C.L16:
        return (content == _CT.RAW_AUDIO and 20 <= params.send_rate <= 1000
                and params.send_rate % 20 == 0)
    return False


def _picture_allowed(codec: MediaCodec, fps: int, resolution: Resolution,
                     content_type: MediaContentType) -> bool:
    if content_type != _CT.RAW_VIDEO or resolution == Resolution.UNDEFINED:
        return False
    if codec == _C.H264:
        return 1 <= fps <= 30
    if codec in (_C.JPG, _C.PNG):
        return 1 <= fps <= 5
    return False


def video_params_allowed(params: VideoParams) -> bool:
    """H.264 at 1-30 fps or JPG/PNG at 1-5 fps, a resolution, a video ``data_opt``."""
    return params.data_opt in (
        DataOption.VIDEO_SINGLE_ACTIVE_STREAM,
        DataOption.VIDEO_SINGLE_INDIVIDUAL_STREAM,
        DataOption.VIDEO_MIXED_GALLERY_VIEW,
    ) and _picture_allowed(params.codec, params.fps, params.resolution, params.content_type)


def deskshare_params_allowed(params: DeskshareParams) -> bool:
    """As for video, without ``data_opt``."""
    return _picture_allowed(params.codec, params.fps, params.resolution, params.content_type)


def transcript_params_allowed(params: TranscriptParams) -> bool:
    """TEXT content and a known language (-1 = auto-detect)."""
    return (params.content_type == _CT.TEXT
            and TranscriptLanguage.NONE <= params.src_language <= TranscriptLanguage.VIETNAMESE)


def negotiate_media_params(media_type: MediaType | int, requested: MediaParams | None,
                           default: MediaParams = DEFAULT_MEDIA_PARAMS) -> MediaParams | None:
    """What to answer in msg 4: for each type in ``media_type`` that has parameters, the
    requested sub-object when allowed, else the default one. Transcript parameters are
    echoed when given and valid; a transcript-only socket without any gets None (JSON
    ``null``, which the SDK accepts). Chat has no parameters."""
    kinds = MediaType(media_type)
    if kinds & MediaType.ALL:
        kinds = MediaType.AUDIO | MediaType.VIDEO | MediaType.DESKSHARE | MediaType.TRANSCRIPT
    req = requested or MediaParams()
    audio = video = deskshare = transcript = None
    if kinds & MediaType.AUDIO:
        audio = req.audio if req.audio and audio_params_allowed(req.audio) else default.audio
    if kinds & MediaType.VIDEO:
        video = req.video if req.video and video_params_allowed(req.video) else default.video
    if kinds & MediaType.DESKSHARE:
        deskshare = (req.deskshare if req.deskshare and deskshare_params_allowed(req.deskshare)
                     else default.deskshare)
    if kinds & MediaType.TRANSCRIPT:
        transcript = (req.transcript
                      if req.transcript and transcript_params_allowed(req.transcript)
                      else default.transcript)
    if audio is None and video is None and deskshare is None and transcript is None:
        return None
    return MediaParams(audio=audio, video=video, deskshare=deskshare, transcript=transcript)


_CLIENT_MESSAGES: tuple[type[Message], ...] = (
    ClientReadyAck, EventSubscription, KeepAliveResponse, VideoSubscriptionRequest,
    StreamCloseRequest, SessionStateRequest, StreamStateRequest,
)


class _ServerConnection(BaseConnection[ServerSignalingState | ServerMediaState]):
    """Handshake checks, keep-alive scheduling and client-message handling."""

    _AWAITING: ServerSignalingState | ServerMediaState
    _RECEIVED: ServerSignalingState | ServerMediaState
    _request_type: type[SignalingHandshakeRequest] | type[MediaHandshakeRequest]

    def __init__(self, state: ServerSignalingState | ServerMediaState, *,
                 client_id: str | None, client_secret: str | None,
                 verify_signature: SignatureCheck | None, handshake_timeout_ms: int,
                 keep_alive_interval_ms: int | None, keep_alive_timeout_ms: int | None,
                 now_ms: int | None) -> None:
        super().__init__(state)
        if verify_signature is None and client_secret is not None:
            if client_id is None:
                raise ValueError("client_secret needs client_id to check signatures")
            cid, secret = client_id, client_secret

            def verify_signature(meeting_uuid: str, stream_id: str, signature: str) -> bool:
                return verify_rtms_signature(cid, meeting_uuid, stream_id, secret, signature)

        self._verify_signature = verify_signature
        self.handshake_timeout_ms = handshake_timeout_ms
        self.keep_alive_interval_ms = keep_alive_interval_ms
        self.keep_alive_timeout_ms = keep_alive_timeout_ms
        self._opened_ms = now_ms
        self._next_keep_alive_ms: int | None = None
        self._keep_alive_due_reported = False
        self._unanswered_since_ms: int | None = None
        self._silence_reported = False
        self._keep_alive_sequence = 0
        self._keep_alive_sent_ms: dict[int, int] = {}
        self.request: SignalingHandshakeRequest | MediaHandshakeRequest | None = None
        """The handshake request, once received."""

    # -- receiving --------------------------------------------------------------------------

    def receive(self, data: WireData, now_ms: int) -> list[ConnectionEvent]:
        """Process one received WebSocket message (text or binary)."""
        if self._opened_ms is None:
            self._opened_ms = now_ms
        msg = self._decode(data)
        if msg is None:
            return []
        if isinstance(msg, ProtocolViolation):
            return [msg]
        if self._state is self._AWAITING:
            if not isinstance(msg, self._request_type):
                return self._violation(UnexpectedMessage(
                    f"expected the handshake request, got {type(msg).__name__}",
                    msg_type=msg.msg_type,
                ))
            self._advance(Trigger.RECV_HANDSHAKE)
            self.request = msg
            return [self._on_handshake(msg, self._verdict(msg))]
        if self._state is self._RECEIVED:
            return self._violation(UnexpectedMessage(
                "message before the handshake was answered", msg_type=msg.msg_type
            ))
        if isinstance(msg, KeepAliveResponse):
            return self._on_keep_alive_response(msg, now_ms)
        return self._on_message(msg, now_ms)

    def _on_handshake(self, msg: SignalingHandshakeRequest | MediaHandshakeRequest,
                      verdict: StatusCode) -> ConnectionEvent:
        raise NotImplementedError

    def _on_message(self, msg: Message, now_ms: int) -> list[ConnectionEvent]:
        return self._unexpected(msg)

    def _unexpected(self, msg: Message) -> list[ConnectionEvent]:
        origin = "client" if isinstance(msg, _CLIENT_MESSAGES) else "server"
        return self._violation(UnexpectedMessage(
            f"{type(msg).__name__} (a {origin} message) is not legal here in state "
            f"{self._state.name}", msg_type=msg.msg_type,
        ))

    def _verdict(self, msg: SignalingHandshakeRequest | MediaHandshakeRequest) -> StatusCode:
        """Field rules of section 3.2, then the signature."""
        if not msg.meeting_uuid:
            return StatusCode.MEETING_UUID_IS_EMPTY
        if not msg.rtms_stream_id:
            return StatusCode.RTMS_STREAM_ID_IS_EMPTY
        if not msg.signature:
            return StatusCode.SIGNATURE_NOT_EXIST
        if self._verify_signature is not None and not self._verify_signature(
            msg.meeting_uuid, msg.rtms_stream_id, msg.signature
        ):
            return StatusCode.INVALID_SIGNATURE
        return StatusCode.OK

    def _on_keep_alive_response(self, msg: KeepAliveResponse,
                                now_ms: int) -> list[ConnectionEvent]:
        self.stats.keep_alive_responses += 1
        sent_ms = self._keep_alive_sent_ms.pop(msg.sequence, None) if msg.sequence else None
        if msg.sequence is not None:
            # Older requests are implicitly answered too.
            for seq in [s for s in self._keep_alive_sent_ms if s < msg.sequence]:
                del self._keep_alive_sent_ms[seq]
        self._unanswered_since_ms = None
        self._silence_reported = False
        rtt_ms = None if sent_ms is None else now_ms - sent_ms
        return [KeepAliveAnswered(msg.sequence, msg.timestamp, rtt_ms)]

    # -- sending ----------------------------------------------------------------------------

    def _accepted(self, now_ms: int) -> None:
        self._advance(Trigger.SEND_ACCEPT)
        if self.keep_alive_interval_ms is not None:
            self._next_keep_alive_ms = now_ms + self.keep_alive_interval_ms

    def keep_alive_request(self, now_ms: int) -> bytes:
        """Msg 12 with the next sequence number and ``timestamp = now_ms``."""
        check(self._state, KEEP_ALIVE_STATES, "send a keep-alive")
        self._keep_alive_sequence += 1
        seq = self._keep_alive_sequence
        self._keep_alive_sent_ms[seq] = now_ms
        if len(self._keep_alive_sent_ms) > 64:  # bound the memory of a mute client
            del self._keep_alive_sent_ms[min(self._keep_alive_sent_ms)]
        if self._unanswered_since_ms is None:
            self._unanswered_since_ms = now_ms
        if self.keep_alive_interval_ms is not None:
            self._next_keep_alive_ms = now_ms + self.keep_alive_interval_ms
        self._keep_alive_due_reported = False
        self.stats.keep_alive_requests += 1
        return self._encode(KeepAliveRequest(timestamp=now_ms, sequence=seq))

    def _handshake_response_fields(self) -> tuple[int | None, int | None]:
        """``protocol_version`` and the request's ``sequence`` to echo (None if absent)."""
        sequence = self.request.sequence if self.request is not None else None
        return 1, sequence if isinstance(sequence, int) else None

    # -- timers -----------------------------------------------------------------------------

    def next_deadline_ms(self) -> int | None:
        """When ``poll`` next has something to report (None: no timer armed)."""
        deadlines = []
        if self._state in (self._AWAITING, self._RECEIVED) and self._opened_ms is not None:
            deadlines.append(self._opened_ms + self.handshake_timeout_ms)
        if self._state in KEEP_ALIVE_STATES:
            if self._next_keep_alive_ms is not None and not self._keep_alive_due_reported:
                deadlines.append(self._next_keep_alive_ms)
            if (self._unanswered_since_ms is not None and self.keep_alive_timeout_ms is not None
                    and not self._silence_reported):
                deadlines.append(self._unanswered_since_ms + self.keep_alive_timeout_ms)
        return min(deadlines) if deadlines else None

    def poll(self, now_ms: int) -> list[ConnectionEvent]:
        """Timer events due at ``now_ms``: HandshakeTimeout, KeepAliveDue, KeepAliveTimeout."""
        if self._opened_ms is None:
            self._opened_ms = now_ms
        events: list[ConnectionEvent] = []
        if (self._state in (self._AWAITING, self._RECEIVED)
                and now_ms - self._opened_ms >= self.handshake_timeout_ms):
            self._advance(Trigger.HANDSHAKE_TIMEOUT)
            events.append(HandshakeTimeout(now_ms - self._opened_ms))
        if self._state in KEEP_ALIVE_STATES:
            if (self._unanswered_since_ms is not None and self.keep_alive_timeout_ms is not None
                    and not self._silence_reported
                    and now_ms - self._unanswered_since_ms >= self.keep_alive_timeout_ms):
                self._silence_reported = True
                events.append(KeepAliveTimeout(now_ms - self._unanswered_since_ms))
            if (self._next_keep_alive_ms is not None and not self._keep_alive_due_reported
                    and now_ms >= self._next_keep_alive_ms):
                self._keep_alive_due_reported = True
                events.append(KeepAliveDue())
        return events


class ServerSignalingConnection(_ServerConnection):
    """The server end of a signaling socket.

    Signatures are checked with ``verify_signature(meeting_uuid, stream_id, signature)`` if
    given, else against ``client_id``/``client_secret`` if given, else not at all. ``now_ms``
    is when the socket was accepted (default: the first ``receive``/``poll``).
    """

    _AWAITING = ServerSignalingState.AWAITING_HANDSHAKE
    _RECEIVED = ServerSignalingState.HANDSHAKE_RECEIVED
    _request_type = SignalingHandshakeRequest

    def __init__(self, *, client_id: str | None = None, client_secret: str | None = None,
                 verify_signature: SignatureCheck | None = None,
                 handshake_timeout_ms: int = DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
                 keep_alive_interval_ms: int | None = DEFAULT_SERVER_KEEP_ALIVE_INTERVAL_MS,
                 keep_alive_timeout_ms: int | None = DEFAULT_SIGNALING_KEEP_ALIVE_TIMEOUT_MS,
                 now_ms: int | None = None) -> None:
        super().__init__(ServerSignalingState.AWAITING_HANDSHAKE, client_id=client_id,
                         client_secret=client_secret, verify_signature=verify_signature,
                         handshake_timeout_ms=handshake_timeout_ms,
                         keep_alive_interval_ms=keep_alive_interval_ms,
                         keep_alive_timeout_ms=keep_alive_timeout_ms, now_ms=now_ms)
        self.subscribed_events: frozenset[int] = frozenset()
        """Event types the client subscribed to (msg 5), to filter ``event_update``."""

    def _on_handshake(self, msg: SignalingHandshakeRequest | MediaHandshakeRequest,
                      verdict: StatusCode) -> ConnectionEvent:
        assert isinstance(msg, SignalingHandshakeRequest)
        return SignalingHandshakeReceived(msg, verdict)

    def _on_message(self, msg: Message, now_ms: int) -> list[ConnectionEvent]:
        if isinstance(msg, ClientReadyAck):
            if self._state is ServerSignalingState.CONNECTED:
                self._advance(Trigger.RECV_READY_ACK)
                return [ClientReady(msg.rtms_stream_id)]
            return self._unexpected(msg)
        if self._state is ServerSignalingState.CLOSE_REQUESTED:
            return self._unexpected(msg)
        if isinstance(msg, EventSubscription):
            subscribed = set(self.subscribed_events)
            for item in msg.events:
                (subscribed.add if item.subscribe else subscribed.discard)(item.event_type)
            self.subscribed_events = frozenset(subscribed)
            return [EventSubscriptionReceived(tuple(msg.events), self.subscribed_events)]
        if isinstance(msg, VideoSubscriptionRequest):
            return [VideoSubscriptionRequested(msg.user_id, msg.subscribe)]
        if isinstance(msg, StreamCloseRequest):
            self._advance(Trigger.RECV_CLOSE_REQUEST)
            return [CloseRequested(msg.rtms_stream_id)]
        if isinstance(msg, SessionStateRequest | StreamStateRequest):
            return [StateRequested(msg)]
        return self._unexpected(msg)

    def accept(self, server_urls: ServerUrls | str, now_ms: int) -> bytes:
        """Msg 2 with status 0. A plain URL string becomes every per-type key plus ``all``
        (section 15), which both the SDK and unified-mode clients read."""
        urls = ServerUrls.uniform(server_urls) if isinstance(server_urls, str) else server_urls
        self._accepted(now_ms)
        version, sequence = self._handshake_response_fields()
        return self._encode(SignalingHandshakeResponse(
            status_code=StatusCode.OK, reason="", protocol_version=version, sequence=sequence,
            media_server=MediaServer(server_urls=urls),
        ))

    def reject(self, status_code: StatusCode | int, reason: str = "") -> bytes:
        """Msg 2 with a non-zero status; the connection is FAILED afterwards."""
        if int(status_code) == 0:
            raise ValueError("reject needs a non-zero status code")
        self._advance(Trigger.SEND_REJECT)
        version, sequence = self._handshake_response_fields()
        return self._encode(SignalingHandshakeResponse(
            status_code=int(status_code), reason=reason or _status_text(status_code),
            protocol_version=version, sequence=sequence,
        ))

    def event_update(self, event: Event) -> bytes:
        """Msg 6 (the caller filters by ``subscribed_events`` if it wants to)."""
        check(self._state, SERVER_PUSH_STATES, "send an event")
        return self._encode(EventUpdate(event=event))

    def stream_state_update(self, state: StreamState | int, reason: int, now_ms: int) -> bytes:
        """Msg 8; TERMINATED ends the stream (the client then closes every socket)."""
        check(self._state, SERVER_PUSH_STATES, "send a stream state update")
        if int(state) == StreamState.TERMINATED:
            self._advance(Trigger.SEND_TERMINATED)
        return self._encode(StreamStateUpdate(state=int(state), reason=int(reason),
                                              timestamp=now_ms))

    def session_state_update(self, rtms_session_id: str, state: int, now_ms: int,
                             reason: int | None = None) -> bytes:
        """Msg 9 (beware: it can crash the official Python SDK, section 8)."""
        check(self._state, SERVER_PUSH_STATES, "send a session state update")
        return self._encode(SessionStateUpdate(rtms_session_id=rtms_session_id,
                                               state=int(state), reason=reason,
                                               timestamp=now_ms))

    def video_subscription_response(self, user_id: int, now_ms: int,
                                    status_code: StatusCode | int = StatusCode.OK,
                                    reason: str = "") -> bytes:
        """Msg 29 answering a VideoSubscriptionRequested."""
        check(self._state, SERVER_PUSH_STATES, "answer a video subscription")
        return self._encode(VideoSubscriptionResponse(
            user_id=user_id, status_code=int(status_code), reason=reason, timestamp=now_ms,
        ))

    def session_state_response(self, now_ms: int, rtms_session_id: str | None = None,
                               state: int | None = None,
                               status_code: StatusCode | int = StatusCode.OK) -> bytes:
        """Msg 11 answering msg 10 (layout ours, section 16)."""
        check(self._state, SERVER_PUSH_STATES, "answer a session state request")
        return self._encode(SessionStateResponse(
            rtms_stream_id=self._stream_id(), rtms_session_id=rtms_session_id, state=state,
            status_code=int(status_code), timestamp=now_ms,
        ))

    def stream_state_response(self, now_ms: int, state: int, reason: int | None = None,
                              status_code: StatusCode | int = StatusCode.OK) -> bytes:
        """Msg 20 answering msg 19 (layout ours, section 16)."""
        check(self._state, SERVER_PUSH_STATES, "answer a stream state request")
        return self._encode(StreamStateResponse(
            rtms_stream_id=self._stream_id(), state=int(state), reason=reason,
            status_code=int(status_code), timestamp=now_ms,
        ))

    def close_response(self, now_ms: int, status_code: StatusCode | int = StatusCode.OK,
                       reason: str = "") -> bytes:
        """Msg 22 answering CloseRequested; the connection is CLOSED afterwards."""
        self._advance(Trigger.SEND_CLOSE_RESPONSE)
        return self._encode(StreamCloseResponse(
            rtms_stream_id=self._stream_id(), status_code=int(status_code), reason=reason,
            timestamp=now_ms,
        ))

    def _stream_id(self) -> str | None:
        return self.request.rtms_stream_id if self.request is not None else None


_MEDIA_OUT = (MediaDataAudio, MediaDataVideo, MediaDataShare, MediaDataTranscript,
              MediaDataChat, MetaDataAudio, MetaDataVideo, MetaDataShare, MetaDataTranscript,
              MetaDataChat)


class ServerMediaConnection(_ServerConnection):
    """The server end of one media socket; negotiates parameters against
    ``default_params`` (section 17)."""

    _AWAITING = ServerMediaState.AWAITING_HANDSHAKE
    _RECEIVED = ServerMediaState.HANDSHAKE_RECEIVED
    _request_type = MediaHandshakeRequest

    def __init__(self, *, client_id: str | None = None, client_secret: str | None = None,
                 verify_signature: SignatureCheck | None = None,
                 default_params: MediaParams = DEFAULT_MEDIA_PARAMS,
                 handshake_timeout_ms: int = DEFAULT_SERVER_HANDSHAKE_TIMEOUT_MS,
                 keep_alive_interval_ms: int | None = DEFAULT_SERVER_KEEP_ALIVE_INTERVAL_MS,
                 keep_alive_timeout_ms: int | None = DEFAULT_MEDIA_KEEP_ALIVE_TIMEOUT_MS,
                 now_ms: int | None = None) -> None:
        super().__init__(ServerMediaState.AWAITING_HANDSHAKE, client_id=client_id,
                         client_secret=client_secret, verify_signature=verify_signature,
                         handshake_timeout_ms=handshake_timeout_ms,
                         keep_alive_interval_ms=keep_alive_interval_ms,
                         keep_alive_timeout_ms=keep_alive_timeout_ms, now_ms=now_ms)
        self.default_params = default_params
        self.media_type: MediaType | None = None
        self.media_params: MediaParams | None = None
        """Negotiated on receipt of msg 3; what ``accept()`` answers unless overridden."""

    def _verdict(self, msg: SignalingHandshakeRequest | MediaHandshakeRequest) -> StatusCode:
        verdict = super()._verdict(msg)
        assert isinstance(msg, MediaHandshakeRequest)
        if verdict == StatusCode.OK and not 0 < int(msg.media_type) < 64:
            return StatusCode.INVALID_JSON_MSG
        return verdict

    def _on_handshake(self, msg: SignalingHandshakeRequest | MediaHandshakeRequest,
                      verdict: StatusCode) -> ConnectionEvent:
        assert isinstance(msg, MediaHandshakeRequest)
        self.media_type = MediaType(int(msg.media_type) & 63)
        self.media_params = negotiate_media_params(self.media_type, msg.media_params,
                                                   self.default_params)
        return MediaHandshakeReceived(msg, verdict, self.media_params)

    def accept(self, now_ms: int,
               media_params: MediaParams | UnsetType | None = UNSET,
               payload_encrypted: bool = False) -> bytes:
        """Msg 4 with status 0 and the negotiated ``media_params`` (or those given)."""
        if not isinstance(media_params, UnsetType):
            self.media_params = media_params
        self._accepted(now_ms)
        version, sequence = self._handshake_response_fields()
        return self._encode(MediaHandshakeResponse(
            status_code=StatusCode.OK, reason="", protocol_version=version, sequence=sequence,
            payload_encrypted=payload_encrypted, media_params=self.media_params,
        ))

    def reject(self, status_code: StatusCode | int, reason: str = "") -> bytes:
        """Msg 4 with a non-zero status; the connection is FAILED afterwards."""
        if int(status_code) == 0:
            raise ValueError("reject needs a non-zero status code")
        self._advance(Trigger.SEND_REJECT)
        version, sequence = self._handshake_response_fields()
        return self._encode(MediaHandshakeResponse(
            status_code=int(status_code), reason=reason or _status_text(status_code),
            protocol_version=version, sequence=sequence, payload_encrypted=False,
        ))

    def media(self, msg: Message) -> bytes:
        """Encode a media (14-18) or metadata (23-27) message for this socket."""
        check(self._state, SERVER_PUSH_STATES, "send media")
        if not isinstance(msg, _MEDIA_OUT):
            raise TypeError(f"{type(msg).__name__} is not a media or metadata message")
        return self._encode(msg)

    def end(self) -> None:
        """Mark the stream ended (msg 8 TERMINATED went out on signaling); a close after
        this is the expected end. Sends nothing."""
        self._advance(Trigger.SEND_TERMINATED)


def _status_text(status_code: StatusCode | int) -> str:
    try:
        return StatusCode(int(status_code)).name
    except ValueError:
        return f"status {int(status_code)}"
