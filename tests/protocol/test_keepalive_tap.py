"""KeepAliveTap: keep-alive requests come out, every other byte goes on unchanged, at any
split of the stream into reads."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from rtms_fast.protocol import KeepAliveTap, is_keepalive_request

HTTP = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
KA = b'{"msg_type":12,"timestamp":1795463477058,"sequence":7}'
KA_PRETTY = json.dumps({"msg_type": 12, "sequence": 8, "timestamp": 1, "extra": [1, 2]},
                       indent=2).encode()
KA_BARE = b'{"msg_type": 12}'
EVENT = b'{"msg_type":6,"event":{"event_type":2,"participants":[]}}'


def frame(payload: bytes, opcode: int = 1, *, fin: bool = True, rsv: int = 0,
          mask: bytes | None = None) -> bytes:
    """A WebSocket frame as a server (or, with ``mask``, a client) would write it."""
    head = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(bit | 127)
        head += n.to_bytes(8, "big")
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + payload


# (bytes on the wire, taken?) in order: a stream that exercises every rule
STREAM: list[tuple[bytes, bool]] = [
    (HTTP, False),
    (frame(KA), True),
    (frame(EVENT), False),
    (frame(b"x" * 300, opcode=2), False),               # small, not a keep-alive
    (frame(json.dumps({"pad": "y" * 1000}).encode()), False),  # 16-bit length, too big
    (frame(KA_PRETTY), True),
    (frame(KA, opcode=2), True),                        # binary frames carry JSON too
    (frame(KA, fin=False), False),                      # a fragmented message starts...
    (frame(b"", opcode=9), False),                      # ...a ping may come between...
    (frame(KA, opcode=0, fin=False), False),            # ...still inside it...
    (frame(b"", opcode=0, fin=True), False),            # ...and it ends
    (frame(KA_BARE), True),                             # absent fields are echoed absent
    (frame(KA, rsv=4), False),                          # compressed or invalid: library's call
    (frame(KA, mask=b"\x01\x02\x03\x04"), False),       # masked server frame: library rejects
    (frame(b"{not json"), False),
    (frame(b"\x03\xe8", opcode=8), False),              # close: from here on all goes on
    (frame(KA), False),
]


def feed_in(tap: KeepAliveTap, chunks: list[bytes]) -> tuple[bytes, list[bytes]]:
    passed = bytearray()
    taken: list[bytes] = []
    for chunk in chunks:
        out, got = tap.feed(chunk)
        passed += out
        taken += got
    passed += tap.flush()
    return bytes(passed), taken


def expected(stream: list[tuple[bytes, bool]]) -> tuple[bytes, list[bytes]]:
    passed = b"".join(wire for wire, take in stream if not take)
    taken = [wire[2:] for wire, take in stream if take]  # all taken frames are < 126 bytes
    return passed, taken


def enabled_tap() -> KeepAliveTap:
    tap = KeepAliveTap()
    tap.enabled = True
    return tap


def test_is_keepalive_request() -> None:
    assert is_keepalive_request(KA)
    assert is_keepalive_request(KA_PRETTY)
    assert is_keepalive_request(KA_BARE)
    assert not is_keepalive_request(EVENT)
    assert not is_keepalive_request(b'{"msg_type":13,"sequence":1}')
    assert not is_keepalive_request(b"{not json")
    assert not is_keepalive_request(b"\xff\xfe")
    assert not is_keepalive_request(b'{"msg_type":12,"sequence":"seven"}')


def test_whole_stream_in_one_read() -> None:
    wire = b"".join(w for w, _ in STREAM)
    tap = enabled_tap()
    assert feed_in(tap, [wire]) == expected(STREAM)
    assert tap.taken == 4


def test_every_split_into_two_reads() -> None:
    wire = b"".join(w for w, _ in STREAM)
    want = expected(STREAM)
    for cut in range(len(wire) + 1):
        assert feed_in(enabled_tap(), [wire[:cut], wire[cut:]]) == want, cut


def test_one_byte_at_a_time() -> None:
    wire = b"".join(w for w, _ in STREAM)
    assert feed_in(enabled_tap(), [wire[i:i + 1] for i in range(len(wire))]) == expected(STREAM)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_split_into_reads(cuts: list[int]) -> None:
    wire = b"".join(w for w, _ in STREAM)
    points = sorted({min(c, len(wire)) for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert feed_in(enabled_tap(), chunks) == expected(STREAM)


def test_disabled_tap_takes_nothing_and_changes_nothing() -> None:
    wire = b"".join(w for w, _ in STREAM)
    tap = KeepAliveTap()
    assert feed_in(tap, [wire[:100], wire[100:]]) == (wire, [])
    assert tap.taken == 0


def test_enabling_midway_takes_from_the_next_frame() -> None:
    tap = KeepAliveTap()
    first, _ = tap.feed(HTTP + frame(KA))
    assert first == HTTP + frame(KA)  # the handshake phase: the library answers
    tap.enabled = True
    assert tap.feed(frame(EVENT) + frame(KA)) == (frame(EVENT), [KA])


def test_nothing_is_taken_before_the_http_response_ends() -> None:
    # a keep-alive frame's bytes inside the headers are not a frame
    fake = b"HTTP/1.1 101 OK\r\nX-Junk: " + frame(KA) + b"\r\n\r\n"
    assert feed_in(enabled_tap(), [fake[:20], fake[20:]]) == (fake, [])


def test_large_frames_pass_in_pieces_without_being_held() -> None:
    big = frame(b"z" * 70_000, opcode=2)  # 64-bit length
    assert big[1] == 127
    tap = enabled_tap()
    out, _ = tap.feed(HTTP + big[:5000])
    assert out == HTTP + big[:5000]  # not held back: the library may stream it
    out, _ = tap.feed(big[5000:] + frame(KA))
    assert out == big[5000:]
    assert tap.taken == 1


def test_an_incomplete_keepalive_is_held_then_handed_on_at_the_end() -> None:
    tap = enabled_tap()
    out, taken = tap.feed(HTTP + frame(KA)[:10])
    assert (out, taken) == (HTTP, [])
    assert tap.flush() == frame(KA)[:10]
    assert tap.flush() == b""


def test_max_payload_bytes() -> None:
    tap = KeepAliveTap(max_payload_bytes=len(KA) - 1)
    tap.enabled = True
    assert tap.feed(HTTP + frame(KA)) == (HTTP + frame(KA), [])


@given(cuts=st.lists(st.integers(min_value=1, max_value=50), max_size=30))
@settings(max_examples=60, deadline=None)
def test_messages_passed_counts_each_passed_data_message_once(cuts: list[int]) -> None:
    """Taken requests and control frames are not messages passed; a fragmented message is
    one, counted at its last frame; so is a message too large to be a candidate."""
    stream = (HTTP + frame(KA) + frame(EVENT) + frame(EVENT[:9], fin=False)
              + frame(b"", opcode=0x9) + frame(EVENT[9:], opcode=0x0)
              + frame(EVENT * 20) + frame(EVENT, opcode=2))
    tap = KeepAliveTap(max_payload_bytes=512)
    tap.enabled = True
    passed, taken = b"", []
    pos = 0
    for cut in [*cuts, len(stream)]:
        out, got = tap.feed(stream[pos : pos + cut])
        passed += out
        taken += got
        pos += cut
        if pos >= len(stream):
            break
    assert taken == [KA] and tap.taken == 1
    assert tap.messages_passed == 4
    assert passed == stream.replace(frame(KA), b"")


def test_take_decides_what_comes_out() -> None:
    tap = KeepAliveTap(take=lambda payload: b'"n":1' in payload)
    tap.enabled = True
    one, two = b'{"msg_type":6,"n":1}', b'{"msg_type":6,"n":2}'
    passed, taken = tap.feed(HTTP + frame(one) + frame(two) + frame(KA))
    assert taken == [one]  # a keep-alive too is passed on when ``take`` says no
    assert passed == HTTP + frame(two) + frame(KA)
    assert tap.messages_passed == 2
