"""Run the official Zoom RTMS SDK (PyPI ``rtms``) as one client and record its callbacks.

This program is the SDK side of the conformance tests. It joins exactly one RTMS stream with
one audio preset, and writes one JSON object per line to ``--out`` for every callback the SDK
makes (join confirm, audio, transcript, user update, raw event, leave), then exits when the
leave callback arrives or the deadline passes.

It must run in its own process, one client per process, from a working directory that holds a
``logs/`` folder (the SDK's C core writes its log files there), under a hard timeout set by
the caller: the SDK's threads and global state do not mix with a test runner, and it can crash
on some inputs. It must never register ``onSessionUpdate`` (session state updates can crash
the 1.1.0 SDK) and never import anything from ``rtms_fast``: it judges the simulator, so it
relies only on the official SDK.

Exit status: 0 after a final callback (leave, or a join confirm with a non-zero status),
3 when the deadline passed first, 1 when the client could not run, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import threading
import time
from typing import Any, TextIO

# Audio presets: (content_type, codec, sample_rate, channel, duration_ms, frame_size_samples).
# content_type 2 = RAW_AUDIO; codec 1 L16, 2 G.711, 3 G.722; sample_rate 0 = 8 kHz, 1 = 16 kHz.
AUDIO_PRESETS: dict[str, tuple[int, int, int, int, int, int]] = {
    "l16-16k": (2, 1, 1, 1, 20, 320),
    "g711-8k": (2, 2, 0, 1, 20, 160),
    "g722-16k": (2, 3, 1, 1, 20, 320),
}

# AUDIO_MULTI_STREAMS: the SDK reports user ids and names only with this data option.
DATA_OPT_MULTI_STREAMS = 2

# Payloads up to this size are also written out whole (base64), so a failing test can show
# what arrived; larger ones are identified by their SHA-256 alone.
INLINE_PAYLOAD_MAX_BYTES = 256

EXIT_FINISHED = 0
EXIT_FAILED = 1
EXIT_DEADLINE = 3


class RecordWriter:
    """Writes JSON lines from SDK threads; one lock, one flush per record."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._t0 = time.monotonic()

    def write(self, kind: str, **fields: Any) -> None:
        record = {"kind": kind, "t_s": round(time.monotonic() - self._t0, 4), **fields}
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def payload_fields(data: bytes) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if len(data) <= INLINE_PAYLOAD_MAX_BYTES:
        fields["b64"] = base64.b64encode(data).decode("ascii")
    return fields


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--webhook-body",
        default="",
        help="a meeting.rtms_started webhook body (JSON); its payload is handed to join()",
    )
    parser.add_argument("--server-url", default="", help="signaling URL (ws:// or wss://)")
    parser.add_argument("--meeting-uuid", default="")
    parser.add_argument("--stream-id", default="")
    parser.add_argument("--client-id", default="", help="used to compute the signature")
    parser.add_argument("--client-secret", default="", help="used to compute the signature")
    parser.add_argument("--signature", default="", help="sent as is instead of computing one")
    parser.add_argument("--preset", choices=sorted(AUDIO_PRESETS), default="l16-16k")
    parser.add_argument("--data-opt", type=int, default=DATA_OPT_MULTI_STREAMS)
    parser.add_argument("--no-audio", action="store_true", help="do not open an audio socket")
    parser.add_argument("--no-transcript", action="store_true")
    parser.add_argument("--deadline-s", type=float, default=10.0)
    parser.add_argument("--out", required=True, help="JSON lines file, or - for stdout")
    args = parser.parse_args(argv)
    if not args.signature and not (args.client_id and args.client_secret):
        parser.error("give --signature or both --client-id and --client-secret")
    if not args.webhook_body and not (args.server_url and args.meeting_uuid and args.stream_id):
        parser.error("give --webhook-body or all of --server-url, --meeting-uuid, --stream-id")
    return args


def run_client(args: argparse.Namespace, records: RecordWriter) -> int:
    # The SDK's C core opens ./logs/<file> on first use; without the folder it floods stderr.
    os.makedirs("logs", exist_ok=True)
    # The Python layer prints info logs on stdout; keep stdout for our records if asked.
    os.environ.setdefault("ZM_RTMS_LOG_LEVEL", "error")
    import rtms

    finished = threading.Event()
    client = rtms.Client()

    def on_join_confirm(reason: int) -> None:
        records.write("join_confirm", reason=int(reason))
        if reason != 0:
            finished.set()

    def on_audio(data: bytes, size: int, timestamp: int, metadata: Any) -> None:
        records.write(
            "audio",
            reported_size=int(size),
            timestamp=int(timestamp),
            user_id=int(metadata.userId),
            user_name=str(metadata.userName),
            **payload_fields(bytes(data)),
        )

    def on_transcript(data: bytes, size: int, timestamp: int, metadata: Any) -> None:
        records.write(
            "transcript",
            reported_size=int(size),
            timestamp=int(timestamp),
            start_ts=int(metadata.startTs),
            end_ts=int(metadata.endTs),
            user_id=int(metadata.userId),
            user_name=str(metadata.userName),
            **payload_fields(bytes(data)),
        )

    def on_user_update(op: int, participant: Any) -> None:
        records.write(
            "user_update",
            op=int(op),
            user_id=int(participant.id),
            user_name=str(participant.name),
        )

    def on_event(event_json: str) -> None:
        try:
            event: Any = json.loads(event_json)
        except ValueError:
            event = None
        records.write("event", raw=event_json, event=event)

    def on_leave(reason: int) -> None:
        records.write("leave", reason=int(reason))
        finished.set()

    client.on_join_confirm(on_join_confirm)
    if not args.no_audio:
        content_type, codec, sample_rate, channel, duration_ms, frame_size = AUDIO_PRESETS[
            args.preset
        ]
        client.set_audio_params(
            rtms.AudioParams(
                content_type, codec, sample_rate, channel, args.data_opt, duration_ms, frame_size
            )
        )
        client.on_audio_data(on_audio)
    if not args.no_transcript:
        client.on_transcript_data(on_transcript)
    client.on_user_update(on_user_update)
    client.on_event_ex(on_event)
    client.on_leave(on_leave)

    join_kwargs: dict[str, Any]
    if args.webhook_body:
        # What an application does with the webhook: hand its payload to join() as is.
        join_kwargs = dict(json.loads(args.webhook_body)["payload"])
    else:
        join_kwargs = {
            "meeting_uuid": args.meeting_uuid,
            "rtms_stream_id": args.stream_id,
            "server_urls": args.server_url,
        }
    if args.signature:
        join_kwargs["signature"] = args.signature
    else:
        join_kwargs["client"] = args.client_id
        join_kwargs["secret"] = args.client_secret
    records.write(
        "start",
        preset=None if args.no_audio else args.preset,
        data_opt=args.data_opt,
        server_url=join_kwargs.get("server_urls"),
        ca=os.environ.get("ZM_RTMS_CA", ""),
    )
    # A dict as the first argument is the SDK's documented "join(payload)" form.
    client.join(join_kwargs)
    done = finished.wait(args.deadline_s)
    records.write("exit", finished=done)
    return EXIT_FINISHED if done else EXIT_DEADLINE


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout as stream:
        records = RecordWriter(stream)
        try:
            status = run_client(args, records)
        except Exception as exc:  # the record is the report; the caller reads it
            records.write("error", error=f"{type(exc).__name__}: {exc}")
            status = EXIT_FAILED
        stream.flush()
    # Skip interpreter teardown: the SDK's loop thread and C core still run and hold sockets,
    # and their shutdown is nothing to depend on; the records are already flushed.
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
