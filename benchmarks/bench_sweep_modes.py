"""The media pump's two ways of finding sockets, compared inside one run.

Sessions against the simulator in another process; the engine here. The pump alternates
between sweeps that ask epoll which sockets are ready and sweeps that read every socket
without asking (``MediaPump.poll_free_mode`` "never" / "always") every half second, and
adds up each way's sweep time and bytes. Alternating within one run cancels the drift of
this machine's speed, which moves whole runs by more than the difference measured. The
figure is sweep time per byte received, each way, and their ratio (above 1: reading
without asking is cheaper). A sweep's time is its wall time, which is its CPU time unless
the kernel preempts it.

Sizes: ``RTMS_BENCH_SWEEP_SESSIONS`` (default 200) and ``RTMS_BENCH_SWEEP_SECONDS`` (default
8, measured after every session streams), e.g. 1000 and 20 for the README's figures.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from _joined_engine import (
    CLIENT_ID,
    CLIENT_SECRET,
    join_all,
    measure_in_child,
    pcma_engine_settings,
    pcma_simulator_args,
    simulator,
)
from rtms_fast import Engine
from rtms_fast.tls import native_tls_available

SESSIONS = int(os.environ.get("RTMS_BENCH_SWEEP_SESSIONS", "200"))
SECONDS = float(os.environ.get("RTMS_BENCH_SWEEP_SECONDS", "8"))
WINDOW_S = 0.5


def _measure(tls: bool, sweep_ms: int, tmp: Path) -> dict[str, Any]:
    ca = tmp / "ca.pem"
    with simulator(SESSIONS, *pcma_simulator_args(SECONDS + 60, 1, tls, ca)) as payloads:
        settings = pcma_engine_settings(SESSIONS, sweep_interval_ms=sweep_ms,
                                        ca_file=str(ca) if tls else None)
        totals = {mode: {"seconds": 0.0, "bytes": 0, "sweeps": 0, "poll_free_sweeps": 0}
                  for mode in ("never", "always")}

        async def main() -> None:
            async with Engine(settings, client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET) as engine:
                await join_all(engine, payloads)
                pump = engine.pump
                assert pump is not None
                await trio.sleep(1.0)
                windows = max(2, round(SECONDS / WINDOW_S))
                for k in range(windows):
                    mode = ("never", "always")[k % 2]
                    pump.poll_free_mode = mode
                    await trio.sleep(0)  # the switch takes effect from the next sweep
                    stats = pump.stats
                    before = (stats.sweep_seconds, stats.bytes, stats.sweeps,
                              stats.poll_free_sweeps)
                    await trio.sleep(WINDOW_S)
                    total = totals[mode]
                    total["seconds"] += stats.sweep_seconds - before[0]
                    total["bytes"] += stats.bytes - before[1]
                    total["sweeps"] += stats.sweeps - before[2]
                    total["poll_free_sweeps"] += stats.poll_free_sweeps - before[3]
                pump.poll_free_mode = "auto"
                for session in engine.sessions():
                    session.close()

        trio.run(main)
    epoll, free = totals["never"], totals["always"]
    epoll_ns = epoll["seconds"] / max(1, epoll["bytes"]) * 1e9
    free_ns = free["seconds"] / max(1, free["bytes"]) * 1e9
    return {"sessions": SESSIONS, "tls": tls, "sweep_ms": sweep_ms,
            "epoll_ns_per_byte": round(epoll_ns, 3), "poll_free_ns_per_byte": round(free_ns, 3),
            "epoll_over_poll_free": round(epoll_ns / free_ns, 3) if free_ns else 0.0,
            "epoll": epoll, "poll_free": free}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the native sweep: Linux")
@pytest.mark.parametrize("sweep_ms", [20, 100])
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
def test_poll_free_sweeps_against_epoll_sweeps(benchmark: Any, tls: bool, sweep_ms: int,
                                               tmp_path: Path) -> None:
    if tls and not native_tls_available():
        pytest.skip("built without OpenSSL")
    benchmark.group = "sweep-modes"
    result = benchmark.pedantic(
        measure_in_child, args=(__file__, json.dumps([tls, sweep_ms, str(tmp_path)])),
        kwargs={"what": "sweep modes"}, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    epoll, free = result["epoll"], result["poll_free"]
    assert epoll["bytes"] > 0 and free["bytes"] > 0
    assert epoll["poll_free_sweeps"] == 0  # each way was the one measured
    assert free["poll_free_sweeps"] == free["sweeps"] > 0
    print(json.dumps(result))


if __name__ == "__main__":
    tls_arg, sweep_arg, tmp_arg = json.loads(sys.argv[1])
    print(json.dumps(_measure(tls_arg, sweep_arg, Path(tmp_arg))))
