"""Deterministic media content for the RTMS simulator.

Everything a simulated session sends is a pure function of (seed, session index,
participant index, negotiated format, frame index), so a test can predict every byte
a client must receive. This module builds content only; it must never touch sockets,
clocks or Trio.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from rtms_fast import codecs

__all__ = [
    "CODEC_G711",
    "CODEC_G722",
    "CODEC_L16",
    "CONTENT_RAW",
    "CONTENT_RTP",
    "RATE_HZ_BY_CODE",
    "AudioFormat",
    "AudioSource",
    "MixedAudioSource",
    "deskshare_frame",
    "g722_available",
    "meeting_uuid_for",
    "participant_id",
    "participant_name",
    "speakers_for_frame",
    "stream_id_for",
    "transcript_end_ms",
    "transcript_text",
    "video_frame",
    "warm_voices",
]

CONTENT_RTP: Final = 1
CONTENT_RAW: Final = 2
CODEC_L16: Final = 1
CODEC_G711: Final = 2
CODEC_G722: Final = 3
RATE_HZ_BY_CODE: Final = {0: 8000, 1: 16000, 2: 32000, 3: 48000}
RATE_CODE_BY_HZ: Final = {hz: code for code, hz in RATE_HZ_BY_CODE.items()}

# RFC 3551 static payload types and the RTP clock each one runs at.
_RTP_PT_PCMA: Final = 8
_RTP_PT_G722: Final = 9
_MAX_ACTIVE_SPEAKERS: Final = 3  # production multi-stream carries at most 3 speakers per frame
_FIRST_USER_ID: Final = 16778240


def g722_available() -> bool:
    """True when `rtms_fast.codecs` provides a G.722 encoder."""
    return hasattr(codecs, "G722Encoder") or hasattr(codecs, "encode_g722")


def participant_id(participant_index: int) -> int:
    """The integer Zoom user id of participant `participant_index` (same in every session)."""
    return _FIRST_USER_ID + 1024 * participant_index


def participant_name(participant_index: int) -> str:
    return f"Participant {participant_index}"


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(repr(parts).encode()).digest()


def meeting_uuid_for(seed: int, session_index: int) -> str:
    """A Zoom-looking meeting UUID (base64 of 16 bytes, ends in '==')."""
    return base64.b64encode(_digest("meeting", seed, session_index)[:16]).decode()


def stream_id_for(seed: int, session_index: int) -> str:
    return _digest("stream", seed, session_index)[:16].hex()


def speakers_for_frame(participants: int, frame_index: int, send_rate_ms: int) -> list[int]:
    """Participant indexes that speak in multi-stream frame `frame_index`, in send order.

    Up to three speakers per frame; the set rotates every second so every participant
    is heard.
    """
    if participants <= _MAX_ACTIVE_SPEAKERS:
        return list(range(participants))
    first = (frame_index * send_rate_ms // 1000) % participants
    return [(first + j) % participants for j in range(_MAX_ACTIVE_SPEAKERS)]


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """A negotiated audio format: what one media socket's audio messages carry."""

    content_type: int = CONTENT_RAW
    codec: int = CODEC_L16
    rate_hz: int = 16000
    channels: int = 1
    send_rate_ms: int = 20

    @property
    def samples_per_frame(self) -> int:
        return self.rate_hz * self.send_rate_ms // 1000

    @property
    def rtp(self) -> bool:
        return self.content_type == CONTENT_RTP

    @classmethod
    def for_codec(cls, codec: int, rate_hz: int, content_type: int | None = None,
                  channels: int = 1, send_rate_ms: int = 20) -> AudioFormat:
        """The format for ``codec``; without a content type, L16 is raw and G.711/G.722
        travel in RTP, as in production (RTMS_PROTOCOL.md section 17)."""
        if content_type is None:
            content_type = CONTENT_RAW if codec == CODEC_L16 else CONTENT_RTP
        return cls(content_type, codec, rate_hz, channels, send_rate_ms)


_VOICES: Final = 32  # distinct voices per seed; sources pick one and a start offset


@functools.lru_cache(maxsize=1024)
def _voice(seed: int, voice: int, rate_hz: int) -> npt.NDArray[np.int16]:
    """One second of int16 PCM that repeats forever (integer tone frequencies, so the loop
    joins without a click). Shared by every source that uses this voice: read-only."""
    rng = np.random.default_rng(int.from_bytes(_digest("voice", seed, voice)[:8], "little"))
    t = np.arange(rate_hz, dtype=np.float64) / rate_hz
    f1 = int(rng.integers(140, 420))
    f2 = f1 * 2 + int(rng.integers(1, 40))
    amp = float(rng.integers(2500, 7000))
    # syllable-like envelope: 4 bursts per second
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t + float(rng.uniform(0, 6.28)))
    sig = amp * env * (np.sin(2 * np.pi * f1 * t) + 0.35 * np.sin(2 * np.pi * f2 * t))
    noise = rng.normal(0.0, 60.0, rate_hz)
    out = np.clip(np.rint(sig + noise), -32768, 32767).astype(np.int16)
    out.flags.writeable = False
    return out


def _voice_choice(seed: int, session_index: int, participant_index: int,
                  rate_hz: int, samples_per_frame: int) -> tuple[int, int]:
    """(voice, start offset in samples) of one participant.

    The offset is a multiple of gcd(frame, loop), so every frame of every participant
    with the same voice and format is one of a few shared frames (cheap to cache).
    """
    d = _digest("participant", seed, session_index, participant_index)
    step = math.gcd(samples_per_frame, rate_hz)
    return d[0] % _VOICES, (int.from_bytes(d[1:5], "little") % (rate_hz // step)) * step


def warm_voices(seed: int, fmt: AudioFormat) -> None:
    """Compute every voice loop of `fmt` now, so starting a session later is cheap."""
    for voice in range(_VOICES):
        _voice(seed, voice, fmt.rate_hz)
        if fmt.codec != CODEC_G722:
            _encoded_voice2(seed, voice, fmt.rate_hz, fmt.codec, fmt.channels)


def _encode_stateless(pcm: npt.NDArray[np.int16], codec: int, channels: int) -> bytes:
    if codec == CODEC_L16:
        if channels == 2:
            pcm = np.repeat(pcm, 2)
        return pcm.astype("<i2").tobytes()
    return codecs.encode_alaw(pcm)


@functools.lru_cache(maxsize=1024)
def _encoded_voice2(seed: int, voice: int, rate_hz: int, codec: int, channels: int) -> bytes:
    """A voice loop encoded (L16 or G.711) and doubled, so any frame is one slice."""
    enc = _encode_stateless(_voice(seed, voice, rate_hz), codec, channels)
    return enc + enc


@functools.lru_cache(maxsize=1024)
def _shared_b64_table(seed: int, voice: int, rate_hz: int, codec: int, channels: int,
                      samples_per_frame: int) -> dict[int, bytes]:
    """base64 frames of one voice in one format, by start offset (filled on first use)."""
    return {}


def _take_loop(loop: npt.NDArray[np.int16], start_sample: int, n: int) -> npt.NDArray[np.int16]:
    idx = (start_sample + np.arange(n, dtype=np.int64)) % len(loop)
    return loop[idx]


class _AudioBase:
    fmt: AudioFormat

    def __init__(self, fmt: AudioFormat, ssrc_key: tuple[object, ...]) -> None:
        if fmt.codec == CODEC_G722 and not g722_available():
            raise NotImplementedError("G.722 needs rtms_fast.codecs.G722Encoder")
        self.fmt = fmt
        self.ssrc = int.from_bytes(_digest("ssrc", *ssrc_key)[:4], "big")
        self._bytes_per_sample = (2 * fmt.channels) if fmt.codec == CODEC_L16 else 1
        self._loop, self._shift, self._encoded_loop2 = self._make_loop()
        self._b64_by_offset: dict[int, bytes] = self._b64_table()
        self._g722_enc: Any = None
        self._g722_next = 0
        self._g722_cache: dict[int, bytes] = {}

    def _make_loop(self) -> tuple[npt.NDArray[np.int16], int, bytes]:
        """(PCM loop, start offset into it, the doubled encoded loop or b'' for G.722)."""
        raise NotImplementedError

    def pcm(self, start_sample: int, n: int) -> npt.NDArray[np.int16]:
        """The mono int16 PCM for samples [start_sample, start_sample + n), before encoding."""
        return _take_loop(self._loop, start_sample + self._shift, n)

    def codec_bytes(self, frame_index: int) -> bytes:
        """Encoded audio of frame `frame_index` (no RTP header)."""
        fmt = self.fmt
        n = fmt.samples_per_frame
        if fmt.codec == CODEC_G722:
            return self._g722_frame(frame_index)
        loop_len = len(self._loop)
        if n <= loop_len:
            off = ((frame_index * n + self._shift) % loop_len) * self._bytes_per_sample
            return self._encoded_loop2[off : off + n * self._bytes_per_sample]
        return _encode_stateless(self.pcm(frame_index * n, n), fmt.codec, fmt.channels)

    def _g722_frame(self, frame_index: int) -> bytes:
        # G.722 is stateful: frame k is the continuous encoding of samples from 0.
        cached = self._g722_cache.get(frame_index)
        if cached is not None:
            return cached
        if self._g722_enc is None or frame_index < self._g722_next:
            self._g722_enc = _new_g722_encoder()
            self._g722_next = 0
            self._g722_cache.clear()
        n = self.fmt.samples_per_frame
        out = b""
        while self._g722_next <= frame_index:
            k = self._g722_next
            out = _g722_encode(self._g722_enc, self.pcm(k * n, n))
            self._g722_next += 1
        # keep a small window so a repeated request for a recent frame stays cheap
        if len(self._g722_cache) > 64:
            self._g722_cache.clear()
        self._g722_cache[frame_index] = out
        return out

    def rtp_header(self, frame_index: int) -> bytes:
        fmt = self.fmt
        if fmt.codec == CODEC_G722:
            pt, clock_step = _RTP_PT_G722, 8000 * fmt.send_rate_ms // 1000
        else:
            pt, clock_step = _RTP_PT_PCMA, fmt.samples_per_frame
        seq = (self.ssrc + frame_index) & 0xFFFF
        ts = (self.ssrc * 7 + frame_index * clock_step) & 0xFFFFFFFF
        return struct.pack("!BBHII", 0x80, pt, seq, ts, self.ssrc)

    def _b64_table(self) -> dict[int, bytes]:
        return {}

    def b64_cache(self) -> tuple[dict[int, bytes], int, int] | None:
        """(cache by sample offset, offset of frame 0, loop length) for the sweep's fast
        path, or None when frames cannot be cached (RTP headers, G.722, frames > 1 s)."""
        fmt = self.fmt
        if fmt.rtp or fmt.codec == CODEC_G722 or fmt.samples_per_frame > len(self._loop):
            return None
        return self._b64_by_offset, self._shift, len(self._loop)

    def b64_payload(self, frame_index: int) -> bytes:
        """base64 of `payload(frame_index)` (no newline): what goes into `content.data`.

        Cached per distinct frame. A 12-byte RTP header is a whole number of base64
        groups, so header and body encode separately.
        """
        fmt = self.fmt
        if fmt.codec == CODEC_G722:
            body = binascii.b2a_base64(self.codec_bytes(frame_index), newline=False)
        else:
            n = fmt.samples_per_frame
            loop_len = len(self._loop)
            key = (frame_index * n + self._shift) % loop_len
            cached = self._b64_by_offset.get(key) if n <= loop_len else None
            if cached is None:
                cached = binascii.b2a_base64(self.codec_bytes(frame_index), newline=False)
                if n <= loop_len:
                    self._b64_by_offset[key] = cached
            body = cached
        if fmt.rtp:
            return binascii.b2a_base64(self.rtp_header(frame_index), newline=False) + body
        return body

    def payload(self, frame_index: int) -> bytes:
        """The exact bytes of frame `frame_index` on the wire, before base64."""
        body = self.codec_bytes(frame_index)
        if self.fmt.rtp:
            return self.rtp_header(frame_index) + body
        return body


def _new_g722_encoder() -> Any:
    enc_cls = getattr(codecs, "G722Encoder", None)
    if enc_cls is not None:
        return enc_cls()
    return None


def _g722_encode(encoder: Any, pcm: npt.NDArray[np.int16]) -> bytes:
    if encoder is not None:
        return bytes(encoder.encode(pcm))
    raise NotImplementedError("G.722 encoder without state is not usable for streams")


class AudioSource(_AudioBase):
    """The audio of one participant of one session, in one negotiated format.

    `pcm(start_sample, n)` is the int16 PCM before encoding; `payload(frame_index)` the
    exact bytes of one message's `data` before base64 (an RTP packet when the format is
    RTP, bare codec bytes otherwise).
    """

    def __init__(
        self,
        seed: int,
        session_index: int,
        participant_index: int,
        codec: int = CODEC_L16,
        rate: int = 16000,
        *,
        content_type: int | None = None,
        channels: int = 1,
        send_rate_ms: int = 20,
    ) -> None:
        self.seed = seed
        self.session_index = session_index
        self.participant_index = participant_index
        fmt = AudioFormat.for_codec(codec, rate, content_type, channels, send_rate_ms)
        super().__init__(fmt, (seed, session_index, participant_index))

    def _make_loop(self) -> tuple[npt.NDArray[np.int16], int, bytes]:
        fmt = self.fmt
        voice, shift = _voice_choice(self.seed, self.session_index, self.participant_index,
                                     fmt.rate_hz, fmt.samples_per_frame)
        encoded = b""
        if fmt.codec != CODEC_G722:
            encoded = _encoded_voice2(self.seed, voice, fmt.rate_hz, fmt.codec, fmt.channels)
        self._voice_index = voice
        return _voice(self.seed, voice, fmt.rate_hz), shift, encoded

    def _b64_table(self) -> dict[int, bytes]:
        fmt = self.fmt
        return _shared_b64_table(self.seed, self._voice_index, fmt.rate_hz, fmt.codec,
                                 fmt.channels, fmt.samples_per_frame)


class MixedAudioSource(_AudioBase):
    """The mixed stream (data_opt 1) of a session: the clipped sum of every participant."""

    def __init__(
        self,
        seed: int,
        session_index: int,
        participants: int,
        codec: int = CODEC_L16,
        rate: int = 16000,
        *,
        content_type: int | None = None,
        channels: int = 1,
        send_rate_ms: int = 20,
    ) -> None:
        self.seed = seed
        self.session_index = session_index
        self.participants = participants
        fmt = AudioFormat.for_codec(codec, rate, content_type, channels, send_rate_ms)
        super().__init__(fmt, (seed, session_index, "mixed"))

    def _make_loop(self) -> tuple[npt.NDArray[np.int16], int, bytes]:
        fmt = self.fmt
        total = np.zeros(fmt.rate_hz, dtype=np.int32)
        for p in range(self.participants):
            voice, shift = _voice_choice(self.seed, self.session_index, p, fmt.rate_hz,
                                         fmt.samples_per_frame)
            total += np.roll(_voice(self.seed, voice, fmt.rate_hz), -shift)
        loop = np.clip(total, -32768, 32767).astype(np.int16)
        encoded = b""
        if fmt.codec != CODEC_G722:
            enc = _encode_stateless(loop, fmt.codec, fmt.channels)
            encoded = enc + enc
        return loop, 0, encoded


_SENTENCE: Final = (
    "the quarterly numbers look good so let us move on to the roadmap and "
    "then we can review the open questions from the support team before lunch"
)
_WORDS: Final = tuple(_SENTENCE.split())


def transcript_text(seed: int, session_index: int, line_index: int) -> str:
    """Transcript line `line_index` of a session (plain UTF-8 text)."""
    d = _digest("transcript", seed, session_index, line_index)
    start = d[0] % len(_WORDS)
    count = 4 + d[1] % 8
    words = [_WORDS[(start + i) % len(_WORDS)] for i in range(count)]
    return " ".join(words).capitalize() + "."


def transcript_end_ms(start_ms: int, interval_ms: int) -> int:
    """`end_time` of a transcript line spoken from `start_ms` in an `interval_ms` slot:
    100 ms of silence before the next line (at least 1 ms of speech)."""
    return start_ms + max(1, interval_ms - 100)


def _jpeg_like(tag: str, seed: int, session_index: int, frame_index: int) -> bytes:
    # SOI + APP0 "JFIF" + a deterministic body + EOI: recognisable by magic bytes.
    body = _digest(tag, seed, session_index, frame_index) * 4
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + app0 + b"\xff\xda" + body + b"\xff\xd9"


def video_frame(seed: int, session_index: int, frame_index: int) -> bytes:
    return _jpeg_like("video", seed, session_index, frame_index)


def deskshare_frame(seed: int, session_index: int, frame_index: int) -> bytes:
    return _jpeg_like("deskshare", seed, session_index, frame_index)
