"""G.722 decode and encode throughput beside the PyPI ``G722`` package, in the same run.

Each subject test also times the anchor (PyPI ``G722``, a C implementation of the same
codec) on the same input right there, median of several runs, and records both rates
and their ratio in ``benchmark.extra_info``; the suite conftest prints the per-group
table (group ``g722-*``, anchor role = the PyPI package).

* large block: 2**19 octets = 2**20 samples (65 s of 16 kHz audio) in one call;
* 20 ms frames from Python: 160 octets per call through ``G722Decoder.decode``.

Run: ``pytest benchmarks/bench_g722.py --benchmark-only`` (add ``-s`` for a summary).
"""

from __future__ import annotations

import importlib
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from rtms_fast import codecs
from rtms_fast.native import ffi, lib

OCTETS = 1 << 19
SAMPLES = 2 * OCTETS
FRAME_OCTETS = 160
FRAMES = 500
SPEECH = Path(__file__).parent.parent / "tests" / "data" / "g722-full" / "speech.pcm"


def _pypi_g722() -> Any:
    # Import quietly: whatever the third-party anchor warns about is not under test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module("G722")
        except ImportError:
            return None


def _median_seconds(fn: Callable[[], object], runs: int = 7) -> float:
    fn()  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture(scope="module")
def pcm() -> npt.NDArray[np.int16]:
    """Speech looped to SAMPLES samples (the codec's speed depends a little on content)."""
    speech = np.fromfile(SPEECH, dtype="<i2").astype(np.int16)
    return np.resize(speech, SAMPLES)


@pytest.fixture(scope="module")
def octets(pcm: npt.NDArray[np.int16]) -> bytes:
    return codecs.encode_g722(pcm)


@pytest.fixture(scope="module")
def g722() -> Any:
    module = _pypi_g722()
    if module is None:
        pytest.skip("the PyPI G722 package is not installed: no anchor")
    return module


def _record(benchmark: Any, samples: int, anchor_seconds: float) -> None:
    ours = samples / benchmark.stats.stats.median
    anchor = samples / anchor_seconds
    benchmark.extra_info.update(
        samples_per_s=ours, anchor_samples_per_s=anchor, ratio_vs_pypi_g722=ours / anchor
    )
    print(
        f"\n{benchmark.name}: ours {ours / 1e6:.1f} M samples/s, PyPI G722 "
        f"{anchor / 1e6:.1f} M samples/s, ratio {ours / anchor:.2f}"
    )


# ---- decode, large block ---------------------------------------------------


def test_decode_native(benchmark: Any, octets: bytes, g722: Any) -> None:
    out = np.empty(SAMPLES, dtype=np.int16)
    dec = ffi.gc(lib.rtms_g722_decoder_new(1), lib.rtms_g722_decoder_free)
    src, dst = ffi.from_buffer("uint8_t[]", octets), ffi.from_buffer("int16_t[]", out)
    anchor = g722.G722(16000, 64000)
    anchor_s = _median_seconds(lambda: anchor.decode(octets))
    benchmark.group = "g722-decode"
    benchmark.extra_info.update(items=SAMPLES, unit="samples", role="subject")
    benchmark.pedantic(
        lib.rtms_g722_decode, args=(dec, src, OCTETS, dst), rounds=15, warmup_rounds=1
    )
    _record(benchmark, SAMPLES, anchor_s)


def test_decode_python_api(benchmark: Any, octets: bytes, g722: Any) -> None:
    anchor = g722.G722(16000, 64000)
    anchor_s = _median_seconds(lambda: anchor.decode(octets))
    benchmark.group = "g722-decode"
    benchmark.extra_info.update(items=SAMPLES, unit="samples", role="subject")
    out = benchmark.pedantic(codecs.decode_g722, args=(octets,), rounds=15, warmup_rounds=1)
    assert out.shape == (SAMPLES,)
    _record(benchmark, SAMPLES, anchor_s)


def test_decode_anchor(benchmark: Any, octets: bytes, g722: Any) -> None:
    anchor = g722.G722(16000, 64000)
    benchmark.group = "g722-decode"
    benchmark.extra_info.update(items=SAMPLES, unit="samples", role="anchor", anchor="PyPI G722")
    benchmark.pedantic(anchor.decode, args=(octets,), rounds=7, warmup_rounds=1)


# ---- encode, large block ---------------------------------------------------


def test_encode_python_api(
    benchmark: Any, pcm: npt.NDArray[np.int16], octets: bytes, g722: Any
) -> None:
    anchor = g722.G722(16000, 64000)
    anchor_s = _median_seconds(lambda: anchor.encode(pcm), runs=5)
    benchmark.group = "g722-encode"
    benchmark.extra_info.update(items=SAMPLES, unit="samples", role="subject")
    out = benchmark.pedantic(codecs.encode_g722, args=(pcm,), rounds=9, warmup_rounds=1)
    assert out == octets
    _record(benchmark, SAMPLES, anchor_s)


def test_encode_anchor(benchmark: Any, pcm: npt.NDArray[np.int16], g722: Any) -> None:
    anchor = g722.G722(16000, 64000)
    benchmark.group = "g722-encode"
    benchmark.extra_info.update(items=SAMPLES, unit="samples", role="anchor", anchor="PyPI G722")
    benchmark.pedantic(anchor.encode, args=(pcm,), rounds=5, warmup_rounds=1)


# ---- decode, 20 ms frames from Python ----------------------------------------


def test_decode_20ms_frames(benchmark: Any, octets: bytes, g722: Any) -> None:
    frames = [octets[i * FRAME_OCTETS : (i + 1) * FRAME_OCTETS] for i in range(FRAMES)]
    dec = codecs.G722Decoder(1)
    anchor = g722.G722(16000, 64000)

    def ours() -> None:
        for frame in frames:
            dec.decode(frame)

    def theirs() -> None:
        for frame in frames:
            anchor.decode(frame)

    anchor_s = _median_seconds(theirs)
    benchmark.group = "g722-decode-20ms"
    benchmark.extra_info.update(items=2 * FRAME_OCTETS * FRAMES, unit="samples", role="subject")
    benchmark.pedantic(ours, rounds=9, warmup_rounds=1)
    _record(benchmark, 2 * FRAME_OCTETS * FRAMES, anchor_s)


def test_decode_20ms_frames_anchor(benchmark: Any, octets: bytes, g722: Any) -> None:
    frames = [octets[i * FRAME_OCTETS : (i + 1) * FRAME_OCTETS] for i in range(FRAMES)]
    anchor = g722.G722(16000, 64000)

    def theirs() -> None:
        for frame in frames:
            anchor.decode(frame)

    benchmark.group = "g722-decode-20ms"
    benchmark.extra_info.update(
        items=2 * FRAME_OCTETS * FRAMES, unit="samples", role="anchor", anchor="PyPI G722"
    )
    benchmark.pedantic(theirs, rounds=9, warmup_rounds=1)
