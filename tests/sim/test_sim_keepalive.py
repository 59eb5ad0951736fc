"""Keep-alive requests on every socket, and the close of sockets that stop answering."""

from __future__ import annotations

import json

import pytest
import trio

from conftest import (
    fast_config,
    handshaken,
    media_handshake,
    recv_until,
    signaling_handshake,
    ws_connect,
)
from rtms_fast.sim import run_simulator


async def test_keepalive_sequence_on_every_socket() -> None:
    config = fast_config(keepalive_interval_s=0.05, media_timeout_s=1, signaling_timeout_s=1)
    async with run_simulator(config) as sim:
        async with handshaken(sim) as (_, sig, media):
            for ws in (sig, media):
                seqs = []
                for _ in range(3):
                    ka = await recv_until(ws, 12)
                    assert isinstance(ka["timestamp"], int) and ka["timestamp"] > 1.7e12
                    seqs.append(ka["sequence"])
                    await ws.send_message(json.dumps({"msg_type": 13, "sequence": ka["sequence"],
                                                      "timestamp": ka["timestamp"]}))
                assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
            await trio.sleep(0.2)
        assert sim.counters.keepalive_timeouts == 0
        assert sim.counters.keepalive_answers >= 6


async def _requests_seen(ws: object, seconds: float) -> int:
    """Keep-alive requests that arrive on ws within seconds (each answered)."""
    seen = 0
    with trio.move_on_after(seconds):
        while True:
            msg = json.loads(await ws.get_message())  # type: ignore[attr-defined]
            if msg["msg_type"] == 12:
                seen += 1
                await ws.send_message(json.dumps(  # type: ignore[attr-defined]
                    {"msg_type": 13, "sequence": msg["sequence"], "timestamp": msg["timestamp"]}))
    return seen


@pytest.mark.parametrize("which", ["signaling", "media"])
async def test_keepalive_on_one_kind_of_socket(which: str) -> None:
    """keepalive_sockets limits the requests to one kind of socket (for measuring the
    cost of each); the other kind gets none."""
    config = fast_config(keepalive_interval_s=0.05, keepalive_sockets=which, duration_s=10)
    seen: dict[str, int] = {}
    async with run_simulator(config) as sim:
        async with handshaken(sim) as (_, sig, media):

            async def count(name: str, ws: object) -> None:
                seen[name] = await _requests_seen(ws, 0.4)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(count, "signaling", sig)
                nursery.start_soon(count, "media", media)
        assert (seen["signaling"] > 0, seen["media"] > 0) == (
            which == "signaling", which == "media")
    with pytest.raises(ValueError, match="keepalive_sockets"):
        async with run_simulator(fast_config(keepalive_sockets="both")):
            pass


async def test_silent_media_socket_is_closed() -> None:
    config = fast_config(keepalive_interval_s=0.05, media_timeout_s=0.3,
                         signaling_timeout_s=5, duration_s=10)
    async with run_simulator(config) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as sig, \
                ws_connect(sim, sim.media_urls()["audio"]) as media:
            await signaling_handshake(sim, sig, session)
            await media_handshake(sim, media, session, 1)
            t0 = trio.current_time()
            with trio.fail_after(3):
                while True:  # read, never answer
                    try:
                        await media.get_message()
                    except Exception:
                        break
            assert trio.current_time() - t0 >= 0.25
            assert media.close_code == 1000
        assert sim.counters.keepalive_timeouts == 1
        assert not session.ended  # only the media socket went


async def test_silent_signaling_ends_the_stream_with_reason_24() -> None:
    config = fast_config(keepalive_interval_s=0.05, signaling_timeout_s=0.3, duration_s=10)
    async with run_simulator(config) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as sig:
            await signaling_handshake(sim, sig, session)
            msgs = []
            with trio.fail_after(3):
                while True:
                    try:
                        msgs.append(json.loads(await sig.get_message()))
                    except Exception:
                        break
            end = [m for m in msgs if m["msg_type"] == 8]
            assert end and end[0]["state"] == 4 and end[0]["reason"] == 24
        assert session.ended and session.stop_reason == 24


async def test_unanswered_and_late_keepalives_are_counted_apart_from_those_in_flight() -> None:
    """A request answered after more than a second counts as late; requests still
    unanswered when the socket ends count as unanswered if older than a second, else as
    in flight; the slowest answer's round trip is kept."""
    config = fast_config(keepalive_interval_s=0.3, media_timeout_s=30, signaling_timeout_s=30)
    async with run_simulator(config) as sim:
        async with handshaken(sim) as (_, sig, _media):
            first = await recv_until(sig, 12)
            await sig.send_message(json.dumps({"msg_type": 13, "sequence": first["sequence"],
                                               "timestamp": first["timestamp"]}))
            second = await recv_until(sig, 12)
            await trio.sleep(1.2)  # media's requests go unanswered all along
            await sig.send_message(json.dumps({"msg_type": 13, "sequence": second["sequence"],
                                               "timestamp": second["timestamp"]}))
            await trio.sleep(0.1)
        with trio.fail_after(2):
            while sim.counters.keepalives_unanswered + sim.counters.keepalives_in_flight_at_end \
                    < sim.counters.keepalives_sent - 2:
                await trio.sleep(0.02)
        c = sim.counters
        assert c.keepalive_answers == 2 and c.keepalive_answers_late == 1
        assert 1200 <= c.keepalive_max_rtt_ms < 3000
        # media's first request (and signaling's third) waited over a second
        assert c.keepalives_unanswered >= 2
        assert c.keepalives_unanswered + c.keepalives_in_flight_at_end == c.keepalives_sent - 2
