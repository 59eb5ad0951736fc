"""Media content over real sockets: every audio byte equals the source's prediction."""

from __future__ import annotations

import base64
import itertools
import json
import socket
from typing import Any

import pytest
import trio

from conftest import (
    WsClient,
    collect_until_closed,
    fast_config,
    media_handshake,
    recv_until,
    send_ready,
    signaling_handshake,
    ws_connect,
)
from rtms_fast.sim import (
    AudioSource,
    MixedAudioSource,
    SimConfig,
    deskshare_frame,
    g722_available,
    participant_id,
    participant_name,
    run_simulator,
    speakers_for_frame,
    transcript_end_ms,
    transcript_text,
    video_frame,
)
from rtms_fast.sim.source import CODEC_G711, CODEC_G722, CODEC_L16, CONTENT_RAW, CONTENT_RTP


async def run_session(config: SimConfig, media: dict[int, Any], *,
                      tls: bool = False) -> tuple[list[dict[str, Any]], dict[int, list[Any]]]:
    """Join session 0 with one media socket per entry of `media` (media_type -> params),
    send ready, and collect everything until the simulator closes the sockets."""
    async with run_simulator(config) as sim:
        session = sim.sessions[0]
        media_msgs: dict[int, list[Any]] = {}
        async with ws_connect(sim, sim.signaling_url) as sig:
            resp = await signaling_handshake(sim, sig, session)
            urls = resp["media_server"]["server_urls"]
            keys = {1: "audio", 2: "video", 4: "deskshare", 8: "transcript", 16: "chat"}
            sockets: dict[int, WsClient] = {}
            async with trio.open_nursery() as nursery:
                cms = []
                for media_type, params in media.items():
                    key = keys.get(media_type, "all")
                    cm = ws_connect(sim, urls[key])
                    ws = await cm.__aenter__()
                    cms.append(cm)
                    sockets[media_type] = ws
                    answer = await media_handshake(sim, ws, session, media_type, params)
                    assert answer["status_code"] == 0
                await send_ready(sig, session)

                async def drain(mt: int, ws: WsClient) -> None:
                    media_msgs[mt] = await collect_until_closed(ws)

                for mt, ws in sockets.items():
                    nursery.start_soon(drain, mt, ws)
                sig_msgs = await collect_until_closed(sig)
            for cm in cms:
                await cm.__aexit__(None, None, None)
    return sig_msgs, media_msgs


def audio_data(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["content"] for m in msgs if m["msg_type"] == 14]


@pytest.mark.parametrize(
    ("params", "codec", "rate", "content_type"),
    [
        (None, CODEC_L16, 16000, CONTENT_RAW),
        ({"content_type": 2, "codec": 1, "sample_rate": 0, "channel": 1, "data_opt": 2,
          "send_rate": 20}, CODEC_L16, 8000, CONTENT_RAW),
        ({"content_type": 2, "codec": 1, "sample_rate": 3, "channel": 1, "data_opt": 2,
          "send_rate": 40}, CODEC_L16, 48000, CONTENT_RAW),
        ({"content_type": 1, "codec": 2, "sample_rate": 0, "channel": 1, "data_opt": 2,
          "send_rate": 20}, CODEC_G711, 8000, CONTENT_RTP),
        ({"content_type": 2, "codec": 2, "sample_rate": 0, "channel": 1, "data_opt": 2,
          "send_rate": 20}, CODEC_G711, 8000, CONTENT_RAW),
    ],
)
async def test_multi_stream_audio_bytes_are_predicted(params: Any, codec: int, rate: int,
                                                      content_type: int) -> None:
    config = fast_config(seed=11, participants=2, duration_s=0.2)
    sig, media = await run_session(config, {1: None if params is None else {"audio": params}})
    send_rate = 20 if params is None else params["send_rate"]
    frames = 200 // send_rate
    contents = audio_data(media[1])
    assert len(contents) == frames * 2
    for i, content in enumerate(contents):
        k, slot = divmod(i, 2)
        p = speakers_for_frame(2, k, send_rate)[slot]
        source = AudioSource(11, 0, p, codec, rate, content_type=content_type,
                             send_rate_ms=send_rate)
        assert base64.b64decode(content["data"]) == source.payload(k)
        assert content["user_id"] == participant_id(p)
        assert content["user_name"] == participant_name(p)
        assert isinstance(content["timestamp"], int)
    ts = [c["timestamp"] for c in contents[::2]]
    assert [b - a for a, b in itertools.pairwise(ts)] == [send_rate] * (frames - 1)
    assert sig[-1]["msg_type"] == 8 and sig[-1]["state"] == 4 and sig[-1]["reason"] == 6


async def test_mixed_audio_bytes_are_predicted() -> None:
    config = fast_config(seed=3, participants=3, duration_s=0.1)
    params = {"audio": {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1,
                        "data_opt": 1, "send_rate": 20}}
    _, media = await run_session(config, {1: params})
    contents = audio_data(media[1])
    assert len(contents) == 5
    mixed = MixedAudioSource(3, 0, 3, CODEC_L16, 16000)
    for k, content in enumerate(contents):
        assert base64.b64decode(content["data"]) == mixed.payload(k)
        assert content["user_id"] == 0 and content["user_name"] == ""


@pytest.mark.skipif(not g722_available(), reason="rtms_fast.codecs has no G.722 encoder")
async def test_g722_rtp_bytes_are_predicted() -> None:
    _, media = await run_session(fast_config(codec="g722", duration_s=0.1), {1: None})
    contents = audio_data(media[1])
    source = AudioSource(0, 0, 0, CODEC_G722, 16000)
    assert [base64.b64decode(c["data"]) for c in contents] == [source.payload(k)
                                                               for k in range(5)]


async def test_transcript_chat_video_deskshare_and_events() -> None:
    config = fast_config(seed=4, participants=3, duration_s=0.45, transcript_interval_ms=100,
                         chat_interval_ms=200, event_interval_ms=100, video_fps=10,
                         deskshare_fps=5)
    sig, media = await run_session(config, {8: None, 16: None, 2: None, 4: None})
    transcripts = [m["content"] for m in media[8] if m["msg_type"] == 17]
    assert [t["data"] for t in transcripts] == [transcript_text(4, 0, k) for k in range(4)]
    for t in transcripts:
        assert {"user_id", "user_name", "data", "timestamp", "start_time",
                "end_time"} <= set(t) and t["start_time"] < t["end_time"]
        assert t["end_time"] == transcript_end_ms(t["start_time"], 100)
        assert t["timestamp"] == t["start_time"] + 100
    chats = [m["content"] for m in media[16] if m["msg_type"] == 18]
    assert len(chats) == 2 and all(isinstance(c["user_id"], int) for c in chats)
    videos = [m["content"] for m in media[2] if m["msg_type"] == 15]
    assert [base64.b64decode(v["data"]) for v in videos] == [video_frame(4, 0, k)
                                                             for k in range(5)]
    shares = [m["content"] for m in media[4] if m["msg_type"] == 16]
    assert base64.b64decode(shares[0]["data"])[:2] == b"\xff\xd8"
    assert base64.b64decode(shares[0]["data"]) == deskshare_frame(4, 0, 0)
    events = [m["event"] for m in sig if m["msg_type"] == 6]
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == 3 and len(events[0]["participants"]) == 3
    assert all(isinstance(p["user_id"], int) and p["user_name"]
               for p in events[0]["participants"])
    assert kinds.count(2) >= 3  # active speaker changes
    assert 5 in kinds and 6 in kinds and 4 in kinds
    assert all("timestamp" in e for e in events)
    assert not any(m["msg_type"] == 9 for m in sig)  # off by default


async def test_session_state_updates_when_enabled() -> None:
    sig, _ = await run_session(fast_config(session_state_updates=True, duration_s=0.1),
                               {1: None})
    states = [m for m in sig if m["msg_type"] == 9]
    assert [m["state"] for m in states] == [2, 5]
    assert all(isinstance(m["rtms_session_id"], str) for m in states)


async def test_unified_socket_carries_audio_and_transcript() -> None:
    config = fast_config(mode="unified", duration_s=0.2, transcript_interval_ms=100)
    _, media = await run_session(config, {1 | 8: None})
    kinds = {m["msg_type"] for m in media[9]}
    assert kinds >= {14, 17}


async def test_stream_close_request_gets_22_and_close() -> None:
    async with run_simulator(fast_config(duration_s=30)) as sim:
        session = sim.sessions[0]
        async with ws_connect(sim, sim.signaling_url) as sig, \
                ws_connect(sim, sim.media_urls()["audio"]) as media:
            await signaling_handshake(sim, sig, session)
            await media_handshake(sim, media, session, 1)
            await send_ready(sig, session)
            await recv_until(media, 14)
            await sig.send_message(json.dumps({"msg_type": 21,
                                               "rtms_stream_id": session.rtms_stream_id}))
            resp = await recv_until(sig, 22)
            assert resp["status_code"] == 0
            rest = await collect_until_closed(sig)
            assert sig.close_code == 1000 and not any(m["msg_type"] == 8 for m in rest)
            await collect_until_closed(media)
            assert media.close_code == 1000
        assert session.ended and session.stop_reason == 20
        assert sim.counters.stream_close_requests == 1


async def test_audio_over_wss_matches() -> None:
    config = fast_config(tls=True, duration_s=0.1)
    _, media = await run_session(config, {1: None})
    contents = audio_data(media[1])
    source = AudioSource(0, 0, 0, CODEC_L16, 16000)
    assert [base64.b64decode(c["data"]) for c in contents] == [source.payload(k)
                                                               for k in range(5)]


async def test_pretty_binary_media() -> None:
    _, media = await run_session(fast_config(pretty=True, binary_frames=True, duration_s=0.1),
                                 {1: None})
    contents = audio_data(media[1])
    source = AudioSource(0, 0, 0, CODEC_L16, 16000)
    assert [base64.b64decode(c["data"]) for c in contents] == [source.payload(k)
                                                               for k in range(5)]


async def test_a_reader_that_does_not_read_loses_media_not_the_others() -> None:
    config = fast_config(sessions=2, duration_s=0.6, rate_hz=48000, max_buffer_bytes=8192,
                         socket_send_buffer_bytes=4096)
    async with run_simulator(config) as sim:
        lazy, busy = sim.sessions
        async with ws_connect(sim, sim.signaling_url) as sig0, \
                ws_connect(sim, sim.signaling_url) as sig1, \
                ws_connect(sim, sim.media_urls()["audio"]) as m0, \
                ws_connect(sim, sim.media_urls()["audio"]) as m1:
            for sig, media, session in ((sig0, m0, lazy), (sig1, m1, busy)):
                await signaling_handshake(sim, sig, session)
                await media_handshake(sim, media, session, 1)
                await send_ready(sig, session)
            m0.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            got = audio_data(await collect_until_closed(m1))
        assert len(got) == 30  # every frame of the session that reads
        assert sim.counters.messages_dropped_backpressure > 0  # the one that does not read
        assert sim.counters.audio_frames_sent < sim.counters.audio_frames_scheduled
