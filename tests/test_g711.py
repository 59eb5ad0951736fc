"""G.711 A-law and mu-law: exact for all 256 codes and all 65,536 int16 inputs."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

import numpy as np
import pytest

from rtms_fast import codecs

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)


def _audioop() -> ModuleType | None:
    """The stdlib reference where this Python still ships it (removed in 3.13)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:
            return None


def _alaw_formula(code: int) -> int:
    """A-law expansion written from the G.711 definition (segment, 4-bit step, +half step)."""
    v = code ^ 0x55
    sign = 1 if v & 0x80 else -1
    exponent = (v >> 4) & 0x07
    mantissa = v & 0x0F
    # segment 0 is linear; segment e >= 1 adds the implicit leading bit and doubles e - 1 times
    steps = mantissa * 2 + 1 if exponent == 0 else (mantissa * 2 + 33) << (exponent - 1)
    return sign * steps * 8


def _ulaw_formula(code: int) -> int:
    """mu-law expansion from the G.711 definition: ((2m + 33) << e) - 33, in 14-bit units."""
    v = ~code & 0xFF
    sign = -1 if v & 0x80 else 1
    exponent = (v >> 4) & 0x07
    mantissa = v & 0x0F
    magnitude = (((2 * mantissa + 33) << exponent) - 33) * 4
    return sign * magnitude


def test_alaw_decode_matches_formula_for_every_code() -> None:
    expected = np.array([_alaw_formula(c) for c in ALL_CODES], dtype=np.int16)
    np.testing.assert_array_equal(codecs.decode_alaw(ALL_CODES), expected)


def test_ulaw_decode_matches_formula_for_every_code() -> None:
    expected = np.array([_ulaw_formula(c) for c in ALL_CODES], dtype=np.int16)
    np.testing.assert_array_equal(codecs.decode_ulaw(ALL_CODES), expected)


@pytest.mark.parametrize(
    ("decode", "encode"),
    [(codecs.decode_alaw, codecs.encode_alaw), (codecs.decode_ulaw, codecs.encode_ulaw)],
)
def test_encode_inverts_decode_and_quantises_to_nearest(decode, encode) -> None:  # type: ignore[no-untyped-def]
    levels = decode(ALL_CODES)
    # Every reconstruction level encodes back to a code with the same level
    # (mu-law has two codes for zero, so compare levels, not codes).
    np.testing.assert_array_equal(decode(encode(levels)), levels)
    # Encoding is monotonic: larger input never maps to a smaller level.
    quantised = decode(encode(ALL_PCM)).astype(np.int32)
    assert np.all(np.diff(quantised) >= 0)
    # And each input maps to a level no farther than the local step size.
    sorted_levels = np.unique(levels.astype(np.int32))
    pcm32 = ALL_PCM.astype(np.int32)
    idx = np.clip(np.searchsorted(sorted_levels, pcm32), 1, len(sorted_levels) - 1)
    gap = sorted_levels[idx] - sorted_levels[idx - 1]
    inside = (sorted_levels[0] <= pcm32) & (pcm32 <= sorted_levels[-1])
    err = np.abs(quantised - ALL_PCM.astype(np.int32))
    assert np.all(err[inside] <= gap[inside])


def test_against_stdlib_audioop_when_available() -> None:
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop is not part of this Python (3.13+); the formula tests cover it")
    raw = ALL_PCM.tobytes()
    assert codecs.encode_alaw(ALL_PCM) == audioop.lin2alaw(raw, 2)
    assert codecs.encode_ulaw(ALL_PCM) == audioop.lin2ulaw(raw, 2)
    assert codecs.decode_alaw(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)
    assert codecs.decode_ulaw(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_block_size_does_not_change_the_result() -> None:
    # Decoding in 100-byte pieces equals decoding the whole block.
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    whole = codecs.decode_alaw(data)
    pieces = np.concatenate([codecs.decode_alaw(data[i : i + 100]) for i in range(0, 5000, 100)])
    np.testing.assert_array_equal(whole, pieces)


def test_accepts_bytes_like_and_empty() -> None:
    assert codecs.decode_alaw(b"").shape == (0,)
    assert codecs.encode_ulaw(np.zeros(0, dtype=np.int16)) == b""
    np.testing.assert_array_equal(
        codecs.decode_ulaw(bytearray(b"\x00\xff")), codecs.decode_ulaw(memoryview(b"\x00\xff"))
    )
    assert codecs.encode_alaw(np.array([0, 1000], dtype=np.int16).tobytes()) == codecs.encode_alaw(
        np.array([0, 1000], dtype=np.int16)
    )


def test_rejects_wrong_dtype_and_odd_byte_count() -> None:
    with pytest.raises(TypeError, match="int16"):
        codecs.encode_alaw(np.zeros(4, dtype=np.float32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number"):
        codecs.encode_ulaw(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="1-D"):
        codecs.encode_alaw(np.zeros((2, 2), dtype=np.int16))
    with pytest.raises(TypeError):
        codecs.encode_alaw([1, 2, 3])  # type: ignore[arg-type]
