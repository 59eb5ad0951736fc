"""Signaling and media handshakes over real sockets (ws and wss)."""

from __future__ import annotations

import json

import pytest
import trio

from conftest import (
    ConnectionClosed,
    HandshakeRefused,
    fast_config,
    media_handshake,
    recv_until,
    signaling_handshake,
    ws_connect,
)
from rtms_fast.sim import g722_available, run_simulator

URL_KEYS = {"audio", "video", "deskshare", "transcript", "chat", "all"}


@pytest.mark.parametrize("mode", ["split", "unified"])
@pytest.mark.parametrize("tls", [False, True])
async def test_signaling_response_has_every_url_key(mode: str, tls: bool) -> None:
    async with run_simulator(fast_config(mode=mode, tls=tls)) as sim:
        session = sim.sessions[0]
        if tls:
            assert sim.ca_file is not None and sim.signaling_url.startswith("wss://localhost:")
        async with ws_connect(sim, sim.signaling_url) as ws:
            resp = await signaling_handshake(sim, ws, session)
        assert resp["status_code"] == 0 and resp["sequence"] == 77
        urls = resp["media_server"]["server_urls"]
        assert set(urls) == URL_KEYS
        if mode == "split":
            assert len({urls[k] for k in URL_KEYS - {"all"}}) == 5
            assert urls["audio"].endswith("/media/audio") and urls["all"].endswith("/media")
        else:
            assert len(set(urls.values())) == 1
        assert all(u.startswith("wss://localhost:" if tls else "ws://127.0.0.1:")
                   for u in urls.values())


async def test_bad_signature_gets_15_then_close() -> None:
    async with run_simulator(fast_config()) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as ws:
            resp = await signaling_handshake(sim, ws, session, sig="00" * 32)
            assert resp["status_code"] == 15
            with trio.fail_after(3), pytest.raises(ConnectionClosed):
                await ws.get_message()
        async with ws_connect(sim, sim.media_urls()["audio"]) as ws:
            resp = await media_handshake(sim, ws, session, 1, sig="deadbeef")
            assert resp["status_code"] == 15
        assert sim.counters.handshake_rejected_by_status == {15: 2}


async def test_unknown_stream_is_rejected() -> None:
    async with run_simulator(fast_config()) as sim, ws_connect(sim, sim.signaling_url) as ws:
        await ws.send_message(json.dumps({
            "msg_type": 1, "meeting_uuid": "x==", "rtms_stream_id": "nope",
            "signature": "ab"}))
        resp = await recv_until(ws, 2)
        assert resp["status_code"] == 16


async def test_duplicate_signaling_17_and_media_31() -> None:
    async with run_simulator(fast_config()) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as first:
            assert (await signaling_handshake(sim, first, session))["status_code"] == 0
            async with ws_connect(sim, sim.signaling_url) as second:
                assert (await signaling_handshake(sim, second, session))["status_code"] == 17
            url = sim.media_urls()["audio"]
            async with ws_connect(sim, url) as m1:
                assert (await media_handshake(sim, m1, session, 1))["status_code"] == 0
                async with ws_connect(sim, url) as m2:
                    assert (await media_handshake(sim, m2, session, 1))["status_code"] == 31
                # the first connection is unaffected
                assert session.media[1].peer.conn.closed is False
        assert sim.counters.handshake_rejected_by_status == {17: 1, 31: 1}


AUDIO_CASES = [
    # (config codec, config rate, request, expected answer)
    ("l16", 16000, None, {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1,
                          "data_opt": 2, "send_rate": 20}),
    ("l16", 48000, None, {"content_type": 2, "codec": 1, "sample_rate": 3, "channel": 1,
                          "data_opt": 2, "send_rate": 20}),
    ("pcma", 16000, None, {"content_type": 1, "codec": 2, "sample_rate": 0, "channel": 1,
                           "data_opt": 2, "send_rate": 20}),
    ("l16", 16000, {"content_type": 2, "codec": 1, "sample_rate": 2, "channel": 1,
                    "data_opt": 1, "send_rate": 200},
     {"content_type": 2, "codec": 1, "sample_rate": 2, "channel": 1, "data_opt": 1,
      "send_rate": 200}),
    ("l16", 16000, {"content_type": 2, "codec": 2, "sample_rate": 0, "channel": 1,
                    "data_opt": 1, "send_rate": 20},
     {"content_type": 2, "codec": 2, "sample_rate": 0, "channel": 1, "data_opt": 1,
      "send_rate": 20}),
    # the official SDK's default (Opus 48k stereo): not produced, the default is answered
    ("l16", 16000, {"content_type": 2, "codec": 4, "sample_rate": 3, "channel": 2,
                    "data_opt": 2, "send_rate": 20},
     {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1, "data_opt": 2,
      "send_rate": 20}),
]


@pytest.mark.parametrize(("codec", "rate", "request_params", "expected"), AUDIO_CASES)
async def test_media_handshake_negotiation(codec: str, rate: int, request_params: object,
                                           expected: dict[str, int]) -> None:
    async with run_simulator(fast_config(codec=codec, rate_hz=rate)) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.media_urls()["audio"]) as ws:
            params = None if request_params is None else {"audio": request_params}
            resp = await media_handshake(sim, ws, session, 1, params)
        assert resp["status_code"] == 0 and resp["payload_encrypted"] is False
        assert resp["media_params"] == {"audio": expected}


@pytest.mark.skipif(not g722_available(), reason="rtms_fast.codecs has no G.722 encoder")
async def test_g722_preset_answers_rtp_16k() -> None:
    async with run_simulator(fast_config(codec="g722")) as sim:
        async with ws_connect(sim, sim.media_urls()["audio"]) as ws:
            resp = await media_handshake(sim, ws, sim.sessions[0], 1)
        assert resp["media_params"]["audio"] == {
            "content_type": 1, "codec": 3, "sample_rate": 1, "channel": 1, "data_opt": 2,
            "send_rate": 20}


async def test_split_sockets_per_type_and_transcript_null() -> None:
    async with run_simulator(fast_config()) as sim:
        session = sim.sessions[0]
        urls = sim.media_urls()
        async with ws_connect(sim, urls["video"]) as v, ws_connect(sim, urls["transcript"]) as t:
            rv = await media_handshake(sim, v, session, 2, {"video": {
                "codec": 7, "content_type": 3, "data_opt": 3, "fps": 30, "resolution": 2}})
            assert rv["media_params"]["video"] == {
                "codec": 7, "content_type": 3, "data_opt": 3, "fps": 30, "resolution": 2}
            rt = await media_handshake(sim, t, session, 8)  # media_params absent
            assert rt["status_code"] == 0 and "transcript" in rt["media_params"]
            assert set(session.media) == {2, 8}
            assert session.media[2] is not session.media[8]


async def test_unified_socket_serves_the_bitmask() -> None:
    async with run_simulator(fast_config(mode="unified")) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.media_urls()["all"]) as ws:
            resp = await media_handshake(sim, ws, session, 1 | 8, {"audio": {
                "content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1,
                "data_opt": 1, "send_rate": 20}})
            assert set(resp["media_params"]) == {"audio", "transcript"}
            assert set(session.media) == {1, 8}
            assert session.media[1] is session.media[8]


async def test_unknown_path_is_refused() -> None:
    async with run_simulator(fast_config()) as sim:
        with pytest.raises(HandshakeRefused):
            async with ws_connect(sim, f"ws://127.0.0.1:{sim.port}/nowhere"):
                pass
        assert sim.counters.connections_rejected == 1


async def test_pretty_binary_json() -> None:
    async with run_simulator(fast_config(pretty=True, binary_frames=True)) as sim:
        async with ws_connect(sim, sim.signaling_url) as ws:
            await ws.send_message(json.dumps({
                "msg_type": 1, "meeting_uuid": sim.sessions[0].meeting_uuid,
                "rtms_stream_id": sim.sessions[0].rtms_stream_id, "signature": "bad"}))
            with trio.fail_after(3):
                raw = await ws.get_message()
        assert isinstance(raw, bytes)
        assert raw.startswith(b'{\n\t"media_server"') or raw.startswith(b'{\n\t"msg_type" : 2')
        assert json.loads(raw)["status_code"] == 15


async def test_garbage_from_a_client_closes_only_that_connection() -> None:
    async with run_simulator(fast_config()) as sim:
        bad_http = await trio.open_tcp_stream("127.0.0.1", sim.port)
        await bad_http.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        with trio.fail_after(3):
            while await bad_http.receive_some(1024):
                pass
        await bad_http.aclose()
        async with ws_connect(sim, sim.signaling_url) as ws:
            # an unmasked client frame is a protocol violation (RFC 6455 5.1)
            await ws.stream.send_all(b"\x81\x05hello")
            with trio.fail_after(3), pytest.raises(ConnectionClosed):
                await ws.get_message()
            assert ws.close_code in (1002, None)
        async with ws_connect(sim, sim.signaling_url) as ws:  # the server is still fine
            assert (await signaling_handshake(sim, ws, sim.sessions[0]))["status_code"] == 0
        assert sim.counters.client_protocol_errors == 2


async def test_wrongly_typed_fields_drop_only_the_message() -> None:
    async with run_simulator(fast_config()) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as ws:
            await signaling_handshake(sim, ws, session)
            for bad in ({"msg_type": 5, "events": 7}, {"msg_type": "x"}, [1, 2],
                        {"msg_type": 3}, {"msg_type": 99}):
                await ws.send_message(json.dumps(bad))
            await ws.send_message("{not json")
            await ws.send_message(json.dumps({"msg_type": 12, "sequence": 3}))
            reply = await recv_until(ws, 13)  # still answering on the same socket
            assert reply["sequence"] == 3
        assert sim.counters.client_messages_invalid == 6
