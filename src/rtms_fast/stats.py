"""Counters and snapshots of the engine and its sessions.

Sessions and the pump bump plain integer counters (``SessionCounters``, O(1), no locks:
everything runs in one Trio thread); ``stats()`` turns them into immutable snapshots
(msgspec Structs, so ``msgspec.json.encode(snapshot)`` is the export format). Exporters
(Prometheus, logs) read snapshots; this module must never import an exporter or do I/O.
"""

from __future__ import annotations

from collections import Counter

import msgspec

__all__ = [
    "DropReason",
    "EngineStats",
    "MediaCounters",
    "RingStats",
    "SessionCounters",
    "SessionStats",
]


class DropReason:
    """Names of the reasons a message, frame or event is dropped (keys of ``drops``)."""

    MALFORMED_MESSAGE = "malformed_message"
    UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
    UNEXPECTED_MESSAGE = "unexpected_message"
    UNWANTED_MEDIA = "unwanted_media"
    UNSUPPORTED_CODEC = "unsupported_codec"
    TOO_MANY_PARTICIPANTS = "too_many_participants"
    RING_MEMORY_CEILING = "ring_memory_ceiling"
    RING_OVERFLOW = "ring_overflow"  # counted in samples (dropped + refused by the rings)
    EVENT_QUEUE_FULL = "event_queue_full"
    OVERSIZE_MESSAGE = "oversize_message"
    AFTER_CLOSE = "after_close"


class MediaCounters(msgspec.Struct, frozen=True):
    """Messages and payload bytes received for one media type."""

    messages: int = 0
    bytes: int = 0


class RingStats(msgspec.Struct, frozen=True):
    """One participant ring: fill level and totals, in samples."""

    participant: str
    capacity_samples: int
    fill_samples: int
    written_samples: int
    dropped_samples: int


class SessionStats(msgspec.Struct, frozen=True, kw_only=True):
    """Snapshot of one session."""

    rtms_stream_id: str
    state: str
    stop_reason: str | None
    media: dict[str, MediaCounters]
    drops: dict[str, int]
    tolerated: dict[str, int]
    reconnects: int
    gaps_ms: float
    keepalives_answered: int
    keepalive_lag_ms: float | None
    participants: int
    rings: list[RingStats]
    started_at_s: float
    uptime_s: float
    #: The oldest keep-alive request was when answered, ms (same clock caveat as the lag).
    keepalive_max_lag_ms: float = 0.0


class EngineStats(msgspec.Struct, frozen=True, kw_only=True):
    """Snapshot of an engine: totals over its sessions plus one entry per live session."""

    sessions_by_state: dict[str, int]
    sessions_started: int
    sessions_refused: int
    sessions_finished: int
    duplicate_starts: int
    media: dict[str, MediaCounters]
    drops: dict[str, int]
    reconnects: int
    keepalives_answered: int
    keepalive_lag_ms: float | None
    ring_memory_bytes: int
    ring_memory_ceiling_bytes: int
    pump_sweeps: int
    pump_bytes: int
    sessions: list[SessionStats]
    #: Full passes of the garbage collector run by the engine's policy, and the longest
    #: (a pause of the Trio thread), in ms (``EngineSettings.gc_freeze_interval_s``).
    gc_full_collections: int = 0
    gc_longest_pause_ms: float = 0.0
    #: The oldest any keep-alive request was when answered, over every session, ms.
    keepalive_max_lag_ms: float = 0.0
    #: The longest a pump sweep started behind its schedule (latency added beyond the sweep
    #: interval), in ms, and the sweeps that ran a whole interval or more late.
    pump_max_sweep_lag_ms: float = 0.0
    pump_late_sweeps: int = 0
    #: Media sockets read natively through TLS so far, and those of them whose records the
    #: own TLS 1.3 record layer decrypted (``EngineSettings.tls_backend``).
    tls_native_sockets: int = 0
    tls_own_record_sockets: int = 0
    #: Signaling sockets the pump reads now (keep-alives answered in its sweeps), and the
    #: callbacks for them that raised (that socket then went back to its own reader).
    pump_signaling_sockets: int = 0
    pump_stream_failures: int = 0
    #: Sweeps that read every plain media socket without asking epoll first, the reads of
    #: those sweeps that found nothing (each a system call for no bytes), and the reads
    #: preceded by setting delayed ACKs again (one more system call each).
    pump_poll_free_sweeps: int = 0
    pump_empty_reads: int = 0
    pump_ack_rearms: int = 0
    #: CPU seconds the pump's thread spent in its batched receives (``rtms_recv_sweep``):
    #: mostly the kernel's receive path, with the ACKs it sends.
    pump_recv_cpu_s: float = 0.0


class SessionCounters:
    """Mutable counters of one session (bumped on the hot path; snapshot via ``SessionStats``)."""

    __slots__ = (
        "drops",
        "gaps_ms",
        "keepalive_lag_ms",
        "keepalive_max_lag_ms",
        "keepalives_answered",
        "media_bytes",
        "media_messages",
        "reconnects",
        "tolerated",
    )

    def __init__(self) -> None:
        self.media_messages: Counter[str] = Counter()
        self.media_bytes: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self.tolerated: Counter[str] = Counter()
        self.reconnects = 0
        self.gaps_ms = 0.0
        self.keepalives_answered = 0
        #: Age of the last keep-alive request when we answered it, in ms: our clock minus the
        #: server's ``timestamp`` (one-way delay plus clock skew; the server measures the
        #: round trip, a client cannot). Exact only when both clocks agree (the simulator).
        self.keepalive_lag_ms: float | None = None
        self.keepalive_max_lag_ms = 0.0

    def count_media(self, media: str, nbytes: int) -> None:
        self.media_messages[media] += 1
        self.media_bytes[media] += nbytes

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def media_snapshot(self) -> dict[str, MediaCounters]:
        return {
            name: MediaCounters(messages=self.media_messages[name], bytes=self.media_bytes[name])
            for name in sorted(self.media_messages)
        }
