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

from rtms_fast.bench.workloads import G711RtpWorkload
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
