"""The engine: every RTMS session of one process in one Trio nursery.

``Engine`` admits sessions (``max_sessions``; refusals are counted and published), makes
starts idempotent per ``rtms_stream_id`` (a retried webhook never opens a second
connection, which would kick out the first), runs ONE media pump for all sessions, shares
one ring memory budget, and shuts every session down gracefully within a deadline. A
failing session is contained: it ends with outcome ``failed`` and nothing else notices.

Use it as an async context manager inside Trio::

    async with Engine(settings, client_id=..., client_secret=...) as engine:
        engine.start_session(spec)            # or engine.on_stream_change(webhook_change)
        async for event in engine.subscribe():
            ...

This module must never parse wire bytes or block the Trio thread.
"""

from __future__ import annotations

import enum
import ssl
import time
from collections import Counter, deque
from types import TracebackType
from typing import Final

import trio

from rtms_fast.events import (
    EventBroadcaster,
    EventSubscription,
    SessionRefused,
    StreamStopped,
)
from rtms_fast.gc_policy import GcPolicyStats, run_gc_policy
from rtms_fast.protocol.webhook import StreamInterrupted, StreamStart, StreamStop
from rtms_fast.pump import MediaPump
from rtms_fast.ring import MemoryBudget
from rtms_fast.session import Session, SessionPhase, SessionSpec, keepalive_check_period_s
from rtms_fast.settings import EngineSettings
from rtms_fast.stats import EngineStats, MediaCounters, SessionStats
from rtms_fast.tls import NativeTLSContext, native_tls_available

__all__ = ["Engine", "EngineClosedError", "StartResult"]

_FINISHED_KEPT: Final = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


class StartResult(str, enum.Enum):
    """What ``start_session`` did."""

    STARTED = "started"
    DUPLICATE = "duplicate"  # a session for this rtms_stream_id is already running
    REFUSED = "refused"  # admission control (max_sessions reached) or an unusable spec


class EngineClosedError(RuntimeError):
    """The engine is not running (outside ``async with``, or shutting down)."""


class Engine:
    """Runs many RTMS sessions; see the module docstring.

    ``client_id``/``client_secret`` sign handshakes for specs and webhooks that carry no
    signature. ``ssl_context`` overrides the one built from ``settings.ca_file``.
    """

    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self._client_id = client_id
        self._client_secret = client_secret
        # Media TLS in the native module unless the caller brings its own ssl context
        self.native_tls: NativeTLSContext | None = None
        if (ssl_context is None and self.settings.tls_backend != "python"
                and native_tls_available()):
            self.native_tls = NativeTLSContext(
                self.settings.ca_file, own_records=self.settings.tls_backend == "native")
        if ssl_context is None and self.settings.ca_file is not None:
            ssl_context = ssl.create_default_context(cafile=self.settings.ca_file)
        self._ssl_context = ssl_context
        self.events = EventBroadcaster(self.settings.event_queue_size,
                                       self.settings.event_overflow)
        self.budget = MemoryBudget(self.settings.ring_memory_ceiling_bytes)
        self.pump: MediaPump | None = (
            MediaPump(self.settings.sweep_interval_ms,
                      delay_acks=self.settings.tcp_delayed_ack)
            if self.settings.use_pump else None
        )
        self._sessions: dict[str, Session] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._finished: deque[SessionStats] = deque(maxlen=_FINISHED_KEPT)
        self._outcomes: Counter[str] = Counter()
        self._totals_media_messages: Counter[str] = Counter()
        self._totals_media_bytes: Counter[str] = Counter()
        self._totals_drops: Counter[str] = Counter()
        self._totals_reconnects = 0
        self._totals_keepalives = 0
        self._keepalive_max_lag_ms = 0.0
        self.sessions_started = 0
        self.sessions_refused = 0
        self.duplicate_starts = 0
        self.gc_stats = GcPolicyStats()
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._all_done = trio.Event()
        self._all_done.set()

    # ---- lifecycle -----------------------------------------------------------------------
    async def __aenter__(self) -> Engine:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        if self.pump is not None:
            self._nursery.start_soon(self.pump.run)
        self._nursery.start_soon(self._keepalive_watchdog)
        self._nursery.start_soon(
            run_gc_policy, self.settings.gc_freeze_interval_s,
            self.settings.gc_full_collect_interval_s,
            lambda: sum(self._outcomes.values()), self.gc_stats)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            with trio.CancelScope(shield=exc is not None):
                await self.shutdown()
        finally:
            assert self._nursery is not None
            self._nursery.cancel_scope.cancel()
            self._nursery = None
            result = await self._nursery_manager.__aexit__(exc_type, exc, tb)
            self.events.close()
        return result

    async def shutdown(self, timeout_s: float | None = None) -> None:
        """Close every session gracefully; cancel what is still running after the deadline
        (``settings.shutdown_timeout_s`` unless given). New starts are refused from now on;
        engine-wide event subscriptions end (after draining) once every session is done."""
        self._closing = True
        deadline_s = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        for session in list(self._sessions.values()):
            session.close()
        with trio.move_on_after(deadline_s):
            await self._all_done.wait()
        for scope in list(self._scopes.values()):
            scope.cancel()
        with trio.move_on_after(1.0):
            await self._all_done.wait()
        # No session can start any more: end every engine-wide subscription once drained.
        self.events.close()

    # ---- sessions ------------------------------------------------------------------------
    def start_session(self, spec: SessionSpec | StreamStart) -> StartResult:
        """Start ingesting a stream (returns at once). Idempotent per ``rtms_stream_id``."""
        if self._nursery is None or self._closing:
            raise EngineClosedError("the engine is not running")
        if isinstance(spec, StreamStart):
            spec = SessionSpec.from_start(spec, self._client_id, self._client_secret)
        elif spec.signature is None and spec.client_id is None:
            spec = SessionSpec(
                rtms_stream_id=spec.rtms_stream_id, signature_id=spec.signature_id,
                server_urls=spec.server_urls, product=spec.product,
                client_id=self._client_id, client_secret=self._client_secret)
        stream_id = spec.rtms_stream_id
        if stream_id in self._sessions:
            self.duplicate_starts += 1
            return StartResult.DUPLICATE
        if len(self._sessions) >= self.settings.max_sessions:
            self.sessions_refused += 1
            self.events.publish(SessionRefused(
                rtms_stream_id=stream_id, received_at_ms=_now_ms(),
                reason=f"max_sessions ({self.settings.max_sessions}) reached"))
            return StartResult.REFUSED
        try:
            session = Session(spec, self.settings, pump=self.pump, budget=self.budget,
                              engine_events=self.events, ssl_context=self._ssl_context,
                              native_tls=self.native_tls, external_watchdog=True)
        except ValueError as exc:  # e.g. neither a signature nor client credentials
            self.sessions_refused += 1
            self.events.publish(SessionRefused(rtms_stream_id=stream_id,
                                               received_at_ms=_now_ms(), reason=str(exc)))
            return StartResult.REFUSED
        self._sessions[stream_id] = session
        scope = trio.CancelScope()
        self._scopes[stream_id] = scope
        self.sessions_started += 1
        if self._all_done.is_set():
            self._all_done = trio.Event()
        self._nursery.start_soon(self._run_session, session, scope)
        return StartResult.STARTED

    def stop_session(self, rtms_stream_id: str) -> bool:
        """Ask a session to close gracefully; False if no such session runs."""
        session = self._sessions.get(rtms_stream_id)
        if session is None:
            return False
        session.close()
        return True

    def on_stream_change(self, change: StreamStart | StreamStop | StreamInterrupted) -> None:
        """Webhook hand-off (``WebhookServer(on_stream=engine.on_stream_change)``)."""
        if isinstance(change, StreamStart):
            if not self._closing and self._nursery is not None:
                self.start_session(change)
        elif isinstance(change, StreamStop):
            self.stop_session(change.rtms_stream_id)
        # StreamInterrupted: the session's own reconnect logic handles interruptions.

    def session(self, rtms_stream_id: str) -> Session | None:
        return self._sessions.get(rtms_stream_id)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def subscribe(self, max_queued: int | None = None) -> EventSubscription:
        """Events of every session (and admission refusals) from now on."""
        return self.events.subscribe(max_queued)

    async def wait_idle(self) -> None:
        """Wait until no session is running."""
        await self._all_done.wait()

    async def _keepalive_watchdog(self) -> None:
        """ONE timer for every session's keep-alive starvation check (a timer per session
        cost a task wake-up and a cancel scope each per period, per session)."""
        period = keepalive_check_period_s(self.settings)
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            for session in list(self._sessions.values()):
                session.check_keepalive(now)

    async def _run_session(self, session: Session, scope: trio.CancelScope) -> None:
        stream_id = session.rtms_stream_id
        try:
            with scope:
                await session.run()
        except Exception as exc:  # a session must never take the engine down
            session.outcome = StreamStopped(rtms_stream_id=stream_id, received_at_ms=_now_ms(),
                                            outcome="failed", detail=repr(exc))
        finally:
            outcome = session.outcome
            if outcome is None:  # only if the session failed before it could record one
                outcome = StreamStopped(rtms_stream_id=stream_id, received_at_ms=_now_ms(),
                                        outcome="failed", detail="no outcome recorded")
                session.outcome = outcome
                self.events.publish(outcome)
            self._outcomes[outcome.outcome] += 1
            final = session.stats()
            for name, media in final.media.items():
                self._totals_media_messages[name] += media.messages
                self._totals_media_bytes[name] += media.bytes
            self._totals_drops.update(final.drops)
            self._totals_reconnects += final.reconnects
            self._totals_keepalives += final.keepalives_answered
            self._keepalive_max_lag_ms = max(self._keepalive_max_lag_ms,
                                             final.keepalive_max_lag_ms)
            self._finished.append(final)
            self._sessions.pop(stream_id, None)
            self._scopes.pop(stream_id, None)
            if not self._sessions:
                self._all_done.set()

    # ---- stats ---------------------------------------------------------------------------
    def finished_sessions(self) -> list[SessionStats]:
        """Final snapshots of the most recent finished sessions (oldest first)."""
        return list(self._finished)

    def outcomes(self) -> dict[str, int]:
        """Finished sessions by outcome (ended, closed, lost, rejected, failed)."""
        return dict(self._outcomes)

    def stats(self) -> EngineStats:
        live = [s.stats() for s in self._sessions.values()]
        by_state: Counter[str] = Counter(s.state for s in live)
        messages = Counter(self._totals_media_messages)
        nbytes = Counter(self._totals_media_bytes)
        drops = Counter(self._totals_drops)
        reconnects = self._totals_reconnects
        keepalives = self._totals_keepalives
        rtts = []
        max_lag = self._keepalive_max_lag_ms
        for snapshot in live:
            max_lag = max(max_lag, snapshot.keepalive_max_lag_ms)
            for name, media in snapshot.media.items():
                messages[name] += media.messages
                nbytes[name] += media.bytes
            drops.update(snapshot.drops)
            reconnects += snapshot.reconnects
            keepalives += snapshot.keepalives_answered
            if snapshot.keepalive_lag_ms is not None:
                rtts.append(snapshot.keepalive_lag_ms)
        drops["event_queue_full"] += self.events.dropped
        if not drops["event_queue_full"]:
            del drops["event_queue_full"]
        pump = self.pump.stats if self.pump is not None else None
        return EngineStats(
            sessions_by_state={SessionPhase(k).value: v for k, v in by_state.items()},
            sessions_started=self.sessions_started,
            sessions_refused=self.sessions_refused,
            sessions_finished=sum(self._outcomes.values()),
            duplicate_starts=self.duplicate_starts,
            media={k: MediaCounters(messages=messages[k], bytes=nbytes[k])
                   for k in sorted(messages)},
            drops=dict(drops),
            reconnects=reconnects,
            keepalives_answered=keepalives,
            keepalive_lag_ms=(sorted(rtts)[len(rtts) // 2] if rtts else None),
            keepalive_max_lag_ms=max_lag,
            ring_memory_bytes=self.budget.used_bytes,
            ring_memory_ceiling_bytes=self.budget.limit_bytes,
            pump_sweeps=pump.sweeps if pump is not None else 0,
            pump_bytes=pump.bytes if pump is not None else 0,
            sessions=live,
            gc_full_collections=self.gc_stats.full_collections,
            gc_longest_pause_ms=self.gc_stats.longest_full_collection_s * 1000.0,
            pump_max_sweep_lag_ms=pump.max_sweep_lag_s * 1000.0 if pump is not None else 0.0,
            pump_late_sweeps=pump.late_sweeps if pump is not None else 0,
            tls_native_sockets=pump.native_tls_sockets if pump is not None else 0,
            tls_own_record_sockets=pump.own_record_sockets if pump is not None else 0,
            pump_signaling_sockets=pump.streams if pump is not None else 0,
            pump_stream_failures=pump.stream_failures if pump is not None else 0,
            pump_poll_free_sweeps=pump.poll_free_sweeps if pump is not None else 0,
            pump_empty_reads=pump.empty_reads if pump is not None else 0,
            pump_ack_rearms=pump.ack_rearms if pump is not None else 0,
            pump_recv_cpu_s=pump.recv_cpu_s if pump is not None else 0.0,
        )
