"""Deterministic content and format negotiation: pure functions, no sockets."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rtms_fast import codecs
from rtms_fast.sim import (
    AudioFormat,
    AudioSource,
    MixedAudioSource,
    audio_params_json,
    g722_available,
    negotiate_audio,
    participant_id,
    speakers_for_frame,
)
from rtms_fast.sim.source import CODEC_G711, CODEC_G722, CODEC_L16, CONTENT_RAW, CONTENT_RTP

DEFAULT = AudioFormat(CONTENT_RAW, CODEC_L16, 16000, 1, 20)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = AudioSource(7, 3, 1, CODEC_L16, 16000)
    b = AudioSource(7, 3, 1, CODEC_L16, 16000)
    c = AudioSource(8, 3, 1, CODEC_L16, 16000)
    d = AudioSource(7, 3, 2, CODEC_L16, 16000)
    assert a.payload(5) == b.payload(5)
    assert a.payload(5) != c.payload(5)
    assert a.payload(5) != d.payload(5)


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
def test_l16_payload_is_the_pcm_little_endian(rate: int) -> None:
    s = AudioSource(1, 0, 0, CODEC_L16, rate)
    n = rate // 50
    for k in (0, 1, 49, 50, 123):
        pcm = s.pcm(k * n, n)
        assert pcm.dtype == np.int16 and len(pcm) == n
        assert s.payload(k) == pcm.astype("<i2").tobytes()
    assert np.abs(s.pcm(0, rate).astype(np.int32)).max() > 1000  # not silence


def test_l16_long_send_rate_and_stereo() -> None:
    s = AudioSource(1, 0, 0, CODEC_L16, 16000, send_rate_ms=1000)
    assert s.payload(3) == s.pcm(3 * 16000, 16000).astype("<i2").tobytes()
    st = AudioSource(1, 0, 0, CODEC_L16, 16000, channels=2)
    assert st.payload(2) == np.repeat(st.pcm(640, 320), 2).astype("<i2").tobytes()


def test_pcma_rtp_packets() -> None:
    s = AudioSource(2, 4, 1, CODEC_G711, 8000)
    p0, p1 = s.payload(0), s.payload(1)
    assert len(p0) == 12 + 160
    v, pt, seq0, ts0, ssrc0 = struct.unpack("!BBHII", p0[:12])
    _, _, seq1, ts1, ssrc1 = struct.unpack("!BBHII", p1[:12])
    assert v == 0x80 and pt == 8
    assert seq1 == (seq0 + 1) & 0xFFFF and ts1 == (ts0 + 160) & 0xFFFFFFFF
    assert ssrc0 == ssrc1
    assert p0[12:] == codecs.encode_alaw(s.pcm(0, 160))
    other = AudioSource(2, 4, 2, CODEC_G711, 8000)  # another participant, another SSRC
    assert struct.unpack("!I", other.payload(0)[8:12])[0] != ssrc0


def test_bare_g711_when_raw() -> None:
    s = AudioSource(2, 4, 1, CODEC_G711, 8000, content_type=CONTENT_RAW)
    assert s.payload(3) == codecs.encode_alaw(s.pcm(3 * 160, 160))


@pytest.mark.skipif(not g722_available(), reason="rtms_fast.codecs has no G.722 encoder")
def test_g722_rtp_is_the_continuous_encoding() -> None:
    s = AudioSource(3, 0, 0, CODEC_G722, 16000)
    enc = codecs.G722Encoder()
    prev_ts = -1
    for k in range(4):
        expected_body = enc.encode(s.pcm(k * 320, 320))
        p = s.payload(k)
        assert p[12:] == expected_body and len(expected_body) == 160
        _, pt, _, ts, _ = struct.unpack("!BBHII", p[:12])
        assert pt == 9
        if prev_ts >= 0:
            assert ts == (prev_ts + 160) & 0xFFFFFFFF  # RTP clock 8000 for G.722
        prev_ts = ts
    assert s.payload(1)[12:] == s.payload(1)[12:]  # random access replays from the start


def test_b64_payload_matches_payload() -> None:
    import base64

    for s in (AudioSource(1, 0, 0, CODEC_L16, 16000), AudioSource(1, 0, 0, CODEC_G711, 8000)):
        for k in (0, 1, 77):
            assert base64.b64decode(s.b64_payload(k)) == s.payload(k)


def test_mixed_is_the_clipped_sum() -> None:
    m = MixedAudioSource(5, 1, 3, CODEC_L16, 16000)
    parts = [AudioSource(5, 1, p, CODEC_L16, 16000).pcm(640, 320).astype(np.int32)
             for p in range(3)]
    expected = np.clip(sum(parts), -32768, 32767).astype(np.int16)
    assert np.array_equal(m.pcm(640, 320), expected)
    assert m.payload(2) == expected.astype("<i2").tobytes()


def test_speakers_rotate_with_at_most_three() -> None:
    assert speakers_for_frame(2, 9, 20) == [0, 1]
    first = speakers_for_frame(5, 0, 20)
    later = speakers_for_frame(5, 50, 20)  # one second later
    assert len(first) == 3 and len(set(first)) == 3 and first != later
    assert participant_id(0) == 16778240 and participant_id(1) != participant_id(0)


@pytest.mark.parametrize(
    ("request_params", "expected"),
    [
        (None, DEFAULT),
        ({}, DEFAULT),
        ({"content_type": 2, "codec": 1, "sample_rate": 3, "channel": 1, "data_opt": 1,
          "send_rate": 100}, AudioFormat(CONTENT_RAW, CODEC_L16, 48000, 1, 100)),
        ({"content_type": 1, "codec": 2, "sample_rate": 0, "channel": 1, "data_opt": 2,
          "send_rate": 20}, AudioFormat(CONTENT_RTP, CODEC_G711, 8000, 1, 20)),
        ({"content_type": 2, "codec": 2, "sample_rate": 0, "channel": 1, "data_opt": 1,
          "send_rate": 20}, AudioFormat(CONTENT_RAW, CODEC_G711, 8000, 1, 20)),
    ],
)
def test_negotiation_serves_allowed_requests(request_params: object,
                                             expected: AudioFormat) -> None:
    fmt, _, fell_back = negotiate_audio(request_params, DEFAULT, 2)
    assert fmt == expected and not fell_back


@pytest.mark.parametrize(
    "bad",
    [
        {"content_type": 2, "codec": 4, "sample_rate": 3, "channel": 2, "data_opt": 2,
         "send_rate": 20},  # Opus: not produced here
        {"content_type": 1, "codec": 1, "sample_rate": 1, "channel": 1, "data_opt": 1,
         "send_rate": 20},  # L16 over RTP: not in the matrix
        {"content_type": 1, "codec": 2, "sample_rate": 1, "channel": 1, "data_opt": 1,
         "send_rate": 20},  # PCMA at 16k
        {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1, "data_opt": 1,
         "send_rate": 30},  # not a multiple of 20
        {"content_type": 1, "codec": 2, "sample_rate": 0, "channel": 1, "data_opt": 1,
         "send_rate": 40},  # RTP is 20 ms only
    ],
)
def test_negotiation_falls_back_outside_section_17(bad: dict[str, int]) -> None:
    fmt, _, fell_back = negotiate_audio(bad, DEFAULT, 2)
    assert fell_back and fmt == DEFAULT


def test_answer_has_all_six_keys() -> None:
    answer = audio_params_json(AudioFormat(CONTENT_RTP, CODEC_G711, 8000, 1, 20), 1)
    assert answer == {"content_type": 1, "codec": 2, "sample_rate": 0, "channel": 1,
                      "data_opt": 1, "send_rate": 20}
