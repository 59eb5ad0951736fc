"""The batched media data plane: client WebSockets on raw sockets, swept by one task.

``MediaSocket`` is a client WebSocket on a non-blocking stdlib socket that this module owns
from the TCP connect on (optionally through an HTTP CONNECT proxy): the upgrade is done by
wsproto, TLS synchronously over memory BIOs: by the native TLS client (``rtms_fast.tls``,
OpenSSL) or by ``ssl.SSLObject`` + ``MemoryBIO``. After the RTMS
media handshake the socket enters its data phase in one of two ways:

* native (``start_data_phase(ingest)``): each sweep, ``MediaPump`` reads every registered
  socket without blocking (decrypting on TLS, reading a TLS object only when bytes are
  pending) and hands ALL their bytes to ONE native ingest call: the kernel splits frames
  and writes audio straight into the participants' rings; control frames are answered
  here (pong, close), other messages go to the owner as bytes. On Linux the sweep is one
  ``rtms_epoll_ready`` call (our own readiness set; skipped while nearly every socket has
  bytes), one ``rtms_sweep_split`` of the descriptors by read path and one
  ``rtms_recv_sweep`` call that reads every socket on the arena path into one arena
  (with the per-socket bookkeeping), which the kernel reads in place; TLS sockets
  are decrypted from that arena into a second one (natively TLS'd sockets in one
  ``rtms_tls_decrypt_batch`` call, ``ssl.SSLObject`` ones one Python step each). A
  socket costs Python work only when it has something other than audio: a record (a
  keep-alive, an event...), a partial frame (kept in the socket, prepended next sweep on
  the per-socket path), an error or its end. Reads switch the socket to delayed ACKs
  (``delay_acks``): see ``RTMS_RECV_DELAY_ACK`` in csrc/rtms_native.h;
* Python (``start_data_phase(None)``): wsproto splits frames and the owner gets every
  message (used without the native kernel, and by ``run_socket_task``, the per-socket
  alternative kept for comparison and ``use_pump = False``).

Owners (sessions) are called synchronously inside the sweep and answer keep-alives right
there, on the socket they came in on, so keep-alives never wait behind consumers. This
module must never interpret RTMS messages itself (that is the owner's and the kernel's
job) or block the Trio thread.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, Protocol, cast
from urllib.parse import urlsplit

import h11
import numpy as np
import trio
import wsproto
from wsproto.connection import Connection as WSFraming
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from rtms_fast.ingest import IngestBatch, IngestConnection, IngestRecord, RecordKind
from rtms_fast.native import ffi, lib
from rtms_fast.tls import NativeTLSContext, NativeTLSObject
from rtms_fast.wire import FrameError, Opcode, encode_frame, parse_frame_header

__all__ = [
    "MediaPump",
    "MediaSocket",
    "MediaSocketError",
    "MediaSocketOwner",
    "PumpStatistics",
    "open_tcp_socket",
    "run_socket_task",
]

_RECV_BYTES: Final = 256 * 1024
_scratch = threading.local()


def _recv_scratch() -> bytearray:
    """This thread's receive buffer, shared by every socket read on it: reads are
    synchronous and copy out before returning, so one buffer serves all sockets (a buffer
    per socket would cost 256 KiB of resident memory per media connection)."""
    buffer: bytearray | None = getattr(_scratch, "buffer", None)
    if buffer is None:
        buffer = _scratch.buffer = bytearray(_RECV_BYTES)
    return buffer
#: Most bytes read from one socket in one sweep, so one busy socket cannot starve the rest.
_MAX_READ_PER_SWEEP: Final = 4 * 1024 * 1024
_CLOSE_ABNORMAL: Final = 1006
_CLOSE_INTERNAL: Final = 1011
_TLS_CLOSED_FIRST: Final = "TLS closed (close_notify) without a WebSocket close frame"
#: Most native calls per sweep for one group of sockets (each call drains what it can).
_MAX_BATCH_ROUNDS: Final = 64
#: The receive arena of the native path: what plain sockets return in one sweep lands here.
_ARENA_BYTES: Final = 4 * 1024 * 1024
#: Most bytes one plain socket may put in the arena per sweep (the rest waits for the next).
_ARENA_MAX_PER_SOCKET: Final = 256 * 1024
#: Most ready descriptors taken from one epoll_wait (more stay ready for the next sweep).
_MAX_READY: Final = 8192
#: Delayed ACKs are set again before a read when the socket's last bytes came this long ago
#: (Linux's delayed-ACK timer, 40 ms at least, may have fired and ended the mode) ...
_ACK_GAP_S: Final = 0.030
#: ... and at least this often anyway (bounds the extra ACKs after a timer we did not see).
_ACK_REARM_S: Final = 0.2
#: A sweep reads every socket on the arena path without asking epoll which are ready when at
#: least this share of them had bytes in the sweep before. epoll's report costs about as
#: much per ready socket as a read that finds nothing, so reading all of them pays from
#: about half of them having bytes.
_POLL_FREE_HIT_RATE: Final = 0.55
#: ``_kind_by_fd`` values: how the native sweep reads a descriptor.
_KIND_PYTHON: Final = int(lib.RTMS_FD_PYTHON)  # per-socket Python read (TLS, leftovers,
#                                                new sockets, no ingest)
_KIND_ARENA: Final = int(lib.RTMS_FD_ARENA)  # plain socket with native ingest: arena read
_KIND_TLS: Final = int(lib.RTMS_FD_TLS)  # TLS socket with native ingest: read, decrypted


class MediaSocketError(Exception):
    """Connecting or upgrading a media socket failed (``detail`` says how)."""


class MediaSocketOwner(Protocol):
    """Who receives a media socket's messages (a session). Both calls are synchronous and
    must not block: they run inside the pump's sweep."""

    def on_media_messages(self, media_socket: MediaSocket, messages: list[bytes]) -> None: ...

    def on_media_closed(self, media_socket: MediaSocket, code: int, reason: str) -> None: ...

    def on_ingest_record(self, media_socket: MediaSocket, record: IngestRecord) -> None:
        """A NEW_PARTICIPANT or ERROR record of the native ingest kernel."""

    def on_audio_ingested(self, media_socket: MediaSocket) -> None:
        """Audio was written to this socket's rings during the sweep (wake readers). On
        the native path only the first time and then after each ``audio_doorbell`` ring."""


async def open_tcp_socket(host: str, port: int, proxy: str | None = None) -> socket.socket:
    """A connected non-blocking stdlib TCP socket to ``host:port`` (owned by the caller),
    directly or through an HTTP CONNECT proxy (``http://proxyhost:port``)."""
    target_host, target_port = host, port
    if proxy is not None:
        parts = urlsplit(proxy)
        if parts.scheme != "http" or not parts.hostname:
            raise MediaSocketError(f"proxy must be http://host:port, got {proxy!r}")
        target_host, target_port = parts.hostname, parts.port or 80
    try:
        infos = await trio.socket.getaddrinfo(target_host, target_port,
                                              type=socket.SOCK_STREAM)
    except OSError as exc:
        raise MediaSocketError(f"cannot resolve {target_host!r}: {exc}") from None
    last_error: OSError | None = None
    for family, type_, proto, _, addr in infos:
        candidate = socket.socket(family, type_, proto)
        candidate.setblocking(False)
        try:
            await trio.socket.from_stdlib_socket(candidate).connect(addr)
            if proxy is not None:
                await _http_connect(candidate, host, port)
        except OSError as exc:
            last_error = exc
            candidate.close()
            continue
        except BaseException:
            candidate.close()
            raise
        return candidate
    raise MediaSocketError(f"cannot connect to {target_host}:{target_port}: {last_error}")


async def _http_connect(sock: socket.socket, host: str, port: int) -> None:
    """Ask an HTTP proxy for a tunnel (RFC 9110 CONNECT), parsed by h11; nothing past the
    proxy's answer is read, so the tunnel's first byte stays in the socket."""
    conn = h11.Connection(h11.CLIENT)
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    data = conn.send(h11.Request(method="CONNECT", target=authority,
                                 headers=[("host", authority)]))
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except (BlockingIOError, InterruptedError):
            await trio.lowlevel.wait_writable(sock)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            await trio.lowlevel.wait_readable(sock)
            # One byte at a time: the answer is short, and the tunnel must not be touched.
            try:
                chunk = sock.recv(1)
            except (BlockingIOError, InterruptedError):
                continue
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.Response):
            if not 200 <= event.status_code < 300:
                raise MediaSocketError(f"proxy refused CONNECT {authority}: "
                                       f"HTTP {event.status_code}")
            return
        if isinstance(event, h11.ConnectionClosed):
            raise MediaSocketError("proxy closed the connection during CONNECT")


def _split_url(url: str) -> tuple[bool, str, int, str]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise MediaSocketError(f"media URL must be ws:// or wss://, got {url!r}")
    if not parts.hostname:
        raise MediaSocketError(f"media URL has no host: {url!r}")
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return tls, parts.hostname, port, target


class MediaSocket:
    """One client WebSocket on a raw non-blocking socket (plain or TLS).

    Lifecycle: ``await MediaSocket.connect(url, ...)`` (TCP, TLS, upgrade), then either
    ``await receive_message()`` (handshake phase, async) or ``read_available()`` (sweep phase,
    sync). ``send_message()`` never blocks: what the kernel does not take is kept and written
    by ``flush()`` (the pump flushes every sweep).
    """

    def __init__(
        self,
        sock: socket.socket,
        url: str,
        ssl_object: ssl.SSLObject | NativeTLSObject | None,
        incoming: Any,
        outgoing: Any,
        max_message_bytes: int,
    ) -> None:
        self.sock = sock
        self.url = url
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        # The upgrade's handshake object, then (``_upgrade``) only its framing connection:
        # the handshake state (an h11 connection) is not kept for the socket's lifetime.
        self._ws: wsproto.WSConnection | WSFraming = wsproto.WSConnection(
            wsproto.ConnectionType.CLIENT)
        self._max_message_bytes = max_message_bytes
        self._partial: list[bytes] = []
        self._partial_bytes = 0
        self._pending_out = bytearray()
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.bytes_received = 0
        self.messages_received = 0
        self.messages_discarded_on_close = 0  # see aclose
        #: Why the stream ended, once a read found its end (TLS says more than TCP).
        self._end_reason = "connection lost without a close frame"
        self.owner: MediaSocketOwner | None = None
        self._close_reported = False
        self._early: list[bytes] = []
        #: Bytes read but not yet parsed (handshake phase, and the native ingest path).
        self._inbuf = bytearray()
        self._fragments: list[bytes] = []
        #: The native ingest state once the data phase runs through the kernel.
        self.ingest: IngestConnection | None = None
        self._last_activity_s = 0.0
        #: The pump that reads this socket and its descriptor there (activity is kept there).
        self._pump: MediaPump | None = None
        self._pump_fd = -1

    @property
    def last_activity_s(self) -> float:
        """Trio time of the last sweep that read bytes from this socket (pump only)."""
        pump = self._pump
        if pump is not None and self._pump_fd >= 0:
            return max(self._last_activity_s, pump._activity_of(self._pump_fd))
        return self._last_activity_s

    @last_activity_s.setter
    def last_activity_s(self, value: float) -> None:
        self._last_activity_s = value

    # ---- connect -------------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout_s: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
        subprotocols: tuple[str, ...] = (),
        proxy: str | None = None,
        native_tls: NativeTLSContext | None = None,
    ) -> MediaSocket:
        """TCP connect (through an HTTP CONNECT ``proxy`` if given), TLS handshake (wss),
        WebSocket upgrade; all within ``timeout_s``. With ``native_tls`` (wss) TLS runs in
        the native module (the pump then decrypts every such socket in one call per
        sweep) and ``ssl_context`` is not used."""
        tls, host, port, target = _split_url(url)
        with trio.move_on_after(timeout_s) as scope:
            return await cls._connect(
                url, tls, host, port, target, ssl_context, max_message_bytes, subprotocols,
                proxy, native_tls,
            )
        assert scope.cancelled_caught
        raise MediaSocketError(f"connecting to {url} timed out after {timeout_s} s")

    @classmethod
    async def _connect(
        cls,
        url: str,
        tls: bool,
        host: str,
        port: int,
        target: str,
        ssl_context: ssl.SSLContext | None,
        max_message_bytes: int,
        subprotocols: tuple[str, ...],
        proxy: str | None,
        native_tls: NativeTLSContext | None = None,
    ) -> MediaSocket:
        sock = await open_tcp_socket(host, port, proxy)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ssl_object: ssl.SSLObject | NativeTLSObject | None = None
            incoming: Any = None
            outgoing: Any = None
            if tls and native_tls is not None:
                ssl_object = native_tls.wrap(host)
                incoming, outgoing = ssl_object.incoming, ssl_object.outgoing
            elif tls:
                context = ssl_context or ssl.create_default_context()
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                ssl_object = context.wrap_bio(incoming, outgoing, server_hostname=host)
            self = cls(sock, url, ssl_object, incoming, outgoing, max_message_bytes)
            if ssl_object is not None:
                await self._tls_handshake()
            await self._upgrade(host, port, target, subprotocols)
            return self
        except BaseException:
            sock.close()
            raise

    async def _tls_handshake(self) -> None:
        assert self._ssl is not None and self._incoming is not None
        while True:
            try:
                self._ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._move_tls_out()
                await self._flush_async()
                data = await self._recv_async()
                if not data:
                    raise MediaSocketError(
                        f"{self.url}: connection closed during TLS handshake"
                    ) from None
                self._incoming.write(data)
            except ssl.SSLError as exc:
                raise MediaSocketError(f"{self.url}: TLS handshake failed: {exc}") from None
        self._move_tls_out()
        await self._flush_async()

    async def _upgrade(
        self, host: str, port: int, target: str, subprotocols: tuple[str, ...]
    ) -> None:
        default_port = 443 if self._ssl is not None else 80
        host_header = host if port == default_port else f"{host}:{port}"
        self._write(self._ws.send(Request(host=host_header, target=target,
                                          subprotocols=list(subprotocols))))
        await self._flush_async()
        while True:
            data = await self._recv_plain_async()
            if not data:
                raise MediaSocketError(f"{self.url}: connection closed during the upgrade")
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, AcceptConnection):
                    framing = self._ws.connection if isinstance(
                        self._ws, wsproto.WSConnection) else None
                    if framing is not None:
                        self._ws = framing
                    return
                if isinstance(event, (RejectConnection, RejectData)):
                    status = getattr(event, "status_code", "?")
                    raise MediaSocketError(f"{self.url}: upgrade refused (HTTP {status})")

    # ---- low-level transport -------------------------------------------------------------
    def _move_tls_out(self) -> None:
        if self._outgoing is not None and self._outgoing.pending:
            self._pending_out += self._outgoing.read()

    def _write(self, data: bytes) -> None:
        """Queue WebSocket bytes (encrypting them first on TLS) and try to send at once."""
        if not data:
            return
        if self._ssl is not None:
            try:
                self._ssl.write(data)
            except ssl.SSLError as exc:  # the TLS stream failed or ended: nothing goes out
                self._mark_closed(_CLOSE_ABNORMAL, f"TLS failed: {exc}")
                return
            self._move_tls_out()
        else:
            self._pending_out += data
        self.flush()

    def flush(self) -> bool:
        """Send queued bytes without blocking; True when nothing is left queued."""
        while self._pending_out:
            try:
                sent = self.sock.send(self._pending_out)
            except (BlockingIOError, InterruptedError):
                if self._pump is not None:  # the pump's next sweep tries again
                    self._pump._attention.add(self)
                return False
            except OSError:
                self._pending_out.clear()
                self._mark_closed(_CLOSE_ABNORMAL, "send failed")
                return True
            del self._pending_out[:sent]
        return True

    async def _flush_async(self) -> None:
        while not self.flush():
            await trio.lowlevel.wait_writable(self.sock)

    async def _recv_async(self) -> bytes:
        while True:
            try:
                return self.sock.recv(_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                await trio.lowlevel.wait_readable(self.sock)

    async def _recv_plain_async(self) -> bytes:
        """Application bytes (decrypted on TLS); b"" at end of stream."""
        if self._ssl is None:
            return await self._recv_async()
        assert self._incoming is not None
        while True:
            try:
                return self._ssl.read(_RECV_BYTES)
            except ssl.SSLWantReadError:
                data = await self._recv_async()
                if not data:
                    return b""
                self._incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def _read_transport(self) -> tuple[bytes, bool]:
        """Everything readable now without blocking: (application bytes, end of stream)."""
        into = bytearray()
        eof = self._read_into(into)
        return bytes(into), eof

    def _read_into(self, into: bytearray) -> bool:
        """Append everything readable now (decrypted on TLS) to ``into``; True at end of
        stream. One copy per byte on plain sockets, no per-read allocation."""
        total = 0
        eof = False
        buffer = _recv_scratch()
        view = memoryview(buffer)
        tls = self._ssl is not None
        while total < _MAX_READ_PER_SWEEP:
            try:
                n = self.sock.recv_into(buffer)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                    eof = True
                    break
                raise
            if n == 0:
                eof = True
                break
            if tls:
                assert self._incoming is not None
                self._incoming.write(view[:n])
            else:
                into += view[:n]
            total += n
            if n < len(buffer):
                break
        if not tls:
            return eof
        assert self._ssl is not None and self._incoming is not None
        # A read that finds no complete record costs as much as a real one (it raises),
        # so only read while encrypted bytes are waiting or decrypted bytes are pending.
        while self._incoming.pending or self._ssl.pending():
            try:
                # with a buffer, SSLObject.read returns the byte count (typeshed says bytes)
                n = cast(int, self._ssl.read(len(buffer), buffer))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof, self._end_reason = True, _TLS_CLOSED_FIRST
                break
            except ssl.SSLError as exc:  # corrupt, or cut without a close_notify
                eof, self._end_reason = True, f"TLS failed: {exc}"
                break
            if n == 0:  # ssl.SSLObject at the peer's close_notify (bytes after it stay)
                eof, self._end_reason = True, _TLS_CLOSED_FIRST
                break
            into += view[:n]
        self._move_tls_out()  # TLS may have something to say (key updates, alerts)
        return eof

    # ---- WebSocket messages --------------------------------------------------------------
    def _feed(self, data: bytes, messages: list[bytes]) -> None:
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    chunk = event.data.encode() if isinstance(event, TextMessage) else event.data
                    self._partial_bytes += len(chunk)
                    if self._partial_bytes > self._max_message_bytes:
                        self._fail(1009, "message too big")
                        return
                    if event.message_finished and not self._partial:
                        messages.append(bytes(chunk))
                    else:
                        self._partial.append(bytes(chunk))
                        if event.message_finished:
                            messages.append(b"".join(self._partial))
                            self._partial.clear()
                    if event.message_finished:
                        self._partial_bytes = 0
                elif isinstance(event, Ping):
                    self._write(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self._ws.state is not ConnectionState.CLOSED:
                        self._write(self._ws.send(event.response()))
                    self._mark_closed(event.code, event.reason or "")
        except wsproto.utilities.RemoteProtocolError as exc:
            self._fail(1002, f"protocol error: {exc}")

    def _fail(self, code: int, reason: str) -> None:
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
        self._mark_closed(code, reason)

    def _mark_closed(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_code = code
            self.close_reason = reason

    def read_available(self) -> list[bytes]:
        """Complete messages readable now (sync, never blocks). Sets ``closed`` at the end."""
        messages: list[bytes] = []
        if self.closed:
            return messages
        try:
            data, eof = self._read_transport()
        except OSError as exc:
            self._mark_closed(_CLOSE_ABNORMAL, f"read failed: {exc}")
            return messages
        if data:
            self.bytes_received += len(data)
            self._feed(data, messages)
        if eof and not self.closed:
            self._mark_closed(_CLOSE_ABNORMAL, self._end_reason)
        self.messages_received += len(messages)
        return messages

    async def receive_message(self) -> bytes:
        """Wait for the next complete message (handshake phase only).

        Frames are split here, not by wsproto, so that nothing past the message returned is
        consumed: what follows stays in ``_inbuf`` for ``start_data_phase``.
        """
        while True:
            message = self._next_buffered_message()
            if message is not None:
                return message
            if self.closed:
                raise MediaSocketError(
                    f"{self.url}: closed ({self.close_code} {self.close_reason})"
                )
            data = await self._recv_plain_async()
            if not data:
                self._mark_closed(_CLOSE_ABNORMAL, self._end_reason)
                continue
            self.bytes_received += len(data)
            self._inbuf += data

    def _next_buffered_message(self) -> bytes | None:
        while True:
            try:
                header = parse_frame_header(self._inbuf,
                                            max_payload_bytes=self._max_message_bytes)
            except FrameError as exc:
                self._fail(1002, f"protocol error: {exc}")
                return None
            if header is None or len(self._inbuf) < header.frame_len:
                return None
            payload = bytes(self._inbuf[header.header_len : header.frame_len])
            del self._inbuf[: header.frame_len]
            if header.opcode >= 0x8:
                self.handle_control(int(header.opcode), payload)
                if self.closed:
                    return None
                continue
            self._fragments.append(payload)
            if header.fin:
                message = b"".join(self._fragments)
                self._fragments.clear()
                self.messages_received += 1
                return message

    def handle_control(self, opcode: int, payload: bytes) -> None:
        """A control frame from the server: answer pings, complete the close handshake."""
        if opcode == Opcode.PING:
            if self._ws.state is ConnectionState.OPEN:
                self._write(encode_frame(Opcode.PONG, payload[:125], mask_key=os.urandom(4)))
        elif opcode == Opcode.CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            if self._ws.state is ConnectionState.OPEN:
                self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            self._mark_closed(code, reason)

    def start_data_phase(self, ingest: IngestConnection | None) -> None:
        """Leave the handshake phase: from now on frames go through the native ingest kernel
        (``ingest``) or, without one, through wsproto (``read_available``)."""
        self.ingest = ingest
        if ingest is None and self._inbuf:
            leftover = bytes(self._inbuf)
            self._inbuf.clear()
            messages: list[bytes] = []
            self._feed(leftover, messages)
            self._early.extend(messages)

    def read_raw(self, mark_end: bool = True) -> bool:
        """Ingest path: append everything readable now to ``_inbuf`` (sync, never blocks).
        Returns True at the end of the stream, which marks the socket closed unless
        ``mark_end`` is False: the pump marks it after ingesting what came before the end,
        so a close frame in the same read still gives its code."""
        if self.closed:
            return False
        before = len(self._inbuf)
        try:
            eof = self._read_into(self._inbuf)
        except OSError as exc:
            self._mark_closed(_CLOSE_ABNORMAL, f"read failed: {exc}")
            return True
        self.bytes_received += len(self._inbuf) - before
        if eof and mark_end and not self.closed:
            self._mark_closed(_CLOSE_ABNORMAL, self._end_reason)
        return eof

    def take_early_messages(self) -> list[bytes]:
        """Messages that arrived together with the handshake reply, in order."""
        early, self._early = self._early, []
        return early

    def send_message(self, data: bytes, binary: bool = False) -> None:
        """Frame (masked, as a client must) and send without blocking."""
        if self.closed or self._ws.state is not ConnectionState.OPEN:
            return
        # Framed natively: data frames do not change wsproto's state, and its framing
        # (masking byte by byte in Python) cost more than the rest of a keep-alive answer.
        self._write(encode_frame(Opcode.BINARY if binary else Opcode.TEXT, data,
                                 mask_key=os.urandom(4)))

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame (if still open); the peer's answer ends the connection."""
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))

    async def aclose(self, code: int = 1000, timeout_s: float = 2.0) -> None:
        """Close handshake (bounded by ``timeout_s``), then close the socket, on its own:
        messages that arrive before the server's close frame are discarded and counted in
        ``messages_discarded_on_close`` (a session closes through its reader instead)."""
        try:
            if not self.closed:
                self.start_close(code)
                with trio.move_on_after(timeout_s):
                    await self._flush_async()
                    while not self.closed:
                        await trio.lowlevel.wait_readable(self.sock)
                        if self.ingest is None:
                            self.messages_discarded_on_close += len(self.read_available())
                        else:
                            self.read_raw()
                            while not self.closed and self._next_buffered_message():
                                self.messages_discarded_on_close += 1
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the socket at once (no close frame)."""
        if self.sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()
        self._mark_closed(_CLOSE_ABNORMAL, "aborted")

    def report_close_once(self) -> bool:
        """True the first time it is called after ``closed`` became True."""
        if self.closed and not self._close_reported:
            self._close_reported = True
            return True
        return False


def _mark_lost(media_socket: MediaSocket, ended: set[MediaSocket]) -> None:
    """Close a socket whose stream ended in this sweep's read, for the reason that read
    found (unless a close frame read before the end already closed it)."""
    if media_socket in ended:
        media_socket._mark_closed(_CLOSE_ABNORMAL, media_socket._end_reason)


def _deliver(media_socket: MediaSocket, owner: MediaSocketOwner, messages: list[bytes]) -> None:
    if media_socket._early:
        messages = media_socket.take_early_messages() + messages
    if messages:
        owner.on_media_messages(media_socket, messages)
    if media_socket._pending_out:
        media_socket.flush()
    if media_socket.closed and media_socket.report_close_once():
        owner.on_media_closed(
            media_socket, media_socket.close_code or _CLOSE_ABNORMAL, media_socket.close_reason
        )


def point_fd_tables(tables: Any, kind: np.ndarray[Any, np.dtype[np.uint8]],
                    conn: np.ndarray[Any, np.dtype[np.uint64]],
                    activity_s: np.ndarray[Any, np.dtype[np.float64]],
                    ack_armed_s: np.ndarray[Any, np.dtype[np.float64]],
                    wake: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
    """Point a native ``rtms_fd_tables`` (the sweep functions' view, indexed by descriptor)
    at these arrays, all of one length. The arrays must outlive the view."""
    tables.kind = ffi.cast("uint8_t *", kind.ctypes.data)
    tables.conn = ffi.cast("uint64_t *", conn.ctypes.data)
    tables.activity_s = ffi.cast("double *", activity_s.ctypes.data)
    tables.ack_armed_s = ffi.cast("double *", ack_armed_s.ctypes.data)
    tables.wake = ffi.cast("uint8_t *", wake.ctypes.data)
    tables.size = len(kind)


class PumpStatistics:
    __slots__ = ("ack_rearms", "bytes", "empty_reads", "idle_skipped", "late_sweeps",
                 "max_sweep_lag_s", "messages", "native_tls_reads", "native_tls_sockets",
                 "own_record_sockets", "poll_free_sweeps", "recv_cpu_s", "socket_failures",
                 "sockets", "stream_failures", "stream_reads", "streams", "sweep_seconds",
                 "sweeps")

    def __init__(self) -> None:
        self.idle_skipped = 0  # socket visits saved by the readiness set
        self.sweeps = 0
        self.bytes = 0
        self.messages = 0
        self.sockets = 0
        self.sweep_seconds = 0.0
        self.native_tls_reads = 0  # socket reads decrypted by rtms_tls_decrypt_batch
        self.native_tls_sockets = 0  # sockets registered with a NativeTLSObject
        self.own_record_sockets = 0  # of those, on the own TLS 1.3 record layer
        self.socket_failures = 0  # sockets closed because handling them raised (_contain)
        self.ack_rearms = 0  # reads preceded by setting delayed ACKs again (see _ACK_GAP_S)
        self.poll_free_sweeps = 0  # sweeps that read every arena socket without epoll
        self.empty_reads = 0  # reads of those sweeps that found nothing
        # CPU of this thread inside the batched receives (rtms_recv_sweep): the kernel's
        # receive path (and the ACKs it sends) for every socket on the arena path
        self.recv_cpu_s = 0.0
        self.streams = 0  # other sockets read for their owners (``watch_stream``)
        self.stream_reads = 0  # their readable reports handled
        self.stream_failures = 0  # of those, calls that raised (the stream was dropped)
        # How far behind its schedule a sweep started: the latency the engine adds beyond
        # the sweep interval. Late: more than one interval behind (ticks were skipped).
        self.max_sweep_lag_s = 0.0
        self.late_sweeps = 0


class MediaPump:
    """One task that sweeps every registered media socket each ``sweep_interval_ms``.

    ``register(sock, owner)`` hands a connected media socket over (after its handshake);
    from then on the pump reads it and calls ``owner.on_media_messages`` /
    ``owner.on_media_closed`` synchronously. ``unregister`` takes it back.

    ``delay_acks`` (Linux, native path): read with TCP delayed ACKs, so reading one small
    segment does not send an ACK of its own (that ACK cost ~4 us per message here). The
    server then gets ACKs every second segment or after Linux's delayed-ACK timeout
    (~40 ms); a server that sends with Nagle's algorithm on may hold a message that long.
    The mode is set again (a system call) only before a socket's first read, after a gap in
    its traffic (when the timer may have ended it) and every ``_ACK_REARM_S``.
    """

    def __init__(self, sweep_interval_ms: int,
                 clock: Callable[[], float] = time.perf_counter,
                 use_epoll: bool = True, delay_acks: bool = True) -> None:
        if sweep_interval_ms <= 0:
            raise ValueError(f"sweep_interval_ms must be > 0, got {sweep_interval_ms}")
        self.sweep_interval_s = sweep_interval_ms / 1000.0
        self._sockets: dict[MediaSocket, MediaSocketOwner] = {}
        self._clock = clock
        self._batch = IngestBatch(max_connections=1024, max_records=8192)
        # Our own readiness set (level-triggered), so a sweep only touches sockets with
        # bytes waiting: idle sockets (transcript, chat) cost nothing per sweep.
        self._epoll: select.epoll | None = select.epoll() if use_epoll and hasattr(
            select, "epoll") else None
        # Sockets without native ingest only (always on the Python path): the readiness set
        # of sweeps that read the arena sockets without asking (_POLL_FREE_HIT_RATE).
        self._epoll_slow: select.epoll | None = (
            select.epoll() if self._epoll is not None else None)
        # Sockets read for another owner (the signaling sockets: ``watch_stream``).
        self._epoll_streams: select.epoll | None = (
            select.epoll() if self._epoll is not None else None)
        self._streams: dict[int, Callable[[], None]] = {}
        self._poll_free = False  # whether the next native sweep skips the full epoll set
        self._poll_free_enabled = True
        #: "auto": poll-free while the hit rate allows (``_POLL_FREE_HIT_RATE``); "always"
        #: or "never" fix the way (measurements, or a platform where one is better).
        self.poll_free_mode: Literal["auto", "always", "never"] = "auto"
        self._registered: np.ndarray[Any, np.dtype[np.int32]] | None = None  # fds, cached
        self._sweep_hits = 0  # arena reads of this sweep that got bytes
        self._by_fd: dict[int, MediaSocket] = {}
        self._attention: set[MediaSocket] = set()
        self.stats = PumpStatistics()
        self._wake = trio.Event()
        # The native sweep (Linux): one epoll_wait and one batched recv for every ready plain
        # socket, into one arena that the ingest kernel reads in place; Python only touches a
        # socket that has something other than audio (records, leftovers, errors, TLS).
        # (its arrays hold pointers and sizes as 64-bit integers: 64-bit platforms only)
        self._native = (self._epoll is not None and sys.platform.startswith("linux")
                        and ffi.sizeof("size_t") == 8 and ffi.sizeof("void *") == 8)
        # Delayed ACKs on the arena path: a read of one small segment would otherwise send an
        # ACK of its own, which costs more than the read (~4 us of 5.5 on loopback). The
        # sender gets its ACKs from Linux's delayed-ACK timer (or every second segment).
        self._recv_flags = lib.RTMS_RECV_DELAY_ACK if delay_acks else 0
        slots = self._batch.max_connections
        self._ready_fds = np.zeros(_MAX_READY, np.int32)
        self._event_scratch = ffi.new("uint8_t[]", _MAX_READY * lib.rtms_epoll_event_bytes())
        self._recv_fds = np.zeros(slots, np.int32)
        # what a sweep's receive makes (rtms_recv_sweep): per input its socket, ingest
        # connection, bytes and length; per failed read its socket and code
        self._in_fds = np.zeros(slots, np.int32)
        self._fail_fds = np.zeros(slots, np.int32)
        self._fail_codes = np.zeros(slots, np.int64)
        self._recv_result = ffi.new("rtms_recv_sweep_result *")
        # after ingest (rtms_sweep_settle): inputs with bytes left, sockets to wake
        self._rest = np.zeros(slots, np.int32)
        self._rest_count = ffi.new("size_t *")
        self._asked = np.zeros(slots, np.int32)
        # the split of descriptors by read path (rtms_sweep_split), grown with them
        self._split_arena = np.zeros(_MAX_READY, np.int32)
        self._split_python = np.zeros(_MAX_READY, np.int32)
        self._p_split_arena = ffi.cast("int32_t *", self._split_arena.ctypes.data)
        self._p_split_python = ffi.cast("int32_t *", self._split_python.ctypes.data)
        self._p_registered = ffi.NULL  # points at _registered (rebuilt when sockets change)
        self._split_count = ffi.new("size_t *")
        self._conns = np.zeros(slots, np.uint64)  # rtms_ingest_conn * values
        self._bufs = np.zeros(slots, np.uint64)  # const uint8_t * values
        self._in_lens = np.zeros(slots, np.uint64)
        self._consumed = np.zeros(slots, np.uint64)
        self._arena = np.zeros(_ARENA_BYTES, np.uint8)
        self._arena_view = self._arena.data
        self._arena_address = int(self._arena.ctypes.data)
        # TLS sockets decrypt what the batched recv got into this one, for the same kernel call
        self._plain = np.zeros(_ARENA_BYTES, np.uint8)
        self._plain_view = self._plain.data
        self._plain_address = int(self._plain.ctypes.data)
        self._p_ready = ffi.cast("int32_t *", self._ready_fds.ctypes.data)
        self._ready_python = np.zeros(_MAX_READY, np.int32)
        self._p_ready_python = ffi.cast("int32_t *", self._ready_python.ctypes.data)
        self._p_recv_fds = ffi.cast("int32_t *", self._recv_fds.ctypes.data)
        self._p_in_fds = ffi.cast("int32_t *", self._in_fds.ctypes.data)
        self._p_fail_fds = ffi.cast("int32_t *", self._fail_fds.ctypes.data)
        self._p_fail_codes = ffi.cast("int64_t *", self._fail_codes.ctypes.data)
        self._p_rest = ffi.cast("int32_t *", self._rest.ctypes.data)
        self._p_asked = ffi.cast("int32_t *", self._asked.ctypes.data)
        self._p_conns = ffi.cast("rtms_ingest_conn **", self._conns.ctypes.data)
        self._p_bufs = ffi.cast("const uint8_t **", self._bufs.ctypes.data)
        self._p_in_lens = ffi.cast("size_t *", self._in_lens.ctypes.data)
        self._p_consumed = ffi.cast("size_t *", self._consumed.ctypes.data)
        self._p_arena = ffi.cast("uint8_t *", self._arena_address)
        # Per descriptor: how to read it, its ingest connection, the Trio time it last gave
        # bytes, and the owner's audio callback (grown as descriptors grow).
        self._kind_by_fd = np.zeros(64, np.uint8)
        self._conn_by_fd = np.zeros(64, np.uint64)
        self._activity_by_fd = np.zeros(64, np.float64)
        self._ack_armed_by_fd = np.full(64, -math.inf)  # Trio time delayed ACKs were set
        # 1 where the owner asked (through ``audio_doorbell``) to hear about the next audio:
        # owners without waiting readers cost no Python call per message.
        self._wake_by_fd = np.zeros(64, np.uint8)
        # ``rtms_tls_conn *`` of sockets whose TLS runs natively (0: plain or ssl.SSLObject)
        self._tls_by_fd = np.zeros(64, np.uint64)
        self._tls_conns = np.zeros(slots, np.uint64)
        self._tls_out_offsets = np.zeros(slots, np.uint64)
        self._tls_out_lens = np.zeros(slots, np.uint64)
        self._tls_status = np.zeros(slots, np.int32)
        self._p_tls_conns = ffi.cast("rtms_tls_conn **", self._tls_conns.ctypes.data)
        self._p_tls_out_offsets = ffi.cast("size_t *", self._tls_out_offsets.ctypes.data)
        self._p_tls_out_lens = ffi.cast("size_t *", self._tls_out_lens.ctypes.data)
        self._p_tls_status = ffi.cast("int32_t *", self._tls_status.ctypes.data)
        self._p_plain = ffi.cast("uint8_t *", self._plain_address)
        self._inputs = ffi.new("rtms_sweep_inputs *")
        self._inputs.fds = self._p_in_fds
        self._inputs.conns = ffi.cast("uint64_t *", self._conns.ctypes.data)
        self._inputs.bufs = ffi.cast("uint64_t *", self._bufs.ctypes.data)
        self._inputs.lens = ffi.cast("uint64_t *", self._in_lens.ctypes.data)
        self._fd_tables = ffi.new("rtms_fd_tables *")
        self._point_fd_tables()
        self._audio_targets: dict[
            int, tuple[Callable[[MediaSocket], None], MediaSocket]] = {}

    def register(self, media_socket: MediaSocket, owner: MediaSocketOwner) -> None:
        media_socket.owner = owner
        self._sockets[media_socket] = owner
        self._attention.add(media_socket)
        if self._epoll is not None:
            fd = media_socket.sock.fileno()
            try:
                self._epoll.register(fd, select.EPOLLIN)
            except OSError:
                self._epoll = None  # cannot poll this kind of socket: visit every socket
                self._native = False
            else:
                self._by_fd[fd] = media_socket
                self._track_fd(media_socket, owner, fd)
                self._registered = None
        self.stats.sockets = len(self._sockets)
        self._wake.set()

    def unregister(self, media_socket: MediaSocket) -> None:
        if self._sockets.pop(media_socket, None) is None:
            return
        # the fd it was registered under (its socket may be closed by now): O(1), not a
        # scan of every fd, which made ending 1,000 sessions at once quadratic
        fd = media_socket._pump_fd if media_socket._pump is self else -1
        if self._epoll is not None and self._by_fd.get(fd) is media_socket:
            del self._by_fd[fd]
            self._untrack_fd(fd)
            self._registered = None
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        if media_socket._pump is self:
            media_socket._last_activity_s = media_socket.last_activity_s
            media_socket._pump = None
            media_socket._pump_fd = -1
        self.stats.sockets = len(self._sockets)

    def watch_stream(self, fd: int, on_readable: Callable[[], None]) -> bool:
        """Call ``on_readable()`` in every sweep in which socket ``fd`` has bytes to read
        (or an error or end to report), until ``unwatch_stream(fd)``: a byte stream that
        is not a media socket but whose reads should cost no Trio wake-up (the signaling
        socket's keep-alives). The callback reads without blocking and must not raise; if
        it does, the pump stops watching ``fd`` (and counts it). False where the pump
        cannot watch (no epoll): the caller keeps reading by itself."""
        epoll = self._epoll_streams
        if epoll is None or fd in self._streams:
            return False
        try:
            epoll.register(fd, select.EPOLLIN)
        except OSError:
            return False
        self._streams[fd] = on_readable
        self.stats.streams = len(self._streams)
        self._wake.set()
        return True

    def unwatch_stream(self, fd: int) -> None:
        """Stop calling back for ``fd`` (before it is closed; unknown fds are ignored)."""
        if self._streams.pop(fd, None) is None:
            return
        assert self._epoll_streams is not None
        with contextlib.suppress(OSError, ValueError):
            self._epoll_streams.unregister(fd)
        self.stats.streams = len(self._streams)

    def _sweep_streams(self) -> None:
        assert self._epoll_streams is not None
        streams = self._streams
        for fd, _ in self._epoll_streams.poll(0):
            on_readable = streams.get(fd)
            if on_readable is None:
                continue
            self.stats.stream_reads += 1
            try:
                on_readable()
            except Exception:
                self.stats.stream_failures += 1
                self.unwatch_stream(fd)

    def _point_fd_tables(self) -> None:
        """Point the native view of the per-descriptor tables at the arrays (after they grew)."""
        point_fd_tables(self._fd_tables, self._kind_by_fd, self._conn_by_fd,
                        self._activity_by_fd, self._ack_armed_by_fd, self._wake_by_fd)

    def _track_fd(self, media_socket: MediaSocket, owner: MediaSocketOwner, fd: int) -> None:
        if fd >= len(self._kind_by_fd):
            size = max(fd + 1, 2 * len(self._kind_by_fd))
            for name, fill in (("_kind_by_fd", 0), ("_conn_by_fd", 0),
                               ("_activity_by_fd", 0), ("_wake_by_fd", 0), ("_tls_by_fd", 0),
                               ("_ack_armed_by_fd", -math.inf)):
                old = getattr(self, name)
                grown = np.full(size, fill, old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
            self._point_fd_tables()
        # new sockets take the Python path once (messages that came with the handshake)
        self._kind_by_fd[fd] = _KIND_PYTHON
        ingest = media_socket.ingest
        self._conn_by_fd[fd] = (
            0 if ingest is None else int(ffi.cast("uintptr_t", ingest.native_handle))
        )
        if ingest is None and self._epoll_slow is not None:
            try:
                self._epoll_slow.register(fd, select.EPOLLIN)
            except OSError:
                self._poll_free_enabled = False  # cannot watch it alone: always ask epoll
        self._activity_by_fd[fd] = media_socket._last_activity_s
        self._ack_armed_by_fd[fd] = -math.inf  # a new socket starts in Linux's default mode
        self._wake_by_fd[fd] = 1  # the first audio is always announced
        tls = media_socket._ssl
        if isinstance(tls, NativeTLSObject):
            self._tls_by_fd[fd] = int(ffi.cast("uintptr_t", tls.native_handle))
            self.stats.native_tls_sockets += 1
            self.stats.own_record_sockets += tls.own_records
        else:
            self._tls_by_fd[fd] = 0
        media_socket._pump = self
        media_socket._pump_fd = fd
        self._audio_targets[fd] = (owner.on_audio_ingested, media_socket)

    def _untrack_fd(self, fd: int) -> None:
        if self._epoll_slow is not None and fd < len(self._conn_by_fd) and (
                self._conn_by_fd[fd] == 0):
            with contextlib.suppress(OSError, ValueError):
                self._epoll_slow.unregister(fd)
        if fd < len(self._kind_by_fd):
            self._kind_by_fd[fd] = _KIND_PYTHON
            self._conn_by_fd[fd] = 0
            self._tls_by_fd[fd] = 0
        self._audio_targets.pop(fd, None)

    def audio_doorbell(self, media_socket: MediaSocket) -> Callable[[], None]:
        """A function that asks for one ``on_audio_ingested`` call after the next sweep that
        writes audio for ``media_socket`` (native path; the Python path calls it after every
        such sweep). Cheap and thread-safe: for ``RingNotifier.add_doorbell``."""
        def ring() -> None:
            fd = media_socket._pump_fd
            if media_socket._pump is self and 0 <= fd < len(self._wake_by_fd):
                self._wake_by_fd[fd] = 1
        return ring

    def _activity_of(self, fd: int) -> float:
        return float(self._activity_by_fd[fd]) if fd < len(self._activity_by_fd) else 0.0

    def _settle_kind(self, media_socket: MediaSocket) -> None:
        """After a Python-path visit: may the socket take the arena path next sweep?"""
        fd = media_socket._pump_fd
        if fd < 0 or media_socket._pump is not self or self._by_fd.get(fd) is not media_socket:
            return
        arena = (
            media_socket.ingest is not None
            and not media_socket._inbuf
            and not media_socket._early
            and not media_socket._fragments
            and not media_socket.closed
            and self._conn_by_fd[fd] != 0
        )
        kind = _KIND_PYTHON
        if arena:
            tls, incoming = media_socket._ssl, media_socket._incoming
            if tls is None:
                kind = _KIND_ARENA
            elif incoming is not None and not incoming.pending and not tls.pending():
                kind = _KIND_TLS
        self._kind_by_fd[fd] = kind

    def _due(self) -> list[tuple[MediaSocket, MediaSocketOwner]]:
        """Sockets to visit this sweep: those with bytes waiting (one epoll_wait for all),
        new ones (messages that came with the handshake), those with output still queued,
        and any the poll set does not hold. Without epoll, every socket."""
        sockets = self._sockets
        if self._epoll is None:
            return list(sockets.items())
        due: dict[MediaSocket, MediaSocketOwner] = {}
        for media_socket in self._attention:
            owner = sockets.get(media_socket)
            if owner is not None:
                due[media_socket] = owner
        self._attention.clear()
        by_fd = self._by_fd
        for fd, _ in self._epoll.poll(0):
            ready = by_fd.get(fd)
            if ready is not None:
                owner = sockets.get(ready)
                if owner is not None:
                    due[ready] = owner
        self.stats.idle_skipped += len(sockets) - len(due)
        return list(due.items())

    def sweep(self) -> int:
        """Read every registered socket once; return the number of messages delivered.

        Sockets with native ingest state go through ONE ``IngestBatch.run`` call for the
        whole sweep (audio straight into rings); the others through wsproto. On Linux, plain
        sockets with native ingest are read by ONE batched native recv into an arena that
        the kernel reads in place (``_sweep_arena``). Watched streams (``watch_stream``)
        come after the media sockets.
        """
        if self._native and self._epoll is not None:
            delivered = self._sweep_native(self._epoll)
        else:
            delivered = self._sweep_python(self._due())
        if self._streams:
            self._sweep_streams()
        return delivered

    def _sweep_python(self, due: list[tuple[MediaSocket, MediaSocketOwner]],
                      delivered: int = 0, started: float | None = None) -> int:
        if started is None:
            started = self._clock()
        now = trio.current_time()
        batch_sockets: list[MediaSocket] = []
        ended: set[MediaSocket] = set()
        for media_socket, owner in due:
            before = media_socket.bytes_received
            if media_socket.ingest is not None:
                if media_socket.read_raw(mark_end=False):
                    ended.add(media_socket)
                if media_socket.bytes_received != before:
                    self.stats.bytes += media_socket.bytes_received - before
                    media_socket.last_activity_s = now
                if media_socket._inbuf:
                    batch_sockets.append(media_socket)
                else:
                    _mark_lost(media_socket, ended)
                    self._finish(media_socket, owner, [])
                continue
            messages = media_socket.read_available()
            delivered += len(messages)
            self.stats.bytes += media_socket.bytes_received - before
            self._finish(media_socket, owner, messages)
        if batch_sockets:
            delivered += self._run_batches(batch_sockets, ended)
        self.stats.sweeps += 1
        self.stats.messages += delivered
        self.stats.sweep_seconds += self._clock() - started
        return delivered

    def _sweep_native(self, epoll: select.epoll) -> int:
        """One epoll_wait; sockets on the arena path in batched native calls, the rest
        (and every socket that needs attention) through ``_sweep_python``.

        When nearly every arena socket had bytes last time (``_POLL_FREE_HIT_RATE``), the
        sweep reads all of them without asking epoll, which then watches only the sockets
        without native ingest; a socket temporarily on the Python path (a partial frame,
        TLS bytes pending) is visited every such sweep until it is back on the arena."""
        started = self._clock()
        mode = self.poll_free_mode
        poll_free = (self._epoll_slow is not None and self._poll_free_enabled
                     and (mode == "always" or (mode == "auto" and self._poll_free)))
        watched = self._epoll_slow if poll_free else epoll
        assert watched is not None
        ready_count = int(lib.rtms_epoll_ready(watched.fileno(), self._event_scratch,
                                               len(self._event_scratch), self._p_ready,
                                               _MAX_READY))
        if ready_count < 0:  # cannot poll natively: fall back for good
            self._native = False
            return self._sweep_python(self._due(), 0, started)
        sockets = self._sockets
        by_fd = self._by_fd
        kind_by_fd = self._kind_by_fd
        registered = self._registered
        if registered is None:
            registered = self._registered = np.fromiter(by_fd, np.int32, len(by_fd))
            self._p_registered = ffi.cast("int32_t *", registered.ctypes.data)
            if len(registered) > len(self._split_arena):
                self._split_arena = np.zeros(len(registered), np.int32)
                self._split_python = np.zeros(len(registered), np.int32)
                self._p_split_arena = ffi.cast("int32_t *", self._split_arena.ctypes.data)
                self._p_split_python = ffi.cast("int32_t *", self._split_python.ctypes.data)
        # Python-path sockets: new ones, leftovers, TLS, queued output (see flush).
        slow: dict[MediaSocket, MediaSocketOwner] = {}
        for media_socket in self._attention:
            owner = sockets.get(media_socket)
            if owner is not None:
                slow[media_socket] = owner
                if media_socket._pump is self and media_socket._pump_fd >= 0:
                    kind_by_fd[media_socket._pump_fd] = _KIND_PYTHON
        self._attention.clear()
        # the registered sockets on the arena path (and, poll-free, those with ingest on
        # the Python path, which epoll does not watch then), and the ready ones by path
        tables = self._fd_tables
        count = self._split_count
        on_arena_count = int(lib.rtms_sweep_split(
            self._p_registered, len(registered), tables, 1, self._p_split_arena,
            self._p_split_python, count))
        python_fds = self._split_python[: int(count[0])].tolist() if poll_free else []
        if ready_count:
            ready_arena = int(lib.rtms_sweep_split(
                self._p_ready, ready_count, tables, 0, self._p_ready, self._p_ready_python,
                count))
            python_fds += self._ready_python[: int(count[0])].tolist()
        else:
            ready_arena = 0
        for fd in python_fds:
            known = by_fd.get(fd)
            if known is not None:
                owner = sockets.get(known)
                if owner is not None:
                    slow[known] = owner
        delivered = 0
        arena_fds = (self._split_arena[:on_arena_count] if poll_free
                     else self._ready_fds[:ready_arena])
        arena_count = len(arena_fds)
        self._sweep_hits = 0
        slots = len(self._recv_fds)
        for start in range(0, arena_count, slots):
            delivered += self._sweep_arena(arena_fds[start : start + slots])
        if poll_free:
            self.stats.poll_free_sweeps += 1
            self.stats.empty_reads += arena_count - self._sweep_hits
            hits = self._sweep_hits
        else:
            self.stats.idle_skipped += max(0, len(sockets) - len(slow) - arena_count)
            hits = arena_count
        # the next sweep's way: by the share of arena sockets that had bytes in this one
        self._poll_free = (self._poll_free_enabled and on_arena_count > 0
                           and hits >= _POLL_FREE_HIT_RATE * on_arena_count)
        delivered = self._sweep_python(list(slow.items()), delivered, started)
        for media_socket in slow:
            self._settle_kind(media_socket)
        return delivered

    def _sweep_arena(self, fds: np.ndarray[Any, np.dtype[np.int32]]) -> int:
        """Receive from every socket in ``fds`` (all on the arena path) in one native call
        and ingest what came in place; Python runs only for sockets with records,
        partial frames or errors. Returns the messages delivered to owners."""
        count = len(fds)
        self._recv_fds[:count] = fds
        result = self._recv_result
        cpu_before = time.thread_time()
        lib.rtms_recv_sweep(self._p_recv_fds, count, self._fd_tables, trio.current_time(),
                            _ACK_GAP_S, _ACK_REARM_S, self._recv_flags, self._p_arena,
                            _ARENA_BYTES, _ARENA_MAX_PER_SOCKET, self._inputs,
                            self._p_fail_fds, self._p_fail_codes, result)
        self.stats.recv_cpu_s += time.thread_time() - cpu_before
        self.stats.bytes += int(result.bytes)
        self.stats.ack_rearms += int(result.ack_rearms)
        inputs = int(result.inputs)
        self._sweep_hits += inputs
        touched: dict[MediaSocket, list[bytes]] = {}
        by_fd = self._by_fd
        for index in range(int(result.failures)):
            media_socket = by_fd.get(int(self._fail_fds[index]))
            if media_socket is None:
                continue
            code = int(self._fail_codes[index])
            if code == lib.RTMS_RECV_EOF or -code in (errno.ECONNRESET, errno.EPIPE,
                                                       errno.ETIMEDOUT):
                media_socket._mark_closed(_CLOSE_ABNORMAL,
                                          "connection lost without a close frame")
            else:
                media_socket._mark_closed(_CLOSE_ABNORMAL,
                                          f"read failed: {errno.errorcode.get(-code, code)}")
            touched[media_socket] = []
        delivered = 0
        if inputs:
            got_fds = self._in_fds[:inputs]
            ended: set[MediaSocket] = set()
            if result.tls_inputs:
                tls_inputs = np.flatnonzero(self._kind_by_fd[got_fds] == _KIND_TLS)
                self._decrypt_inputs(got_fds, tls_inputs, ended)
            delivered = self._ingest_arena(got_fds, self._p_in_fds, touched)
            for media_socket in ended:  # after its last plaintext (a close frame, maybe)
                _mark_lost(media_socket, ended)
                touched.setdefault(media_socket, [])
        for media_socket, messages in touched.items():
            owner = self._sockets.get(media_socket)
            if owner is None:
                continue
            delivered += len(messages)
            self._finish(media_socket, owner, messages)
        return delivered

    def _decrypt_inputs(self, fds: np.ndarray[Any, np.dtype[np.int32]],
                        tls_inputs: np.ndarray[Any, np.dtype[np.intp]],
                        ended: set[MediaSocket]) -> None:
        """Decrypt each TLS input's ciphertext (in the arena) into ``_plain`` and point the
        input at its plaintext: natively TLS'd sockets in ONE call, ``ssl.SSLObject`` ones
        one by one. Sockets whose TLS stream ended go to ``ended``, with the reason in
        ``_end_reason`` (closed after ingest)."""
        native = self._tls_by_fd[fds[tls_inputs]] != 0
        pos = 0
        if not native.all():
            pos = self._decrypt_python(fds, tls_inputs[~native], ended)
        if native.any():
            self._decrypt_native(fds, tls_inputs[native], ended, pos)

    def _decrypt_native(self, fds: np.ndarray[Any, np.dtype[np.int32]],
                        inputs: np.ndarray[Any, np.dtype[np.intp]],
                        ended: set[MediaSocket], pos: int) -> None:
        """``rtms_tls_decrypt_batch`` over every native TLS input (GIL released); Python
        runs only for sockets with something other than plaintext: TLS output to send,
        a full arena (the rest is read on the per-socket path), or the end."""
        count = len(inputs)
        self.stats.native_tls_reads += count
        input_fds = fds[inputs]
        self._tls_conns[:count] = self._tls_by_fd[input_fds]
        # the ciphertext pointers and lengths are the inputs' own (the arena), in order
        cipher = self._bufs[inputs]
        cipher_lens = self._in_lens[inputs]
        lib.rtms_tls_decrypt_batch(
            self._p_tls_conns, ffi.cast("const uint8_t **", cipher.ctypes.data),
            ffi.cast("size_t *", cipher_lens.ctypes.data), count, self._p_plain + pos,
            _ARENA_BYTES - pos, self._p_tls_out_offsets, self._p_tls_out_lens,
            self._p_tls_status)
        self._bufs[inputs] = self._tls_out_offsets[:count] + np.uint64(
            self._plain_address + pos)
        self._in_lens[inputs] = self._tls_out_lens[:count]
        status = self._tls_status[:count]
        by_fd = self._by_fd
        for i in np.flatnonzero(status != lib.RTMS_TLS_STATUS_OK).tolist():
            media_socket = by_fd[int(input_fds[i])]
            bits = int(status[i])
            if bits & lib.RTMS_TLS_STATUS_OUTPUT_PENDING:  # key updates, alerts
                media_socket._move_tls_out()
                media_socket.flush()
            if bits & lib.RTMS_TLS_STATUS_MORE:
                self._attention.add(media_socket)
            if bits & lib.RTMS_TLS_STATUS_CLOSED:
                media_socket._end_reason = _TLS_CLOSED_FIRST
                ended.add(media_socket)
            elif bits & lib.RTMS_TLS_STATUS_ERROR:
                tls = media_socket._ssl
                detail = tls.error_text() if isinstance(tls, NativeTLSObject) else "?"
                media_socket._end_reason = f"TLS failed: {detail}"
                ended.add(media_socket)

    def _decrypt_python(self, fds: np.ndarray[Any, np.dtype[np.int32]],
                        tls_inputs: np.ndarray[Any, np.dtype[np.intp]],
                        ended: set[MediaSocket]) -> int:
        """The ``ssl.SSLObject`` inputs, one Python step each; returns the plaintext
        bytes written to ``_plain``. A read that finds no complete record costs as much
        as a real one (it raises), so only read while bytes are pending. Plain Python
        ints in the loop: numpy scalar access costs more than the cipher."""
        arena_view, plain_view = self._arena_view, self._plain_view
        by_fd = self._by_fd
        starts = (self._bufs[tls_inputs] - np.uint64(self._arena_address)).tolist()
        lengths = self._in_lens[tls_inputs].tolist()
        firsts: list[int] = []
        pos = 0
        for fd, start, length in zip(fds[tls_inputs].tolist(), starts, lengths, strict=True):
            media_socket = by_fd[fd]
            tls, incoming = media_socket._ssl, media_socket._incoming
            assert tls is not None and incoming is not None
            incoming.write(arena_view[start : start + length])
            firsts.append(pos)
            why = ""
            while incoming.pending or tls.pending():
                if pos == _ARENA_BYTES:  # full: decrypt the rest on the Python path
                    self._attention.add(media_socket)
                    break
                try:
                    # with a buffer, SSLObject.read returns the byte count
                    got = cast(int, tls.read(_ARENA_BYTES - pos, plain_view[pos:]))
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    why = _TLS_CLOSED_FIRST
                    break
                except ssl.SSLError as exc:  # corrupt, or cut without a close_notify
                    why = f"TLS failed: {exc}"
                    break
                if got == 0:  # ssl.SSLObject at the close_notify: what follows stays unread
                    why = _TLS_CLOSED_FIRST
                    break
                pos += got
            outgoing = media_socket._outgoing
            if outgoing is not None and outgoing.pending:  # key updates, alerts
                media_socket._move_tls_out()
                media_socket.flush()
            if why:
                media_socket._end_reason = why
                ended.add(media_socket)
        ends = np.array([*firsts[1:], pos], np.uint64)
        begins = np.array(firsts, np.uint64)
        self._bufs[tls_inputs] = begins + np.uint64(self._plain_address)
        self._in_lens[tls_inputs] = ends - begins
        return pos

    def _ingest_arena(self, fds: np.ndarray[Any, np.dtype[np.int32]], p_fds: Any,
                      touched: dict[MediaSocket, list[bytes]]) -> int:
        """Run the ingest kernel on ``_conns``/``_bufs``/``_in_lens[:len(fds)]`` (input i
        from socket ``fds[i]``; ``p_fds`` points at ``fds``) until every input's complete
        frames are consumed; keep partial frames in the sockets."""
        batch = self._batch
        by_fd = self._by_fd
        inputs = len(fds)
        asked: list[int] = []
        for round_ in range(_MAX_BATCH_ROUNDS):
            count = int(lib.rtms_ingest_batch(self._p_conns, self._p_bufs, self._p_in_lens,
                                              inputs, self._p_consumed, batch._records,
                                              batch.max_records, batch._status))
            if count:
                self._arena_records(count, fds, touched)
            woken = int(lib.rtms_sweep_settle(self._p_consumed, self._p_in_lens, inputs, p_fds,
                                              self._fd_tables, self._p_rest, self._rest_count,
                                              self._p_asked))
            if woken:
                asked += self._asked[:woken].tolist()
            left = int(self._rest_count[0])
            if not left:
                break
            call_again = bool(int(batch._status[0]) & lib.RTMS_BATCH_CALL_AGAIN)
            rest = self._rest[:left].astype(np.intp)
            consumed = self._consumed[:inputs]
            lens = self._in_lens[:inputs]
            if call_again and round_ + 1 < _MAX_BATCH_ROUNDS:
                rest = rest[[not by_fd[int(fds[i])].closed for i in rest.tolist()]]
                if not len(rest):
                    break
                self._bufs[: len(rest)] = self._bufs[rest] + consumed[rest]
                self._in_lens[: len(rest)] = lens[rest] - consumed[rest]
                self._conns[: len(rest)] = self._conns[rest]
                fds = np.ascontiguousarray(fds[rest])
                p_fds = ffi.cast("int32_t *", fds.ctypes.data)
                inputs = len(rest)
                continue
            # partial frames (or the round limit): keep them in the socket for next sweep
            for i in rest.tolist():
                media_socket = by_fd[int(fds[i])]
                if media_socket.closed:
                    continue
                view, start = self._locate(int(self._bufs[i]))
                media_socket._inbuf += view[start + int(consumed[i]) : start + int(lens[i])]
                self._kind_by_fd[media_socket._pump_fd] = _KIND_PYTHON
                if call_again:
                    self._attention.add(media_socket)
            break
        if asked:  # owners that asked (audio_doorbell) hear of the audio, once each
            targets = self._audio_targets
            for fd in asked:
                target = targets.get(fd)
                if target is not None:
                    target[0](target[1])
        return 0

    def _locate(self, address: int) -> tuple[memoryview, int]:
        """The arena (received or decrypted) that holds ``address``, and its offset there."""
        offset = address - self._arena_address
        if 0 <= offset < _ARENA_BYTES:
            return self._arena_view, offset
        return self._plain_view, address - self._plain_address

    def _arena_records(self, count: int, fds: np.ndarray[Any, np.dtype[np.int32]],
                       touched: dict[MediaSocket, list[bytes]]) -> None:
        """Handle the kernel's records of one arena round (rare: not audio); input i of
        the round came from socket ``fds[i]``."""
        batch = self._batch
        views: dict[int, tuple[IngestConnection, memoryview]] = {}
        for k in range(count):
            native_record = batch._records[k]
            index = int(native_record.conn)
            media_socket = self._by_fd[int(fds[index])]
            ingest = media_socket.ingest
            if ingest is None:
                continue
            if index not in views:
                view, start = self._locate(int(self._bufs[index]))
                views[index] = (ingest, view[start : start + int(self._in_lens[index])])
            record = IngestBatch._record(
                native_record, cast(Sequence[tuple[IngestConnection, memoryview]], views))
            self._handle_record(media_socket, record, touched.setdefault(media_socket, []))

    def _handle_record(self, media_socket: MediaSocket, record: IngestRecord,
                       messages: list[bytes]) -> None:
        """One kernel record that is not audio: a message for the owner (collected in
        ``messages``), a control frame (answered here), a new participant or an error."""
        kind = record.kind
        try:
            if kind is RecordKind.MESSAGE:
                messages.append(record.payload)
            elif kind is RecordKind.CONTROL:
                media_socket.handle_control(record.opcode, record.payload)
            else:
                owner = self._sockets.get(media_socket)
                if owner is not None:
                    owner.on_ingest_record(media_socket, record)
                if kind is RecordKind.ERROR and record.fatal:
                    media_socket._fail(1002, f"unusable byte stream: {record.error.name}")
        except Exception as exc:  # contained: see _contain
            self._contain(media_socket, exc)

    def _finish(self, media_socket: MediaSocket, owner: MediaSocketOwner,
                messages: list[bytes]) -> None:
        try:
            _deliver(media_socket, owner, messages)
        except Exception as exc:  # contained: see _contain
            self._contain(media_socket, exc)
            with contextlib.suppress(Exception):
                _deliver(media_socket, owner, [])  # the owner hears of the close
        finally:
            if media_socket.closed:
                self.unregister(media_socket)

    def _contain(self, media_socket: MediaSocket, exc: Exception) -> None:
        """A failure while handling one socket (its owner's code included) closes that
        socket, counted, and never stops the sweep of the others."""
        self.stats.socket_failures += 1
        media_socket._mark_closed(_CLOSE_INTERNAL, f"internal error: {exc!r}")

    def _run_batches(self, sockets: list[MediaSocket], ended: set[MediaSocket]) -> int:
        """Ingest the sockets' ``_inbuf``; those in ``ended`` (their stream ended in this
        read) are marked closed after their bytes, before they are finished."""
        delivered = 0
        batch = self._batch
        for start in range(0, len(sockets), batch.max_connections):
            chunk = sockets[start : start + batch.max_connections]
            messages: dict[MediaSocket, list[bytes]] = {s: [] for s in chunk}
            audio: set[MediaSocket] = set()
            pending = chunk
            for _ in range(_MAX_BATCH_ROUNDS):
                inputs: list[tuple[IngestConnection, bytearray]] = []
                for s in pending:
                    assert s.ingest is not None
                    inputs.append((s.ingest, s._inbuf))
                result = batch.run(inputs)
                del inputs  # release the buffers before resizing them
                for s, consumed in zip(pending, result.consumed, strict=True):
                    if consumed:
                        audio.add(s)
                        del s._inbuf[:consumed]
                for record in result.records:
                    s = pending[record.conn]
                    self._handle_record(s, record, messages[s])
                if not result.call_again:
                    break
                pending = [s for s in pending if s._inbuf and not s.closed]
                if not pending:
                    break
            else:
                # round limit: what is left may hold whole frames; come back next sweep
                self._attention.update(s for s in pending if s._inbuf)
            for s in chunk:
                _mark_lost(s, ended)
                owner = self._sockets.get(s)
                if owner is None:
                    continue
                if s in audio:
                    owner.on_audio_ingested(s)
                delivered += len(messages[s])
                self._finish(s, owner, messages[s])
        return delivered

    async def run(self) -> None:
        """Sweep forever (until cancelled). Idle while no socket is registered."""
        next_tick = trio.current_time()
        while True:
            if not self._sockets and not self._streams:
                self._wake = trio.Event()
                await self._wake.wait()
                next_tick = trio.current_time()
            lag = trio.current_time() - next_tick
            if lag > self.stats.max_sweep_lag_s:
                self.stats.max_sweep_lag_s = lag
            self.sweep()
            next_tick += self.sweep_interval_s
            now = trio.current_time()
            if next_tick < now:  # fell behind: skip missed ticks instead of bursting
                self.stats.late_sweeps += 1
                self.stats.max_sweep_lag_s = max(self.stats.max_sweep_lag_s, now - next_tick)
                next_tick = now + self.sweep_interval_s * (
                    1.0 - math.fmod(now - next_tick, self.sweep_interval_s) / self.sweep_interval_s
                )
            await trio.sleep_until(next_tick)


async def run_socket_task(media_socket: MediaSocket, owner: MediaSocketOwner) -> None:
    """The per-socket alternative to the pump: wake on readability, deliver, until closed."""
    media_socket.owner = owner
    _deliver(media_socket, owner, [])
    while not media_socket.closed:
        try:
            await trio.lowlevel.wait_readable(media_socket.sock)
        except (trio.ClosedResourceError, OSError, ValueError):
            media_socket._mark_closed(_CLOSE_ABNORMAL, "closed locally")
            break
        messages = media_socket.read_available()
        _deliver(media_socket, owner, messages)
    _deliver(media_socket, owner, [])
