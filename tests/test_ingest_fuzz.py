"""Property tests of the ingest kernel on random and mutated byte streams.

For any input: no crash, and every byte is accounted for. Concretely, fed in random
reads with remainders carried over, the kernel consumes exactly the complete frames
(the rest stays a remainder), every complete data message ends up as audio, a
returned message, an error record or a counted RTP drop, the record counts match the
counters, record ranges lie inside the buffer, and the outcome does not depend on how
the stream was split into reads.

The seed corpus is tests/data/ingest-corpus (regenerate with
``python tests/_ingest_frames.py``); the sanitizer test replays it too.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _ingest_frames import CORPUS_DIR, frame, seed_corpus
from rtms_fast.ingest import (
    Codec,
    ContentType,
    IngestConfig,
    IngestConnection,
    RecordKind,
    ingest_batch,
)
from rtms_fast.wire import ErrorCode

CONFIGS = [
    IngestConfig(
        codec=Codec.PCMA,
        content_type=ContentType.RTP,
        input_rate_hz=8000,
        max_message_bytes=4096,
        max_participants=4,
        ring_capacity_ms=200,
    ),
    IngestConfig(
        codec=Codec.L16,
        content_type=ContentType.RAW,
        input_rate_hz=16000,
        output_rate_hz=48000,
        channels=1,
        max_message_bytes=4096,
        mixed=True,
    ),
    IngestConfig(
        codec=Codec.PCMU,
        content_type=ContentType.RAW,
        input_rate_hz=8000,
        max_message_bytes=4096,
        allow_masked=True,
        max_participants=2,
    ),
]


def corpus() -> list[bytes]:
    files = sorted(CORPUS_DIR.glob("*.bin"))
    assert files, f"seed corpus missing in {CORPUS_DIR}"
    return [f.read_bytes() for f in files]


def test_corpus_on_disk_is_current() -> None:
    on_disk = {p.stem: p.read_bytes() for p in CORPUS_DIR.glob("*.bin")}
    assert on_disk == seed_corpus()


def run(config: IngestConfig, data: bytes, cuts: list[int]) -> tuple[object, int]:
    """Feed ``data`` split at ``cuts``; check the accounting; return a comparable outcome."""
    conn = IngestConnection(config)
    pending = b""
    consumed_total = 0
    records = []
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(data))), len(data)]
    for a, b in itertools.pairwise(bounds):
        pending += data[a:b]
        while True:
            result = ingest_batch([(conn, pending)], max_records=8)
            used = result.consumed[0]
            assert 0 <= used <= len(pending)
            for r in result.records:
                if not r.in_connection_buffer:
                    assert r.offset + r.length <= len(pending)
                if r.kind in (RecordKind.CONTROL, RecordKind.MESSAGE):
                    assert len(r.payload) == r.length
            records.extend(result.records)
            consumed_total += used
            pending = pending[used:]
            if not result.call_again:
                break
            assert used > 0 or result.records, "call_again without progress"
    assert consumed_total + len(pending) == len(data)
    s = conn.stats()
    assert s.bytes_consumed == consumed_total
    kinds = [r.kind for r in records]
    fatal = [r for r in records if r.fatal]
    assert s.messages == s.other_messages + s.audio_messages
    assert s.audio_messages == s.audio_ingested + s.message_errors + s.rtp_late + s.rtp_duplicate
    assert kinds.count(RecordKind.MESSAGE) == s.other_messages
    assert kinds.count(RecordKind.CONTROL) == s.control_frames
    assert kinds.count(RecordKind.NEW_PARTICIPANT) == s.slots_created
    assert kinds.count(RecordKind.ERROR) - len(fatal) == s.message_errors
    assert s.errors_total == sum(s.errors.values())
    if not fatal:
        # nothing consumed but complete frames: the remainder is a partial frame
        assert s.frames >= s.messages
    rings = [conn.ring(i).read_copy().tobytes() for i in range(conn.participant_count)]
    core = [
        (
            r.kind,
            r.error,
            r.msg_type,
            r.opcode,
            r.payload,
            r.user_id,
            r.channel_id,
            r.user_name,
            r.slot,
        )
        for r in records
        if not r.fatal
    ]
    first_fatal = fatal[0].error if fatal else ErrorCode.NONE
    return (rings, core, first_fatal, s.audio_ingested, s.samples_out), len(pending)


def check(config: IngestConfig, data: bytes, cuts: list[int]) -> None:
    whole, rest_whole = run(config, data, [])
    split, rest_split = run(config, data, cuts)
    assert split == whole
    assert rest_split == rest_whole


@pytest.mark.parametrize("config", CONFIGS)
def test_seed_corpus(config: IngestConfig) -> None:
    for data in corpus():
        check(config, data, list(range(1, len(data), 97)))
    check(config, b"".join(corpus()), [5, 500, 1000])


mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "dup"]),
    st.integers(0, 1 << 16),
    st.integers(0, 255),
    st.integers(1, 40),
)


def mutate(data: bytes, ops: list[tuple[str, int, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, value, n in ops:
        if not buf:
            buf.append(value)
            continue
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (value % 8)
        elif op == "set":
            buf[i] = value
        elif op == "insert":
            buf[i:i] = bytes([value]) * n
        elif op == "delete":
            del buf[i : i + n]
        else:
            buf[i:i] = buf[i : i + n]
    return bytes(buf)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1000),
    ops=st.lists(mutation, min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 5000), max_size=6),
    config=st.sampled_from(CONFIGS),
)
def test_mutated_corpus(
    seed: int, ops: list[tuple[str, int, int, int]], cuts: list[int], config: IngestConfig
) -> None:
    seeds = corpus()
    data = mutate(seeds[seed % len(seeds)], ops)
    check(config, data, cuts)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(0, 600), max_size=4),
    config=st.sampled_from(CONFIGS),
)
def test_random_bytes(data: bytes, cuts: list[int], config: IngestConfig) -> None:
    check(config, data, cuts)


@settings(max_examples=60, deadline=None)
@given(
    header=st.sampled_from(
        [b"\x81", b"\x82", b"\x01", b"\x00", b"\x80", b"\x89", b"\x8a", b"\x88"]
    ),
    body=st.binary(max_size=300),
    config=st.sampled_from(CONFIGS),
)
def test_random_frames_with_valid_headers(header: bytes, body: bytes, config: IngestConfig) -> None:
    data = frame(body, opcode=header[0] & 0x0F, fin=bool(header[0] & 0x80))
    check(config, data * 3, [1, len(data) + 2])
