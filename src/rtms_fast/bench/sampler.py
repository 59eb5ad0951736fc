"""Steady-state CPU accounting: sample (time, CPU seconds, messages) and pick the plateau.

A load run has a ramp (joining), a steady state (media flowing at the paced
rate) and a tail (streams ending). Per-message CPU is only meaningful in the
steady state, so every client samples its own counters twice a second and
the analysis keeps the window where messages were flowing at full rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rtms_fast.bench.procstat import own_cpu_seconds


class CounterSampler:
    """A daemon thread recording (wall_s, cpu_s, messages) every ``interval_s``."""

    def __init__(self, messages: Callable[[], int], interval_s: float = 0.5) -> None:
        self._messages = messages
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, float, int]] = []
        self._thread = threading.Thread(target=self._run, name="counter-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def _take(self) -> None:
        self.samples.append((time.monotonic(), own_cpu_seconds(), self._messages()))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._take()


@dataclass(frozen=True, slots=True)
class SteadyState:
    wall_s: float
    cpu_s: float
    messages: int

    @property
    def us_per_msg(self) -> float:
        return 1e6 * self.cpu_s / self.messages if self.messages else float("nan")

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


def steady_state(samples: list[tuple[float, float, int]], trim_s: float = 1.0) -> SteadyState:
    """The window from ``trim_s`` after messages start to ``trim_s`` before they stop."""
    flowing = [i for i in range(1, len(samples)) if samples[i][2] > samples[i - 1][2]]
    if not flowing:
        return SteadyState(0.0, 0.0, 0)
    t_first = samples[flowing[0] - 1][0]
    t_last = samples[flowing[-1]][0]
    window = [s for s in samples if t_first + trim_s <= s[0] <= t_last - trim_s]
    if len(window) < 2:  # a short run: use the whole flowing span
        window = samples[flowing[0] - 1 : flowing[-1] + 1]
    (t0, c0, m0), (t1, c1, m1) = window[0], window[-1]
    return SteadyState(wall_s=t1 - t0, cpu_s=c1 - c0, messages=m1 - m0)
