"""Faults: abrupt drops reconnect within absolute windows; gaps are counted."""

from __future__ import annotations

from functools import partial

import pytest
import trio

from rtms_fast.engine import Engine
from rtms_fast.events import (
    EngineEvent,
    MediaInterrupted,
    MediaReconnected,
    StreamLost,
    StreamStopped,
)
from rtms_fast.session import SessionSpec
from rtms_fast.settings import EngineSettings
from rtms_fast.sim import FaultKind, SimConfig, Simulator, participant_id, run_simulator
from rtms_fast.tls import native_tls_available

FAST = {
    "handshake_timeout_s": 0.3,
    "close_timeout_s": 0.3,
    "shutdown_timeout_s": 2.0,
    "reconnect_backoff_base_s": 0.05,
    "reconnect_backoff_max_s": 0.1,
    "reconnect_backoff_jitter": 0.0,
}


def _spec(sim: Simulator, index: int = 0) -> SessionSpec:
    s = sim.sessions[index]
    return SessionSpec(rtms_stream_id=s.rtms_stream_id, signature_id=s.meeting_uuid,
                       server_urls=sim.signaling_url, client_id=sim.config.client_id,
                       client_secret=sim.config.client_secret)


def _drain(subscription: object) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    while True:
        try:
            out.append(subscription.get_nowait())  # type: ignore[attr-defined]
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


async def _wait_audio(engine: Engine, samples: int) -> None:
    with trio.fail_after(5):
        while True:
            sessions = engine.sessions()
            if sessions and sessions[0].participants():
                key = sessions[0].participants()[0][0]
                if sessions[0].ring(key).available >= samples:
                    return
            await trio.sleep(0.01)


@pytest.mark.parametrize(("native_ingest", "tls"),
                         [(True, False), (False, False), (True, True)],
                         ids=["native-ws", "python-ws", "native-wss"])
async def test_abrupt_media_drop_reconnects_and_counts_the_gap(native_ingest: bool,
                                                                tls: bool) -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.7, keepalive_interval_s=0.2,
                    tls=tls)
    async with run_simulator(cfg) as sim:
        settings = EngineSettings(media_types=("audio",), continuous_timeline=True,
                                  native_ingest=native_ingest,
                                  ca_file=sim.ca_file if tls else None, **FAST)
        async with Engine(settings) as engine:
            subscription = engine.subscribe()
            engine.start_session(_spec(sim))
            session = engine.sessions()[0]
            await _wait_audio(engine, 3200)
            sim.inject_fault(0, FaultKind.DROP_TCP, target="media")
            with trio.fail_after(10):
                await engine.wait_idle()
            events = _drain(subscription)
            if tls and native_tls_available():  # media TLS ran natively, before and after
                assert engine.native_tls is not None and engine.pump is not None
                assert engine.pump.stats.native_tls_reads > 0
                # both media connections, the first and the reconnected one, on the own
                # TLS 1.3 record layer
                assert engine.stats().tls_own_record_sockets == 2
    stats = session.stats()
    assert session.outcome is not None and session.outcome.outcome == "ended"
    assert stats.reconnects == 1
    assert stats.gaps_ms > 0
    kinds = [type(e) for e in events]
    assert kinds.index(MediaInterrupted) < kinds.index(MediaReconnected) < kinds.index(
        StreamStopped)
    interrupted = next(e for e in events if isinstance(e, MediaInterrupted))
    assert interrupted.socket == "media"
    gap = next(e for e in events if isinstance(e, MediaReconnected))
    assert abs(gap.gap_ms - stats.gaps_ms) < 1e-6
    # continuous timeline: the ring holds audio for the whole wall-clock span, gap as silence
    ring = session.ring(str(participant_id(0))).stats()
    silence = ring.written - stats.media["audio"].messages * 320
    assert silence > 0
    if native_ingest:
        # the kernel fills from the sender's timeline: the ring spans the whole second
        assert abs(ring.written - 11200) <= 320
    else:
        # the Python path fills the measured wall-clock gap
        assert abs(silence - stats.gaps_ms * 16) <= 16
    assert sim.counters.handshakes_ok == 3  # signaling, media, media again


async def test_signaling_drop_rejoins_from_scratch() -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.7, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        await _wait_audio(engine, 3200)
        sim.inject_fault(0, FaultKind.DROP_TCP, target="all")
        with trio.fail_after(10):
            await engine.wait_idle()
    assert session.outcome is not None and session.outcome.outcome == "ended"
    assert session.stats().reconnects == 1
    assert sim.counters.handshakes_ok == 4


async def test_stall_ends_in_stream_lost_at_the_absolute_deadline() -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=30.0, keepalive_interval_s=0.1)
    window_s = 0.6
    settings = EngineSettings(media_types=("audio",), keepalive_timeout_s=0.2,
                              signaling_reconnect_window_s=window_s,
                              media_reconnect_window_s=window_s, **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        await _wait_audio(engine, 1600)
        sim.inject_fault(0, FaultKind.STALL)
        stalled_at = trio.current_time()
        with trio.fail_after(10):
            await engine.wait_idle()
        ended_at = trio.current_time()
    assert session.outcome is not None
    assert session.outcome.outcome == "lost"
    assert isinstance(session.outcome, StreamLost)
    assert session.outcome.window_s == window_s
    assert session.outcome.stop_reason in (
        "SIGNAL_CONNECTION_INTERRUPTED", "DATA_CONNECTION_INTERRUPTED")
    # detection (keep-alive timeout) + the window, never more than one handshake past it
    elapsed = ended_at - stalled_at
    assert elapsed <= 0.2 + 0.25 + window_s + FAST["handshake_timeout_s"] + 0.3
    assert elapsed >= window_s


async def test_one_failing_session_does_not_disturb_another() -> None:
    cfg = SimConfig(sessions=2, participants=1, duration_s=0.3, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim, 0))
        bad = sim.sessions[1]
        engine.start_session(SessionSpec(rtms_stream_id=bad.rtms_stream_id,
                                         signature_id=bad.meeting_uuid,
                                         server_urls="http://not-a-websocket/",
                                         signature="x"))
        with trio.fail_after(10):
            await engine.wait_idle()
    assert engine.outcomes() == {"ended": 1, "rejected": 1}


async def _connect_proxy(stream: trio.SocketStream, tunnels: list[str]) -> None:
    """A minimal HTTP CONNECT proxy (h11 for the request, then a byte pipe both ways)."""
    import h11

    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(4096))
            continue
        break
    assert isinstance(event, h11.Request) and event.method == b"CONNECT"
    target = event.target.decode()
    host, _, port = target.rpartition(":")
    tunnels.append(target)
    upstream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(conn.send(h11.Response(status_code=200, headers=[])) or b"")
    leftover, _ = conn.trailing_data

    async def pipe(src: trio.abc.Stream, dst: trio.abc.Stream, first: bytes) -> None:
        try:
            if first:
                await dst.send_all(first)
            while data := await src.receive_some(65536):
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(dst)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipe, stream, upstream, bytes(leftover))
        nursery.start_soon(pipe, upstream, stream, b"")


async def test_every_socket_goes_through_the_http_proxy() -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.5, keepalive_interval_s=0.2)
    tunnels: list[str] = []
    async with trio.open_nursery() as proxy_nursery:
        listeners = await proxy_nursery.start(
            partial(trio.serve_tcp, partial(_connect_proxy, tunnels=tunnels), 0,
                    host="127.0.0.1"))
        proxy_port = listeners[0].socket.getsockname()[1]
        settings = EngineSettings(media_types=("audio", "transcript"),
                                  proxy=f"http://127.0.0.1:{proxy_port}", **FAST)
        async with run_simulator(cfg) as sim, Engine(settings) as engine:
            engine.start_session(_spec(sim))
            session = engine.sessions()[0]
            with trio.fail_after(10):
                await engine.wait_idle()
        proxy_nursery.cancel_scope.cancel()
    assert session.outcome is not None and session.outcome.outcome == "ended"
    assert len(tunnels) == 3  # signaling + audio + transcript
    assert all(t == f"127.0.0.1:{sim.port}" for t in tunnels)
    assert session.ring(str(participant_id(0))).stats().written == 8000


async def test_shutdown_deadline_cancels_a_stuck_session_cleanly() -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=30.0, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), **{**FAST, "close_timeout_s": 2.0})
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        session_events = session.events.subscribe()
        await _wait_audio(engine, 1600)
        sim.inject_fault(0, FaultKind.STALL)  # STREAM_CLOSE_REQ will never be answered
        started = trio.current_time()
        await engine.shutdown(timeout_s=0.2)
        assert trio.current_time() - started < 1.5
        assert session.finished.is_set()
    assert session.outcome is not None and session.outcome.outcome == "closed"
    received = _drain(session_events)
    assert isinstance(received[-1], StreamStopped)
    assert session_events.statistics().closed


async def test_a_session_without_an_engine_watches_keepalives_on_its_own_timer() -> None:
    """A Session run directly (no engine watchdog, no pump) still detects starvation: a
    stalled server ends it as lost after the window, the time-outs counted."""
    from rtms_fast.session import Session

    cfg = SimConfig(sessions=1, participants=1, duration_s=30.0, keepalive_interval_s=0.1)
    settings = EngineSettings(media_types=("audio",), keepalive_timeout_s=0.2,
                              signaling_reconnect_window_s=0.4, media_reconnect_window_s=0.4,
                              use_pump=False, **FAST)
    async with run_simulator(cfg) as sim:
        session = Session(_spec(sim), settings)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            with trio.fail_after(5):
                while not session.participants() or not session.ring(
                        session.participants()[0][0]).available:
                    await trio.sleep(0.01)
            sim.inject_fault(0, FaultKind.STALL)
            with trio.fail_after(10):
                await session.finished.wait()
    assert isinstance(session.outcome, StreamLost)
    tolerated = session.stats().tolerated
    assert tolerated.get("signaling_keepalive_timeout", 0) + tolerated.get(
        "media_keepalive_timeout", 0) >= 1
