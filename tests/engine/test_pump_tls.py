"""The pump's TLS paths against a misbehaving peer: native TLS and ssl.SSLObject, on the
arena path and on the per-socket path. The server is Python's ssl over memory BIOs on a
real loopback TCP connection, so every byte the client sees is chosen by the test."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trustme
from _loopback import tcp_pairs as loopback_tcp_pairs
from wsproto.connection import Connection, ConnectionType

from rtms_fast.ingest import Codec, ContentType, IngestConfig, IngestConnection, IngestRecord
from rtms_fast.pump import MediaPump, MediaSocket
from rtms_fast.tls import NativeTLSContext, native_tls_available

BACKENDS = [pytest.param(True, id="native", marks=pytest.mark.skipif(
    not native_tls_available(), reason="built without OpenSSL")),
            pytest.param(False, id="sslobject")]
PATHS = [pytest.param(False, id="arena"), pytest.param(True, id="per-socket")]


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    assert len(payload) < 126
    return bytes([0x80 | opcode, len(payload)]) + payload


class _Server:
    """The server end: TLS records made on demand, sent when the test says."""

    def __init__(self, sock: socket.socket, ca: trustme.CA) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost").configure_cert(ctx)
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def record(self, data: bytes) -> bytes:
        self.tls.write(data)
        return self.outgoing.read()

    def close_notify(self) -> bytes:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.unwrap()
        return self.outgoing.read()


class _Owner:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.closed: tuple[int, str] | None = None

    def on_media_messages(self, media_socket: MediaSocket, messages: list[bytes]) -> None:
        self.messages.extend(messages)

    def on_media_closed(self, media_socket: MediaSocket, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def on_ingest_record(self, media_socket: MediaSocket, record: IngestRecord) -> None:
        pass

    def on_audio_ingested(self, media_socket: MediaSocket) -> None:
        pass


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    [(server, client)] = loopback_tcp_pairs(1)
    yield server, client
    server.close()
    client.close()


def _connect(native: bool, ca: trustme.CA, tmp_path: Path,
             pair: tuple[socket.socket, socket.socket]) -> tuple[MediaSocket, _Server]:
    """A TLS client socket past its handshake (driven by hand), in its data phase."""
    server_sock, client_sock = pair
    server = _Server(server_sock, ca)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls: ssl.SSLObject | object
    if native:
        tls = NativeTLSContext(str(ca_file)).wrap("localhost")
        incoming, outgoing = tls.incoming, tls.outgoing  # type: ignore[attr-defined]
    else:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ssl.create_default_context(cafile=str(ca_file)).wrap_bio(
            incoming, outgoing, server_hostname="localhost")
    for _ in range(50):
        client_done = server_done = False
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()  # type: ignore[attr-defined]
            client_done = True
        client_sock.sendall(outgoing.read())
        if select.select([server_sock], [], [], 0.02)[0]:
            server.incoming.write(server_sock.recv(1 << 20))
        with contextlib.suppress(ssl.SSLWantReadError):
            server.tls.do_handshake()
            server_done = True
        server_sock.sendall(server.outgoing.read())
        if select.select([client_sock], [], [], 0.02)[0]:
            incoming.write(client_sock.recv(1 << 20))
        if client_done and server_done:
            break
    client_sock.setblocking(False)
    media = MediaSocket(client_sock, "wss://localhost/", tls,  # type: ignore[arg-type]
                        incoming, outgoing, 1 << 20)
    media._ws = Connection(ConnectionType.CLIENT)
    media.start_data_phase(IngestConnection(IngestConfig(
        codec=Codec.PCMA, content_type=ContentType.RTP, input_rate_hz=8000)))
    return media, server


def _registered(native: bool, per_socket: bool, ca: trustme.CA, tmp_path: Path,
                pair: tuple[socket.socket, socket.socket]) -> tuple[_Server, MediaPump, _Owner]:
    """A connected socket in a pump: on the arena path after one sweep, unless
    ``per_socket`` (a socket's first visit always takes the per-socket path)."""
    media, server = _connect(native, ca, tmp_path, pair)
    pump, owner = MediaPump(20), _Owner()
    pump.register(media, owner)
    if not per_socket:
        pump.sweep()
    return server, pump, owner


async def _sweep_until_closed(pump: MediaPump, owner: _Owner) -> None:
    with trio.fail_after(5):
        while owner.closed is None:
            pump.sweep()
            await trio.sleep(0.01)


@pytest.mark.parametrize("native", BACKENDS)
@pytest.mark.parametrize("per_socket", PATHS)
async def test_a_tls_failure_after_a_ping_closes_that_socket_only(
    native: bool, per_socket: bool, ca: trustme.CA, tmp_path: Path,
    tcp_pair: tuple[socket.socket, socket.socket], sweep_mode: str,
) -> None:
    """A ping (its pong cannot be encrypted any more) then a corrupt record in one read:
    the socket closes as a TLS failure; the sweep itself never raises."""
    server, pump, owner = _registered(native, per_socket, ca, tmp_path, tcp_pair)
    bad = bytearray(server.record(_frame(b"x" * 50, opcode=2)))
    bad[-3] ^= 0xFF  # the tag no longer matches
    server.sock.sendall(server.record(_frame(b"hi", opcode=0x9)) + bytes(bad))
    await _sweep_until_closed(pump, owner)
    assert owner.closed is not None and owner.closed[0] == 1006
    assert "TLS failed" in owner.closed[1]
    assert pump.stats.sockets == 0


@pytest.mark.parametrize("native", BACKENDS)
@pytest.mark.parametrize("per_socket", PATHS)
async def test_bytes_after_a_close_notify_end_the_stream_without_a_spin(
    native: bool, per_socket: bool, ca: trustme.CA, tmp_path: Path,
    tcp_pair: tuple[socket.socket, socket.socket], sweep_mode: str,
) -> None:
    server, pump, owner = _registered(native, per_socket, ca, tmp_path, tcp_pair)
    server.sock.sendall(server.record(_frame(b'{"msg_type":12}')) + server.close_notify()
                        + b"\x17\x03\x03\x00\x05hello")
    await _sweep_until_closed(pump, owner)  # fails after 5 s if a sweep spins
    assert owner.messages == [b'{"msg_type":12}']
    assert owner.closed is not None and owner.closed[0] == 1006


@pytest.mark.parametrize("native", BACKENDS)
@pytest.mark.parametrize("per_socket", PATHS)
async def test_a_close_frame_with_close_notify_keeps_its_code(
    native: bool, per_socket: bool, ca: trustme.CA, tmp_path: Path,
    tcp_pair: tuple[socket.socket, socket.socket], sweep_mode: str,
) -> None:
    server, pump, owner = _registered(native, per_socket, ca, tmp_path, tcp_pair)
    server.sock.sendall(server.record(_frame(struct.pack("!H", 1000) + b"bye", opcode=0x8))
                        + server.close_notify())
    server.sock.shutdown(socket.SHUT_WR)
    await _sweep_until_closed(pump, owner)
    assert owner.closed == (1000, "bye")


async def test_an_owner_that_raises_closes_its_socket_not_the_pump(
    ca: trustme.CA, tmp_path: Path, tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    media, server = _connect(False, ca, tmp_path, tcp_pair)

    class _Broken(_Owner):
        def on_media_messages(self, media_socket: MediaSocket, messages: list[bytes]) -> None:
            raise RuntimeError("a bug in the owner")

    pump, owner = MediaPump(20), _Broken()
    pump.register(media, owner)
    server.sock.sendall(server.record(_frame(b'{"msg_type":12}')))
    await _sweep_until_closed(pump, owner)
    assert owner.closed is not None and owner.closed[0] == 1011
    assert "a bug in the owner" in owner.closed[1]
    assert pump.stats.socket_failures == 1 and pump.stats.sockets == 0
