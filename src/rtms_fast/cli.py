"""The `rtms-fast` command line: one function per subcommand.

`simulate` runs the RTMS simulator and prints, per session, one JSON line holding the
`<product>.rtms_started` webhook body on stdout. This module only parses arguments and
wires library calls together; it must never hold protocol or media logic of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import trio

__all__ = ["build_parser", "cmd_demo", "cmd_join", "cmd_simulate", "main"]

# Extra grace after the last session's media before the process gives up waiting.
_EXIT_GRACE_S = 10.0


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate", help="run the RTMS simulator (webhooks, signaling, media)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--participants", type=int, default=1)
    p.add_argument("--codec", choices=["l16", "pcma", "g722"], default="l16",
                   help="audio format answered when a client asks for none")
    p.add_argument("--rate", type=int, default=16000, help="L16 sample rate in Hz")
    p.add_argument("--send-rate", type=int, default=20, help="audio message interval in ms")
    p.add_argument("--data-opt", choices=["mixed", "multi"], default="multi")
    p.add_argument("--mode", choices=["split", "unified"], default="split")
    p.add_argument("--duration", type=float, default=10.0, help="media seconds per session")
    p.add_argument("--client-id", default="client")
    p.add_argument("--client-secret", default="secret")
    p.add_argument("--tls", action="store_true", help="wss:// with a throwaway CA")
    p.add_argument("--ca-file", default=None, help="where to write the CA PEM (TLS mode)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--product", choices=["meeting", "webinar", "session", "contact_center"],
                   default="meeting")
    p.add_argument("--binary-frames", action="store_true", help="JSON in binary frames")
    p.add_argument("--pretty", action="store_true", help="tab-indented JSON")
    p.add_argument("--keepalive-interval", type=float, default=15.0)
    p.add_argument("--keepalive-sockets", choices=["all", "signaling", "media"], default="all",
                   help="which sockets get keep-alive requests (for measurements)")
    p.add_argument("--media-timeout", type=float, default=65.0)
    p.add_argument("--signaling-timeout", type=float, default=60.0)
    p.add_argument("--join-timeout", type=float, default=60.0,
                   help="a session nobody joins within this many seconds ends")
    p.add_argument("--session-state-updates", action="store_true",
                   help="send msg 9 (crashes the official SDK's Python wrapper)")
    p.add_argument("--random-faults", type=float, default=0.0,
                   help="expected random faults per second (seeded)")
    p.add_argument("--tick-ms", type=int, choices=[5, 10, 20], default=5,
                   help="media sweep period; sessions are spread over 20 / tick phases")
    p.add_argument("--webhook-url", default=None)
    p.add_argument("--webhook-secret", default=None)
    p.add_argument("--stats", action="store_true",
                   help="print the counters as one JSON line on stderr at exit")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the simulator until every session has ended (or a bounded grace period)."""
    from rtms_fast.sim import SimConfig, run_simulator
    from rtms_fast.sim.webhook import WebhookDeliveryError, send_webhook

    config = SimConfig(
        host=args.host, port=args.port, sessions=args.sessions,
        participants=args.participants, codec=args.codec, rate_hz=args.rate,
        send_rate_ms=args.send_rate, data_opt=1 if args.data_opt == "mixed" else 2,
        mode=args.mode, duration_s=args.duration, client_id=args.client_id,
        client_secret=args.client_secret, tls=args.tls, ca_file=args.ca_file,
        seed=args.seed, product=args.product, binary_frames=args.binary_frames,
        pretty=args.pretty, keepalive_interval_s=args.keepalive_interval,
        keepalive_sockets=args.keepalive_sockets, media_timeout_s=args.media_timeout,
        signaling_timeout_s=args.signaling_timeout,
        join_timeout_s=args.join_timeout, session_state_updates=args.session_state_updates,
        random_fault_rate_hz=args.random_faults, tick_ms=args.tick_ms,
    )
    if args.webhook_url and not args.webhook_secret:
        print("--webhook-url needs --webhook-secret", file=sys.stderr)
        return 2

    async def post(body: dict[str, object]) -> None:
        try:
            await send_webhook(args.webhook_url, body, args.webhook_secret)
        except WebhookDeliveryError as exc:
            print(json.dumps({"webhook_error": str(exc)}), file=sys.stderr, flush=True)

    async def run() -> None:
        async with run_simulator(config) as sim:
            if sim.ca_file is not None:
                print(json.dumps({"ca_file": sim.ca_file}), file=sys.stderr, flush=True)
            for session in sim.sessions:
                sys.stdout.write(json.dumps(sim.webhook_event(session)) + "\n")
            sys.stdout.flush()
            if args.webhook_url:
                async with trio.open_nursery() as nursery:
                    for session in sim.sessions:
                        nursery.start_soon(post, sim.webhook_event(session))
            limit = (config.join_timeout_s if config.join_timeout_s > 0 else 3600.0)
            with trio.move_on_after(limit + config.duration_s + _EXIT_GRACE_S):
                await sim.all_ended.wait()
            await trio.sleep(0.2)  # let the close frames reach the clients
            if args.webhook_url:
                async with trio.open_nursery() as nursery:
                    for session in sim.sessions:
                        nursery.start_soon(post, sim.webhook_event(session, "rtms_stopped"))
            if args.stats:
                print(json.dumps({"counters": sim.counters.as_dict()}), file=sys.stderr,
                      flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        return 130
    return 0


def _add_join(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("join", help="join one RTMS stream and record it (WAV + JSONL)")
    p.add_argument("payload", nargs="?", default=None,
                   help="webhook body or its payload as JSON, @FILE, or - for stdin")
    p.add_argument("--server-urls", default=None, help="signaling URL (ws:// or wss://)")
    p.add_argument("--meeting-uuid", default=None,
                   help="meeting/webinar uuid, Video SDK session_id or ZCC engagement_id")
    p.add_argument("--rtms-stream-id", default=None)
    p.add_argument("--client-id", default=None, help="default: $ZM_RTMS_CLIENT")
    p.add_argument("--client-secret", default=None, help="default: $ZM_RTMS_SECRET")
    p.add_argument("--signature", default=None, help="a ready handshake signature")
    p.add_argument("--media", default="audio,transcript",
                   help="comma-separated: audio,video,deskshare,transcript,chat")
    p.add_argument("--codec", choices=["l16", "g711", "g722", "opus"], default=None)
    p.add_argument("--rate", type=int, default=None, help="audio sample rate in Hz")
    p.add_argument("--mode", choices=["split", "unified"], default=None)
    p.add_argument("--ca-file", default=None, help="CA bundle for wss://")
    p.add_argument("--settings", default=None, help="TOML file of EngineSettings")
    p.add_argument("--out", default="rtms-out", help="directory for WAV/JSONL output")
    p.add_argument("--duration", type=float, default=None,
                   help="leave gracefully after this many seconds (default: until it ends)")
    p.set_defaults(func=cmd_join)


def _join_spec(args: argparse.Namespace) -> object:
    """A SessionSpec from the payload and/or flags (flags win); raises ValueError."""
    import os
    import pathlib

    from rtms_fast.protocol.webhook import StreamStart, WebhookBody, stream_change
    from rtms_fast.session import SessionSpec

    fields: dict[str, str] = {}
    if args.payload is not None:
        text = args.payload
        if text == "-":
            text = sys.stdin.read()
        elif text.startswith("@"):
            text = pathlib.Path(text[1:]).read_text()
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("the payload must be a JSON object")
        if "event" in raw:
            import msgspec

            change = stream_change(msgspec.convert(raw, WebhookBody))
            if not isinstance(change, StreamStart):
                raise ValueError(f"event {raw['event']!r} is not an rtms_started event")
            fields = {"server_urls": change.server_urls, "signature_id": change.signature_id,
                      "rtms_stream_id": change.rtms_stream_id}
            if change.signature:
                fields["signature"] = change.signature
        else:
            for key in ("meeting_uuid", "webinar_uuid", "session_id", "engagement_id"):
                if isinstance(raw.get(key), str):
                    fields["signature_id"] = raw[key]
                    break
            for key in ("server_urls", "rtms_stream_id", "signature"):
                if isinstance(raw.get(key), str):
                    fields[key] = raw[key]
    for flag, key in (("server_urls", "server_urls"), ("meeting_uuid", "signature_id"),
                      ("rtms_stream_id", "rtms_stream_id"), ("signature", "signature")):
        value = getattr(args, flag)
        if value:
            fields[key] = value
    missing = [k for k in ("server_urls", "signature_id", "rtms_stream_id") if k not in fields]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (give a payload or the flags)")
    client_id = args.client_id or os.environ.get("ZM_RTMS_CLIENT")
    client_secret = args.client_secret or os.environ.get("ZM_RTMS_SECRET")
    if "signature" not in fields and not (client_id and client_secret):
        raise ValueError("need --signature or --client-id and --client-secret")
    return SessionSpec(server_urls=fields["server_urls"], signature_id=fields["signature_id"],
                       rtms_stream_id=fields["rtms_stream_id"], signature=fields.get("signature"),
                       client_id=client_id, client_secret=client_secret)


def cmd_join(args: argparse.Namespace) -> int:
    """Join one stream, record it under --out, print a JSON summary on stdout."""
    import msgspec

    from rtms_fast.engine import Engine
    from rtms_fast.session import SessionSpec
    from rtms_fast.settings import EngineSettings, SettingsError
    from rtms_fast.sinks import EngineRecorder

    try:
        spec = _join_spec(args)
        assert isinstance(spec, SessionSpec)
        overrides: dict[str, object] = {
            "media_types": tuple(m.strip() for m in args.media.split(",") if m.strip())}
        if args.codec:
            overrides["audio_codec_preferences"] = (args.codec,)
        if args.rate:
            overrides["audio_sample_rate_hz"] = args.rate
        if args.mode:
            overrides["media_mode"] = args.mode
        if args.ca_file:
            overrides["ca_file"] = args.ca_file
        settings = EngineSettings.load(args.settings).replace(**overrides)
    except (ValueError, OSError, SettingsError, msgspec.ValidationError) as exc:
        print(f"rtms-fast join: {exc}", file=sys.stderr)
        return 2

    async def run() -> dict[str, object]:
        async with Engine(settings) as engine:
            recorder = EngineRecorder(engine, args.out)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(recorder.run)
                engine.start_session(spec)
                session = engine.sessions()[0]
                if args.duration is not None:
                    with trio.move_on_after(args.duration):
                        await session.finished.wait()
                    session.close()
                await session.finished.wait()
                await engine.shutdown()
        outcome = session.outcome
        return {
            "outcome": msgspec.to_builtins(outcome),
            "session": msgspec.to_builtins(session.stats()),
            "out": str(args.out),
            "wav_files": {k: str(v) for sink in recorder.wav_sinks.values()
                          for k, v in sink.paths.items()},
            "events_written": recorder.jsonl_lines,
        }

    try:
        summary = trio.run(run)
    except KeyboardInterrupt:
        return 130
    print(json.dumps(summary, indent=2, sort_keys=True))
    outcome = summary["outcome"]
    return 0 if isinstance(outcome, dict) and outcome.get("outcome") in ("ended", "closed") else 1


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="simulate a few sessions and ingest them (a few seconds)")
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--participants", type=int, default=2)
    p.add_argument("--duration", type=float, default=3.0, help="media seconds per session")
    p.add_argument("--out", default=None, help="output directory (default: a temp dir)")
    p.add_argument("--tls", action="store_true", help="wss:// with a throwaway CA")
    p.add_argument("--json", action="store_true", help="print only the JSON summary")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulator + webhook server + engine + sinks, all on 127.0.0.1, bounded in time."""
    import tempfile
    import time

    import msgspec

    from rtms_fast.engine import Engine
    from rtms_fast.settings import EngineSettings
    from rtms_fast.sim import SimConfig, run_simulator
    from rtms_fast.sim.webhook import send_webhook
    from rtms_fast.sinks import EngineRecorder
    from rtms_fast.webhook import WebhookServer

    if not 1 <= args.sessions <= 200 or not 1 <= args.participants <= 20:
        print("rtms-fast demo: 1..200 sessions and 1..20 participants", file=sys.stderr)
        return 2
    duration_s = min(max(args.duration, 0.5), 10.0)
    out = args.out or tempfile.mkdtemp(prefix="rtms-fast-demo-")
    secret = "demo-webhook-secret"
    config = SimConfig(sessions=args.sessions, participants=args.participants,
                       duration_s=duration_s, keepalive_interval_s=1.0, tls=args.tls,
                       transcript_interval_ms=500, chat_interval_ms=1000,
                       event_interval_ms=500, join_timeout_s=10.0)

    async def run() -> dict[str, object]:
        started = time.monotonic()
        async with run_simulator(config) as sim:
            settings = EngineSettings(media_types=("audio", "transcript", "chat"),
                                      ca_file=sim.ca_file, handshake_timeout_s=5.0,
                                      close_timeout_s=1.0, shutdown_timeout_s=3.0)
            async with Engine(settings, client_id=config.client_id,
                              client_secret=config.client_secret) as engine:
                recorder = EngineRecorder(engine, out)
                server = WebhookServer(secret, engine.on_stream_change, path="/webhook")
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(recorder.run)
                    port = await nursery.start(server.serve, "127.0.0.1", 0)
                    url = f"http://127.0.0.1:{port}/webhook"
                    async with trio.open_nursery() as posts:
                        for session in sim.sessions:
                            posts.start_soon(send_webhook, url, sim.webhook_event(session),
                                             secret)
                    with trio.move_on_after(duration_s + 8.0):
                        await sim.all_ended.wait()
                        await trio.sleep(0.05)
                        await engine.wait_idle()
                    stats = engine.stats()
                    await engine.shutdown(3.0)
                    nursery.cancel_scope.cancel()
                finished = engine.finished_sessions()
                outcomes = engine.outcomes()
        return {
            "out": out,
            "elapsed_s": round(time.monotonic() - started, 2),
            "outcomes": outcomes,
            "webhooks": msgspec.to_builtins(server.stats()),
            "engine": msgspec.to_builtins(stats),
            "sessions": [msgspec.to_builtins(s) for s in finished],
            "wav_files": sorted(str(p) for sink in recorder.wav_sinks.values()
                                for p in sink.paths.values()),
            "events_written": recorder.jsonl_lines,
        }

    try:
        summary = trio.run(run)
    except KeyboardInterrupt:
        return 130
    if not args.json:
        print(f"{'stream':<34} {'outcome':<14} {'audio msgs':>10} {'speakers':>8} "
              f"{'keep-alives':>11} {'drops':>5}")
        sessions = summary["sessions"]
        assert isinstance(sessions, list)
        for s in sessions:
            audio = s["media"].get("audio", {"messages": 0})
            print(f"{s['rtms_stream_id']:<34} {s['stop_reason'] or s['state']:<14.14} "
                  f"{audio['messages']:>10} {s['participants']:>8} "
                  f"{s['keepalives_answered']:>11} {sum(s['drops'].values()):>5}")
        print(f"output: {summary['out']} ({len(summary['wav_files'])} WAV files, "  # type: ignore[arg-type]
              f"{summary['events_written']} events in events.jsonl)")
    print(json.dumps({k: v for k, v in summary.items() if k != "sessions"}, sort_keys=True))
    outcomes = summary["outcomes"]
    assert isinstance(outcomes, dict)
    ok = outcomes.get("ended", 0) == args.sessions
    return 0 if ok else 1


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from rtms_fast.bench.command import add_bench_parser

    add_bench_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtms-fast", description="rtms-fast: ingest Zoom RTMS at scale"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    adders: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
        _add_simulate,
        _add_join,
        _add_demo,
        _add_bench,
    ]
    for add in adders:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
