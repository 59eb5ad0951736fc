"""What the four connection state machines share: decoding with drop accounting, stats,
keep-alive bookkeeping and close-code classification. Internal; no I/O, no clock."""

from __future__ import annotations

from typing import Generic, TypeVar

from ._state import TERMINAL_STATES, Trigger, advance
from .enums import StatusCode
from .errors import InvalidField, MalformedJSON, MissingField, ProtocolError, UnknownMessageType
from .events import CloseOutcome, ConnectionClosed, ConnectionEvent, ProtocolViolation
from .messages import Message, decode_message, encode_message
from .tolerance import ToleranceStats

__all__ = ["ConnectionStats", "WireData", "status_for_error"]

S = TypeVar("S")
WireData = bytes | bytearray | memoryview | str
"""One received WebSocket message: binary or text."""


class ConnectionStats:
    """Counters of one connection. ``messages_dropped`` counts every received message that
    produced no regular event (malformed, illegal in the state, or after the end)."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "keep_alive_requests",
        "keep_alive_responses",
        "messages_dropped",
        "messages_received",
        "messages_sent",
        "tolerance",
    )

    def __init__(self, tolerance: ToleranceStats | None = None) -> None:
        self.messages_received = 0
        self.messages_sent = 0
        self.messages_dropped = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.keep_alive_requests = 0
        """Msg 12 received (client) or sent (server)."""
        self.keep_alive_responses = 0
        """Msg 13 sent (client) or received (server)."""
        self.tolerance = ToleranceStats() if tolerance is None else tolerance
        """Section 19 deviations; pass one in to share it between connections."""

    def as_dict(self) -> dict[str, int]:
        """Counters by name, tolerance counters prefixed ``tolerance.``."""
        out = {name: getattr(self, name) for name in self.__slots__ if name != "tolerance"}
        out.update({f"tolerance.{k}": v for k, v in self.tolerance.as_dict().items()})
        return out

    def __repr__(self) -> str:
        return f"ConnectionStats({self.as_dict()})"


_FIELD_STATUS_MISSING = {
    "msg_type": StatusCode.MSG_TYPE_NOT_EXIST,
    "meeting_uuid": StatusCode.MEETING_UUID_NOT_EXIST,
    "rtms_stream_id": StatusCode.RTMS_STREAM_ID_NOT_EXIST,
    "signature": StatusCode.SIGNATURE_NOT_EXIST,
}
_FIELD_STATUS_INVALID = {
    "msg_type": StatusCode.MSG_TYPE_NOT_UINT,
    "meeting_uuid": StatusCode.MEETING_UUID_NOT_STRING,
    "rtms_stream_id": StatusCode.RTMS_STREAM_ID_NOT_STRING,
}


def status_for_error(error: ProtocolError) -> StatusCode:
    """The handshake status code a server answers for a bad first message (section 3.2)."""
    if isinstance(error, MalformedJSON):
        return StatusCode.INVALID_JSON_MSG
    if isinstance(error, UnknownMessageType):
        return StatusCode.INVALID_MESSAGE_TYPE
    if isinstance(error, MissingField):
        return _FIELD_STATUS_MISSING.get(error.field or "", StatusCode.INVALID_JSON_MSG)
    if isinstance(error, InvalidField):
        return _FIELD_STATUS_INVALID.get(error.field or "", StatusCode.INVALID_JSON_MSG)
    return StatusCode.INVALID_MESSAGE_TYPE


def classify_close(code: int | None, stream_over: bool) -> CloseOutcome:
    """The outcome of a socket closing with ``code`` (None: no close frame at all)."""
    if stream_over:
        return CloseOutcome.COMPLETED
    if code is None:
        return CloseOutcome.RESET
    return {
        1000: CloseOutcome.NORMAL,
        1001: CloseOutcome.GOING_AWAY,
        1005: CloseOutcome.NO_STATUS,
        1006: CloseOutcome.ABNORMAL,
    }.get(code, CloseOutcome.ERROR)


class BaseConnection(Generic[S]):
    """State, stats, decoding and closing common to all machines."""

    _state: S

    def __init__(self, state: S, tolerance: ToleranceStats | None = None) -> None:
        self._state = state
        self._terminal = state in TERMINAL_STATES
        self.stats = ConnectionStats(tolerance)
        self._closed_event: ConnectionClosed | None = None

    @property
    def state(self) -> S:
        """The current state (see ``_state.py`` for the rules)."""
        return self._state

    @property
    def is_terminal(self) -> bool:
        """True once nothing more will be sent or delivered."""
        return self._terminal

    def _advance(self, trigger: Trigger) -> None:
        self._state = advance(self._state, trigger)  # type: ignore[arg-type,assignment]
        self._terminal = self._state in TERMINAL_STATES

    def _encode(self, msg: Message) -> bytes:
        data = encode_message(msg)
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(data)
        return data

    def _decode(self, data: WireData) -> Message | ProtocolViolation | None:
        """The message, a ProtocolViolation (dropped), or None (dropped after the end)."""
        stats = self.stats
        stats.messages_received += 1
        stats.bytes_received += len(data)
        if self._terminal:
            stats.messages_dropped += 1
            return None
        try:
            return decode_message(data, stats.tolerance)
        except ProtocolError as exc:
            stats.messages_dropped += 1
            return ProtocolViolation(exc)

    def _violation(self, error: ProtocolError) -> list[ConnectionEvent]:
        self.stats.messages_dropped += 1
        return [ProtocolViolation(error)]

    def _stream_over(self) -> bool:
        """True when a close now is the expected end (overridden per machine)."""
        return self._state in TERMINAL_STATES

    def connection_closed(self, code: int | None, reason: str = "") -> list[ConnectionClosed]:
        """Report that the socket closed (``code`` None for a reset without close frame).

        Returns one ConnectionClosed the first time, nothing after that.
        """
        if self._closed_event is not None:
            return []
        event = ConnectionClosed(code, reason, classify_close(code, self._stream_over()))
        self._closed_event = event
        self._advance(Trigger.CONNECTION_CLOSED)
        return [event]
