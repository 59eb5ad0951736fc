"""The performance regression gate.

For each gated case the gate measures the subject and its anchor interleaved
(``timing.measure_pair``), repeats that ``repeats`` times, and takes the median
ratio subject/anchor. It fails a case when that median falls below the stored
baseline ratio by more than the threshold:

    fail  if  median_ratio < baseline_ratio * (1 - threshold)

Why ratios: an anchor run in the same process, interleaved round by round,
slows down with the machine, so the ratio is far steadier than a raw time on a
shared 2-core box. Why the default threshold of 0.35: in four back-to-back gate
runs on a 2-core development machine with other work on it (load average
1.5-2.7), each case's median ratio stayed within 7 % of its mean; across a
baseline run and a later clean-clone CI run the worst downward move of any case
was -16 % (resample_block) and upward moves reached +56 % (base64_decode, which
cannot fail the gate). A 35 % allowance sits about twice the worst downward
noise seen, while a genuine 2x slowdown (the ratio halves, -50 %) still fails
even with that noise on top; ``tests/test_bench_gate.py`` injects a 4x slowdown
and checks that the gate fails. The end-to-end case (engine vs naive client CPU
per message at 200 sessions) is noisier: 10 runs of the same code at different
times gave ratios of 5.6 to 7.5, so its baseline is the median of those runs
rather than one measurement.

Updating the baseline is deliberate: ``rtms-fast bench gate --update-baseline``
rewrites ``benchmarks/baseline.json`` from a fresh measurement; commit it with
a note saying why the expected ratio changed.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rtms_fast.bench.timing import PairResult

DEFAULT_THRESHOLD = 0.35


@dataclass(frozen=True, slots=True)
class GateOutcome:
    name: str
    ratio: float
    baseline_ratio: float | None
    threshold: float
    subject_per_s: float
    anchor_per_s: float
    unit: str

    @property
    def passed(self) -> bool:
        if self.baseline_ratio is None:
            return True
        return self.ratio >= self.baseline_ratio * (1.0 - self.threshold)

    @property
    def change(self) -> float | None:
        """Relative change of the ratio against the baseline (-0.2 = 20 % slower)."""
        if self.baseline_ratio is None:
            return None
        return self.ratio / self.baseline_ratio - 1.0


def load_baseline(path: Path) -> dict[str, dict[str, float]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    cases = data.get("cases", {})
    if not isinstance(cases, dict):
        raise ValueError(f"{path}: 'cases' must be an object")
    return cases


def save_baseline(path: Path, outcomes: Iterable[GateOutcome], threshold: float) -> None:
    cases = {
        o.name: {"ratio": round(o.ratio, 4), "threshold": threshold,
                 "subject_per_s": round(o.subject_per_s), "anchor_per_s": round(o.anchor_per_s),
                 "unit": o.unit}
        for o in outcomes
    }
    body = {
        "about": "Median subject/anchor throughput ratios; see rtms_fast.bench.gate.",
        "cases": cases,
    }
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def run_gate(
    cases: Iterable[str],
    measure: Callable[[str], PairResult],
    baseline: dict[str, dict[str, float]],
    repeats: int = 3,
    threshold: float | None = None,
) -> list[GateOutcome]:
    """Measure every case ``repeats`` times; compare the median ratio with the baseline."""
    outcomes = []
    for name in cases:
        results = [measure(name) for _ in range(repeats)]
        base = baseline.get(name)
        case_threshold = threshold
        if case_threshold is None:
            case_threshold = DEFAULT_THRESHOLD
            if base:
                case_threshold = float(base.get("threshold", DEFAULT_THRESHOLD))
        outcomes.append(
            GateOutcome(
                name=name,
                ratio=statistics.median(r.ratio for r in results),
                baseline_ratio=float(base["ratio"]) if base else None,
                threshold=case_threshold,
                subject_per_s=statistics.median(r.subject_per_s for r in results),
                anchor_per_s=statistics.median(r.anchor_per_s for r in results),
                unit=results[0].unit,
            )
        )
    return outcomes


def format_outcomes(outcomes: Iterable[GateOutcome]) -> str:
    lines = [f"{'case':<22} {'subject/s':>12} {'anchor/s':>12} {'ratio':>8} {'baseline':>9} "
             f"{'change':>8}  result"]
    for o in outcomes:
        base = f"{o.baseline_ratio:.3f}" if o.baseline_ratio is not None else "-"
        change = f"{o.change:+.1%}" if o.change is not None else "-"
        verdict = "ok" if o.passed else f"REGRESSION (> {o.threshold:.0%} below baseline)"
        lines.append(f"{o.name:<22} {o.subject_per_s:>12.4g} {o.anchor_per_s:>12.4g} "
                     f"{o.ratio:>8.3f} {base:>9} {change:>8}  {verdict}")
    return "\n".join(lines)
