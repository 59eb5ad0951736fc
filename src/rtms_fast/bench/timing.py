"""Interleaved subject/anchor timing with medians: the measuring core of every kernel bench.

Never asserts anything about speed; it only measures and returns numbers.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PairResult:
    """Median throughputs of a subject and its anchor, measured interleaved in one run."""

    name: str
    unit: str
    subject_per_s: float
    anchor_per_s: float
    ratio: float  # median of per-round subject/anchor throughput ratios
    rounds: int

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "name": self.name,
            "unit": self.unit,
            "subject_per_s": self.subject_per_s,
            "anchor_per_s": self.anchor_per_s,
            "ratio": self.ratio,
            "rounds": self.rounds,
        }


def _calls_for(fn: Callable[[], object], target_s: float) -> int:
    """How many calls of ``fn`` take about ``target_s`` (at least one)."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target_s / 4 or calls >= 1 << 20:
            return max(1, int(calls * target_s / max(elapsed, 1e-9)))
        calls *= 4


def _timed(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def measure_pair(
    name: str,
    subject: Callable[[], object],
    anchor: Callable[[], object],
    items_subject: float,
    items_anchor: float | None = None,
    *,
    unit: str = "items",
    rounds: int = 7,
    round_s: float = 0.02,
) -> PairResult:
    """Time ``subject`` and ``anchor`` alternately for ``rounds`` rounds.

    ``items_*`` is the work one call does (samples, messages, ...). Each round
    times both back to back, so a burst of noise from the other core hits both;
    the ratio is taken per round and the median reported.
    """
    items_anchor = items_subject if items_anchor is None else items_anchor
    subject()  # warm caches and lazy initialisation outside the timed region
    anchor()
    calls_s = _calls_for(subject, round_s)
    calls_a = _calls_for(anchor, round_s)
    rates_s: list[float] = []
    rates_a: list[float] = []
    ratios: list[float] = []
    for _ in range(rounds):
        rs = items_subject * calls_s / _timed(subject, calls_s)
        ra = items_anchor * calls_a / _timed(anchor, calls_a)
        rates_s.append(rs)
        rates_a.append(ra)
        ratios.append(rs / ra)
    return PairResult(
        name=name,
        unit=unit,
        subject_per_s=statistics.median(rates_s),
        anchor_per_s=statistics.median(rates_a),
        ratio=statistics.median(ratios),
        rounds=rounds,
    )
