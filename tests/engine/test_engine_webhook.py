"""The Trio webhook server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import time

import h11
import trio

from rtms_fast.protocol.webhook import StreamStart, StreamStop, webhook_headers
from rtms_fast.webhook import WebhookServer

SECRET = "webhook-secret"


async def _post(
    port: int,
    body: bytes,
    headers: dict[str, str],
    target: str = "/webhook",
    method: str = "POST",
) -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    all_headers = [("host", "127.0.0.1"), ("content-length", str(len(body))), *headers.items()]
    data = conn.send(h11.Request(method=method, target=target, headers=all_headers))
    data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
    status = 0
    payload = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            payload += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    await stream.aclose()
    return status, bytes(payload)


def _signed(body: dict[str, object], now_s: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    return raw, webhook_headers(SECRET, int(time.time()) if now_s is None else now_s, raw)


def _started(stream_id: str = "stream-1") -> dict[str, object]:
    return {
        "event": "meeting.rtms_started",
        "event_ts": 1,
        "payload": {
            "meeting_uuid": "abc==",
            "rtms_stream_id": stream_id,
            "server_urls": "ws://127.0.0.1:1/signal",
        },
    }


async def _serve(nursery: trio.Nursery, received: list[object], **kw: object) -> int:
    server = WebhookServer(SECRET, received.append, path="/webhook", **kw)  # type: ignore[arg-type]
    port: int = await nursery.start(server.serve)
    return port


async def test_duplicate_start_hands_on_one_stream() -> None:
    received: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, received)
        for _ in range(3):
            status, payload = await _post(port, *_signed(_started()))
            assert status == 200
            assert json.loads(payload) == {"status": "ok"}
        status, _ = await _post(port, *_signed(_started("stream-2")))
        assert status == 200
        stop = {"event": "meeting.rtms_stopped",
                "payload": {"meeting_uuid": "abc==", "rtms_stream_id": "stream-1",
                            "stop_reason": 6}}
        status, _ = await _post(port, *_signed(stop))
        assert status == 200
        nursery.cancel_scope.cancel()
    assert [type(r) for r in received] == [StreamStart, StreamStart, StreamStop]
    assert isinstance(received[0], StreamStart)
    assert received[0].rtms_stream_id == "stream-1"
    assert received[0].signature_id == "abc=="
    assert isinstance(received[2], StreamStop) and received[2].stop_reason == 6


async def test_bad_signature_is_401_and_starts_nothing() -> None:
    received: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, received)
        raw, headers = _signed(_started())
        headers["x-zm-signature"] = "v0=" + "0" * 64
        status, _ = await _post(port, raw, headers)
        assert status == 401
        raw, headers = _signed(_started(), now_s=int(time.time()) - 3600)
        status, _ = await _post(port, raw, headers)
        assert status == 401  # stale timestamp
        raw, headers = _signed(_started())
        status, _ = await _post(port, raw, {})
        assert status == 401  # unsigned
        nursery.cancel_scope.cancel()
    assert received == []


async def test_url_validation_malformed_oversize_and_wrong_path() -> None:
    received: list[object] = []
    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, received, max_body_bytes=2048)
        body = {"event": "endpoint.url_validation", "payload": {"plainToken": "tok123"}}
        status, payload = await _post(port, *_signed(body))
        assert status == 200
        answer = json.loads(payload)
        assert answer["plainToken"] == "tok123"
        import hashlib
        import hmac

        assert answer["encryptedToken"] == hmac.new(
            SECRET.encode(), b"tok123", hashlib.sha256
        ).hexdigest()
        raw = b"{not json"
        status, _ = await _post(port, raw, webhook_headers(SECRET, int(time.time()), raw))
        assert status == 400
        raw = b"{" + b" " * 4096 + b"}"
        status, _ = await _post(port, raw, webhook_headers(SECRET, int(time.time()), raw))
        assert status == 413
        status, _ = await _post(port, *_signed(_started()), target="/other")
        assert status == 404
        nursery.cancel_scope.cancel()
    assert received == []


def test_handle_is_usable_without_a_server() -> None:
    received: list[object] = []
    server = WebhookServer(SECRET, received.append)
    raw, headers = _signed(_started())
    result, change = server.handle("POST", "/", headers, raw)
    assert result.status_code == 200 and isinstance(change, StreamStart)
    result, change = server.handle("POST", "/", headers, raw)
    assert result.status_code == 200 and change is None
    assert server.stats().duplicates == 1
    result, change = server.handle("GET", "/", headers, raw)
    assert result.status_code == 405 and change is None


async def test_a_failing_receiver_does_not_stop_the_server() -> None:
    def explode(change: object) -> None:
        raise RuntimeError("receiver bug")

    async with trio.open_nursery() as nursery:
        server = WebhookServer(SECRET, explode)
        port: int = await nursery.start(server.serve)
        status, _ = await _post(port, *_signed(_started("a")), target="/")
        assert status == 200
        status, _ = await _post(port, *_signed(_started("b")), target="/")
        assert status == 200
        nursery.cancel_scope.cancel()
    assert server.stats().handler_errors == 2
