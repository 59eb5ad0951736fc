"""SignalingStream: keep-alives answered where they are read, under a real trio-websocket
client talking to a real trio-websocket (wsproto) server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket
from _loopback import SendRecorder

from rtms_fast.engine import Engine
from rtms_fast.pump import MediaPump, open_tcp_socket
from rtms_fast.session import SessionSpec
from rtms_fast.settings import EngineSettings
from rtms_fast.signaling_stream import SignalingStream
from rtms_fast.sim import SimConfig, run_simulator
from rtms_fast.wire import Opcode, encode_frame, split_frames


def _ka(sequence: int) -> str:
    return json.dumps({"msg_type": 12, "timestamp": 1000 + sequence, "sequence": sequence})


def _answer(payload: bytes) -> bytes | None:
    request = json.loads(payload)
    if request["sequence"] % 5 == 4:
        return None  # the session may decline (e.g. the stream already ended)
    return json.dumps({"msg_type": 13, "timestamp": request["timestamp"],
                       "sequence": request["sequence"]}).encode()


async def test_keepalives_are_answered_under_trio_websocket_and_never_delivered() -> None:
    answers: list[dict[str, Any]] = []
    server_done = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        for i in range(20):
            await ws.send_message(_ka(i))
            if i % 3 == 0:
                await ws.send_message(json.dumps({"msg_type": 6, "n": i}))
            if i % 7 == 0:  # bytes frames carry JSON too
                await ws.send_message(_ka(100 + i).encode())
        for _ in range(18):  # of 23 requests, sequences 4, 9, 14, 19 and 114 are declined
            answers.append(json.loads(await ws.get_message()))
        await ws.send_message(json.dumps({"msg_type": 6, "n": "last"}))
        server_done.set()
        await ws.get_message()  # until the client closes

    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0,
                                     None)
        tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
        stream = SignalingStream(tcp, _answer)
        stream.tap.enabled = True
        ws = await trio_websocket.wrap_client_stream(
            nursery, cast("trio.SocketStream", stream), "127.0.0.1", "/")
        delivered = []
        with trio.fail_after(5):
            while True:
                message = json.loads(await ws.get_message())
                delivered.append(message["n"])
                if message["n"] == "last":
                    break
        await server_done.wait()
        await ws.aclose()
        nursery.cancel_scope.cancel()
    assert delivered == [0, 3, 6, 9, 12, 15, 18, "last"]  # events only, in order
    sequences = [a["sequence"] for a in answers]
    assert sorted(sequences) == sorted(
        s for s in [*range(20), 100, 107, 114] if s % 5 != 4)
    assert all(a["timestamp"] == 1000 + a["sequence"] for a in answers)
    assert stream.answered == len(answers) == stream.tap.taken - 5


async def test_answers_wait_for_a_send_in_progress() -> None:
    # lockstep: a send_all returns only once the peer has read it all, and a second
    # concurrent send_all on the same stream raises BusyResourceError
    client, server = trio.testing.lockstep_stream_pair()
    body = b'{"msg_type":13}'
    stream = SignalingStream(client, lambda payload: body)
    stream.tap.enabled = True
    big = b"B" * 50_000
    expected_len = len(big) + 2 + 4 + len(body)  # then one masked frame
    received = bytearray()

    async def reader() -> None:
        while len(received) < expected_len:
            received.extend(await server.receive_some(1000))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, big)  # in progress when the request arrives
            await trio.testing.wait_all_tasks_blocked()
            request = encode_frame(Opcode.TEXT, _ka(1).encode())
            nursery.start_soon(server.send_all, b"HTTP/1.1 101 OK\r\n\r\n" + request)
            # receive_some writes the answer, after the send in progress
            receiving = trio.Event()

            async def receive() -> None:
                assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
                receiving.set()

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            assert not receiving.is_set()  # parked behind the big send
            nursery.start_soon(reader)
    assert bytes(received[:len(big)]) == big  # not interleaved
    frames, used = split_frames(bytes(received[len(big):]), allow_masked=True)
    assert used == len(received) - len(big)
    assert [(h.opcode, h.masked, p) for h, p in frames] == [(Opcode.TEXT, True, body)]
    assert stream.answered == 1


async def test_end_of_stream_hands_on_what_was_held() -> None:
    client, server = trio.testing.memory_stream_pair()
    stream = SignalingStream(client, _answer)
    stream.tap.enabled = True
    partial = encode_frame(Opcode.TEXT, _ka(1).encode())[:9]
    await server.send_all(b"HTTP/1.1 101 OK\r\n\r\n" + partial)
    await server.send_eof()
    with trio.fail_after(1):
        assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
        assert await stream.receive_some() == partial
        assert await stream.receive_some() == b""
        assert await stream.receive_some() == b""


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_a_session_answers_signaling_keepalives_where_it_reads_them(tls: bool) -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=1.2, keepalive_interval_s=0.1,
                    keepalive_sockets="signaling", tls=tls)
    async with run_simulator(cfg) as sim:
        s = sim.sessions[0]
        settings = EngineSettings(media_types=("audio",), ca_file=sim.ca_file if tls else None,
                                  keepalive_timeout_s=0.5)
        async with Engine(settings) as engine:
            engine.start_session(SessionSpec(
                rtms_stream_id=s.rtms_stream_id, signature_id=s.meeting_uuid,
                server_urls=sim.signaling_url, client_id=sim.config.client_id,
                client_secret=sim.config.client_secret))
            session = engine.sessions()[0]
            with trio.fail_after(10):
                while engine.stats().pump_signaling_sockets != 1:  # read by the pump
                    await trio.sleep(0.01)
                await engine.wait_idle()
            stream = session._signaling_stream
            assert stream is not None
            stats = session.stats()
            pump_stats = engine.pump.stats if engine.pump is not None else None
            engine_stats = engine.stats()
    assert engine_stats.pump_signaling_sockets == 0  # let go when the session ended
    assert engine_stats.pump_stream_failures == 0
    # the engine's pump read the socket (and decrypted it over TLS)
    assert stream.pumped and stream.pump_reads > 0
    assert pump_stats is not None and pump_stats.stream_reads >= stream.pump_reads
    assert stats.stop_reason is not None
    # nearly every request was answered from the stream, none starved the session
    assert sim.counters.keepalives_sent >= 8
    assert sim.counters.keepalive_timeouts == 0
    assert stream.answered >= sim.counters.keepalives_sent - 2
    assert sim.counters.keepalive_answers >= stream.answered
    assert stats.keepalives_answered >= stream.answered


async def test_nothing_is_answered_after_our_close_frame() -> None:
    client, server = trio.testing.memory_stream_pair()
    stream = SignalingStream(client, _answer)
    request = b"HTTP/1.1 GET / ...\r\n\r\n"  # the first write is never taken for a frame
    await stream.send_all(request)
    await server.send_all(b"HTTP/1.1 101 OK\r\n\r\n" + encode_frame(Opcode.TEXT, _ka(1).encode()))
    stream.tap.enabled = True
    assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"  # answered
    close = encode_frame(Opcode.CLOSE, b"\x03\xe8", mask_key=b"abcd")
    await stream.send_all(close)
    late = encode_frame(Opcode.TEXT, _ka(2).encode())
    await server.send_all(late)
    with trio.fail_after(1):
        assert await stream.receive_some() == late  # handed on: trio-websocket discards it
    await server.send_eof()
    assert await stream.receive_some() == b""
    written = await server.receive_some()
    frames, used = split_frames(written[len(request):], allow_masked=True)
    assert [(h.opcode, p) for h, p in frames] == [
        (Opcode.TEXT, b'{"msg_type": 13, "timestamp": 1001, "sequence": 1}'),
        (Opcode.CLOSE, b"\x03\xe8")]
    assert written.startswith(request) and used == len(written) - len(request)
    assert stream.answered == 1


# ---- read through the pump ---------------------------------------------------------------
class _CountingStream(SignalingStream):
    """Counts what reached trio-websocket's reader: each return is one reader wake-up."""

    returns = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await super().receive_some(max_bytes)
        self.returns += 1
        return data


async def test_a_pump_reads_through_and_keepalives_never_wake_the_reader() -> None:
    answers: list[dict[str, Any]] = []
    keepalives_answered = trio.Event()
    go_on = trio.Event()

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(json.dumps({"msg_type": 6, "n": "first"}))
        await go_on.wait()
        for i in range(30):
            await ws.send_message(_ka(i) if i % 2 else _ka(i).encode())  # text and bytes
        for _ in range(24):  # sequences 4, 9, ... 29 declined
            answers.append(json.loads(await ws.get_message()))
        keepalives_answered.set()
        for i in range(5):
            await ws.send_message(_ka(100 + i))
            await ws.send_message(json.dumps({"msg_type": 6, "n": i}))
        await ws.send_message(json.dumps({"msg_type": 6, "n": "last"}))
        await ws.get_message()  # until the client closes

    pump = MediaPump(sweep_interval_ms=5)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1", 0,
                                     None)
        raw = await open_tcp_socket("127.0.0.1", server.port)
        stream = _CountingStream(trio.SocketStream(trio.socket.from_stdlib_socket(raw)),
                                 _answer, raw_socket=raw)
        ws = await trio_websocket.wrap_client_stream(
            nursery, cast("trio.SocketStream", stream), "127.0.0.1", "/")
        with trio.fail_after(5):
            assert json.loads(await ws.get_message())["n"] == "first"
            await trio.testing.wait_all_tasks_blocked()
            assert stream._inner_read is not None  # the reader waits on the inner stream
            stream.tap.enabled = True
            assert stream.read_through(pump)
            assert not stream.read_through(pump)  # once
            await trio.testing.wait_all_tasks_blocked()
            assert stream._inner_read is None  # that read was cancelled
            returns_before = stream.returns
            go_on.set()
            await keepalives_answered.wait()
            assert stream.returns == returns_before  # 30 requests, no reader wake-up
            delivered = []
            while True:
                message = json.loads(await ws.get_message())
                delivered.append(message["n"])
                if message["n"] == "last":
                    break
        await ws.aclose()
        assert not pump._streams  # closing the stream let go of the pump
        nursery.cancel_scope.cancel()
    assert delivered == [0, 1, 2, 3, 4, "last"]
    assert [a["sequence"] for a in answers] == [s for s in range(30) if s % 5 != 4]
    assert stream.answered == 24 + 4  # and 100..103 (104 declined)
    assert stream.pump_reads >= 1 and pump.stats.stream_reads >= stream.pump_reads


def _pumped_pair(pump: MediaPump, answer: Callable[[bytes], bytes | None] = _answer
                 ) -> tuple[_CountingStream, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    stream = _CountingStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)), answer,
                             raw_socket=ours)
    stream.tap.enabled = True
    return stream, peer


def _read_all(peer: socket.socket, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        received += peer.recv(count - len(received))
    return bytes(received)


async def test_pumped_answers_wait_behind_a_send_and_a_full_socket() -> None:
    pump = MediaPump(sweep_interval_ms=2)
    body = b'{"msg_type":13}'
    stream, peer = _pumped_pair(pump, lambda payload: body)
    ours = stream._raw
    assert ours is not None
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    request = b"GET / HTTP/1.1\r\n\r\n"
    await stream.send_all(request)  # the HTTP request (never taken for a frame)
    assert _read_all(peer, len(request)) == request
    peer.sendall(b"HTTP/1.1 101 OK\r\n\r\n")
    answer = encode_frame(Opcode.TEXT, body, mask_key=b"\0\0\0\0")  # header only compared
    big = b"B" * 400_000
    got = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
        assert stream.read_through(pump)

        async def reader() -> None:
            while data := await stream.receive_some():
                got.append(data)

        nursery.start_soon(reader)
        with trio.fail_after(5):
            # 1: a request during a send in progress (blocked: the peer does not read)
            nursery.start_soon(stream.send_all, big)
            await trio.testing.wait_all_tasks_blocked()
            assert stream._sending
            peer.sendall(encode_frame(Opcode.TEXT, _ka(1).encode()))
            while stream.answered < 1:
                await trio.sleep(0.002)
            assert stream._backlog  # waits for the send
            received = await trio.to_thread.run_sync(_read_all, peer, len(big) + len(answer))
            assert received[: len(big)] == big  # not interleaved
            assert received[len(big) : len(big) + 2] == answer[:2]
            assert not stream._backlog and not stream._sending
            # 2: the socket refuses the answer (its buffer is full): the reader writes it
            filler = 0
            with contextlib.suppress(BlockingIOError):
                while True:
                    filler += ours.send(b"F" * 4096)
            peer.sendall(encode_frame(Opcode.TEXT, _ka(2).encode()))
            while stream.answered < 2:
                await trio.sleep(0.002)
            received = await trio.to_thread.run_sync(_read_all, peer, filler + len(answer))
            assert received[:filler] == b"F" * filler
            assert received[filler : filler + 2] == answer[:2]
            # 3: the end of the stream reaches the reader after what was held
            partial = encode_frame(Opcode.TEXT, _ka(3).encode())[:5]
            peer.sendall(partial)
            peer.shutdown(socket.SHUT_WR)
            while not got:
                await trio.sleep(0.002)
        nursery.cancel_scope.cancel()
    assert got == [partial]
    assert stream.answered == 2
    assert not pump._streams
    peer.close()
    await stream.aclose()


async def test_pumped_reads_report_a_reset_and_a_failing_answer() -> None:
    pump = MediaPump(sweep_interval_ms=2)
    stream, peer = _pumped_pair(pump)

    def fail(payload: bytes) -> bytes | None:
        raise RuntimeError("the machine broke")

    failing, failing_peer = _pumped_pair(pump, fail)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        assert stream.read_through(pump) and failing.read_through(pump)
        assert pump.stats.streams == 2
        with trio.fail_after(5):
            peer.sendall(b"HTTP/1.1 101 OK\r\n\r\n")
            assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # a reset, or an end: either way the reader hears of it at once
            with contextlib.suppress(trio.BrokenResourceError):
                assert await stream.receive_some() == b""
            failing_peer.sendall(b"HTTP/1.1 101 OK\r\n\r\n" + encode_frame(
                Opcode.TEXT, _ka(1).encode()))
            assert await failing.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
            with pytest.raises(RuntimeError, match="the machine broke"):
                await failing.receive_some()
        assert not pump._streams and pump.stats.streams == 0
        nursery.cancel_scope.cancel()
    failing_peer.close()
    await stream.aclose()
    await failing.aclose()


async def test_read_through_needs_a_plain_socket_and_a_pump_that_can_watch() -> None:
    pump = MediaPump(sweep_interval_ms=5)
    client, _server = trio.testing.memory_stream_pair()
    assert not SignalingStream(client, _answer).read_through(pump)  # no raw socket (TLS)
    stream, peer = _pumped_pair(pump)
    no_epoll = MediaPump(sweep_interval_ms=5, use_epoll=False)
    assert not stream.read_through(no_epoll) and not stream.pumped
    assert stream.read_through(pump) and stream.pumped
    stream.stop_reading_through()
    stream.stop_reading_through()
    assert not pump._streams
    peer.close()
    await stream.aclose()


async def test_the_pump_contains_a_watched_stream_that_raises() -> None:
    pump = MediaPump(sweep_interval_ms=2)
    a, b = socket.socketpair()
    calls = []

    def on_readable() -> None:
        calls.append(a.recv(100))
        raise RuntimeError("owner bug")

    assert pump.watch_stream(a.fileno(), on_readable)
    assert not pump.watch_stream(a.fileno(), on_readable)  # one callback per fd
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)  # runs with no media socket at all
        b.sendall(b"x")
        with trio.fail_after(5):
            while not calls:
                await trio.sleep(0.002)
            await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert calls == [b"x"]
    assert pump.stats.stream_failures == 1 and pump.stats.streams == 0
    pump.unwatch_stream(a.fileno())  # unknown by now: ignored
    a.close()
    b.close()


async def test_a_pumped_answer_never_cuts_into_a_send_in_progress() -> None:
    pump = MediaPump(sweep_interval_ms=5)
    stream, peer = _pumped_pair(pump, lambda payload: b'{"msg_type":13}')
    recorder = SendRecorder(cast(socket.socket, stream._raw))
    stream._raw = cast(socket.socket, recorder)
    request = encode_frame(Opcode.TEXT, _ka(1).encode())
    stream._take(b"HTTP/1.1 101 OK\r\n\r\n")  # the tap takes frames after the response
    stream._sending = True  # as while trio-websocket's send_all is under way
    stream._take(request)
    assert recorder.sends == [] and len(stream._backlog) == 2 + 4 + 15  # held whole
    stream._sending = False
    await stream._send(b"")  # the send in progress would write it when done
    stream._take(request)  # nothing being written: straight out
    assert len(recorder.sends) == 1 and not stream._backlog
    assert len(_read_all(peer, 2 * 21)) == 42
    assert stream.answered == 2
    peer.close()
    await stream.aclose()


def _event(n: int, pad: int = 0) -> bytes:
    return json.dumps({"msg_type": 6, "n": n, "pad": "x" * pad}).encode()


async def test_taken_messages_keep_their_order_with_those_the_reader_gets() -> None:
    """With ``take_messages`` small messages go straight to the owner, large and fragmented
    ones through the reader; the owner sees every one once, in the order sent, and direct
    taking resumes once it has processed what the reader delivered."""
    pump = MediaPump(sweep_interval_ms=2)
    seen: list[tuple[str, int]] = []

    def on_message(payload: bytes) -> bytes | None:
        seen.append(("direct", json.loads(payload)["n"]))
        return None

    ours, peer = socket.socketpair()
    ours.setblocking(False)
    stream = SignalingStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                             on_message, raw_socket=ours, take_messages=True)
    peer.sendall(b"HTTP/1.1 101 OK\r\n\r\n")
    big = 70 * 1024  # over what the stream takes itself
    sent = [
        encode_frame(Opcode.TEXT, _event(0)),
        encode_frame(Opcode.TEXT, _event(1, pad=big)),  # to the reader
        encode_frame(Opcode.TEXT, _event(2)),  # behind it, to the reader too
        encode_frame(Opcode.TEXT, _event(3)[:10], fin=False),  # fragmented: the reader
        encode_frame(Opcode.CONTINUATION, _event(3)[10:]),
        encode_frame(Opcode.TEXT, _event(4)),
    ]
    later = [encode_frame(Opcode.TEXT, _event(5)), encode_frame(Opcode.TEXT, _event(6))]
    buffered = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        with trio.fail_after(5):
            assert await stream.receive_some() == b"HTTP/1.1 101 OK\r\n\r\n"
            stream.tap.enabled = True
            assert stream.read_through(pump)

            async def owner() -> None:
                """Plays the session: parses what the reader gets, processes in order."""
                fragments = b""
                while data := await stream.receive_some():
                    buffered.extend(data)
                    frames, used = split_frames(bytes(buffered))
                    del buffered[:used]
                    for header, payload in frames:
                        fragments += payload
                        if header.fin:
                            seen.append(("reader", json.loads(fragments)["n"]))
                            fragments = b""
                            stream.messages_processed += 1

            nursery.start_soon(owner)
            peer.sendall(b"".join(sent))
            while len(seen) < 5:
                await trio.sleep(0.002)
            await trio.sleep(0.05)  # the owner has processed what the reader delivered
            peer.sendall(b"".join(later))
            while len(seen) < 7:
                await trio.sleep(0.002)
        nursery.cancel_scope.cancel()
    assert [n for _, n in seen] == list(range(7))
    assert seen[0] == ("direct", 0)
    assert [how for how, n in seen if n in (1, 2, 3, 4)] == ["reader"] * 4
    assert seen[5:] == [("direct", 5), ("direct", 6)]  # taken again
    assert stream.tap.messages_passed == stream.messages_processed == 4
    peer.close()
    await stream.aclose()


async def test_a_taken_message_without_a_signaling_machine_is_counted() -> None:
    from rtms_fast.session import Session

    session = Session(SessionSpec(rtms_stream_id="s", signature_id="m",
                                  server_urls="ws://127.0.0.1:9/", client_id="c",
                                  client_secret="x"), EngineSettings())
    assert session._on_tapped_message(_event(1)) is None
    assert session.stats().drops == {"unexpected_message": 1}
