"""The simulator's webhook sender: signed `*.rtms_started|stopped|interrupted` POSTs.

HTTP/1.1 over a Trio TCP stream (TLS when the URL is https), spoken with h11. Signing
uses `rtms_fast.protocol.webhook_headers`, so a receiver verifies with the same rules Zoom
uses. This module must never parse or build HTTP by hand.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import h11
import msgspec
import trio

from rtms_fast.protocol import webhook_headers

__all__ = ["WebhookDeliveryError", "WebhookResponse", "send_webhook"]

_MAX_RESPONSE_BYTES: Final = 1 << 20


class WebhookDeliveryError(Exception):
    """The webhook could not be delivered (connect failure, bad URL, broken HTTP)."""


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: bytes


async def send_webhook(
    url: str,
    body: dict[str, Any],
    secret: str,
    *,
    timestamp_s: int | None = None,
    timeout_s: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> WebhookResponse:
    """POST `body` (compact JSON) to `url` with `x-zm-signature` and
    `x-zm-request-timestamp`; return the receiver's status and body."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookDeliveryError(f"webhook URL must be http(s)://host[:port]/path, got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw = msgspec.json.encode(body)
    ts = int(time.time()) if timestamp_s is None else timestamp_s
    headers = [("host", parts.netloc), ("content-length", str(len(raw))),
               ("connection", "close"), ("user-agent", "rtms-fast-simulator")]
    headers += list(webhook_headers(secret, ts, raw).items())
    conn = h11.Connection(h11.CLIENT)
    try:
        with trio.fail_after(timeout_s):
            stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
            if parts.scheme == "https":
                stream = trio.SSLStream(stream, ssl_context or ssl.create_default_context(),
                                        server_hostname=parts.hostname)
            async with stream:
                await stream.send_all(conn.send(h11.Request(method="POST", target=target,
                                                            headers=headers)) or b"")
                await stream.send_all(conn.send(h11.Data(data=raw)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                status = 0
                chunks: list[bytes] = []
                size = 0
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(bytes(await stream.receive_some(65536)))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        size += len(event.data)
                        if size > _MAX_RESPONSE_BYTES:
                            raise WebhookDeliveryError("webhook response body too large")
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        return WebhookResponse(status, b"".join(chunks))
    except (OSError, trio.BrokenResourceError, h11.ProtocolError, trio.TooSlowError) as exc:
        raise WebhookDeliveryError(f"webhook POST to {url} failed: {exc!r}") from exc
