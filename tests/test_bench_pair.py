"""`rtms-fast bench pair`: two engine processes at once on halves of one simulator."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rtms_fast.bench.pair import CURRENT_SRC, check_tree, run_pair


def test_check_tree_wants_a_built_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rtms_fast package"):
        check_tree(tmp_path)
    (tmp_path / "rtms_fast").mkdir()
    (tmp_path / "rtms_fast" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match=r"build\.py"):
        check_tree(tmp_path)
    assert check_tree(CURRENT_SRC) == CURRENT_SRC


def test_pair_of_the_same_code_measures_both_halves() -> None:
    rounds = run_pair(CURRENT_SRC, sessions=8, duration_s=3.0, rounds=2)
    assert len(rounds) == 2
    for r in rounds:
        # every message of each half reached its engine, none dropped
        assert r.current_messages == r.baseline_messages == 8 * 150
        assert r.current_drops == r.baseline_drops == 0
        assert r.current_us > 0 and r.baseline_us > 0 and math.isfinite(r.ratio)


def test_cli_refuses_a_missing_or_unbuilt_baseline(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "rtms_fast", "bench", "pair", "--report-dir", str(tmp_path)]
    done = subprocess.run(base, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--baseline-src" in done.stderr
    done = subprocess.run([*base, "--baseline-src", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "no rtms_fast package" in done.stderr


def test_cli_prints_rounds_and_the_median_ratio(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rtms_fast", "bench", "pair", "--baseline-src", str(CURRENT_SRC),
         "--sessions", "4", "--duration", "3", "--repeats", "1", "--json",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert len(summary["rounds"]) == 1 and summary["rounds"][0]["this_messages"] == 4 * 150
    assert math.isfinite(summary["median_ratio"])
    assert "Median ratio" in (tmp_path / "pair.md").read_text()
