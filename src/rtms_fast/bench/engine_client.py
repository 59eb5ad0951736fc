"""The rtms-fast engine as a load-test client (used by ``client_proc engine``).

Joins every stream with one ``Engine`` and drains every participant ring every
``drain_interval_ms`` the way an ASR worker serving many streams would: one
``EngineRings`` read copies out every ring's new audio in one native call.
Messages are counted from the samples drained (one message is one frame of
``send_rate_ms``), which costs nothing per message; the exact count comes
from the engine's stats at the end. Latency is sampled every
``latency_every_s`` on a rotating tenth of the sessions: receiver clock minus
the sender's timestamp of the newest message ingested for each participant.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from rtms_fast.bench.sampler import CounterSampler
from rtms_fast.consumers import EngineRings
from rtms_fast.engine import Engine
from rtms_fast.protocol.webhook import Product
from rtms_fast.session import SessionSpec
from rtms_fast.settings import EngineSettings

_CODECS: dict[str, tuple[str, int, str]] = {
    # bench codec name: (engine codec preference, request rate Hz, content type)
    "pcma": ("g711", 8000, "rtp"),
    "g722": ("g722", 16000, "rtp"),
    "l16": ("l16", 16000, "raw"),
}


def run_engine_load(
    payloads: list[dict[str, Any]],
    *,
    client_id: str,
    client_secret: str,
    codec: str,
    send_rate_ms: int,
    ca_file: str | None,
    sweep_interval_ms: float,
    deadline_s: float,
    latency_every_s: float = 0.25,
    drain_interval_ms: float = 100.0,
    tls_backend: str = "native",
) -> dict[str, Any]:
    pref, rate, content_type = _CODECS[codec]
    samples_per_message = rate * send_rate_ms // 1000
    settings = EngineSettings(
        media_types=("audio",), audio_codec_preferences=(pref,), audio_sample_rate_hz=rate,
        audio_content_type=content_type, audio_send_rate_ms=send_rate_ms,  # type: ignore[arg-type]
        sweep_interval_ms=int(sweep_interval_ms), ca_file=ca_file,
        max_sessions=len(payloads) + 16, ring_capacity_ms=2000,
        tls_backend=tls_backend,  # type: ignore[arg-type]
    )
    messages = [0]
    latencies: list[float] = []
    drained = [0]

    def audio_messages(engine: Engine) -> int:
        return int(engine.stats().media.get("audio", _Zero).messages)

    async def main() -> dict[str, Any]:
        async with Engine(settings, client_id=client_id, client_secret=client_secret) as engine:
            subscription = engine.subscribe(max_queued=64 * len(payloads) + 1024)
            rings = EngineRings(engine)  # every ring joins as its participant's audio starts
            consumer_cpu = [0.0]  # thread CPU of the consumer's code: the application's share

            async def drain() -> None:
                next_latency = time.monotonic()
                samples_taken = 0
                samples_per_drain = int(rate * drain_interval_ms / 1000) + 1
                buffer: npt.NDArray[Any] = np.empty(0)
                while True:
                    await trio.sleep(drain_interval_ms / 1000.0)
                    started = time.thread_time()
                    rings.follow(subscription)
                    group = rings.group
                    if group is not None:
                        # one buffer, reused: room for two intervals of every ring
                        need = 2 * len(group) * samples_per_drain
                        if buffer.shape[0] < need or buffer.dtype != group.dtype:
                            buffer = np.empty(need, group.dtype)
                        drained[0] += len(rings.read(buffer))
                    messages[0] = drained[0] // samples_per_message
                    now = time.monotonic()
                    if now >= next_latency:  # a rotating tenth of the sessions per sample
                        next_latency = now + latency_every_s
                        now_ms = time.time() * 1000.0
                        for session in engine.sessions()[samples_taken % 10 :: 10]:
                            latencies.extend(now_ms - t for t in
                                             session.latest_audio_timestamps_ms())
                        samples_taken += 1
                    consumer_cpu[0] += time.thread_time() - started

            for p in payloads:
                engine.start_session(SessionSpec(
                    rtms_stream_id=p["rtms_stream_id"], signature_id=p["meeting_uuid"],
                    server_urls=p["server_urls"], product=Product.MEETING,
                    client_id=client_id, client_secret=client_secret))
            sampler = CounterSampler(lambda: messages[0], consumer_cpu=lambda: consumer_cpu[0])
            sampler.start()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                with trio.move_on_after(deadline_s):
                    await engine.wait_idle()
                nursery.cancel_scope.cancel()
            drained[0] += len(rings.read())  # what arrived after the last drain
            messages[0] = audio_messages(engine)
            sampler.stop()
            stats = engine.stats()
            return {
                "messages": messages[0], "samples": drained[0],
                "errors": sum(n for outcome, n in engine.outcomes().items()
                              if outcome != "ended"),
                "outcomes": engine.outcomes(),
                "sessions_ended": stats.sessions_finished,
                "keepalives_answered": stats.keepalives_answered,
                "keepalive_max_lag_ms": stats.keepalive_max_lag_ms,
                "drops": sum(stats.drops.values()),
                "drops_by_reason": dict(stats.drops),
                "pump_max_sweep_lag_ms": stats.pump_max_sweep_lag_ms,
                "pump_late_sweeps": stats.pump_late_sweeps,
                "pump_empty_reads": stats.pump_empty_reads,
                "pump_ack_rearms": stats.pump_ack_rearms,
                "pump_recv_cpu_s": stats.pump_recv_cpu_s,
                "cpu_samples": sampler.samples, "latencies_ms": latencies,
            }

    return trio.run(main)


class _Zero:
    messages = 0
