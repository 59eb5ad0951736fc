"""A load-test client process: ``python -m rtms_fast.bench.client_proc KIND ...``.

KIND is ``naive`` (trio + trio-websocket, a task per socket), ``engine``
(rtms-fast itself) or ``sdk`` (the official Zoom SDK, one client per process).
It joins every stream listed in ``--payloads`` (JSON lines of ``*.rtms_started``
webhook bodies, as ``rtms-fast simulate`` prints them), runs until they end,
and writes one JSON summary to ``--out``: messages and samples received,
errors, (time, CPU, messages) samples for steady-state accounting, and latency
samples (receiver clock minus the sender's ``content.timestamp``; both ends
run on this machine, so they share the clock).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, get_args

from rtms_fast.bench.sampler import CounterSampler
from rtms_fast.settings import TlsBackendName

CODEC_PARAMS: dict[str, tuple[int, int, int]] = {
    # name: (content_type, codec, sample_rate enum) as negotiated in the media handshake
    "pcma": (1, 2, 0),  # G.711 A-law over RTP, 8 kHz (production format)
    "g722": (1, 3, 1),  # G.722 over RTP, 16 kHz
    "l16": (2, 1, 1),  # raw L16, 16 kHz
}


def _joins(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line)["payload"])
    return out


def run_naive(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from rtms_fast.bench.naive_client import NaiveCounters, NaiveJoin
    from rtms_fast.bench.naive_client import run_naive as run
    from rtms_fast.protocol import (
        AudioChannel,
        AudioParams,
        AudioSampleRate,
        DataOption,
        MediaCodec,
        MediaContentType,
    )

    ct, codec, rate = CODEC_PARAMS[args.codec]
    audio = AudioParams(content_type=MediaContentType(ct), codec=MediaCodec(codec),
                        sample_rate=AudioSampleRate(rate), channel=AudioChannel.MONO,
                        data_opt=DataOption.AUDIO_MULTI_STREAMS, send_rate=args.send_rate)
    joins = [NaiveJoin(p["meeting_uuid"], p["rtms_stream_id"], p["server_urls"])
             for p in _joins(args.payloads)]
    counters = NaiveCounters()
    sampler = CounterSampler(lambda: counters.audio_messages)
    sampler.start()

    async def main() -> NaiveCounters:
        return await run(joins, args.client_id, args.client_secret, audio, args.ca_file,
                         counters=counters)

    trio.run(main)
    sampler.stop()
    return {
        "messages": counters.audio_messages, "samples": counters.audio_samples,
        "errors": counters.errors, "sessions_ended": counters.sessions_ended,
        "keepalives_answered": counters.keepalives_answered, "drops": 0,
        "cpu_samples": sampler.samples, "latencies_ms": counters.latencies_ms,
    }


def run_sdk(args: argparse.Namespace) -> dict[str, Any]:
    """One official-SDK client in this process (the SDK is not safe with more)."""
    import time

    os.makedirs("logs", exist_ok=True)  # its C core logs there, or floods stderr
    os.environ.setdefault("ZM_RTMS_LOG_LEVEL", "error")
    if args.ca_file:
        os.environ["ZM_RTMS_CA"] = args.ca_file
    import rtms

    (payload,) = _joins(args.payloads)
    ct, codec, rate = CODEC_PARAMS[args.codec]
    frame = {0: 8000, 1: 16000}[rate] * args.send_rate // 1000
    lock = threading.Lock()
    counts = {"messages": 0, "samples": 0}
    outcome: dict[str, int] = {}
    latencies: list[float] = []
    done = threading.Event()
    client = rtms.Client()

    def on_audio(data: bytes, size: int, timestamp: int, metadata: Any) -> None:
        with lock:
            counts["messages"] += 1
            counts["samples"] += size
            if counts["messages"] % 50 == 0 and timestamp > 0:  # RTP: the SDK reports 0
                latencies.append(time.time() * 1000 - timestamp)

    def on_join(reason: int) -> None:
        outcome["join"] = int(reason)
        if reason != 0:
            done.set()

    def on_leave(reason: int) -> None:
        outcome["leave"] = int(reason)
        done.set()

    client.on_join_confirm(on_join)
    # RAW content type: the SDK logs "RTP not supported" for RTP but still passes bytes.
    client.set_audio_params(rtms.AudioParams(ct, codec, rate, 1, 2, args.send_rate, frame))
    client.on_audio_data(on_audio)
    client.on_leave(on_leave)
    sampler = CounterSampler(lambda: counts["messages"])
    sampler.start()
    client.join(meeting_uuid=payload["meeting_uuid"], rtms_stream_id=payload["rtms_stream_id"],
                server_urls=payload["server_urls"], client=args.client_id,
                secret=args.client_secret)
    done.wait(args.deadline_s)
    sampler.stop()
    return {
        "messages": counts["messages"], "samples": counts["samples"],
        "errors": 0 if outcome.get("join") == 0 else 1, "sessions_ended": int("leave" in outcome),
        "keepalives_answered": None, "drops": 0,
        "cpu_samples": sampler.samples, "latencies_ms": latencies,
    }


def run_engine(args: argparse.Namespace) -> dict[str, Any]:
    from rtms_fast.bench.engine_client import run_engine_load

    return run_engine_load(
        _joins(args.payloads), client_id=args.client_id, client_secret=args.client_secret,
        codec=args.codec, send_rate_ms=args.send_rate, ca_file=args.ca_file,
        sweep_interval_ms=args.sweep_ms, deadline_s=args.deadline_s,
        tls_backend=args.tls_backend,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtms_fast.bench.client_proc")
    parser.add_argument("kind", choices=["naive", "engine", "sdk"])
    parser.add_argument("--payloads", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--client-id", default="client")
    parser.add_argument("--client-secret", default="secret")
    parser.add_argument("--codec", choices=sorted(CODEC_PARAMS), default="pcma")
    parser.add_argument("--send-rate", type=int, default=20)
    parser.add_argument("--ca-file", default=None)
    parser.add_argument("--sweep-ms", type=float, default=20.0)
    parser.add_argument("--tls-backend", choices=get_args(TlsBackendName), default="native")
    parser.add_argument("--deadline-s", type=float, default=120.0)
    args = parser.parse_args(argv)
    runner = {"naive": run_naive, "engine": run_engine, "sdk": run_sdk}[args.kind]
    result = runner(args)
    args.out.write_text(json.dumps(result), encoding="utf-8")
    sys.stdout.flush()
    if args.kind == "sdk":
        os._exit(0)  # the SDK's threads may hang interpreter teardown
    return 0


if __name__ == "__main__":
    sys.exit(main())
