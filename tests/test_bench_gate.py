"""The regression gate: its decision rule, its baseline file, and that it catches a slowdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtms_fast.bench.gate import load_baseline, run_gate, save_baseline
from rtms_fast.bench.kernels import CASES, E2E_CASES, GATED_CASES, run_case
from rtms_fast.bench.timing import PairResult


def _fixed(ratios: dict[str, list[float]]):  # type: ignore[no-untyped-def]
    calls: dict[str, int] = {}

    def measure(name: str) -> PairResult:
        i = calls.get(name, 0)
        calls[name] = i + 1
        r = ratios[name][i]
        return PairResult(name, "items", r * 100.0, 100.0, r, 1)

    return measure


def test_gate_passes_within_threshold_and_fails_beyond() -> None:
    baseline = {"a": {"ratio": 2.0, "threshold": 0.35}, "b": {"ratio": 2.0, "threshold": 0.35}}
    # a: median 1.4 = -30 % (inside 35 %); b: median 1.2 = -40 % (beyond).
    measure = _fixed({"a": [1.4, 0.1, 3.0], "b": [1.2, 5.0, 1.1]})
    outcomes = {o.name: o for o in run_gate(["a", "b"], measure, baseline, repeats=3)}
    assert outcomes["a"].ratio == pytest.approx(1.4) and outcomes["a"].passed
    assert outcomes["b"].ratio == pytest.approx(1.2) and not outcomes["b"].passed
    assert outcomes["b"].change == pytest.approx(-0.4)


def test_a_case_without_baseline_is_reported_not_gated() -> None:
    outcome = run_gate(["new"], _fixed({"new": [0.01]}), {}, repeats=1)[0]
    assert outcome.baseline_ratio is None and outcome.passed


def test_baseline_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    outcomes = run_gate(["a"], _fixed({"a": [1.5]}), {}, repeats=1)
    save_baseline(path, outcomes, 0.3)
    loaded = load_baseline(path)
    assert loaded["a"]["ratio"] == pytest.approx(1.5)
    assert loaded["a"]["threshold"] == pytest.approx(0.3)
    assert json.loads(path.read_text())["cases"]["a"]["unit"] == "items"


def test_committed_baseline_covers_every_gated_case() -> None:
    baseline = load_baseline(Path(__file__).parents[1] / "benchmarks" / "baseline.json")
    assert set(GATED_CASES) <= set(baseline)
    assert set(GATED_CASES) <= set(CASES) | set(E2E_CASES)


def test_gate_catches_an_injected_slowdown(monkeypatch: pytest.MonkeyPatch) -> None:
    # Measure the real kernel now, then inject a 4x slowdown of the same kernel: the
    # ratio falls to about a quarter, far past the 35 % threshold, so the gate fails.
    baseline_outcome = run_gate(["g711_decode"], lambda n: run_case(n, rounds=5), {},
                                repeats=3)[0]
    baseline = {"g711_decode": {"ratio": baseline_outcome.ratio, "threshold": 0.35}}
    monkeypatch.setenv("RTMS_BENCH_SLOWDOWN", "g711_decode=4")
    slowed = run_gate(["g711_decode"], lambda n: run_case(n, rounds=5), baseline, repeats=3)[0]
    assert not slowed.passed, (slowed.ratio, baseline_outcome.ratio)
    assert slowed.change is not None and slowed.change < -0.35
