"""The native paced audio sender: the same bytes as the Python path, partial sends queued
and completed, misses counted the same way, bad registrations refused."""

from __future__ import annotations

import errno
import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from conftest import (
    ConnectionClosed,
    WsClient,
    collect_until_closed,
    fast_config,
    handshaken,
    media_handshake,
    send_ready,
    signaling_handshake,
    ws_connect,
)
from rtms_fast.sim import SimConfig, run_simulator
from rtms_fast.sim.wire import AudioVoice, PacedAudioSender, frame_header

pytestmark = pytest.mark.skipif(not PacedAudioSender.available(),
                                reason="no native paced sender on this platform")

L16_48K = {"content_type": 2, "codec": 1, "sample_rate": 3, "channel": 1, "data_opt": 2,
           "send_rate": 20}


def split_frames(raw: bytes) -> list[bytes]:
    """Complete server frames (unmasked), each with its header."""
    out = []
    pos = 0
    while len(raw) - pos >= 2:
        length = raw[pos + 1] & 0x7F
        head = 2
        if length == 126:
            length = struct.unpack_from("!H", raw, pos + 2)[0]
            head = 4
        elif length == 127:
            length = struct.unpack_from("!Q", raw, pos + 2)[0]
            head = 10
        end = pos + head + length
        if end > len(raw):
            break
        out.append(raw[pos:end])
        pos = end
    return out


async def media_bytes(config: SimConfig, params: Any = None, *, rcvbuf: int | None = None,
                      read_delay_s: float = 0.0) -> tuple[list[bytes], list[bytes], Any]:
    """Run session 0 with one audio socket; return (the frames the socket received, the
    frames the Python builder makes for every index of the stream, the counters)."""
    async with run_simulator(config) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as sig, \
                ws_connect(sim, sim.media_urls()["audio"]) as media, \
                trio.open_nursery() as nursery:
            await signaling_handshake(sim, sig, session)
            answer = await media_handshake(sim, media, session, 1,
                                           None if params is None else {"audio": params})
            assert answer["status_code"] == 0 and not media.pending
            if rcvbuf is not None:
                assert isinstance(media.stream, trio.SocketStream)
                media.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            stream = session.media[1]
            nursery.start_soon(collect_until_closed, sig)
            await send_ready(sig, session)
            await trio.sleep(read_delay_s)
            raw = bytearray()
            with trio.fail_after(5):
                while not raw.endswith(b"\x88\x0e\x03\xe8stream ended"):  # close 1000
                    data = await media.stream.receive_some(65536)
                    if not data:
                        break
                    raw += data
        track = stream.tracks[0]
        expected = track.build(0, track.total - 1)
        return split_frames(bytes(raw)), expected, sim.counters


@pytest.mark.parametrize(
    ("config_kw", "params"),
    [
        ({"participants": 1}, None),
        ({"participants": 3, "binary_frames": True}, None),
        ({"participants": 2}, {"content_type": 2, "codec": 2, "sample_rate": 0, "channel": 1,
                               "data_opt": 2, "send_rate": 20}),
        ({"participants": 3}, {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1,
                               "data_opt": 1, "send_rate": 20}),  # mixed
        ({"participants": 1}, {"content_type": 2, "codec": 1, "sample_rate": 3, "channel": 2,
                               "data_opt": 2, "send_rate": 40}),
    ],
)
@pytest.mark.parametrize("native", [True, False])
async def test_both_paths_send_the_builders_bytes(config_kw: dict[str, Any], params: Any,
                                                  native: bool) -> None:
    config = fast_config(seed=7, duration_s=0.2, native_sweep=native, **config_kw)
    frames, expected, counters = await media_bytes(config, params)
    assert frames[-1][0] == 0x88  # the close frame
    assert frames[:-1] == expected
    assert counters.audio_frames_sent == counters.audio_frames_scheduled > 0
    assert counters.native_audio_frames_sent == (counters.audio_frames_sent if native else 0)


async def test_native_frames_equal_python_frames_for_any_index_range() -> None:
    config = fast_config(seed=9, participants=3, duration_s=30)
    async with run_simulator(config) as sim, handshaken(sim) as (session, sig, _):
        await send_ready(sig, session)
        stream = session.media[1]
        with trio.fail_after(2):
            while stream.native_slot < 0:
                await trio.sleep(0.005)
        native = sim._native
        assert native is not None
        track = stream.tracks[0]
        for first, last in [(0, 0), (1, 4), (49, 51), (123, 123), (track.total - 3,
                                                                   track.total - 1)]:
            assert native.format_frames(stream.native_slot, first, last) == b"".join(
                track.build(first, last))
        with pytest.raises(ValueError):
            native.format_frames(stream.native_slot, 0, track.total)


async def test_partial_native_send_is_queued_and_completed() -> None:
    # 48 kHz frames are ~2.6 KB: a client that does not read for 0.3 s fills the small
    # socket buffers, so a native send is taken in part or refused
    config = fast_config(duration_s=0.6, socket_send_buffer_bytes=4096)
    frames, expected, counters = await media_bytes(config, L16_48K, rcvbuf=4096,
                                                   read_delay_s=0.3)
    assert counters.native_partial_sends >= 1
    assert counters.messages_dropped_backpressure == 0
    assert frames[:-1] == expected  # every frame, whole and in order
    assert counters.audio_frames_sent == counters.audio_frames_scheduled == 30
    # the stream went back to the native sender once its queue was empty
    assert counters.native_audio_frames_sent > 0


# ---- the sender on its own, over a socket pair ---------------------------------------------

PREFIX = b'{"msg_type":14,"content":{"user_id":1,"user_name":"a","data":"'


def reference_frame(prefix: bytes, payload: bytes, ts: int, opcode: int = 1) -> bytes:
    body = prefix + payload + b'","timestamp":%d}}' % ts
    return frame_header(opcode, len(body)) + body


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def read_all(sock: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not data:
            return bytes(out)
        out += data


def table_sender(entry_len: int = 8) -> tuple[PacedAudioSender, list[bytes], int]:
    sender = PacedAudioSender(0)
    entries = [bytes([65 + i]) * entry_len for i in range(4)]  # positions 0, 10, 20, 30
    return sender, entries, sender.add_table(entries, 10, 40)


def add(sender: PacedAudioSender, fd: int, table: int, **kw: Any) -> int:
    args: dict[str, Any] = {
        "phase": 0, "opcode": 1, "t0_s": 100.0, "period_s": 0.02, "period_ms": 20,
        "base_ms": 1_700_000_000_000, "next_index": 0, "total": 50, "samples_per_frame": 10,
        "voices": [AudioVoice(PREFIX, table, 20)]}
    args.update(kw)
    return sender.add_stream(fd, **args)


def test_sweep_sends_due_frames_and_counts_misses(
        pair: tuple[socket.socket, socket.socket]) -> None:
    sender, entries, table = table_sender()
    add(sender, pair[0].fileno(), table)
    # 5 periods after t0: frames 0..5 are due; 0..3 are more than one period late
    totals = sender.sweep(100.0 + 5 * 0.02, 1, 0.0)
    assert (totals.frames, totals.messages, totals.misses, totals.sends) == (6, 6, 4, 1)
    assert totals.max_lag_s == pytest.approx(0.1)
    got = read_all(pair[1])
    # frame k starts at loop position (20 + 10 k) % 40: entries 2, 3, 0, 1, ...
    assert got == b"".join(reference_frame(PREFIX, entries[(2 + k) % 4],
                                           1_700_000_000_000 + 20 * k) for k in range(6))
    assert totals.bytes == len(got)
    # nothing more is due in the same period; a sweep of another phase sends nothing
    assert sender.sweep(100.0 + 5 * 0.02 + 0.001, 1, 0.0).frames == 0
    assert sender.sweep(100.0 + 7 * 0.02, 2, 0.0).frames == 0
    assert sender.remove(0) == 6 and len(sender) == 0


def test_two_voices_and_binary_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, entries, table = table_sender(200)  # bodies over 125 bytes: 16-bit lengths
    other = b'{"msg_type":14,"content":{"user_id":2,"user_name":"b","data":"'
    add(sender, pair[0].fileno(), table, opcode=2,
        voices=[AudioVoice(PREFIX, table, 0), AudioVoice(other, table, 30)])
    totals = sender.sweep(100.0 + 0.02, 1, 0.0)
    assert (totals.frames, totals.messages) == (2, 4)
    ts = 1_700_000_000_000
    assert read_all(pair[1]) == (
        reference_frame(PREFIX, entries[0], ts, 2) + reference_frame(other, entries[3], ts, 2)
        + reference_frame(PREFIX, entries[1], ts + 20, 2)
        + reference_frame(other, entries[0], ts + 20, 2))


def test_partial_send_is_reported_and_the_stream_paused(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filler = b"x" * 65536
    with pytest.raises(BlockingIOError):
        while True:
            a.send(filler)
    sender, _, table = table_sender(3000)
    slot = add(sender, a.fileno(), table)
    totals = sender.sweep(100.0 + 0.02, 1, 0.0)
    assert totals.frames == 2  # counted: the caller queues what the socket did not take
    [event] = totals.events
    assert event.kind == PacedAudioSender.PARTIAL and event.slot == slot
    assert (event.first_index, event.last_index) == (0, 1)
    whole = sender.format_frames(slot, 0, 1)
    assert event.total_bytes == len(whole) and 0 <= event.sent_bytes < len(whole)
    # paused: later sweeps leave it alone until it is removed
    assert sender.sweep(100.0 + 0.1, 1, 0.0).frames == 0
    assert sender.next_index(slot) == 2
    assert sender.remove(slot) == 2
    received = bytearray()
    while len(received) < 16 * 65536:  # drain the filler, then what the send took
        data = read_all(b)
        if not data:
            break
        received += data
    assert received.endswith(whole[: event.sent_bytes]) or event.sent_bytes == 0


def test_a_dead_socket_is_an_error_event(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.close()
    sender, _, table = table_sender()
    slot = add(sender, a.fileno(), table)
    [event] = sender.sweep(100.0, 1, 0.0).events
    assert event.kind == PacedAudioSender.ERROR and event.slot == slot
    assert -event.sent_bytes in (errno.EPIPE, errno.ECONNRESET)


def test_too_many_frames_at_once_are_left_to_the_caller(
        pair: tuple[socket.socket, socket.socket]) -> None:
    sender, _, table = table_sender(30000)  # 64 KB scratch: two frames at most
    slot = add(sender, pair[0].fileno(), table)
    totals = sender.sweep(100.0 + 2 * 0.02, 1, 0.0)
    [event] = totals.events
    assert event.kind == PacedAudioSender.TOO_BIG and totals.frames == 0
    assert sender.next_index(slot) == 0 and read_all(pair[1]) == b""


def test_bad_registrations_are_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, entries, table = table_sender()
    fd = pair[0].fileno()
    with pytest.raises(ValueError):
        sender.add_table(entries, 10, 50)  # 4 entries of 10 samples are not 50
    with pytest.raises(ValueError):
        sender.add_table([b"ab", b"abc"], 1, 2)
    with pytest.raises(ValueError):
        add(sender, fd, table + 1)
    with pytest.raises(ValueError):
        add(sender, fd, table, voices=[AudioVoice(PREFIX, table, 5)])  # not on an entry
    with pytest.raises(ValueError):
        add(sender, fd, table, voices=[AudioVoice(b"x" * 1000, table, 0)])
    with pytest.raises(ValueError):
        add(sender, fd, table, phase=32)
    with pytest.raises(ValueError):
        sender.remove(0)
    assert len(sender) == 0


# ---- the end of a session ------------------------------------------------------------------

async def test_stream_end_message_follows_the_last_media_after_a_grace() -> None:
    """A client that closes every socket on msg 8 (the official SDK) must have had time to
    read the media already written."""
    config = fast_config(duration_s=0.2, transcript_interval_ms=100)
    async with run_simulator(config) as sim:
        session = sim.sessions[0]
        arrivals: dict[str, float] = {}
        async with ws_connect(sim, sim.signaling_url) as sig, \
                ws_connect(sim, sim.media_urls()["audio"]) as audio, \
                ws_connect(sim, sim.media_urls()["transcript"]) as text:
            await signaling_handshake(sim, sig, session)
            await media_handshake(sim, audio, session, 1)
            await media_handshake(sim, text, session, 8)
            await send_ready(sig, session)

            async def last_arrival(name: str, ws: WsClient, msg_type: int) -> None:
                with trio.fail_after(5):
                    while True:
                        try:
                            msg = json.loads(await ws.get_message())
                        except ConnectionClosed:
                            return
                        if msg["msg_type"] == msg_type:
                            arrivals[name] = trio.current_time()
                        if msg["msg_type"] == 8:
                            assert msg["state"] == 4

            async with trio.open_nursery() as nursery:
                nursery.start_soon(last_arrival, "audio", audio, 14)
                nursery.start_soon(last_arrival, "transcript", text, 17)
                nursery.start_soon(last_arrival, "end", sig, 8)
        assert set(arrivals) == {"audio", "transcript", "end"}
        # the last transcript line falls due at the end time itself
        assert arrivals["end"] - arrivals["transcript"] >= 0.08
        assert arrivals["end"] - arrivals["audio"] >= 0.08
        assert sim.counters.sessions_ended == 1
        assert sim.counters.media_frames_sent == sim.counters.media_frames_scheduled


async def test_a_stream_too_far_behind_for_the_native_sender_goes_through_python(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import rtms_fast.sim.server as server

    monkeypatch.setattr(server, "_NATIVE_SCRATCH_BYTES", 0)  # the sender's minimum, 64 KB
    async with run_simulator(fast_config(duration_s=30)) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as sig, \
                ws_connect(sim, sim.media_urls()["audio"]) as media:
            await signaling_handshake(sim, sig, session)
            await media_handshake(sim, media, session, 1)
            stream = session.media[1]
            await send_ready(sig, session)
            with trio.fail_after(2):
                while stream.native_slot < 0:
                    await trio.sleep(0.005)
            # a sweep 2 s late: ~100 frames (~100 KB) due at once, more than the scratch
            sim._sweep(trio.current_time() + 2.0)
            assert stream.native_slot < 0  # handed back: the Python path sent them
            track = stream.tracks[0]
            sent = track.next_index
            assert sent >= 100
            expected = b"".join(track.build(0, sent - 1))
            raw = bytearray()
            with trio.fail_after(3):
                while len(raw) < len(expected):
                    raw += await media.stream.receive_some(1 << 20)
            assert bytes(raw[: len(expected)]) == expected
            c = sim.counters
            assert c.audio_frames_sent == sent and c.native_audio_frames_sent < sent
