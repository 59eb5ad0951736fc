# mypy: disable-error-code="comparison-overlap"
"""RTMS handshake signature and webhook verification."""

from __future__ import annotations

import hashlib
import hmac
import json

import msgspec
import pytest
from hypothesis import given, settings
from proto_strategies import strategy_for

from rtms_fast.protocol import (
    InvalidField,
    MissingField,
    MissingHeader,
    Product,
    RtmsWebhookPayload,
    SignatureMismatch,
    StaleTimestamp,
    StreamInterrupted,
    StreamStart,
    StreamStop,
    WebhookBody,
    handle_webhook,
    parse_webhook_body,
    rtms_signature,
    stream_change,
    url_validation_response,
    verify_rtms_signature,
    verify_webhook,
    webhook_headers,
    webhook_signature,
)

SECRET = "whsec"
NOW_S = 1_795_463_477.0


def test_rtms_signature_known_answer() -> None:
    sig = rtms_signature("cid", "abc==", "stream123", "sec")
    assert sig.startswith("fc49c2c3") and sig.endswith("546b")
    assert sig == hmac.new(b"sec", b"cid,abc==,stream123", hashlib.sha256).hexdigest()
    assert len(sig) == 64 and sig == sig.lower()


def test_verify_rtms_signature() -> None:
    sig = rtms_signature("cid", "abc==", "stream123", "sec")
    assert verify_rtms_signature("cid", "abc==", "stream123", "sec", sig)
    assert verify_rtms_signature("cid", "abc==", "stream123", "sec", sig.upper())
    assert not verify_rtms_signature("cid", "abc==", "stream124", "sec", sig)
    assert not verify_rtms_signature("cid", "abc==", "stream123", "sec2", sig)
    assert not verify_rtms_signature("cid", "abc==", "stream123", "sec", "deadbeef")
    assert not verify_rtms_signature("cid", "abc==", "stream123", "sec", "é" * 64)


def _signed(body: dict[str, object], ts: int = int(NOW_S)) -> tuple[dict[str, str], bytes]:
    raw = json.dumps(body).encode()
    return webhook_headers(SECRET, ts, raw), raw


def test_webhook_signature_format() -> None:
    raw = b'{"event":"x"}'
    expected = hmac.new(SECRET.encode(), b"v0:123:" + raw, hashlib.sha256).hexdigest()
    assert webhook_signature(SECRET, 123, raw) == "v0=" + expected


def test_verify_webhook_good() -> None:
    headers, raw = _signed({"event": "meeting.rtms_started"})
    verify_webhook(headers, raw, SECRET, NOW_S)
    upper = {k.upper(): v for k, v in headers.items()}
    verify_webhook(upper, raw, SECRET, NOW_S + 299)


def test_verify_webhook_bad_signature() -> None:
    headers, raw = _signed({"event": "meeting.rtms_started"})
    with pytest.raises(SignatureMismatch) as info:
        verify_webhook(headers, raw + b" ", SECRET, NOW_S)
    assert info.value.field == "x-zm-signature"
    with pytest.raises(SignatureMismatch):
        verify_webhook(headers, raw, "other", NOW_S)
    forged = {**headers, "x-zm-request-timestamp": str(int(NOW_S) + 1)}
    with pytest.raises(SignatureMismatch):
        verify_webhook(forged, raw, SECRET, NOW_S)


def test_verify_webhook_stale_timestamp() -> None:
    headers, raw = _signed({"event": "x"}, ts=int(NOW_S) - 301)
    with pytest.raises(StaleTimestamp):
        verify_webhook(headers, raw, SECRET, NOW_S)
    verify_webhook(headers, raw, SECRET, NOW_S, max_age_s=400)
    future, raw2 = _signed({"event": "x"}, ts=int(NOW_S) + 1000)
    with pytest.raises(StaleTimestamp):
        verify_webhook(future, raw2, SECRET, NOW_S)
    millis, raw3 = _signed({"event": "x"}, ts=int(NOW_S * 1000))
    verify_webhook(millis, raw3, SECRET, NOW_S)


def test_verify_webhook_missing_headers() -> None:
    headers, raw = _signed({"event": "x"})
    for name in ("x-zm-signature", "x-zm-request-timestamp"):
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(MissingHeader) as info:
            verify_webhook(partial, raw, SECRET, NOW_S)
        assert info.value.field == name
    with pytest.raises(MissingHeader):
        verify_webhook({**headers, "x-zm-signature": " "}, raw, SECRET, NOW_S)
    bad_ts = {"x-zm-request-timestamp": "soon",
              "x-zm-signature": webhook_signature(SECRET, "soon", raw)}
    with pytest.raises(InvalidField):
        verify_webhook(bad_ts, raw, SECRET, NOW_S)


def test_url_validation() -> None:
    answer = url_validation_response("tok123", SECRET)
    assert answer == {"plainToken": "tok123", "encryptedToken": hmac.new(
        SECRET.encode(), b"tok123", hashlib.sha256).hexdigest()}
    headers, raw = _signed({"event": "endpoint.url_validation",
                            "payload": {"plainToken": "tok123"}})
    result = handle_webhook(headers, raw, SECRET, NOW_S)
    assert result.status_code == 200 and json.loads(result.body) == answer
    # Unsigned validation requests are refused: the answer is an HMAC oracle.
    assert handle_webhook({}, raw, SECRET, NOW_S).status_code == 401
    headers, raw = _signed({"event": "endpoint.url_validation", "payload": {}})
    result = handle_webhook(headers, raw, SECRET, NOW_S)
    assert result.status_code == 400 and isinstance(result.error, MissingField)


@pytest.mark.parametrize(("event", "id_key", "product"), [
    ("meeting.rtms_started", "meeting_uuid", Product.MEETING),
    ("webinar.rtms_started", "meeting_uuid", Product.WEBINAR),
    ("session.rtms_started", "session_id", Product.VIDEO_SDK),
    ("contact_center.voice_rtms_started", "engagement_id", Product.CONTACT_CENTER),
])
@pytest.mark.parametrize("nested", [False, True])
def test_stream_start_from_either_payload_shape(event: str, id_key: str, product: Product,
                                                nested: bool) -> None:
    fields = {id_key: "abc==", "rtms_stream_id": "st1", "server_urls": "wss://rtms.zoom.us/s"}
    payload = {"operator_id": "op", "object": fields} if nested else fields
    headers, raw = _signed({"event": event, "event_ts": 1234, "payload": payload})
    result = handle_webhook(headers, raw, SECRET, NOW_S)
    assert result.status_code == 200 and json.loads(result.body) == {"status": "ok"}
    assert result.stream == StreamStart(product=product, rtms_stream_id="st1",
                                        signature_id="abc==", server_urls="wss://rtms.zoom.us/s",
                                        event_ts_ms=1234)


def test_stream_stop_and_interrupted() -> None:
    stop = stream_change(parse_webhook_body(json.dumps({
        "event": "meeting.rtms_stopped", "event_ts": 9,
        "payload": {"meeting_uuid": "m", "rtms_stream_id": "s", "stop_reason": 6}}).encode()))
    assert stop == StreamStop(product=Product.MEETING, rtms_stream_id="s", signature_id="m",
                              event_ts_ms=9, stop_reason=6)
    named = stream_change(parse_webhook_body(json.dumps({
        "event": "session.rtms_stopped",
        "payload": {"object": {"session_id": "v", "rtms_stream_id": "s",
                               "stop_reason": "MEETING_ENDED"}}}).encode()))
    assert isinstance(named, StreamStop) and named.stop_reason == 6
    cut = stream_change(parse_webhook_body(json.dumps({
        "event": "contact_center.voice_rtms_interrupted",
        "payload": {"engagement_id": "e", "rtms_stream_id": "s"}}).encode()))
    assert cut == StreamInterrupted(product=Product.CONTACT_CENTER, rtms_stream_id="s",
                                    signature_id="e")


def test_handle_webhook_error_answers() -> None:
    headers, raw = _signed({"event": "meeting.rtms_started"})
    assert handle_webhook(headers, raw, "wrong", NOW_S).status_code == 401
    assert isinstance(handle_webhook(headers, raw, "wrong", NOW_S).error, SignatureMismatch)
    assert handle_webhook(headers, raw, SECRET, NOW_S + 3600).status_code == 401
    # An RTMS event without its ids.
    result = handle_webhook(headers, raw, SECRET, NOW_S)
    assert result.status_code == 400 and isinstance(result.error, MissingField)
    assert result.error.field == "payload.rtms_stream_id"
    for body in (b"not json", b'{"no_event":1}', b"[]"):
        h = webhook_headers(SECRET, int(NOW_S), body)
        assert handle_webhook(h, body, SECRET, NOW_S).status_code == 400
    # Unknown events are acknowledged so Zoom does not retry them.
    headers, raw = _signed({"event": "meeting.started", "payload": {}})
    result = handle_webhook(headers, raw, SECRET, NOW_S)
    assert (result.status_code, result.stream, result.event) == (200, None, "meeting.started")


@settings(max_examples=40, deadline=None)
@given(body=strategy_for(WebhookBody))
def test_webhook_body_round_trip(body: WebhookBody) -> None:
    assert parse_webhook_body(msgspec.json.encode(body)) == body


def test_payload_object_nesting_is_read() -> None:
    body = WebhookBody(event="meeting.rtms_started", payload=RtmsWebhookPayload(
        rtms_stream_id="outer", object=RtmsWebhookPayload(
            meeting_uuid="inner==", rtms_stream_id="ignored", server_urls="wss://x")))
    start = stream_change(body)
    assert isinstance(start, StreamStart)
    assert (start.rtms_stream_id, start.signature_id) == ("outer", "inner==")
