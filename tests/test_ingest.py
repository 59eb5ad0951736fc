"""The batched ingest kernel end to end: WebSocket bytes in, ring contents and records out.

Expected audio is computed independently (stdlib base64/json to build messages, the
G.711 decoders of rtms_fast.codecs, numpy for L16, the standalone resampler)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from _ingest_frames import audio_message, frame, rtp_packet
from rtms_fast.codecs import decode_alaw, decode_ulaw, encode_alaw
from rtms_fast.ingest import (
    Codec,
    ContentType,
    IngestBatch,
    IngestConfig,
    IngestConnection,
    IngestError,
    IngestRecord,
    RecordKind,
    SampleFormat,
    ingest_batch,
)
from rtms_fast.native import ffi, lib
from rtms_fast.ring import MemoryBudget, RingOverflowPolicy
from rtms_fast.wire import ErrorCode, Opcode

RNG = np.random.default_rng(7)


def g711_config(**kw: object) -> IngestConfig:
    args: dict[str, object] = dict(
        codec=Codec.PCMA, content_type=ContentType.RTP, input_rate_hz=8000
    )
    args.update(kw)
    return IngestConfig(**args)  # type: ignore[arg-type]


def feed(conn: IngestConnection, data: bytes, cuts: Sequence[int] = ()) -> list[IngestRecord]:
    """Deliver ``data`` in reads split at ``cuts``, carrying remainders like a session does."""
    records: list[IngestRecord] = []
    pending = b""
    bounds = [0, *cuts, len(data)]
    for a, b in itertools.pairwise(bounds):
        pending += data[a:b]
        while True:
            result = ingest_batch([(conn, pending)])
            records.extend(result.records)
            pending = pending[result.consumed[0] :]
            assert not result.records_full
            if not result.call_again:
                break
    assert pending == b""
    return records


def ring_all(conn: IngestConnection, slot: int = 0) -> npt.NDArray[Any]:
    return conn.ring(slot).read_copy()


def random_bytes(n: int) -> bytes:
    return RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


# ---- codecs and content types -------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "pt", "decode"), [(Codec.PCMA, 8, decode_alaw), (Codec.PCMU, 0, decode_ulaw)]
)
def test_g711_over_rtp(codec: Codec, pt: int, decode: object) -> None:
    conn = IngestConnection(g711_config(codec=codec))
    payloads = [random_bytes(160) for _ in range(10)]
    data = b"".join(
        frame(audio_message(rtp_packet(p, seq, timestamp=160 * seq, pt=pt), timestamp=20 * seq))
        for seq, p in enumerate(payloads)
    )
    records = feed(conn, data)
    assert [r.kind for r in records] == [RecordKind.NEW_PARTICIPANT]
    assert records[0].user_id == 16778240 and records[0].user_name == "Alice"
    expected = decode(b"".join(payloads))  # type: ignore[operator]
    np.testing.assert_array_equal(ring_all(conn), expected)
    st = conn.stats()
    assert (st.messages, st.audio_ingested, st.samples_out, st.errors_total) == (10, 10, 1600, 0)


def test_rtp_payload_type_mismatch_is_an_error() -> None:
    conn = IngestConnection(g711_config())
    records = feed(conn, frame(audio_message(rtp_packet(bytes(160), 1, pt=0))))
    assert [(r.kind, r.error) for r in records][-1] == (
        RecordKind.ERROR,
        ErrorCode.RTP_PAYLOAD_TYPE,
    )
    assert conn.stats().errors == {ErrorCode.RTP_PAYLOAD_TYPE: 1}


def test_g711_raw() -> None:
    conn = IngestConnection(g711_config(content_type=ContentType.RAW))
    payloads = [random_bytes(160) for _ in range(4)]
    feed(conn, b"".join(frame(audio_message(p)) for p in payloads))
    np.testing.assert_array_equal(ring_all(conn), decode_alaw(b"".join(payloads)))


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_l16_rates(rate: int, channels: int) -> None:
    conn = IngestConnection(IngestConfig(input_rate_hz=rate, channels=channels))
    pcm = RNG.integers(-32768, 32768, rate // 50 * channels * 3, dtype=np.int16)
    chunks = np.split(pcm, 3)
    feed(
        conn,
        b"".join(
            frame(audio_message(c.astype("<i2").tobytes(), timestamp=20 * i))
            for i, c in enumerate(chunks)
        ),
    )
    np.testing.assert_array_equal(ring_all(conn), pcm)


def test_l16_float32_output() -> None:
    conn = IngestConnection(IngestConfig(sample_format=SampleFormat.FLOAT32))
    pcm = RNG.integers(-32768, 32768, 320, dtype=np.int16)
    feed(conn, frame(audio_message(pcm.tobytes())))
    out = ring_all(conn)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, pcm.astype(np.float32) / 32768)


def test_l16_odd_length_is_an_error() -> None:
    conn = IngestConnection(IngestConfig(channels=2))
    records = feed(conn, frame(audio_message(bytes(6))) + frame(audio_message(bytes(8))))
    assert records[-1].kind == RecordKind.ERROR
    assert records[-1].error == ErrorCode.INGEST_AUDIO_LENGTH
    assert len(ring_all(conn)) == 4


def _resample_reference(
    x: npt.NDArray[np.int16], rate_in: int, rate_out: int
) -> npt.NDArray[np.int16]:
    filt = ffi.gc(lib.rtms_resample_filter_new(rate_in, rate_out), lib.rtms_resample_filter_free)
    st = ffi.gc(lib.rtms_resampler_new(filt), lib.rtms_resampler_free)
    cap = lib.rtms_resample_max_output(filt, len(x))
    out = np.empty(cap, dtype=np.int16)
    n = lib.rtms_resampler_process_i16(
        st, ffi.from_buffer("int16_t[]", x), len(x), ffi.from_buffer("int16_t[]", out), cap
    )
    assert n >= 0
    return out[:n]


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16000, 48000), (8000, 16000), (48000, 16000)])
def test_resampling_matches_one_shot_resampler(rate_in: int, rate_out: int) -> None:
    conn = IngestConnection(IngestConfig(input_rate_hz=rate_in, output_rate_hz=rate_out))
    t = np.arange(rate_in // 50 * 10) / rate_in
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    data = b"".join(
        frame(audio_message(c.tobytes(), timestamp=20 * i)) for i, c in enumerate(np.split(pcm, 10))
    )
    feed(conn, data)
    np.testing.assert_array_equal(ring_all(conn), _resample_reference(pcm, rate_in, rate_out))


def test_resampled_g711_float_and_stereo() -> None:
    conn = IngestConnection(g711_config(output_rate_hz=16000, sample_format=SampleFormat.FLOAT32))
    payload = encode_alaw((8000 * np.sin(np.arange(1600) / 5)).astype(np.int16))
    feed(
        conn,
        b"".join(
            frame(audio_message(rtp_packet(payload[i : i + 160], i // 160)))
            for i in range(0, 1600, 160)
        ),
    )
    out = ring_all(conn)
    ref = _resample_reference(decode_alaw(payload), 8000, 16000).astype(np.float32) / 32768
    assert out.dtype == np.float32 and len(out) == len(ref)
    np.testing.assert_allclose(out, ref, atol=2 / 32768)

    st = IngestConnection(IngestConfig(channels=2, output_rate_hz=48000))
    left = RNG.integers(-3000, 3000, 3200, dtype=np.int16)
    right = RNG.integers(-3000, 3000, 3200, dtype=np.int16)
    inter = np.empty(6400, dtype=np.int16)
    inter[0::2], inter[1::2] = left, right
    feed(st, b"".join(frame(audio_message(c.tobytes())) for c in np.split(inter, 10)))
    got = ring_all(st)
    np.testing.assert_array_equal(got[0::2], _resample_reference(left, 16000, 48000))
    np.testing.assert_array_equal(got[1::2], _resample_reference(right, 16000, 48000))


@pytest.mark.parametrize("stereo", [False, True])
def test_scratch_grows_with_the_messages_without_changing_the_output(stereo: bool) -> None:
    """Scratch starts empty and grows to the largest message seen: messages of 20 ms, then
    1 s, then 20 ms, then a fragmented 3 s one resample exactly as one long input would."""
    channels = 2 if stereo else 1
    conn = IngestConnection(IngestConfig(input_rate_hz=16000, output_rate_hz=48000,
                                         channels=channels, ring_capacity_ms=20_000))
    sizes = [320, 16000, 320, 48000, 640]  # samples per channel
    pcm = RNG.integers(-8000, 8000, sum(sizes) * channels, dtype=np.int16)
    data = b""
    at = 0
    for i, n in enumerate(sizes):
        body = audio_message(pcm[at : at + n * channels].tobytes(), timestamp=20 * i)
        at += n * channels
        if n == 48000:  # fragmented: through the reassembly buffer, which grows too
            third = len(body) // 3
            data += (frame(body[:third], fin=False) + frame(body[third : 2 * third], opcode=0,
                                                              fin=False)
                     + frame(body[2 * third :], opcode=0))
        else:
            data += frame(body)
    records = feed(conn, data)
    assert [r for r in records if r.kind == RecordKind.ERROR] == []
    got = ring_all(conn)
    for k in range(channels):
        np.testing.assert_array_equal(got[k::channels],
                                      _resample_reference(pcm[k::channels].copy(), 16000,
                                                          48000))


def test_unsupported_codec_or_rate_is_refused() -> None:
    with pytest.raises(IngestError):
        IngestConnection(IngestConfig(input_rate_hz=11025, output_rate_hz=16000))


# ---- participants -------------------------------------------------------------------------


def test_multiple_participants_get_their_own_rings() -> None:
    conn = IngestConnection(g711_config(content_type=ContentType.RAW))
    users = {101: "Ann", 202: 'B\u00e9a "B"', 303: "Cy"}
    sent: dict[int, list[bytes]] = {u: [] for u in users}
    msgs = []
    for i in range(12):
        uid = list(users)[i % 3]
        p = random_bytes(160)
        sent[uid].append(p)
        msgs.append(frame(audio_message(p, user_id=uid, user_name=users[uid], timestamp=i)))
    records = feed(conn, b"".join(msgs))
    new = [r for r in records if r.kind == RecordKind.NEW_PARTICIPANT]
    assert [(r.user_id, r.user_name, r.slot) for r in new] == [
        (uid, name, i) for i, (uid, name) in enumerate(users.items())
    ]
    for r in new:
        assert r.user_id is not None
        np.testing.assert_array_equal(
            ring_all(conn, r.slot), decode_alaw(b"".join(sent[r.user_id]))
        )
        info = conn.participant(r.slot)
        assert info.user_id == r.user_id and info.messages == 4 and info.items_produced == 640
        assert info.position_at_last_timestamp == 480
    assert conn.participant(1).last_timestamp_ms == 10


def test_channel_id_keys() -> None:
    conn = IngestConnection(g711_config(content_type=ContentType.RAW))
    data = b"".join(
        frame(audio_message(bytes([i]) * 160, user_id=None, channel_id=ch))
        for i, ch in enumerate(["ch/1", "ch-2", "ch/1"])
    )
    data += frame(audio_message(bytes(160), user_id=None, channel_id="ch/1", escape_slash=True))
    records = feed(conn, data)
    assert [(r.channel_id, r.slot) for r in records] == [("ch/1", 0), ("ch-2", 1)]
    assert conn.participant(0).channel_id == "ch/1"
    assert conn.participant(0).messages == 3
    assert len(ring_all(conn, 1)) == 160


def test_mixed_mode_uses_one_slot() -> None:
    conn = IngestConnection(g711_config(content_type=ContentType.RAW, mixed=True))
    data = b"".join(frame(audio_message(bytes([i]) * 160, user_id=i)) for i in range(5))
    data += frame(b'{"msg_type":14,"content":{"data":"' + b"MTEx" * 53 + b'MQ==","timestamp":9}}')
    records = feed(conn, data)
    assert [r.kind for r in records] == [RecordKind.NEW_PARTICIPANT]
    assert conn.participant_count == 1 and len(ring_all(conn)) == 6 * 160


def test_participant_limit_and_budget_refusals_are_counted() -> None:
    conn = IngestConnection(g711_config(content_type=ContentType.RAW, max_participants=2))
    records = feed(
        conn, b"".join(frame(audio_message(bytes(160), user_id=u)) for u in (1, 2, 3, 3))
    )
    errors = [r.error for r in records if r.kind == RecordKind.ERROR]
    assert errors == [ErrorCode.INGEST_SLOTS_FULL] * 2
    assert conn.stats().slots_refused == 2 and conn.participant_count == 2

    budget = MemoryBudget(0)
    poor = IngestConnection(g711_config(content_type=ContentType.RAW), budget)
    records = feed(poor, frame(audio_message(bytes(160))))
    assert [(r.kind, r.error) for r in records] == [(RecordKind.ERROR, ErrorCode.INGEST_BUDGET)]
    assert poor.stats().slots_refused == 1


# ---- RTP loss, reordering, gaps ------------------------------------------------------------


def test_rtp_loss_becomes_silence_and_late_or_duplicate_packets_are_dropped() -> None:
    conn = IngestConnection(g711_config())
    payloads = {s: bytes([0x10 + s]) * 160 for s in range(8)}
    order = [0, 1, 4, 2, 5, 5, 6, 7]  # 2 and 3 lost; 2 comes late; 5 twice
    feed(conn, b"".join(frame(audio_message(rtp_packet(payloads[s], s))) for s in order))
    out = ring_all(conn)
    expected = np.concatenate(
        [
            decode_alaw(payloads[0] + payloads[1]),
            np.zeros(320, np.int16),
            decode_alaw(payloads[4] + payloads[5] + payloads[6] + payloads[7]),
        ]
    )
    np.testing.assert_array_equal(out, expected)
    st = conn.stats()
    assert (st.rtp_lost, st.rtp_late, st.rtp_duplicate, st.silence_samples) == (2, 1, 1, 320)
    assert conn.participant(0).silence_items == 320


def test_rtp_loss_not_filled_when_disabled() -> None:
    conn = IngestConnection(g711_config(fill_gaps=False))
    feed(conn, b"".join(frame(audio_message(rtp_packet(bytes(160), s))) for s in (0, 3)))
    assert len(ring_all(conn)) == 320 and conn.stats().rtp_lost == 2


def test_raw_timestamp_gap_filled_whole_frames() -> None:
    conn = IngestConnection(IngestConfig())  # L16 16 kHz, 20 ms = 320 samples
    one = np.full(320, 7, np.int16).tobytes()
    stamps = [1000, 1020, 1041, 1101, 1119]  # +1 ms jitter ignored; 40 ms missing; early ok
    feed(conn, b"".join(frame(audio_message(one, timestamp=t)) for t in stamps))
    out = ring_all(conn)
    assert len(out) == 5 * 320 + 2 * 320
    assert np.count_nonzero(out == 0) == 640
    assert conn.stats().gaps_filled == 1


def test_gap_longer_than_max_is_not_filled() -> None:
    conn = IngestConnection(IngestConfig(max_gap_ms=100))
    one = np.full(320, 7, np.int16).tobytes()
    feed(conn, b"".join(frame(audio_message(one, timestamp=t)) for t in (0, 20, 5000)))
    assert len(ring_all(conn)) == 960 and conn.stats().gaps_too_long == 1


# ---- framing ---------------------------------------------------------------------------------


def test_fragmented_message_with_interleaved_ping() -> None:
    conn = IngestConnection(g711_config())
    payload = random_bytes(160)
    msg = audio_message(rtp_packet(payload, 1))
    keepalive = json.dumps({"msg_type": 12, "timestamp": 5}).encode()
    data = (
        frame(msg[:40], fin=False)
        + frame(b"p", opcode=9)
        + frame(msg[40:100], opcode=0, fin=False)
        + frame(msg[100:], opcode=0)
        + frame(keepalive[:10], opcode=2, fin=False)
        + frame(keepalive[10:], opcode=0)
    )
    records = feed(conn, data)
    kinds = [(r.kind, r.opcode, r.payload) for r in records if r.kind != RecordKind.NEW_PARTICIPANT]
    assert kinds == [
        (RecordKind.CONTROL, Opcode.PING, b"p"),
        (RecordKind.MESSAGE, Opcode.BINARY, keepalive),
    ]
    assert records[-1].in_connection_buffer and records[-1].msg_type == 12
    np.testing.assert_array_equal(ring_all(conn), decode_alaw(payload))


def test_control_and_text_messages_point_into_the_input() -> None:
    conn = IngestConnection(g711_config())
    ev = b'{"msg_type":8,"state":1}'
    data = frame(b"\x03\xe8bye", opcode=8) + frame(ev)
    result = ingest_batch([(conn, data)])
    close, msg = result.records
    assert (close.kind, close.opcode, close.payload) == (
        RecordKind.CONTROL,
        Opcode.CLOSE,
        b"\x03\xe8bye",
    )
    assert data[close.offset : close.offset + close.length] == b"\x03\xe8bye"
    assert (msg.kind, msg.msg_type, msg.payload, msg.error) == (
        RecordKind.MESSAGE,
        8,
        ev,
        ErrorCode.NONE,
    )
    assert data[msg.offset : msg.offset + msg.length] == ev


def test_framing_error_fails_the_connection_until_reset() -> None:
    conn = IngestConnection(g711_config())
    good = frame(audio_message(rtp_packet(bytes(160), 1)))
    result = ingest_batch([(conn, good + frame(b"x", rsv=2) + good)])
    assert result.consumed == [len(good) * 2 + 3]
    assert [(r.kind, r.error, r.fatal) for r in result.records][-1] == (
        RecordKind.ERROR,
        ErrorCode.WS_RSV,
        True,
    )
    again = ingest_batch([(conn, good)])
    assert [(r.error, r.fatal) for r in again.records] == [(ErrorCode.WS_CONNECTION_FAILED, True)]
    assert again.consumed == [len(good)]
    conn.reset()
    feed(conn, frame(audio_message(rtp_packet(bytes(160), 2))))
    assert conn.stats().audio_ingested == 2


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(b"x", opcode=0), ErrorCode.WS_UNEXPECTED_CONTINUATION),
        (frame(b"x", fin=False) + frame(b"y"), ErrorCode.WS_EXPECTED_CONTINUATION),
        (frame(b"x", mask=b"abcd"), ErrorCode.WS_MASKED),
        (frame(b"x" * 200, fin=False) + frame(b"x" * 900, opcode=0), ErrorCode.WS_TOO_BIG),
    ],
)
def test_framing_errors(data: bytes, code: ErrorCode) -> None:
    conn = IngestConnection(g711_config(max_message_bytes=1000))
    result = ingest_batch([(conn, data)])
    assert result.records[-1].error == code and result.records[-1].fatal


def test_masked_frames_for_simulator_tests() -> None:
    conn = IngestConnection(g711_config(allow_masked=True))
    payload = random_bytes(160)
    data = frame(audio_message(rtp_packet(payload, 1)), mask=b"\x01\x02\x03\x04")
    data += frame(b"hey", opcode=9, mask=b"\x05\x06\x07\x08")
    records = feed(conn, data)
    assert records[-1].payload == b"hey" and records[-1].in_connection_buffer
    np.testing.assert_array_equal(ring_all(conn), decode_alaw(payload))


def _stream() -> bytes:
    rng = random.Random(2)
    parts = []
    for seq in range(7):
        uid = 1 + seq % 2
        msg = audio_message(
            rtp_packet(bytes([rng.randrange(256)] * 160), seq // 2), user_id=uid, timestamp=seq
        )
        if seq % 5 == 3:
            parts.append(
                frame(msg[:77], fin=False) + frame(b"", opcode=10) + frame(msg[77:], opcode=0)
            )
        else:
            parts.append(frame(msg))
        if seq % 4 == 1:
            parts.append(frame(b'{"msg_type":12,"timestamp":%d}' % seq))
    parts.append(frame(audio_message(b"\x00junk")))
    return b"".join(parts)


def _summary(conn: IngestConnection, records: list[IngestRecord]) -> object:
    rings = [ring_all(conn, s).tobytes() for s in range(conn.participant_count)]
    recs = [(r.kind, r.error, r.msg_type, r.opcode, r.payload, r.user_id, r.slot) for r in records]
    st = conn.stats()
    return rings, recs, (st.messages, st.audio_ingested, st.samples_out, st.errors)


def test_split_reads_at_every_byte_boundary_give_identical_results() -> None:
    data = _stream()

    def fresh() -> IngestConnection:
        return IngestConnection(g711_config(max_message_bytes=4096, ring_capacity_ms=500))

    ref_conn = fresh()
    reference = _summary(ref_conn, feed(ref_conn, data))
    for cut in range(1, len(data)):
        conn = fresh()
        assert _summary(conn, feed(conn, data, [cut])) == reference, cut
    rng = random.Random(9)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(data)), 8))
        conn = fresh()
        assert _summary(conn, feed(conn, data, cuts)) == reference


def test_records_full_stops_cleanly_and_resumes() -> None:
    data = b"".join(frame(b'{"msg_type":12,"timestamp":%d}' % i) for i in range(10))
    conn = IngestConnection(g711_config())
    batch = IngestBatch(max_connections=2, max_records=3)
    pending = data
    got: list[bytes] = []
    rounds = 0
    while pending:
        result = batch.run([(conn, pending)])
        got.extend(r.payload for r in result.records)
        assert result.records_full == result.call_again == bool(pending[result.consumed[0] :])
        pending = pending[result.consumed[0] :]
        rounds += 1
    assert got == [b'{"msg_type":12,"timestamp":%d}' % i for i in range(10)]
    assert rounds == 5


def test_one_call_for_many_connections() -> None:
    conns = [IngestConnection(g711_config()) for _ in range(5)]
    payloads = [random_bytes(160) for _ in conns]
    inputs = [
        (c, frame(audio_message(rtp_packet(p, 1))) + frame(b"z", opcode=9)[:2])
        for c, p in zip(conns, payloads, strict=True)
    ]
    result = IngestBatch(8, 64).run(inputs)
    assert [r.conn for r in result.records] == [0, 1, 2, 3, 4]
    assert result.consumed == [len(d) - 2 for _, d in inputs]
    for c, p in zip(conns, payloads, strict=True):
        np.testing.assert_array_equal(ring_all(c), decode_alaw(p))


def test_drop_newest_ring_counts_refused_samples() -> None:
    conn = IngestConnection(
        g711_config(
            content_type=ContentType.RAW,
            ring_capacity_ms=50,
            ring_policy=RingOverflowPolicy.DROP_NEWEST,
        )
    )
    feed(conn, b"".join(frame(audio_message(bytes([0xD5]) * 160)) for _ in range(400)))
    cap = conn.ring(0).capacity
    st = conn.stats()
    assert st.samples_out == 400 * 160
    assert st.ring_dropped == 400 * 160 - cap
    assert conn.ring(0).stats().dropped_newest == st.ring_dropped


G722_DIR = Path(__file__).parent / "data" / "g722-full"


@pytest.mark.parametrize("content_type", [ContentType.RTP, ContentType.RAW])
def test_g722_matches_the_reference_decoder_output(content_type: ContentType) -> None:
    """speech.g722 in 20 ms messages must decode to G.191's mode-1 output exactly."""
    coded = (G722_DIR / "speech.g722").read_bytes()
    expected = np.frombuffer((G722_DIR / "speech.m1.pcm").read_bytes(), dtype="<i2")
    n_frames = min(len(coded) // 160, 100)
    conn = IngestConnection(
        IngestConfig(
            codec=Codec.G722, content_type=content_type, input_rate_hz=16000, ring_capacity_ms=5000
        )
    )
    parts = []
    for i in range(n_frames):
        block = coded[160 * i : 160 * (i + 1)]
        data = rtp_packet(block, i, pt=9) if content_type == ContentType.RTP else block
        parts.append(frame(audio_message(data, timestamp=20 * i)))
    feed(conn, b"".join(parts))
    np.testing.assert_array_equal(ring_all(conn), expected[: 320 * n_frames])


def test_g722_needs_mono_16k() -> None:
    with pytest.raises(IngestError):
        IngestConnection(IngestConfig(codec=Codec.G722, input_rate_hz=8000))


def test_backpressure_ring_refusal_of_long_messages_is_counted_in_both_places() -> None:
    conn = IngestConnection(
        IngestConfig(
            ring_capacity_ms=100,  # 1600 items, page-rounded
            ring_policy=RingOverflowPolicy.BACKPRESSURE,
        )
    )
    one_second = np.arange(16000, dtype=np.int16)
    feed(conn, frame(audio_message(one_second.tobytes())))
    ring = conn.ring(0)
    st = conn.stats()
    assert st.ring_dropped == 16000 - ring.capacity
    assert ring.stats().refused == st.ring_dropped
    np.testing.assert_array_equal(ring.read_copy(), one_second[: ring.capacity])
