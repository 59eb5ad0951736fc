"""Synthetic media workloads shared by benchmarks: exact production-shaped messages.

``G711RtpWorkload`` builds 20 ms G.711 A-law over RTP audio messages (JSON
envelope, base64 data) with consecutive sequence numbers, cut into rounds of
``batch`` messages, as WebSocket text frames and as bare messages, plus the
best pure-Python ingest path for them (the anchor).
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
from collections.abc import Callable, Iterator

import msgspec
import numpy as np

from rtms_fast.codecs import decode_alaw

SEQ_SPACE = 1 << 16  # one full RTP sequence cycle, so rounds wrap seamlessly


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame."""
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 1 << 16:
        return bytes([0x81, 126]) + struct.pack(">H", n) + payload
    return bytes([0x81, 127]) + struct.pack(">Q", n) + payload


def g711_rtp_message(seq: int, codes: bytes, user_id: int = 16778240,
                     user_name: str = "Alice", t0_ms: int = 1795463476932) -> bytes:
    rtp = struct.pack(">BBHII", 0x80, 8, seq & 0xFFFF, seq * 160 & 0xFFFFFFFF, 0xABCD) + codes
    return json.dumps(
        {"msg_type": 14, "content": {"user_id": user_id, "user_name": user_name,
                                     "data": base64.b64encode(rtp).decode(),
                                     "timestamp": t0_ms + 20 * seq}},
        separators=(",", ":"),
    ).encode()


class _Content(msgspec.Struct):
    user_id: int = 0
    user_name: str = ""
    data: bytes = b""
    timestamp: int = 0


class _AudioMessage(msgspec.Struct):
    msg_type: int
    content: _Content


class G711RtpWorkload:
    """SEQ_SPACE consecutive messages in rounds of ``batch``."""

    def __init__(self, batch: int, seq_space: int = SEQ_SPACE) -> None:
        rng = np.random.default_rng(batch)
        codes = [rng.integers(0, 256, 160, dtype=np.uint8).tobytes() for _ in range(32)]
        msgs = [g711_rtp_message(seq, codes[seq % 32]) for seq in range(seq_space)]
        self.batch = batch
        self.messages = [msgs[i : i + batch] for i in range(0, seq_space, batch)]
        self.frames = [b"".join(ws_text_frame(m) for m in group) for group in self.messages]

    def cycle_frames(self) -> Iterator[bytes]:
        return itertools.cycle(self.frames)

    def cycle_messages(self) -> Iterator[list[bytes]]:
        return itertools.cycle(self.messages)

    def python_path(self) -> Callable[[], None]:
        """The anchor: msgspec (base64 in C), struct for RTP, numpy table for A-law.

        It gets its messages already split out of the frames, a head start the
        native kernel does not get.
        """
        decoder = msgspec.json.Decoder(_AudioMessage)
        table = decode_alaw(bytes(range(256)))
        out = np.empty(160 * self.batch * 4, dtype=np.int16)
        source = self.cycle_messages()

        def run() -> None:
            pos = 0
            for raw in next(source):
                packet = decoder.decode(raw).content.data
                b0, pt = packet[0], packet[1]
                if b0 >> 6 != 2 or pt & 0x7F != 8:
                    raise ValueError("bad RTP")
                samples = table[np.frombuffer(packet, np.uint8, offset=12 + 4 * (b0 & 0x0F))]
                out[pos : pos + len(samples)] = samples
                pos += len(samples)

        return run
