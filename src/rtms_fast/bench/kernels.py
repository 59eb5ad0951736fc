"""Kernel benchmark cases: each native kernel beside its anchor.

A case builds its inputs once and returns a ``KernelCase``: the subject (our
kernel), the anchor (the best reference available in the same environment:
stdlib ``audioop``, the PyPI ``G722`` package, ``soxr``, a msgspec + numpy
path, ...) and how much work one call of each does. Cases whose anchor is not
installed are reported as unavailable, never faked.

``RTMS_BENCH_SLOWDOWN="case=factor,..."`` makes a case's subject do ``factor``
times its work: it exists to show that the regression gate catches a slowdown.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtms_fast.bench.timing import PairResult, measure_pair


@dataclass(frozen=True, slots=True)
class KernelCase:
    name: str
    unit: str
    subject: Callable[[], object]
    anchor: Callable[[], object]
    items_subject: float
    items_anchor: float
    anchor_name: str
    target: str = ""  # the documented target, for reports


class AnchorUnavailable(RuntimeError):
    """The case's reference implementation is not installed here."""


def _slowdown(name: str) -> int:
    spec = os.environ.get("RTMS_BENCH_SLOWDOWN", "")
    for part in filter(None, (p.strip() for p in spec.split(","))):
        case, _, factor = part.partition("=")
        if case == name:
            return max(1, int(factor or "2"))
    return 1


def _with_slowdown(name: str, fn: Callable[[], object]) -> Callable[[], object]:
    factor = _slowdown(name)
    if factor == 1:
        return fn

    def slowed() -> object:
        result = None
        for _ in range(factor):
            result = fn()
        return result

    return slowed


def _import_quietly(module: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise AnchorUnavailable(f"{module} is not installed") from exc


def case_g711_decode(block: int = 1 << 20) -> KernelCase:
    """A-law decode of a large block vs audioop (or a numpy 256-entry table)."""
    from rtms_fast.native import ffi, lib

    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, block, dtype=np.uint8)
    dst = np.empty(block, dtype=np.int16)
    p_src = ffi.from_buffer("uint8_t[]", src)
    p_dst = ffi.from_buffer("int16_t[]", dst)

    def subject() -> None:
        lib.rtms_alaw_decode(p_src, block, p_dst)

    raw = src.tobytes()
    try:
        audioop = _import_quietly("audioop")

        def anchor() -> object:
            return audioop.alaw2lin(raw, 2)

        anchor_name = "audioop.alaw2lin"
    except AnchorUnavailable:
        from rtms_fast.codecs import decode_alaw

        table = decode_alaw(bytes(range(256)))

        def anchor() -> object:
            return table[src]

        anchor_name = "numpy 256-entry table"
    return KernelCase(
        "g711_decode", "samples", _with_slowdown("g711_decode", subject), anchor,
        block, block, anchor_name, ">= 1.5e9 samples/s",
    )


CASES: dict[str, Callable[[], KernelCase]] = {
    "g711_decode": case_g711_decode,
}


def run_case(name: str, rounds: int = 7, round_s: float = 0.02) -> PairResult:
    case = CASES[name]()
    return measure_pair(
        case.name, case.subject, case.anchor, case.items_subject, case.items_anchor,
        unit=case.unit, rounds=rounds, round_s=round_s,
    )
GATED_CASES: tuple[str, ...] = ("g711_decode",)
