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

from rtms_fast.bench.procstat import own_cpu_seconds, tcp_segments_sent


class CounterSampler:
    """A daemon thread recording (wall_s, cpu_s, messages, consumer_cpu_s, tcp_segments)
    every ``interval_s``; ``consumer_cpu`` is the CPU the client spent consuming (draining
    rings), which is the application's, not the engine's (0 when not given);
    ``tcp_segments`` is the host's count of TCP segments sent (-1 where unknown)."""

    def __init__(self, messages: Callable[[], int], interval_s: float = 0.5,
                 consumer_cpu: Callable[[], float] | None = None) -> None:
        self._messages = messages
        self._consumer_cpu = consumer_cpu
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, float, int, float, int]] = []
        self._thread = threading.Thread(target=self._run, name="counter-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def _take(self) -> None:
        consumer = self._consumer_cpu() if self._consumer_cpu is not None else 0.0
        self.samples.append((time.monotonic(), own_cpu_seconds(), self._messages(), consumer,
                             tcp_segments_sent()))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._take()


@dataclass(frozen=True, slots=True)
class SteadyState:
    wall_s: float
    cpu_s: float
    messages: int
    consumer_cpu_s: float = 0.0  # of cpu_s, spent by the client's consumer
    tcp_segments: int = -1  # TCP segments the host sent in the window (-1: unknown)

    @property
    def us_per_msg(self) -> float:
        return 1e6 * self.cpu_s / self.messages if self.messages else float("nan")

    @property
    def engine_us_per_msg(self) -> float:
        """CPU per message without the consumer's share."""
        return (1e6 * (self.cpu_s - self.consumer_cpu_s) / self.messages if self.messages
                else float("nan"))

    @property
    def tcp_segments_per_msg(self) -> float:
        """Host-wide TCP segments sent per message (NaN when unknown): on loopback one is
        the message's own segment, the rest mostly the receiver's ACKs."""
        return (self.tcp_segments / self.messages if self.messages and self.tcp_segments >= 0
                else float("nan"))

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan")


def steady_state(samples: list[tuple[float, ...]], trim_s: float = 1.0) -> SteadyState:
    """The window from ``trim_s`` after messages start to ``trim_s`` before they stop.
    Samples are (wall_s, cpu_s, messages), optionally followed by consumer_cpu_s and
    tcp_segments (see ``CounterSampler``)."""
    flowing = [i for i in range(1, len(samples)) if samples[i][2] > samples[i - 1][2]]
    if not flowing:
        return SteadyState(0.0, 0.0, 0)
    t_first = samples[flowing[0] - 1][0]
    t_last = samples[flowing[-1]][0]
    window = [s for s in samples if t_first + trim_s <= s[0] <= t_last - trim_s]
    if len(window) < 2:  # a short run: use the whole flowing span
        window = samples[flowing[0] - 1 : flowing[-1] + 1]
    first, last = window[0], window[-1]
    consumer = (last[3] - first[3]) if len(first) > 3 and len(last) > 3 else 0.0
    segments = -1
    if len(first) > 4 and len(last) > 4 and first[4] >= 0 and last[4] >= 0:
        segments = int(last[4] - first[4])
    return SteadyState(wall_s=last[0] - first[0], cpu_s=last[1] - first[1],
                       messages=int(last[2] - first[2]), consumer_cpu_s=consumer,
                       tcp_segments=segments)
