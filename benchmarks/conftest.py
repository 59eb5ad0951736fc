"""Shared pytest-benchmark conventions for the suites in this folder.

A benchmark declares what one call does and whether it is an anchor:

    benchmark.group = "g711-decode"
    benchmark.extra_info.update(items=n, unit="samples", role="anchor")   # or role="subject"

At the end of the run a table prints, per group, every benchmark's throughput
(items per second from the median time) and its ratio to the group's anchor,
measured in the same run. Ratios, not absolute times, are what to compare
across runs on a noisy machine.
"""

from __future__ import annotations

from typing import Any

import pytest


def _rows(config: pytest.Config) -> list[tuple[str, str, float, str, str]]:
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return []
    by_group: dict[str, list[Any]] = {}
    for bench in bs.benchmarks:
        if not bench.stats or "items" not in bench.extra_info:
            continue
        by_group.setdefault(bench.group or "", []).append(bench)
    rows = []
    for group, benches in sorted(by_group.items()):
        anchors = [b for b in benches if b.extra_info.get("role") == "anchor"]
        anchor_rate = None
        if anchors:
            a = anchors[0]
            anchor_rate = a.extra_info["items"] / a.stats.median
        for b in benches:
            rate = b.extra_info["items"] / b.stats.median
            ratio = f"{rate / anchor_rate:.2f}x" if anchor_rate else "-"
            rows.append((group, b.name, rate, b.extra_info.get("unit", "items"), ratio))
    return rows


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rows = _rows(config)
    if not rows:
        return
    terminalreporter.section("throughput and ratio to the anchor of each group")
    for group, name, rate, unit, ratio in rows:
        terminalreporter.write_line(f"{group:<24} {name:<48} {rate:>12.4g} {unit}/s  {ratio:>8}")
