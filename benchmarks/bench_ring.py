"""Ring write + zero-copy read throughput beside plain numpy and deque hand-offs.

One call = write 320-sample blocks (20 ms of 16 kHz audio) into a ring and read them back
through a numpy view, then consume. Groups:

* ``ring-block``: one block per read (the worst case: a reader woken per message);
* ``ring-sweep``: ten blocks written, then read in one view (a reader woken per sweep);
* ``ring-read-*``: the reader alone, one view per sweep (in production the producer is
  the native ingest kernel; here an untimed native write stands in for it).

The anchor of each group is a numpy copy of the same blocks into a preallocated array
(the least a Python hand-off can cost); ``collections.deque`` of array copies is shown
as a reference. Ratios are to the anchor, measured in the same run.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pytest

from rtms_fast.native import ffi, lib
from rtms_fast.ring import AudioRing, RingOverflowPolicy

BLOCK = 320
SWEEP_BLOCKS = 10
CAPACITY = 16000  # 1 s at 16 kHz: never full in these loops


@pytest.fixture(scope="module")
def block() -> np.ndarray[Any, Any]:
    return np.random.default_rng(5).integers(-32768, 32768, BLOCK, dtype=np.int16)


def _ring(double_mapped: bool) -> AudioRing:
    return AudioRing(
        CAPACITY, np.int16, RingOverflowPolicy.BACKPRESSURE, use_double_mapping=double_mapped
    )


# ---- one block per read -------------------------------------------------------


@pytest.mark.parametrize("double_mapped", [True, False], ids=["mapped", "mirrored"])
def test_ring_block_python_api(
    benchmark: Any, block: np.ndarray[Any, Any], double_mapped: bool
) -> None:
    ring = _ring(double_mapped)
    sums: list[int] = []

    def one() -> None:
        ring.write(block)
        view = ring.read()
        sums.append(int(view[-1]))  # touch the view so it is really read
        ring.consume(len(view))

    benchmark.group = "ring-block"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="subject")
    benchmark(one)
    assert set(sums) == {int(block[-1])}
    s = ring.stats()
    assert s.read == s.written and s.dropped == 0 and s.refused == 0


def test_ring_block_native_calls(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    """The same three native calls without the Python wrapper: what the wrapper costs."""
    ring = _ring(True)
    h = ring.native_handle()
    src = ffi.from_buffer(block)
    offset = ffi.new("size_t *")
    window = np.frombuffer(ffi.buffer(lib.rtms_ring_window(h), 2 * ring.capacity * 2), np.int16)

    def one() -> None:
        lib.rtms_ring_write(h, src, BLOCK)
        n = lib.rtms_ring_peek_at(h, BLOCK, offset)
        view = window[offset[0] : offset[0] + n]
        lib.rtms_ring_consume(h, len(view), ffi.NULL)

    benchmark.group = "ring-block"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="subject")
    benchmark(one)
    assert ring.stats().read == ring.stats().written > 0


def test_ring_block_anchor_numpy_copy(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    dst = np.empty(BLOCK, np.int16)

    def one() -> None:
        dst[:] = block
        view = dst[:BLOCK]
        assert view.shape[0] == BLOCK

    benchmark.group = "ring-block"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="anchor", anchor="numpy copy")
    benchmark(one)
    assert np.array_equal(dst, block)


def test_ring_block_reference_deque(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    queue: deque[np.ndarray[Any, Any]] = deque()

    def one() -> None:
        queue.append(block.copy())
        view = queue.popleft()
        assert view.shape[0] == BLOCK

    benchmark.group = "ring-block"
    benchmark.extra_info.update(items=BLOCK, unit="samples", role="reference")
    benchmark(one)


# ---- ten blocks per read ------------------------------------------------------


@pytest.mark.parametrize("double_mapped", [True, False], ids=["mapped", "mirrored"])
def test_ring_sweep_python_api(
    benchmark: Any, block: np.ndarray[Any, Any], double_mapped: bool
) -> None:
    ring = _ring(double_mapped)
    lengths: list[int] = []

    def one() -> None:
        for _ in range(SWEEP_BLOCKS):
            ring.write(block)
        view = ring.read()
        lengths.append(len(view))
        ring.consume(len(view))

    benchmark.group = "ring-sweep"
    benchmark.extra_info.update(items=BLOCK * SWEEP_BLOCKS, unit="samples", role="subject")
    benchmark(one)
    assert set(lengths) == {BLOCK * SWEEP_BLOCKS}
    ring.write(block)
    assert np.array_equal(ring.read(), block)


def test_ring_sweep_anchor_numpy_copy(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    dst = np.empty(BLOCK * SWEEP_BLOCKS, np.int16)

    def one() -> None:
        for i in range(SWEEP_BLOCKS):
            dst[i * BLOCK : (i + 1) * BLOCK] = block
        view = dst[:]
        assert view.shape[0] == BLOCK * SWEEP_BLOCKS

    benchmark.group = "ring-sweep"
    benchmark.extra_info.update(
        items=BLOCK * SWEEP_BLOCKS, unit="samples", role="anchor", anchor="numpy copy"
    )
    benchmark(one)
    assert np.array_equal(dst[-BLOCK:], block)


def test_ring_sweep_reference_deque(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    queue: deque[np.ndarray[Any, Any]] = deque()

    def one() -> None:
        for _ in range(SWEEP_BLOCKS):
            queue.append(block.copy())
        joined = np.concatenate([queue.popleft() for _ in range(SWEEP_BLOCKS)])
        assert joined.shape[0] == BLOCK * SWEEP_BLOCKS

    benchmark.group = "ring-sweep"
    benchmark.extra_info.update(items=BLOCK * SWEEP_BLOCKS, unit="samples", role="reference")
    benchmark(one)


# ---- the reader alone (the producer is native in production) ------------------

READ_ROUNDS = 20000


@pytest.mark.parametrize("blocks", [10, 50])
def test_ring_read_view_python_api(
    benchmark: Any, block: np.ndarray[Any, Any], blocks: int
) -> None:
    """Read and release one sweep's samples (200 ms or 1 s of 16 kHz) through one view."""
    ring = _ring(True)
    n_items = BLOCK * blocks
    sweep = np.tile(block, blocks)
    h = ring.native_handle()
    src = ffi.from_buffer(sweep)
    last: list[int] = []

    def fill() -> None:  # not timed: stands in for the native ingest kernel
        lib.rtms_ring_write(h, src, n_items)

    def one() -> None:
        view = ring.read()
        last.append(int(view[-1]))
        ring.consume(len(view))

    benchmark.group = f"ring-read-{blocks}x{BLOCK}"
    benchmark.extra_info.update(items=n_items, unit="samples", role="subject")
    benchmark.pedantic(one, setup=fill, rounds=READ_ROUNDS, iterations=1)
    assert set(last) == {int(block[-1])} and ring.available == 0


@pytest.mark.parametrize("blocks", [10, 50])
def test_ring_read_anchor_numpy_copy(
    benchmark: Any, block: np.ndarray[Any, Any], blocks: int
) -> None:
    """A copying reader: the same samples copied out of a buffer into a preallocated array."""
    n_items = BLOCK * blocks
    source = np.tile(block, blocks)
    dst = np.empty(n_items, np.int16)
    last: list[int] = []

    def fill() -> None:
        source[0] = block[0]

    def one() -> None:
        dst[:] = source
        last.append(int(dst[-1]))

    benchmark.group = f"ring-read-{blocks}x{BLOCK}"
    benchmark.extra_info.update(items=n_items, unit="samples", role="anchor", anchor="numpy copy")
    benchmark.pedantic(one, setup=fill, rounds=READ_ROUNDS, iterations=1)
    assert set(last) == {int(block[-1])}


# ---- many rings, one reader (an ASR worker serving every stream) ---------------

GROUP_RINGS = 1000
GROUP_ROUNDS = 200


def _filled_rings(block: np.ndarray[Any, Any]) -> tuple[list[AudioRing], Any]:
    """GROUP_RINGS rings and an untimed native fill of one block each (the ingest kernel's
    part in production)."""
    rings = [_ring(True) for _ in range(GROUP_RINGS)]
    handles = [ring.native_handle() for ring in rings]
    src = ffi.from_buffer(block)

    def fill() -> None:
        for h in handles:
            lib.rtms_ring_write(h, src, BLOCK)

    return rings, fill


def test_ring_group_read(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    """Every ring's new block copied out by one ``AudioRingGroup.read`` into a reused buffer."""
    from rtms_fast.ring_group import AudioRingGroup

    rings, fill = _filled_rings(block)
    group = AudioRingGroup()
    for ring in rings:
        group.add(ring)
    out = np.empty(2 * GROUP_RINGS * BLOCK, np.int16)
    totals: list[int] = []

    benchmark.group = f"ring-group-{GROUP_RINGS}x{BLOCK}"
    benchmark.extra_info.update(items=GROUP_RINGS * BLOCK, unit="samples", role="subject")
    benchmark.pedantic(lambda: totals.append(len(group.read(out))), setup=fill,
                       rounds=GROUP_ROUNDS, iterations=1)
    assert set(totals) == {GROUP_RINGS * BLOCK}
    np.testing.assert_array_equal(group.read(out).samples, np.empty(0, np.int16))


def test_ring_group_anchor_ring_by_ring(benchmark: Any, block: np.ndarray[Any, Any]) -> None:
    """The same work ring by ring: a zero-copy view of each, consumed (no copy at all)."""
    rings, fill = _filled_rings(block)
    totals: list[int] = []

    def one() -> None:
        total = 0
        for ring in rings:
            if ring.available:
                view = ring.read()
                total += len(view)
                ring.consume(len(view))
        totals.append(total)

    benchmark.group = f"ring-group-{GROUP_RINGS}x{BLOCK}"
    benchmark.extra_info.update(items=GROUP_RINGS * BLOCK, unit="samples", role="anchor",
                                anchor="a view per ring")
    benchmark.pedantic(one, setup=fill, rounds=GROUP_ROUNDS, iterations=1)
    assert set(totals) == {GROUP_RINGS * BLOCK}
