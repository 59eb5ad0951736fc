"""Unit tests of the native wire parsers through rtms_fast.wire: WebSocket frames,
base64, the media JSON envelope and RTP, each with a table of malformed inputs and
the error code each must produce."""

from __future__ import annotations

import base64
import json
import os
import random
import struct

import pytest

from _ingest_frames import audio_message, frame, rtp_packet
from rtms_fast.native import ffi, lib
from rtms_fast.wire import (
    Base64Error,
    EnvelopeError,
    ErrorCode,
    FrameError,
    Opcode,
    RtpError,
    RtpSequenceTracker,
    ScanMode,
    b64decode,
    b64encode,
    encode_frame,
    json_unescape,
    parse_frame_header,
    parse_rtp,
    scan_envelope,
    split_frames,
    unmask,
)

# ---- WebSocket frames ---------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frame_lengths_round_trip(n: int) -> None:
    payload = os.urandom(n)
    data = frame(payload, opcode=2)
    header = parse_frame_header(data)
    assert header is not None
    assert header.payload_len == n
    assert header.header_len == len(data) - n
    assert header.fin and header.opcode == Opcode.BINARY and not header.masked
    assert encode_frame(Opcode.BINARY, payload) == data


def test_frame_header_needs_more_bytes_at_every_cut() -> None:
    data = frame(bytes(70000), opcode=2, mask=b"abcd")
    for cut in range(14):
        assert parse_frame_header(data[:cut], allow_masked=True) is None
    assert parse_frame_header(data[:14], allow_masked=True) is not None


def test_encode_masked_client_frame_and_unmask() -> None:
    key = b"\x01\x02\x03\x04"
    data = encode_frame(Opcode.TEXT, b"hello", mask_key=key)
    assert data == frame(b"hello", opcode=1, mask=key)
    header = parse_frame_header(data, allow_masked=True)
    assert header is not None and header.masked and header.mask_key == key
    assert unmask(data[header.header_len :], key) == b"hello"
    frames, used = split_frames(data + data[:3], allow_masked=True)
    assert used == len(data)
    assert [p for _, p in frames] == [b"hello"]


def test_encode_pong_answers_ping() -> None:
    ping = frame(b"keepalive", opcode=9)
    ((header, payload),) = split_frames(ping)[0]
    assert header.opcode == Opcode.PING
    pong = encode_frame(Opcode.PONG, payload, mask_key=b"\x00\xff\x00\xff")
    h2 = parse_frame_header(pong, allow_masked=True)
    assert h2 is not None and h2.opcode == Opcode.PONG
    assert unmask(pong[h2.header_len :], h2.mask_key) == b"keepalive"


BAD_FRAMES = [
    (bytes([0x81 | 0x40, 1]) + b"x", ErrorCode.WS_RSV),
    (bytes([0x81 | 0x10, 1]) + b"x", ErrorCode.WS_RSV),
    (bytes([0x83, 0]), ErrorCode.WS_OPCODE),
    (bytes([0x8B, 0]), ErrorCode.WS_OPCODE),
    (bytes([0x81, 126, 0, 125]) + bytes(125), ErrorCode.WS_LENGTH_NOT_MINIMAL),
    (bytes([0x81, 127]) + struct.pack(">Q", 65535), ErrorCode.WS_LENGTH_NOT_MINIMAL),
    (bytes([0x81, 127]) + struct.pack(">Q", 1 << 63), ErrorCode.WS_LENGTH_MSB),
    (bytes([0x81, 127]) + struct.pack(">Q", 1 << 40), ErrorCode.WS_TOO_BIG),
    (bytes([0x81, 0x81]) + b"abcd" + b"x", ErrorCode.WS_MASKED),
    (bytes([0x89, 126, 0, 126]) + bytes(126), ErrorCode.WS_CONTROL_TOO_BIG),
    (bytes([0x09, 0]), ErrorCode.WS_CONTROL_FRAGMENTED),
]


@pytest.mark.parametrize(("data", "code"), BAD_FRAMES)
def test_bad_frames(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame_header(data, max_payload_bytes=1 << 30)
    assert info.value.code == code


def test_frame_too_big_against_configured_max() -> None:
    with pytest.raises(FrameError) as info:
        parse_frame_header(frame(bytes(1001)), max_payload_bytes=1000)
    assert info.value.code == ErrorCode.WS_TOO_BIG
    assert parse_frame_header(frame(bytes(1000)), max_payload_bytes=1000) is not None


@pytest.mark.parametrize(
    ("opcode", "payload", "fin", "code"),
    [
        (3, b"", True, ErrorCode.WS_OPCODE),
        (9, bytes(126), True, ErrorCode.WS_CONTROL_TOO_BIG),
        (8, b"", False, ErrorCode.WS_CONTROL_FRAGMENTED),
    ],
)
def test_encoder_refuses_invalid_frames(
    opcode: int, payload: bytes, fin: bool, code: ErrorCode
) -> None:
    with pytest.raises(FrameError) as info:
        encode_frame(opcode, payload, fin=fin)
    assert info.value.code == code


# ---- base64 ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 159, 160, 161, 640, 38400])
def test_b64_round_trip_matches_stdlib(n: int) -> None:
    data = os.urandom(n)
    text = base64.b64encode(data)
    assert b64encode(data) == text
    assert b64decode(text) == data


def test_b64_json_escaped_slash() -> None:
    rng = random.Random(5)
    data = bytes(rng.randrange(256) for _ in range(3000))
    text = base64.b64encode(data)
    assert b"/" in text
    assert b64decode(text.replace(b"/", b"\\/")) == data


BAD_B64 = [
    (b"QUJD*A==", ErrorCode.B64_CHAR),
    (b"QUJ\nDRA==", ErrorCode.B64_CHAR),
    (b"QU JD", ErrorCode.B64_CHAR),
    (b"QUJD\\nQQ==", ErrorCode.B64_CHAR),
    (b"QUJD\\", ErrorCode.B64_CHAR),
    (b"QUJDQ", ErrorCode.B64_LENGTH),
    (b"QUJDQQ", ErrorCode.B64_LENGTH),
    (b"QUJDQQ=", ErrorCode.B64_LENGTH),
    (b"Q===", ErrorCode.B64_PADDING),
    (b"====", ErrorCode.B64_PADDING),
    (b"QQ=A", ErrorCode.B64_PADDING),
    (b"QQ==QUJD", ErrorCode.B64_PADDING),
    (b"QUI=QUJD", ErrorCode.B64_PADDING),
]


@pytest.mark.parametrize(("text", "code"), BAD_B64)
def test_bad_base64(text: bytes, code: ErrorCode) -> None:
    with pytest.raises(Base64Error) as info:
        b64decode(text)
    assert info.value.code == code


def _both_decodes(text: bytes) -> tuple[bytes | None, bytes | None]:
    """(ours, the stdlib's strict decode), None where it refused."""
    try:
        expected: bytes | None = base64.b64decode(text, validate=True)
    except ValueError:
        expected = None
    try:
        got: bytes | None = b64decode(text)
    except Base64Error:
        got = None
    return got, expected


def test_b64_random_garbage_agrees_with_stdlib_validation() -> None:
    rng = random.Random(11)
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=*- "
    for _ in range(2000):
        text = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 17)))
        got, expected = _both_decodes(text)
        if expected is not None and len(text) % 4 == 0:
            assert got == expected, text
        if got is not None:
            assert got == expected, text


# Long inputs go through the vector path (blocks of 32 characters) where the CPU has one:
# every byte value at every position of a block must be judged as the scalar path would.
_BAD_BYTES = sorted({0x00, 0x0A, 0x20, 0x2A, 0x2D, 0x2E, 0x3A, 0x3D, 0x40, 0x5B, 0x5C, 0x5F,
                     0x60, 0x7B, 0x7F, 0x80, 0xC3, 0xFF})


@pytest.mark.parametrize("length", [32, 36, 64, 96, 232])
def test_b64_long_inputs_with_one_bad_byte_anywhere(length: int) -> None:
    rng = random.Random(length)
    text = base64.b64encode(bytes(rng.randrange(256) for _ in range(length // 4 * 3)))
    assert b64decode(text) == base64.b64decode(text)
    for pos in range(len(text)):
        for bad in _BAD_BYTES:
            got, expected = _both_decodes(text[:pos] + bytes([bad]) + text[pos + 1 :])
            assert got == expected, (pos, bad)


def test_b64_every_alphabet_character_in_every_lane() -> None:
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for shift in range(64):
        text = (alphabet[shift:] + alphabet[:shift]) * 3
        assert b64decode(text) == base64.b64decode(text)


def test_b64_long_escaped_slashes_and_padding() -> None:
    rng = random.Random(9)
    for n in (47, 48, 49, 95, 96, 97, 300):
        data = bytes(rng.randrange(256) for _ in range(n))
        text = base64.b64encode(data)
        assert b64decode(text) == data
        assert b64decode(text.replace(b"/", b"\\/")) == data


@pytest.mark.parametrize("n_bytes", [24, 48, 72, 171, 480])
def test_b64_decode_never_writes_past_its_capacity(n_bytes: int) -> None:
    data = os.urandom(n_bytes)
    text = base64.b64encode(data)
    guard = 64
    for cap in (n_bytes, n_bytes - 1, n_bytes // 2):
        out = ffi.new("uint8_t[]", cap + guard)
        ffi.memmove(out + cap, b"\xa5" * guard, guard)
        got = lib.rtms_b64_decode(text, len(text), out, cap)
        if cap >= n_bytes:
            assert got == n_bytes and ffi.buffer(out, n_bytes)[:] == data
        else:
            assert got == -lib.RTMS_ERR_SPACE
        assert ffi.buffer(out + cap, guard)[:] == b"\xa5" * guard, cap


# ---- media envelope -----------------------------------------------------------------


def test_scan_compact_audio() -> None:
    msg = audio_message(b"\x01\x02\x03", user_id=42, user_name="Bob", timestamp=123)
    env = scan_envelope(msg)
    assert env.msg_type == 14
    assert env.user_id == 42 and env.channel_id is None
    assert env.user_name == "Bob" and env.timestamp_ms == 123
    assert b64decode(env.data_text(msg)) == b"\x01\x02\x03"


def test_scan_pretty_reordered_extra_keys_and_escapes() -> None:
    obj = {
        "extra": {"nested": [1, 2.5e3, {"content": {"user_id": 9}}, '}"]'], "t": True},
        "content": {
            "timestamp": 77,
            "lang": None,
            "data": base64.b64encode(b"xyz").decode(),
            "user_name": 'Zo\u00eb "Q" \\ \U0001f600',
            "meta": [[], {}],
            "user_id": -5,
        },
        "msg_type": 14,
        "tail": False,
    }
    for indent in (None, "\t", 2):
        msg = json.dumps(obj, indent=indent).encode()
        env = scan_envelope(msg)
        assert (env.msg_type, env.user_id, env.timestamp_ms) == (14, -5, 77)
        assert env.user_name == 'Zo\u00eb "Q" \\ \U0001f600'
        assert b64decode(env.data_text(msg)) == b"xyz"


def test_scan_unicode_escaped_keys() -> None:
    msg = (
        b'{"msg\\u005ftype":14,'
        b'"content":{"user\\u005fid":3,"user_name":"a","data":"","timestamp":1}}'
    )
    env = scan_envelope(msg)
    assert env.msg_type == 14 and env.user_id == 3


def test_scan_channel_id() -> None:
    msg = audio_message(b"ab", user_id=None, channel_id="cc-\u00e9/1")
    env = scan_envelope(msg)
    assert env.user_id is None and env.channel_id == "cc-\u00e9/1"


def test_scan_classifies_other_types_without_audio_fields() -> None:
    assert scan_envelope(b'{"msg_type":12,"timestamp":5}').msg_type == 12
    assert scan_envelope(b'{"content":"whatever","msg_type":17}').msg_type == 17
    with pytest.raises(EnvelopeError) as info:
        scan_envelope(b'{"msg_type":12}', ScanMode.AUDIO)
    assert info.value.code == ErrorCode.MSG_CONTENT


def test_scan_mixed_mode_allows_missing_key_and_name() -> None:
    msg = b'{"msg_type":14,"content":{"data":"","timestamp":1}}'
    assert scan_envelope(msg, ScanMode.MIXED_AUDIO_IF_14).user_id is None
    with pytest.raises(EnvelopeError) as info:
        scan_envelope(msg)
    assert info.value.code == ErrorCode.MSG_USER


def _audio(content: str, top: str = '"msg_type":14') -> bytes:
    return ("{" + top + ',"content":{' + content + "}}").encode()


OK_FIELDS = '"user_id":1,"user_name":"a","data":"QQ==","timestamp":5'
BAD_ENVELOPES = [
    (b"", ErrorCode.MSG_NOT_OBJECT),
    (b"[1]", ErrorCode.MSG_NOT_OBJECT),
    (b'{"msg_type":14', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14}}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14,}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type" 14}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":014}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14,"x":tru}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14,"x":"abc}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14,"x":[1,2}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14,"x":1.}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14,"x":-}', ErrorCode.MSG_SYNTAX),
    (b'{"msg_type":14} x', ErrorCode.MSG_SYNTAX),
    (b'{"content":{}}', ErrorCode.MSG_TYPE),
    (b'{"msg_type":"14"}', ErrorCode.MSG_TYPE),
    (b'{"msg_type":14.0}', ErrorCode.MSG_TYPE),
    (b'{"msg_type":null}', ErrorCode.MSG_TYPE),
    (b'{"msg_type":14,"msg_type":14}', ErrorCode.MSG_DUPLICATE_KEY),
    (b'{"msg_type":99999999999999999999}', ErrorCode.MSG_TYPE),
    (b'{"msg_type":14}', ErrorCode.MSG_CONTENT),
    (b'{"msg_type":14,"content":"x"}', ErrorCode.MSG_CONTENT),
    (_audio(OK_FIELDS, '"msg_type":14,"content":{}'), ErrorCode.MSG_DUPLICATE_KEY),
    (_audio('"user_name":"a","data":"","timestamp":5'), ErrorCode.MSG_USER),
    (_audio('"user_id":"1","user_name":"a","data":"","timestamp":5'), ErrorCode.MSG_USER_TYPE),
    (_audio('"user_id":1.5,"user_name":"a","data":"","timestamp":5'), ErrorCode.MSG_USER_TYPE),
    (_audio('"channel_id":7,"user_name":"a","data":"","timestamp":5'), ErrorCode.MSG_USER_TYPE),
    (
        _audio('"user_id":1,"channel_id":"c","user_name":"a","data":"","timestamp":5'),
        ErrorCode.MSG_KEY_AMBIGUOUS,
    ),
    (_audio('"user_id":1,"data":"","timestamp":5'), ErrorCode.MSG_NAME),
    (_audio('"user_id":1,"user_name":null,"data":"","timestamp":5'), ErrorCode.MSG_NAME),
    (_audio('"user_id":1,"user_name":"a","data":""'), ErrorCode.MSG_TIMESTAMP),
    (_audio('"user_id":1,"user_name":"a","data":"","timestamp":"5"'), ErrorCode.MSG_TIMESTAMP),
    (_audio('"user_id":1,"user_name":"a","data":"","timestamp":5e3'), ErrorCode.MSG_TIMESTAMP),
    (_audio('"user_id":1,"user_name":"a","timestamp":5'), ErrorCode.MSG_DATA),
    (_audio('"user_id":1,"user_name":"a","data":[],"timestamp":5'), ErrorCode.MSG_DATA),
    (_audio(OK_FIELDS + ',"user_id":2'), ErrorCode.MSG_DUPLICATE_KEY),
    (_audio(OK_FIELDS + ',"data":"QQ=="'), ErrorCode.MSG_DUPLICATE_KEY),
    (_audio(OK_FIELDS + ',"x":' + "[" * 70 + "]" * 70), ErrorCode.MSG_DEPTH),
    (
        _audio('"user_id":99999999999999999999,"user_name":"a","data":"","timestamp":5'),
        ErrorCode.MSG_NUMBER_RANGE,
    ),
    (
        _audio('"user_id":1,"user_name":"a","data":"","timestamp":-9223372036854775809'),
        ErrorCode.MSG_NUMBER_RANGE,
    ),
]


@pytest.mark.parametrize(("msg", "code"), BAD_ENVELOPES)
def test_bad_envelopes(msg: bytes, code: ErrorCode) -> None:
    with pytest.raises(EnvelopeError) as info:
        scan_envelope(msg)
    assert info.value.code == code


def test_envelope_error_reports_msg_type_when_found() -> None:
    with pytest.raises(EnvelopeError) as info:
        scan_envelope(_audio('"user_id":1,"user_name":"a","timestamp":5'))
    assert info.value.msg_type == 14


def test_int64_edges() -> None:
    lo = _audio(
        '"user_id":-9223372036854775808,"user_name":"a","data":"","timestamp":9223372036854775807'
    )
    env = scan_envelope(lo)
    assert env.user_id == -(2**63) and env.timestamp_ms == 2**63 - 1


def test_scan_agrees_with_json_on_random_documents() -> None:
    rng = random.Random(3)

    def value(depth: int) -> object:
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return rng.randrange(-(10**12), 10**12)
        if kind == 1:
            return "".join(rng.choice('ab"\\/\u00e9\n{}[]:,') for _ in range(rng.randrange(6)))
        if kind == 2:
            return rng.choice([True, False, None, 1.5, -0.25e-3])
        if kind == 3:
            return rng.random()
        if kind == 4:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{rng.randrange(9)}": value(depth + 1) for _ in range(rng.randrange(4))}

    for _ in range(300):
        content = {
            "user_id": rng.randrange(1 << 40),
            "user_name": "".join(rng.choice('ab"\\/\u00e9\n\t\U0001f600') for _ in range(5)),
            "data": base64.b64encode(os.urandom(rng.randrange(20))).decode(),
            "timestamp": rng.randrange(1 << 50),
        }
        for _ in range(rng.randrange(4)):
            content[f"x{rng.randrange(5)}"] = value(0)
        doc = {"msg_type": 14, "content": content}
        for _ in range(rng.randrange(3)):
            doc[f"y{rng.randrange(5)}"] = value(0)
        items = list(doc.items())
        rng.shuffle(items)
        msg = json.dumps(dict(items), indent=rng.choice([None, "\t", 1])).encode()
        env = scan_envelope(msg)
        assert env.user_id == content["user_id"]
        assert env.timestamp_ms == content["timestamp"]
        assert env.user_name == content["user_name"]
        assert env.data_text(msg).decode() == content["data"]


def test_json_unescape() -> None:
    assert (
        json_unescape(b'a\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00')
        == 'a"b\\c/d\n\u00e9\U0001f600'.encode()
    )
    for bad in (b"\\x", b"\\u12", b"\\ud83d", b"\\ude00", b"a\x01", b"\\"):
        with pytest.raises(EnvelopeError):
            json_unescape(bad)


# ---- RTP -----------------------------------------------------------------------------


def test_rtp_basic() -> None:
    pkt = rtp_packet(b"\x11" * 160, 513, timestamp=0xDEADBEEF, pt=8, ssrc=7, marker=True)
    h = parse_rtp(pkt, 8)
    assert (h.sequence, h.timestamp, h.ssrc, h.payload_type, h.marker) == (
        513,
        0xDEADBEEF,
        7,
        8,
        True,
    )
    assert h.payload(pkt) == b"\x11" * 160


def test_rtp_csrc_extension_padding() -> None:
    pkt = rtp_packet(b"abc", 1, pt=0, csrcs=(1, 2, 3), extension=b"\x01" * 12, padding=5)
    h = parse_rtp(pkt, 0)
    assert h.csrc_count == 3 and h.extension and h.padding
    assert h.extension_profile == 0xBEDE
    assert h.payload_offset == 12 + 12 + 4 + 12
    assert h.payload(pkt) == b"abc"


BAD_RTP = [
    (b"\x80\x08" + bytes(9), -1, ErrorCode.RTP_SHORT),
    (b"\x40\x08" + bytes(10), -1, ErrorCode.RTP_VERSION),
    (b"\xc0\x08" + bytes(10), -1, ErrorCode.RTP_VERSION),
    (b"\x82\x08" + bytes(10) + bytes(4), -1, ErrorCode.RTP_SHORT),
    (b"\x90\x08" + bytes(10) + b"\x00\x00", -1, ErrorCode.RTP_SHORT),
    (b"\x90\x08" + bytes(10) + b"\xbe\xde\x00\x02" + bytes(4), -1, ErrorCode.RTP_SHORT),
    (b"\xa0\x08" + bytes(10) + b"ab\x00", -1, ErrorCode.RTP_PADDING),
    (b"\xa0\x08" + bytes(10) + b"ab\x04", -1, ErrorCode.RTP_PADDING),
    (b"\xa0\x08" + bytes(10), -1, ErrorCode.RTP_PADDING),
    (rtp_packet(b"x", 1, pt=0), 8, ErrorCode.RTP_PAYLOAD_TYPE),
    (rtp_packet(b"x", 1, pt=9), 0, ErrorCode.RTP_PAYLOAD_TYPE),
]


@pytest.mark.parametrize(("pkt", "pt", "code"), BAD_RTP)
def test_bad_rtp(pkt: bytes, pt: int, code: ErrorCode) -> None:
    with pytest.raises(RtpError) as info:
        parse_rtp(pkt, pt)
    assert info.value.code == code


def test_rtp_sequence_loss_reorder_duplicate_wrap() -> None:
    t = RtpSequenceTracker()
    assert t.update(65533) == 0
    assert t.update(65534) == 0
    assert t.update(1) == 2  # 65535 and 0 lost across the wrap
    with pytest.raises(RtpError) as info:
        t.update(0)
    assert info.value.code == ErrorCode.RTP_LATE
    with pytest.raises(RtpError) as info:
        t.update(0)
    assert info.value.code == ErrorCode.RTP_DUPLICATE
    with pytest.raises(RtpError) as info:
        t.update(1)
    assert info.value.code == ErrorCode.RTP_DUPLICATE
    with pytest.raises(RtpError) as info:
        t.update(65534)
    assert info.value.code == ErrorCode.RTP_DUPLICATE
    assert t.update(2) == 0
    assert (t.lost, t.late, t.duplicate, t.accepted) == (2, 1, 3, 4)
    assert t.update(2 + 1000, max_gap=50) == 0  # a restart, not 999 lost packets
    assert t.resync == 1
    assert t.update(502) == 0  # far behind = restart too
    assert t.resync == 2
