"""Consumers and sinks: WAV per participant, JSONL events, async/thread readers, the CLI."""

from __future__ import annotations

import json
import wave
from functools import partial
from pathlib import Path

import msgspec
import numpy as np
import pytest
import trio

from rtms_fast.cli import main
from rtms_fast.consumers import audio_chunks, read_audio_blocking
from rtms_fast.engine import Engine
from rtms_fast.events import (
    EventBroadcaster,
    ParticipantJoined,
    SessionStateChanged,
)
from rtms_fast.session import SessionSpec
from rtms_fast.settings import EngineSettings
from rtms_fast.sim import AudioSource, SimConfig, Simulator, participant_id, run_simulator
from rtms_fast.sinks import EngineRecorder, safe_name

FAST = {"handshake_timeout_s": 2.0, "close_timeout_s": 0.5, "shutdown_timeout_s": 2.0}


def _spec(sim: Simulator, index: int = 0) -> SessionSpec:
    s = sim.sessions[index]
    return SessionSpec(rtms_stream_id=s.rtms_stream_id, signature_id=s.meeting_uuid,
                       server_urls=sim.signaling_url, client_id=sim.config.client_id,
                       client_secret=sim.config.client_secret)


async def test_recorder_writes_exact_wav_and_jsonl(tmp_path: Path) -> None:
    cfg = SimConfig(sessions=1, participants=2, duration_s=0.4, keepalive_interval_s=0.2,
                    transcript_interval_ms=100, seed=11)
    settings = EngineSettings(media_types=("audio", "transcript"), **FAST)
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        recorder = EngineRecorder(engine, tmp_path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder.run)
            engine.start_session(_spec(sim))
            with trio.fail_after(10):
                await engine.wait_idle()
            await engine.shutdown()
    stream_dir = tmp_path / safe_name(sim.sessions[0].rtms_stream_id)
    for p in range(2):
        with wave.open(str(stream_dir / f"{participant_id(p)}.wav"), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert len(data) == 16000 * 4 // 10
        np.testing.assert_array_equal(data, AudioSource(11, 0, p).pcm(0, len(data)))
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["type"] == "SessionStateChanged"
    assert records[-1]["type"] == "StreamStopped"
    assert sum(r["type"] == "TranscriptReceived" for r in records) >= 1
    assert recorder.jsonl_lines == len(lines)


async def test_async_and_thread_readers_see_all_audio() -> None:
    cfg = SimConfig(sessions=1, participants=1, duration_s=0.3, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), **FAST)
    got_async: list[np.ndarray] = []
    got_thread: list[np.ndarray] = []
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(5):
            while not session.participants():
                await trio.sleep(0.01)
        key = session.participants()[0][0]

        async def consume() -> None:
            async for chunk in audio_chunks(session, key, min_samples=1600):
                got_async.append(chunk)

        with trio.fail_after(10):
            await consume()
    assert sum(len(c) for c in got_async) == 4800
    assert all(len(c) >= 1600 for c in got_async[:-1])
    np.testing.assert_array_equal(np.concatenate(got_async), AudioSource(0, 0, 0).pcm(0, 4800))

    # the same from a worker thread, on a second run
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim))
        session = engine.sessions()[0]
        with trio.fail_after(5):
            while not session.participants():
                await trio.sleep(0.01)
        key = session.participants()[0][0]

        def worker() -> None:
            while True:
                chunk = read_audio_blocking(session, key, 3200, timeout_s=5)
                if len(chunk) == 0 and session.finished.is_set():
                    return
                got_thread.append(chunk)

        with trio.fail_after(10):
            await trio.to_thread.run_sync(worker)
    np.testing.assert_array_equal(np.concatenate(got_thread), AudioSource(0, 0, 0).pcm(0, 4800))


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest"])
async def test_event_queue_overflow_is_bounded_and_counted(overflow: str) -> None:
    broadcaster = EventBroadcaster(max_queued=3, overflow=overflow)  # type: ignore[arg-type]
    subscription = broadcaster.subscribe()
    events = [ParticipantJoined(rtms_stream_id="s", received_at_ms=i, user_id=i, user_name="u",
                                timestamp_ms=None) for i in range(5)]
    for event in events:
        broadcaster.publish(event)
    broadcaster.publish(SessionStateChanged(rtms_stream_id="s", received_at_ms=9,
                                            previous="a", state="b"))
    broadcaster.close()
    got = [e async for e in subscription]
    assert subscription.statistics().dropped == 3
    assert broadcaster.dropped == 3
    if overflow == "drop_oldest":
        assert [e.received_at_ms for e in got] == [3, 4, 9]
    else:
        assert [e.received_at_ms for e in got] == [0, 1, 2]
    late = broadcaster.subscribe()
    assert [e async for e in late] == []
    assert msgspec.json.decode(msgspec.json.encode(events[0]))["type"] == "ParticipantJoined"


def test_cli_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--sessions", "2", "--participants", "2", "--duration", "0.5",
                 "--json", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["outcomes"] == {"ended": 2}
    assert len(summary["wav_files"]) == 4
    assert summary["webhooks"]["stream_changes"] == 2
    assert all(Path(p).stat().st_size > 44 for p in summary["wav_files"])


def test_cli_join_records_one_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rtms-fast join` against a simulator running in another thread (its own Trio loop)."""
    import threading

    cfg = SimConfig(sessions=1, participants=1, duration_s=0.4, keepalive_interval_s=0.1)
    ready = threading.Event()
    stop = threading.Event()
    found: dict[str, object] = {}

    async def serve() -> None:
        async with run_simulator(cfg) as sim:
            found["body"] = sim.webhook_event(sim.sessions[0])
            ready.set()
            while not stop.is_set():
                await trio.sleep(0.02)

    thread = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    thread.start()
    try:
        assert ready.wait(5)
        code = main(["join", json.dumps(found["body"]), "--client-id", "client",
                     "--client-secret", "secret", "--media", "audio,transcript",
                     "--out", str(tmp_path), "--duration", "5"])
    finally:
        stop.set()
        thread.join(5)
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads(out)
    assert summary["outcome"]["outcome"] == "ended"
    assert summary["session"]["media"]["audio"]["messages"] == 20
    (wav_path,) = summary["wav_files"].values()
    with wave.open(wav_path, "rb") as w:
        assert w.getnframes() == 6400


def test_cli_join_rejects_incomplete_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["join", "--server-urls", "ws://127.0.0.1:1/x"]) == 2
    assert "missing" in capsys.readouterr().err


async def test_route_audio_calls_back_per_participant() -> None:
    from rtms_fast.consumers import route_audio

    cfg = SimConfig(sessions=2, participants=2, duration_s=0.3, keepalive_interval_s=0.2)
    settings = EngineSettings(media_types=("audio",), **FAST)
    received: dict[tuple[str, str], int] = {}

    async def on_chunk(session: object, participant: str, chunk: np.ndarray) -> None:
        key = (session.rtms_stream_id, participant)  # type: ignore[attr-defined]
        received[key] = received.get(key, 0) + len(chunk)
        if participant == str(participant_id(1)):
            raise RuntimeError("a consumer bug stays in its own task")

    async with run_simulator(cfg) as sim, Engine(settings) as engine, trio.open_nursery() as n:
        n.start_soon(route_audio, engine, on_chunk)
        await trio.sleep(0)
        for i in range(2):
            engine.start_session(_spec(sim, i))
        with trio.fail_after(10):
            await engine.wait_idle()
            await engine.shutdown()
    assert len(received) == 4
    for (_, participant), samples in received.items():
        if participant == str(participant_id(0)):
            assert samples == 4800
        else:
            assert 0 < samples <= 4800


async def _consume_batches(engine: Engine, got: dict[tuple[str, str], list[np.ndarray]],
                           labels: list[tuple[tuple[str, str], ...]], **kwargs: object) -> None:
    from rtms_fast.consumers import audio_batches

    async for batch in audio_batches(engine, 0.02, **kwargs):  # type: ignore[arg-type]
        assert len(batch) == int(batch.counts.sum()) > 0
        labels.append(batch.labels)
        for stream_id, participant, samples in batch.chunks():
            got.setdefault((stream_id, participant), []).append(samples.copy())


async def test_audio_batches_bring_every_participant_of_every_session() -> None:
    cfg = SimConfig(sessions=3, participants=2, duration_s=0.3, keepalive_interval_s=0.2, seed=5)
    settings = EngineSettings(media_types=("audio",), **FAST)
    got: dict[tuple[str, str], list[np.ndarray]] = {}
    labels: list[tuple[tuple[str, str], ...]] = []
    async with run_simulator(cfg) as sim, Engine(settings) as engine:
        engine.start_session(_spec(sim, 0))  # already running: found by listing the sessions
        with trio.fail_after(5):
            while not engine.sessions()[0].participants():
                await trio.sleep(0.01)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_consume_batches, engine, got, labels)
            for i in (1, 2):
                engine.start_session(_spec(sim, i))
            with trio.fail_after(10):
                await engine.wait_idle()
            await engine.shutdown()  # ends the batches
    assert len(got) == 6
    for i in range(3):
        for p in range(2):
            key = (sim.sessions[i].rtms_stream_id, str(participant_id(p)))
            np.testing.assert_array_equal(np.concatenate(got[key]),
                                          AudioSource(5, i, p).pcm(0, 4800), err_msg=str(key))


@pytest.mark.parametrize("max_queued", [None, 1], ids=["events", "full-queue-rescan"])
async def test_audio_batches_retire_ended_sessions_and_reuse_one_buffer(
        max_queued: int | None) -> None:
    cfg = SimConfig(sessions=4, participants=1, duration_s=0.2, keepalive_interval_s=0.2, seed=6)
    settings = EngineSettings(media_types=("audio",), **FAST)
    got: dict[tuple[str, str], list[np.ndarray]] = {}
    labels: list[tuple[tuple[str, str], ...]] = []
    async with run_simulator(cfg) as sim, Engine(settings) as engine, \
            trio.open_nursery() as nursery:
        nursery.start_soon(partial(_consume_batches, engine, got, labels, reuse_buffer=True,
                                   max_queued=max_queued))
        await trio.sleep(0)
        first = {sim.sessions[i].rtms_stream_id for i in (0, 1)}
        for i in (0, 1):
            engine.start_session(_spec(sim, i))
        with trio.fail_after(10):
            await engine.wait_idle()
        await trio.sleep(0.1)  # a few empty intervals: the ended rings are retired
        seen_first = len(labels)
        for i in (2, 3):
            engine.start_session(_spec(sim, i))
        with trio.fail_after(10):
            await engine.wait_idle()
        await engine.shutdown()
    for i in range(4):
        key = (sim.sessions[i].rtms_stream_id, str(participant_id(0)))
        np.testing.assert_array_equal(np.concatenate(got[key]), AudioSource(6, i, 0).pcm(0, 3200))
    later = labels[seen_first:]
    assert later and all(stream_id not in first for batch in later for stream_id, _ in batch)


async def test_audio_batches_refuse_a_non_positive_interval() -> None:
    from rtms_fast.consumers import audio_batches

    async with Engine(EngineSettings(**FAST)) as engine:
        with pytest.raises(ValueError, match="interval_s"):
            await audio_batches(engine, 0).__anext__()


async def test_engine_rings_read_nothing_before_any_audio() -> None:
    from rtms_fast.consumers import EngineRings

    async with Engine(EngineSettings(**FAST)) as engine:
        rings = EngineRings(engine)
        assert not rings.follow(engine.subscribe())
        batch = rings.read()
        assert len(batch) == 0 and batch.labels == () and list(batch.chunks()) == []
