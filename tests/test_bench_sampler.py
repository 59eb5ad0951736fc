"""Steady-state accounting of load runs: the plateau, and the consumer's share apart."""

from __future__ import annotations

import math
import socket
import sys

import pytest

from rtms_fast.bench.procstat import tcp_segments_sent
from rtms_fast.bench.sampler import steady_state


def test_the_plateau_and_the_consumer_share() -> None:
    # (wall s, process CPU s, messages, consumer CPU s): joining, 4 s at 1000 msg/s, tail
    samples = [(0.0, 0.0, 0, 0.0), (1.0, 0.5, 0, 0.0)]
    for k in range(1, 6):
        samples.append((1.0 + k, 0.5 + 0.01 * k, 1000 * k, 0.002 * k))
    samples += [(7.0, 0.56, 5000, 0.01), (8.0, 0.56, 5000, 0.01)]
    steady = steady_state(samples, trim_s=1.0)
    # window: from 1 s after messages start (t=2) to 1 s before they stop (t=5)
    assert steady.wall_s == 3.0 and steady.messages == 3000
    assert math.isclose(steady.cpu_s, 0.03) and math.isclose(steady.consumer_cpu_s, 0.006)
    assert math.isclose(steady.us_per_msg, 10.0)
    assert math.isclose(steady.engine_us_per_msg, 8.0)


def test_samples_without_a_consumer_column() -> None:
    samples = [(0.0, 0.0, 0), (1.0, 0.1, 100), (2.0, 0.2, 200), (3.0, 0.3, 300),
               (4.0, 0.4, 400), (5.0, 0.4, 400)]
    steady = steady_state(samples)
    assert steady.consumer_cpu_s == 0.0
    assert math.isclose(steady.engine_us_per_msg, steady.us_per_msg)


def test_tcp_segments_over_the_plateau() -> None:
    # (wall s, CPU s, messages, consumer CPU s, host TCP segments sent)
    samples = [(0.0, 0.0, 0, 0.0, 10), (1.0, 0.1, 0, 0.0, 50)]
    for k in range(1, 6):
        samples.append((1.0 + k, 0.1 + 0.01 * k, 100 * k, 0.0, 50 + 150 * k))
    samples += [(7.0, 0.16, 500, 0.0, 800), (8.0, 0.16, 500, 0.0, 800)]
    steady = steady_state(samples, trim_s=1.0)
    assert steady.messages == 300 and steady.tcp_segments == 450
    assert math.isclose(steady.tcp_segments_per_msg, 1.5)
    unknown = steady_state([(*s[:4], -1) for s in samples], trim_s=1.0)
    assert unknown.tcp_segments == -1 and math.isnan(unknown.tcp_segments_per_msg)
    assert math.isnan(steady_state([s[:4] for s in samples]).tcp_segments_per_msg)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/net/snmp")
def test_tcp_segments_sent_counts_this_hosts_segments() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as client:
        server, _ = listener.accept()
        with server:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            before = tcp_segments_sent()
            for _ in range(20):
                client.sendall(b"x" * 100)
                assert server.recv(100)
            assert tcp_segments_sent() - before >= 20
