"""Builders for media-socket bytes (server frames, RTMS media JSON, RTP packets) and the
deterministic seed corpus of the ingest fuzz tests (``python tests/_ingest_frames.py``
rewrites ``tests/data/ingest-corpus``). Independent of the native parsers: JSON via the
stdlib, base64 via the stdlib, frames and RTP assembled by hand from RFC 6455 / 3550."""

from __future__ import annotations

import base64
import json
import random
import struct
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).parent / "data" / "ingest-corpus"


def frame(
    payload: bytes, opcode: int = 1, fin: bool = True, mask: bytes | None = None, rsv: int = 0
) -> bytes:
    """One WebSocket frame, encoded by hand (minimal length encoding)."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def audio_message(
    data: bytes,
    *,
    user_id: int | None = 16778240,
    channel_id: str | None = None,
    user_name: str = "Alice",
    timestamp: int = 1795463476932,
    msg_type: int = 14,
    pretty: bool = False,
    extra: dict[str, Any] | None = None,
    escape_slash: bool = False,
) -> bytes:
    """An RTMS media message as Zoom sends it (``content`` object, base64 ``data``)."""
    content: dict[str, Any] = {}
    if user_id is not None:
        content["user_id"] = user_id
    if channel_id is not None:
        content["channel_id"] = channel_id
    content["user_name"] = user_name
    b64 = base64.b64encode(data).decode()
    content["data"] = b64
    content["timestamp"] = timestamp
    if extra:
        content.update(extra)
    text = json.dumps({"msg_type": msg_type, "content": content}, indent="\t" if pretty else None)
    if escape_slash:
        text = text.replace("/", "\\/")
    return text.encode()


def rtp_packet(
    payload: bytes,
    seq: int,
    *,
    timestamp: int = 0,
    pt: int = 8,
    ssrc: int = 0x1234,
    marker: bool = False,
    csrcs: tuple[int, ...] = (),
    extension: bytes | None = None,
    padding: int = 0,
) -> bytes:
    """An RTP packet (RFC 3550 section 5.1), built by hand."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if extension is not None else 0) | len(csrcs)
    head = struct.pack(
        ">BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
    )
    head += b"".join(struct.pack(">I", c) for c in csrcs)
    if extension is not None:
        assert len(extension) % 4 == 0
        head += struct.pack(">HH", 0xBEDE, len(extension) // 4) + extension
    tail = b""
    if padding:
        tail = bytes(padding - 1) + bytes([padding])
    return head + payload + tail


def seed_corpus() -> dict[str, bytes]:
    """Deterministic seed inputs: each a byte stream of server frames."""
    rng = random.Random(1234)
    g711 = bytes(rng.randrange(256) for _ in range(160))
    msgs: dict[str, bytes] = {}
    rtp = [rtp_packet(g711, s, timestamp=160 * s) for s in range(5)]
    msgs["rtp_g711_5"] = b"".join(
        frame(audio_message(p, timestamp=20 * i)) for i, p in enumerate(rtp)
    )
    msgs["pretty"] = frame(audio_message(rtp[0], pretty=True, extra={"x": [1, {"y": "}"}]}))
    msgs["escaped"] = frame(audio_message(rtp[1], escape_slash=True, user_name='\u00e9"q'))
    msgs["channel"] = frame(audio_message(rtp[2], user_id=None, channel_id="ch-1"), opcode=2)
    big = audio_message(rtp[3])
    msgs["fragmented"] = (
        frame(big[:50], fin=False)
        + frame(b"\x01", opcode=9)
        + frame(big[50:120], opcode=0, fin=False)
        + frame(big[120:], opcode=0)
    )
    msgs["control"] = frame(b"hi", opcode=9) + frame(b"", opcode=10) + frame(b"\x03\xe8", opcode=8)
    msgs["keepalive"] = frame(b'{"msg_type":12,"timestamp":1}')
    msgs["bad_b64"] = frame(audio_message(rtp[0]).replace(b'"data": "', b'"data": "*'))
    msgs["bad_rtp"] = frame(audio_message(b"\x40" + rtp[0][1:]))
    msgs["bad_json"] = frame(b'{"msg_type":14,"content":{"user_id":1,,}}')
    msgs["rsv"] = frame(b"x", rsv=4)
    msgs["padding_ext"] = frame(
        audio_message(rtp_packet(g711, 9, csrcs=(1, 2), extension=b"\x00" * 8, padding=4))
    )
    msgs["long16"] = frame(audio_message(bytes(300)))
    return msgs


def write_corpus() -> None:
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in seed_corpus().items():
        (CORPUS_DIR / f"{name}.bin").write_bytes(data)


if __name__ == "__main__":
    write_corpus()
