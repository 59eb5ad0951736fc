# mypy: disable-error-code="comparison-overlap"
"""Message Structs: round trips, every msg_type, SDK captures, malformed inputs."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proto_strategies import MESSAGE_CLASSES, sdk_style, strategy_for

from rtms_fast.protocol import (
    AudioChannel,
    AudioParams,
    AudioSampleRate,
    ClientReadyAck,
    DataOption,
    EventSubscription,
    EventUpdate,
    InvalidField,
    KeepAliveResponse,
    MalformedJSON,
    MediaCodec,
    MediaContent,
    MediaContentType,
    MediaDataAudio,
    MediaDataTranscript,
    MediaHandshakeRequest,
    MediaHandshakeResponse,
    MediaParams,
    MediaType,
    MissingField,
    MsgType,
    ProtocolError,
    ServerUrls,
    SignalingHandshakeRequest,
    SignalingHandshakeResponse,
    StatusCode,
    StopReason,
    StreamStateUpdate,
    TranscriptLanguage,
    UnknownMessageType,
    VideoSubscriptionRequest,
    decode_message,
    encode_message,
    media_type_from_url_key,
    message_class,
    url_key_for_media_type,
)

SIG = "fc49c2c396fb51387cfc3265c4e5ab58e846755a6bb830059cf1d745d899546b"


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_encode_then_decode_is_identity(cls: type[Any], data: st.DataObject) -> None:
    msg = data.draw(strategy_for(cls))
    wire = encode_message(msg)
    assert decode_message(wire) == msg
    # Same message as text, and pretty-printed the SDK's way.
    assert decode_message(wire.decode()) == msg
    assert decode_message(sdk_style(json.loads(wire))) == msg


def test_every_msg_type_has_a_struct_and_decodes() -> None:
    tags = sorted(int(message_class(t).__struct_config__.tag or 0) for t in range(1, 30))
    assert tags == list(range(1, 30))
    minimal: dict[int, dict[str, Any]] = {
        1: {"meeting_uuid": "m", "rtms_stream_id": "s", "signature": "x"},
        3: {"meeting_uuid": "m", "rtms_stream_id": "s", "signature": "x", "media_type": 1},
        5: {"events": []},
        6: {"event": {"event_type": 2}},
        7: {"rtms_stream_id": "s"},
        8: {"state": 1},
        9: {"rtms_session_id": "a", "state": 2},
        14: {"content": {"user_id": 1, "user_name": "A", "data": "AAE=", "timestamp": 1}},
        15: {"content": {"user_id": 1, "user_name": "A", "data": "AAE=", "timestamp": 1}},
        16: {"content": {"user_id": 1, "user_name": "A", "data": "AAE=", "timestamp": 1}},
        17: {"content": {"user_id": 1, "user_name": "A", "data": "hi", "timestamp": 1,
                         "start_time": 0, "end_time": 1}},
        18: {"content": {"user_id": 1, "user_name": "A", "data": "hi", "timestamp": 1}},
        28: {"user_id": 5, "subscribe": True},
        29: {"user_id": 5},
    }
    for msg_type in range(1, 30):
        body = {"msg_type": msg_type, **minimal.get(msg_type, {})}
        msg = decode_message(json.dumps(body).encode())
        assert msg.msg_type == MsgType(msg_type)
        assert type(msg).__name__ == message_class(msg_type).__name__


def test_encode_is_compact_with_msg_type_first() -> None:
    wire = encode_message(ClientReadyAck(rtms_stream_id="stream123"))
    assert wire == b'{"msg_type":7,"rtms_stream_id":"stream123"}'


def test_media_data_is_base64_on_the_wire_and_transcript_is_text() -> None:
    raw = bytes(range(256)) * 3
    msg = MediaDataAudio(content=MediaContent(user_id=7, user_name="Al", data=raw, timestamp=9))
    wire = json.loads(encode_message(msg))
    assert base64.b64decode(wire["content"]["data"]) == raw
    tr = decode_message(json.dumps({"msg_type": 17, "content": {
        "user_id": 1, "user_name": "A", "data": "SGVsbG8=", "timestamp": 1,
        "start_time": 2, "end_time": 3}}))
    assert isinstance(tr, MediaDataTranscript)
    assert tr.content.data == "SGVsbG8="  # not base64-decoded (section 9.1)


def test_media_handshake_response_null_versus_absent_params() -> None:
    null = MediaHandshakeResponse(status_code=0, payload_encrypted=False, media_params=None)
    absent = MediaHandshakeResponse(status_code=0, payload_encrypted=False)
    assert json.loads(encode_message(null))["media_params"] is None
    assert "media_params" not in json.loads(encode_message(absent))
    assert decode_message(encode_message(null)).media_params is None  # type: ignore[union-attr]
    assert decode_message(encode_message(absent)).media_params is msgspec.UNSET  # type: ignore[union-attr]


def test_hand_built_requests_write_protocol_version_like_the_sdk() -> None:
    hello = SignalingHandshakeRequest(meeting_uuid="abc==", rtms_stream_id="s", signature=SIG)
    assert json.loads(encode_message(hello)) == {
        "msg_type": 1, "meeting_uuid": "abc==", "rtms_stream_id": "s", "signature": SIG,
        "protocol_version": 1}
    transcript = MediaHandshakeRequest(meeting_uuid="abc==", rtms_stream_id="s", signature=SIG,
                                       media_type=MediaType.TRANSCRIPT, sequence=851696)
    assert json.loads(encode_message(transcript)) == {
        "msg_type": 3, "meeting_uuid": "abc==", "rtms_stream_id": "s", "signature": SIG,
        "media_type": 8, "media_params": None, "protocol_version": 1, "sequence": 851696}
    assert decode_message(b'{"msg_type":1,"meeting_uuid":"m","rtms_stream_id":"s",'
                          b'"signature":"x"}') == SignalingHandshakeRequest(
        meeting_uuid="m", rtms_stream_id="s", signature="x", sequence=msgspec.UNSET)


def test_params_always_write_every_key() -> None:
    wire = json.loads(encode_message(MediaHandshakeResponse(
        status_code=0, payload_encrypted=False, media_params=MediaParams(audio=AudioParams()))))
    assert wire["media_params"] == {"audio": {
        "content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1, "data_opt": 1,
        "send_rate": 20}}


# --- the SDK's captured messages (RTMS_PROTOCOL.md sections 3-9) ---------------------------


def test_sdk_signaling_handshake_capture_decodes() -> None:
    wire = sdk_style({"meeting_uuid": "abc==", "msg_type": 1, "protocol_version": 1,
                      "rtms_client_agent": "rtms_sdk_cpp-.0.20260319-python-rtms",
                      "rtms_stream_id": "stream123", "sequence": 851676, "signature": SIG})
    assert wire.startswith(b'{\n\t"meeting_uuid" : "abc==",\n')
    msg = decode_message(wire)
    assert msg == SignalingHandshakeRequest(
        meeting_uuid="abc==", rtms_stream_id="stream123", signature=SIG, protocol_version=1,
        sequence=851676, rtms_client_agent="rtms_sdk_cpp-.0.20260319-python-rtms")


def test_sdk_media_handshake_captures_decode() -> None:
    base = {"meeting_uuid": "abc==", "msg_type": 3, "protocol_version": 1,
            "rtms_stream_id": "stream123", "sequence": 851696, "signature": SIG}
    audio = decode_message(sdk_style({**base, "media_type": 1, "media_params": {"audio": {
        "channel": 2, "codec": 4, "content_type": 2, "data_opt": 2, "sample_rate": 3,
        "send_rate": 20}}}))
    assert isinstance(audio, MediaHandshakeRequest)
    assert audio.media_type == MediaType.AUDIO
    assert audio.media_params == MediaParams(audio=AudioParams(
        content_type=MediaContentType.RAW_AUDIO, codec=MediaCodec.OPUS,
        sample_rate=AudioSampleRate.SR_48K, channel=AudioChannel.STEREO,
        data_opt=DataOption.AUDIO_MULTI_STREAMS, send_rate=20))
    video = decode_message(sdk_style({**base, "media_type": 2, "media_params": {"video": {
        "codec": 7, "content_type": 3, "data_opt": 3, "fps": 30, "resolution": 2}}}))
    assert isinstance(video, MediaHandshakeRequest)
    assert video.media_params is not None and video.media_params.video is not None
    assert video.media_params.video.fps == 30
    share = decode_message(sdk_style({**base, "media_type": 4, "media_params": {"deskshare": {
        "codec": 7, "content_type": 3, "fps": 30, "resolution": 2}}}))
    assert isinstance(share, MediaHandshakeRequest)
    assert share.media_params is not None and share.media_params.deskshare is not None
    transcript = decode_message(sdk_style({**base, "media_type": 8, "media_params": None}))
    assert isinstance(transcript, MediaHandshakeRequest)
    assert transcript.media_type == MediaType.TRANSCRIPT and transcript.media_params is None
    tp = decode_message(sdk_style({**base, "media_type": 8, "media_params": {"transcript": {
        "content_type": 5, "src_language": 9, "enable_lid": False}}}))
    assert isinstance(tp, MediaHandshakeRequest) and tp.media_params is not None
    assert tp.media_params.transcript is not None
    assert tp.media_params.transcript.src_language == TranscriptLanguage.ENGLISH


def test_sdk_client_messages_decode() -> None:
    assert decode_message(b'{\n\t"msg_type" : 7,\n\t"rtms_stream_id" : "stream123"\n}\n') == \
        ClientReadyAck(rtms_stream_id="stream123")
    sub = decode_message(sdk_style({"events": [{"event_type": t, "subscribe": True}
                                               for t in (2, 3, 4, 8, 9)], "msg_type": 5}))
    assert isinstance(sub, EventSubscription)
    assert [i.event_type for i in sub.events] == [2, 3, 4, 8, 9]
    ka = decode_message(sdk_style({"msg_type": 13, "sequence": 1, "timestamp": 1795463477058}))
    assert ka == KeepAliveResponse(sequence=1, timestamp=1795463477058)
    video = decode_message(sdk_style({"msg_type": 28, "subscribe": True, "timestamp": 1209376,
                                      "user_id": 16778240}))
    assert video == VideoSubscriptionRequest(user_id=16778240, subscribe=True,
                                             timestamp=1209376)


def test_server_replies_from_the_protocol_doc_decode() -> None:
    url = "ws://127.0.0.1:9002/media"
    resp = decode_message(json.dumps({
        "msg_type": 2, "protocol_version": 1, "sequence": 851676, "status_code": 0,
        "reason": "", "media_server": {"server_urls": {k: url for k in (
            "audio", "video", "transcript", "deskshare", "chat", "all")}}}))
    assert isinstance(resp, SignalingHandshakeResponse)
    assert resp.media_server is not None
    assert resp.media_server.server_urls == ServerUrls.uniform(url)
    ev = decode_message(b'{"msg_type": 6, "event": {"event_type": 3, "timestamp": 1795463477360,'
                        b' "participants": [{"user_id": 16779264, "user_name": "Bob"}]}}')
    assert isinstance(ev, EventUpdate)
    assert ev.event.participants is not None and ev.event.participants[0].user_name == "Bob"
    st8 = decode_message(b'{"msg_type": 8, "state": 4, "reason": 6, "timestamp": 1}')
    assert st8 == StreamStateUpdate(state=4, reason=StopReason.MEETING_ENDED, timestamp=1)


# --- malformed inputs -----------------------------------------------------------------------

_AUDIO = '"user_id":1,"user_name":"A","data":"AAE=","timestamp":5'
MALFORMED: list[tuple[str, bytes | str, type[ProtocolError], str | None, int | None]] = [
    ("empty", b"", MalformedJSON, None, None),
    ("truncated", b'{"msg_type":7', MalformedJSON, None, None),
    ("not utf-8", b'{"msg_type":7,"rtms_stream_id":"\xff"}', MalformedJSON, None, None),
    ("not utf-8 after a bad tag", b'{"msg_type":77,"x":"\xff"}', MalformedJSON, None, None),
    ("trailing garbage", b'{"msg_type":7,"rtms_stream_id":"s"} x', MalformedJSON, None, None),
    ("array root", b"[1,2]", InvalidField, "", None),
    ("number root", b"12", InvalidField, "", None),
    ("no msg_type", b'{"rtms_stream_id":"s"}', MissingField, "msg_type", None),
    ("msg_type string", b'{"msg_type":"7"}', InvalidField, "msg_type", None),
    ("msg_type bool", b'{"msg_type":true}', InvalidField, "msg_type", None),
    ("msg_type unknown", b'{"msg_type":77}', UnknownMessageType, "msg_type", 77),
    ("msg_type zero", b'{"msg_type":0}', UnknownMessageType, "msg_type", 0),
    ("ready ack without id", b'{"msg_type":7}', MissingField, "rtms_stream_id", 7),
    ("audio without content", b'{"msg_type":14}', MissingField, "content", 14),
    ("flat audio layout", b'{"msg_type":14,"content":"AAE=","user_name":"A"}',
     InvalidField, "content", 14),
    ("user_id as string", '{"msg_type":14,"content":{"user_id":"1","user_name":"A",'
     '"data":"AAE=","timestamp":5}}', InvalidField, "content.user_id", 14),
    ("no user_name", '{"msg_type":15,"content":{"user_id":1,"data":"AAE=","timestamp":5}}',
     MissingField, "content.user_name", 15),
    ("bad base64", '{"msg_type":16,"content":{"user_id":1,"user_name":"A","data":"!!",'
     '"timestamp":5}}', InvalidField, "content.data", 16),
    ("timestamp as string", '{"msg_type":14,"content":{"user_id":1,"user_name":"A",'
     '"data":"AAE=","timestamp":"5"}}', InvalidField, "content.timestamp", 14),
    ("transcript without start_time", '{"msg_type":17,"content":{' + _AUDIO.replace(
        '"AAE="', '"hi"') + ',"end_time":1}}', MissingField, "content.start_time", 17),
    ("flat event", b'{"msg_type":6,"event_type":2,"user_id":1}', MissingField, "event", 6),
    ("participants as object", b'{"msg_type":6,"event":{"event_type":3,"participants":'
     b'{"user_id":1}}}', InvalidField, "event.participants", 6),
    ("participant without id", b'{"msg_type":6,"event":{"event_type":3,"participants":'
     b'[{"user_name":"B"}]}}', MissingField, "event.participants[0].user_id", 6),
    ("stream state without state", b'{"msg_type":8,"reason":6}', MissingField, "state", 8),
    ("unknown codec", b'{"msg_type":3,"meeting_uuid":"m","rtms_stream_id":"s","signature":"x",'
     b'"media_type":1,"media_params":{"audio":{"codec":99}}}', InvalidField,
     "media_params.audio.codec", 3),
    ("media_params as list", b'{"msg_type":4,"status_code":0,"media_params":[]}',
     InvalidField, "media_params", 4),
    ("server_urls as number", b'{"msg_type":2,"status_code":0,"media_server":'
     b'{"server_urls":5}}', InvalidField, "media_server.server_urls", 2),
    ("keep-alive sequence as string", b'{"msg_type":12,"sequence":"1"}', InvalidField,
     "sequence", 12),
    ("subscription item without type", b'{"msg_type":5,"events":[{"subscribe":true}]}',
     MissingField, "events[0].event_type", 5),
]


@pytest.mark.parametrize(("name", "data", "error", "field", "msg_type"), MALFORMED,
                         ids=[m[0] for m in MALFORMED])
def test_malformed_input_raises_typed_error(name: str, data: bytes | str,
                                            error: type[ProtocolError], field: str | None,
                                            msg_type: int | None) -> None:
    with pytest.raises(error) as info:
        decode_message(data)
    assert type(info.value) is error
    assert info.value.field == field
    assert info.value.msg_type == msg_type
    assert str(info.value)  # a readable message


def test_unknown_extra_fields_are_ignored() -> None:
    msg = decode_message(b'{"msg_type":7,"rtms_stream_id":"s","brand_new":{"x":[1]}}')
    assert msg == ClientReadyAck(rtms_stream_id="s")


# --- enums ----------------------------------------------------------------------------------


def test_enum_values_match_the_protocol_tables() -> None:
    assert [m.value for m in MsgType] == list(range(30))
    assert [m.value for m in StatusCode] == [*range(18), 31]
    assert [m.value for m in StopReason] == list(range(27))
    assert StopReason.KEEP_ALIVE_TIMEOUT == 24
    assert [m.value for m in TranscriptLanguage] == list(range(-1, 37))
    assert int(MediaType.AUDIO | MediaType.TRANSCRIPT) == 9
    assert MediaCodec.H264 == 7 and MediaCodec.OPUS == 4


def test_sample_rate_hz_helpers() -> None:
    assert [r.hz for r in AudioSampleRate] == [8000, 16000, 32000, 48000]
    assert AudioSampleRate.from_hz(48000) is AudioSampleRate.SR_48K
    with pytest.raises(ValueError, match="44100"):
        AudioSampleRate.from_hz(44100)


def test_url_key_helpers() -> None:
    for key in ("audio", "video", "deskshare", "transcript", "chat", "all"):
        assert url_key_for_media_type(media_type_from_url_key(key)) == key
    assert url_key_for_media_type(8) == "transcript"
    with pytest.raises(ValueError):
        url_key_for_media_type(MediaType.AUDIO | MediaType.VIDEO)
    with pytest.raises(ValueError):
        media_type_from_url_key("screen")
    urls = ServerUrls(audio="ws://a", all="ws://all")
    assert urls.url_for(MediaType.AUDIO) == "ws://a"
    assert urls.url_for(MediaType.VIDEO) == "ws://all"
    assert ServerUrls(audio="ws://a").url_for(MediaType.VIDEO) is None
