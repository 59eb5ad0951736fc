"""The engine against the simulator over real sockets on 127.0.0.1 (ws and wss)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import trio

from rtms_fast import codecs
from rtms_fast.engine import Engine, StartResult
from rtms_fast.events import (
    ActiveSpeakerChanged,
    AudioStreamStarted,
    ChatReceived,
    EngineEvent,
    EventSubscription,
    ParticipantJoined,
    ParticipantLeft,
    StreamStopped,
    TranscriptReceived,
)
from rtms_fast.session import SessionSpec
from rtms_fast.settings import EngineSettings
from rtms_fast.sim import (
    AudioSource,
    SimConfig,
    Simulator,
    participant_id,
    participant_name,
    run_simulator,
    transcript_text,
)
from rtms_fast.tls import native_tls_available

FAST = {
    "handshake_timeout_s": 2.0,
    "close_timeout_s": 0.5,
    "shutdown_timeout_s": 3.0,
    "reconnect_backoff_base_s": 0.02,
    "reconnect_backoff_max_s": 0.1,
}


def _spec(sim: Simulator, index: int = 0) -> SessionSpec:
    s = sim.sessions[index]
    return SessionSpec(
        rtms_stream_id=s.rtms_stream_id,
        signature_id=s.meeting_uuid,
        server_urls=sim.signaling_url,
        client_id=sim.config.client_id,
        client_secret=sim.config.client_secret,
    )


def _drain(subscription: EventSubscription) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    while True:
        try:
            out.append(subscription.get_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return out


def _expected_pcm(seed: int, session: int, participant: int, codec: int, n: int) -> np.ndarray:
    source = AudioSource(seed, session, participant, codec, 16000 if codec == 1 else 8000,
                         content_type=2)
    pcm = source.pcm(0, n)
    if codec == 2:  # G.711 A-law is lossy: the exact expectation is decode(encode(pcm))
        return codecs.decode_alaw(codecs.encode_alaw(pcm))
    return pcm


@pytest.mark.parametrize(
    ("use_pump", "native_ingest"), [(True, True), (True, False), (False, False)]
)
async def test_audio_is_bit_exact_per_participant_and_events_in_order(
    use_pump: bool, native_ingest: bool
) -> None:
    cfg = SimConfig(sessions=2, participants=2, duration_s=0.5, keepalive_interval_s=0.1,
                    transcript_interval_ms=100, chat_interval_ms=150, event_interval_ms=100,
                    seed=7)
    settings = EngineSettings(media_types=("audio", "transcript", "chat"), use_pump=use_pump,
                              native_ingest=native_ingest,
                              **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        subscription = engine.subscribe(max_queued=100_000)
        for i in range(cfg.sessions):
            assert engine.start_session(_spec(sim, i)) is StartResult.STARTED
        sessions = engine.sessions()
        with trio.fail_after(10):
            await engine.wait_idle()
        events = _drain(subscription)
    assert subscription.statistics().dropped == 0
    assert engine.outcomes() == {"ended": 2}
    # every keep-alive request on every socket was answered (the last may still be in flight)
    counters = sim.counters
    assert counters.keepalives_sent > 0
    assert counters.keepalive_answers >= counters.keepalives_sent - 2 * 4
    for index, session in enumerate(sessions):
        stats = session.stats()
        assert session.native_ingest_active is (use_pump and native_ingest)
        assert stats.stop_reason == "MEETING_ENDED"
        assert stats.media["audio"].messages == 2 * 25
        assert stats.keepalives_answered > 0
        assert stats.drops == {}
        keys = sorted(key for key, _, _ in session.participants())
        assert keys == sorted(str(participant_id(p)) for p in range(2))
        for p in range(2):
            ring = session.ring(str(participant_id(p)))
            got = ring.read_copy()
            assert len(got) == 8000  # 0.5 s at 16 kHz, every frame
            expected = _expected_pcm(7, index, p, 1, len(got))
            np.testing.assert_array_equal(got, expected)
        mine = [e for e in events if e.rtms_stream_id == session.rtms_stream_id]
        transcripts = [e for e in mine if isinstance(e, TranscriptReceived)]
        assert transcripts, "no transcript arrived"
        assert [t.text for t in transcripts] == [
            transcript_text(7, index, k) for k in range(len(transcripts))
        ]
        assert [t.user_id for t in transcripts] == [
            participant_id(k % 2) for k in range(len(transcripts))
        ]
        assert any(isinstance(e, ChatReceived) for e in mine)
        joined = [e for e in mine if isinstance(e, ParticipantJoined)]
        assert [(e.user_id, e.user_name) for e in joined] == [
            (participant_id(p), participant_name(p)) for p in range(2)
        ]
        assert any(isinstance(e, ActiveSpeakerChanged) for e in mine)
        kinds = [type(e) for e in mine]
        assert kinds.index(ParticipantJoined) < kinds.index(ParticipantLeft)
        assert kinds[-1] is StreamStopped
        started = [e for e in mine if isinstance(e, AudioStreamStarted)]
        assert {e.participant for e in started} == set(keys)


@pytest.mark.parametrize("tls_backend", ["native", "native-openssl", "python"])
async def test_g711_over_wss_unified_mode(tls_backend: str) -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.4, tls=True, mode="unified",
                    keepalive_interval_s=0.2, seed=3)
    async with run_simulator(cfg) as sim:
        settings = EngineSettings(media_types=("audio",), media_mode="unified",
                                  audio_codec_preferences=("g711",), audio_sample_rate_hz=8000,
                                  audio_content_type="rtp", ca_file=sim.ca_file,
                                  tls_backend=tls_backend, **FAST)  # type: ignore[arg-type]
        async with Engine(settings) as engine:
            assert (engine.native_tls is not None) == (
                tls_backend != "python" and native_tls_available())
            engine.start_session(_spec(sim))
            session = engine.sessions()[0]
            with trio.fail_after(10):
                await engine.wait_idle()
        assert engine.pump is not None
        pump = engine.pump.stats
        native_reads = pump.native_tls_reads
        pump_counts = (pump.poll_free_sweeps, pump.empty_reads, pump.ack_rearms,
                       pump.recv_cpu_s)
        stats = engine.stats()
    assert session.outcome is not None and session.outcome.outcome == "ended"
    assert session.stats().keepalives_answered > 0
    assert (native_reads > 0) == (engine.native_tls is not None)
    assert (stats.pump_poll_free_sweeps, stats.pump_empty_reads,
            stats.pump_ack_rearms, stats.pump_recv_cpu_s) == pump_counts
    if sys.platform.startswith("linux"):  # delayed ACKs set before the socket's first read
        assert stats.pump_ack_rearms > 0
        assert stats.pump_recv_cpu_s > 0  # the batched receives took some CPU
    # the simulator speaks TLS 1.3: the own record layer takes its media socket
    assert stats.tls_native_sockets == (1 if engine.native_tls is not None else 0)
    assert stats.tls_own_record_sockets == (1 if engine.native_tls is not None
                                            and tls_backend == "native" else 0)
    got = session.ring(str(participant_id(0))).read_copy()
    assert len(got) == 8000 * 4 // 10
    np.testing.assert_array_equal(got, _expected_pcm(3, 0, 0, 2, len(got)))


async def test_admission_control_and_idempotent_starts() -> None:
    cfg = SimConfig(sessions=3, participants=1, duration_s=0.5, keepalive_interval_s=0.2)
    settings = EngineSettings(max_sessions=2, media_types=("audio",), **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        subscription = engine.subscribe()
        assert engine.start_session(_spec(sim, 0)) is StartResult.STARTED
        assert engine.start_session(_spec(sim, 0)) is StartResult.DUPLICATE
        assert engine.start_session(_spec(sim, 1)) is StartResult.STARTED
        assert engine.start_session(_spec(sim, 2)) is StartResult.REFUSED
        stats = engine.stats()
        assert (stats.sessions_started, stats.sessions_refused, stats.duplicate_starts) == (2, 1, 1)
        with trio.fail_after(10):
            await engine.wait_idle()
        no_credentials = SessionSpec(rtms_stream_id="other", signature_id="x",
                                     server_urls=sim.signaling_url)
        assert engine.start_session(no_credentials) is StartResult.REFUSED
        events = _drain(subscription)
    assert engine.outcomes() == {"ended": 2}
    assert sim.counters.handshakes_ok == 2 * 2  # signaling + one media socket, per session
    refused = [e for e in events if type(e).__name__ == "SessionRefused"]
    assert [e.rtms_stream_id for e in refused] == [sim.sessions[2].rtms_stream_id, "other"]
    assert "max_sessions" in refused[0].reason and "client_secret" in refused[1].reason


async def test_graceful_shutdown_closes_every_session() -> None:
    cfg = SimConfig(sessions=3, participants=1, duration_s=30.0, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio", "transcript"), **FAST)
    async with run_simulator(cfg) as sim:
        async with Engine(settings) as engine:
            for i in range(3):
                engine.start_session(_spec(sim, i))
            sessions = engine.sessions()
            with trio.fail_after(5):
                while sum(len(s.participants()) for s in sessions) < 3:
                    await trio.sleep(0.02)
            with trio.fail_after(5):
                await engine.shutdown()
        assert sim.counters.stream_close_requests == 3
    assert engine.outcomes() == {"closed": 3}
    for s in sessions:
        assert s.outcome is not None and s.outcome.outcome == "closed"


async def test_every_keepalive_is_answered_in_time_on_every_socket() -> None:
    """Requests every 0.1 s on the signaling socket and on split media sockets, with audio
    and transcripts flowing: the simulator gets an answer to each within its 1 s bound,
    none is left unanswered, and only the last ones are in flight when the streams end."""
    cfg = SimConfig(sessions=3, participants=2, duration_s=2.5, keepalive_interval_s=0.1,
                    transcript_interval_ms=200)
    settings = EngineSettings(media_types=("audio", "transcript"), **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        for i in range(3):
            engine.start_session(_spec(sim, i))
        with trio.fail_after(10):
            await engine.wait_idle()
    c = sim.counters
    assert c.keepalives_sent >= 3 * 3 * 15  # signaling + two media sockets, per session
    assert c.keepalives_unanswered == 0 and c.keepalive_answers_late == 0
    assert c.keepalive_timeouts == 0 and c.keepalive_max_rtt_ms < 1000
    assert c.keepalive_answers + c.keepalives_in_flight_at_end == c.keepalives_sent
    assert c.keepalives_in_flight_at_end <= 3 * 3
    stats = engine.stats()
    assert stats.keepalives_answered >= c.keepalive_answers
    assert 0 < stats.keepalive_max_lag_ms < 1000  # the engine's side of the round trip


async def test_bad_signature_is_rejected_with_status() -> None:
    cfg = SimConfig(sessions=1, duration_s=1.0)
    async with run_simulator(cfg) as sim, Engine(EngineSettings(**FAST)) as engine:
        s = sim.sessions[0]
        engine.start_session(SessionSpec(rtms_stream_id=s.rtms_stream_id,
                                         signature_id=s.meeting_uuid,
                                         server_urls=sim.signaling_url, signature="00" * 32))
        session = engine.sessions()[0]
        with trio.fail_after(5):
            await engine.wait_idle()
    assert session.outcome is not None
    assert (session.outcome.outcome, session.outcome.status_code) == ("rejected", 15)


@pytest.mark.parametrize("product", ["session", "contact_center", "webinar"])
async def test_webhook_to_engine_for_each_product(product: str) -> None:
    """Signed webhooks (posted twice, as Zoom retries) start exactly one session per stream."""
    from rtms_fast.sim.webhook import send_webhook
    from rtms_fast.webhook import WebhookServer

    secret = "hook-secret"
    cfg = SimConfig(sessions=2, participants=1, duration_s=0.5, keepalive_interval_s=0.2,
                    product=product)
    settings = EngineSettings(media_types=("audio",), **FAST)
    async with run_simulator(cfg) as sim, Engine(
        settings, client_id=cfg.client_id, client_secret=cfg.client_secret
    ) as engine, trio.open_nursery() as nursery:
        server = WebhookServer(secret, engine.on_stream_change)
        port = await nursery.start(server.serve)
        url = f"http://127.0.0.1:{port}/"
        for session in sim.sessions:
            for _ in range(2):
                response = await send_webhook(url, sim.webhook_event(session), secret)
                assert response.status_code == 200
        response = await send_webhook(url, sim.webhook_event(sim.sessions[0]), "wrong")
        assert response.status_code == 401
        with trio.fail_after(10):
            await engine.wait_idle()
        nursery.cancel_scope.cancel()
    assert server.stats().duplicates == 2
    assert engine.stats().sessions_started == 2
    assert engine.outcomes() == {"ended": 2}


@pytest.mark.parametrize("native_ingest", [True, False])
async def test_resampled_float_output(native_ingest: bool) -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.4, keepalive_interval_s=0.2, seed=5)
    settings = EngineSettings(media_types=("audio",), output_sample_rate=48000,
                              output_dtype="float32", native_ingest=native_ingest, **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        subscription = engine.subscribe()
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(10):
            await engine.wait_idle()
        events = _drain(subscription)
    started = [e for e in events if isinstance(e, AudioStreamStarted)]
    assert [(e.sample_rate_hz, e.dtype) for e in started] == [(48000, "float32")]
    got = session.ring(str(participant_id(0))).read_copy()
    assert got.dtype == np.float32
    n_in = 16000 * 4 // 10
    assert abs(len(got) - 3 * n_in) <= 3 * 64  # up to the filter delay
    expected = _expected_pcm(5, 0, 0, 1, n_in).astype(np.float64) / 32768.0
    rms_got = float(np.sqrt(np.mean(got.astype(np.float64) ** 2)))
    rms_expected = float(np.sqrt(np.mean(expected**2)))
    assert abs(rms_got / rms_expected - 1.0) < 0.05
    assert float(np.max(np.abs(got))) <= 1.0


@pytest.mark.parametrize("native_ingest", [True, False])
async def test_participant_limit_and_memory_ceiling_drop_and_count(native_ingest: bool) -> None:
    cfg = SimConfig(sessions=1, participants=3, duration_s=0.2, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), max_participants_per_session=2,
                              native_ingest=native_ingest, **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(10):
            await engine.wait_idle()
    stats = session.stats()
    assert stats.participants == 2
    assert stats.drops.get("too_many_participants", 0) > 0
    assert engine.stats().drops.get("too_many_participants", 0) > 0

    tiny = EngineSettings(media_types=("audio",), ring_memory_ceiling_bytes=4096,
                          native_ingest=native_ingest, **FAST)
    async with run_simulator(cfg) as sim, Engine(tiny) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(10):
            await engine.wait_idle()
    stats = session.stats()
    assert stats.participants == 0
    assert sum(stats.drops.values()) > 0
    assert session.outcome is not None and session.outcome.outcome == "ended"


@pytest.mark.parametrize("native_ingest", [True, False])
async def test_mixed_stream_lands_in_one_ring(native_ingest: bool) -> None:
    from rtms_fast.sim import MixedAudioSource

    cfg = SimConfig(sessions=1, participants=2, duration_s=0.3, keepalive_interval_s=0.2,
                    data_opt=1, seed=9)
    settings = EngineSettings(media_types=("audio",), audio_data_opt="mixed",
                              native_ingest=native_ingest, **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(10):
            await engine.wait_idle()
    assert [key for key, _, _ in session.participants()] == ["mixed"]
    got = session.ring("mixed").read_copy()
    assert len(got) == 4800
    np.testing.assert_array_equal(got, MixedAudioSource(9, 0, 2).pcm(0, 4800))


@pytest.mark.parametrize(
    ("native_ingest", "policy"),
    [(True, "drop_oldest"), (True, "backpressure"), (False, "drop_newest"), (False, "drop_oldest")],
)
async def test_ring_overflow_is_counted(native_ingest: bool, policy: str) -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.3, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), ring_capacity_ms=60,
                              overflow_policy=policy,  # type: ignore[arg-type]
                              native_ingest=native_ingest, **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(10):
            await engine.wait_idle()
    ring = session.ring(str(participant_id(0)))
    capacity = ring.capacity
    assert capacity < 4800
    stats = session.stats()
    assert stats.drops["ring_overflow"] == 4800 - capacity
    assert ring.available == capacity
    kept = ring.read_copy()
    full = _expected_pcm(0, 0, 0, 1, 4800)
    expected = full[-capacity:] if policy == "drop_oldest" else full[:capacity]
    np.testing.assert_array_equal(kept, expected)
    assert engine.stats().drops["ring_overflow"] == 4800 - capacity


@pytest.mark.parametrize(("native_ingest", "content"), [(True, "rtp"), (False, "raw")])
async def test_g722_is_decoded_exactly(native_ingest: bool, content: str) -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.3, keepalive_interval_s=0.2,
                    seed=4)
    settings = EngineSettings(media_types=("audio",), audio_codec_preferences=("g722",),
                              audio_content_type=content,  # type: ignore[arg-type]
                              native_ingest=native_ingest, **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(10):
            await engine.wait_idle()
    got = session.ring(str(participant_id(0))).read_copy()
    assert len(got) == 4800
    source = AudioSource(4, 0, 0, 3, 16000, content_type=2)
    encoded = b"".join(source.codec_bytes(k) for k in range(15))
    np.testing.assert_array_equal(got, codecs.G722Decoder().decode(encoded))


async def test_a_stream_where_nobody_talks_stays_up_and_ends_cleanly() -> None:
    """Zero participants: the media socket carries only keep-alives (an idle session)."""
    cfg = SimConfig(sessions=2, participants=0, duration_s=0.6, keepalive_interval_s=0.1)
    settings = EngineSettings(media_types=("audio",), **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        for index in range(2):
            engine.start_session(_spec(sim, index))
        with trio.fail_after(10):
            await engine.wait_idle()
    assert engine.outcomes() == {"ended": 2}
    finals = engine.finished_sessions()
    assert all(not f.participants for f in finals)
    assert all(f.keepalives_answered > 0 for f in finals)
    assert sim.counters.audio_frames_sent == 0


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_media_in_flight_at_the_stream_end_is_still_ingested(
    tls: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An engine behind the server (here: a receive arena of 3000 bytes a sweep) still has
    media in flight when the stream ends: closing waits for the server's close frame with
    the socket still read, so every frame sent before it lands in the rings."""
    import rtms_fast.pump as pump_module

    monkeypatch.setattr(pump_module, "_ARENA_BYTES", 3000)
    monkeypatch.setattr(pump_module, "_ARENA_MAX_PER_SOCKET", 3000)
    sessions = 20
    cfg = SimConfig(sessions=sessions, participants=1, duration_s=1.0, tls=tls,
                    keepalive_interval_s=0.2, seed=3)
    async with run_simulator(cfg) as sim:
        settings = EngineSettings(media_types=("audio",), audio_codec_preferences=("g711",),
                                  audio_sample_rate_hz=8000, audio_content_type="rtp",
                                  ca_file=sim.ca_file if tls else None,
                                  **{**FAST, "close_timeout_s": 3.0})  # type: ignore[arg-type]
        async with Engine(settings) as engine:
            for index in range(sessions):
                engine.start_session(_spec(sim, index))
            started = engine.sessions()
            with trio.fail_after(20):
                await engine.wait_idle()
    assert engine.outcomes() == {"ended": sessions}
    for index, session in enumerate(started):
        got = session.ring(str(participant_id(0))).read_copy()
        assert len(got) == 8000, index
        np.testing.assert_array_equal(got, _expected_pcm(3, index, 0, 2, len(got)))
