"""End-to-end load runs: the simulator in one process, a client in another.

``run_load`` starts ``rtms-fast simulate`` with N sessions, hands the webhook
payloads it prints to a client process (rtms-fast's engine, the naive
trio-websocket baseline, or the official SDK with one process per session, as
the SDK cannot safely run more than one client per process), waits for the
streams to end, and returns one ``LoadResult``: steady-state client CPU per
message and cores used, messages received versus sent, drops, latency
percentiles, and the simulator's own schedule misses and CPU.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from rtms_fast.bench.procstat import cpu_seconds
from rtms_fast.bench.sampler import SteadyState, steady_state
from rtms_fast.bench.timing import PairResult
from rtms_fast.settings import TlsBackendName

CLIENT_KINDS = ("engine", "naive", "sdk")


@dataclass(frozen=True, slots=True)
class LoadResult:
    client: str
    sessions: int
    participants: int
    codec: str
    tls: bool
    sweep_ms: float
    duration_s: float
    messages_sent: int
    messages_received: int
    drops: int
    errors: int
    engine_cpu_s: float  # client CPU in the steady-state window
    wall_s: float  # length of that window
    us_per_msg: float  # the whole client process
    cores_used: float
    latency_p50_ms: float
    latency_p99_ms: float
    sim_cpu_s: float
    sim_misses: int
    latency_samples_ms: list[float] = field(default_factory=list, repr=False)
    #: Who ran media TLS in the client (engine: "native" or "python"; "" without TLS).
    tls_backend: str = ""
    #: CPU per message without the load client's consumer (draining rings, sampling
    #: latency): what the engine itself costs. Equal to us_per_msg for other clients.
    engine_us_per_msg: float = float("nan")
    #: Engine only: the longest a sweep started behind schedule (latency it added beyond
    #: the sweep interval), and the sweeps a whole interval or more late.
    max_sweep_lag_ms: float = 0.0
    late_sweeps: int = 0
    #: TCP segments the host sent per message in the steady window, both directions (Linux,
    #: one client process; NaN otherwise): 1 plus the client's ACKs per message on loopback,
    #: e.g. 1.5 with delayed ACKs (one per two messages), 2 with an ACK per message.
    tcp_segments_per_msg: float = float("nan")
    #: Engine only, over the whole run: reads that found nothing (sweeps that read every
    #: socket without asking epoll) and delayed-ACK re-arms, per message received; each
    #: is a system call. NaN for other clients.
    empty_reads_per_msg: float = float("nan")
    ack_rearms_per_msg: float = float("nan")
    #: Engine only, over the whole run: CPU inside the pump's batched receives per message
    #: received, in us (the kernel's receive path and its ACKs; part of us_per_msg).
    recv_us_per_msg: float = float("nan")
    #: The simulator's keep-alive requests (every socket, every 5 s), the answers it got
    #: (a request sent just before its session ended may go unanswered) and the sockets it
    #: dropped for want of one.
    keepalives_sent: int = 0
    keepalives_answered: int = 0
    keepalive_timeouts: int = 0
    #: Requests the simulator never got an answer to (older than a second when their
    #: socket or session ended), answers later than a second, the slowest round trip.
    keepalives_unanswered: int = 0
    keepalive_answers_late: int = 0
    keepalive_max_rtt_ms: float = 0.0
    #: The engine's side of it: the oldest a request was when the engine answered it (its
    #: clock against the request's timestamp; the simulator's lag reading answers is not in
    #: it). NaN for other clients.
    engine_keepalive_max_lag_ms: float = float("nan")
    #: The engine's drops by reason (``DropReason``), when there were any.
    drops_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def keepalive_label(self) -> str:
        """``answered/sent``, then what went wrong if anything did: requests never
        answered, answered late (> 1 s), or sockets dropped for want of answers. The rest
        of the difference were in flight when the streams ended."""
        label = f"{self.keepalives_answered}/{self.keepalives_sent}"
        faults = [f"{n} {what}" for n, what in (
            (self.keepalives_unanswered, "unanswered"), (self.keepalive_answers_late, "late"),
            (self.keepalive_timeouts, "timed out")) if n]
        return label + (f" ({', '.join(faults)})" if faults else "")

    @property
    def drops_label(self) -> str:
        """The drop count, with its reasons when there were any."""
        if not self.drops_by_reason:
            return str(self.drops)
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.drops_by_reason.items()))
        return f"{self.drops} ({reasons})"

    @property
    def tls_label(self) -> str:
        """``no`` without TLS, else the TLS backend (or ``yes`` when it has none)."""
        return (self.tls_backend or "yes") if self.tls else "no"

    def as_dict(self) -> dict[str, Any]:
        """Every figure except the raw latency samples."""
        out = asdict(self)
        del out["latency_samples_ms"]
        return out


#: Who may run the engine's media TLS in a load run (EngineSettings.tls_backend).
TLS_BACKENDS: tuple[str, ...] = get_args(TlsBackendName)


def load_medians(results: list[LoadResult]) -> list[dict[str, Any]]:
    """Runs of the same configuration (client, sessions, codec, TLS, sweep) summarised:
    median, lowest and highest CPU per message (with and without the consumer), median
    cores, whether every run received everything, drops and the worst simulator lag. In
    the order the configurations first ran."""
    groups: dict[tuple[Any, ...], list[LoadResult]] = {}
    for r in results:
        groups.setdefault((r.client, r.sessions, r.codec, r.tls_label, r.sweep_ms), []).append(r)
    out = []
    for (client, sessions, codec, tls, sweep_ms), runs in groups.items():
        cpu = [r.us_per_msg for r in runs]
        engine = [r.engine_us_per_msg for r in runs]
        out.append({
            "client": client, "sessions": sessions, "codec": codec, "tls": tls,
            "sweep_ms": sweep_ms, "runs": len(runs),
            "us_per_msg_median": statistics.median(cpu),
            "us_per_msg_min": min(cpu), "us_per_msg_max": max(cpu),
            "engine_us_per_msg_median": statistics.median(engine),
            "engine_us_per_msg_min": min(engine), "engine_us_per_msg_max": max(engine),
            "cores_median": statistics.median(r.cores_used for r in runs),
            "all_received": all(r.messages_received == r.messages_sent for r in runs),
            "drops": sum(r.drops for r in runs),
            "sim_misses_max": max(r.sim_misses for r in runs),
            "tcp_segments_per_msg_median": statistics.median(
                r.tcp_segments_per_msg for r in runs),
            "empty_reads_per_msg_median": statistics.median(
                r.empty_reads_per_msg for r in runs),
            "ack_rearms_per_msg_median": statistics.median(r.ack_rearms_per_msg for r in runs),
            "recv_us_per_msg_median": statistics.median(r.recv_us_per_msg for r in runs),
            "keepalives_unanswered": sum(r.keepalives_unanswered for r in runs),
            "keepalive_answers_late": sum(r.keepalive_answers_late for r in runs),
            "keepalive_timeouts": sum(r.keepalive_timeouts for r in runs),
            "keepalive_max_rtt_ms": max(r.keepalive_max_rtt_ms for r in runs),
            "engine_keepalive_max_lag_ms": max(r.engine_keepalive_max_lag_ms for r in runs),
        })
    return out


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


def _start_simulator(tmp: Path, sessions: int, participants: int, codec: str,
                     duration_s: float, tls: bool, send_rate_ms: int,
                     seed: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    cmd = [sys.executable, "-m", "rtms_fast", "simulate", "--sessions", str(sessions),
           "--participants", str(participants), "--codec", codec, "--duration", str(duration_s),
           "--send-rate", str(send_rate_ms), "--seed", str(seed), "--stats",
           "--join-timeout", "120", "--keepalive-interval", "5"]
    if codec == "l16":
        cmd += ["--rate", "16000"]
    if tls:
        cmd += ["--tls", "--ca-file", str(tmp / "ca.pem")]
    with open(tmp / "sim.err", "wb") as stderr:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, cwd=tmp)
    assert proc.stdout is not None
    lines: list[str] = []
    while len(lines) < sessions:
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(f"simulator exited early: {(tmp / 'sim.err').read_text()[-2000:]}")
        lines.append(line.decode())
    return proc, lines


def _sim_counters(tmp: Path) -> dict[str, Any]:
    for line in reversed((tmp / "sim.err").read_text(encoding="utf-8").splitlines()):
        if line.startswith('{"counters"'):
            counters: dict[str, Any] = json.loads(line)["counters"]
            return counters
    return {}


def _client_cmd(kind: str, payloads: Path, out: Path, codec: str, send_rate_ms: int,
                ca_file: str | None, sweep_ms: float, deadline_s: float,
                tls_backend: str = "native") -> list[str]:
    cmd = [sys.executable, "-m", "rtms_fast.bench.client_proc", kind, "--payloads",
           str(payloads), "--out", str(out), "--codec", codec, "--send-rate", str(send_rate_ms),
           "--sweep-ms", str(sweep_ms), "--deadline-s", str(deadline_s),
           "--tls-backend", tls_backend]
    if ca_file:
        cmd += ["--ca-file", ca_file]
    return cmd


def run_load(client: str = "engine", sessions: int = 100, duration_s: float = 10.0,
             codec: str = "pcma", participants: int = 1, tls: bool = False,
             send_rate_ms: int = 20, sweep_ms: float = 20.0, seed: int = 1,
             tls_backend: str = "native") -> LoadResult:
    if client not in CLIENT_KINDS:
        raise ValueError(f"client must be one of {CLIENT_KINDS}, not {client!r}")
    with tempfile.TemporaryDirectory(prefix="rtms-load-") as tmp_name:
        tmp = Path(tmp_name)
        sim, lines = _start_simulator(tmp, sessions, participants, codec, duration_s, tls,
                                      send_rate_ms, seed)
        sim_cpu0 = cpu_seconds(sim.pid)
        ca_file = str(tmp / "ca.pem") if tls else None
        deadline = duration_s + 60.0
        results: list[dict[str, Any]] = []
        try:
            if client == "sdk":
                results = _run_sdk_clients(tmp, lines, codec, send_rate_ms, ca_file, deadline)
            else:
                payloads = tmp / "payloads.jsonl"
                payloads.write_text("".join(lines), encoding="utf-8")
                out = tmp / "client.json"
                subprocess.run(_client_cmd(client, payloads, out, codec, send_rate_ms, ca_file,
                                           sweep_ms, deadline, tls_backend), check=True,
                                           cwd=tmp,
                               timeout=deadline + 30)
                results = [json.loads(out.read_text(encoding="utf-8"))]
            sim_cpu1 = cpu_seconds(sim.pid)
            sim.wait(timeout=30)
        finally:
            if sim.poll() is None:
                sim.kill()
                sim.wait()
            if sim.stdout is not None:
                sim.stdout.close()
        counters = _sim_counters(tmp)
    steady = [steady_state([tuple(s) for s in r["cpu_samples"]]) for r in results]
    total = SteadyState(
        wall_s=max((s.wall_s for s in steady), default=0.0),
        cpu_s=sum(s.cpu_s for s in steady),
        messages=sum(s.messages for s in steady),
        consumer_cpu_s=sum(s.consumer_cpu_s for s in steady),
    )
    latencies = [x for r in results for x in r["latencies_ms"]]
    return LoadResult(
        client=client, sessions=sessions, participants=participants, codec=codec, tls=tls,
        sweep_ms=sweep_ms if client == "engine" else 0.0, duration_s=duration_s,
        # multi-stream audio: every frame carries one message per active speaker (<= 3)
        messages_sent=int(counters.get("audio_frames_sent", 0)) * min(participants, 3),
        messages_received=sum(int(r["messages"]) for r in results),
        drops=sum(int(r.get("drops") or 0) for r in results),
        errors=sum(int(r.get("errors") or 0) for r in results),
        engine_cpu_s=total.cpu_s, wall_s=total.wall_s, us_per_msg=total.us_per_msg,
        cores_used=sum(s.cores for s in steady if s.wall_s > 0),
        latency_p50_ms=_percentile(latencies, 0.50), latency_p99_ms=_percentile(latencies, 0.99),
        sim_cpu_s=sim_cpu1 - sim_cpu0, sim_misses=int(counters.get("audio_misses", 0)),
        latency_samples_ms=latencies,
        tls_backend=tls_backend if tls and client == "engine" else "",
        engine_us_per_msg=total.engine_us_per_msg,
        max_sweep_lag_ms=max((float(r.get("pump_max_sweep_lag_ms") or 0.0) for r in results),
                             default=0.0),
        late_sweeps=sum(int(r.get("pump_late_sweeps") or 0) for r in results),
        # host-wide counters: one client process's window is the whole story, several
        # processes' windows (the SDK) overlap
        tcp_segments_per_msg=(steady[0].tcp_segments_per_msg if len(steady) == 1
                              else float("nan")),
        empty_reads_per_msg=_per_message(results, "pump_empty_reads"),
        ack_rearms_per_msg=_per_message(results, "pump_ack_rearms"),
        recv_us_per_msg=1e6 * _per_message(results, "pump_recv_cpu_s"),
        keepalives_sent=int(counters.get("keepalives_sent", 0)),
        keepalives_answered=int(counters.get("keepalive_answers", 0)),
        keepalive_timeouts=int(counters.get("keepalive_timeouts", 0)),
        keepalives_unanswered=int(counters.get("keepalives_unanswered", 0)),
        keepalive_answers_late=int(counters.get("keepalive_answers_late", 0)),
        keepalive_max_rtt_ms=float(counters.get("keepalive_max_rtt_ms", 0.0)),
        engine_keepalive_max_lag_ms=max(
            (float(r["keepalive_max_lag_ms"]) for r in results
             if r.get("keepalive_max_lag_ms") is not None), default=float("nan")),
        drops_by_reason={k: int(v) for r in results
                         for k, v in (r.get("drops_by_reason") or {}).items() if v},
    )


def _per_message(results: list[dict[str, Any]], key: str) -> float:
    """A client counter summed over its processes, per message received (NaN when the
    client does not report it or nothing arrived)."""
    if not results or any(key not in r for r in results):
        return float("nan")
    received = sum(int(r["messages"]) for r in results)
    return sum(float(r[key]) for r in results) / received if received else float("nan")


def _run_sdk_clients(tmp: Path, lines: list[str], codec: str, send_rate_ms: int,
                     ca_file: str | None, deadline_s: float) -> list[dict[str, Any]]:
    procs = []
    for i, line in enumerate(lines):
        work = tmp / f"sdk{i}"
        work.mkdir()
        payloads = work / "payload.jsonl"
        payloads.write_text(line, encoding="utf-8")
        cmd = _client_cmd("sdk", payloads, work / "out.json", codec, send_rate_ms, ca_file,
                          0.0, deadline_s)
        env = dict(os.environ)
        procs.append((work, subprocess.Popen(cmd, cwd=work, env=env,
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL)))
    results = []
    end = time.monotonic() + deadline_s + 30
    for work, proc in procs:
        try:
            proc.wait(timeout=max(1.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out = work / "out.json"
        if out.exists():
            results.append(json.loads(out.read_text(encoding="utf-8")))
        else:
            results.append({"messages": 0, "errors": 1, "cpu_samples": [], "latencies_ms": []})
    return results


def measure_engine_vs_naive(sessions: int = 200, duration_s: float = 5.0,
                            codec: str = "pcma") -> PairResult:
    """End-to-end CPU per message: rtms-fast's engine against the naive trio-websocket
    client at the same load, one after the other from the same simulator settings.

    The ratio is naive us/msg over engine us/msg (how many times cheaper the engine is),
    so a slower engine lowers it, as for the kernel cases.
    """
    engine = run_load("engine", sessions=sessions, duration_s=duration_s, codec=codec)
    naive = run_load("naive", sessions=sessions, duration_s=duration_s, codec=codec)
    if engine.messages_received < engine.messages_sent or not engine.us_per_msg > 0:
        raise RuntimeError(f"engine run lost messages or measured nothing: {engine.as_dict()}")
    return PairResult(
        name="load_engine_vs_naive", unit="msgs",
        subject_per_s=1e6 / engine.us_per_msg, anchor_per_s=1e6 / naive.us_per_msg,
        ratio=naive.us_per_msg / engine.us_per_msg, rounds=1,
    )
