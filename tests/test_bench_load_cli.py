"""`rtms-fast bench load`: rounds of every configuration, several TLS backends, medians."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rtms_fast.bench.load import LoadResult, _per_message, load_medians
from rtms_fast.tls import native_tls_available


def _result(**changes: object) -> LoadResult:
    base = LoadResult(
        client="engine", sessions=10, participants=1, codec="pcma", tls=True, sweep_ms=20.0,
        duration_s=1.0, messages_sent=500, messages_received=500, drops=0, errors=0,
        engine_cpu_s=0.1, wall_s=1.0, us_per_msg=10.0, cores_used=0.1, latency_p50_ms=30.0,
        latency_p99_ms=40.0, sim_cpu_s=0.2, sim_misses=0, tls_backend="native",
        engine_us_per_msg=9.0, tcp_segments_per_msg=1.5)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_medians_group_by_configuration_in_first_run_order() -> None:
    runs = [_result(us_per_msg=12.0, engine_us_per_msg=11.0, sim_misses=3),
            _result(tls_backend="native-openssl", us_per_msg=20.0),
            _result(us_per_msg=10.0, engine_us_per_msg=9.0, cores_used=0.3),
            _result(tls_backend="native-openssl", us_per_msg=16.0, messages_received=499,
                    drops=1),
            _result(us_per_msg=11.0, engine_us_per_msg=10.5)]
    native, openssl = load_medians(runs)
    assert (native["tls"], native["runs"]) == ("native", 3)
    assert (native["us_per_msg_median"], native["us_per_msg_min"],
            native["us_per_msg_max"]) == (11.0, 10.0, 12.0)
    assert native["engine_us_per_msg_median"] == 10.5
    assert native["cores_median"] == 0.1
    assert native["all_received"] and native["drops"] == 0 and native["sim_misses_max"] == 3
    assert (openssl["tls"], openssl["runs"], openssl["us_per_msg_median"]) == (
        "native-openssl", 2, 18.0)
    assert not openssl["all_received"] and openssl["drops"] == 1
    assert native["tcp_segments_per_msg_median"] == 1.5  # the base result's


def test_keepalives_and_drops_are_reported_per_run_and_summarised() -> None:
    runs = [_result(keepalives_sent=40, keepalives_answered=38, keepalive_max_rtt_ms=3.0),
            _result(keepalives_sent=40, keepalives_answered=37, keepalives_unanswered=1,
                    keepalive_answers_late=2, keepalive_timeouts=1, keepalive_max_rtt_ms=1500.0,
                    drops=3, drops_by_reason={"after_close": 2, "ring_overflow": 1})]
    assert runs[0].keepalive_label == "38/40" and runs[0].drops_label == "0"
    assert runs[1].keepalive_label == "37/40 (1 unanswered, 2 late, 1 timed out)"
    assert runs[1].drops_label == "3 (after_close 2, ring_overflow 1)"
    (summary,) = load_medians(runs)
    assert (summary["keepalives_unanswered"], summary["keepalive_answers_late"],
            summary["keepalive_timeouts"], summary["keepalive_max_rtt_ms"]) == (1, 2, 1, 1500.0)


def test_pump_counters_per_message_sum_the_processes() -> None:
    results = [{"messages": 300, "pump_ack_rearms": 6, "pump_empty_reads": 30,
                "pump_recv_cpu_s": 0.001},
               {"messages": 100, "pump_ack_rearms": 2, "pump_empty_reads": 0,
                "pump_recv_cpu_s": 0.0002}]
    assert _per_message(results, "pump_ack_rearms") == 8 / 400
    assert _per_message(results, "pump_empty_reads") == 30 / 400
    assert math.isclose(_per_message(results, "pump_recv_cpu_s"), 0.0012 / 400)
    assert math.isnan(_per_message([{"messages": 10}], "pump_ack_rearms"))  # not reported
    assert math.isnan(_per_message([{"messages": 0, "pump_ack_rearms": 1}], "pump_ack_rearms"))
    assert math.isnan(_per_message([], "pump_ack_rearms"))
    runs = [_result(ack_rearms_per_msg=0.1, empty_reads_per_msg=0.02, recv_us_per_msg=3.0),
            _result(ack_rearms_per_msg=0.3, empty_reads_per_msg=0.01, recv_us_per_msg=4.0),
            _result(ack_rearms_per_msg=0.2, empty_reads_per_msg=0.03, recv_us_per_msg=2.0)]
    (summary,) = load_medians(runs)
    assert (summary["ack_rearms_per_msg_median"], summary["empty_reads_per_msg_median"],
            summary["recv_us_per_msg_median"]) == (0.2, 0.02, 3.0)


def _bench(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtms_fast", "bench", "load", "--report-dir", str(tmp), *args],
        capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.skipif(not native_tls_available(), reason="built without OpenSSL")
def test_rounds_interleave_the_backends(tmp_path: Path) -> None:
    done = _bench("--sessions", "2", "--duration", "1", "--tls", "--tls-backend",
                  "native,native-openssl", "--repeats", "2", "--json", tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert [r["tls_backend"] for r in summary["runs"]] == [
        "native", "native-openssl", "native", "native-openssl"]
    assert all(r["messages_received"] == r["messages_sent"] > 0 for r in summary["runs"])
    assert all(r["keepalive_timeouts"] == 0 and r["keepalives_unanswered"] == 0
               for r in summary["runs"])
    if sys.platform.startswith("linux"):  # the host's TCP segments per message, measured
        assert all(r["tcp_segments_per_msg"] > 0 for r in summary["runs"])
        # delayed ACKs are set at least once per socket before its first read
        assert all(r["ack_rearms_per_msg"] > 0 for r in summary["runs"])
        assert all(0 < r["recv_us_per_msg"] < r["us_per_msg"] for r in summary["runs"])
    assert all(r["empty_reads_per_msg"] >= 0 for r in summary["runs"])
    assert [(m["tls"], m["runs"]) for m in summary["medians"]] == [
        ("native", 2), ("native-openssl", 2)]
    report = (tmp_path / "load.md").read_text()
    assert "Medians of 2 rounds" in report


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    done = _bench("--sessions", "1", "--tls", "--tls-backend", "native,bogus", tmp=tmp_path)
    assert done.returncode == 2
    assert "--tls-backend takes native, native-openssl, python" in done.stderr
