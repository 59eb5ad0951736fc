"""Steady-state accounting of load runs: the plateau, and the consumer's share apart."""

from __future__ import annotations

import math

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
