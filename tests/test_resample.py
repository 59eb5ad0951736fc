"""Tests for the streaming resampler: measured quality, exact streaming, and the API.

The quality numbers are measured on the C implementation with single tones: every tone
sits exactly on an FFT bin of a window of output samples that is a whole number of
periods of the (periodic) steady-state output, so a rectangular window has no leakage
and every image or alias lands on a bin of its own.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtms_fast.native import ffi, lib
from rtms_fast.resample import SUPPORTED_RATES, Resampler, available_kernels, resample

PAIRS = list(permutations(SUPPORTED_RATES, 2))
ALL_PAIRS = PAIRS + [(r, r) for r in SUPPORTED_RATES]
WINDOW_OUT = 6144  # output samples per FFT window: a multiple of every interpolation factor
AMPLITUDE = 0.5


def band_edges(in_rate: int, out_rate: int) -> tuple[float, float]:
    """(passband edge, stopband edge) in Hz, by the rule stated in rtms_fast.resample."""
    lower = min(in_rate, out_rate)
    passband = 3400.0 if lower == 8000 else 7000.0 if lower == 16000 else 0.43 * lower
    return passband, lower - passband


@dataclass(frozen=True)
class Quality:
    ripple_db: float  # passband magnitude, peak to peak
    worst_image_db: float  # largest other component for a passband tone, re that tone
    worst_alias_db: float  # largest output for a stopband tone, re a passband tone
    group_delay_mean: float  # output samples, mean over the passband (from the phase)
    group_delay_min: float  # output samples, between adjacent tones
    group_delay_max: float


def tone_spectrum(in_rate: int, out_rate: int, freq_hz: float) -> tuple[int, npt.NDArray[Any]]:
    """Steady-state output spectrum (amplitude per bin) of a cosine; its bin, and the bins."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    k = round(freq_hz * WINDOW_OUT / out_rate)
    n_in = WINDOW_OUT * down // up
    n = np.arange(3 * n_in)
    # exactly k cycles per window: k * out_rate / WINDOW_OUT Hz
    x = (AMPLITUDE * np.cos(2 * np.pi * k * up * n / (WINDOW_OUT * down))).astype(np.float32)
    y = Resampler(in_rate, out_rate, np.float32).process(x).astype(np.float64)
    assert len(y) == 3 * WINDOW_OUT
    return k, np.fft.rfft(y[-WINDOW_OUT:]) / (WINDOW_OUT / 2)


@functools.cache
def measure(in_rate: int, out_rate: int) -> Quality:
    passband, stopband = band_edges(in_rate, out_rate)
    bin_hz = out_rate / WINDOW_OUT
    # tones every ~60 Hz from one bin to the passband edge (phase steps stay far below pi)
    bins = np.unique(np.round(np.linspace(1, passband / bin_hz, 64)).astype(int))
    gains, phases, worst_image = [], [], 0.0
    for k in bins:
        kk, spectrum = tone_spectrum(in_rate, out_rate, k * bin_hz)
        peak = spectrum[kk]
        gains.append(abs(peak) / AMPLITUDE)
        phases.append(np.angle(peak))
        others = np.abs(spectrum)
        others[kk] = 0.0
        worst_image = max(worst_image, float(others.max() / abs(peak)))
    gains_db = 20 * np.log10(gains)
    freqs = bins * bin_hz
    phase = np.unwrap(phases)
    # output = A cos(2 pi f (t - tau)): the bin's phase is -2 pi f tau, in output samples
    group = -np.diff(phase) / (2 * np.pi * np.diff(freqs)) * out_rate
    mean_group = -(phase[-1] - phase[0]) / (2 * np.pi * (freqs[-1] - freqs[0])) * out_rate
    worst_alias = 0.0
    if stopband < in_rate / 2:  # tones the output cannot carry exist only when downsampling
        for f in np.linspace(stopband, in_rate / 2 - bin_hz, 24):
            _, spectrum = tone_spectrum(in_rate, out_rate, f)
            worst_alias = max(worst_alias, float(np.abs(spectrum).max() / AMPLITUDE))
    return Quality(
        ripple_db=float(gains_db.max() - gains_db.min()),
        worst_image_db=20 * math.log10(worst_image + 1e-300),
        worst_alias_db=20 * math.log10(worst_alias + 1e-300),
        group_delay_mean=float(mean_group),
        group_delay_min=float(group.min()),
        group_delay_max=float(group.max()),
    )


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_passband_is_flat_within_0_1_db(in_rate: int, out_rate: int) -> None:
    assert measure(in_rate, out_rate).ripple_db <= 0.1


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_images_and_aliases_are_90_db_down(in_rate: int, out_rate: int) -> None:
    quality = measure(in_rate, out_rate)
    assert quality.worst_image_db <= -90.0
    assert quality.worst_alias_db <= -90.0


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_reported_delay_matches_measured_group_delay(in_rate: int, out_rate: int) -> None:
    quality = measure(in_rate, out_rate)
    stream = Resampler(in_rate, out_rate)
    assert stream.group_delay == pytest.approx(quality.group_delay_mean, abs=0.05)
    assert abs(stream.delay - quality.group_delay_mean) <= 0.55
    # the delay bound holds for every passband frequency, not just on average
    assert quality.group_delay_max / out_rate <= 0.002
    assert quality.group_delay_min > 0.0


def test_a_stopband_tone_really_aliases_without_the_filter() -> None:
    """The alias measurement can fail: a plain decimator (every other sample) shows the alias."""
    k = round(6000 * WINDOW_OUT / 8000)
    n = np.arange(2 * WINDOW_OUT)
    x = AMPLITUDE * np.cos(2 * np.pi * k * n / (2 * WINDOW_OUT))
    spectrum = np.fft.rfft(x[::2]) / (WINDOW_OUT / 2)
    assert 20 * np.log10(np.abs(spectrum).max() / AMPLITUDE) > -1.0
    _, filtered = tone_spectrum(16000, 8000, 6000.0)
    assert 20 * np.log10(np.abs(filtered).max() / AMPLITUDE) < -90.0


@pytest.mark.parametrize(("in_rate", "out_rate"), [(16000, 8000), (8000, 48000)])
def test_int16_path_meets_the_stopband_too(in_rate: int, out_rate: int) -> None:
    passband, stopband = band_edges(in_rate, out_rate)
    probe = (passband * 0.7) if in_rate < out_rate else (stopband + in_rate / 2) / 2
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    k = round(probe * WINDOW_OUT / out_rate)
    n = np.arange(3 * WINDOW_OUT * down // up)
    full_scale = 32000.0
    x = np.round(full_scale * np.cos(2 * np.pi * k * up * n / (WINDOW_OUT * down)))
    y = Resampler(in_rate, out_rate, np.int16).process(x.astype(np.int16))
    spectrum = np.abs(np.fft.rfft(y[-WINDOW_OUT:].astype(np.float64))) / (WINDOW_OUT / 2)
    if in_rate < out_rate:
        spectrum[k] = 0.0
    assert 20 * np.log10(spectrum.max() / full_scale) <= -90.0


# ---- streaming: chunked == one-shot ---------------------------------------------------


def noise(n: int, dtype: npt.DTypeLike, seed: int = 7) -> npt.NDArray[Any]:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.int16:
        return rng.integers(-32768, 32768, n).astype(np.int16)
    return rng.standard_normal(n).astype(np.float32)


def run_chunked(stream: Resampler, x: npt.NDArray[Any], sizes: list[int]) -> npt.NDArray[Any]:
    parts, start, i = [], 0, 0
    while start < len(x):
        size = sizes[i % len(sizes)]
        parts.append(stream.process(x[start : start + size]))
        start += size
        i += 1
    parts.append(stream.flush())
    return np.concatenate(parts)


@pytest.mark.parametrize(("in_rate", "out_rate"), ALL_PAIRS)
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_every_chunk_size_up_to_300_equals_one_shot(
    in_rate: int, out_rate: int, dtype: type[Any]
) -> None:
    x = noise(900, dtype)
    whole = Resampler(in_rate, out_rate, dtype).process(x, last=True)
    expected_len = -(-len(x) * out_rate // in_rate) + Resampler(in_rate, out_rate).delay
    assert len(whole) == expected_len
    stream = Resampler(in_rate, out_rate, dtype)
    for size in range(1, 301, 1 if (in_rate, out_rate) == (8000, 16000) else 7):
        np.testing.assert_array_equal(run_chunked(stream, x, [size]), whole)


@settings(max_examples=60, deadline=None)
@given(
    pair=st.sampled_from(ALL_PAIRS),
    dtype=st.sampled_from([np.int16, np.float32]),
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=12).filter(any),
    length=st.integers(0, 2500),
)
def test_random_chunkings_equal_one_shot(
    pair: tuple[int, int], dtype: type[Any], sizes: list[int], length: int
) -> None:
    x = noise(length, dtype, seed=length)
    whole = Resampler(*pair, dtype).process(x, last=True)
    assert len(whole) == -(-length * pair[1] // pair[0]) + Resampler(*pair).delay
    np.testing.assert_array_equal(run_chunked(Resampler(*pair, dtype), x, sizes), whole)


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(PAIRS), sizes=st.lists(st.integers(0, 700), min_size=1, max_size=8))
def test_output_count_is_exact_and_bounded(pair: tuple[int, int], sizes: list[int]) -> None:
    stream = Resampler(*pair)
    for size in sizes:
        predicted = stream.output_count(size)
        assert predicted <= stream.max_output(size)
        assert len(stream.process(noise(size, np.int16))) == predicted


# ---- kernels, rounding, passthrough -----------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_all_kernels_give_identical_output(in_rate: int, out_rate: int) -> None:
    kernels = available_kernels()
    assert "scalar" in kernels
    for dtype in (np.int16, np.float32):
        x = noise(3000, dtype, seed=in_rate + out_rate)
        reference = Resampler(in_rate, out_rate, dtype, kernel="scalar").process(x, last=True)
        for kernel in kernels:
            out = Resampler(in_rate, out_rate, dtype, kernel=kernel).process(x, last=True)
            np.testing.assert_array_equal(out, reference, err_msg=kernel)
            # odd chunk sizes exercise the partial vector groups at every block end
            chunked = run_chunked(Resampler(in_rate, out_rate, dtype, kernel=kernel), x, [37, 301])
            np.testing.assert_array_equal(chunked, reference, err_msg=kernel)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (48000, 16000), (24000, 32000)])
def test_int16_output_is_the_float_output_saturated_and_rounded(
    in_rate: int, out_rate: int
) -> None:
    # a full-scale square wave overshoots (Gibbs), so saturation is exercised
    x16 = np.where(np.arange(4000) % 40 < 20, 32767, -32768).astype(np.int16)
    x16[2000:] = noise(2000, np.int16)[:] // 3
    y16 = Resampler(in_rate, out_rate, np.int16).process(x16, last=True)
    y32 = Resampler(in_rate, out_rate, np.float32).process(x16.astype(np.float32), last=True)
    assert y32.max() > 32767.5 and y32.min() < -32768.5
    expected = np.clip(np.rint(y32), -32768, 32767).astype(np.int16)  # rint: ties to even
    np.testing.assert_array_equal(y16, expected)


@pytest.mark.parametrize("rate", SUPPORTED_RATES)
def test_equal_rates_copy_exactly(rate: int) -> None:
    x16 = noise(1234, np.int16)
    stream = Resampler(rate, rate)
    assert stream.delay == 0
    np.testing.assert_array_equal(stream.process(x16[:100]), x16[:100])
    np.testing.assert_array_equal(stream.process(x16[100:], last=True), x16[100:])
    x32 = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.5], dtype=np.float32)
    out = resample(x32, rate, rate)
    assert out.tobytes() == x32.tobytes()


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_a_20_ms_chunk_comes_out_at_once(in_rate: int, out_rate: int) -> None:
    """No hold-back beyond the filter: an impulse shows up in the same chunk's output."""
    chunk = np.zeros(in_rate // 50, np.float32)
    chunk[len(chunk) // 2] = 1.0
    out = Resampler(in_rate, out_rate, np.float32).process(chunk)
    assert len(out) == out_rate // 50
    arrival = len(out) // 2
    peak = int(np.argmax(np.abs(out)))
    assert arrival <= peak <= arrival + out_rate // 1000  # within 1 ms
    assert np.sum(out[: arrival - 1] ** 2) < 1e-12  # causal: nothing before the impulse


def test_reset_starts_a_new_stream() -> None:
    x = noise(1000, np.int16)
    fresh = Resampler(16000, 48000).process(x)
    stream = Resampler(16000, 48000)
    stream.process(noise(333, np.int16, seed=3))
    stream.reset()
    np.testing.assert_array_equal(stream.process(x), fresh)
    # after last=True the stream is reset as well
    stream.process(noise(77, np.int16, seed=4), last=True)
    np.testing.assert_array_equal(stream.process(x), fresh)


def test_history_is_carried_so_a_reset_changes_the_output() -> None:
    x = noise(500, np.int16)
    stream = Resampler(8000, 16000)
    stream.process(noise(100, np.int16, seed=9))
    assert not np.array_equal(stream.process(x), Resampler(8000, 16000).process(x))


# ---- one-shot -------------------------------------------------------------------------


@pytest.mark.parametrize(("in_rate", "out_rate"), PAIRS)
def test_resample_is_the_stream_without_its_delay(in_rate: int, out_rate: int) -> None:
    x = noise(1001, np.float32)
    out = resample(x, in_rate, out_rate)
    assert out.dtype == np.float32
    assert len(out) == math.ceil(1001 * out_rate / in_rate)
    stream = Resampler(in_rate, out_rate, np.float32)
    np.testing.assert_array_equal(out, stream.process(x, last=True)[stream.delay :])


def lag_seconds(y: npt.NDArray[Any], freq_hz: float, rate: int) -> float:
    """How late y is against sin(2 pi f t), from a least-squares fit of its middle half."""
    start = len(y) // 4
    y = y[start : 3 * start]
    t = (start + np.arange(len(y))) / rate
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], 1)
    (s, c), *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return float(-np.arctan2(c, s) / (2 * np.pi * freq_hz))


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 48000), (48000, 8000), (32000, 24000)])
def test_resample_is_aligned_in_time(in_rate: int, out_rate: int) -> None:
    freq_hz = 310.0
    t_in = np.arange(in_rate // 5) / in_rate
    x = (0.5 * np.sin(2 * np.pi * freq_hz * t_in)).astype(np.float32)
    out = resample(x, in_rate, out_rate)
    stream = Resampler(in_rate, out_rate, np.float32)
    late = stream.process(x, last=True)
    # left over: the group delay at 310 Hz minus its passband mean (well under 0.15 ms)
    assert abs(lag_seconds(out, freq_hz, out_rate)) < 0.15e-3
    expected = stream.delay / out_rate
    assert lag_seconds(late, freq_hz, out_rate) == pytest.approx(expected, abs=0.15e-3)


def test_resample_keeps_int16_and_matches_soxr_level() -> None:
    soxr = pytest.importorskip("soxr")
    rng = np.random.default_rng(5)
    # speech-band noise: white noise low-passed well inside every passband
    spectrum = np.fft.rfft(rng.standard_normal(16000))
    spectrum[np.fft.rfftfreq(16000, 1 / 16000) > 3000] = 0
    x = (np.fft.irfft(spectrum) * 3000).astype(np.int16)
    ours = resample(x, 16000, 8000)
    theirs = soxr.resample(x, 16000, 8000, quality="HQ")
    assert ours.dtype == np.int16
    assert len(ours) == len(theirs)
    ratio = np.std(ours[500:-500].astype(float)) / np.std(theirs[500:-500].astype(float))
    assert ratio == pytest.approx(1.0, abs=0.002)


# ---- the C API as the ingest kernel uses it ---------------------------------------------


def test_embedded_state_matches_heap_state() -> None:
    flt = ffi.gc(lib.rtms_resample_filter_new(16000, 8000), lib.rtms_resample_filter_free)
    memory = ffi.new("char[]", lib.rtms_resampler_state_size())
    state = ffi.cast("rtms_resampler *", memory)
    lib.rtms_resampler_init(state, flt)
    x = noise(640, np.int16)
    out = np.zeros(lib.rtms_resample_max_output(flt, len(x)), dtype=np.int16)
    written = lib.rtms_resampler_process_i16(
        state, ffi.from_buffer("int16_t[]", x), len(x), ffi.from_buffer("int16_t[]", out), len(out)
    )
    assert written == 320
    np.testing.assert_array_equal(out[:written], Resampler(16000, 8000).process(x))


def test_c_refuses_a_short_output_buffer_and_consumes_nothing() -> None:
    flt = ffi.gc(lib.rtms_resample_filter_new(8000, 16000), lib.rtms_resample_filter_free)
    state = ffi.gc(lib.rtms_resampler_new(flt), lib.rtms_resampler_free)
    x = noise(160, np.int16)
    out = np.zeros(320, dtype=np.int16)
    src, dst = ffi.from_buffer("int16_t[]", x), ffi.from_buffer("int16_t[]", out)
    assert lib.rtms_resampler_process_i16(state, src, 160, dst, 319) == lib.RTMS_RESAMPLE_E_CAPACITY
    assert lib.rtms_resampler_process_i16(ffi.NULL, src, 160, dst, 320) == (
        lib.RTMS_RESAMPLE_E_ARGUMENT
    )
    assert lib.rtms_resampler_process_i16(state, src, 160, dst, 320) == 320
    np.testing.assert_array_equal(out, Resampler(8000, 16000).process(x))
    assert lib.rtms_resample_filter_new(8000, 44100) == ffi.NULL
    assert lib.rtms_resample_filter_new_kernel(8000, 16000, 99) == ffi.NULL


def test_repeat_entry_point_processes_every_chunk() -> None:
    flt = ffi.gc(lib.rtms_resample_filter_new(8000, 16000), lib.rtms_resample_filter_free)
    state = ffi.gc(lib.rtms_resampler_new(flt), lib.rtms_resampler_free)
    x = noise(160, np.int16)
    out = np.zeros(320, dtype=np.int16)
    total = lib.rtms_resampler_process_repeat_i16(
        state, ffi.from_buffer("int16_t[]", x), 160, 5, ffi.from_buffer("int16_t[]", out), 320
    )
    assert total == 5 * 320
    expected = Resampler(8000, 16000).process(np.tile(x, 5))
    np.testing.assert_array_equal(out, expected[-320:])


# ---- bad arguments ------------------------------------------------------------------------


def test_unsupported_rates_name_the_supported_set() -> None:
    with pytest.raises(ValueError, match=r"44100.*8000, 16000, 24000, 32000, 48000"):
        Resampler(44100, 16000)
    with pytest.raises(ValueError, match="out_rate"):
        resample(np.zeros(4, np.int16), 8000, 11025)
    with pytest.raises(TypeError, match="int"):
        Resampler(8000.0, 16000)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Resampler(True, 16000)


def test_dtype_shape_and_contiguity_are_checked() -> None:
    with pytest.raises(TypeError, match="int16 or float32"):
        Resampler(8000, 16000, np.float64)
    with pytest.raises(TypeError, match="int16 or float32"):
        resample(np.zeros(8, np.float64), 8000, 16000)
    with pytest.raises(TypeError, match="numpy array"):
        resample([1, 2, 3], 8000, 16000)  # type: ignore[call-overload]
    stream = Resampler(8000, 16000, np.int16)
    with pytest.raises(TypeError, match="dtype int16"):
        stream.process(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        stream.process(np.zeros((2, 8), np.int16))
    with pytest.raises(ValueError, match="C-contiguous"):
        stream.process(np.zeros(16, np.int16)[::2])
    with pytest.raises(ValueError, match="kernel"):
        Resampler(8000, 16000, kernel="neon")  # type: ignore[arg-type]


def test_process_into_checks_out_and_consumes_nothing_on_error() -> None:
    x = noise(160, np.int16)
    stream = Resampler(8000, 16000)
    with pytest.raises(ValueError, match="yields 320"):
        stream.process_into(x, np.empty(319, np.int16))
    with pytest.raises(TypeError, match="dtype int16"):
        stream.process_into(x, np.empty(320, np.float32))
    readonly = np.empty(320, np.int16)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        stream.process_into(x, readonly)
    out = np.full(400, 7, np.int16)
    assert stream.process_into(x, out) == 320
    np.testing.assert_array_equal(out[:320], Resampler(8000, 16000).process(x))
    assert (out[320:] == 7).all()
    assert stream.process_into(x[:0], out) == 0
