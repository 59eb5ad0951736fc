"""Takes keep-alive requests out of the bytes a client reads from a WebSocket.

The signaling socket runs through a WebSocket library (the control plane). Answering a
keep-alive there costs a reader task's wake-up, the library's frame parser, a message
channel hop to the session's task and a locked send: ~150 us of CPU for a 60-byte message
that needs a 60-byte answer. ``KeepAliveTap`` sits under the library, on the byte stream:
it follows the frame boundaries and hands back the payloads of keep-alive requests, so the
caller can answer them where it reads, and passes every other byte on unchanged.

It is deliberately conservative. It starts after the HTTP response that opens the
connection, and only a complete, unfragmented, unmasked text or binary frame without RSV
bits and of at most ``max_payload_bytes`` is ever taken, and only if ``take`` says so
(by default: if its payload is a keep-alive request). Anything else (large frames,
fragmented messages, control frames, frames a client must reject) is passed on for the
library to judge. After a close frame everything is passed on. While ``enabled`` is false
it only tracks boundaries. ``messages_passed`` counts the data messages passed on, so a
caller that takes other messages too can keep them in order with those (see
``rtms_fast.signaling_stream``).

This module must never touch sockets, clocks or Trio.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ProtocolError
from .messages import KeepAliveRequest, decode_message

__all__ = ["KeepAliveTap", "is_keepalive_request"]

_HEADERS_END = b"\r\n\r\n"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE = 0x0, 0x1, 0x2, 0x8


def is_keepalive_request(payload: bytes) -> bool:
    """Whether ``payload`` is one RTMS KEEP_ALIVE_REQ (msg 12) as the client machine
    would read it (compact or pretty JSON, extra fields, absent sequence or timestamp)."""
    try:
        return type(decode_message(payload)) is KeepAliveRequest
    except (ProtocolError, ValueError):
        return False


class KeepAliveTap:
    """Feed it what the socket gave; it returns what to pass on and what it took."""

    def __init__(self, *, max_payload_bytes: int = 512,
                 take: Callable[[bytes], bool] = is_keepalive_request) -> None:
        #: Take keep-alives only while true (boundaries are tracked either way).
        self.enabled = False
        #: Payloads taken out so far.
        self.taken = 0
        #: Complete data messages passed on so far (each counted at its last frame; the
        #: HTTP response is none): a caller that takes more than keep-alives compares it
        #: with the messages its library has delivered to keep their order.
        self.messages_passed = 0
        self._max_payload = max_payload_bytes
        self._take = take
        self._in_headers = True    # before the end of the HTTP response
        self._pending = b""        # the start of a frame (or header tail) not yet decided
        self._passing = 0          # payload bytes of the current frame still to pass on
        self._fragmented = False   # inside a message sent in several frames
        self._closed = False       # a close frame went by: pass everything on

    def feed(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """``data``: the next bytes read. Returns (bytes to hand to the WebSocket library,
        payloads taken out, in order). Bytes of a frame that
        might be taken are held back until the frame is complete."""
        if self._closed:
            return data, []
        if self._pending:
            data = self._pending + data
            self._pending = b""
        out: list[bytes] = []
        taken: list[bytes] = []
        pos = 0
        end = len(data)
        if self._in_headers:
            found = data.find(_HEADERS_END)
            if found < 0:  # keep a possible partial terminator for the next read
                keep = min(len(_HEADERS_END) - 1, end)
                self._pending = data[end - keep:]
                return data[:end - keep], []
            self._in_headers = False
            pos = found + len(_HEADERS_END)
            out.append(data[:pos])
        while pos < end:
            if self._passing:
                n = min(self._passing, end - pos)
                out.append(data[pos:pos + n])
                pos += n
                self._passing -= n
                continue
            header = _frame_header(data, pos)
            if header is None:  # the header itself is incomplete
                self._pending = data[pos:]
                break
            header_len, payload_len = header
            b0 = data[pos]
            b1 = data[pos + 1]
            opcode = b0 & 0x0F
            fin = bool(b0 & 0x80)
            candidate = (self.enabled and fin and not b0 & 0x70 and not b1 & 0x80
                         and opcode in (_OP_TEXT, _OP_BINARY) and not self._fragmented
                         and payload_len <= self._max_payload)
            frame_end = pos + header_len + payload_len
            if candidate and frame_end > end:  # decided once it is complete
                self._pending = data[pos:]
                break
            if opcode in (_OP_TEXT, _OP_BINARY):
                self._fragmented = not fin
            elif opcode == _OP_CONTINUATION and fin:
                self._fragmented = False
            if candidate:
                payload = data[pos + header_len:frame_end]
                if self._take(payload):
                    taken.append(payload)
                    self.taken += 1
                else:
                    out.append(data[pos:frame_end])
                    self.messages_passed += 1
                pos = frame_end
                continue
            if fin and opcode in (_OP_TEXT, _OP_BINARY, _OP_CONTINUATION):
                self.messages_passed += 1
            if opcode == _OP_CLOSE:  # from here on the library sees everything as it came
                self._closed = True
                out.append(data[pos:])
                break
            n = min(frame_end, end) - pos
            out.append(data[pos:pos + n])
            pos += n
            self._passing = frame_end - pos
        return b"".join(out), taken

    def flush(self) -> bytes:
        """At the end of the stream: the bytes held back (an incomplete frame), so the
        library sees the stream end exactly where it ended."""
        rest, self._pending = self._pending, b""
        return rest


def _frame_header(data: bytes, pos: int) -> tuple[int, int] | None:
    """(header length, payload length) of the frame at ``pos``; None if incomplete."""
    avail = len(data) - pos
    if avail < 2:
        return None
    b1 = data[pos + 1]
    length = b1 & 0x7F
    header_len = 2
    if length == 126:
        header_len = 4
        if avail < header_len:
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
    elif length == 127:
        header_len = 10
        if avail < header_len:
            return None
        length = int.from_bytes(data[pos + 2:pos + 10], "big")
    if b1 & 0x80:
        header_len += 4
        if avail < header_len:
            return None
    return header_len, length
