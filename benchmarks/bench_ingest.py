"""The batched ingest kernel against the best pure-Python path, on 20 ms G.711 A-law
over RTP messages (the production format of RTMS G.711 audio), in batches of 16, 64
and 256 messages.

anchor  : msgspec Struct with a ``bytes`` field (base64 decoded in C by msgspec), RTP
          header by ``struct``, ``np.frombuffer`` + a 256-entry numpy table for A-law,
          samples copied into a preallocated array. The anchor gets its messages
          already split out of the WebSocket frames (a head start the kernel does not get).
subject : ``IngestBatch.run`` on the raw frame bytes (frames, envelope, base64, RTP,
          A-law, ring write), and the bare ``lib.rtms_ingest_batch`` call.

Both sides see fresh RTP sequence numbers every round (rounds cycle through 65536
messages, so the sequence wraps seamlessly). ``extra_info`` records us per message
and, for subjects, the ratio of the anchor's time per message to theirs.
Target: <= 1 us per message amortised for the kernel.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import numpy as np
import pytest

from rtms_fast.bench.workloads import G711RtpWorkload, g711_rtp_message, ws_text_frame
from rtms_fast.ingest import Codec, ContentType, IngestBatch, IngestConfig, IngestConnection
from rtms_fast.native import ffi, lib

BATCHES = (16, 64, 256)
_anchor_us: dict[int, float] = {}
_workloads: dict[int, G711RtpWorkload] = {}


def rounds(n: int) -> G711RtpWorkload:
    if n not in _workloads:
        _workloads[n] = G711RtpWorkload(n)
    return _workloads[n]


def _config() -> IngestConfig:
    return IngestConfig(
        codec=Codec.PCMA, content_type=ContentType.RTP, input_rate_hz=8000, ring_capacity_ms=2000
    )


def _record(benchmark: Any, n: int, role: str) -> None:
    us = benchmark.stats.stats.median / n * 1e6
    benchmark.extra_info["us_per_msg"] = round(us, 4)
    if role == "anchor":
        _anchor_us[n] = us
    elif n in _anchor_us:
        benchmark.extra_info["speedup_vs_anchor"] = round(_anchor_us[n] / us, 2)


@pytest.mark.parametrize("n", BATCHES)
def test_ingest_anchor_msgspec_numpy(benchmark: Any, n: int) -> None:
    run = rounds(n).python_path()
    benchmark.group = f"ingest-g711-rtp-{n}"
    benchmark.extra_info.update(
        items=n, unit="msgs", role="anchor", anchor="msgspec bytes field + numpy A-law table"
    )
    benchmark(run)
    _record(benchmark, n, "anchor")


@pytest.mark.parametrize("n", BATCHES)
def test_ingest_batch_python_face(benchmark: Any, n: int) -> None:
    conn = IngestConnection(_config())
    batch = IngestBatch(max_connections=4, max_records=64)
    source = rounds(n).cycle_frames()

    def run() -> None:
        data = next(source)
        result = batch.run([(conn, data)])
        if result.consumed[0] != len(data):
            raise AssertionError("not all consumed")

    benchmark.group = f"ingest-g711-rtp-{n}"
    benchmark.extra_info.update(items=n, unit="msgs", role="subject")
    benchmark(run)
    _record(benchmark, n, "subject")
    st = conn.stats()
    assert st.errors_total == 0 and st.rtp_duplicate == 0 and st.rtp_lost == 0
    assert st.audio_ingested == st.messages


@pytest.mark.parametrize("n", BATCHES)
def test_ingest_batch_native_call(benchmark: Any, n: int) -> None:
    conn = IngestConnection(_config())
    frames = rounds(n).frames
    pinned = [ffi.from_buffer("uint8_t[]", f) for f in frames]
    conns = ffi.new("rtms_ingest_conn *[]", [conn.native_handle])
    bufs = [ffi.new("const uint8_t *[]", [p]) for p in pinned]
    lens = [ffi.new("size_t[]", [len(f)]) for f in frames]
    consumed = ffi.new("size_t[]", 1)
    records = ffi.new("rtms_ingest_record[]", 64)
    status = ffi.new("uint32_t *")
    order = itertools.cycle(range(len(frames)))
    batch_fn = lib.rtms_ingest_batch

    def run() -> None:
        i = next(order)
        batch_fn(conns, bufs[i], lens[i], 1, consumed, records, 64, status)

    benchmark.group = f"ingest-g711-rtp-{n}"
    benchmark.extra_info.update(items=n, unit="msgs", role="subject")
    benchmark(run)
    _record(benchmark, n, "subject")
    st = conn.stats()
    assert st.errors_total == 0 and st.rtp_duplicate == 0 and st.audio_ingested == st.messages


B64_TEXT_BYTES = 1 << 20


@pytest.fixture(scope="module")
def b64_text() -> bytes:
    raw = np.random.default_rng(5).integers(0, 256, B64_TEXT_BYTES // 4 * 3, dtype=np.uint8)
    return base64.b64encode(raw.tobytes())


def test_b64_decode_anchor_stdlib(benchmark: Any, b64_text: bytes) -> None:
    benchmark.group = "base64-decode"
    benchmark.extra_info.update(
        items=len(b64_text), unit="bytes", role="anchor", anchor="base64.b64decode(validate=True)"
    )
    benchmark(base64.b64decode, b64_text, validate=True)


def test_b64_decode_native(benchmark: Any, b64_text: bytes) -> None:
    src = ffi.from_buffer("uint8_t[]", b64_text)
    cap = int(lib.rtms_b64_decoded_max(len(b64_text)))
    out = bytearray(cap)
    dst = ffi.from_buffer("uint8_t[]", out)
    benchmark.group = "base64-decode"
    benchmark.extra_info.update(items=len(b64_text), unit="bytes", role="subject")
    n = benchmark(lib.rtms_b64_decode, src, len(b64_text), dst, cap)
    assert bytes(out[:n]) == base64.b64decode(b64_text)
    benchmark.extra_info["gb_per_s"] = round(len(b64_text) / benchmark.stats.stats.median / 1e9, 3)


# ---- many connections, one message each: the pump's sweep -------------------------------
#
# A sweep hands the kernel one input per socket, and between two sweeps the rest of the
# process evicts every connection's state, so each input starts cold. "cold" evicts the
# caches (a pass over 16 MiB) before every round, then writes the round's frames into one
# arena as the batched receive would; "warm" runs the same rounds back to back. The ratio
# (warm us / cold us) shows how much of the cache misses the kernel's fetching ahead hides.

SWEEP_CONNECTIONS = 1000
_sweep_us: dict[str, float] = {}


class _SweepRounds:
    def __init__(self) -> None:
        n = SWEEP_CONNECTIONS
        self.conns = [IngestConnection(_config()) for _ in range(n)]
        codes = np.random.default_rng(7).integers(0, 256, 160, dtype=np.uint8).tobytes()
        self.frames = [ws_text_frame(g711_rtp_message(seq, codes)) for seq in range(4096)]
        self.stride = max(len(f) for f in self.frames)
        self.arena = ffi.new("uint8_t[]", n * self.stride)
        self.p_conns = ffi.new("rtms_ingest_conn *[]", [c.native_handle for c in self.conns])
        self.bufs = ffi.new("const uint8_t *[]", [self.arena + i * self.stride for i in range(n)])
        self.lens = ffi.new("size_t[]", n)
        self.consumed = ffi.new("size_t[]", n)
        self.records = ffi.new("rtms_ingest_record[]", 4 * n)
        self.status = ffi.new("uint32_t *")
        self.evict = np.zeros(16 << 20, np.uint8)
        self.seq = 0

    def fill(self) -> None:
        frame = self.frames[self.seq % len(self.frames)]
        self.seq += 1
        for i in range(SWEEP_CONNECTIONS):
            ffi.memmove(self.arena + i * self.stride, frame, len(frame))
            self.lens[i] = len(frame)

    def run(self) -> None:
        lib.rtms_ingest_batch(self.p_conns, self.bufs, self.lens, SWEEP_CONNECTIONS,
                              self.consumed, self.records, 4 * SWEEP_CONNECTIONS, self.status)

    def check(self) -> None:
        for conn in self.conns:
            st = conn.stats()
            assert st.errors_total == 0 and st.audio_ingested == st.messages == self.seq


@pytest.mark.parametrize("caches", ["warm", "cold"])
def test_ingest_batch_sweep_of_connections(benchmark: Any, caches: str) -> None:
    rounds = _SweepRounds()

    def setup() -> None:
        if caches == "cold":
            rounds.evict += 1
        rounds.fill()

    benchmark.group = f"ingest-sweep-{SWEEP_CONNECTIONS}-connections"
    benchmark.extra_info.update(items=SWEEP_CONNECTIONS, unit="msgs", caches=caches)
    benchmark.pedantic(rounds.run, setup=setup, rounds=200, warmup_rounds=5)
    rounds.check()
    if benchmark.stats is None:  # --benchmark-disable: one plain call
        return
    us = benchmark.stats.stats.median / SWEEP_CONNECTIONS * 1e6
    benchmark.extra_info["us_per_msg"] = round(us, 4)
    _sweep_us[caches] = us
    if caches == "cold" and "warm" in _sweep_us:
        benchmark.extra_info["warm_over_cold"] = round(_sweep_us["warm"] / us, 3)
