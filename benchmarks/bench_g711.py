"""G.711 decode and encode throughput beside stdlib audioop / a numpy table lookup."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np
import pytest

from rtms_fast import codecs
from rtms_fast.native import ffi, lib

BLOCK = 1 << 20


def _audioop() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


@pytest.fixture(scope="module")
def codes() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, BLOCK, dtype=np.uint8)


def test_alaw_decode_native(benchmark: Any, codes: np.ndarray) -> None:
    out = np.empty(BLOCK, dtype=np.int16)
    src, dst = ffi.from_buffer("uint8_t[]", codes), ffi.from_buffer("int16_t[]", out)
    benchmark.group = "g711-decode"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="subject")
    benchmark(lib.rtms_alaw_decode, src, BLOCK, dst)
    np.testing.assert_array_equal(out, codecs.decode_alaw(codes.tobytes()))


def test_alaw_decode_python_api(benchmark: Any, codes: np.ndarray) -> None:
    data = codes.tobytes()
    benchmark.group = "g711-decode"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="subject")
    benchmark(codecs.decode_alaw, data)


def test_alaw_decode_anchor(benchmark: Any, codes: np.ndarray) -> None:
    benchmark.group = "g711-decode"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="anchor")
    audioop = _audioop()
    if audioop is not None:
        benchmark.extra_info["anchor"] = "audioop.alaw2lin"
        benchmark(audioop.alaw2lin, codes.tobytes(), 2)
    else:
        table = codecs.decode_alaw(bytes(range(256)))
        benchmark.extra_info["anchor"] = "numpy table lookup"
        benchmark(table.__getitem__, codes)


def test_alaw_encode_native(benchmark: Any) -> None:
    pcm = np.random.default_rng(4).integers(-32768, 32768, BLOCK, dtype=np.int16)
    benchmark.group = "g711-encode"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="subject")
    benchmark(codecs.encode_alaw, pcm)


def test_alaw_encode_anchor(benchmark: Any) -> None:
    pcm = np.random.default_rng(4).integers(-32768, 32768, BLOCK, dtype=np.int16)
    benchmark.group = "g711-encode"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="anchor")
    audioop = _audioop()
    if audioop is None:
        pytest.skip("no audioop on this Python: no encode anchor")
    benchmark(audioop.lin2alaw, pcm.tobytes(), 2)
