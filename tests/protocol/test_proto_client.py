# mypy: disable-error-code="comparison-overlap"
"""Client state machines driven through every transition, without sockets."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from rtms_fast.protocol import (
    AudioParams,
    ChatReceived,
    ClientMediaConnection,
    ClientMediaState,
    ClientSignalingConnection,
    ClientSignalingState,
    CloseAcknowledged,
    CloseOutcome,
    CloseTimeout,
    ConnectionClosed,
    DataOption,
    EventReceived,
    HandshakeAccepted,
    HandshakeRejected,
    HandshakeTimeout,
    KeepAliveRequested,
    KeepAliveTimeout,
    MalformedJSON,
    MediaParams,
    MediaReceived,
    MediaType,
    MetadataReceived,
    MissingField,
    ProtocolViolation,
    ServerUrls,
    SessionState,
    SessionStateChanged,
    StateError,
    StateResponseReceived,
    StatusCode,
    StopReason,
    StreamClosed,
    StreamState,
    StreamStateChanged,
    ToleranceStats,
    TranscriptReceived,
    UnexpectedMessage,
    VideoSubscriptionResult,
    _connection,
    _state,
    rtms_signature,
)

SIG = rtms_signature("cid", "abc==", "stream123", "sec")
URL = "ws://127.0.0.1:9002/media"
ACCEPT = json.dumps({"msg_type": 2, "status_code": 0, "reason": "", "media_server": {
    "server_urls": {"audio": URL, "video": URL, "all": URL}}}).encode()
AUDIO = (b'{"msg_type":14,"content":{"user_id":16778240,"user_name":"Alice",'
         b'"data":"AAECAw==","timestamp":1795463476932}}')
TERMINATE = b'{"msg_type":8,"state":4,"reason":6,"timestamp":99}'


def _wire(data: bytes) -> dict[str, object]:
    obj = json.loads(data)
    assert isinstance(obj, dict)
    return obj


def signaling(**kw: int | None) -> ClientSignalingConnection:
    return ClientSignalingConnection("abc==", "stream123", SIG, **kw)  # type: ignore[arg-type]


def connected(**kw: int | None) -> ClientSignalingConnection:
    client = signaling(**kw)
    client.handshake(0, sequence=851676)
    client.receive(ACCEPT, 5)
    assert client.state is ClientSignalingState.CONNECTED
    return client


def media(params: MediaParams | None = None) -> ClientMediaConnection:
    return ClientMediaConnection("abc==", "stream123", SIG, MediaType.AUDIO,
                                 params or MediaParams(audio=AudioParams()))


# --- signaling scenarios --------------------------------------------------------------------


def scenario_signaling_happy_path() -> None:
    client = signaling()
    assert client.state is ClientSignalingState.IDLE
    assert _wire(client.handshake(1000, sequence=851676)) == {
        "msg_type": 1, "meeting_uuid": "abc==", "rtms_stream_id": "stream123",
        "signature": SIG, "protocol_version": 1, "sequence": 851676}
    assert client.state is ClientSignalingState.HANDSHAKING
    assert client.next_deadline_ms() == 11_000
    [accepted] = client.receive(ACCEPT, 1010)
    assert isinstance(accepted, HandshakeAccepted) and accepted.server_urls is not None
    assert accepted.server_urls.url_for(MediaType.DESKSHARE) == URL
    assert client.state is ClientSignalingState.CONNECTED
    assert client.next_deadline_ms() is None
    assert _wire(client.subscribe([2, 3, 4])) == {"msg_type": 5, "events": [
        {"event_type": 2, "subscribe": True}, {"event_type": 3, "subscribe": True},
        {"event_type": 4, "subscribe": True}]}
    assert _wire(client.ready_ack()) == {"msg_type": 7, "rtms_stream_id": "stream123"}
    assert client.state is ClientSignalingState.READY
    assert _wire(client.subscribe([8], subscribe=False))["events"] == [
        {"event_type": 8, "subscribe": False}]
    [ka] = client.receive(b'{"msg_type":12,"timestamp":1795463477058,"sequence":1}', 2000)
    assert ka == KeepAliveRequested(1, 1795463477058)
    assert _wire(client.keep_alive_response(ka.sequence, ka.timestamp)) == {
        "msg_type": 13, "timestamp": 1795463477058, "sequence": 1}
    events = client.receive(TERMINATE, 3000)
    assert events == [StreamStateChanged(StreamState.TERMINATED, StopReason.MEETING_ENDED, 99),
                      StreamClosed(StopReason.MEETING_ENDED)]
    assert client.state is ClientSignalingState.CLOSED and client.is_terminal
    assert client.stop_reason is StopReason.MEETING_ENDED
    assert client.connection_closed(1000) == [ConnectionClosed(1000, "", CloseOutcome.COMPLETED)]
    assert client.stats.messages_sent == 5 and client.stats.messages_received == 3
    assert client.stats.keep_alive_requests == 1 and client.stats.keep_alive_responses == 1


def scenario_signaling_rejected() -> None:
    client = signaling()
    client.handshake(0)
    [rejected] = client.receive(
        b'{"msg_type":2,"status_code":15,"reason":"invalid signature"}', 3)
    assert rejected == HandshakeRejected(15, "invalid signature")
    assert isinstance(rejected, HandshakeRejected)
    assert rejected.status is StatusCode.INVALID_SIGNATURE
    assert client.state is ClientSignalingState.FAILED
    [closed] = client.connection_closed(1000)
    assert isinstance(closed, ConnectionClosed) and not closed.should_reconnect
    assert client.state is ClientSignalingState.FAILED


def scenario_signaling_accepted_without_media_server() -> None:
    client = signaling()
    client.handshake(0)
    violation, rejected = client.receive(b'{"msg_type":2,"status_code":0}', 1)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, MissingField) and violation.error.field == "media_server"
    assert isinstance(rejected, HandshakeRejected) and rejected.status_code == 0
    assert client.state is ClientSignalingState.FAILED


def scenario_signaling_handshake_timeout() -> None:
    client = signaling(handshake_timeout_ms=10_000)
    client.handshake(500)
    assert client.poll(10_499) == []
    assert client.state is ClientSignalingState.HANDSHAKING
    assert client.poll(10_500) == [HandshakeTimeout(10_000)]
    assert client.state is ClientSignalingState.FAILED
    assert client.poll(50_000) == []
    assert client.receive(ACCEPT, 50_001) == []  # dropped after the end, counted
    assert client.stats.messages_dropped == 1


def scenario_signaling_close_acknowledged() -> None:
    client = connected()
    client.ready_ack()
    assert _wire(client.close_request(7000)) == {
        "msg_type": 21, "rtms_stream_id": "stream123", "timestamp": 7000}
    assert client.state is ClientSignalingState.CLOSING
    assert client.next_deadline_ms() == 12_000
    # Media keeps flowing until the answer.
    assert isinstance(client.receive(AUDIO, 7001)[0], MediaReceived)
    assert client.receive(b'{"msg_type":22,"status_code":0,"reason":""}', 7002) == [
        CloseAcknowledged(0, "")]
    assert client.state is ClientSignalingState.CLOSED
    assert client.connection_closed(1000)[0] == ConnectionClosed(1000, "", CloseOutcome.COMPLETED)


def scenario_signaling_close_timeout() -> None:
    client = connected(close_timeout_ms=2000)
    client.close_request(100)
    assert client.poll(2099) == []
    assert client.poll(2100) == [CloseTimeout(2000)]
    assert client.state is ClientSignalingState.CLOSED
    client.connection_closed(None)


def scenario_signaling_terminated_while_closing() -> None:
    client = connected()
    client.close_request(100)
    events = client.receive(TERMINATE, 200)
    assert events[-1] == StreamClosed(StopReason.MEETING_ENDED)
    assert client.state is ClientSignalingState.CLOSED


def scenario_signaling_socket_lost_while_closing() -> None:
    client = connected()
    client.close_request(100)
    [closed] = client.connection_closed(1006)
    assert isinstance(closed, ConnectionClosed)
    assert closed.outcome is CloseOutcome.ABNORMAL and closed.should_reconnect
    assert client.state is ClientSignalingState.CLOSED


def scenario_signaling_unsolicited_close_response() -> None:
    client = connected()
    assert client.receive(b'{"msg_type":22,"status_code":0}', 9) == [CloseAcknowledged(0, "")]
    assert client.state is ClientSignalingState.CLOSED
    ready = connected()
    ready.ready_ack()
    ready.receive(b'{"msg_type":22}', 9)
    assert ready.state is ClientSignalingState.CLOSED


def scenario_signaling_terminated_early() -> None:
    idle = signaling()
    assert idle.receive(TERMINATE, 1)[-1] == StreamClosed(StopReason.MEETING_ENDED)
    assert idle.state is ClientSignalingState.CLOSED
    client = signaling()
    client.handshake(0)
    assert client.receive(TERMINATE, 1)[-1] == StreamClosed(StopReason.MEETING_ENDED)
    assert client.state is ClientSignalingState.CLOSED
    conn = connected()
    conn.receive(TERMINATE, 9)
    assert conn.state is ClientSignalingState.CLOSED


def scenario_signaling_socket_closes() -> None:
    cases: list[tuple[Callable[[], ClientSignalingConnection], int | None, CloseOutcome,
                      ClientSignalingState]] = [
        (signaling, 1006, CloseOutcome.ABNORMAL, ClientSignalingState.CLOSED),
        (lambda: _handshaking(), None, CloseOutcome.RESET, ClientSignalingState.FAILED),
        (connected, 1000, CloseOutcome.NORMAL, ClientSignalingState.CLOSED),
        (_ready, 1005, CloseOutcome.NO_STATUS, ClientSignalingState.CLOSED),
        (_ready, 1001, CloseOutcome.GOING_AWAY, ClientSignalingState.CLOSED),
        (_ready, 4000, CloseOutcome.ERROR, ClientSignalingState.CLOSED),
    ]
    for make, code, outcome, state in cases:
        client = make()
        [closed] = client.connection_closed(code, "bye")
        assert closed == ConnectionClosed(code, "bye", outcome)
        assert client.state is state
        assert client.connection_closed(code) == []  # reported once


def _handshaking() -> ClientSignalingConnection:
    client = signaling()
    client.handshake(0)
    return client


def _ready() -> ClientSignalingConnection:
    client = connected()
    client.ready_ack()
    return client


# --- media scenarios ------------------------------------------------------------------------


def scenario_media_happy_path() -> None:
    asked = MediaParams(audio=AudioParams(data_opt=DataOption.AUDIO_MULTI_STREAMS))
    client = media(asked)
    assert client.state is ClientMediaState.IDLE
    wire = _wire(client.handshake(10, sequence=851696))
    assert wire["msg_type"] == 3 and wire["media_type"] == 1
    assert wire["media_params"] == {"audio": {"content_type": 2, "codec": 1, "sample_rate": 1,
                                              "channel": 1, "data_opt": 2, "send_rate": 20}}
    assert client.state is ClientMediaState.HANDSHAKING
    # The server answers mixed audio: its answer decides (section 4.2).
    answer = {"msg_type": 4, "status_code": 0, "payload_encrypted": False, "media_params": {
        "audio": {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1,
                  "data_opt": 1, "send_rate": 20}}}
    [accepted] = client.receive(json.dumps(answer), 20)
    served = MediaParams(audio=AudioParams())
    assert accepted == HandshakeAccepted(media_params=served)
    assert client.media_params == served and client.state is ClientMediaState.STREAMING
    [audio] = client.receive(AUDIO, 30)
    assert isinstance(audio, MediaReceived) and audio.media_type is MediaType.AUDIO
    assert audio.content.data == b"\x00\x01\x02\x03" and audio.content.user_id == 16778240
    video = AUDIO.replace(b'"msg_type":14', b'"msg_type":15')
    assert client.receive(video, 31)[0] == MediaReceived(MediaType.VIDEO, audio.content)
    share = AUDIO.replace(b'"msg_type":14', b'"msg_type":16')
    assert client.receive(share, 31)[0] == MediaReceived(MediaType.DESKSHARE, audio.content)
    [tr] = client.receive(b'{"msg_type":17,"content":{"user_id":1,"user_name":"A","data":'
                          b'"hello \\u00e9","timestamp":5,"start_time":1,"end_time":4}}', 40)
    assert isinstance(tr, TranscriptReceived) and tr.content.data == "hello \u00e9"
    [chat] = client.receive(b'{"msg_type":18,"content":{"user_id":1,"user_name":"A",'
                            b'"data":"hi","timestamp":5}}', 41)
    assert isinstance(chat, ChatReceived) and chat.content.data == "hi"
    [meta] = client.receive(b'{"msg_type":23,"content":{"interpreter":{"lid":1}}}', 42)
    assert isinstance(meta, MetadataReceived)
    [ka] = client.receive(b'{"msg_type":12,"timestamp":5,"sequence":2}', 43)
    assert isinstance(ka, KeepAliveRequested)
    assert _wire(client.keep_alive_response(ka.sequence, ka.timestamp))["sequence"] == 2
    client.receive(TERMINATE, 50)
    assert client.state is ClientMediaState.CLOSED
    assert client.connection_closed(1000)[0].outcome is CloseOutcome.COMPLETED


def scenario_media_null_params_keep_the_request() -> None:
    client = media()
    client.handshake(0)
    [accepted] = client.receive(
        b'{"msg_type":4,"status_code":0,"payload_encrypted":true,"media_params":null}', 1)
    assert accepted == HandshakeAccepted(media_params=MediaParams(audio=AudioParams()),
                                         payload_encrypted=True)
    client.connection_closed(1006)
    assert client.state is ClientMediaState.CLOSED


def scenario_media_rejected() -> None:
    client = media()
    client.handshake(0)
    assert client.receive(b'{"msg_type":4,"status_code":31,"reason":"dup"}', 1) == [
        HandshakeRejected(31, "dup")]
    assert client.state is ClientMediaState.FAILED
    client.connection_closed(1000)
    assert client.state is ClientMediaState.FAILED


def scenario_media_handshake_timeout() -> None:
    client = media()
    client.handshake(0)
    assert client.poll(9_999) == []
    assert client.poll(10_000) == [HandshakeTimeout(10_000)]
    assert client.state is ClientMediaState.FAILED


def scenario_media_early_and_edge_closes() -> None:
    early = media()
    early.handshake(0)
    assert early.receive(AUDIO, 1)[0] == HandshakeAccepted(
        media_params=MediaParams(audio=AudioParams()), implicit=True)
    assert early.state is ClientMediaState.STREAMING
    idle = media()
    assert isinstance(idle.receive(AUDIO, 1)[0], HandshakeAccepted)
    assert idle.state is ClientMediaState.STREAMING
    unopened = media()
    unopened.connection_closed(1006)
    assert unopened.state is ClientMediaState.CLOSED
    shaking = media()
    shaking.handshake(0)
    shaking.connection_closed(None)
    assert shaking.state is ClientMediaState.FAILED
    idle_end = media()
    idle_end.receive(TERMINATE, 1)
    assert idle_end.state is ClientMediaState.CLOSED
    ended = media()
    ended.handshake(0)
    ended.receive(TERMINATE, 1)
    assert ended.state is ClientMediaState.CLOSED


SCENARIOS = [v for k, v in sorted(globals().items()) if k.startswith("scenario_")]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__[9:])
def test_scenario(scenario: Callable[[], None]) -> None:
    scenario()


def test_every_client_transition_is_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: set[tuple[object, object]] = set()
    real = _state.advance

    def recording(state: _state._State, trigger: _state.Trigger) -> _state._State:
        taken.add((state, trigger))
        return real(state, trigger)

    monkeypatch.setattr(_connection, "advance", recording)
    for scenario in SCENARIOS:
        scenario()
    table = {(s, t) for s, row in _state._TABLE.items() for t in row
             if isinstance(s, ClientSignalingState | ClientMediaState)}
    assert table - taken == set()


# --- events, violations and misuse ----------------------------------------------------------


def test_signaling_events_and_state_updates() -> None:
    client = connected()
    client.ready_ack()
    [ev] = client.receive(b'{"msg_type":6,"event":{"event_type":2,"user_id":16778240,'
                          b'"user_name":"Alice","timestamp":1795463477360}}', 10)
    assert isinstance(ev, EventReceived) and ev.event.user_name == "Alice"
    assert client.receive(b'{"msg_type":8,"state":1,"reason":0}', 11) == [
        StreamStateChanged(StreamState.ACTIVE, StopReason.UNDEFINED, None)]
    assert client.state is ClientSignalingState.READY
    assert client.receive(b'{"msg_type":8,"state":42,"reason":77}', 11) == [
        StreamStateChanged(42, 77, None)]
    [no_reason] = client.receive(b'{"msg_type":8,"state":2}', 11)
    assert isinstance(no_reason, StreamStateChanged)
    assert no_reason.reason == StopReason.UNDEFINED and not no_reason.reason_given
    assert client.receive(b'{"msg_type":9,"rtms_session_id":"s1","state":2,"timestamp":3}',
                          12) == [SessionStateChanged("s1", SessionState.STARTED, None, 3)]
    assert client.state is ClientSignalingState.READY  # session stop is not stream stop
    assert _wire(client.subscribe_video(16778240, True, timestamp=1209376)) == {
        "msg_type": 28, "user_id": 16778240, "subscribe": True, "timestamp": 1209376}
    assert client.receive(b'{"msg_type":29,"user_id":16778240,"status_code":0,"reason":""}',
                          13) == [VideoSubscriptionResult(16778240, 0, "")]
    assert _wire(client.session_state_request(14))["msg_type"] == 10
    assert _wire(client.stream_state_request(14))["msg_type"] == 19
    [resp] = client.receive(b'{"msg_type":20,"state":1}', 15)
    assert isinstance(resp, StateResponseReceived)
    [resp] = client.receive(b'{"msg_type":11,"state":2}', 15)
    assert isinstance(resp, StateResponseReceived)
    # Media on the signaling socket is delivered, as the SDK does.
    assert isinstance(client.receive(AUDIO, 16)[0], MediaReceived)
    assert client.stats.messages_dropped == 0


def test_violations_are_dropped_counted_and_survived() -> None:
    client = connected()
    [bad] = client.receive(b'{"msg_type":6', 10)
    assert isinstance(bad, ProtocolViolation) and isinstance(bad.error, MalformedJSON)
    [dup] = client.receive(ACCEPT, 11)
    assert isinstance(dup, ProtocolViolation) and isinstance(dup.error, UnexpectedMessage)
    assert dup.error.msg_type == 2
    [own] = client.receive(b'{"msg_type":7,"rtms_stream_id":"x"}', 12)
    assert isinstance(own, ProtocolViolation) and own.error.msg_type == 7
    [media_resp] = client.receive(b'{"msg_type":4,"status_code":0}', 12)
    assert isinstance(media_resp, ProtocolViolation)
    assert client.stats.messages_dropped == 4
    assert client.state is ClientSignalingState.CONNECTED
    assert isinstance(client.receive(AUDIO, 13)[0], MediaReceived)
    m = media()
    m.handshake(0)
    m.receive(b'{"msg_type":4,"status_code":0}', 1)
    [wrong] = m.receive(b'{"msg_type":22}', 2)
    assert isinstance(wrong, ProtocolViolation) and wrong.error.msg_type == 22


def test_local_misuse_raises_state_error() -> None:
    client = signaling()
    for action in (client.ready_ack, lambda: client.subscribe([2]),
                   lambda: client.close_request(0), lambda: client.keep_alive_response(1, 1),
                   lambda: client.subscribe_video(1)):
        with pytest.raises(StateError):
            action()
    client.handshake(0)
    with pytest.raises(StateError, match="send handshake"):
        client.handshake(1)
    with pytest.raises(StateError):
        client.ready_ack()
    client.receive(ACCEPT, 2)
    client.ready_ack()
    with pytest.raises(StateError):
        client.ready_ack()
    assert client.state is ClientSignalingState.READY  # a refused action changes nothing


def test_keep_alive_starvation_is_reported_once_per_silence() -> None:
    client = connected(keep_alive_timeout_ms=30_000)
    # Last heard at 5 (the handshake response).
    assert client.next_deadline_ms() == 30_005
    assert client.poll(30_004) == []
    assert client.poll(30_005) == [KeepAliveTimeout(30_000)]
    assert client.poll(40_000) == []
    assert client.next_deadline_ms() is None
    client.receive(b'{"msg_type":12,"sequence":1,"timestamp":1}', 41_000)
    assert client.next_deadline_ms() == 71_000
    assert client.poll(71_000) == [KeepAliveTimeout(30_000)]
    off = connected()
    assert off.poll(10**9) == [] and off.next_deadline_ms() is None


def test_server_urls_helpers_on_the_accepted_event() -> None:
    client = signaling()
    client.handshake(0)
    [accepted] = client.receive(json.dumps({
        "msg_type": 2, "status_code": 0, "media_server": {
            "server_urls": {"audio": "ws://a", "transcript": "ws://t"}}}), 1)
    assert isinstance(accepted, HandshakeAccepted)
    assert accepted.server_urls == ServerUrls(audio="ws://a", transcript="ws://t")
    assert client.response is not None and client.response.status_code == 0


def test_connections_can_share_one_tolerance_counter() -> None:
    shared = ToleranceStats()
    first = ClientMediaConnection("abc==", "stream123", SIG, MediaType.AUDIO, tolerance=shared)
    second = ClientMediaConnection("abc==", "stream123", SIG, MediaType.AUDIO, tolerance=shared)
    alone = media()
    for client in (first, second, alone):
        client.handshake(0)
        client.receive(AUDIO, 1)  # media before the handshake response: tolerated, counted
    assert first.stats.tolerance is shared and second.stats.tolerance is shared
    assert shared.media_before_handshake == 2
    assert alone.stats.tolerance.media_before_handshake == 1
    sig = ClientSignalingConnection("abc==", "stream123", SIG, tolerance=shared)
    assert sig.stats.tolerance is shared
    assert sig.stats.as_dict()["tolerance.media_before_handshake"] == 2
