"""The kernel's floor: what receiving one small message per socket per sweep costs here.

N loopback TCP connections; a sender in another process writes one 400-byte message on
every connection each 20 ms, spread over the interval; this process reads every socket
each 20 ms, alternating every half second between the pump's batched native receive
(``rtms_recv_sweep`` with delayed ACKs, as ``MediaPump`` calls it) and the anchor: a plain
Python loop of ``recv_into`` per socket, with Linux's default ACKs. Alternating within one
run cancels the drift of this machine's speed. The figure is the reading thread's CPU per
message in each way and their ratio; nothing is parsed, decoded or stored, so it is the
least any engine pays per message for the transport on this host (the engine's own share
in situ is the load report's ``in recv`` column).

Sizes: ``RTMS_BENCH_FLOOR_SOCKETS`` (default 200) and ``RTMS_BENCH_FLOOR_SECONDS`` (default
3), e.g. 1000 and 10 for the README's figures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from rtms_fast.native import ffi, lib
from rtms_fast.pump import _ACK_GAP_S, _ACK_REARM_S, point_fd_tables

SOCKETS = int(os.environ.get("RTMS_BENCH_FLOOR_SOCKETS", "200"))
SECONDS = float(os.environ.get("RTMS_BENCH_FLOOR_SECONDS", "3"))
MESSAGE_BYTES = 400
INTERVAL_S = 0.020
WINDOW_S = 0.5

# The sender: one message per descriptor every 20 ms, in groups spread over the interval,
# until stdin closes.
_SENDER = """
import os, select, sys, time
fds = [int(x) for x in sys.argv[1].split(",")]
message = b"m" * int(sys.argv[2])
interval, groups = float(sys.argv[3]), 10
size = -(-len(fds) // groups)
start = time.monotonic()
tick = sent = 0
while not select.select([sys.stdin], [], [], 0)[0]:
    for g in range(groups):
        for fd in fds[g * size : (g + 1) * size]:
            os.write(fd, message)
            sent += 1
        pause = start + tick * interval + (g + 1) * interval / groups - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    tick += 1
print(sent)
"""


def _pairs(n: int) -> tuple[list[socket.socket], list[socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(n)
    readers, writers = [], []
    try:
        for _ in range(n):
            reader = socket.create_connection(listener.getsockname())
            writer, _ = listener.accept()
            writer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader.setblocking(False)
            readers.append(reader)
            writers.append(writer)
    finally:
        listener.close()
    return readers, writers


class _NativeSweep:
    """``rtms_recv_sweep`` over every reader, the pump's way (tables by descriptor)."""

    def __init__(self, readers: list[socket.socket]) -> None:
        fds = [r.fileno() for r in readers]
        size = max(fds) + 1
        self.kind = np.zeros(size, np.uint8)
        self.kind[fds] = lib.RTMS_FD_ARENA
        self.conn = np.zeros(size, np.uint64)
        self.activity = np.zeros(size)
        self.armed = np.full(size, -np.inf)
        self.wake = np.zeros(size, np.uint8)
        self.tables = ffi.new("rtms_fd_tables *")
        point_fd_tables(self.tables, self.kind, self.conn, self.activity, self.armed, self.wake)
        n = len(fds)
        self.fds = ffi.new("int32_t[]", fds)
        self.n = n
        self.cap = 4 * 1024 * 1024
        self.arena = ffi.new("uint8_t[]", self.cap)
        self.outputs = [np.zeros(n, np.int32)] + [np.zeros(n, np.uint64) for _ in range(3)]
        self.inputs = ffi.new("rtms_sweep_inputs *")
        self.inputs.fds = ffi.cast("int32_t *", self.outputs[0].ctypes.data)
        self.inputs.conns = ffi.cast("uint64_t *", self.outputs[1].ctypes.data)
        self.inputs.bufs = ffi.cast("uint64_t *", self.outputs[2].ctypes.data)
        self.inputs.lens = ffi.cast("uint64_t *", self.outputs[3].ctypes.data)
        self.fail_fds = ffi.new("int32_t[]", n)
        self.fail_codes = ffi.new("int64_t[]", n)
        self.result = ffi.new("rtms_recv_sweep_result *")
        self.ack_rearms = 0

    def sweep(self) -> int:
        assert lib.rtms_recv_sweep(self.fds, self.n, self.tables, time.monotonic(), _ACK_GAP_S,
                                   _ACK_REARM_S, lib.RTMS_RECV_DELAY_ACK, self.arena, self.cap,
                                   256 * 1024, self.inputs, self.fail_fds, self.fail_codes,
                                   self.result) == 0
        assert self.result.failures == 0
        self.ack_rearms += int(self.result.ack_rearms)
        return int(self.result.bytes)


def _plain_acks(readers: list[socket.socket]) -> None:
    """Linux's default ACK behaviour again (the native sweep set delayed ACKs)."""
    if hasattr(socket, "TCP_QUICKACK"):
        for reader in readers:
            reader.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _python_sweep(readers: list[socket.socket], buffer: bytearray) -> int:
    got = 0
    for reader in readers:
        try:  # noqa: SIM105 - cheaper than contextlib.suppress in this loop
            got += reader.recv_into(buffer)
        except BlockingIOError:
            pass
    return got


def _measure() -> dict[str, Any]:
    readers, writers = _pairs(SOCKETS)
    sender = subprocess.Popen(
        [sys.executable, "-c", _SENDER, ",".join(str(w.fileno()) for w in writers),
         str(MESSAGE_BYTES), str(INTERVAL_S)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=[w.fileno() for w in writers])
    for w in writers:
        w.close()  # the sender holds them now
    native = _NativeSweep(readers)
    buffer = bytearray(256 * 1024)
    totals = {way: {"cpu_s": 0.0, "bytes": 0} for way in ("native", "python")}
    received = 0
    try:
        previous = ""
        start = next_sweep = time.monotonic()
        warm_until = start + 1.0
        end = warm_until + SECONDS
        while True:
            now = time.monotonic()
            if now >= end:
                break
            way = "native" if int((now - start) / WINDOW_S) % 2 == 0 else "python"
            if way != previous and way == "python":
                _plain_acks(readers)  # what the native sweep set does not carry over
            previous = way
            cpu = time.thread_time()
            got = native.sweep() if way == "native" else _python_sweep(readers, buffer)
            spent = time.thread_time() - cpu
            received += got
            if now >= warm_until:
                totals[way]["cpu_s"] += spent
                totals[way]["bytes"] += got
            next_sweep += INTERVAL_S
            pause = next_sweep - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    finally:
        assert sender.stdin is not None and sender.stdout is not None
        sender.stdin.close()
        sent = int(sender.stdout.read() or b"0")
        sender.stdout.close()
        sender.wait(timeout=10)
    # what was sent while reading and is still queued: read it all to check the count
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        got = _python_sweep(readers, buffer)
        received += got
        if not got:
            time.sleep(0.05)
    for r in readers:
        r.close()
    return {"totals": totals, "received": received, "sent": sent,
            "ack_rearms": native.ack_rearms, "sender_exit": sender.returncode}


@pytest.mark.slow
def test_recv_floor() -> None:
    out = _measure()
    assert out["sender_exit"] == 0
    assert out["sent"] > 0 and out["received"] == out["sent"] * MESSAGE_BYTES
    figures = {}
    for way, t in out["totals"].items():
        messages = t["bytes"] / MESSAGE_BYTES
        assert messages > 0, way
        figures[way] = 1e6 * t["cpu_s"] / messages
    native_messages = out["totals"]["native"]["bytes"] / MESSAGE_BYTES
    print(f"\nrecv floor, {SOCKETS} sockets, one {MESSAGE_BYTES}-byte message each per "
          f"20 ms sweep: native sweep {figures['native']:.2f} us/msg, Python recv_into loop "
          f"{figures['python']:.2f} us/msg ({figures['python'] / figures['native']:.2f}x); "
          f"delayed-ACK re-arms {out['ack_rearms'] / native_messages:.3f} per message")
