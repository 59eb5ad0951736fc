"""The Trio webhook server: receives Zoom's RTMS webhooks and hands stream changes on.

HTTP is parsed by h11; deciding what to answer is the pure function
``rtms_fast.protocol.webhook.handle_webhook`` (usable from any ASGI/WSGI framework as well).
This server adds what needs I/O or memory: body size limits (413), a per-request time limit,
path and method checks, and de-duplication of ``(event, rtms_stream_id)`` so a retried
``rtms_started`` never starts a second connection (a second connection kicks out the first).
Every valid request is answered at once; the stream change is handed to ``on_stream``
after the answer is sent, synchronously, so ``on_stream`` must not block (the engine's
``submit`` only schedules a task).

This module must never parse HTTP by hand, verify signatures itself or open RTMS sockets.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Final

import h11
import msgspec
import trio

from rtms_fast.protocol.webhook import (
    StreamInterrupted,
    StreamStart,
    StreamStop,
    WebhookResult,
    handle_webhook,
)

__all__ = ["StreamChangeHandler", "WebhookServer", "WebhookStats"]

StreamChangeHandler = Callable[[StreamStart | StreamStop | StreamInterrupted], None]

_RECV_BYTES: Final = 65536
_ENCODER: Final = msgspec.json.Encoder()


class WebhookStats(msgspec.Struct, frozen=True):
    requests: int
    by_status: dict[int, int]
    duplicates: int
    stream_changes: int
    handler_errors: int


class WebhookServer:
    """An HTTP/1.1 server for Zoom webhooks on Trio.

    ``secret_token`` is the app's webhook secret token. ``on_stream`` receives each new
    ``StreamStart`` / ``StreamStop`` / ``StreamInterrupted`` once. ``path`` (``None``: any)
    is the only path served; others get 404.
    """

    def __init__(
        self,
        secret_token: str,
        on_stream: StreamChangeHandler,
        *,
        path: str | None = None,
        max_body_bytes: int = 1024 * 1024,
        timestamp_tolerance_s: float = 300.0,
        request_timeout_s: float = 10.0,
        dedupe_capacity: int = 65536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret_token:
            raise ValueError("secret_token must not be empty")
        self._secret = secret_token
        self._on_stream = on_stream
        self._path = path
        self._max_body_bytes = max_body_bytes
        self._tolerance_s = timestamp_tolerance_s
        self._request_timeout_s = request_timeout_s
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._dedupe_capacity = dedupe_capacity
        self._by_status: Counter[int] = Counter()
        self._requests = 0
        self._duplicates = 0
        self._stream_changes = 0
        self._handler_errors = 0
        self.port: int | None = None

    # ---- pure-ish core (no sockets) -----------------------------------------------------
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[WebhookResult, StreamStart | StreamStop | StreamInterrupted | None]:
        """Answer one request; returns the answer and the NEW stream change (None if none
        or a duplicate). Counts the request."""
        self._requests += 1
        path = target.split("?", 1)[0]
        if self._path is not None and path != self._path:
            result = WebhookResult(status_code=404, body=b'{"error":"not found"}')
        elif method != "POST":
            result = WebhookResult(status_code=405, body=b'{"error":"method not allowed"}')
        else:
            result = handle_webhook(headers, body, self._secret, self._clock(), self._tolerance_s)
        self._by_status[result.status_code] += 1
        change = result.stream if result.status_code == 200 else None
        if change is not None:
            key = (result.event or type(change).__name__, change.rtms_stream_id)
            if key in self._seen:
                self._duplicates += 1
                self._seen.move_to_end(key)
                change = None
            else:
                self._seen[key] = None
                if len(self._seen) > self._dedupe_capacity:
                    self._seen.popitem(last=False)
                self._stream_changes += 1
        return result, change

    def stats(self) -> WebhookStats:
        return WebhookStats(
            requests=self._requests,
            by_status=dict(self._by_status),
            duplicates=self._duplicates,
            stream_changes=self._stream_changes,
            handler_errors=self._handler_errors,
        )

    # ---- the server ----------------------------------------------------------------------
    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled; ``task_status.started(port)`` reports the port."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started(self.port)
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            while True:
                with trio.move_on_after(self._request_timeout_s) as scope:
                    keep_going = await self._one_request(conn, stream)
                if scope.cancelled_caught:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and (
                        conn.their_state is not h11.IDLE
                    ):
                        await self._send_simple(conn, stream, 408, b'{"error":"timeout"}')
                    break
                if not keep_going:
                    break
                try:
                    conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass
        finally:
            with trio.move_on_after(1.0):
                await stream.aclose()

    async def _next_event(self, conn: h11.Connection, stream: trio.SocketStream) -> object:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_RECV_BYTES)
                conn.receive_data(data)
                continue
            return event

    async def _one_request(self, conn: h11.Connection, stream: trio.SocketStream) -> bool:
        """Serve one request on ``conn``; False when the connection should close."""
        try:
            event = await self._next_event(conn, stream)
        except h11.RemoteProtocolError:
            await self._send_simple(conn, stream, 400, b'{"error":"bad request"}')
            return False
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return False
        if not isinstance(event, h11.Request):
            return False
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            self._requests += 1
            self._by_status[413] += 1
            await self._send_simple(conn, stream, 413, b'{"error":"body too large"}')
            return False
        body = bytearray()
        try:
            while True:
                part = await self._next_event(conn, stream)
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > self._max_body_bytes:
                        self._requests += 1
                        self._by_status[413] += 1
                        await self._send_simple(conn, stream, 413, b'{"error":"body too large"}')
                        return False
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return False
        except h11.RemoteProtocolError:
            await self._send_simple(conn, stream, 400, b'{"error":"bad request"}')
            return False
        result, change = self.handle(
            event.method.decode("ascii", "replace"),
            event.target.decode("latin-1"),
            headers,
            bytes(body),
        )
        await self._send_simple(conn, stream, result.status_code, result.body,
                                result.content_type)
        if change is not None:
            try:
                self._on_stream(change)
            except Exception:  # the receiver's failure must not take the server down
                self._handler_errors += 1
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _send_simple(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        body: bytes,
        content_type: str = "application/json",
    ) -> None:
        headers = [
            ("content-type", content_type),
            ("content-length", str(len(body))),
        ]
        if status >= 400:
            headers.append(("connection", "close"))
        data = conn.send(h11.Response(status_code=status, headers=headers))
        data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)
