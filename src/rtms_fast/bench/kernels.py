"""Kernel benchmark cases: each native kernel beside its anchor.

A case builds its inputs once and returns a ``KernelCase``: the subject (our
kernel), the anchor (the best reference available in the same environment:
stdlib ``audioop``, the PyPI ``G722`` package, ``soxr``, a msgspec + numpy
path, ...) and how much work one call of each does. Cases whose anchor is not
installed are reported as unavailable, never faked.

``RTMS_BENCH_SLOWDOWN="case=factor,..."`` makes a case's subject do ``factor``
times its work: it exists to show that the regression gate catches a slowdown.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtms_fast.bench.timing import PairResult, measure_pair


@dataclass(frozen=True, slots=True)
class KernelCase:
    name: str
    unit: str
    subject: Callable[[], object]
    anchor: Callable[[], object]
    items_subject: float
    items_anchor: float
    anchor_name: str
    target: str = ""  # the documented target, for reports


class AnchorUnavailable(RuntimeError):
    """The case's reference implementation is not installed here."""


def _slowdown(name: str) -> int:
    spec = os.environ.get("RTMS_BENCH_SLOWDOWN", "")
    for part in filter(None, (p.strip() for p in spec.split(","))):
        case, _, factor = part.partition("=")
        if case == name:
            return max(1, int(factor or "2"))
    return 1


def _with_slowdown(name: str, fn: Callable[[], object]) -> Callable[[], object]:
    factor = _slowdown(name)
    if factor == 1:
        return fn

    def slowed() -> object:
        result = None
        for _ in range(factor):
            result = fn()
        return result

    return slowed


def _import_quietly(module: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise AnchorUnavailable(f"{module} is not installed") from exc


def case_g711_decode(block: int = 1 << 20) -> KernelCase:
    """A-law decode of a large block vs audioop (or a numpy 256-entry table)."""
    from rtms_fast.native import ffi, lib

    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, block, dtype=np.uint8)
    dst = np.empty(block, dtype=np.int16)
    p_src = ffi.from_buffer("uint8_t[]", src)
    p_dst = ffi.from_buffer("int16_t[]", dst)

    def subject() -> None:
        lib.rtms_alaw_decode(p_src, block, p_dst)

    raw = src.tobytes()
    try:
        audioop = _import_quietly("audioop")

        def anchor() -> object:
            return audioop.alaw2lin(raw, 2)

        anchor_name = "audioop.alaw2lin"
    except AnchorUnavailable:
        from rtms_fast.codecs import decode_alaw

        table = decode_alaw(bytes(range(256)))

        def anchor() -> object:
            return table[src]

        anchor_name = "numpy 256-entry table"
    return KernelCase(
        "g711_decode", "samples", _with_slowdown("g711_decode", subject), anchor,
        block, block, anchor_name, ">= 1.5e9 samples/s",
    )


def case_g722_decode(octets: int = 1 << 19) -> KernelCase:
    """G.722 mode-1 decode of a large block vs the PyPI ``G722`` package. Items: samples."""
    from rtms_fast.codecs import G722Decoder

    g722_mod = _import_quietly("G722")
    data = np.random.default_rng(6).integers(0, 256, octets, dtype=np.uint8).tobytes()
    ours = G722Decoder(1)
    theirs = g722_mod.G722(16000, 64000)

    def anchor() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return theirs.decode(data)

    return KernelCase("g722_decode", "samples",
                      _with_slowdown("g722_decode", lambda: ours.decode(data)), anchor,
                      2 * octets, 2 * octets, "PyPI G722", ">= 7e7 samples/s")


def case_resample_block(block: int = 1 << 18) -> KernelCase:
    """16 kHz -> 8 kHz int16 on a large block vs soxr (HQ). Items: output samples."""
    from rtms_fast.resample import resample

    soxr = _import_quietly("soxr")
    x = (np.random.default_rng(2).standard_normal(block) * 3000).astype(np.int16)
    out_items = block // 2
    return KernelCase(
        "resample_block", "out samples",
        _with_slowdown("resample_block", lambda: resample(x, 16000, 8000)),
        lambda: soxr.resample(x, 16000, 8000, "HQ"),
        out_items, out_items, "soxr.resample HQ", ">= 1e8 out samples/s",
    )


def case_resample_stream(chunks: int = 50) -> KernelCase:
    """8 kHz -> 16 kHz in 20 ms chunks (160 samples) vs soxr.ResampleStream. Items: chunks."""
    from rtms_fast.resample import Resampler

    soxr = _import_quietly("soxr")
    x = (np.random.default_rng(3).standard_normal(160 * chunks) * 3000).astype(np.int16)
    pieces = [x[i * 160 : (i + 1) * 160] for i in range(chunks)]
    ours = Resampler(8000, 16000, np.int16)
    theirs = soxr.ResampleStream(8000, 16000, 1, dtype="int16", quality="HQ")

    def subject() -> None:
        for piece in pieces:
            ours.process(piece)

    def anchor() -> None:
        for piece in pieces:
            theirs.resample_chunk(piece)

    return KernelCase(
        "resample_stream_20ms", "chunks", _with_slowdown("resample_stream_20ms", subject),
        anchor, chunks, chunks, "soxr.ResampleStream HQ", "<= 1 us per chunk (native loop)",
    )


def case_base64_decode(size: int = 1 << 20) -> KernelCase:
    """Standard base64 decode vs stdlib ``base64.b64decode(validate=True)``. Items: bytes."""
    import base64

    from rtms_fast.wire import b64decode

    text = base64.b64encode(np.random.default_rng(5).bytes(size // 4 * 3))
    return KernelCase(
        "base64_decode", "bytes", _with_slowdown("base64_decode", lambda: b64decode(text)),
        lambda: base64.b64decode(text, validate=True), len(text), len(text),
        "base64.b64decode", ">= 1e9 bytes/s",
    )


def case_ingest_g711_rtp(batch: int = 64) -> KernelCase:
    """The ingest kernel on 20 ms G.711-over-RTP messages, ``batch`` per call, vs the best
    pure-Python path (msgspec Struct with a bytes field, numpy A-law table). Items: messages."""
    from rtms_fast.bench.workloads import G711RtpWorkload
    from rtms_fast.ingest import Codec, ContentType, IngestBatch, IngestConfig, IngestConnection

    work = G711RtpWorkload(batch)
    conn = IngestConnection(IngestConfig(codec=Codec.PCMA, content_type=ContentType.RTP,
                                         input_rate_hz=8000, ring_capacity_ms=2000))
    runner = IngestBatch(max_connections=1, max_records=64)
    frames = work.cycle_frames()

    def subject() -> None:
        data = next(frames)
        if runner.run([(conn, data)]).consumed[0] != len(data):
            raise RuntimeError("ingest left bytes unconsumed")

    return KernelCase("ingest_g711_rtp", "msgs", _with_slowdown("ingest_g711_rtp", subject),
                      work.python_path(), batch, batch, "msgspec bytes field + numpy table",
                      "<= 1 us/msg amortised")


def case_ring_block(block: int = 320, blocks: int = 10) -> KernelCase:
    """Ring write of ``blocks`` 20 ms blocks then one zero-copy read + consume, vs copying
    the same blocks into a preallocated numpy array. Items: samples."""
    from rtms_fast.ring import AudioRing

    ring = AudioRing(1 << 14)
    data = (np.arange(block) % 1000).astype(np.int16)
    sink = np.empty(block * blocks, dtype=np.int16)

    def subject() -> None:
        for _ in range(blocks):
            ring.write(data)
        view = ring.read()
        ring.consume(len(view))

    def anchor() -> None:
        for i in range(blocks):
            sink[i * block : (i + 1) * block] = data
        sink.copy()

    n = block * blocks
    return KernelCase("ring_block", "samples", _with_slowdown("ring_block", subject), anchor,
                      n, n, "numpy copies")


CASES: dict[str, Callable[[], KernelCase]] = {
    "g711_decode": case_g711_decode,
    "g722_decode": case_g722_decode,
    "resample_block": case_resample_block,
    "resample_stream_20ms": case_resample_stream,
    "base64_decode": case_base64_decode,
    "ingest_g711_rtp": case_ingest_g711_rtp,
    "ring_block": case_ring_block,
}


E2E_CASES: tuple[str, ...] = ("load_engine_vs_naive",)
"""End-to-end cases: whole load runs (seconds each), not kernels."""


def run_case(name: str, rounds: int = 7, round_s: float = 0.02) -> PairResult:
    if name == "load_engine_vs_naive":
        from rtms_fast.bench.load import measure_engine_vs_naive

        return measure_engine_vs_naive()
    case = CASES[name]()
    return measure_pair(
        case.name, case.subject, case.anchor, case.items_subject, case.items_anchor,
        unit=case.unit, rounds=rounds, round_s=round_s,
    )
GATED_CASES: tuple[str, ...] = (
    "g711_decode", "g722_decode", "resample_block", "base64_decode", "ingest_g711_rtp",
    "load_engine_vs_naive",
)
"""The quick subset the regression gate runs on every submission."""
