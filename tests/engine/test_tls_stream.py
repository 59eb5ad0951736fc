"""TLSSocketStream (TLS over a stdlib socket, its state in reach) and the signaling stream
read through the pump over TLS, against Trio's own TLS server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket
import trustme
from _loopback import SendRecorder

from rtms_fast.pump import MediaPump, open_tcp_socket
from rtms_fast.signaling_stream import SignalingStream
from rtms_fast.tls_stream import TLSSocketStream
from rtms_fast.wire import Opcode, encode_frame, split_frames


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


def _client_context(ca: trustme.CA | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca is not None:
        ca.configure_trust(context)
    return context


async def _serve(nursery: trio.Nursery, ca: trustme.CA,
                 handler: Any) -> int:
    listeners = await nursery.start(trio.serve_ssl_over_tcp, handler, 0, _server_context(ca))
    return int(listeners[0].transport_listener.socket.getsockname()[1])


async def _connect(port: int, context: ssl.SSLContext,
                   hostname: str = "localhost") -> TLSSocketStream:
    stream = TLSSocketStream(await open_tcp_socket("127.0.0.1", port), context, hostname)
    try:
        await stream.do_handshake()
    except BaseException:
        await stream.aclose()
        raise
    return stream


@pytest.mark.parametrize("close_notify", [True, False], ids=["close_notify", "tcp-end"])
async def test_a_round_trip_then_the_end(ca: trustme.CA, close_notify: bool) -> None:
    async def handler(server: trio.SSLStream[trio.SocketStream]) -> None:
        data = b""
        while len(data) < 100_000:
            data += await server.receive_some()
        await server.send_all(data[::-1])
        if close_notify:
            await server.aclose()
        else:
            await trio.aclose_forcefully(server.transport_stream)

    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ca, handler)
        with trio.fail_after(5):
            stream = await _connect(port, _client_context(ca))
            payload = bytes(range(256)) * 390 + b"end."
            assert len(payload) == 99_844
            await stream.send_all(payload + b"x" * 156)
            echoed = b""
            while len(echoed) < 100_000:
                chunk = await stream.receive_some(7_000)
                assert 0 < len(chunk) <= 7_000
                echoed += chunk
            assert echoed == (payload + b"x" * 156)[::-1]
            assert await stream.receive_some() == b""  # either way: the end of the stream
            await stream.aclose()
            await stream.aclose()  # idempotent
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"late")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("trusted,hostname", [(False, "localhost"), (True, "elsewhere")],
                         ids=["unknown-ca", "wrong-host"])
async def test_a_certificate_that_does_not_verify_is_refused(
        ca: trustme.CA, trusted: bool, hostname: str) -> None:
    async def handler(server: trio.SSLStream[trio.SocketStream]) -> None:
        with trio.move_on_after(5):
            await server.receive_some()

    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ca, handler)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as caught:
            await _connect(port, _client_context(ca if trusted else None), hostname)
        assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
        nursery.cancel_scope.cancel()


async def test_sends_and_receives_one_at_a_time(ca: trustme.CA) -> None:
    async def handler(server: trio.SSLStream[trio.SocketStream]) -> None:
        await server.do_handshake()
        await trio.sleep_forever()  # never reads

    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ca, handler)
        with trio.fail_after(5):
            stream = await _connect(port, _client_context(ca))
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            nursery.start_soon(stream.send_all, b"x" * 20_000_000)  # blocks: nobody reads
            nursery.start_soon(stream.receive_some)
            await trio.testing.wait_all_tasks_blocked()
            assert stream._sending and stream._receiving
            with pytest.raises(trio.BusyResourceError):
                await stream.send_all(b"more")
            with pytest.raises(trio.BusyResourceError):
                await stream.send_transport(b"more")
            with pytest.raises(trio.BusyResourceError):
                await stream.receive_some()
        nursery.cancel_scope.cancel()
    await stream.aclose()


_REQUEST = b"GET / HTTP/1.1\r\n\r\n"


def _ka(sequence: int) -> str:
    return json.dumps({"msg_type": 12, "timestamp": 1000 + sequence, "sequence": sequence})


def _answer(payload: bytes) -> bytes | None:
    request = json.loads(payload)
    return json.dumps({"msg_type": 13, "timestamp": request["timestamp"],
                       "sequence": request["sequence"]}).encode()


async def test_a_pump_reads_through_tls_under_trio_websocket(ca: trustme.CA) -> None:
    answers: list[int] = []
    others: list[int] = []
    all_answered = trio.Event()
    go_on = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(json.dumps({"msg_type": 6, "n": "first"}))
        await go_on.wait()
        for i in range(40):
            await ws.send_message(_ka(i))
            if i % 10 == 9:
                await ws.send_message(json.dumps({"msg_type": 6, "n": i}))
        while len(answers) < 40 or len(others) < 3:
            message = json.loads(await ws.get_message())
            if message["msg_type"] == 13:
                answers.append(message["sequence"])
            else:
                others.append(message["k"])
        all_answered.set()
        await ws.send_message(json.dumps({"msg_type": 6, "n": "last"}))
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            await ws.get_message()  # until the client closes

    pump = MediaPump(sweep_interval_ms=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0,
                                     _server_context(ca))
        tls = await _connect(server.port, _client_context(ca))
        stream = SignalingStream(tls, _answer)
        ws = await trio_websocket.wrap_client_stream(
            nursery, cast("trio.SocketStream", stream), "localhost", "/")
        delivered: list[Any] = []
        with trio.fail_after(5):
            delivered.append(json.loads(await ws.get_message())["n"])
            await trio.testing.wait_all_tasks_blocked()
            stream.tap.enabled = True
            assert stream.read_through(pump)
            go_on.set()
            # a send of trio-websocket's in progress while the pump answers
            sending = [ws.send_message(json.dumps({"msg_type": 5, "k": k})) for k in range(3)]
            for send in sending:
                await send
            await all_answered.wait()
            while delivered[-1] != "last":
                delivered.append(json.loads(await ws.get_message())["n"])
        await ws.aclose()
        assert not pump._streams
        nursery.cancel_scope.cancel()
    assert delivered == ["first", 9, 19, 29, 39, "last"]
    assert answers == list(range(40))  # every answer decrypted and parsed by the server
    assert others == [0, 1, 2]
    assert stream.answered == 40 and stream.pump_reads >= 1


async def test_pumped_tls_answers_during_a_send_stay_in_order(ca: trustme.CA) -> None:
    """Records the pump makes while a send is in progress are sent by that send, after
    its own records: the server decrypts one stream of frames, none cut or reordered."""
    got = bytearray()
    big = b"B" * 300_000
    frame_big = encode_frame(Opcode.BINARY, big, mask_key=b"abcd")
    ready = trio.Event()
    read_now = trio.Event()
    server_done = trio.Event()
    server_stream: list[trio.SSLStream[trio.SocketStream]] = []

    async def handler(server: trio.SSLStream[trio.SocketStream]) -> None:
        server_stream.append(server)
        await server.send_all(b"HTTP/1.1 101 OK\r\n\r\n")
        ready.set()
        await read_now.wait()
        while True:
            if len(got) > len(_REQUEST):  # after our HTTP request
                frames, _ = split_frames(bytes(got[len(_REQUEST):]), allow_masked=True,
                                         max_payload_bytes=1 << 20)
                if len(frames) == 4:
                    break
            got.extend(await server.receive_some())
        server_done.set()
        await trio.sleep_forever()

    pump = MediaPump(sweep_interval_ms=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        port = await _serve(nursery, ca, handler)
        tls = await _connect(port, _client_context(ca))
        tls.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stream = SignalingStream(tls, _answer)
        await stream.send_all(_REQUEST)
        await ready.wait()
        with trio.fail_after(5):
            assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
            stream.tap.enabled = True
            assert stream.read_through(pump)
            nursery.start_soon(stream.send_all, frame_big)
            await trio.testing.wait_all_tasks_blocked()
            assert stream._sending
            for i in range(3):
                await server_stream[0].send_all(encode_frame(Opcode.TEXT, _ka(i).encode()))
            while stream.answered < 3:
                await trio.sleep(0.002)
            read_now.set()
            await server_done.wait()
        nursery.cancel_scope.cancel()
    assert got.startswith(_REQUEST)
    frames, used = split_frames(bytes(got[len(_REQUEST):]), allow_masked=True,
                                max_payload_bytes=1 << 20)
    assert used == len(got) - len(_REQUEST)
    assert [h.opcode for h, _ in frames] == [Opcode.BINARY, Opcode.TEXT, Opcode.TEXT,
                                             Opcode.TEXT]
    assert frames[0][1] == big
    assert [json.loads(p)["sequence"] for _, p in frames[1:]] == [0, 1, 2]
    await stream.aclose()


async def test_pumped_tls_answers_wait_in_the_bio_during_a_send(ca: trustme.CA) -> None:
    received = bytearray()
    done = trio.Event()

    async def handler(server: trio.SSLStream[trio.SocketStream]) -> None:
        while len(received) < 21:
            received.extend(await server.receive_some())
        done.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        port = await _serve(nursery, ca, handler)
        with trio.fail_after(5):
            tls = await _connect(port, _client_context(ca))
            stream = SignalingStream(tls, lambda payload: b'{"msg_type":13}')
            stream.tap.enabled = True
            stream._take(b"HTTP/1.1 101 OK\r\n\r\n")  # frames are taken after this
            recorder = SendRecorder(tls.socket)
            stream._raw = cast(socket.socket, recorder)
            stream._sending = True  # as while trio-websocket's send_all is under way
            stream._take(encode_frame(Opcode.TEXT, _ka(7).encode()))
            assert recorder.sends == [] and tls.outgoing.pending > 0 and not stream._backlog
            stream._sending = False
            await stream._send(b"")  # a send drains the BIO when it ends
            assert not tls.outgoing.pending
            await done.wait()
        nursery.cancel_scope.cancel()
    frames, used = split_frames(bytes(received), allow_masked=True)
    assert used == len(received)
    assert [(h.opcode, p) for h, p in frames] == [(Opcode.TEXT, b'{"msg_type":13}')]
    await stream.aclose()
