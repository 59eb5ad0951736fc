"""Engine CPU per keep-alive answered, signaling socket against media socket.

150 idle sessions (nobody talks) against the simulator in another process, which sends
keep-alive requests every 0.5 s on one kind of socket only (``--keepalive-sockets``).
The anchor is the same engine with no keep-alives at all, measured in the same run: a
case's figure is its extra CPU over the anchor's, divided by the keep-alives answered.
The signaling answer is written beneath trio-websocket (``rtms_fast.signaling_stream``) from
the pump's sweep, which reads (and over TLS decrypts) the signaling socket too; the media
answer is written from the pump's sweep as well.
Each case runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import sys
import time
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
    simulator,
)
from rtms_fast import Engine

SESSIONS = 150
INTERVAL_S = 0.5
WINDOW_S = 5.0
GROUP = "keepalive-cpu"


def _measure(which: str) -> dict[str, Any]:
    """which: "none" (the anchor), "signaling" or "media"."""
    interval = 3600.0 if which == "none" else INTERVAL_S
    with simulator(SESSIONS, "--duration", str(WINDOW_S + 40), "--codec", "pcma",
                   "--join-timeout", "60", "--participants", "0",
                   "--keepalive-interval", str(interval),
                   "--keepalive-sockets", "all" if which == "none" else which) as payloads:
        settings = pcma_engine_settings(SESSIONS, keepalive_timeout_s=120.0)
        out: dict[str, Any] = {}

        async def main() -> None:
            async with Engine(settings, client_id=CLIENT_ID,
                              client_secret=CLIENT_SECRET) as engine:
                await join_all(engine, payloads)
                await trio.sleep(1.5)
                answered0, cpu0 = engine.stats().keepalives_answered, cpu_seconds()
                wall0 = time.monotonic()
                await trio.sleep(WINDOW_S)
                answered = engine.stats().keepalives_answered - answered0
                out.update(which=which, sessions=SESSIONS, keepalives=answered,
                           cpu_s=cpu_seconds() - cpu0, wall_s=time.monotonic() - wall0)
                for session in engine.sessions():
                    session.close()

        trio.run(main)
        return out


def _measure_in_child(which: str) -> dict[str, Any]:
    return measure_in_child(__file__, which, what="keep-alive")


@pytest.fixture(scope="module")
def anchor() -> dict[str, Any]:
    result = _measure_in_child("none")
    assert result["keepalives"] == 0
    return result


@pytest.mark.parametrize("which", ["signaling", "media"])
def test_cpu_per_keepalive(benchmark: Any, anchor: dict[str, Any], which: str) -> None:
    benchmark.group = GROUP
    result = benchmark.pedantic(_measure_in_child, args=(which,), rounds=1, iterations=1)
    # about one per socket of that kind per interval, over the window
    assert result["keepalives"] >= SESSIONS * WINDOW_S / INTERVAL_S * 0.8
    idle_rate = anchor["cpu_s"] / anchor["wall_s"]
    extra = result["cpu_s"] - idle_rate * result["wall_s"]
    result.update(anchor_cpu_cores=round(idle_rate, 4),
                  cpu_us_per_keepalive=round(extra / result["keepalives"] * 1e6, 1))
    benchmark.extra_info.update(result)
    print(json.dumps(result))


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1])))
