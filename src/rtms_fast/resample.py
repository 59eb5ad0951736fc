"""Low-delay streaming resampling of 8/16/24/32/48 kHz audio, backed by C (csrc/resample.c).

`resample` converts a whole signal; `Resampler` converts a stream chunk by chunk, carrying
the filter history across chunks so that chunked output equals one-shot output exactly.
Both take and return 1-D C-contiguous numpy arrays of int16 or float32 (the same dtype out
as in); anything else is rejected with a clear error, never converted silently.

What the filter guarantees (measured on the C implementation by tests/test_resample.py):

* Passband edge ``fp``: 3400 Hz when 8 kHz is either rate; 7000 Hz when the lower rate is
  16 kHz; otherwise 0.43 x the lower rate. Passband ripple <= 0.1 dB peak to peak over
  [0, fp] (about 0.0002 dB as built).
* Transition band: from ``fp`` to ``fs = lower rate - fp``. Everything an input tone makes
  besides itself that lands in [0, fp] comes from input or image frequencies at or above
  ``fs``, and is >= 90 dB below a passband tone: for an input tone in [0, fp] every other
  output component (upsampling images, which sit at or above ``fs``) is >= 90 dB down;
  for an input tone in [fs, in_rate / 2] (above the output Nyquist when downsampling) the
  whole output is >= 90 dB below a passband tone of the same amplitude. Tones between
  ``fp`` and ``fs`` (and the images they make, which fall between the input Nyquist and
  ``fs``) are not bounded: they fold onto the transition band, above ``fp``.
* Delay: a minimum-phase FIR (no look-ahead), so an output sample is written as soon as
  the input it depends on arrives. ``delay`` is the mean passband group delay rounded to
  whole output samples: at most 0.42 ms for every pair. Group delay is not constant across
  the passband (minimum phase): it rises towards ``fp``, from 0.07-0.31 ms at low
  frequencies to 0.20-0.77 ms at ``fp`` (the 8 kHz pairs spread most, ~0.46 ms) -- fine
  for speech, not for phase-sensitive multichannel work. The tests bound it by 2 ms at
  every passband frequency.
* Equal rates: an exact copy, delay 0.

Streams start from silence. ``Resampler.process(chunk, last=True)`` (or ``flush()``)
appends ``delay`` more samples, so a whole stream yields ``ceil(n * out / in) + delay``
samples; `resample` drops the first ``delay`` of them, so its output has
``ceil(n * out / in)`` samples and is aligned in time with its input (up to the group
delay's spread), as python-soxr's ``resample`` is.

This module never copies or converts caller audio behind the caller's back, and never
allocates on the `Resampler.process_into` path beyond the cffi pointer wrappers.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt

from rtms_fast.native import ffi, lib

__all__ = [
    "SUPPORTED_RATES",
    "Resampler",
    "available_kernels",
    "resample",
]

SUPPORTED_RATES: Final[tuple[int, ...]] = (8000, 16000, 24000, 32000, 48000)

KernelName = Literal["auto", "scalar", "sse2", "avx2"]
_KERNEL_IDS: Final[dict[str, int]] = {
    "auto": lib.RTMS_RESAMPLE_KERNEL_AUTO,
    "scalar": lib.RTMS_RESAMPLE_KERNEL_SCALAR,
    "sse2": lib.RTMS_RESAMPLE_KERNEL_SSE2,
    "avx2": lib.RTMS_RESAMPLE_KERNEL_AVX2,
}
_KERNEL_NAMES: Final[dict[int, str]] = {v: k for k, v in _KERNEL_IDS.items()}
_DTYPES: Final[tuple[np.dtype[Any], ...]] = (np.dtype(np.int16), np.dtype(np.float32))

# Filters are immutable and shared by every stream of the same rate pair; building one
# costs a few milliseconds, so each is built once per process and kept.
_filters: dict[tuple[int, int, int], Any] = {}

_ArrayT = TypeVar("_ArrayT", npt.NDArray[np.int16], npt.NDArray[np.float32])


def _check_rate(name: str, rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(rate).__name__}")
    if int(rate) not in SUPPORTED_RATES:
        supported = ", ".join(str(r) for r in SUPPORTED_RATES)
        raise ValueError(f"{name}={rate} Hz is not supported; supported rates: {supported} Hz")


def _filter(in_rate: int, out_rate: int, kernel: str) -> Any:
    _check_rate("in_rate", in_rate)
    _check_rate("out_rate", out_rate)
    if kernel not in _KERNEL_IDS:
        raise ValueError(f"kernel must be one of {sorted(_KERNEL_IDS)}, got {kernel!r}")
    key = (int(in_rate), int(out_rate), _KERNEL_IDS[kernel])
    found = _filters.get(key)
    if found is None:
        raw = lib.rtms_resample_filter_new_kernel(key[0], key[1], key[2])
        if raw == ffi.NULL:
            if kernel not in available_kernels():
                raise ValueError(f"kernel {kernel!r} is not available on this CPU")
            raise MemoryError("cannot allocate the resampling filter")
        found = _filters.setdefault(key, ffi.gc(raw, lib.rtms_resample_filter_free))
    return found


def available_kernels() -> tuple[KernelName, ...]:
    """Inner-loop kernels this CPU can run ("auto" picks the fastest; all give equal output)."""
    names: list[KernelName] = []
    candidates: tuple[KernelName, ...] = ("scalar", "sse2", "avx2")
    for name in candidates:
        raw = lib.rtms_resample_filter_new_kernel(8000, 8000, _KERNEL_IDS[name])
        if raw != ffi.NULL:
            lib.rtms_resample_filter_free(raw)
            names.append(name)
    return tuple(names)


def _dtype_of(dtype: npt.DTypeLike) -> np.dtype[Any]:
    resolved = np.dtype(dtype)
    if resolved not in _DTYPES:
        raise TypeError(f"dtype must be int16 or float32, got {resolved}")
    return resolved


def _check_array(name: str, array: Any, dtype: np.dtype[Any]) -> None:
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one channel), got shape {array.shape}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous; pass np.ascontiguousarray({name})")


class Resampler:
    """One audio stream converted from ``in_rate`` to ``out_rate`` Hz, chunk by chunk.

    ``dtype`` (int16 or float32) is the sample type of every chunk in and out; int16
    output saturates and rounds to nearest. Chunks may have any length, including 0.
    """

    __slots__ = ("_ctype", "_dtype", "_filter", "_in_rate", "_out_rate", "_process", "_state")

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        dtype: npt.DTypeLike = np.int16,
        *,
        kernel: KernelName = "auto",
    ) -> None:
        self._dtype = _dtype_of(dtype)
        self._filter = _filter(in_rate, out_rate, kernel)
        self._in_rate = int(in_rate)
        self._out_rate = int(out_rate)
        state = lib.rtms_resampler_new(self._filter)
        if state == ffi.NULL:
            raise MemoryError("cannot allocate resampler state")
        # the state points at the filter, which this object keeps alive
        self._state = ffi.gc(state, lib.rtms_resampler_free)
        if self._dtype == np.int16:
            self._ctype, self._process = "int16_t[]", lib.rtms_resampler_process_i16
        else:
            self._ctype, self._process = "float[]", lib.rtms_resampler_process_f32

    @property
    def in_rate(self) -> int:
        return self._in_rate

    @property
    def out_rate(self) -> int:
        return self._out_rate

    @property
    def dtype(self) -> np.dtype[Any]:
        return self._dtype

    @property
    def delay(self) -> int:
        """Latency in output samples: the mean passband group delay, rounded."""
        return int(lib.rtms_resample_filter_delay(self._filter))

    @property
    def group_delay(self) -> float:
        """The mean passband group delay in output samples, unrounded."""
        return float(lib.rtms_resample_filter_group_delay(self._filter))

    @property
    def kernel(self) -> str:
        """The inner-loop kernel in use ("scalar", "sse2" or "avx2")."""
        return _KERNEL_NAMES[int(lib.rtms_resample_filter_kernel(self._filter))]

    def output_count(self, n: int) -> int:
        """Exactly how many samples the next ``process`` of ``n`` samples returns."""
        return int(lib.rtms_resampler_output_count(self._state, n))

    def max_output(self, n: int) -> int:
        """The most samples ``n`` input samples can yield, whatever the stream's state."""
        return int(lib.rtms_resample_max_output(self._filter, n))

    def _run(self, chunk: npt.NDArray[Any], out: npt.NDArray[Any]) -> int:
        written = self._process(
            self._state,
            ffi.from_buffer(self._ctype, chunk),
            len(chunk),
            ffi.from_buffer(self._ctype, out, require_writable=True),
            len(out),
        )
        if written < 0:  # pragma: no cover - the callers size `out` first
            raise RuntimeError(f"rtms_resampler_process failed with code {written}")
        return int(written)

    def process(self, chunk: npt.NDArray[Any], last: bool = False) -> npt.NDArray[Any]:
        """Resample ``chunk`` and return the new output; ``last=True`` also flushes the tail.

        After ``last=True`` the stream is reset and may start again from silence.
        """
        _check_array("chunk", chunk, self._dtype)
        out = np.empty(self.output_count(len(chunk)), dtype=self._dtype)
        if len(chunk):
            self._run(chunk, out)
        if last:
            return np.concatenate((out, self.flush()))
        return out

    def process_into(self, chunk: npt.NDArray[Any], out: npt.NDArray[Any]) -> int:
        """Resample ``chunk`` into the start of ``out``; return how many samples were written.

        ``out`` needs room for ``output_count(len(chunk))`` samples (``max_output`` is always
        enough); with less, nothing is consumed and ValueError is raised.
        """
        _check_array("chunk", chunk, self._dtype)
        _check_array("out", out, self._dtype)
        if not out.flags.writeable:
            raise ValueError("out must be writable")
        needed = self.output_count(len(chunk))
        if len(out) < needed:
            raise ValueError(f"out holds {len(out)} samples but this chunk yields {needed}")
        if not len(chunk):
            return 0
        return self._run(chunk, out)

    def flush(self) -> npt.NDArray[Any]:
        """End the stream: return its last ``delay`` samples (the filter tail) and reset."""
        delay = self.delay
        if delay == 0:
            self.reset()
            return np.empty(0, dtype=self._dtype)
        zeros_needed = delay * self._in_rate // self._out_rate
        while self.output_count(zeros_needed) < delay:
            zeros_needed += 1
        zeros = np.zeros(zeros_needed, dtype=self._dtype)
        tail = np.empty(self.output_count(zeros_needed), dtype=self._dtype)
        self._run(zeros, tail)
        self.reset()
        return tail[:delay]

    def reset(self) -> None:
        """Forget the history: the next chunk starts a new stream (from silence)."""
        lib.rtms_resampler_reset(self._state)

    def __repr__(self) -> str:
        return (
            f"Resampler(in_rate={self._in_rate}, out_rate={self._out_rate}, "
            f"dtype={self._dtype}, delay={self.delay}, kernel={self.kernel!r})"
        )


@overload
def resample(x: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.int16]: ...
@overload
def resample(
    x: npt.NDArray[np.float32], in_rate: int, out_rate: int
) -> npt.NDArray[np.float32]: ...
def resample(x: _ArrayT, in_rate: int, out_rate: int) -> _ArrayT:
    """Resample a whole 1-D int16 or float32 signal; same dtype out as in.

    Returns ``ceil(len(x) * out_rate / in_rate)`` samples, time-aligned with ``x`` (the
    first ``delay`` samples of the stream are dropped and the tail flushed).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, got {type(x).__name__}")
    stream = Resampler(in_rate, out_rate, _dtype_of(x.dtype))
    full = stream.process(x, last=True)
    result: _ArrayT = full[stream.delay :]
    return result
