"""Engine CPU per audio message: the batched pump (native recv + native ingest) against one
Trio task per media socket, both measured in this run against the same simulator.

The simulator runs in its own process (``python -m rtms_fast simulate ... --stats``) with
3 x SESSIONS single-participant sessions of 20 ms G.711 A-law over RTP (the production
format). The engine runs in this process, one configuration at a time, each on its own
SESSIONS sessions: the anchor (``use_pump=False``, one task per socket, Python decode),
then the pump at a 20 ms and at a 100 ms sweep. After a warm-up, the CPU time of this
process (``time.process_time``: every thread, user + kernel) over a window is divided by
the audio messages the engine counted in that window. Reported in ``extra_info``:
``us_per_msg`` and, for the pump, ``ratio_vs_anchor`` (anchor us / pump us: higher is
better). Targets: <= 5 us (ws) and <= 12 us (wss) at 20 ms; <= 3 us (ws) and <= 6 us (wss)
at 100 ms. Knobs: RTMS_ENGINE_BENCH_SESSIONS (100), RTMS_ENGINE_BENCH_WINDOW_S (2.5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import trio

from rtms_fast.engine import Engine
from rtms_fast.session import SessionSpec
from rtms_fast.settings import EngineSettings

SESSIONS = int(os.environ.get("RTMS_ENGINE_BENCH_SESSIONS", "100"))
WINDOW_S = float(os.environ.get("RTMS_ENGINE_BENCH_WINDOW_S", "2.5"))
WARMUP_S = 0.5
CLIENT_ID, CLIENT_SECRET = "client", "secret"  # the simulator's defaults
#: (label, use_pump, sweep_interval_ms), measured in this order on consecutive session blocks
CONFIGS = (("task", False, 20), ("pump-20ms", True, 20), ("pump-100ms", True, 100))


@dataclass
class _Simulator:
    proc: subprocess.Popen[bytes]
    joins: list[dict[str, Any]]
    ca_file: str | None
    stderr: IO[bytes]


@dataclass(frozen=True)
class _Measured:
    messages: int
    cpu_s: float
    wall_s: float

    @property
    def us_per_msg(self) -> float:
        return self.cpu_s / max(1, self.messages) * 1e6


def _start_simulator(tmp: Path, tls: bool) -> _Simulator:
    total = SESSIONS * len(CONFIGS)
    duration_s = len(CONFIGS) * (WARMUP_S + WINDOW_S + 8.0) + 10.0
    cmd = [sys.executable, "-m", "rtms_fast", "simulate", "--sessions", str(total),
           "--participants", "1", "--codec", "pcma", "--send-rate", "20",
           "--duration", str(duration_s), "--join-timeout", str(duration_s),
           "--keepalive-interval", "5", "--stats"]
    ca_file = str(tmp / "ca.pem") if tls else None
    if ca_file is not None:
        cmd += ["--tls", "--ca-file", ca_file]
    stderr = (tmp / "sim.err").open("wb")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, cwd=tmp)
    assert proc.stdout is not None
    joins = []
    for _ in range(total):
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(f"simulator exited: {(tmp / 'sim.err').read_text()[-2000:]}")
        joins.append(json.loads(line)["payload"])
    return _Simulator(proc, joins, ca_file, stderr)


@pytest.fixture(scope="module", params=["ws", "wss"])
def simulator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[_Simulator]:
    sim = _start_simulator(tmp_path_factory.mktemp(f"engine-{request.param}"),
                           request.param == "wss")
    try:
        yield sim
    finally:
        sim.proc.kill()
        sim.proc.wait()
        if sim.proc.stdout is not None:
            sim.proc.stdout.close()
        sim.stderr.close()


def _measure(sim: _Simulator, block: int, use_pump: bool, sweep_ms: int) -> _Measured:
    settings = EngineSettings(
        use_pump=use_pump, sweep_interval_ms=sweep_ms, media_types=("audio",),
        audio_codec_preferences=("g711",), audio_sample_rate_hz=8000,
        audio_content_type="rtp", ca_file=sim.ca_file, handshake_timeout_s=30.0)
    joins = sim.joins[block * SESSIONS : (block + 1) * SESSIONS]
    result: list[_Measured] = []

    async def main() -> None:
        async with Engine(settings) as engine:
            for join in joins:
                engine.start_session(SessionSpec(
                    rtms_stream_id=join["rtms_stream_id"], signature_id=join["meeting_uuid"],
                    server_urls=join["server_urls"], client_id=CLIENT_ID,
                    client_secret=CLIENT_SECRET))

            def audio_messages() -> int:
                media = engine.stats().media.get("audio")
                return media.messages if media is not None else 0

            # warm up: every session joined and streaming at the full rate (joins cost far
            # more CPU than messages, so none may fall into the window), then a bit more
            full_rate = SESSIONS * 50  # one message per session every 20 ms
            with trio.move_on_after(30.0):
                while True:
                    before = audio_messages()
                    await trio.sleep(0.5)
                    if audio_messages() - before >= 0.95 * full_rate * 0.5:
                        break
            await trio.sleep(WARMUP_S)
            m0, c0, t0 = audio_messages(), time.process_time(), time.perf_counter()
            await trio.sleep(WINDOW_S)
            c1, t1 = time.process_time(), time.perf_counter()
            result.append(_Measured(audio_messages() - m0, c1 - c0, t1 - t0))
            for session in engine.sessions():
                engine.stop_session(session.rtms_stream_id)

    trio.run(main)
    return result[0]


_anchor_us: dict[str, float] = {}


@pytest.mark.parametrize(("block", "label"), [(i, c[0]) for i, c in enumerate(CONFIGS)])
def test_engine_cpu_per_message(benchmark: Any, simulator: _Simulator, block: int,
                                label: str) -> None:
    _, use_pump, sweep_ms = CONFIGS[block]
    transport = "wss" if simulator.ca_file else "ws"
    measured: list[_Measured] = []
    benchmark.pedantic(lambda: measured.append(_measure(simulator, block, use_pump, sweep_ms)),
                       rounds=1, iterations=1)
    m = measured[0]
    expected = SESSIONS * 50 * m.wall_s
    assert m.messages > 0.8 * expected, f"only {m.messages} of ~{expected:.0f} messages"
    benchmark.group = f"engine-{transport}"
    benchmark.extra_info.update(
        role="anchor" if not use_pump else "subject", transport=transport, sessions=SESSIONS,
        sweep_ms=sweep_ms if use_pump else 0, messages=m.messages,
        cpu_s=round(m.cpu_s, 4), us_per_msg=round(m.us_per_msg, 2))
    if not use_pump:
        _anchor_us[transport] = m.us_per_msg
    elif transport in _anchor_us:
        benchmark.extra_info["ratio_vs_anchor"] = round(_anchor_us[transport] / m.us_per_msg, 2)
    print(f"\n{transport} {label}: {m.us_per_msg:.2f} us/msg over {m.messages} messages")
