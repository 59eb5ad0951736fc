"""The native batched receive (csrc/recv_batch.c) and the pump's arena path over real
loopback sockets: bytes land where the offsets say, every outcome is reported, and a
socket read through the arena gets exactly what the Python path would give it (audio in
its ring, messages and control frames to the owner, partial frames kept, ends reported)."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import trio
from _loopback import tcp_pairs as loopback_tcp_pairs
from wsproto.connection import Connection, ConnectionType

from rtms_fast import codecs
from rtms_fast.bench.workloads import g711_rtp_message
from rtms_fast.ingest import (
    Codec,
    ContentType,
    IngestBatch,
    IngestConfig,
    IngestConnection,
    IngestRecord,
)
from rtms_fast.native import ffi, lib
from rtms_fast.pump import MediaPump, MediaSocket, point_fd_tables
from rtms_fast.ring import RingNotifier


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    return bytes([0x80 | opcode, 126]) + struct.pack(">H", n) + payload


@pytest.fixture
def tcp_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Three connected loopback TCP pairs: (sender, non-blocking receiver)."""
    pairs = loopback_tcp_pairs(3)
    for _, client in pairs:
        client.setblocking(False)
    yield pairs
    for server, client in pairs:
        server.close()
        client.close()


def _wait_readable(sock: socket.socket) -> None:
    assert select.select([sock], [], [], 2.0)[0], "no data arrived"


def _segments_sent(sock: socket.socket) -> int:
    """tcpi_segs_out of Linux's struct tcp_info (offset 136): every segment this socket
    sent, pure ACKs included."""
    return int(struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO,
                                                       256), 136)[0])


def test_epoll_ready_lists_only_readable_descriptors(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    poller = select.epoll()
    try:
        for _, c in tcp_pairs:
            poller.register(c.fileno(), select.EPOLLIN)
        fds = ffi.new("int32_t[]", 8)
        scratch = ffi.new("uint8_t[]", 8 * lib.rtms_epoll_event_bytes())
        assert lib.rtms_epoll_ready(poller.fileno(), scratch, len(scratch), fds, 8) == 0
        tcp_pairs[1][0].sendall(b"x")
        _wait_readable(tcp_pairs[1][1])
        count = lib.rtms_epoll_ready(poller.fileno(), scratch, len(scratch), fds, 8)
        assert count == 1 and fds[0] == tcp_pairs[1][1].fileno()
        assert lib.rtms_epoll_ready(-1, scratch, len(scratch), fds, 8) == -errno.EBADF
    finally:
        poller.close()


class _Tables:
    """The pump's per-descriptor tables, numpy arrays behind an ``rtms_fd_tables``."""

    def __init__(self, size: int) -> None:
        self.kind = np.zeros(size, np.uint8)
        self.conn = np.zeros(size, np.uint64)
        self.activity = np.zeros(size, np.float64)
        self.armed = np.full(size, -np.inf)
        self.wake = np.zeros(size, np.uint8)
        self.native = ffi.new("rtms_fd_tables *")
        point_fd_tables(self.native, self.kind, self.conn, self.activity, self.armed, self.wake)


def test_sweep_split_by_read_path() -> None:
    tables = _Tables(16)
    tables.kind[[3, 5]] = lib.RTMS_FD_ARENA
    tables.kind[7] = lib.RTMS_FD_TLS
    tables.conn[[3, 5, 7, 9]] = 1  # 9: ingest, but on the Python path for now
    fds = ffi.new("int32_t[]", [3, 4, 5, 7, 9, 40, -1])
    arena, python, count = ffi.new("int32_t[]", 7), ffi.new("int32_t[]", 7), ffi.new("size_t *")
    got = lib.rtms_sweep_split(fds, 7, tables.native, 0, arena, python, count)
    assert list(arena[0:got]) == [3, 5, 7]
    assert list(python[0 : count[0]]) == [4, 9, 40, -1]  # unknown descriptors: Python's
    got = lib.rtms_sweep_split(fds, 7, tables.native, 1, arena, python, count)
    assert got == 3 and list(python[0 : count[0]]) == [9]  # with an ingest connection only


class _Sweep:
    """Outputs of ``rtms_recv_sweep`` for up to n sockets."""

    def __init__(self, n: int, cap: int) -> None:
        self.cap = cap
        self.arena = ffi.new("uint8_t[]", cap)
        self.in_fds = np.zeros(n, np.int32)
        self.conns, self.bufs, self.lens = (np.zeros(n, np.uint64) for _ in range(3))
        self.inputs = ffi.new("rtms_sweep_inputs *")
        self.inputs.fds = ffi.cast("int32_t *", self.in_fds.ctypes.data)
        self.inputs.conns = ffi.cast("uint64_t *", self.conns.ctypes.data)
        self.inputs.bufs = ffi.cast("uint64_t *", self.bufs.ctypes.data)
        self.inputs.lens = ffi.cast("uint64_t *", self.lens.ctypes.data)
        self.fail_fds = ffi.new("int32_t[]", n)
        self.fail_codes = ffi.new("int64_t[]", n)
        self.result = ffi.new("rtms_recv_sweep_result *")

    def run(self, fds: list[int], tables: _Tables, now: float, flags: int = 0,
            max_per_fd: int = 1 << 16) -> Any:
        assert lib.rtms_recv_sweep(ffi.new("int32_t[]", fds), len(fds), tables.native, now,
                                   0.030, 0.2, flags, self.arena, self.cap, max_per_fd,
                                   self.inputs, self.fail_fds, self.fail_codes,
                                   self.result) == 0
        return self.result

    def data(self, k: int) -> bytes:
        return bytes(ffi.buffer(ffi.cast("uint8_t *", int(self.bufs[k])), int(self.lens[k])))

    def failures(self) -> list[tuple[int, int]]:
        return [(self.fail_fds[j], self.fail_codes[j]) for j in range(self.result.failures)]


def test_recv_sweep_makes_inputs_of_sockets_with_bytes(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (s0, c0), _, (s2, c2) = tcp_pairs
    fds = [c.fileno() for _, c in tcp_pairs]
    tables = _Tables(max(fds) + 1)
    tables.kind[fds] = [lib.RTMS_FD_TLS, lib.RTMS_FD_ARENA, lib.RTMS_FD_ARENA]
    tables.conn[fds] = [11, 22, 33]
    tables.activity[fds] = 1.0
    s0.sendall(b"first")
    s2.sendall(b"third socket")
    _wait_readable(c0)
    _wait_readable(c2)
    sweep = _Sweep(8, 1024)
    result = sweep.run([*fds, max(fds) + 5], tables, now=7.5)
    assert (result.inputs, result.tls_inputs, result.bytes) == (2, 1, 17)
    assert list(sweep.in_fds[:2]) == [fds[0], fds[2]] and list(sweep.conns[:2]) == [11, 33]
    assert sweep.data(0) == b"first" and sweep.data(1) == b"third socket"
    assert list(tables.activity[fds]) == [7.5, 1.0, 7.5]  # only the sockets that gave bytes
    assert sweep.failures() == [(max(fds) + 5, -errno.EBADF)]
    s2.close()
    _wait_readable(c2)
    result = sweep.run(fds, tables, now=8.0)
    assert result.inputs == 0 and sweep.failures() == [(fds[2], lib.RTMS_RECV_EOF)]
    s0.sendall(b"x" * 100)
    _wait_readable(c0)
    result = sweep.run(fds[:1], tables, now=9.0, max_per_fd=0)  # no room: not read
    assert (result.inputs, result.skipped, result.failures) == (0, 1, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux TCP delayed ACKs")
def test_recv_sweep_sets_delayed_acks_after_gaps_and_now_and_then(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    fds = [c.fileno() for _, c in tcp_pairs]
    tables = _Tables(max(fds) + 1)
    sweep = _Sweep(4, 1024)
    flags = lib.RTMS_RECV_DELAY_ACK
    assert sweep.run(fds, tables, 10.0, flags).ack_rearms == 3  # never set before
    assert list(tables.armed[fds]) == [10.0] * 3
    tables.activity[fds] = 10.01  # bytes came after the mode was set ...
    assert sweep.run(fds, tables, 10.02, flags).ack_rearms == 0  # ... no gap yet
    # a gap of 30 ms or more after the last bytes: set again, once per gap
    assert sweep.run(fds, tables, 10.05, flags).ack_rearms == 3
    assert sweep.run(fds, tables, 10.07, flags).ack_rearms == 0
    tables.activity[fds] = 10.2  # busy, but the last setting is 0.2 s old
    assert sweep.run(fds, tables, 10.26, flags).ack_rearms == 3
    assert sweep.run(fds, tables, 20.0, 0).ack_rearms == 0  # without the flag: never


def test_recv_sweep_lays_sockets_end_to_end_within_the_caps(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    (s0, c0), (s1, c1), (s2, c2) = tcp_pairs
    fds = [c.fileno() for _, c in tcp_pairs]
    tables = _Tables(max(fds) + 1)
    s0.sendall(b"a" * 100)
    s1.sendall(b"b" * 30)
    s2.sendall(b"c" * 10)
    for c in (c0, c1, c2):
        _wait_readable(c)
    sweep = _Sweep(3, 100)
    # per-socket cap 64: c0 gives 64; c1 gets the 30 it has; c2 finds 6 bytes of room
    result = sweep.run(fds, tables, 1.0, max_per_fd=64)
    assert (result.inputs, result.bytes) == (3, 100)
    arena = int(ffi.cast("uintptr_t", sweep.arena))
    assert [int(sweep.bufs[k]) - arena for k in range(3)] == [0, 64, 94]
    assert [sweep.data(k) for k in range(3)] == [b"a" * 64, b"b" * 30, b"c" * 6]
    # the arena is full now for a further socket: skipped, not read
    result = sweep.run(fds[:1], tables, 2.0, max_per_fd=0)
    assert (result.inputs, result.skipped, result.failures) == (0, 1, 0)
    assert c0.recv(100) == b"a" * 36  # nothing was lost


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux TCP delayed ACKs")
def test_delayed_acks_last_between_rearms(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """What the pump relies on to set delayed ACKs only now and then: once set, the mode
    lasts while segments keep coming (the reader ACKs every second one), and without it
    every read of a small segment sends an ACK."""
    sweep = _Sweep(1, 4096)
    reads = 40

    def acks(pair: tuple[socket.socket, socket.socket], flags: int, every_read: bool) -> int:
        server, client = pair
        fd = client.fileno()
        tables = _Tables(fd + 1)
        before = _segments_sent(client)
        for _ in range(reads):
            server.sendall(bytes(300))
            _wait_readable(client)
            if every_read:
                tables.armed[fd] = -np.inf  # as if never set: set before this read
            result = sweep.run([fd], tables, time.monotonic(), flags)
            assert result.inputs == 1 and sweep.lens[0] == 300
        return _segments_sent(client) - before

    never = acks(tcp_pairs[0], 0, False)
    # the best of three: a pause of 40 ms in a busy test run lets the timer fire once
    every_read = min(acks(tcp_pairs[1], lib.RTMS_RECV_DELAY_ACK, True) for _ in range(3))
    by_the_rule = min(acks(tcp_pairs[2], lib.RTMS_RECV_DELAY_ACK, False) for _ in range(3))
    assert never >= reads - 2
    assert every_read <= reads // 2 + 3
    assert by_the_rule <= reads // 2 + 3


def test_sweep_settle_wakes_asking_owners_and_lists_leftovers() -> None:
    tables = _Tables(10)
    tables.wake[[2, 4, 6]] = 1
    input_fds = ffi.new("int32_t[]", [2, 4, 6, 8])
    consumed = ffi.new("size_t[]", [10, 0, 5, 7])
    lens = ffi.new("size_t[]", [10, 3, 9, 7])
    rest, rest_count, asked = ffi.new("int32_t[]", 4), ffi.new("size_t *"), ffi.new("int32_t[]", 4)
    woken = lib.rtms_sweep_settle(consumed, lens, 4, input_fds, tables.native, rest, rest_count,
                                  asked)
    assert list(asked[0:woken]) == [2, 6]  # 4 consumed nothing; 8 did not ask
    assert list(tables.wake[[2, 4, 6]]) == [0, 1, 0]
    assert list(rest[0 : rest_count[0]]) == [1, 2]
    assert lib.rtms_sweep_settle(consumed, lens, 4, input_fds, tables.native, rest, rest_count,
                                 asked) == 0  # asked once


class _Owner:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.records: list[IngestRecord] = []
        self.audio_notices = 0
        self.closed: tuple[int, str] | None = None
        self.notifier: RingNotifier | None = None  # woken on audio, like a session's

    def on_media_messages(self, media_socket: MediaSocket, messages: list[bytes]) -> None:
        self.messages.extend(messages)

    def on_media_closed(self, media_socket: MediaSocket, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def on_ingest_record(self, media_socket: MediaSocket, record: IngestRecord) -> None:
        self.records.append(record)

    def on_audio_ingested(self, media_socket: MediaSocket) -> None:
        self.audio_notices += 1
        if self.notifier is not None:
            self.notifier.notify()


async def _sweep_until(pump: MediaPump, done: Callable[[], bool], rounds: int = 100) -> None:
    for _ in range(rounds):
        pump.sweep()
        if done():
            return
        await trio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_arena_path_matches_the_stream(
    tcp_pairs: list[tuple[socket.socket, socket.socket]], sweep_mode: str,
) -> None:
    pump = MediaPump(20)
    config = g711_config_for_tests()
    owners: list[_Owner] = []
    ingests: list[IngestConnection] = []
    servers: list[socket.socket] = []
    for server, client in tcp_pairs:
        _, ingest, owner = _ingest_socket(pump, client, config)
        owners.append(owner)
        ingests.append(ingest)
        servers.append(server)
    rng = np.random.default_rng(5)
    codes = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(6)]
    frames = [_frame(g711_rtp_message(seq, codes[seq])) for seq in range(6)]
    pump.sweep()  # new sockets take the Python path once
    assert all(pump._kind_by_fd[c.fileno()] == 1 for _, c in tcp_pairs)
    # socket 0: two whole frames, then a frame split across two sweeps
    servers[0].sendall(frames[0] + frames[1] + frames[2][:50])
    # socket 1: audio, a keep-alive style message, a ping
    keepalive = b'{"msg_type":12,"timestamp":1}'
    servers[1].sendall(frames[0] + _frame(keepalive) + _frame(b"hi", opcode=0x9))
    await _sweep_until(pump, lambda: len(owners[1].messages) == 1)
    await _sweep_until(pump, lambda: ingests[0].stats().audio_ingested == 2)
    assert pump._kind_by_fd[tcp_pairs[0][1].fileno()] == 0  # holds a partial frame
    servers[0].sendall(frames[2][50:] + frames[3])
    await _sweep_until(pump, lambda: ingests[0].stats().audio_ingested == 4)
    assert pump._kind_by_fd[tcp_pairs[0][1].fileno()] == 1  # back on the arena path
    expected = np.concatenate([codecs.decode_alaw(c) for c in codes[:4]])
    np.testing.assert_array_equal(ingests[0].ring(0).read_copy(), expected)
    assert owners[1].messages == [keepalive]
    pong = tcp_pairs[1][0].recv(64)
    assert pong[0] == 0x8A and pong[1] & 0x7F == 2  # a masked pong echoing "hi"
    assert {r.user_id for o in owners[:2] for r in o.records} == {16778240}
    assert owners[0].audio_notices >= 2 and owners[2].audio_notices == 0
    # socket 2: the peer goes away without a close frame
    servers[2].close()
    await _sweep_until(pump, lambda: owners[2].closed is not None)
    assert owners[2].closed == (1006, "connection lost without a close frame")
    assert pump.stats.sockets == 2
    assert (pump.stats.poll_free_sweeps > 0) == (sweep_mode == "poll-free")


def _ingest_socket(pump: MediaPump, client: socket.socket, config: IngestConfig,
                   owner: _Owner | None = None) -> tuple[MediaSocket, IngestConnection, _Owner]:
    """A media socket past its handshakes, on the native ingest path, registered."""
    media = MediaSocket(client, "ws://127.0.0.1/", None, None, None, 1 << 20)
    media._ws = _open_client()
    ingest = IngestConnection(config)
    media.start_data_phase(ingest)
    owner = owner or _Owner()
    pump.register(media, owner)
    return media, ingest, owner


def _open_client() -> Any:
    """A wsproto client connection already past its upgrade: it frames (masked, as a
    client must) the pongs the socket answers with."""
    return Connection(ConnectionType.CLIENT)


async def test_arena_path_calls_again_when_the_records_fill_up(
    tcp_pairs: list[tuple[socket.socket, socket.socket]], sweep_mode: str,
) -> None:
    """With room for two records per kernel call, ONE sweep still delivers every message of
    every socket in order, and the audio after them lands in the rings."""
    pump = MediaPump(20)
    pump._batch = IngestBatch(max_connections=8, max_records=2)
    config = g711_config_for_tests()
    owners: list[_Owner] = []
    ingests: list[IngestConnection] = []
    for _, client in tcp_pairs:
        _, ingest, owner = _ingest_socket(pump, client, config)
        owners.append(owner)
        ingests.append(ingest)
    pump.sweep()
    codes = bytes(range(160))
    for k, (server, _) in enumerate(tcp_pairs):
        texts = [b'{"msg_type":12,"n":%d,"k":%d}' % (n, k) for n in range(7)]
        server.sendall(b"".join(_frame(t) for t in texts)
                       + _frame(g711_rtp_message(k, codes)))
    for _, client in tcp_pairs:
        _wait_readable(client)
    pump.sweep()  # one sweep: the kernel is called again until every input is done
    for k, owner in enumerate(owners):
        assert owner.messages == [b'{"msg_type":12,"n":%d,"k":%d}' % (n, k) for n in range(7)]
    assert all(i.stats().audio_ingested == 1 for i in ingests)
    assert all(o.audio_notices == 1 for o in owners)


async def test_audio_is_announced_only_when_a_reader_asks(
    tcp_pairs: list[tuple[socket.socket, socket.socket]], sweep_mode: str,
) -> None:
    """The native path calls ``on_audio_ingested`` for the first audio, then only after
    the socket's doorbell rang (a reader registered on a notifier): no Python call per
    message while nobody waits, and no lost wake-up when someone does."""
    pump = MediaPump(20)
    config = g711_config_for_tests()
    server, client = tcp_pairs[0]
    media, ingest, owner = _ingest_socket(pump, client, config)
    notifier = owner.notifier = RingNotifier()
    notifier.add_doorbell(pump.audio_doorbell(media))
    pump.sweep()  # the Python path once
    codes = bytes(range(160))

    async def send_and_ingest(seq: int) -> None:
        server.sendall(_frame(g711_rtp_message(seq, codes)))
        await _sweep_until(pump, lambda: ingest.stats().audio_ingested == seq + 1)

    await send_and_ingest(0)
    assert owner.audio_notices == 1  # the first audio is always announced
    await send_and_ingest(1)
    await send_and_ingest(2)
    assert owner.audio_notices == 1  # nobody waits: no calls
    readable = ingest.ring(0).available

    # a Trio reader registers (ringing the doorbell) and sleeps until more audio comes
    woke = trio.Event()

    async def reader() -> None:
        await notifier.wait_trio(lambda: ingest.ring(0).available > readable)
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(0.01)
        assert pump._wake_by_fd[client.fileno()] == 1
        await send_and_ingest(3)
        with trio.fail_after(2):
            await woke.wait()
    assert owner.audio_notices == 2
    await send_and_ingest(4)
    assert owner.audio_notices == 2  # the doorbell is spent until a reader asks again


async def test_output_the_kernel_did_not_take_is_sent_by_later_sweeps(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """A socket whose send buffer is full keeps its output and asks the pump to come back
    (no per-sweep scan of every socket for queued output): once the peer reads, the
    following sweeps deliver every byte, in order."""
    server, client = tcp_pairs[0]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    pump = MediaPump(20)
    media, _, _ = _ingest_socket(pump, client, g711_config_for_tests())
    pump.sweep()
    payload = bytes(range(256)) * 64  # 16 KiB per message
    for _ in range(32):
        media.send_message(payload, binary=True)
    assert media._pending_out  # the kernel took only part of it
    assert media in pump._attention
    expected_total = len(payload) * 32
    got = bytearray()
    server.setblocking(False)
    with trio.fail_after(10):
        while True:
            with contextlib.suppress(BlockingIOError):
                got += server.recv(1 << 20)
            pump.sweep()
            if not media._pending_out and media not in pump._attention:
                with contextlib.suppress(BlockingIOError):
                    got += server.recv(1 << 20)
                if len(got) >= expected_total + 32 * 8:
                    break
            await trio.sleep(0.002)
    # 32 masked binary frames (8-byte headers: 16-bit length + mask), payloads unmasked
    frames = []
    pos = 0
    while pos < len(got):
        assert got[pos] == 0x82 and got[pos + 1] == 0x80 | 126
        length = struct.unpack("!H", got[pos + 2 : pos + 4])[0]
        mask = np.frombuffer(bytes(got[pos + 4 : pos + 8]) * (length // 4 + 1), np.uint8)
        body = np.frombuffer(bytes(got[pos + 8 : pos + 8 + length]), np.uint8) ^ mask[:length]
        frames.append(body.tobytes())
        pos += 8 + length
    assert frames == [payload] * 32


def g711_config_for_tests() -> IngestConfig:
    return IngestConfig(codec=Codec.PCMA, content_type=ContentType.RTP, input_rate_hz=8000)


async def test_aclose_on_its_own_counts_what_it_discards(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """``MediaSocket.aclose`` without a reader: messages before the server's close frame
    are discarded, and counted, never dropped silently."""
    server, client = tcp_pairs[0]
    media = MediaSocket(client, "ws://127.0.0.1/", None, None, None, 1 << 20)
    media._ws = _open_client()
    media.start_data_phase(None)
    server.sendall(_frame(b'{"msg_type":12,"timestamp":1}') + _frame(b'{"msg_type":17}')
                   + _frame(struct.pack("!H", 1000), opcode=0x8))
    with trio.fail_after(5):
        await media.aclose(1000, timeout_s=2)
    assert media.messages_discarded_on_close == 2
    assert media.closed and media.close_code == 1000


async def test_sweep_lag_is_measured(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """A sweep held up (here an owner that blocks 60 ms once) shows as lag: the latency the
    engine added beyond its sweep interval, and a late sweep."""
    import time

    server, client = tcp_pairs[0]
    pump = MediaPump(20)

    class _SlowOwner(_Owner):
        def on_media_messages(self, media_socket: MediaSocket, messages: list[bytes]) -> None:
            super().on_media_messages(media_socket, messages)
            time.sleep(0.06)

    owner = _SlowOwner()
    _ingest_socket(pump, client, g711_config_for_tests(), owner)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump.run)
        await trio.sleep(0.1)
        server.sendall(_frame(b'{"msg_type":12,"timestamp":1}'))
        with trio.fail_after(5):
            while not owner.messages:
                await trio.sleep(0.01)
        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert pump.stats.late_sweeps >= 1
    assert pump.stats.max_sweep_lag_s >= 0.03


async def test_delayed_acks_are_set_again_after_a_gap_or_a_while(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The arena path sets delayed ACKs before a socket's first read, then only when its
    last bytes came over _ACK_GAP_S ago (Linux's delayed-ACK timer may have ended the mode)
    or _ACK_REARM_S has passed since the last time; one system call per read otherwise."""
    from rtms_fast import pump as pump_module

    server, client = tcp_pairs[0]
    pump = MediaPump(20)
    _ingest_socket(pump, client, g711_config_for_tests())
    pump.sweep()  # new sockets take the Python path once
    rearms: list[int] = []

    async def read_after(gap_s: float, seq: int) -> None:
        await trio.sleep(gap_s)
        server.sendall(_frame(g711_rtp_message(seq, bytes(160))))
        _wait_readable(client)
        before = pump.stats.ack_rearms
        pump.sweep()
        rearms.append(pump.stats.ack_rearms - before)

    steady = round(pump_module._ACK_REARM_S / 0.02)
    for seq in range(steady + 3):  # traffic every 20 ms
        await read_after(0.02, seq)
    await read_after(pump_module._ACK_GAP_S + 0.01, steady + 3)  # after a gap
    await read_after(0.02, steady + 4)
    assert rearms[0] == 1  # the first arena read
    assert rearms[1 : steady - 1] == [0] * (steady - 2)
    assert sum(rearms[steady - 1 : steady + 3]) == 1  # _ACK_REARM_S after the first
    assert rearms[-2:] == [1, 0]


async def test_reads_without_delayed_acks_never_set_them(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    server, client = tcp_pairs[0]
    pump = MediaPump(20, delay_acks=False)
    _ingest_socket(pump, client, g711_config_for_tests())
    pump.sweep()
    server.sendall(_frame(g711_rtp_message(0, bytes(160))))
    _wait_readable(client)
    pump.sweep()
    assert pump.stats.bytes > 0 and pump.stats.ack_rearms == 0


async def test_unregister_after_close_frees_the_fd_for_its_next_owner(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """A socket unregistered after its descriptor was closed leaves nothing behind (found
    by the fd it was registered under), and a new socket given the same number works."""
    pump = MediaPump(20)
    config = g711_config_for_tests()
    medias = [_ingest_socket(pump, client, config)[0] for _, client in tcp_pairs]
    (_, c0), (_, c1), (_, c2) = tcp_pairs
    reused = c1.fileno()
    c1.close()  # fileno() is -1 from here on
    pump.unregister(medias[1])
    assert sorted(pump._by_fd) == sorted([c0.fileno(), c2.fileno()])
    assert pump.stats.sockets == 2
    assert medias[1]._pump is None
    pump.unregister(medias[1])  # twice is harmless
    pump.unregister(medias[0])
    assert sorted(pump._by_fd) == [c2.fileno()]
    # a new connection under the very number just freed
    [(server, client)] = loopback_tcp_pairs(1)
    target = socket.socket(fileno=os.dup2(client.fileno(), reused))
    client.close()
    try:
        target.setblocking(False)
        _, ingest, _ = _ingest_socket(pump, target, config)
        assert pump._by_fd[reused] is not medias[1]
        pump.sweep()
        server.sendall(_frame(g711_rtp_message(0, bytes(160))))
        await _sweep_until(pump, lambda: ingest.stats().audio_ingested == 1)
    finally:
        server.close()
        target.close()


async def test_sweeps_go_poll_free_while_nearly_every_socket_has_bytes(
    tcp_pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """Audio on every socket: the pump stops asking epoll and reads them all; a socket
    without native ingest (always on the Python path) is still watched and delivered.
    When most sockets fall silent, sweeps ask epoll again. Idle sockets read in poll-free
    sweeps count as empty reads."""
    pump = MediaPump(20)
    config = g711_config_for_tests()
    ingests: list[IngestConnection] = []
    for _, client in tcp_pairs[:2]:
        _, ingest, _ = _ingest_socket(pump, client, config)
        ingests.append(ingest)
    # the third socket has no native ingest: messages go to its owner through wsproto
    plain_server, plain_client = tcp_pairs[2]
    plain = MediaSocket(plain_client, "ws://127.0.0.1/", None, None, None, 1 << 20)
    plain._ws = _open_client()
    plain.start_data_phase(None)
    plain_owner = _Owner()
    pump.register(plain, plain_owner)
    pump.sweep()  # new sockets: the Python path once
    codes = bytes(range(160))
    for seq in range(6):
        for server, _ in tcp_pairs[:2]:
            server.sendall(_frame(g711_rtp_message(seq, codes)))
        for _, client in tcp_pairs[:2]:
            _wait_readable(client)
        if seq == 3:
            plain_server.sendall(_frame(b'{"msg_type":12,"timestamp":7}'))
            _wait_readable(plain_client)
        pump.sweep()
    assert [i.stats().audio_ingested for i in ingests] == [6, 6]
    assert plain_owner.messages == [b'{"msg_type":12,"timestamp":7}']
    assert pump.stats.poll_free_sweeps >= 4 and pump.stats.empty_reads == 0
    # socket 1 falls silent: half the arena sockets have bytes, below the share needed
    poll_free_before = pump.stats.poll_free_sweeps
    for seq in range(6, 12):
        tcp_pairs[0][0].sendall(_frame(g711_rtp_message(seq, codes)))
        _wait_readable(tcp_pairs[0][1])
        pump.sweep()
    assert ingests[0].stats().audio_ingested == 12
    # one poll-free sweep found socket 1 empty; from then on epoll was asked again
    assert pump.stats.poll_free_sweeps == poll_free_before + 1
    assert pump.stats.empty_reads == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux TCP delayed ACKs")
async def test_an_idle_socket_read_by_poll_free_sweeps_sets_delayed_acks_once(
    tcp_pairs: list[tuple[socket.socket, socket.socket]], sweep_mode: str,
) -> None:
    """Delayed ACKs are set again before the first read after a gap, not before every
    read of a socket that stays idle (poll-free sweeps read idle sockets too)."""
    pump = MediaPump(20)
    config = g711_config_for_tests()
    for _, client in tcp_pairs[:2]:
        _ingest_socket(pump, client, config)
    pump.sweep()
    codes = bytes(range(160))
    for seq in range(3):  # both busy: poll-free from here on in that mode
        for server, client in tcp_pairs[:2]:
            server.sendall(_frame(g711_rtp_message(seq, codes)))
            _wait_readable(client)
        pump.sweep()
    await trio.sleep(0.04)  # a gap: both sockets are due a re-arm
    rearms = pump.stats.ack_rearms
    for seq in range(3, 8):  # socket 0 busy, socket 1 idle
        tcp_pairs[0][0].sendall(_frame(g711_rtp_message(seq, codes)))
        _wait_readable(tcp_pairs[0][1])
        pump.sweep()
    # socket 0 once after the gap; socket 1, if read at all, once too
    assert pump.stats.ack_rearms - rearms <= 2
