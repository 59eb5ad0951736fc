"""SignalingStream: keep-alives answered where they are read, under a real trio-websocket
client talking to a real trio-websocket (wsproto) server on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest
import trio
import trio.testing
import trio_websocket

from rtms_fast.engine import Engine
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
                await engine.wait_idle()
            stream = session._signaling_stream
            assert stream is not None
            stats = session.stats()
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
