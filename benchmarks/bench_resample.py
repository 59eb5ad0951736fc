"""Resampler throughput and per-chunk cost, beside python-soxr (HQ) measured in the same run.

Groups (see conftest.py: items are output samples, soxr is each group's anchor):

* ``resample-block-<in>-<out>-<dtype>``: 10 s of audio in one call (``resample`` against
  ``soxr.resample``);
* ``resample-chunk-py-<in>-<out>``: 20 ms int16 chunks from Python (``Resampler.process``
  against ``soxr.ResampleStream.resample_chunk``), 500 chunks per round;
* ``resample-chunk-c-<in>-<out>``: the same chunks from C (``rtms_resampler_process_repeat_i16``
  runs 2000 chunks in one call, so the kernel is measured, not the Python call), against
  soxr's chunk call from Python, the only way soxr can be driven here.

Every subject also times its soxr counterpart on the same input right there (median of 7)
and stores both rates and their ratio in ``benchmark.extra_info``
(``ours_output_samples_per_s``, ``soxr_output_samples_per_s``, ``speedup_vs_soxr``, and
``ours_us_per_chunk`` for chunks).

Run: ``pytest benchmarks/bench_resample.py --benchmark-only``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from rtms_fast.native import ffi, lib
from rtms_fast.resample import Resampler, resample

soxr = pytest.importorskip("soxr")

BLOCK_PAIRS = [(16000, 8000), (8000, 16000), (48000, 16000)]
CHUNK_PAIRS = [(8000, 16000), (16000, 8000), (16000, 48000)]
PY_CHUNKS = 500
C_CHUNKS = 2000


def _median_seconds(fn: Callable[[], object], runs: int = 7) -> float:
    fn()  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _speech_like(n: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(11)
    return (rng.standard_normal(n) * 3000).astype(np.int16)


def _tag(benchmark: Any, group: str, outputs: int, role: str) -> None:
    benchmark.group = group
    benchmark.extra_info.update(items=outputs, unit="samples", role=role)


def _record_ratio(benchmark: Any, soxr_seconds: float, outputs: int, chunks: int = 0) -> None:
    if benchmark.stats is None:  # --benchmark-disable: nothing was timed
        return
    ours_seconds = benchmark.stats.stats.median
    ours_rate, soxr_rate = outputs / ours_seconds, outputs / soxr_seconds
    benchmark.extra_info.update(
        ours_output_samples_per_s=ours_rate,
        soxr_output_samples_per_s=soxr_rate,
        speedup_vs_soxr=ours_rate / soxr_rate,
    )
    if chunks:
        benchmark.extra_info["ours_us_per_chunk"] = ours_seconds / chunks * 1e6
        benchmark.extra_info["soxr_us_per_chunk"] = soxr_seconds / chunks * 1e6


# ---- large blocks -----------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), BLOCK_PAIRS)
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_block_ours(benchmark: Any, in_rate: int, out_rate: int, dtype: type[Any]) -> None:
    x = _speech_like(in_rate * 10).astype(dtype)
    outputs = out_rate * 10
    _tag(benchmark, f"resample-block-{in_rate}-{out_rate}-{np.dtype(dtype)}", outputs, "subject")
    soxr_seconds = _median_seconds(lambda: soxr.resample(x, in_rate, out_rate, quality="HQ"))
    out = benchmark.pedantic(resample, args=(x, in_rate, out_rate), rounds=7, warmup_rounds=1)
    assert len(out) == outputs
    _record_ratio(benchmark, soxr_seconds, outputs)


@pytest.mark.parametrize(("in_rate", "out_rate"), BLOCK_PAIRS)
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_block_soxr_anchor(benchmark: Any, in_rate: int, out_rate: int, dtype: type[Any]) -> None:
    x = _speech_like(in_rate * 10).astype(dtype)
    _tag(
        benchmark, f"resample-block-{in_rate}-{out_rate}-{np.dtype(dtype)}", out_rate * 10, "anchor"
    )
    benchmark.extra_info["anchor"] = "soxr.resample HQ"
    benchmark.pedantic(
        soxr.resample, args=(x, in_rate, out_rate), kwargs={"quality": "HQ"}, rounds=7
    )


# ---- 20 ms chunks from Python -------------------------------------------------------------


def _soxr_chunks(in_rate: int, out_rate: int, chunk: npt.NDArray[np.int16], count: int) -> Any:
    stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")

    def run() -> None:
        for _ in range(count):
            stream.resample_chunk(chunk)

    return run


@pytest.mark.parametrize(("in_rate", "out_rate"), CHUNK_PAIRS)
def test_chunks_python_ours(benchmark: Any, in_rate: int, out_rate: int) -> None:
    chunk = _speech_like(in_rate // 50)
    outputs = PY_CHUNKS * (out_rate // 50)
    _tag(benchmark, f"resample-chunk-py-{in_rate}-{out_rate}", outputs, "subject")
    stream = Resampler(in_rate, out_rate)

    def run() -> None:
        for _ in range(PY_CHUNKS):
            stream.process(chunk)

    soxr_seconds = _median_seconds(_soxr_chunks(in_rate, out_rate, chunk, PY_CHUNKS))
    benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    _record_ratio(benchmark, soxr_seconds, outputs, PY_CHUNKS)


@pytest.mark.parametrize(("in_rate", "out_rate"), CHUNK_PAIRS)
def test_chunks_python_soxr_anchor(benchmark: Any, in_rate: int, out_rate: int) -> None:
    chunk = _speech_like(in_rate // 50)
    _tag(
        benchmark, f"resample-chunk-py-{in_rate}-{out_rate}", PY_CHUNKS * (out_rate // 50), "anchor"
    )
    benchmark.extra_info["anchor"] = "soxr.ResampleStream HQ"
    benchmark.pedantic(_soxr_chunks(in_rate, out_rate, chunk, PY_CHUNKS), rounds=7)


# ---- 20 ms chunks from C --------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), CHUNK_PAIRS)
def test_chunks_c_ours(benchmark: Any, in_rate: int, out_rate: int) -> None:
    chunk = _speech_like(in_rate // 50)
    outputs = C_CHUNKS * (out_rate // 50)
    _tag(benchmark, f"resample-chunk-c-{in_rate}-{out_rate}", outputs, "subject")
    flt = ffi.gc(lib.rtms_resample_filter_new(in_rate, out_rate), lib.rtms_resample_filter_free)
    state = ffi.gc(lib.rtms_resampler_new(flt), lib.rtms_resampler_free)
    out = np.empty(lib.rtms_resample_max_output(flt, len(chunk)), dtype=np.int16)
    src, dst = ffi.from_buffer("int16_t[]", chunk), ffi.from_buffer("int16_t[]", out)

    def run() -> int:
        return int(
            lib.rtms_resampler_process_repeat_i16(state, src, len(chunk), C_CHUNKS, dst, len(out))
        )

    # soxr from Python, per chunk, scaled to the same number of chunks
    soxr_seconds = _median_seconds(_soxr_chunks(in_rate, out_rate, chunk, 200)) * C_CHUNKS / 200
    written = benchmark.pedantic(run, rounds=7, warmup_rounds=1)
    assert written == outputs
    _record_ratio(benchmark, soxr_seconds, outputs, C_CHUNKS)


@pytest.mark.parametrize(("in_rate", "out_rate"), CHUNK_PAIRS)
def test_chunks_c_soxr_anchor(benchmark: Any, in_rate: int, out_rate: int) -> None:
    chunk = _speech_like(in_rate // 50)
    _tag(benchmark, f"resample-chunk-c-{in_rate}-{out_rate}", C_CHUNKS * (out_rate // 50), "anchor")
    benchmark.extra_info["anchor"] = "soxr.ResampleStream HQ, from Python"
    benchmark.pedantic(_soxr_chunks(in_rate, out_rate, chunk, C_CHUNKS), rounds=3)
