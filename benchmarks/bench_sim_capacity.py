"""Capacity of the RTMS simulator: 1,000 paced single-stream audio sessions on one core.

The simulator runs in its own process (`rtms-fast simulate`); this process is a cheap
receiver: raw non-blocking sockets, wsproto only for the HTTP upgrade, then a minimal frame
splitter. It does the client side of messages 1/3/7, answers keep-alives, counts frames.
The anchor, measured in the same run, is the CPU cost of one bare non-blocking 1 KB send
on loopback TCP: no per-socket paced sender can go below it, so the ratio of the
simulator's CPU per audio message to it is the overhead of everything else. Also
reported: messages on schedule, misses, the simulator's CPU as a fraction of one core, and
how long it waited for a CPU (other load on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from typing import Any

import pytest
import wsproto
from wsproto.events import AcceptConnection, Request

from rtms_fast.protocol import rtms_signature

SESSIONS = int(os.environ.get("RTMS_SIM_BENCH_SESSIONS", "1000"))
DURATION_S = float(os.environ.get("RTMS_SIM_BENCH_DURATION", "10"))
TICK_MS = os.environ.get("RTMS_SIM_BENCH_TICK_MS", "5")
CLIENT_ID, CLIENT_SECRET = "bench-id", "bench-secret"


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields after the command: state is [0]; utime and stime are fields 14 and 15 of stat
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_runqueue_wait_s(pid: int) -> float:
    """Time the process was ready to run but waited for a CPU (other load on the machine)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def _masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    # all-zero masking key: a valid masked client frame whose payload needs no XOR
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


class _Sock:
    """One client socket after the upgrade: a byte buffer and a frame splitter."""

    __slots__ = ("buf", "closed", "frames", "kind", "session", "sock")

    def __init__(self, sock: socket.socket, session: int, kind: str) -> None:
        self.sock, self.session, self.kind = sock, session, kind
        self.buf = bytearray()
        self.frames = 0
        self.closed = False

    def split(self) -> list[tuple[int, bytes]]:
        """Complete server frames in the buffer (server frames are never masked)."""
        out = []
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            hlen = 2
            if b1 == 126:
                if len(buf) - pos < 4:
                    break
                b1 = struct.unpack_from("!H", buf, pos + 2)[0]
                hlen = 4
            elif b1 == 127:
                if len(buf) - pos < 10:
                    break
                b1 = struct.unpack_from("!Q", buf, pos + 2)[0]
                hlen = 10
            end = pos + hlen + b1
            if end > len(buf):
                break
            opcode = buf[pos] & 0x0F
            # audio frames are only counted; everything else is looked at
            if buf[pos + hlen + 12 : pos + hlen + 14] == b"14":
                out.append((opcode, b""))
            else:
                out.append((opcode, bytes(buf[pos + hlen : end])))
            pos = end
        del buf[:pos]
        return out


def _upgrade_all(port: int, paths: list[str]) -> list[socket.socket]:
    """Open and upgrade many sockets at once (pipelined, so a thousand take well under 1 s)."""
    socks, conns = [], []
    for path in paths:
        sock = socket.create_connection(("127.0.0.1", port))
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        sock.sendall(ws.send(Request(host="127.0.0.1", target=path)))
        socks.append(sock)
        conns.append(ws)
    for sock, ws in zip(socks, conns, strict=True):
        while True:
            ws.receive_data(sock.recv(65536))
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                break
    return socks


def _recv_json(s: _Sock) -> dict[str, Any]:
    while True:
        for _, payload in s.split():
            if payload:
                return json.loads(payload)  # type: ignore[no-any-return]
        s.buf += s.sock.recv(65536)


def _path(url: str, port: int) -> str:
    return url.split(str(port), 1)[1]


def _join_all(port: int, bodies: list[dict[str, Any]]) -> tuple[list[_Sock], list[bytes]]:
    """Signaling and media handshakes for every session; returns the sockets and the
    CLIENT_READY_ACK (msg 7) frames, not yet sent."""
    ids = []
    for i, body in enumerate(bodies):
        p = body["payload"]
        sig = rtms_signature(CLIENT_ID, p["meeting_uuid"], p["rtms_stream_id"], CLIENT_SECRET)
        ids.append({"meeting_uuid": p["meeting_uuid"], "rtms_stream_id": p["rtms_stream_id"],
                    "signature": sig, "protocol_version": 1, "sequence": i})
    paths = [_path(b["payload"]["server_urls"], port) for b in bodies]
    sig_socks = [_Sock(sock, i, "signaling") for i, sock in enumerate(_upgrade_all(port, paths))]
    for s in sig_socks:
        s.sock.sendall(_masked_frame(json.dumps({"msg_type": 1, **ids[s.session]}).encode()))
    media_paths = []
    for s in sig_socks:
        resp = _recv_json(s)
        assert resp["status_code"] == 0, resp
        media_paths.append(_path(resp["media_server"]["server_urls"]["audio"], port))
    media = [_Sock(sock, i, "media") for i, sock in enumerate(_upgrade_all(port, media_paths))]
    params = {"audio": {"content_type": 2, "codec": 1, "sample_rate": 1, "channel": 1,
                        "data_opt": 2, "send_rate": 20}}
    for m in media:
        m.sock.sendall(_masked_frame(json.dumps(
            {"msg_type": 3, "media_type": 1, "media_params": params, **ids[m.session]}).encode()))
    for m in media:
        assert _recv_json(m)["status_code"] == 0
    ready = [_masked_frame(json.dumps({"msg_type": 7, "rtms_stream_id": i["rtms_stream_id"]})
                           .encode()) for i in ids]
    return sig_socks + media, ready


def _receive(socks: list[_Sock], deadline: float) -> dict[str, int]:
    sel = selectors.DefaultSelector()
    for s in socks:
        s.sock.setblocking(False)
        sel.register(s.sock, selectors.EVENT_READ, s)
    ended = 0
    keepalives = 0
    open_count = len(socks)
    while open_count and time.monotonic() < deadline:
        for key, _ in sel.select(0.05):
            s = key.data
            try:
                data = s.sock.recv(1 << 18)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(s.sock)
                s.sock.close()
                s.closed = True
                open_count -= 1
                continue
            s.buf += data
            for opcode, payload in s.split():
                if opcode == 0x8:
                    continue
                if not payload:
                    s.frames += 1
                    continue
                msg = json.loads(payload)
                if msg.get("msg_type") == 12:
                    keepalives += 1
                    reply = {"msg_type": 13, "sequence": msg.get("sequence"),
                             "timestamp": msg.get("timestamp")}
                    with contextlib.suppress(OSError):  # the server may have closed it
                        s.sock.send(_masked_frame(json.dumps(reply).encode()))
                elif msg.get("msg_type") == 8 and msg.get("state") == 4:
                    ended += 1
        time.sleep(0.1)  # batch: one pass over the ready sockets per ~100 ms
    sel.close()
    for s in socks:
        if not s.closed:
            s.sock.close()
    audio = [s.frames for s in socks if s.kind == "media"]
    return {"sessions_ended": ended, "keepalives_answered": keepalives,
            "audio_frames_received": sum(audio), "min_frames_per_session": min(audio)}


def _raw_send_anchor_us(sockets: int, rounds: int = 20, size: int = 1000) -> float:
    """CPU microseconds of one bare non-blocking 1 KB send on loopback TCP (median of 3
    passes over `sockets` connections): the floor of any per-socket paced sender here."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(sockets)
    pairs = []
    try:
        for _ in range(sockets):
            c = socket.create_connection(lst.getsockname())
            a, _ = lst.accept()
            a.setblocking(False)
            a.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.setblocking(False)
            pairs.append((a, c))
        data = b"x" * size
        passes = []
        for _ in range(3):
            t0 = time.process_time()
            for _ in range(rounds):
                for a, _ in pairs:
                    a.send(data)
            passes.append((time.process_time() - t0) * 1e6 / (rounds * sockets))
            for _, c in pairs:
                with contextlib.suppress(BlockingIOError):
                    while c.recv(1 << 20):
                        pass
        return sorted(passes)[1]
    finally:
        for a, c in pairs:
            a.close()
            c.close()
        lst.close()


def _run_capacity(sessions: int, duration_s: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "rtms_fast.cli", "simulate", "--port", "0",
           "--sessions", str(sessions), "--duration", str(duration_s), "--codec", "l16",
           "--rate", "16000", "--send-rate", "20", "--client-id", CLIENT_ID,
           "--client-secret", CLIENT_SECRET, "--keepalive-interval", "2",
           "--join-timeout", "60", "--tick-ms", TICK_MS, "--stats"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        bodies = [json.loads(proc.stdout.readline()) for _ in range(sessions)]
        port = int(bodies[0]["payload"]["server_urls"].rsplit(":", 1)[1].split("/", 1)[0])
        t_join = time.monotonic()
        socks, ready = _join_all(port, bodies)
        join_s = time.monotonic() - t_join
        cpu0, wall0 = _proc_cpu_s(proc.pid), time.monotonic()
        wait0, rx_cpu0 = _proc_runqueue_wait_s(proc.pid), sum(os.times()[:2])
        # sessions start over ~1 s (webhooks for a thousand meetings do not arrive in the
        # same millisecond); signaling sockets come first in `socks`
        for s, frame in zip(socks, ready, strict=False):
            s.sock.sendall(frame)
            time.sleep(1.0 / sessions)
        rx = _receive(socks, wall0 + duration_s + 30)
        cpu1, wall1 = _proc_cpu_s(proc.pid), time.monotonic()
        wait1, rx_cpu1 = _proc_runqueue_wait_s(proc.pid), sum(os.times()[:2])
        load1 = os.getloadavg()[0]
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counters = next(json.loads(line)["counters"] for line in err.splitlines()
                    if line.startswith('{"counters"'))
    sched = counters["audio_frames_scheduled"]
    anchor_us = _raw_send_anchor_us(min(sessions, 1000))
    cpu_us_per_msg = (cpu1 - cpu0) * 1e6 / max(1, counters["audio_frames_sent"])
    on_time = counters["audio_frames_sent"] - counters["audio_misses"]
    return {
        "sessions": sessions,
        "duration_s": duration_s,
        "tick_ms": int(TICK_MS),
        "join_all_s": round(join_s, 3),
        "audio_frames_scheduled": sched,
        "audio_frames_sent": counters["audio_frames_sent"],
        "audio_misses": counters["audio_misses"],
        "on_schedule_fraction": on_time / sched if sched else 0.0,
        "max_audio_lag_ms": round(counters["max_audio_lag_ms"], 2),
        "dropped_backpressure": counters["messages_dropped_backpressure"],
        "sweeps_late": counters["sweeps_late"],
        "sweep_busy_s": round(counters["sweep_busy_s"], 3),
        "sim_cpu_s_during_media": round(cpu1 - cpu0, 3),
        "wall_s_during_media": round(wall1 - wall0, 3),
        "sim_cpu_fraction_of_one_core": round((cpu1 - cpu0) / (wall1 - wall0), 3),
        "sim_runqueue_wait_s": round(wait1 - wait0, 3),
        "receiver_cpu_s": round(rx_cpu1 - rx_cpu0, 3),
        "load_average_1min": load1,
        "sim_cpu_us_per_audio_message": round(cpu_us_per_msg, 2),
        "anchor_raw_send_cpu_us": round(anchor_us, 2),
        "ratio_sim_cpu_per_message_to_raw_send": round(cpu_us_per_msg / anchor_us, 2),
        **rx,
    }


@pytest.mark.slow
def test_sim_capacity_1000_sessions(benchmark: Any) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        result.update(_run_capacity(SESSIONS, DURATION_S))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(json.dumps(result, indent=1))
    expected = SESSIONS * round(DURATION_S * 1000 / 20)
    assert result["audio_frames_scheduled"] == expected
    assert result["sessions_ended"] == SESSIONS
    assert result["audio_frames_received"] == result["audio_frames_sent"]
    # on_schedule_fraction (target >= 0.999) is reported, not asserted: it depends on the
    # CPU the machine gives the simulator (see sim_runqueue_wait_s), not only on the code
