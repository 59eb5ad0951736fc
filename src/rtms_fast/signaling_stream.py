"""The byte stream under the signaling WebSocket: answers keep-alives where it reads them.

trio-websocket runs the signaling socket (handshake, events, state, close). Each keep-alive
it delivers costs a reader wake-up, wsproto's parser, a channel hop to the session's task
and a locked send, ~150 us of CPU, and it waits behind whatever that task is doing.
``SignalingStream`` wraps the transport stream (TCP or TLS) that trio-websocket reads:
``KeepAliveTap`` takes keep-alive requests out of the bytes as they arrive, the session's
``answer`` turns each into its response, and the answer is written right there in the
reader's task. Every other byte reaches trio-websocket unchanged and in order.

Sends from trio-websocket and keep-alive answers share the transport, so they are
serialized here (a Trio stream allows one ``send_all`` at a time). Once trio-websocket has
written a close frame nothing more may follow it (RFC 6455 5.5.1): answering stops there
and later requests go on to trio-websocket, which discards them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from rtms_fast.protocol.keepalive_tap import KeepAliveTap
from rtms_fast.wire import Opcode, encode_frame

__all__ = ["SignalingStream"]


class SignalingStream(trio.abc.Stream):
    """``answer(payload)`` gets each keep-alive request's JSON and returns the JSON of the
    response to send, or None to send nothing. Taking starts when ``tap.enabled`` is set."""

    def __init__(self, inner: trio.abc.Stream, answer: Callable[[bytes], bytes | None]) -> None:
        self.inner = inner
        self.tap = KeepAliveTap()
        #: Keep-alive answers written from here.
        self.answered = 0
        self._answer = answer
        self._sending = False
        self._send_turns = trio.lowlevel.ParkingLot()
        self._at_eof = False
        self._request_sent = False
        self._close_sent = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._at_eof:
            data = await self.inner.receive_some(max_bytes)
            if not data:
                self._at_eof = True
                return self.tap.flush()
            passed, requests = self.tap.feed(bytes(data))
            for payload in requests:
                body = None if self._close_sent else self._answer(payload)
                if body is not None:
                    # client frames are masked with a fresh unpredictable key (RFC 6455 5.3)
                    await self._send(encode_frame(Opcode.TEXT, body, mask_key=os.urandom(4)))
                    self.answered += 1
            if passed:
                return passed
        return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # trio-websocket writes its HTTP request first, then each frame in a call of its own
        if not self._request_sent:
            self._request_sent = True
        elif len(data) and data[0] & 0x0F == Opcode.CLOSE:
            self._close_sent = True
            self.tap.enabled = False
        await self._send(data)

    async def _send(self, data: bytes | bytearray | memoryview) -> None:
        while self._sending:
            await self._send_turns.park()
        self._sending = True
        try:
            await self.inner.send_all(data)
        finally:
            self._sending = False
            self._send_turns.unpark()

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()
