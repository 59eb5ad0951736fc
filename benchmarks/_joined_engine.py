"""What the engine-in-this-process benchmarks share: the simulator in a child process,
every one of its sessions joined by one Engine, CPU time, and a measurement run in a
fresh interpreter (memory an earlier case freed stays in the allocators and would be
reused; CPU an earlier case spent warms caches)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from rtms_fast import Engine, EngineSettings, SessionSpec

CLIENT_ID, CLIENT_SECRET = "client", "secret"


def cpu_seconds() -> float:
    """User + system CPU of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pcma_simulator_args(duration_s: float, participants: int, tls: bool,
                        ca_file: Path) -> list[str]:
    """``rtms-fast simulate`` arguments: G.711 A-law audio from ``participants`` per
    session, keep-alives every 5 s, wss with its CA written to ``ca_file`` if ``tls``."""
    args = ["--duration", str(duration_s), "--codec", "pcma", "--join-timeout", "60",
            "--participants", str(participants), "--keepalive-interval", "5"]
    if tls:
        args += ["--tls", "--ca-file", str(ca_file)]
    return args


def pcma_engine_settings(sessions: int, **overrides: Any) -> EngineSettings:
    """An engine for ``sessions`` of the simulator's G.711 A-law over RTP at 8 kHz (audio
    only, 1 s rings); ``overrides`` are further settings."""
    return EngineSettings(
        media_types=("audio",), audio_codec_preferences=("g711",), audio_sample_rate_hz=8000,
        audio_content_type="rtp", ring_capacity_ms=1000, max_sessions=sessions + 1,
        **overrides)


@contextmanager
def simulator(sessions: int, *args: str) -> Iterator[list[dict[str, Any]]]:
    """``rtms-fast simulate --sessions N args...`` in a child process; yields the
    webhook payloads of its sessions and kills it on the way out."""
    cmd = [sys.executable, "-m", "rtms_fast", "simulate", "--sessions", str(sessions),
           "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, *args]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert sim.stdout is not None
        yield [json.loads(sim.stdout.readline())["payload"] for _ in range(sessions)]
    finally:
        sim.kill()
        sim.wait()
        if sim.stdout is not None:
            sim.stdout.close()


async def join_all(engine: Engine, payloads: list[dict[str, Any]],
                   timeout_s: float = 60.0) -> None:
    """Start a session per payload and wait until every one streams."""
    for p in payloads:
        engine.start_session(SessionSpec(
            rtms_stream_id=p["rtms_stream_id"], signature_id=p["meeting_uuid"],
            server_urls=p["server_urls"], client_id=CLIENT_ID, client_secret=CLIENT_SECRET))
    with trio.fail_after(timeout_s):
        while engine.stats().sessions_by_state.get("streaming", 0) < len(payloads):
            await trio.sleep(0.1)


def measure_in_child(script: str, *args: str, what: str) -> dict[str, Any]:
    """Run ``python script args...``, which prints its result as its last line of JSON."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                          timeout=240, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} measurement failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
