"""G.722: bit-exact against the ITU-T test sequences and the G.191 reference codec.

The Appendix II sequences drive the two sub-band ADPCM coders with the QMF
bypassed (word layout in tests/data/README.md); the g722-full vectors cover
the whole codec. Everything is compared exactly, with no tolerance.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtms_fast import codecs
from rtms_fast.native import ffi, lib

ITU = Path(__file__).parent / "data" / "g722-itu"
FULL = Path(__file__).parent / "data" / "g722-full"
FRAME_OCTETS = 160  # 20 ms at 16 kHz


def _words(name: str) -> npt.NDArray[np.int16]:
    """A test sequence as signed 16-bit words (the files are little-endian)."""
    return np.fromfile(ITU / name, dtype="<i2").astype(np.int16)


def _pcm(name: str) -> npt.NDArray[np.int16]:
    return np.fromfile(FULL / name, dtype="<i2").astype(np.int16)


def _octets(name: str) -> bytes:
    return (FULL / name).read_bytes()


# ---- ITU-T G.722 Appendix II: sub-band coders, QMF bypassed ---------------


def _run_subband_encoder(words: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    """Feed each word to both sub-band encoders (reset words reset them)."""
    enc = ffi.gc(lib.rtms_g722_encoder_new(), lib.rtms_g722_encoder_free)
    out = np.empty(len(words), dtype=np.uint16)
    for i, word in enumerate(words.tolist()):
        if word & 1:
            lib.rtms_g722_encoder_init(enc)
            out[i] = 1
            continue
        x = word >> 1  # the sample sits in bits 15..1
        il = lib.rtms_g722_encode_low(enc, x)
        ih = lib.rtms_g722_encode_high(enc, x)
        out[i] = ((ih << 6) | il) << 8
    return out


def _run_subband_decoder(
    words: npt.NDArray[np.int16], mode: int, band: str
) -> npt.NDArray[np.uint16]:
    dec = ffi.gc(lib.rtms_g722_decoder_new(1), lib.rtms_g722_decoder_free)
    out = np.empty(len(words), dtype=np.uint16)
    for i, word in enumerate(words.tolist()):
        if word & 1:
            lib.rtms_g722_decoder_init(dec, 1)
            out[i] = 1
            continue
        code = (word & 0xFFFF) >> 8
        if band == "low":
            value = lib.rtms_g722_decode_low(dec, code & 0x3F, mode)
        else:
            value = lib.rtms_g722_decode_high(dec, code >> 6)
        out[i] = (value << 1) & 0xFFFE
    return out


def _twice(words: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    # Each sequence starts with reset words: running it twice on one state
    # only matches twice if those words really reset the coder.
    return np.concatenate((words, words))


@pytest.mark.parametrize(("xmt", "cod"), [("bt1c1.xmt", "bt2r1.cod"), ("bt1c2.xmt", "bt2r2.cod")])
def test_itu_subband_encoder(xmt: str, cod: str) -> None:
    got = _run_subband_encoder(_twice(_words(xmt)))
    expected = _twice(_words(cod)).view(np.uint16)
    np.testing.assert_array_equal(got, expected)


_DECODER_RUNS = [
    (cod, mode, f"bt3l{seq}.rc{mode}", "low")
    for seq, cod in enumerate(("bt2r1.cod", "bt2r2.cod", "bt1d3.cod"), start=1)
    for mode in (1, 2, 3)
] + [
    (cod, 1, f"bt3h{seq}.rc0", "high")
    for seq, cod in enumerate(("bt2r1.cod", "bt2r2.cod", "bt1d3.cod"), start=1)
]


@pytest.mark.parametrize(("cod", "mode", "ref", "band"), _DECODER_RUNS)
def test_itu_subband_decoder(cod: str, mode: int, ref: str, band: str) -> None:
    got = _run_subband_decoder(_twice(_words(cod)), mode, band)
    expected = _twice(_words(ref)).view(np.uint16)
    np.testing.assert_array_equal(got, expected)


def test_itu_higher_band_ignores_mode() -> None:
    words = _words("bt2r1.cod")
    codes = ((words.view(np.uint16) >> 8) & 0xFF).tolist()
    outs = []
    for mode in (1, 3):
        dec = ffi.gc(lib.rtms_g722_decoder_new(mode), lib.rtms_g722_decoder_free)
        outs.append([lib.rtms_g722_decode_high(dec, c >> 6) for c in codes[16:-16]])
    assert outs[0] == outs[1]


def test_itu_wrong_mode_is_detected() -> None:
    # A negative control: the mode-2 reference is not what mode 1 produces.
    got = _run_subband_decoder(_words("bt2r1.cod"), 1, "low")
    assert np.count_nonzero(got != _words("bt3l1.rc2").view(np.uint16)) > 1000


# ---- Whole codec (QMF included): G.191 reference vectors -----------------


@pytest.mark.parametrize("mode", [1, 2, 3])
@pytest.mark.parametrize("name", ["speech", "random"])
def test_full_decoder_vectors(name: str, mode: int) -> None:
    got = codecs.decode_g722(_octets(f"{name}.g722"), mode)
    np.testing.assert_array_equal(got, _pcm(f"{name}.m{mode}.pcm"))


def test_full_encoder_vector() -> None:
    pcm = _pcm("speech.pcm")
    assert len(pcm) % 2 == 1  # the reference leaves the odd last sample uncoded
    assert codecs.encode_g722(pcm) == _octets("speech.g722")


# ---- Streaming, reset -------------------------------------------------------


@pytest.mark.parametrize("mode", [1, 2, 3])
def test_decoder_streaming_in_20ms_frames_equals_one_shot(mode: int) -> None:
    data = _octets("random.g722") + _octets("speech.g722")
    dec = codecs.G722Decoder(mode)
    frames = [dec.decode(data[i : i + FRAME_OCTETS]) for i in range(0, len(data), FRAME_OCTETS)]
    np.testing.assert_array_equal(np.concatenate(frames), codecs.decode_g722(data, mode))


def test_encoder_streaming_in_20ms_frames_equals_one_shot() -> None:
    pcm = _pcm("speech.pcm")[:-1]
    enc = codecs.G722Encoder()
    frames = b"".join(enc.encode(pcm[i : i + 320]) for i in range(0, len(pcm), 320))
    assert frames == _octets("speech.g722")


def test_encoder_carries_an_odd_sample_to_the_next_call() -> None:
    pcm = _pcm("speech.pcm")[:-1]
    enc = codecs.G722Encoder()
    pieces = []
    for start in range(0, len(pcm), 317):
        pieces.append(enc.encode(pcm[start : start + 317]))
        assert enc.pending_samples == (min(start + 317, len(pcm)) % 2)
    assert b"".join(pieces) == _octets("speech.g722")
    assert enc.encode(np.zeros(1, dtype=np.int16)) == b""
    assert enc.pending_samples == 1


def test_decoder_reset_restores_initial_behaviour() -> None:
    speech = _octets("speech.g722")
    dec = codecs.G722Decoder(2)
    first = dec.decode(speech)
    dirty = dec.decode(_octets("random.g722")[:999])
    assert dirty.shape == (1998,)
    assert not np.array_equal(dec.decode(speech), first)  # state really carried
    dec.reset()
    assert dec.mode == 2
    np.testing.assert_array_equal(dec.decode(speech), first)


def test_encoder_reset_restores_initial_behaviour() -> None:
    pcm = _pcm("speech.pcm")[:-1]
    enc = codecs.G722Encoder()
    first = enc.encode(pcm)
    enc.encode(pcm[:1001])  # leaves state and one pending sample behind
    assert enc.pending_samples == 1
    assert enc.encode(pcm) != first
    enc.reset()
    assert enc.pending_samples == 0
    assert enc.encode(pcm) == first


def test_native_decoder_init_and_embedded_use() -> None:
    dec = ffi.gc(lib.rtms_g722_decoder_new(3), lib.rtms_g722_decoder_free)
    assert lib.rtms_g722_decoder_mode(dec) == 3
    assert lib.rtms_g722_decoder_init(dec, 4) == lib.RTMS_G722_E_MODE
    assert lib.rtms_g722_decoder_mode(dec) == 3  # left untouched
    assert lib.rtms_g722_decoder_new(0) == ffi.NULL
    data = _octets("speech.g722")
    out = np.empty(2 * len(data), dtype=np.int16)
    written = lib.rtms_g722_decode(dec, data, len(data), ffi.from_buffer("int16_t[]", out))
    assert written == 2 * len(data)
    np.testing.assert_array_equal(out, _pcm("speech.m3.pcm"))
    assert lib.rtms_g722_decoder_init(dec, 1) == 0
    lib.rtms_g722_decode(dec, data, len(data), ffi.from_buffer("int16_t[]", out))
    np.testing.assert_array_equal(out, _pcm("speech.m1.pcm"))


# ---- Arguments ---------------------------------------------------------------


def test_empty_input() -> None:
    assert codecs.decode_g722(b"").shape == (0,)
    assert codecs.decode_g722(b"").dtype == np.int16
    assert codecs.encode_g722(np.zeros(0, dtype=np.int16)) == b""
    assert codecs.encode_g722(np.zeros(1, dtype=np.int16)) == b""


def test_accepts_bytes_like() -> None:
    data = _octets("speech.g722")[:400]
    ref = codecs.decode_g722(data)
    np.testing.assert_array_equal(codecs.decode_g722(bytearray(data)), ref)
    np.testing.assert_array_equal(codecs.decode_g722(memoryview(data)), ref)
    np.testing.assert_array_equal(codecs.decode_g722(np.frombuffer(data, dtype=np.uint8)), ref)
    pcm = _pcm("speech.pcm")[:800]
    assert codecs.encode_g722(pcm.tobytes()) == codecs.encode_g722(pcm)


@pytest.mark.parametrize("mode", [0, 4, -1, 64000])
def test_rejects_bad_mode_value(mode: int) -> None:
    with pytest.raises(ValueError, match="mode must be 1"):
        codecs.G722Decoder(mode)
    with pytest.raises(ValueError, match="mode must be 1"):
        codecs.decode_g722(b"\x00", mode)


@pytest.mark.parametrize("mode", ["1", 1.0, None, True])
def test_rejects_bad_mode_type(mode: object) -> None:
    with pytest.raises(TypeError, match="mode must be an int"):
        codecs.G722Decoder(mode)  # type: ignore[arg-type]


def test_accepts_numpy_integer_mode() -> None:
    assert codecs.G722Decoder(np.int64(3)).mode == 3


def test_rejects_bad_pcm_and_data() -> None:
    with pytest.raises(TypeError, match="int16"):
        codecs.encode_g722(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        codecs.G722Encoder().encode(np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match="whole number"):
        codecs.encode_g722(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="1-D"):
        codecs.encode_g722(np.zeros((2, 2), dtype=np.int16))
    with pytest.raises(TypeError):
        codecs.encode_g722([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="uint8"):
        codecs.decode_g722(np.zeros(4, dtype=np.int16))
    with pytest.raises(TypeError):
        codecs.decode_g722("abc")  # type: ignore[arg-type]


# ---- Properties ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(st.integers(-32768, 32767), max_size=700),
    cut=st.integers(0, 700),
    mode=st.sampled_from([1, 2, 3]),
)
def test_round_trip_of_random_audio_is_stable(samples: list[int], cut: int, mode: int) -> None:
    pcm = np.array(samples, dtype=np.int16)
    octets = codecs.encode_g722(pcm)
    assert len(octets) == len(pcm) // 2
    decoded = codecs.decode_g722(octets, mode)
    assert decoded.dtype == np.int16
    assert decoded.shape == (2 * (len(pcm) // 2),)
    # Deterministic, and any split of the stream codes the same.
    enc = codecs.G722Encoder()
    assert enc.encode(pcm[:cut]) + enc.encode(pcm[cut:]) == octets
    dec = codecs.G722Decoder(mode)
    split = min(cut, len(octets))
    np.testing.assert_array_equal(
        np.concatenate((dec.decode(octets[:split]), dec.decode(octets[split:]))), decoded
    )


@pytest.mark.parametrize(("mode", "min_snr_db"), [(1, 40.0), (2, 35.0), (3, 28.0)])
def test_tone_survives_a_round_trip(mode: int, min_snr_db: float) -> None:
    # 1 kHz at -12 dBFS; the QMF pair delays the signal by 22 samples.
    t = np.arange(16000)
    tone = np.round(8000 * np.sin(2 * np.pi * 1000 * t / 16000)).astype(np.int16)
    out = codecs.decode_g722(codecs.encode_g722(tone), mode).astype(np.float64)
    ref = tone[2000:15000].astype(np.float64)
    err = ref - out[2022:15022]
    snr_db = 10 * np.log10(np.sum(ref**2) / np.sum(err**2))
    assert snr_db > min_snr_db


# ---- Cross-check with an independent implementation -----------------------------


def test_matches_pypi_g722_decoder_on_speech() -> None:
    # The PyPI `G722` package (a C port of the reference codec) is an
    # independent check; the ITU vectors above remain the authority. Any
    # warning it raises is its own business: record them, do not fail on them.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        g722 = importlib.import_module("G722")
        data = _octets("speech.g722")
        theirs = np.asarray(g722.G722(16000, 64000).decode(data), dtype=np.int16)
    np.testing.assert_array_equal(codecs.decode_g722(data, 1), theirs)
