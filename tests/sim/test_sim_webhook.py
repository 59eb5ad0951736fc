"""The webhook sender, checked by rtms_fast.protocol's verifier behind a tiny h11 server."""

from __future__ import annotations

import time
from typing import Any

import h11
import pytest
import trio

from conftest import fast_config
from rtms_fast.protocol import SignatureMismatch, parse_webhook_body, verify_webhook
from rtms_fast.sim import run_simulator
from rtms_fast.sim.webhook import WebhookDeliveryError, send_webhook


async def serve_one(listener: trio.SocketListener, got: dict[str, Any]) -> None:
    stream = await listener.accept()
    async with stream:
        conn = h11.Connection(h11.SERVER)
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                got["target"] = event.target.decode()
                got["headers"] = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        got["body"] = body
        reply = b'{"status":"ok"}'
        await stream.send_all(conn.send(h11.Response(
            status_code=200, headers=[("content-length", str(len(reply))),
                                      ("content-type", "application/json")])))
        await stream.send_all(conn.send(h11.Data(data=reply)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


@pytest.mark.parametrize(("product", "event"), [
    ("meeting", "meeting.rtms_started"),
    ("webinar", "webinar.rtms_started"),
    ("session", "session.rtms_started"),
    ("contact_center", "contact_center.voice_rtms_started"),
])
async def test_signed_webhook_verifies(product: str, event: str) -> None:
    async with run_simulator(fast_config(product=product)) as sim:
        body = sim.webhook_event(sim.sessions[0])
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    got: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one, listeners[0], got)
        resp = await send_webhook(f"http://127.0.0.1:{port}/hook", body, "whsecret")
    await listeners[0].aclose()
    assert resp.status_code == 200 and resp.body == b'{"status":"ok"}'
    assert got["target"] == "/hook"
    verify_webhook(got["headers"], got["body"], "whsecret", now_s=time.time())
    with pytest.raises(SignatureMismatch):
        verify_webhook(got["headers"], got["body"], "other-secret", now_s=time.time())
    parsed = parse_webhook_body(got["body"])
    assert parsed.event == event
    assert parsed.payload is not None and parsed.payload.rtms_stream_id == \
        sim.sessions[0].rtms_stream_id
    assert parsed.payload.server_urls == sim.signaling_url


async def test_unreachable_webhook_raises_typed_error() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nothing listens there now
    with pytest.raises(WebhookDeliveryError):
        await send_webhook(f"http://127.0.0.1:{port}/", {"event": "x"}, "s", timeout_s=2)
    with pytest.raises(WebhookDeliveryError):
        await send_webhook("ftp://127.0.0.1/", {"event": "x"}, "s")
