"""The naive baseline: trio + trio-websocket, one task per socket, msgspec per message.

This is how most RTMS clients are written (and what the official samples do in
other languages): a task per WebSocket that wakes up for every message, decodes
its JSON and base64, and hands the audio on. It exists only so load benchmarks
can report rtms-fast beside it at the same load; it is deliberately minimal but
correct (handshakes, keep-alive answers, G.711/L16 decode) so the comparison is
fair. It must never be used as a product client.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from rtms_fast.codecs import decode_alaw
from rtms_fast.protocol import (
    AudioParams,
    ClientReadyAck,
    KeepAliveRequest,
    KeepAliveResponse,
    MediaDataAudio,
    MediaHandshakeRequest,
    MediaHandshakeResponse,
    MediaParams,
    MediaType,
    SignalingHandshakeRequest,
    SignalingHandshakeResponse,
    StreamStateUpdate,
    decode_message,
    encode_message,
    rtms_signature,
)


@dataclass(slots=True)
class NaiveCounters:
    audio_messages: int = 0
    audio_samples: int = 0
    keepalives_answered: int = 0
    errors: int = 0
    sessions_ended: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_media_at: float | None = None


@dataclass(frozen=True, slots=True)
class NaiveJoin:
    meeting_uuid: str
    rtms_stream_id: str
    server_url: str


async def _signaling_and_media(
    join: NaiveJoin,
    client_id: str,
    secret: str,
    audio: AudioParams,
    ssl_context: ssl.SSLContext | None,
    counters: NaiveCounters,
    latency_sample_every: int,
) -> None:
    signature = rtms_signature(client_id, join.meeting_uuid, join.rtms_stream_id, secret)
    async with open_websocket_url(join.server_url, ssl_context=ssl_context) as sig:
        await sig.send_message(encode_message(SignalingHandshakeRequest(
            meeting_uuid=join.meeting_uuid, rtms_stream_id=join.rtms_stream_id,
            signature=signature, protocol_version=1, sequence=random.randrange(1 << 20),
        )))
        response = decode_message(await sig.get_message())
        if not isinstance(response, SignalingHandshakeResponse) or response.status_code != 0:
            counters.errors += 1
            return
        assert response.media_server is not None
        media_url = response.media_server.server_urls.url_for(MediaType.AUDIO)
        if media_url is None:
            counters.errors += 1
            return
        async with open_websocket_url(media_url, ssl_context=ssl_context) as media:
            await media.send_message(encode_message(MediaHandshakeRequest(
                meeting_uuid=join.meeting_uuid, rtms_stream_id=join.rtms_stream_id,
                signature=signature, media_type=MediaType.AUDIO,
                media_params=MediaParams(audio=audio), protocol_version=1,
            )))
            ack = decode_message(await media.get_message())
            if not isinstance(ack, MediaHandshakeResponse) or ack.status_code != 0:
                counters.errors += 1
                return
            ready = ClientReadyAck(rtms_stream_id=join.rtms_stream_id)
            await sig.send_message(encode_message(ready))
            decoder = msgspec.json.Decoder(MediaDataAudio)
            alaw = audio.codec == 2

            async def media_loop() -> None:
                n = 0
                try:
                    while True:
                        raw = await media.get_message()
                        try:
                            msg = decoder.decode(raw)
                        except msgspec.DecodeError:
                            other = decode_message(raw)
                            if isinstance(other, KeepAliveRequest):
                                await media.send_message(encode_message(KeepAliveResponse(
                                    sequence=other.sequence, timestamp=other.timestamp)))
                                counters.keepalives_answered += 1
                            continue
                        data = msg.content.data
                        if alaw:
                            payload = data[12:] if audio.content_type == 1 else data
                            pcm = decode_alaw(payload)
                        else:
                            pcm = np.frombuffer(data, dtype=np.int16)
                        counters.audio_messages += 1
                        counters.audio_samples += len(pcm)
                        if counters.first_media_at is None:
                            counters.first_media_at = time.monotonic()
                        n += 1
                        if n % latency_sample_every == 0:
                            counters.latencies_ms.append(time.time() * 1000 - msg.content.timestamp)
                except ConnectionClosed:
                    pass

            async def signaling_loop() -> None:
                try:
                    while True:
                        msg = decode_message(await sig.get_message())
                        if isinstance(msg, KeepAliveRequest):
                            await sig.send_message(encode_message(KeepAliveResponse(
                                sequence=msg.sequence, timestamp=msg.timestamp)))
                            counters.keepalives_answered += 1
                        elif isinstance(msg, StreamStateUpdate) and msg.state == 4:
                            counters.sessions_ended += 1
                            nursery.cancel_scope.cancel()
                            return
                except ConnectionClosed:
                    nursery.cancel_scope.cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(media_loop)
                nursery.start_soon(signaling_loop)


async def run_naive(
    joins: Sequence[NaiveJoin],
    client_id: str,
    secret: str,
    audio: AudioParams,
    ca_file: str | None = None,
    latency_sample_every: int = 50,
    counters: NaiveCounters | None = None,
) -> NaiveCounters:
    """Join every stream with a task per socket; return when all have ended."""
    counters = NaiveCounters() if counters is None else counters
    ssl_context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    async def one(join: NaiveJoin) -> None:
        try:
            await _signaling_and_media(join, client_id, secret, audio, ssl_context, counters,
                                       latency_sample_every)
        except (ConnectionClosed, OSError, trio.BrokenResourceError):
            counters.errors += 1

    async with trio.open_nursery() as nursery:
        for join in joins:
            nursery.start_soon(one, join)
    return counters
