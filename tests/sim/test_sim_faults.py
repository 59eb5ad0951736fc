"""Every fault kind, injected through the API, seen by a client over real sockets."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from conftest import (
    ConnectionClosed,
    WsClient,
    fast_config,
    handshaken,
    media_handshake,
    recv_until,
    send_ready,
    ws_connect,
)
from rtms_fast.sim import AudioSource, FaultKind, Simulator, run_simulator
from rtms_fast.sim.source import CODEC_L16


@asynccontextmanager
async def joined(**kw: Any) -> AsyncIterator[tuple[Simulator, WsClient, WsClient]]:
    config = fast_config(duration_s=10, **kw)
    async with run_simulator(config) as sim, handshaken(sim) as (session, sig, media):
        await send_ready(sig, session)
        await recv_until(media, 14)
        yield sim, sig, media


async def read_until_closed(ws: WsClient) -> None:
    with trio.fail_after(3), pytest.raises(ConnectionClosed):
        while True:
            await ws.get_message()


async def test_drop_tcp_resets_without_close_frame() -> None:
    async with joined() as (sim, _sig, media):
        sim.inject_fault(0, FaultKind.DROP_TCP)
        await read_until_closed(media)
        assert media.close_code is None and media.reset
        assert 1 not in sim.sessions[0].media
        assert sim.counters.faults_injected == 1


async def test_close_1000_sends_a_close_frame() -> None:
    async with joined() as (sim, sig, media):
        sim.inject_fault(0, FaultKind.CLOSE_1000, target="signaling")
        await read_until_closed(sig)
        assert sig.close_code == 1000
        assert (await recv_until(media, 14))["msg_type"] == 14  # media goes on


async def test_close_1006_closes_tcp_without_close_frame() -> None:
    async with joined() as (sim, _sig, media):
        sim.inject_fault(0, FaultKind.CLOSE_1006)
        await read_until_closed(media)
        assert media.close_code is None and not media.reset


async def test_stall_stops_sending_and_answering() -> None:
    async with joined() as (sim, sig, media):
        sim.inject_fault(0, FaultKind.STALL, duration_s=0.3)
        t0 = trio.current_time()
        while True:  # drain what was already on the wire
            with trio.move_on_after(0.1) as scope:
                await media.get_message()
            if scope.cancelled_caught:
                break
        await sig.send_message(json.dumps({"msg_type": 12, "sequence": 5, "timestamp": 1}))
        await recv_until(media, 14, timeout_s=2)
        assert trio.current_time() - t0 >= 0.25
        # the keep-alive request sent during the stall was never answered
        with trio.move_on_after(0.2):
            msg = await recv_until(sig, 13)
            pytest.fail(f"answered during a stall: {msg}")


@pytest.mark.parametrize("kind", [FaultKind.MALFORMED, FaultKind.TRUNCATED])
async def test_malformed_and_truncated_messages(kind: FaultKind) -> None:
    async with joined() as (sim, _sig, media):
        sim.inject_fault(0, kind)
        bad = 0
        with trio.fail_after(3):
            while True:
                raw = await media.get_message()
                try:
                    json.loads(raw)
                except ValueError:
                    bad += 1
                    break
        assert bad == 1
        assert (await recv_until(media, 14))["msg_type"] == 14  # the socket stays usable


async def test_slow_sending_delays_media() -> None:
    async with joined(slow_delay_ms=250) as (sim, _sig, media):
        sim.inject_fault(0, FaultKind.SLOW, duration_s=1.0)
        t0 = trio.current_time()
        with trio.move_on_after(0.15):
            while True:
                await media.get_message()
                if trio.current_time() - t0 > 0.05:
                    pytest.fail("media kept flowing while slowed")
        await recv_until(media, 14)
        assert trio.current_time() - t0 >= 0.2
        assert sim.counters.audio_misses == 0  # injected lateness is not a simulator miss


async def test_keepalive_silence() -> None:
    async with joined(keepalive_interval_s=0.05) as (sim, sig, _media):
        await recv_until(sig, 12)
        sim.inject_fault(0, FaultKind.KEEPALIVE_SILENCE, duration_s=0.4)
        before = sim.counters.keepalives_sent
        await trio.sleep(0.3)
        assert sim.counters.keepalives_sent == before
        await recv_until(sig, 12, timeout_s=2)  # and they come back


async def test_random_faults_follow_the_seed() -> None:
    logs = []
    for _ in range(2):
        async with joined(seed=5, random_fault_rate_hz=40.0,
                          random_fault_kinds=(FaultKind.MALFORMED, FaultKind.SLOW,
                                              FaultKind.KEEPALIVE_SILENCE)) as (sim, _, _):
            with trio.fail_after(3):
                while len(sim.fault_log) < 3:
                    await trio.sleep(0.02)
            logs.append(sim.fault_log[:3])
    assert logs[0] == logs[1]
    assert all(kind in (FaultKind.MALFORMED, FaultKind.SLOW, FaultKind.KEEPALIVE_SILENCE)
               for _, kind, _ in logs[0])


async def test_media_rejoin_continues_the_session_timeline() -> None:
    async with joined(participants=1) as (sim, _sig, media):
        session = sim.sessions[0]
        sim.inject_fault(0, FaultKind.DROP_TCP)
        await read_until_closed(media)
        await trio.sleep(0.1)
        async with ws_connect(sim, sim.media_urls()["audio"]) as again:
            assert (await media_handshake(sim, again, session, 1))["status_code"] == 0
            msgs = [await recv_until(again, 14) for _ in range(3)]
        source = AudioSource(0, 0, 0, CODEC_L16, 16000)
        for msg in msgs:
            k, rest = divmod(msg["content"]["timestamp"] - session.start_epoch_ms, 20)
            assert rest == 0 and k >= 5  # later frames of the same timeline, not frame 0
            assert base64.b64decode(msg["content"]["data"]) == source.payload(k)
