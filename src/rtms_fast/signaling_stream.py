"""The byte stream under the signaling WebSocket: answers keep-alives where it reads them.

trio-websocket runs the signaling socket (handshake, events, state, close). Each keep-alive
it delivers costs a reader wake-up, wsproto's parser, a channel hop to the session's task
and a locked send, ~150 us of CPU, and it waits behind whatever that task is doing.
``SignalingStream`` wraps the transport stream (TCP or TLS) that trio-websocket reads:
``KeepAliveTap`` takes keep-alive requests out of the bytes as they arrive, the session's
``answer`` turns each into its response, and the answer is written right there. Every
other byte reaches trio-websocket unchanged and in order.

The engine's pump can do the reading (``read_through``): once the signaling handshake is
done it reads the socket in its sweeps, with the media sockets (over TLS it decrypts what
it read right there: the inner stream is then a ``TLSSocketStream``, whose TLS state it
shares), answers keep-alives with a direct non-blocking send and wakes trio-websocket's
reader only for other bytes (events, state, close). A keep-alive then costs no Trio
wake-up at all; every other message waits up to one sweep interval longer. Until then the
stream reads through the inner stream in the reader's task.

With ``take_messages`` every other small message is taken too and handed to ``answer``
where it is read (from the pump's sweep: no reader wake-up, no parser, no channel hop),
but only while trio-websocket has nothing of its own to deliver: messages the tap must pass
on (large or fragmented ones, or any while one is pending) go to trio-websocket, and the
next ones follow them there until the owner has processed every message trio-websocket
delivered (``messages_processed``, counted by the owner, against the tap's
``messages_passed``). So the owner sees every message once and in the order sent.

Sends from trio-websocket and keep-alive answers share the transport, so they are
serialized here (a Trio stream allows one ``send_all`` at a time); an answer the socket
did not take whole (or that came during a send) is written, ahead of anything else, by the
next send or by the reader's task. Once trio-websocket has written a close frame nothing
more may follow it (RFC 6455 5.5.1): answering stops there and later requests go on to
trio-websocket, which discards them.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from typing import Final, Protocol

import trio

from rtms_fast.protocol.keepalive_tap import KeepAliveTap, is_keepalive_request
from rtms_fast.tls_stream import TLSSocketStream
from rtms_fast.wire import Opcode, encode_frame

__all__ = ["SignalingStream", "StreamReadingPump"]

#: Most bytes one pump read takes from the socket.
_PUMP_READ_BYTES: Final = 64 * 1024
#: While this many bytes wait for trio-websocket's reader, the pump reads no more (the
#: socket's own buffer and TCP flow control hold the rest, as when no one reads).
_PUMP_BUFFER_LIMIT: Final = 1024 * 1024
#: Largest message taken out with ``take_messages`` (larger ones go to trio-websocket).
_TAKEN_MESSAGE_BYTES: Final = 64 * 1024


class StreamReadingPump(Protocol):
    """What ``read_through`` needs of the pump (``MediaPump.watch_stream``)."""

    def watch_stream(self, fd: int, on_readable: Callable[[], None]) -> bool: ...

    def unwatch_stream(self, fd: int) -> None: ...


class SignalingStream(trio.abc.Stream):
    """``answer(payload)`` gets each keep-alive request's JSON (with ``take_messages``, every
    message taken) and returns the JSON of the response to send, or None to send nothing.
    Taking starts when ``tap.enabled`` is set. A pump may read the socket
    (``read_through``) when ``inner`` is a ``TLSSocketStream`` or when ``raw_socket`` is the
    plain TCP socket under ``inner``."""

    def __init__(self, inner: trio.abc.Stream, answer: Callable[[bytes], bytes | None],
                 raw_socket: socket.socket | None = None, *,
                 take_messages: bool = False) -> None:
        self.inner = inner
        self.take_messages = take_messages
        #: Messages the owner got from trio-websocket and has processed (the owner counts).
        self.messages_processed = 0
        self.tap = KeepAliveTap(
            take=self._takes,
            max_payload_bytes=_TAKEN_MESSAGE_BYTES if take_messages else 512)
        #: Keep-alive answers written from here.
        self.answered = 0
        #: Reads the pump made for this stream.
        self.pump_reads = 0
        self._answer = answer
        self._tls = inner if isinstance(inner, TLSSocketStream) else None
        self._raw = self._tls.socket if self._tls is not None else raw_socket
        self._sending = False
        self._send_turns = trio.lowlevel.ParkingLot()
        self._at_eof = False
        self._request_sent = False
        self._close_sent = False
        # reading through the pump
        self._pump: StreamReadingPump | None = None
        self._pump_fd = -1
        self._inner_read: trio.CancelScope | None = None  # a read of the inner stream
        self._received = bytearray()  # for trio-websocket, read by the pump
        self._received_eof = False
        self._received_error: Exception | None = None
        self._backlog = bytearray()  # answer bytes still to write, ahead of anything else
        self._reader_wakeup = trio.lowlevel.ParkingLot()

    def _takes(self, payload: bytes) -> bool:
        # any message while trio-websocket has none of its own left (their order holds);
        # keep-alive requests always (answering one reorders nothing the owner sees)
        if self.take_messages and self.tap.messages_passed == self.messages_processed:
            return True
        return is_keepalive_request(payload)

    @property
    def pumped(self) -> bool:
        """Whether a pump reads the socket now."""
        return self._pump is not None

    def read_through(self, pump: StreamReadingPump) -> bool:
        """Let ``pump`` read the socket from now on; True if it does. A read of the inner
        stream in progress is cancelled (it has consumed nothing)."""
        if self._raw is None or self._pump is not None or self._at_eof:
            return False
        fd = self._raw.fileno()
        if fd < 0 or not pump.watch_stream(fd, self._on_readable):
            return False
        self._pump, self._pump_fd = pump, fd
        if self._inner_read is not None:
            self._inner_read.cancel()
        if self._tls is not None:  # records the inner stream had read but not decrypted
            self._decrypt_and_take()
        return True

    def stop_reading_through(self) -> None:
        """The pump stops reading (before the socket closes; idempotent)."""
        if self._pump is not None:
            self._pump.unwatch_stream(self._pump_fd)
            self._pump_fd = -1
        # _pump stays set: bytes read so far are still handed out, nothing new comes

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._at_eof:
            if self._pump is not None:
                data = await self._receive_pumped(max_bytes)
                if not data:
                    self._at_eof = True
                return data
            received: bytes | bytearray | None = None
            with trio.CancelScope() as scope:
                self._inner_read = scope
                try:
                    received = await self.inner.receive_some(max_bytes)
                finally:
                    self._inner_read = None
            if received is None:
                continue  # cancelled by read_through: the pump reads from now on
            if self._pump is not None:
                # read_through came while this read was completing: these bytes come after
                # any the pump has read, so they go behind them
                if received:
                    self._take(bytes(received))
                else:
                    self._end()
                continue
            if not received:
                self._at_eof = True
                return self.tap.flush()
            passed, requests = self.tap.feed(bytes(received))
            for payload in requests:
                body = None if self._close_sent else self._answer(payload)
                if body is not None:
                    await self._send(_answer_frame(body))
                    self.answered += 1
            if passed:
                return passed
        return b""

    async def _receive_pumped(self, max_bytes: int | None) -> bytes:
        while True:
            if self._backlog and not self._sending:
                await self._send(b"")
                continue
            if self._received:
                count = len(self._received) if max_bytes is None else min(
                    max_bytes, len(self._received))
                data = bytes(self._received[:count])
                del self._received[:count]
                return data
            error = self._received_error
            if isinstance(error, OSError):  # as the inner SocketStream would report it
                raise trio.BrokenResourceError(f"signaling socket failed: {error}") from error
            if error is not None:
                raise error
            if self._received_eof:
                return b""
            await self._reader_wakeup.park()

    # ---- the pump's side (synchronous, in the pump's sweep) ------------------------------
    def _on_readable(self) -> None:
        if len(self._received) >= _PUMP_BUFFER_LIMIT or self._pump_fd < 0:
            return
        assert self._raw is not None
        try:
            data = self._raw.recv(_PUMP_READ_BYTES)
            self.pump_reads += 1
            if self._tls is not None:
                if data:
                    self._tls.incoming.write(data)
                else:
                    self._tls.incoming.write_eof()
                self._decrypt_and_take()
            elif data:
                self._take(data)
            else:
                self._end()
        except (BlockingIOError, InterruptedError):
            return
        except Exception as exc:  # the socket, TLS or answering failed: the reader raises it
            self._received_error = exc
            self.stop_reading_through()
            self._reader_wakeup.unpark_all()

    def _decrypt_and_take(self) -> None:
        """Take every record the TLS state can decrypt now; the end if the stream ended.
        A corrupt record raises ``ssl.SSLError`` (an OSError: the reader's task reports
        the stream broken)."""
        tls = self._tls
        assert tls is not None
        plain = bytearray()
        ended = False
        while True:
            try:
                chunk = tls.ssl_object.read(_PUMP_READ_BYTES)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                ended = True
                break
            if not chunk:
                ended = True
                break
            plain += chunk
        if plain:
            self._take(bytes(plain))
        self._write_out(None)  # TLS output a read produced (a KeyUpdate answer)
        if ended:
            self._end()

    def _end(self) -> None:
        self._received += self.tap.flush()
        self._received_eof = True
        self.stop_reading_through()
        self._reader_wakeup.unpark_all()

    def _take(self, data: bytes) -> None:
        passed, requests = self.tap.feed(data)
        if passed:
            self._received += passed
        for payload in requests:
            body = None if self._close_sent else self._answer(payload)
            if body is not None:
                self._write_out(_answer_frame(body))
                self.answered += 1
        if passed or (self._backlog and not self._sending):
            self._reader_wakeup.unpark_all()

    def _write_out(self, frame: bytes | None) -> None:
        """Write ``frame`` (None: only TLS output already queued) now if nothing else is
        being written; what the socket refuses waits in the backlog (transport bytes).
        Over TLS the frame is encrypted at once; during a send its records stay in the
        outgoing BIO, which that send drains."""
        tls = self._tls
        if tls is not None:
            if frame:
                tls.ssl_object.write(frame)
            if self._sending or not tls.outgoing.pending:
                return
            data = tls.outgoing.read()
        elif frame:
            data = frame
        else:
            return
        sent = 0
        if not self._sending and not self._backlog:
            assert self._raw is not None
            try:
                sent = self._raw.send(data)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                pass  # the reader's send of the backlog reports the failure
        if sent < len(data):
            self._backlog += data[sent:]

    # ---- sending -------------------------------------------------------------------------
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
        tls = self._tls
        try:
            # a partly written answer must be completed before anything else is written
            await self._send_backlog()
            if data:
                await self.inner.send_all(data)
            # answers that came during the send (over TLS: records left in the BIO)
            while self._backlog or (tls is not None and tls.outgoing.pending):
                await self._send_backlog()
                if tls is not None and tls.outgoing.pending:
                    await tls.send_all(b"")
        finally:
            self._sending = False
            self._send_turns.unpark()

    async def _send_backlog(self) -> None:
        while self._backlog:
            pending = bytes(self._backlog)
            self._backlog.clear()
            if self._tls is not None:  # records already: not to be encrypted again
                await self._tls.send_transport(pending)
            else:
                await self.inner.send_all(pending)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        self.stop_reading_through()
        await self.inner.aclose()


def _answer_frame(body: bytes) -> bytes:
    # client frames are masked with a fresh unpredictable key (RFC 6455 5.3)
    return encode_frame(Opcode.TEXT, body, mask_key=os.urandom(4))
