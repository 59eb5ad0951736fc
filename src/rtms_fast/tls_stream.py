"""A TLS client stream over a stdlib socket, with its TLS state within reach.

``trio.SSLStream`` keeps its ``ssl.SSLObject`` to itself. The signaling socket needs it:
once the signaling handshake is done, the engine's pump reads that socket in its sweeps and
decrypts what it reads synchronously (``SignalingStream.read_through``), as it does for the
media sockets. ``TLSSocketStream`` is a small Trio stream over an ``ssl.SSLObject`` and two
``ssl.MemoryBIO``s that exposes all three and the socket.

Rules that keep it small:

- one ``send_all`` at a time (the caller serializes; a second raises BusyResourceError),
  and one ``receive_some`` at a time;
- ``receive_some`` never writes: TLS bytes a read produces (the answer to a TLS 1.3
  KeyUpdate) wait in the outgoing BIO for the next send, which goes out before that send's
  own records, as TLS 1.3 requires (RFC 8446 4.6.3);
- a TCP end without close_notify is an end of stream, as with
  ``trio.SSLStream(https_compatible=True)``: the WebSocket close handshake already says
  whether the stream ended cleanly;
- ``aclose`` sends close_notify if the socket takes it at once, then closes the socket.

Failures (a refused certificate, a corrupt record, a reset) raise
``trio.BrokenResourceError`` with the cause chained, as the Trio streams do.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Final

import trio

__all__ = ["TLSSocketStream"]

_RECV_BYTES: Final = 64 * 1024


class TLSSocketStream(trio.abc.Stream):
    """TLS over ``sock`` (a connected stdlib TCP socket, which it owns from now on);
    ``await do_handshake()`` before anything else."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext,
                 server_hostname: str) -> None:
        sock.setblocking(False)
        self.socket = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(self.incoming, self.outgoing,
                                           server_hostname=server_hostname)
        self._trio_socket = trio.socket.from_stdlib_socket(sock)
        self._sending = False
        self._receiving = False
        self._closed = False

    async def do_handshake(self) -> None:
        while True:
            try:
                self.ssl_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._send_outgoing()
                if not await self._receive_records():
                    raise trio.BrokenResourceError(
                        "the connection closed during the TLS handshake") from None
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        await self._send_outgoing()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._receiving = True
        try:
            while True:
                self._check_open()
                try:
                    return self.ssl_object.read(max_bytes or _RECV_BYTES)
                except ssl.SSLWantReadError:
                    pass
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return b""
                except ssl.SSLError as exc:
                    raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
                if not await self._receive_records():
                    self.incoming.write_eof()
        finally:
            self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_turn():
            if len(data):
                try:
                    self.ssl_object.write(data)
                except ssl.SSLError as exc:
                    raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
            await self._send_outgoing()

    async def send_transport(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the socket as it is: TLS records taken from ``outgoing``
        earlier (by a caller that writes some records itself), before anything queued
        since. Counts as a send (one at a time)."""
        with self._send_turn():
            await self._send_bytes(memoryview(data))

    @contextlib.contextmanager
    def _send_turn(self) -> Iterator[None]:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        self._sending = True
        try:
            yield
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.socket)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        with contextlib.suppress(ssl.SSLError):
            self.ssl_object.unwrap()  # queues close_notify
        if self.outgoing.pending:
            with contextlib.suppress(OSError):
                self.socket.send(self.outgoing.read())
        self._trio_socket.close()
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")

    async def _send_outgoing(self) -> None:
        """Write everything in the outgoing BIO (including what arrives meanwhile)."""
        while self.outgoing.pending:
            await self._send_bytes(memoryview(self.outgoing.read()))

    async def _send_bytes(self, data: memoryview) -> None:
        while data:
            try:
                sent = await self._trio_socket.send(data)
            except OSError as exc:
                raise trio.BrokenResourceError(f"send failed: {exc}") from exc
            data = data[sent:]

    async def _receive_records(self) -> bool:
        """Read the socket into the incoming BIO; False at the end of the TCP stream."""
        try:
            data = await self._trio_socket.recv(_RECV_BYTES)
        except OSError as exc:
            raise trio.BrokenResourceError(f"receive failed: {exc}") from exc
        if data:
            self.incoming.write(data)
        return bool(data)
