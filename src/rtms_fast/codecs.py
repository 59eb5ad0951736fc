"""Audio codecs: G.711 A-law / mu-law (and G.722 once built), backed by C.

Every decoder takes bytes-like input and returns a new numpy int16 array;
every encoder takes an int16 array (or native-endian int16 bytes) and returns
bytes. Inputs of the wrong dtype are rejected, never converted silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rtms_fast.native import as_int16_array, ffi, lib

__all__ = ["decode_alaw", "decode_ulaw", "encode_alaw", "encode_ulaw"]


def _decode(fn: Any, data: Any) -> npt.NDArray[np.int16]:
    src = memoryview(data).cast("B")
    out = np.empty(len(src), dtype=np.int16)
    if len(src):
        fn(ffi.from_buffer("uint8_t[]", src), len(src), ffi.from_buffer("int16_t[]", out))
    return out


def _encode(fn: Any, pcm: Any) -> bytes:
    samples = as_int16_array(pcm)
    out = bytearray(len(samples))
    if len(samples):
        fn(ffi.from_buffer("int16_t[]", samples), len(samples), ffi.from_buffer("uint8_t[]", out))
    return bytes(out)


def decode_alaw(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Decode G.711 A-law bytes to int16 PCM (one sample per byte)."""
    return _decode(lib.rtms_alaw_decode, data)


def decode_ulaw(data: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    """Decode G.711 mu-law bytes to int16 PCM (one sample per byte)."""
    return _decode(lib.rtms_ulaw_decode, data)


def encode_alaw(pcm: npt.NDArray[np.int16] | bytes) -> bytes:
    """Encode int16 PCM to G.711 A-law bytes."""
    return _encode(lib.rtms_alaw_encode, pcm)


def encode_ulaw(pcm: npt.NDArray[np.int16] | bytes) -> bytes:
    """Encode int16 PCM to G.711 mu-law bytes."""
    return _encode(lib.rtms_ulaw_encode, pcm)
