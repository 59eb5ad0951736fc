"""Resident memory per session: the engine in this process, the simulator in another.

200 sessions are joined, either idle (nobody talks: the sockets carry keep-alives only)
or with 20 ms G.711/RTP audio; once every session streams (and, with audio, after 6 s of
media) the growth of this process's resident set, divided by the sessions, is recorded
with and without the rings' own memory (``ring_memory_bytes``: their capacity is a
setting). TLS state is extra: the wss cases show how much. The idle cases also measure the
CPU an idle session costs (keep-alives every 5 s on every socket, as in the load runs),
in microseconds of this process's CPU per session per second.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from _joined_engine import (
    CLIENT_ID,
    CLIENT_SECRET,
    cpu_seconds,
    join_all,
    measure_in_child,
    pcma_engine_settings,
    pcma_simulator_args,
    simulator,
)
from rtms_fast import Engine
from rtms_fast.stats import MediaCounters

SESSIONS = 200
_IDLE_WINDOW_S = 4.0
_NO_MEDIA = MediaCounters(messages=0, bytes=0)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _measure(tls: bool, idle: bool, tmp: Path) -> dict[str, Any]:
    ca = tmp / "ca.pem"
    with simulator(SESSIONS, *pcma_simulator_args(12, 0 if idle else 1, tls, ca)) as payloads:
        settings = pcma_engine_settings(SESSIONS, ca_file=str(ca) if tls else None)
        out: dict[str, Any] = {}

        async def main() -> None:
            async with Engine(settings, client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET) as engine:
                await trio.sleep(0.3)
                base = _rss_bytes()
                await join_all(engine, payloads)
                await trio.sleep(1 if idle else 6)
                gc.collect()
                stats = engine.stats()
                growth = _rss_bytes() - base
                out.update(
                    sessions=SESSIONS, tls=tls, idle=idle, rss_growth_bytes=growth,
                    ring_memory_bytes=stats.ring_memory_bytes,
                    per_session_bytes=round(growth / SESSIONS),
                    per_session_excluding_rings=round(
                        (growth - stats.ring_memory_bytes) / SESSIONS),
                    audio_messages=stats.media.get("audio", _NO_MEDIA).messages,
                )
                if idle:  # background CPU: keep-alives, the sweep, timers
                    cpu0, wall0 = cpu_seconds(), time.monotonic()
                    await trio.sleep(_IDLE_WINDOW_S)
                    cpu_s, wall_s = cpu_seconds() - cpu0, time.monotonic() - wall0
                    out.update(idle_cpu_us_per_session_s=round(
                        cpu_s / wall_s / SESSIONS * 1e6, 1))
                for session in engine.sessions():
                    session.close()

        trio.run(main)
        return out


def _measure_in_child(tls: bool, idle: bool, tmp: Path) -> dict[str, Any]:
    """Each case in a fresh interpreter: memory freed by an earlier case stays in this
    process's allocators and would be reused, understating the growth."""
    return measure_in_child(__file__, json.dumps([tls, idle, str(tmp)]), what="memory")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("idle", [True, False], ids=["idle", "audio"])
def test_memory_per_session(benchmark: Any, tls: bool, idle: bool, tmp_path: Path) -> None:
    benchmark.group = "memory-per-session"
    result = benchmark.pedantic(_measure_in_child, args=(tls, idle, tmp_path), rounds=1,
                                iterations=1)
    benchmark.extra_info.update(result)
    if idle:
        assert result["audio_messages"] == 0 and result["ring_memory_bytes"] == 0
        assert result["idle_cpu_us_per_session_s"] > 0
    else:
        assert result["audio_messages"] > 0
    print(json.dumps(result))


if __name__ == "__main__":
    tls_arg, idle_arg, tmp_arg = json.loads(sys.argv[1])
    print(json.dumps(_measure(tls_arg, idle_arg, Path(tmp_arg))))
