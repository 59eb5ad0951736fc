"""Tests for AudioRingGroup: many rings drained in one native call."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtms_fast.ring import AudioRing, RingOverflowPolicy
from rtms_fast.ring_group import AudioRingGroup

DO = RingOverflowPolicy.DROP_OLDEST
DN = RingOverflowPolicy.DROP_NEWEST


def seq(start: int, n: int, dtype: Any = np.int16) -> np.ndarray[Any, Any]:
    return (np.arange(start, start + n) % 30000).astype(dtype)


def test_read_concatenates_every_ring_in_order_and_consumes() -> None:
    rings = [AudioRing(1024, policy=DN) for _ in range(5)]
    group = AudioRingGroup()
    for i, ring in enumerate(rings):
        assert group.add(ring) == i
    written = {0: seq(0, 10), 2: seq(100, 300), 3: seq(7, 1), 4: seq(500, 1024)}
    for i, block in written.items():
        rings[i].write(block)
    assert group.available == sum(len(b) for b in written.values())

    got = group.read()

    assert got.counts.tolist() == [10, 0, 300, 1, 1024]
    assert got.offsets.tolist() == [0, 10, 10, 310, 311, 1335]
    assert len(got) == 1335
    for i, ring in enumerate(rings):
        np.testing.assert_array_equal(got.of(i), written.get(i, seq(0, 0)))
        assert ring.available == 0
        assert ring.stats().read == len(written.get(i, ()))
    assert got.nonempty().tolist() == [0, 2, 3, 4]
    assert got.rings == tuple(rings)
    again = group.read()
    assert len(again) == 0 and again.counts.tolist() == [0] * 5


def test_read_equals_reading_each_ring_with_read_copy_across_the_wrap() -> None:
    grouped = [AudioRing(256, policy=DN, use_double_mapping=i % 2 == 0) for i in range(4)]
    single = [AudioRing(256, policy=DN, use_double_mapping=i % 2 == 0) for i in range(4)]
    group = AudioRingGroup()
    for ring in grouped:
        group.add(ring)
    rng = np.random.default_rng(3)
    for step in range(40):
        for i in range(4):
            block = rng.integers(-30000, 30000, int(rng.integers(0, 200)), dtype=np.int16)
            grouped[i].write(block)
            single[i].write(block)
        got = group.read()
        for i in range(4):
            np.testing.assert_array_equal(got.of(i), single[i].read_copy(), err_msg=f"{step}")


def test_drop_oldest_overwritten_items_are_skipped_and_counted_like_read_copy() -> None:
    ring = AudioRing(256, policy=DO, use_double_mapping=False)
    capacity = ring.capacity
    group = AudioRingGroup()
    group.add(ring)
    ring.write(seq(0, capacity + 100))  # the first 100 are overwritten
    got = group.read()
    np.testing.assert_array_equal(got.samples, seq(100, capacity))
    stats = ring.stats()
    assert stats.read == capacity and stats.dropped_oldest == 100
    assert stats.written == stats.read + stats.dropped_oldest + stats.fill


def test_other_dtypes_and_membership_errors() -> None:
    group = AudioRingGroup(np.float32)
    ring = AudioRing(64, np.float32)
    with pytest.raises(TypeError, match="int16"):
        group.add(AudioRing(64, np.int16))
    group.add(ring)
    with pytest.raises(ValueError, match="already"):
        group.add(ring)
    ring.write(np.linspace(-1, 1, 50, dtype=np.float32))
    got = group.read()
    assert got.samples.dtype == np.float32
    np.testing.assert_array_equal(got.samples, np.linspace(-1, 1, 50, dtype=np.float32))
    with pytest.raises(ValueError, match="not in"):
        group.remove(AudioRing(64, np.float32))
    with pytest.raises(ValueError, match="not in"):
        group.index(AudioRing(64, np.float32))


def test_remove_shifts_later_rings_and_leaves_the_removed_ring_unread() -> None:
    rings = [AudioRing(128, policy=DN) for _ in range(3)]
    group = AudioRingGroup()
    for ring in rings:
        group.add(ring)
    for i, ring in enumerate(rings):
        ring.write(seq(10 * i, i + 1))
    group.remove(rings[1])
    assert rings[1] not in group and rings[2] in group
    assert group.index(rings[2]) == 1 and len(group) == 2
    got = group.read()
    assert got.counts.tolist() == [1, 3]
    np.testing.assert_array_equal(got.of(1), seq(20, 3))
    assert rings[1].available == 2


def test_growing_past_the_initial_slots_keeps_every_ring() -> None:
    group = AudioRingGroup()
    rings = [AudioRing(64, policy=DN) for _ in range(100)]
    for i, ring in enumerate(rings):
        group.add(ring)
        ring.write(seq(i, 3))
    got = group.read()
    assert got.counts.tolist() == [3] * 100
    for i in range(100):
        np.testing.assert_array_equal(got.of(i), seq(i, 3))


def test_an_empty_group_reads_nothing() -> None:
    got = AudioRingGroup().read()
    assert len(got) == 0 and got.counts.shape == (0,) and got.offsets.tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 300), max_size=6), min_size=1, max_size=8))
def test_every_item_is_read_once_in_order(writes: list[list[int]]) -> None:
    """Interleaved writes and group reads: per ring, the concatenation of what the
    group returned is exactly what was written (DROP_NEWEST, capacity never exceeded)."""
    rings = [AudioRing(2048, policy=DN) for _ in writes]
    group = AudioRingGroup()
    for ring in rings:
        group.add(ring)
    expected: list[list[int]] = [[] for _ in writes]
    seen: list[list[int]] = [[] for _ in writes]
    counter = 0
    for step in range(max(len(w) for w in writes)):
        for i, sizes in enumerate(writes):
            if step < len(sizes):
                block = seq(counter, sizes[step])
                counter += sizes[step]
                rings[i].write(block)
                expected[i].extend(block.tolist())
        got = group.read()
        for i in range(len(rings)):
            seen[i].extend(got.of(i).tolist())
    assert seen == expected


def test_a_producer_thread_and_a_group_reader_lose_nothing() -> None:
    """The producer writes from its own thread while the group drains: every item is
    either read, in order, or counted as dropped by its ring."""
    rings = [AudioRing(4096, np.int32, policy=DN) for _ in range(8)]
    group = AudioRingGroup(np.int32)
    for ring in rings:
        group.add(ring)
    blocks = 400

    def block(b: int, i: int) -> np.ndarray[Any, Any]:
        return np.arange(b * 160, (b + 1) * 160, dtype=np.int32) * 8 + i
    done = threading.Event()

    def produce() -> None:
        for b in range(blocks):
            for i, ring in enumerate(rings):
                ring.write(block(b, i))
        done.set()

    seen: list[list[np.ndarray[Any, Any]]] = [[] for _ in rings]
    producer = threading.Thread(target=produce)
    producer.start()
    while True:
        finished = done.is_set()
        got = group.read()
        for i in got.nonempty().tolist():
            seen[i].append(got.of(i))
        if finished and group.available == 0:
            break
    producer.join()
    for i, ring in enumerate(rings):
        data = np.concatenate(seen[i]) if seen[i] else np.empty(0, np.int32)
        stats = ring.stats()
        assert len(data) + stats.dropped_newest == blocks * 160
        assert stats.read == len(data) and stats.fill == 0
        written = np.concatenate([block(b, i) for b in range(blocks)])
        # what was kept is an in-order subsequence of what this ring was given
        assert np.isin(data, written).all()
        assert (np.diff(data) > 0).all()


def test_read_into_a_reused_buffer_takes_rings_in_order_and_leaves_the_rest() -> None:
    rings = [AudioRing(1024, policy=DN) for _ in range(3)]
    group = AudioRingGroup()
    for i, ring in enumerate(rings):
        group.add(ring)
        ring.write(seq(1000 * i, 100))
    out = np.full(250, -1, np.int16)

    got = group.read(out)

    assert got.counts.tolist() == [100, 100, 50]
    assert np.shares_memory(got.samples, out) and len(got) == 250
    np.testing.assert_array_equal(got.of(2), seq(2000, 50))
    assert [r.available for r in rings] == [0, 0, 50]
    rings[0].write(seq(5000, 10))
    again = group.read(out)
    assert again.counts.tolist() == [10, 0, 50]
    np.testing.assert_array_equal(again.of(0), seq(5000, 10))
    np.testing.assert_array_equal(again.of(2), seq(2050, 50))


@pytest.mark.parametrize("out", [np.zeros(10, np.int32), np.zeros((2, 5), np.int16),
                                 np.zeros(20, np.int16)[::2]])
def test_read_refuses_an_unusable_out(out: np.ndarray[Any, Any]) -> None:
    group = AudioRingGroup()
    group.add(AudioRing(64))
    with pytest.raises(ValueError, match="out must be"):
        group.read(out)
    readonly = np.zeros(10, np.int16)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out must be"):
        group.read(readonly)


def test_remove_many_at_once_or_none_when_one_is_not_a_member() -> None:
    rings = [AudioRing(64, policy=DN) for _ in range(5)]
    group = AudioRingGroup()
    for ring in rings:
        group.add(ring)
    with pytest.raises(ValueError, match="not in"):
        group.remove(rings[0], AudioRing(64))
    assert len(group) == 5
    group.remove(rings[3], rings[0])
    assert group.rings == (rings[1], rings[2], rings[4])
    rings[4].write(seq(9, 2))
    assert group.read().counts.tolist() == [0, 0, 2]
