"""A small RTMS client for the simulator tests: wsproto over a Trio stream, independent of
rtms_fast's own client (the simulator is the thing under test). trio-websocket is not used
because, as a client, it leaves its TCP stream open when the server closes first."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import wsproto
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from rtms_fast.protocol import rtms_signature
from rtms_fast.sim import SimConfig, SimSession, Simulator


def fast_config(**kw: Any) -> SimConfig:
    base: dict[str, Any] = {
        "duration_s": 0.4,
        "client_id": "cid",
        "client_secret": "csecret",
        "keepalive_interval_s": 5.0,
        "join_timeout_s": 0,
    }
    base.update(kw)
    return SimConfig(**base)


def signature(sim: Simulator, session: SimSession) -> str:
    return rtms_signature(sim.config.client_id, session.meeting_uuid, session.rtms_stream_id,
                          sim.config.client_secret)


def client_ssl(sim: Simulator) -> ssl.SSLContext | None:
    if sim.ca_file is None:
        return None
    return ssl.create_default_context(cafile=sim.ca_file)


class ConnectionClosed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code  # None: TCP closed without a close frame


class HandshakeRefused(Exception):
    pass


class WsClient:
    """Minimal WebSocket client: whole messages, answers pings, records the close code."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.pending: list[str | bytes] = []
        self.close_code: int | None = None
        self.closed = False
        self.reset = False  # the TCP connection was reset (RST), not closed
        self._text: list[str] = []
        self._bytes: list[bytes] = []

    async def _send(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed = True

    async def handshake(self, host: str, path: str) -> None:
        await self._send(self.ws.send(Request(host=host, target=path)))
        while True:
            data = await self.stream.receive_some(65536)
            if not data:
                raise HandshakeRefused("EOF during upgrade")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self._process()  # frames that came with the 101
                    return
                if isinstance(event, RejectConnection):
                    raise HandshakeRefused(str(event.status_code))

    def _process(self) -> list[bytes]:
        replies: list[bytes] = []
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    self.pending.append("".join(self._text))
                    self._text.clear()
            elif isinstance(event, BytesMessage):
                self._bytes.append(bytes(event.data))
                if event.message_finished:
                    self.pending.append(b"".join(self._bytes))
                    self._bytes.clear()
            elif isinstance(event, Ping):
                replies.append(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self.ws.state is wsproto.connection.ConnectionState.REMOTE_CLOSING:
                    replies.append(self.ws.send(event.response()))
        return replies

    async def get_message(self) -> str | bytes:
        while not self.pending:
            if self.closed:
                raise ConnectionClosed(self.close_code)
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.reset = True
                data = b""
            if not data:
                self.closed = True
                continue
            self.ws.receive_data(data)
            for reply in self._process():
                await self._send(reply)
        return self.pending.pop(0)

    async def send_message(self, text: str) -> None:
        await self._send(self.ws.send(TextMessage(data=text)))

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()


async def recv_json(ws: WsClient, timeout_s: float = 3.0) -> Any:
    with trio.fail_after(timeout_s):
        return json.loads(await ws.get_message())


async def recv_until(ws: WsClient, msg_type: int,
                     timeout_s: float = 3.0) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        while True:
            msg = await recv_json(ws, timeout_s)
            if msg.get("msg_type") == msg_type:
                return msg  # type: ignore[no-any-return]


@asynccontextmanager
async def ws_connect(sim: Simulator, url: str) -> AsyncIterator[WsClient]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", int(port))
    ctx = client_ssl(sim)
    if ctx is not None:
        stream = trio.SSLStream(stream, ctx, server_hostname=host)
    client = WsClient(stream)
    try:
        with trio.fail_after(5):
            await client.handshake(host, "/" + path)
        yield client
    finally:
        await client.aclose()


async def signaling_handshake(sim: Simulator, ws: WsClient,
                              session: SimSession, sig: str | None = None) -> dict[str, Any]:
    await ws.send_message(json.dumps({
        "msg_type": 1, "protocol_version": 1, "meeting_uuid": session.meeting_uuid,
        "rtms_stream_id": session.rtms_stream_id, "sequence": 77,
        "signature": sig if sig is not None else signature(sim, session)}))
    return await recv_until(ws, 2)


async def media_handshake(sim: Simulator, ws: WsClient,
                          session: SimSession, media_type: int,
                          media_params: Any = None, sig: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "msg_type": 3, "protocol_version": 1, "meeting_uuid": session.meeting_uuid,
        "rtms_stream_id": session.rtms_stream_id, "sequence": 99, "media_type": media_type,
        "signature": sig if sig is not None else signature(sim, session)}
    if media_params is not None:
        msg["media_params"] = media_params
    await ws.send_message(json.dumps(msg))
    return await recv_until(ws, 4)


@asynccontextmanager
async def handshaken(sim: Simulator) -> AsyncIterator[tuple[SimSession, WsClient, WsClient]]:
    """The first session's signaling and audio sockets, both past their handshakes."""
    session = sim.sessions[0]
    async with ws_connect(sim, sim.signaling_url) as sig, \
            ws_connect(sim, sim.media_urls()["audio"]) as media:
        await signaling_handshake(sim, sig, session)
        await media_handshake(sim, media, session, 1)
        yield session, sig, media


async def send_ready(ws: WsClient, session: SimSession) -> None:
    await ws.send_message(json.dumps({"msg_type": 7, "rtms_stream_id": session.rtms_stream_id}))


async def collect_until_closed(ws: WsClient,
                               timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Every JSON message until the server closes the socket (answers keep-alives)."""
    out: list[dict[str, Any]] = []
    with trio.fail_after(timeout_s):
        while True:
            try:
                raw = await ws.get_message()
            except ConnectionClosed:
                return out
            msg = json.loads(raw)
            out.append(msg)
            if msg.get("msg_type") == 12:
                await ws.send_message(json.dumps(
                    {"msg_type": 13, "sequence": msg["sequence"], "timestamp": msg["timestamp"]}))
