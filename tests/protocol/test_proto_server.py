# mypy: disable-error-code="comparison-overlap"
"""Server state machines (what the simulator runs) and media parameter negotiation."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rtms_fast.protocol import (
    DEFAULT_MEDIA_PARAMS,
    AudioChannel,
    AudioParams,
    AudioSampleRate,
    ClientMediaConnection,
    ClientReady,
    ClientReadyAck,
    ClientSignalingConnection,
    CloseOutcome,
    CloseRequested,
    DataOption,
    DeskshareParams,
    Event,
    EventSubscriptionReceived,
    HandshakeAccepted,
    HandshakeTimeout,
    KeepAliveAnswered,
    KeepAliveDue,
    KeepAliveTimeout,
    MediaCodec,
    MediaContent,
    MediaContentType,
    MediaDataAudio,
    MediaHandshakeReceived,
    MediaParams,
    MediaType,
    ProtocolViolation,
    Resolution,
    ServerMediaConnection,
    ServerMediaState,
    ServerSignalingConnection,
    ServerSignalingState,
    SignalingHandshakeReceived,
    StateError,
    StateRequested,
    StatusCode,
    StopReason,
    StreamState,
    TranscriptParams,
    UnexpectedMessage,
    VideoParams,
    VideoSubscriptionRequested,
    _connection,
    _state,
    negotiate_media_params,
    rtms_signature,
    status_for_error,
)

SIG = rtms_signature("cid", "abc==", "stream123", "sec")
URL = "ws://127.0.0.1:9002/media"
HELLO = json.dumps({"msg_type": 1, "meeting_uuid": "abc==", "rtms_stream_id": "stream123",
                    "signature": SIG, "protocol_version": 1, "sequence": 851676}).encode()


def _wire(data: bytes) -> dict[str, object]:
    obj = json.loads(data)
    assert isinstance(obj, dict)
    return obj


def _media_hello(media_type: int = 1, params: object = None, **extra: object) -> bytes:
    body = {"msg_type": 3, "meeting_uuid": "abc==", "rtms_stream_id": "stream123",
            "signature": SIG, "media_type": media_type, "sequence": 851696, **extra}
    if params is not None:
        body["media_params"] = params
    return json.dumps(body).encode()


def server(**kw: object) -> ServerSignalingConnection:
    return ServerSignalingConnection(client_id="cid", client_secret="sec", **kw)  # type: ignore[arg-type]


def accepted_server(**kw: object) -> ServerSignalingConnection:
    srv = server(**kw)
    srv.receive(HELLO, 0)
    srv.accept(URL, 0)
    return srv


def media_server(**kw: object) -> ServerMediaConnection:
    return ServerMediaConnection(client_id="cid", client_secret="sec", **kw)  # type: ignore[arg-type]


# --- signaling scenarios --------------------------------------------------------------------


def scenario_signaling_section_15_contract() -> None:
    srv = server()
    assert srv.state is ServerSignalingState.AWAITING_HANDSHAKE
    [hello] = srv.receive(HELLO, 100)
    assert isinstance(hello, SignalingHandshakeReceived) and hello.verdict is StatusCode.OK
    assert hello.request.meeting_uuid == "abc==" and srv.request == hello.request
    assert srv.state is ServerSignalingState.HANDSHAKE_RECEIVED
    assert _wire(srv.accept(URL, 110)) == {
        "msg_type": 2, "status_code": 0, "reason": "", "protocol_version": 1,
        "sequence": 851676, "media_server": {"server_urls": {k: URL for k in (
            "audio", "video", "deskshare", "transcript", "chat", "all")}}}
    assert srv.state is ServerSignalingState.CONNECTED
    [sub] = srv.receive(b'{"msg_type":5,"events":[{"event_type":2,"subscribe":true},'
                        b'{"event_type":8,"subscribe":true}]}', 120)
    assert isinstance(sub, EventSubscriptionReceived) and sub.subscribed == {2, 8}
    assert srv.receive(b'{"msg_type":7,"rtms_stream_id":"stream123"}', 130) == [
        ClientReady("stream123")]
    assert srv.state is ServerSignalingState.READY
    [sub] = srv.receive(b'{"msg_type":5,"events":[{"event_type":8,"subscribe":false}]}', 140)
    assert isinstance(sub, EventSubscriptionReceived) and srv.subscribed_events == {2}
    assert _wire(srv.event_update(Event(event_type=2, user_id=1, timestamp=5))) == {
        "msg_type": 6, "event": {"event_type": 2, "user_id": 1, "timestamp": 5}}
    assert _wire(srv.stream_state_update(StreamState.ACTIVE, 0, 150)) == {
        "msg_type": 8, "state": 1, "reason": 0, "timestamp": 150}
    assert _wire(srv.session_state_update("sess", 2, 160)) == {
        "msg_type": 9, "rtms_session_id": "sess", "state": 2, "timestamp": 160}
    assert _wire(srv.stream_state_update(StreamState.TERMINATED, StopReason.MEETING_ENDED,
                                         170)) == {
        "msg_type": 8, "state": 4, "reason": 6, "timestamp": 170}
    assert srv.state is ServerSignalingState.CLOSED
    with pytest.raises(StateError):
        srv.event_update(Event(event_type=2))
    assert srv.connection_closed(1000)[0].outcome is CloseOutcome.COMPLETED


def scenario_signaling_rejections() -> None:
    bad = server()
    [hello] = bad.receive(HELLO.replace(b'"stream123"', b'"stream124"'), 0)
    assert isinstance(hello, SignalingHandshakeReceived)
    assert hello.verdict is StatusCode.INVALID_SIGNATURE
    assert _wire(bad.reject(hello.verdict)) == {
        "msg_type": 2, "status_code": 15, "reason": "INVALID_SIGNATURE",
        "protocol_version": 1, "sequence": 851676}
    assert bad.state is ServerSignalingState.FAILED
    bad.connection_closed(1000)
    assert bad.state is ServerSignalingState.FAILED
    # A malformed first message: reject straight from AWAITING_HANDSHAKE.
    junk = server()
    [violation] = junk.receive(b"{oops", 0)
    assert isinstance(violation, ProtocolViolation)
    assert _wire(junk.reject(status_for_error(violation.error)))["status_code"] == 3
    assert junk.state is ServerSignalingState.FAILED


def scenario_signaling_handshake_timeouts() -> None:
    silent = server(now_ms=1000)
    assert silent.next_deadline_ms() == 11_000
    assert silent.poll(10_999) == []
    assert silent.poll(11_000) == [HandshakeTimeout(10_000)]
    assert silent.state is ServerSignalingState.FAILED
    undecided = server()
    undecided.receive(HELLO, 0)
    assert undecided.poll(10_000) == [HandshakeTimeout(10_000)]
    assert undecided.state is ServerSignalingState.FAILED


def scenario_signaling_socket_closes_early() -> None:
    for prepare in (lambda s: None, lambda s: s.receive(HELLO, 0)):
        srv = server()
        prepare(srv)
        [closed] = srv.connection_closed(None)
        assert closed.outcome is CloseOutcome.RESET
        assert srv.state is ServerSignalingState.FAILED
    connected = accepted_server()
    connected.connection_closed(1006)
    assert connected.state is ServerSignalingState.CLOSED
    ready = accepted_server()
    ready.receive(b'{"msg_type":7,"rtms_stream_id":"stream123"}', 1)
    ready.connection_closed(1000)
    assert ready.state is ServerSignalingState.CLOSED


def scenario_signaling_graceful_close() -> None:
    for ready_first in (False, True):
        srv = accepted_server()
        if ready_first:
            srv.receive(b'{"msg_type":7,"rtms_stream_id":"stream123"}', 1)
        assert srv.receive(b'{"msg_type":21,"rtms_stream_id":"stream123","timestamp":5}',
                           2) == [CloseRequested("stream123")]
        assert srv.state is ServerSignalingState.CLOSE_REQUESTED
        assert _wire(srv.close_response(3)) == {
            "msg_type": 22, "rtms_stream_id": "stream123", "status_code": 0, "reason": "",
            "timestamp": 3}
        assert srv.state is ServerSignalingState.CLOSED
    racing = accepted_server()
    racing.receive(b'{"msg_type":21}', 2)
    racing.stream_state_update(StreamState.TERMINATED, StopReason.RECEIVER_REQUEST_CLOSE, 3)
    assert racing.state is ServerSignalingState.CLOSED
    lost = accepted_server()
    lost.receive(b'{"msg_type":21}', 2)
    lost.connection_closed(1006)
    assert lost.state is ServerSignalingState.CLOSED
    early_end = accepted_server()
    early_end.stream_state_update(StreamState.TERMINATED, StopReason.HOST_TRIGGERED, 1)
    assert early_end.state is ServerSignalingState.CLOSED


# --- media scenarios ------------------------------------------------------------------------


def scenario_media_split_mode_like_the_sdk() -> None:
    audio = {"channel": 2, "codec": 4, "content_type": 2, "data_opt": 2, "sample_rate": 3,
             "send_rate": 20}
    srv = media_server()
    assert srv.state is ServerMediaState.AWAITING_HANDSHAKE
    [hello] = srv.receive(_media_hello(1, {"audio": audio}), 0)
    assert isinstance(hello, MediaHandshakeReceived) and hello.verdict is StatusCode.OK
    assert srv.state is ServerMediaState.HANDSHAKE_RECEIVED
    assert _wire(srv.accept(1)) == {
        "msg_type": 4, "status_code": 0, "reason": "", "protocol_version": 1,
        "sequence": 851696, "payload_encrypted": False, "media_params": {"audio": {
            "content_type": 2, "codec": 4, "sample_rate": 3, "channel": 2, "data_opt": 2,
            "send_rate": 20}}}
    assert srv.state is ServerMediaState.STREAMING
    out = srv.media(MediaDataAudio(content=MediaContent(
        user_id=16778240, user_name="Alice", data=b"\x01\x02", timestamp=7)))
    assert _wire(out) == {"msg_type": 14, "content": {
        "user_id": 16778240, "user_name": "Alice", "data": "AQI=", "timestamp": 7}}
    with pytest.raises(TypeError):
        srv.media(ClientReadyAck(rtms_stream_id="x"))
    srv.end()
    assert srv.state is ServerMediaState.CLOSED
    assert srv.connection_closed(1000)[0].outcome is CloseOutcome.COMPLETED
    # The transcript socket without params answers "media_params": null (accepted by the SDK).
    tr = media_server()
    [hello] = tr.receive(_media_hello(8, None, media_params=None), 0)
    assert isinstance(hello, MediaHandshakeReceived) and hello.media_params is None
    assert _wire(tr.accept(1))["media_params"] is None
    tr.connection_closed(1006)
    assert tr.state is ServerMediaState.CLOSED


def scenario_media_rejections_and_timeouts() -> None:
    bad = media_server()
    [hello] = bad.receive(_media_hello(1, signature="deadbeef"), 0)
    assert isinstance(hello, MediaHandshakeReceived)
    assert hello.verdict is StatusCode.INVALID_SIGNATURE
    assert _wire(bad.reject(StatusCode.DUPLICATE_MEDIA_DATA_CONNECTION, "dup"))[
        "status_code"] == 31
    assert bad.state is ServerMediaState.FAILED
    bad.connection_closed(1000)
    junk = media_server()
    [violation] = junk.receive(b'{"msg_type":3}', 0)
    assert isinstance(violation, ProtocolViolation)
    junk.reject(status_for_error(violation.error))
    assert junk.state is ServerMediaState.FAILED
    silent = media_server(now_ms=0)
    assert silent.poll(10_000) == [HandshakeTimeout(10_000)]
    assert silent.state is ServerMediaState.FAILED
    undecided = media_server()
    undecided.receive(_media_hello(), 0)
    undecided.poll(10_000)
    assert undecided.state is ServerMediaState.FAILED
    for prepare in (lambda s: None, lambda s: s.receive(_media_hello(), 0)):
        gone = media_server()
        prepare(gone)
        gone.connection_closed(1006)
        assert gone.state is ServerMediaState.FAILED


SCENARIOS = [v for k, v in sorted(globals().items()) if k.startswith("scenario_")]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__[9:])
def test_scenario(scenario: Callable[[], None]) -> None:
    scenario()


def test_every_server_transition_is_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: set[tuple[object, object]] = set()
    real = _state.advance

    def recording(state: _state._State, trigger: _state.Trigger) -> _state._State:
        taken.add((state, trigger))
        return real(state, trigger)

    monkeypatch.setattr(_connection, "advance", recording)
    for scenario in SCENARIOS:
        scenario()
    table = {(s, t) for s, row in _state._TABLE.items() for t in row
             if isinstance(s, ServerSignalingState | ServerMediaState)}
    assert table - taken == set()


# --- handshake checks -----------------------------------------------------------------------


@pytest.mark.parametrize(("change", "verdict"), [
    ({}, StatusCode.OK),
    ({"meeting_uuid": ""}, StatusCode.MEETING_UUID_IS_EMPTY),
    ({"rtms_stream_id": ""}, StatusCode.RTMS_STREAM_ID_IS_EMPTY),
    ({"signature": ""}, StatusCode.SIGNATURE_NOT_EXIST),
    ({"signature": "deadbeef"}, StatusCode.INVALID_SIGNATURE),
    ({"signature": SIG.upper()}, StatusCode.OK),
])
def test_signaling_handshake_verdicts(change: dict[str, str], verdict: StatusCode) -> None:
    body = {**json.loads(HELLO), **change}
    [event] = server().receive(json.dumps(body), 0)
    assert isinstance(event, SignalingHandshakeReceived) and event.verdict is verdict


def test_signature_callback_and_unchecked_server() -> None:
    seen: list[tuple[str, str, str]] = []

    def check(meeting: str, stream: str, signature: str) -> bool:
        seen.append((meeting, stream, signature))
        return signature == "deadbeef"

    srv = ServerSignalingConnection(verify_signature=check)
    [event] = srv.receive(HELLO.replace(SIG.encode(), b"deadbeef"), 0)
    assert isinstance(event, SignalingHandshakeReceived) and event.verdict is StatusCode.OK
    assert seen == [("abc==", "stream123", "deadbeef")]
    [event] = ServerSignalingConnection().receive(HELLO.replace(SIG.encode(), b"x"), 0)
    assert isinstance(event, SignalingHandshakeReceived) and event.verdict is StatusCode.OK
    with pytest.raises(ValueError):
        ServerSignalingConnection(client_secret="sec")


@pytest.mark.parametrize(("data", "status"), [
    (b"{oops", StatusCode.INVALID_JSON_MSG),
    (b'{"meeting_uuid":"m"}', StatusCode.MSG_TYPE_NOT_EXIST),
    (b'{"msg_type":"1"}', StatusCode.MSG_TYPE_NOT_UINT),
    (b'{"msg_type":77}', StatusCode.INVALID_MESSAGE_TYPE),
    (b'{"msg_type":1,"rtms_stream_id":"s","signature":"x"}', StatusCode.MEETING_UUID_NOT_EXIST),
    (b'{"msg_type":1,"meeting_uuid":5,"rtms_stream_id":"s","signature":"x"}',
     StatusCode.MEETING_UUID_NOT_STRING),
    (b'{"msg_type":1,"meeting_uuid":"m","signature":"x"}', StatusCode.RTMS_STREAM_ID_NOT_EXIST),
    (b'{"msg_type":1,"meeting_uuid":"m","rtms_stream_id":[],"signature":"x"}',
     StatusCode.RTMS_STREAM_ID_NOT_STRING),
    (b'{"msg_type":1,"meeting_uuid":"m","rtms_stream_id":"s"}', StatusCode.SIGNATURE_NOT_EXIST),
    (b'{"msg_type":7,"rtms_stream_id":"s"}', StatusCode.INVALID_MESSAGE_TYPE),
    (b'{"msg_type":3,"meeting_uuid":"m","rtms_stream_id":"s","signature":"x","media_type":1}',
     StatusCode.INVALID_MESSAGE_TYPE),
])
def test_bad_first_message_maps_to_a_status(data: bytes, status: StatusCode) -> None:
    srv = server()
    [violation] = srv.receive(data, 0)
    assert isinstance(violation, ProtocolViolation)
    assert status_for_error(violation.error) is status
    assert srv.state is ServerSignalingState.AWAITING_HANDSHAKE
    assert srv.stats.messages_dropped == 1
    # The client may still send a good handshake.
    assert isinstance(srv.receive(HELLO, 1)[0], SignalingHandshakeReceived)


def test_media_type_must_be_a_known_bitmask() -> None:
    for media_type in (0, 64):
        [event] = media_server().receive(_media_hello(media_type), 0)
        assert isinstance(event, MediaHandshakeReceived)
        assert event.verdict is StatusCode.INVALID_JSON_MSG


def test_reject_needs_a_nonzero_status() -> None:
    srv = server()
    srv.receive(HELLO, 0)
    with pytest.raises(ValueError):
        srv.reject(0)
    with pytest.raises(ValueError):
        media_server().reject(StatusCode.OK)
    assert srv.state is ServerSignalingState.HANDSHAKE_RECEIVED


# --- keep-alives ----------------------------------------------------------------------------


def test_keep_alive_schedule_answers_and_timeout() -> None:
    srv = server(keep_alive_interval_ms=10_000, keep_alive_timeout_ms=60_000)
    srv.receive(HELLO, 0)
    srv.accept(URL, 0)
    assert srv.next_deadline_ms() == 10_000
    assert srv.poll(9_999) == []
    assert srv.poll(10_000) == [KeepAliveDue()]
    assert srv.poll(10_001) == []  # reported once until sent
    assert _wire(srv.keep_alive_request(10_005)) == {
        "msg_type": 12, "timestamp": 10_005, "sequence": 1}
    assert srv.receive(b'{"msg_type":13,"sequence":1,"timestamp":10005}', 10_025) == [
        KeepAliveAnswered(1, 10_005, 20)]
    # The client goes quiet: requests keep going out, the timeout fires once.
    now = 20_005
    srv.poll(now)
    srv.keep_alive_request(now)  # seq 2, first unanswered at 20_005
    timeouts = []
    for now in range(30_005, 100_005, 10_000):
        events = srv.poll(now)
        timeouts += [e for e in events if isinstance(e, KeepAliveTimeout)]
        if KeepAliveDue() in events:
            srv.keep_alive_request(now)
    assert timeouts == [KeepAliveTimeout(60_000)]
    assert srv.stats.keep_alive_requests == 9
    # A late answer to an old request re-arms the check and reports no rtt for unknowns.
    [late] = srv.receive(b'{"msg_type":13,"sequence":3}', 100_006)
    assert isinstance(late, KeepAliveAnswered) and late.rtt_ms == 70_001  # seq 3 went out at 30_005
    [bare] = srv.receive(b'{"msg_type":13}', 100_007)
    assert bare == KeepAliveAnswered(None, None, None)


def test_keep_alives_off_and_before_acceptance() -> None:
    srv = server(keep_alive_interval_ms=None, keep_alive_timeout_ms=None)
    srv.receive(HELLO, 0)
    with pytest.raises(StateError):
        srv.keep_alive_request(0)
    srv.accept(URL, 0)
    assert srv.poll(10**9) == [] and srv.next_deadline_ms() is None
    media = media_server(keep_alive_interval_ms=5_000)
    media.receive(_media_hello(), 0)
    media.accept(0)
    assert media.poll(5_000) == [KeepAliveDue()]
    assert _wire(media.keep_alive_request(5_000))["sequence"] == 1


# --- other client messages ------------------------------------------------------------------


def test_requests_and_violations_on_an_accepted_server() -> None:
    srv = accepted_server()
    srv.receive(b'{"msg_type":7,"rtms_stream_id":"stream123"}', 1)
    assert srv.receive(b'{"msg_type":28,"user_id":16778240,"subscribe":true,"timestamp":1}',
                       2) == [VideoSubscriptionRequested(16778240, True)]
    assert _wire(srv.video_subscription_response(16778240, 3)) == {
        "msg_type": 29, "user_id": 16778240, "status_code": 0, "reason": "", "timestamp": 3}
    [req] = srv.receive(b'{"msg_type":10,"rtms_session_id":"a"}', 4)
    assert isinstance(req, StateRequested) and req.message.msg_type == 10
    assert _wire(srv.session_state_response(5, "a", 2))["msg_type"] == 11
    [req] = srv.receive(b'{"msg_type":19}', 6)
    assert isinstance(req, StateRequested)
    assert _wire(srv.stream_state_response(7, 1)) == {
        "msg_type": 20, "rtms_stream_id": "stream123", "state": 1, "status_code": 0,
        "timestamp": 7}
    for data in (b'{"msg_type":7,"rtms_stream_id":"stream123"}',  # duplicate ready ack
                 HELLO,  # duplicate handshake
                 b'{"msg_type":14,"content":{"user_id":1,"user_name":"A","data":"","timestamp":1}}',
                 b'{"msg_type":12}', b"not json"):
        [violation] = srv.receive(data, 8)
        assert isinstance(violation, ProtocolViolation)
    assert srv.stats.messages_dropped == 5
    assert srv.state is ServerSignalingState.READY
    early = server()
    early.receive(HELLO, 0)
    [violation] = early.receive(b'{"msg_type":7,"rtms_stream_id":"stream123"}', 1)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, UnexpectedMessage)
    closing = accepted_server()
    closing.receive(b'{"msg_type":21}', 1)
    [violation] = closing.receive(b'{"msg_type":5,"events":[]}', 2)
    assert isinstance(violation, ProtocolViolation)
    media = media_server()
    media.receive(_media_hello(), 0)
    media.accept(0)
    [violation] = media.receive(b'{"msg_type":7,"rtms_stream_id":"stream123"}', 1)
    assert isinstance(violation, ProtocolViolation)
    with pytest.raises(StateError):
        media_server().media(MediaDataAudio(content=MediaContent(
            user_id=1, user_name="A", data=b"", timestamp=0)))


# --- negotiation (section 17) ---------------------------------------------------------------

_A = AudioParams
_CT = MediaContentType
_C = MediaCodec
_SR = AudioSampleRate
_MONO, _STEREO = AudioChannel.MONO, AudioChannel.STEREO
_MIXED, _MULTI = DataOption.AUDIO_MIXED_STREAM, DataOption.AUDIO_MULTI_STREAMS


@pytest.mark.parametrize(("asked", "served"), [
    (_A(codec=_C.OPUS, sample_rate=_SR.SR_48K, channel=_STEREO, data_opt=_MULTI), "asked"),
    (_A(content_type=_CT.RTP, codec=_C.OPUS, sample_rate=_SR.SR_48K), "asked"),
    (_A(), "asked"),
    (_A(sample_rate=_SR.SR_8K, channel=_STEREO, send_rate=1000), "asked"),
    (_A(sample_rate=_SR.SR_32K, send_rate=100), "asked"),
    (_A(codec=_C.G711, sample_rate=_SR.SR_8K), "asked"),
    (_A(content_type=_CT.RTP, codec=_C.G711, sample_rate=_SR.SR_8K), "asked"),
    (_A(content_type=_CT.RTP, codec=_C.G722, sample_rate=_SR.SR_16K), "asked"),
    (_A(send_rate=30), "default"),
    (_A(send_rate=1020), "default"),
    (_A(content_type=_CT.RTP), "default"),  # RTP L16 is not in the matrix
    (_A(codec=_C.OPUS, sample_rate=_SR.SR_16K), "default"),
    (_A(codec=_C.OPUS, sample_rate=_SR.SR_48K, send_rate=40), "default"),
    (_A(codec=_C.G711, sample_rate=_SR.SR_8K, channel=_STEREO), "default"),
    (_A(codec=_C.G722, sample_rate=_SR.SR_8K), "default"),
    (_A(codec=_C.H264), "default"),
    (_A(data_opt=DataOption.VIDEO_SINGLE_ACTIVE_STREAM), "default"),
    (_A(content_type=_CT.RAW_VIDEO), "default"),
])
def test_audio_negotiation(asked: AudioParams, served: str) -> None:
    result = negotiate_media_params(MediaType.AUDIO, MediaParams(audio=asked))
    expected = asked if served == "asked" else DEFAULT_MEDIA_PARAMS.audio
    assert result == MediaParams(audio=expected)


@pytest.mark.parametrize(("asked", "ok"), [
    (VideoParams(), True),
    (VideoParams(codec=_C.JPG, fps=5), True),
    (VideoParams(codec=_C.PNG, fps=1, resolution=Resolution.FHD), True),
    (VideoParams(data_opt=DataOption.VIDEO_SINGLE_INDIVIDUAL_STREAM), True),
    (VideoParams(codec=_C.JPG, fps=10), False),
    (VideoParams(fps=31), False),
    (VideoParams(fps=0), False),
    (VideoParams(resolution=Resolution.UNDEFINED), False),
    (VideoParams(data_opt=DataOption.AUDIO_MIXED_STREAM), False),
    (VideoParams(codec=_C.OPUS), False),
])
def test_video_and_deskshare_negotiation(asked: VideoParams, ok: bool) -> None:
    result = negotiate_media_params(MediaType.VIDEO, MediaParams(video=asked))
    assert result == MediaParams(video=asked if ok else DEFAULT_MEDIA_PARAMS.video)
    share = DeskshareParams(codec=asked.codec, fps=asked.fps, resolution=asked.resolution)
    share_ok = ok or asked.data_opt == DataOption.AUDIO_MIXED_STREAM  # no data_opt for share
    result = negotiate_media_params(MediaType.DESKSHARE, MediaParams(deskshare=share))
    assert result == MediaParams(deskshare=share if share_ok else DEFAULT_MEDIA_PARAMS.deskshare)


def test_transcript_unified_and_default_negotiation() -> None:
    lang = TranscriptParams(src_language=9, enable_lid=False)
    assert negotiate_media_params(MediaType.TRANSCRIPT, MediaParams(transcript=lang)) == \
        MediaParams(transcript=lang)
    assert negotiate_media_params(MediaType.TRANSCRIPT, MediaParams(
        transcript=TranscriptParams(src_language=99))) is None
    assert negotiate_media_params(MediaType.TRANSCRIPT, None) is None
    assert negotiate_media_params(MediaType.CHAT, None) is None
    # Audio socket without params gets the default, as do unified sockets.
    assert negotiate_media_params(MediaType.AUDIO, None) == MediaParams(
        audio=DEFAULT_MEDIA_PARAMS.audio)
    opus = _A(codec=_C.OPUS, sample_rate=_SR.SR_48K, channel=_STEREO, data_opt=_MULTI)
    unified = negotiate_media_params(MediaType.ALL, MediaParams(audio=opus, transcript=lang))
    assert unified == MediaParams(audio=opus, video=DEFAULT_MEDIA_PARAMS.video,
                                  deskshare=DEFAULT_MEDIA_PARAMS.deskshare, transcript=lang)
    both = negotiate_media_params(MediaType.AUDIO | MediaType.TRANSCRIPT, None)
    assert both == MediaParams(audio=DEFAULT_MEDIA_PARAMS.audio)
    custom = MediaParams(audio=_A(sample_rate=_SR.SR_48K))
    assert negotiate_media_params(MediaType.AUDIO, MediaParams(audio=_A(send_rate=7)),
                                  custom) == custom


def test_server_can_override_the_negotiated_params() -> None:
    srv = media_server()
    srv.receive(_media_hello(1, {"audio": {"codec": 4, "sample_rate": 3, "data_opt": 2}}), 0)
    mixed = MediaParams(audio=AudioParams(codec=_C.OPUS, sample_rate=_SR.SR_48K))
    assert _wire(srv.accept(1, media_params=mixed))["media_params"] == {"audio": {
        "content_type": 2, "codec": 4, "sample_rate": 3, "channel": 1, "data_opt": 1,
        "send_rate": 20}}
    assert srv.media_params == mixed


# --- client against server, SDK-style split mode ---------------------------------------------


def test_client_and_server_machines_talk_split_mode() -> None:
    client = ClientSignalingConnection("abc==", "stream123", SIG)
    srv = server()
    [hello] = srv.receive(client.handshake(0), 1)
    assert isinstance(hello, SignalingHandshakeReceived) and hello.verdict is StatusCode.OK
    [accepted] = client.receive(srv.accept(URL, 2), 3)
    assert isinstance(accepted, HandshakeAccepted) and accepted.server_urls is not None
    asks = {
        MediaType.AUDIO: MediaParams(audio=AudioParams(
            codec=_C.OPUS, sample_rate=_SR.SR_48K, channel=_STEREO, data_opt=_MULTI)),
        MediaType.VIDEO: MediaParams(video=VideoParams()),
        MediaType.DESKSHARE: MediaParams(deskshare=DeskshareParams()),
        MediaType.TRANSCRIPT: None,
    }
    for media_type, params in asks.items():
        assert accepted.server_urls.url_for(media_type) == URL
        mc = ClientMediaConnection("abc==", "stream123", SIG, media_type, params)
        ms = media_server()
        [mh] = ms.receive(mc.handshake(4), 5)
        assert isinstance(mh, MediaHandshakeReceived) and mh.verdict is StatusCode.OK
        [ok] = mc.receive(ms.accept(6), 7)
        assert ok == HandshakeAccepted(media_params=params)
    assert srv.receive(client.ready_ack(), 8) == [ClientReady("stream123")]
    [closed] = srv.receive(client.close_request(9), 10)
    assert isinstance(closed, CloseRequested)
    client.receive(srv.close_response(11), 12)
    assert client.is_terminal and srv.is_terminal
