"""`rtms-fast simulate`: JSON lines on stdout, a joinable simulator, a bounded exit."""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from conftest import ConnectionClosed, WsClient
from rtms_fast.cli import build_parser
from rtms_fast.protocol import rtms_signature

BASE = [sys.executable, "-m", "rtms_fast.cli", "simulate", "--port", "0",
        "--client-id", "cli-id", "--client-secret", "cli-secret"]


def test_cli_prints_one_webhook_line_per_session_and_exits() -> None:
    proc = subprocess.run([*BASE, "--sessions", "3", "--duration", "0.2", "--join-timeout",
                           "0.3", "--seed", "9", "--stats"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    bodies = [json.loads(line) for line in lines]
    ids = {b["payload"]["rtms_stream_id"] for b in bodies}
    assert len(ids) == 3
    for b in bodies:
        assert b["event"] == "meeting.rtms_started" and isinstance(b["event_ts"], int)
        assert b["payload"]["server_urls"].startswith("ws://127.0.0.1:")
        assert b["payload"]["server_urls"].endswith("/signaling")
        assert b["payload"]["meeting_uuid"].endswith("==")
    stats = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert stats[-1]["counters"]["sessions_ended"] == 3


def test_cli_tls_reports_the_ca_file() -> None:
    proc = subprocess.run([*BASE, "--tls", "--duration", "0.1", "--join-timeout", "0.2"],
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout.splitlines()[0])
    assert body["payload"]["server_urls"].startswith("wss://localhost:")
    first = json.loads(proc.stderr.splitlines()[0])
    assert first["ca_file"].endswith(".pem")


def test_parser_has_simulate_options() -> None:
    args = build_parser().parse_args(["simulate", "--codec", "pcma", "--mode", "unified",
                                      "--send-rate", "100", "--tls"])
    assert (args.codec, args.mode, args.send_rate, args.tls) == ("pcma", "unified", 100, True)


async def test_cli_simulator_is_joinable_and_ends_with_reason_6() -> None:
    proc = await trio.lowlevel.open_process(
        [*BASE, "--duration", "0.2", "--participants", "2", "--join-timeout", "5"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(10):
            while b"\n" not in buf:
                buf += await proc.stdout.receive_some(65536)
        payload = json.loads(buf.split(b"\n")[0])["payload"]
        url = payload["server_urls"]
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        ws = WsClient(await trio.open_tcp_stream("127.0.0.1", port))
        try:
            await ws.handshake("127.0.0.1", "/signaling")
            sig = rtms_signature("cli-id", payload["meeting_uuid"], payload["rtms_stream_id"],
                                 "cli-secret")
            await ws.send_message(json.dumps({
                "msg_type": 1, "meeting_uuid": payload["meeting_uuid"],
                "rtms_stream_id": payload["rtms_stream_id"], "signature": sig}))
            msgs = []
            with trio.fail_after(10):
                while True:
                    try:
                        msg = json.loads(await ws.get_message())
                    except ConnectionClosed:
                        break
                    msgs.append(msg)
                    if msg["msg_type"] == 2:
                        assert msg["status_code"] == 0
                        await ws.send_message(json.dumps(
                            {"msg_type": 7, "rtms_stream_id": payload["rtms_stream_id"]}))
        finally:
            await ws.aclose()
        assert msgs[-1]["msg_type"] == 8 and msgs[-1]["reason"] == 6
        with trio.fail_after(15):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()
