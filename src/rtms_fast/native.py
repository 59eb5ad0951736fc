"""The thin Python face of the cffi module ``rtms_fast._native``.

This is the only module that imports ``_native``; everything else asks here.
It exposes ``ffi`` and ``lib`` plus small helpers that check buffers before a
pointer to them crosses into C (dtype, contiguity, writability), so a wrong
argument is a clear ``TypeError``/``ValueError`` rather than a memory error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

try:
    from rtms_fast._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "rtms_fast._native is not built. Install the package with "
        "'pip install .' (or 'pip install -e .'), or run 'python build.py' "
        "in a source checkout; a C compiler and the Python headers are needed."
    ) from exc

__all__ = ["as_int16_array", "ffi", "lib", "ptr", "readonly_bytes_ptr"]


def as_int16_array(pcm: Any, name: str = "pcm") -> npt.NDArray[np.int16]:
    """Return ``pcm`` as a C-contiguous 1-D int16 array, without copying when it already is one.

    Accepts numpy int16 arrays and bytes-like objects of native-endian int16
    samples. Any other dtype is rejected rather than converted silently.
    """
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise TypeError(f"{name} must have dtype int16, got {pcm.dtype}")
        if pcm.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {pcm.shape}")
        return np.ascontiguousarray(pcm)
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        view = memoryview(pcm).cast("B")
        if len(view) % 2:
            raise ValueError(f"{name} holds {len(view)} bytes, not a whole number of int16 samples")
        return np.frombuffer(view, dtype=np.int16)
    raise TypeError(f"{name} must be a numpy int16 array or bytes-like, got {type(pcm).__name__}")


def ptr(ctype: str, array: np.ndarray[Any, Any]) -> Any:
    """A cffi pointer of type ``ctype`` into a writable, C-contiguous numpy array."""
    if not array.flags.c_contiguous:
        raise ValueError("array must be C-contiguous")
    return ffi.cast(ctype, ffi.from_buffer(array, require_writable=True))


def readonly_bytes_ptr(data: Any) -> Any:
    """A ``const uint8_t *`` into any bytes-like object (no copy)."""
    return ffi.cast("const uint8_t *", ffi.from_buffer(data))
