"""End-to-end load: the simulator in its own process, each client in another.

Per run: client CPU per audio message and cores used in the steady state, messages
received versus sent, drops, added latency p50/p99 (sender timestamp to readable,
same machine clock) and the simulator's schedule misses. Clients at the same load,
one after another: rtms-fast's engine, the naive trio + trio-websocket client (a
task per socket) and the official Zoom SDK (one process per session, the only way it
runs safely). Ratios are the naive or SDK CPU per message over the engine's.

These are small loads so the suite stays quick; `rtms-fast bench load --sessions
100,500,1000,2000` and `rtms-fast bench compare` run the full ramps.
"""

from __future__ import annotations

import platform
from typing import Any

import pytest

from rtms_fast.bench.load import LoadResult, run_load

_results: dict[str, LoadResult] = {}


def _run(benchmark: Any, key: str, **kwargs: Any) -> LoadResult:
    result: LoadResult = benchmark.pedantic(run_load, kwargs=kwargs, rounds=1, iterations=1)
    _results[key] = result
    benchmark.extra_info.update(result.as_dict())
    assert result.messages_sent > 0, result.as_dict()
    if kwargs["client"] == "engine":
        # Ours must take everything; the baselines are measured, not judged (the naive
        # client falls behind and loses the tail of each stream when the CPU is short).
        assert result.messages_received == result.messages_sent, result.as_dict()
        assert result.errors == 0, result.as_dict()
    return result


@pytest.mark.parametrize("client", ["engine", "naive"])
def test_contact_center_profile(benchmark: Any, client: str) -> None:
    """2 participants per session, G.711 A-law over RTP at 8 kHz, 20 ms, 100 sessions."""
    benchmark.group = "load-contact-center-100x2"
    result = _run(benchmark, f"cc-{client}", client=client, sessions=100, participants=2,
                  duration_s=5.0, codec="pcma")
    if client == "engine":
        assert result.drops == 0, result.as_dict()
    elif "cc-engine" in _results:
        benchmark.extra_info["ratio_naive_over_engine_us_per_msg"] = round(
            result.us_per_msg / _results["cc-engine"].us_per_msg, 2)


@pytest.mark.skipif(
    not (platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64")),
    reason="the official Zoom SDK ships x86-64 Linux wheels only",
)
@pytest.mark.parametrize("client", ["engine", "sdk", "naive"])
def test_side_by_side_with_official_sdk(benchmark: Any, client: str) -> None:
    """The same 20-session single-stream G.711 load through each client."""
    benchmark.group = "load-compare-20"
    result = _run(benchmark, f"cmp-{client}", client=client, sessions=20, duration_s=5.0,
                  codec="pcma")
    if client != "engine" and "cmp-engine" in _results:
        benchmark.extra_info["ratio_over_engine_us_per_msg"] = round(
            result.us_per_msg / _results["cmp-engine"].us_per_msg, 2)
