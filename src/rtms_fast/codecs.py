"""Audio codecs: G.711 A-law / mu-law and G.722 (SB-ADPCM), backed by C.

Every decoder takes bytes-like input and returns a new numpy int16 array;
every encoder takes an int16 array (or native-endian int16 bytes) and returns
bytes. Inputs of the wrong dtype are rejected, never converted silently.
G.722 is stateful: ``G722Decoder`` / ``G722Encoder`` carry one stream's state
across blocks (one object per stream; an object is not safe to share between
threads), ``decode_g722`` / ``encode_g722`` code one block from a fresh state.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import numpy.typing as npt

from rtms_fast.native import as_int16_array, ffi, lib

__all__ = [
    "G722Decoder",
    "G722Encoder",
    "decode_alaw",
    "decode_g722",
    "decode_ulaw",
    "encode_alaw",
    "encode_g722",
    "encode_ulaw",
]


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


# G.722 decoder modes: 1, 2, 3 = 64, 56, 48 kbit/s (the encoder always codes mode 1).
_G722_MODES = (1, 2, 3)


def _g722_mode(mode: Any) -> int:
    if isinstance(mode, bool):
        raise TypeError("mode must be an int (1, 2 or 3), got bool")
    try:
        value = operator.index(mode)
    except TypeError:
        raise TypeError(f"mode must be an int (1, 2 or 3), got {type(mode).__name__}") from None
    if value not in _G722_MODES:
        raise ValueError(f"mode must be 1 (64 kbit/s), 2 (56 kbit/s) or 3 (48 kbit/s), got {value}")
    return value


class G722Decoder:
    """Streaming G.722 decoder: octets (IH in bits 7-6, IL in bits 5-0) to 16 kHz PCM.

    Each octet yields two samples. State carries over calls, so a stream cut
    into 20 ms blocks decodes exactly as in one piece. ``mode`` 2 and 3
    (56 and 48 kbit/s) make the lower band ignore 1 or 2 LSBs of IL.
    """

    __slots__ = ("_mode", "_state")

    def __init__(self, mode: int = 1) -> None:
        self._mode = _g722_mode(mode)
        state = lib.rtms_g722_decoder_new(self._mode)
        if state == ffi.NULL:
            raise MemoryError("cannot allocate a G.722 decoder state")
        self._state = ffi.gc(state, lib.rtms_g722_decoder_free)

    @property
    def mode(self) -> int:
        """The decoding mode: 1, 2 or 3 (64, 56, 48 kbit/s)."""
        return self._mode

    def decode(
        self, data: bytes | bytearray | memoryview | npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.int16]:
        """Decode the next octets of the stream; returns ``2 * len(data)`` samples."""
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                raise TypeError(f"data must be bytes-like or a uint8 array, got dtype {data.dtype}")
            view = np.ascontiguousarray(data).data
        else:
            view = memoryview(data)
        src = view.cast("B")
        out = np.empty(2 * len(src), dtype=np.int16)
        if len(src):
            lib.rtms_g722_decode(
                self._state,
                ffi.from_buffer("uint8_t[]", src),
                len(src),
                ffi.from_buffer("int16_t[]", out),
            )
        return out

    def reset(self) -> None:
        """Return to the initial (reset) state; the mode stays."""
        lib.rtms_g722_decoder_reset(self._state)


class G722Encoder:
    """Streaming G.722 encoder (64 kbit/s): 16 kHz int16 PCM to one octet per two samples.

    State carries over calls. A block with an odd number of samples leaves its
    last sample pending: it is coded at the front of the next call (see
    ``pending_samples``), so any block split gives the same octets as one piece.
    """

    __slots__ = ("_pending", "_state")

    def __init__(self) -> None:
        state = lib.rtms_g722_encoder_new()
        if state == ffi.NULL:
            raise MemoryError("cannot allocate a G.722 encoder state")
        self._state = ffi.gc(state, lib.rtms_g722_encoder_free)
        self._pending: npt.NDArray[np.int16] | None = None

    @property
    def pending_samples(self) -> int:
        """Samples held back for the next call (0 or 1)."""
        return 0 if self._pending is None else 1

    def encode(self, pcm: npt.NDArray[np.int16] | bytes) -> bytes:
        """Encode the next samples of the stream; returns one octet per sample pair."""
        samples = as_int16_array(pcm)
        if self._pending is not None:
            samples = np.concatenate((self._pending, samples))
        n_octets = len(samples) // 2
        out = bytearray(n_octets)
        if n_octets:
            lib.rtms_g722_encode(
                self._state,
                ffi.from_buffer("int16_t[]", samples),
                len(samples),
                ffi.from_buffer("uint8_t[]", out),
            )
        self._pending = samples[-1:].copy() if len(samples) % 2 else None
        return bytes(out)

    def reset(self) -> None:
        """Return to the initial (reset) state and drop any pending sample."""
        lib.rtms_g722_encoder_init(self._state)
        self._pending = None


def decode_g722(
    data: bytes | bytearray | memoryview | npt.NDArray[np.uint8], mode: int = 1
) -> npt.NDArray[np.int16]:
    """Decode one G.722 block from the reset state (two int16 samples per octet)."""
    return G722Decoder(mode).decode(data)


def encode_g722(pcm: npt.NDArray[np.int16] | bytes) -> bytes:
    """Encode one block of 16 kHz int16 PCM with G.722 from the reset state.

    One octet per sample pair; an odd last sample is not coded (as the ITU
    reference encoder does).
    """
    return G722Encoder().encode(pcm)
