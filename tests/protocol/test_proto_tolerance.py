# mypy: disable-error-code="comparison-overlap"
"""Section 19: every tolerated deviation is accepted and counted."""

from __future__ import annotations

import json

from proto_strategies import sdk_style

from rtms_fast.protocol import (
    AudioParams,
    ClientMediaConnection,
    ClientSignalingConnection,
    HandshakeAccepted,
    HandshakeRejected,
    KeepAliveRequest,
    KeepAliveRequested,
    MediaParams,
    MediaReceived,
    MediaType,
    SignalingHandshakeResponse,
    StopReason,
    StreamClosed,
    StreamStateUpdate,
    ToleranceStats,
    decode_message,
    stop_reason_from_name,
)

URL = "ws://127.0.0.1:9/media"


def _decode(obj: object, stats: ToleranceStats) -> object:
    return decode_message(json.dumps(obj).encode(), stats)


def test_text_binary_pretty_compact_and_extra_fields_are_not_deviations() -> None:
    stats = ToleranceStats()
    body = {"msg_type": 12, "sequence": 3, "timestamp": 4, "surprise": [1, {"a": None}]}
    compact = json.dumps(body)
    variants: list[bytes | bytearray | memoryview | str] = [
        compact, compact.encode(), sdk_style(body), json.dumps(body, indent=2),
        bytearray(compact.encode()), memoryview(compact.encode()),
    ]
    for data in variants:
        assert decode_message(data, stats) == KeepAliveRequest(sequence=3, timestamp=4)
    assert stats.total == 0


def test_server_urls_per_type_only_all_only_both() -> None:
    stats = ToleranceStats()
    per_type = _decode({"msg_type": 2, "status_code": 0, "media_server": {"server_urls": {
        "audio": URL, "video": URL}}}, stats)
    assert isinstance(per_type, SignalingHandshakeResponse)
    assert stats.server_urls_per_type_only == 1
    only_all = _decode({"msg_type": 2, "status_code": 0, "media_server": {"server_urls": {
        "all": URL}}}, stats)
    assert isinstance(only_all, SignalingHandshakeResponse) and only_all.media_server
    assert only_all.media_server.server_urls.url_for(MediaType.AUDIO) == URL
    assert stats.server_urls_all_only == 1
    both = _decode({"msg_type": 2, "status_code": 0, "media_server": {"server_urls": {
        "audio": URL, "all": URL}}}, stats)
    assert isinstance(both, SignalingHandshakeResponse)
    assert stats.as_dict()["server_urls_all_only"] == 1
    assert stats.as_dict()["server_urls_per_type_only"] == 1
    assert stats.total == 2


def test_server_urls_as_string_and_comma_list() -> None:
    stats = ToleranceStats()
    one = _decode({"msg_type": 2, "status_code": 0, "media_server": {"server_urls": URL}},
                  stats)
    assert isinstance(one, SignalingHandshakeResponse) and one.media_server
    assert one.media_server.server_urls.url_for(MediaType.VIDEO) == URL
    assert stats.server_urls_string == 1 and stats.server_urls_list == 0
    many = _decode({"msg_type": 2, "status_code": 0, "media_server": {
        "server_urls": "ws://a:1/m, ws://b:2/m"}}, stats)
    assert isinstance(many, SignalingHandshakeResponse) and many.media_server
    assert many.media_server.server_urls.all == "ws://a:1/m"
    assert stats.server_urls_string == 2 and stats.server_urls_list == 1


def test_error_response_without_status_code_is_a_rejection() -> None:
    client = ClientSignalingConnection("m", "s", "sig")
    client.handshake(0)
    events = client.receive(b'{"msg_type":2,"reason":"invalid signature"}', 5)
    assert events == [HandshakeRejected(None, "invalid signature")]
    assert client.stats.tolerance.status_code_missing == 1


def test_response_without_status_code_or_reason_is_an_acceptance() -> None:
    client = ClientMediaConnection("m", "s", "sig", MediaType.AUDIO,
                                   MediaParams(audio=AudioParams()))
    client.handshake(0)
    events = client.receive(b'{"msg_type":4,"payload_encrypted":false}', 5)
    assert events == [HandshakeAccepted(media_params=MediaParams(audio=AudioParams()))]
    assert client.stats.tolerance.status_code_missing == 1


def test_keep_alive_without_sequence_or_timestamp_echoes_what_came() -> None:
    client = ClientSignalingConnection("m", "s", "sig")
    client.handshake(0)
    [no_seq] = client.receive(b'{"msg_type":12,"timestamp":77}', 1)
    assert no_seq == KeepAliveRequested(None, 77)
    assert isinstance(no_seq, KeepAliveRequested)
    assert json.loads(client.keep_alive_response(no_seq.sequence, no_seq.timestamp)) == {
        "msg_type": 13, "timestamp": 77}
    [no_ts] = client.receive(b'{"msg_type":12,"sequence":4}', 2)
    assert isinstance(no_ts, KeepAliveRequested)
    assert json.loads(client.keep_alive_response(no_ts.sequence, no_ts.timestamp)) == {
        "msg_type": 13, "sequence": 4}
    [bare] = client.receive(b'{"msg_type":12}', 3)
    assert isinstance(bare, KeepAliveRequested)
    assert json.loads(client.keep_alive_response(bare.sequence, bare.timestamp)) == {
        "msg_type": 13}
    tolerance = client.stats.tolerance
    assert tolerance.keep_alive_missing_sequence == 2
    assert tolerance.keep_alive_missing_timestamp == 2


def test_stop_reasons_as_names() -> None:
    stats = ToleranceStats()
    for name in ("MEETING_ENDED", "meeting_ended", "STOP_REASON_MEETING_ENDED", "6"):
        msg = _decode({"msg_type": 8, "state": 4, "reason": name}, stats)
        assert msg == StreamStateUpdate(state=4, reason=StopReason.MEETING_ENDED)
    assert stats.stop_reason_name == 4
    unknown = _decode({"msg_type": 8, "state": 4, "reason": "SOLAR_FLARE"}, stats)
    assert unknown == StreamStateUpdate(state=4, reason=StopReason.UNDEFINED)
    assert stats.stop_reason_unknown_name == 1
    assert stop_reason_from_name("rtms_stop_reason_keep_alive_timeout") is \
        StopReason.KEEP_ALIVE_TIMEOUT
    assert stop_reason_from_name("99") is None


def test_stop_reason_name_reaches_the_client_event() -> None:
    client = ClientSignalingConnection("m", "s", "sig")
    client.handshake(0)
    client.receive(b'{"msg_type":2,"status_code":0,"media_server":{"server_urls":"ws://x"}}', 1)
    events = client.receive(b'{"msg_type":8,"state":4,"reason":"HOST_TRIGGERED"}', 2)
    assert events[-1] == StreamClosed(StopReason.HOST_TRIGGERED)
    assert client.stats.tolerance.stop_reason_name == 1
    assert client.stats.tolerance.server_urls_string == 1


def test_media_before_the_handshake_response() -> None:
    params = MediaParams(audio=AudioParams())
    client = ClientMediaConnection("m", "s", "sig", MediaType.AUDIO, params)
    client.handshake(0)
    media = (b'{"msg_type":14,"content":{"user_id":1,"user_name":"A","data":"AAE=",'
             b'"timestamp":5}}')
    events = client.receive(media, 1)
    assert events[0] == HandshakeAccepted(media_params=params, implicit=True)
    assert isinstance(events[1], MediaReceived) and events[1].content.data == b"\x00\x01"
    assert len(client.receive(media, 2)) == 1  # counted once, then plain media
    assert client.stats.tolerance.media_before_handshake == 1
    # Without any handshake at all.
    silent = ClientMediaConnection("m", "s", "sig", MediaType.AUDIO)
    assert isinstance(silent.receive(media, 1)[0], HandshakeAccepted)
    assert silent.stats.tolerance.media_before_handshake == 1
    # A late handshake response after implicit acceptance is a (counted) violation.
    late = client.receive(b'{"msg_type":4,"status_code":0}', 3)
    assert type(late[0]).__name__ == "ProtocolViolation"
    assert client.stats.messages_dropped == 1
