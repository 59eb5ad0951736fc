"""Lenient decoding of what servers in the wild send (RTMS_PROTOCOL.md section 19).

Two hooks used by ``messages.decode_message``:

* ``repair(raw, msg_type, stats)`` runs only after the strict decode failed. It rewrites a
  generically parsed message into the documented shape (a ``server_urls`` string becomes an
  object, stop reasons given by name become numbers) and returns the repaired dict, or
  ``None`` when there is nothing it knows how to repair (the strict error then stands).
* ``note_decoded(msg, stats)`` runs after every successful decode and counts deviations
  that decode fine but are still not section 15 (only ``all`` or only per-type URLs, no
  ``status_code``, keep-alive without ``sequence`` or ``timestamp``).

Deviations handled by the state machines (media before the handshake response) are counted
in the same ``ToleranceStats``. JSON in text or binary frames, pretty or compact, is not a
deviation: msgspec reads all of them in the fast path. This module must never import
msgspec Structs (it sits below ``messages.py``) nor touch I/O.
"""

from __future__ import annotations

from typing import Any

from .enums import StopReason

__all__ = [
    "ToleranceStats",
    "note_decoded",
    "note_handshake_response",
    "note_keep_alive",
    "repair",
    "stop_reason_from_name",
]


class ToleranceStats:
    """Counters of tolerated deviations, one per kind; read them or ``as_dict()``."""

    __slots__ = (
        "keep_alive_missing_sequence",
        "keep_alive_missing_timestamp",
        "media_before_handshake",
        "server_urls_all_only",
        "server_urls_list",
        "server_urls_per_type_only",
        "server_urls_string",
        "status_code_missing",
        "stop_reason_name",
        "stop_reason_unknown_name",
    )

    def __init__(self) -> None:
        self.server_urls_string = 0
        """``server_urls`` was a string instead of an object (used as ``all``)."""
        self.server_urls_list = 0
        """That string was a comma-separated list; the first URL was used."""
        self.server_urls_all_only = 0
        """Only the ``all`` URL, no per-type keys (unified-mode server)."""
        self.server_urls_per_type_only = 0
        """Only per-type keys, no ``all`` (what the SDK needs; docs clients read ``all``)."""
        self.status_code_missing = 0
        """A handshake response without ``status_code``."""
        self.keep_alive_missing_sequence = 0
        self.keep_alive_missing_timestamp = 0
        self.stop_reason_name = 0
        """A stop reason sent as a name (``"MEETING_ENDED"``) instead of a number."""
        self.stop_reason_unknown_name = 0
        """A stop reason name we do not know; mapped to UNDEFINED (0)."""
        self.media_before_handshake = 0
        """Media data on a media socket before (or without) the handshake response."""

    def as_dict(self) -> dict[str, int]:
        """All counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}

    @property
    def total(self) -> int:
        """Sum of all counters."""
        return sum(getattr(self, name) for name in self.__slots__)

    def __repr__(self) -> str:
        nonzero = {k: v for k, v in self.as_dict().items() if v}
        return f"ToleranceStats({nonzero})"


_STOP_REASON_PREFIXES = ("RTMS_STOP_REASON_", "STOP_REASON_")


def stop_reason_from_name(name: str) -> StopReason | None:
    """The stop reason for a name such as ``"MEETING_ENDED"``, ``"meeting_ended"``,
    ``"STOP_REASON_MEETING_ENDED"`` or a decimal string; None when unknown."""
    key = name.strip().upper().replace("-", "_").replace(" ", "_")
    if key.lstrip("-").isdigit():
        try:
            return StopReason(int(key))
        except ValueError:
            return None
    for prefix in _STOP_REASON_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    if key == "INSTANCE_MEETING_CONNECTION_INTERRUPTED" or key == "MEETING_CONNECTION_INTERRUPTED":
        key = "INSTANCE_CONNECTION_INTERRUPTED"
    return StopReason.__members__.get(key)


# Messages whose integer ``reason`` is a stop reason.
_STOP_REASON_MSG_TYPES = frozenset({8, 9, 20})


def repair(
    raw: dict[str, Any], msg_type: int, stats: ToleranceStats | None
) -> dict[str, Any] | None:
    """A repaired copy of ``raw`` (counting each repair), or None if nothing applied."""
    changed = False
    out = dict(raw)
    if msg_type == 2:
        media_server = out.get("media_server")
        if isinstance(media_server, dict) and isinstance(media_server.get("server_urls"), str):
            urls: str = media_server["server_urls"]
            parts = [part.strip() for part in urls.split(",") if part.strip()]
            if stats is not None:
                stats.server_urls_string += 1
                if len(parts) > 1:
                    stats.server_urls_list += 1
            out["media_server"] = {
                **media_server,
                "server_urls": {"all": parts[0] if parts else urls},
            }
            changed = True
    elif msg_type in _STOP_REASON_MSG_TYPES:
        reason = out.get("reason")
        if isinstance(reason, str):
            known = stop_reason_from_name(reason)
            if stats is not None:
                if known is None:
                    stats.stop_reason_unknown_name += 1
                else:
                    stats.stop_reason_name += 1
            out["reason"] = int(known) if known is not None else int(StopReason.UNDEFINED)
            changed = True
    return out if changed else None


def note_decoded(msg: Any, stats: ToleranceStats) -> None:
    """Count deviations in a message that decoded fine (any message type)."""
    tag = msg.__struct_config__.tag
    if tag == 12:
        note_keep_alive(msg, stats)
    elif tag == 2 or tag == 4:
        note_handshake_response(msg, stats)


def note_keep_alive(msg: Any, stats: ToleranceStats) -> None:
    """Count a KEEP_ALIVE_REQ without ``sequence`` or ``timestamp``."""
    if msg.sequence is None:
        stats.keep_alive_missing_sequence += 1
    if msg.timestamp is None:
        stats.keep_alive_missing_timestamp += 1


def note_handshake_response(msg: Any, stats: ToleranceStats) -> None:
    """Count a handshake response (2 or 4) without ``status_code``, and msg 2's URL shape."""
    if msg.status_code is None:
        stats.status_code_missing += 1
    if getattr(msg, "media_server", None) is not None:
        urls = msg.media_server.server_urls
        per_type = (
            urls.audio is not None
            or urls.video is not None
            or urls.deskshare is not None
            or urls.transcript is not None
            or urls.chat is not None
        )
        if urls.all is None and per_type:
            stats.server_urls_per_type_only += 1
        elif urls.all is not None and not per_type:
            stats.server_urls_all_only += 1
