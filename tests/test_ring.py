"""Tests for the native SPSC rings (csrc/ring.c) and their numpy readers (rtms_fast.ring)."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rtms_fast.native import ffi, lib
from rtms_fast.ring import (
    AudioRing,
    MemoryBudget,
    RingBudgetExceededError,
    RingNotifier,
    RingOverflowPolicy,
    RingStats,
    TrioRingReader,
)

DO = RingOverflowPolicy.DROP_OLDEST
DN = RingOverflowPolicy.DROP_NEWEST
BP = RingOverflowPolicy.BACKPRESSURE

LAYOUTS = pytest.mark.parametrize("double_mapped", [True, False], ids=["mapped", "mirrored"])


def seq(start: int, n: int, dtype: Any = np.int16) -> np.ndarray[Any, Any]:
    return (np.arange(start, start + n) % 30000).astype(dtype)


def check_balance(s: RingStats) -> None:
    assert s.written == s.read + s.dropped_oldest + s.fill


def test_policy_values_match_native() -> None:
    assert int(DO) == lib.RTMS_RING_DROP_OLDEST
    assert int(DN) == lib.RTMS_RING_DROP_NEWEST
    assert int(BP) == lib.RTMS_RING_BACKPRESSURE


# ---- layout and contiguity ---------------------------------------------------


@LAYOUTS
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_view_is_contiguous_across_the_wrap(double_mapped: bool, dtype: Any) -> None:
    ring = AudioRing(1000, dtype, BP, use_double_mapping=double_mapped)
    assert ring.is_double_mapped is double_mapped
    cap = ring.capacity
    if double_mapped:
        assert cap >= 1000 and (cap * np.dtype(dtype).itemsize) % 4096 == 0
    else:
        assert cap == 1000  # the mirrored layout does not round
    written = 0
    for start_slot in (cap - 1, cap - 160, cap - 319, 5):
        # move the read and write positions to start_slot, then write a block that wraps
        skip = (start_slot - written) % cap
        ring.write(seq(written, skip, dtype))
        ring.consume(ring.available)
        written += skip
        block = seq(written, 320, dtype)
        assert ring.write(block) == 320
        written += 320
        view = ring.read()
        assert len(view) == 320 and view.flags.c_contiguous
        assert ring.read_copy().tolist() == block.tolist()  # copy first: consumes
        assert view.tolist() == block.tolist()  # still intact: nothing written since
    full = seq(written, cap, dtype)
    assert ring.write(full) == cap
    assert ring.read().tolist() == full.tolist()  # a whole ringful in one view, wrapped


@LAYOUTS
def test_silence_and_bytes_input(double_mapped: bool) -> None:
    ring = AudioRing(64, np.int16, DN, use_double_mapping=double_mapped)
    assert ring.write(np.array([5, 6], np.int16).tobytes()) == 2
    assert ring.write_silence(3) == 3
    assert ring.write(bytearray(np.array([7], np.int16).tobytes())) == 1
    assert ring.read_copy().tolist() == [5, 6, 0, 0, 0, 7]


def test_bad_input_is_a_typed_error() -> None:
    ring = AudioRing(64, np.int16)
    with pytest.raises(TypeError):
        ring.write(np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        ring.write(np.zeros((2, 2), np.int16))
    with pytest.raises(ValueError):
        ring.write(b"\x00\x01\x02")
    with pytest.raises(TypeError):
        ring.write([1, 2, 3])
    with pytest.raises(ValueError):
        ring.consume(1)  # nothing readable
    with pytest.raises(ValueError):
        AudioRing(0)
    with pytest.raises(TypeError):
        AudioRing(16, object)
    with pytest.raises(ValueError):
        ring.wait_readable(ring.capacity + 1, timeout_s=0)
    assert lib.rtms_ring_new_ex(16, 2, 7, ffi.NULL, 0, ffi.NULL) == ffi.NULL  # bad policy
    assert lib.rtms_ring_new_ex(0, 2, 0, ffi.NULL, 0, ffi.NULL) == ffi.NULL


# ---- overflow policies -------------------------------------------------------


@LAYOUTS
def test_drop_newest_counts_exactly(double_mapped: bool) -> None:
    ring = AudioRing(100, np.int16, DN, use_double_mapping=double_mapped)
    cap = ring.capacity
    assert ring.write(seq(0, cap - 10)) == cap - 10
    assert ring.write(seq(cap - 10, 25)) == 10  # the prefix that fits
    assert ring.write_silence(4) == 0
    s = ring.stats()
    assert (s.dropped_newest, s.refused, s.dropped_oldest, s.fill) == (19, 0, 0, cap)
    assert ring.read_copy().tolist() == seq(0, cap).tolist()  # the oldest items were kept
    check_balance(ring.stats())


@LAYOUTS
def test_backpressure_refuses_and_counts(double_mapped: bool) -> None:
    ring = AudioRing(100, np.int16, BP, use_double_mapping=double_mapped)
    cap = ring.capacity
    block = seq(0, cap + 15)
    accepted = ring.write(block)
    assert accepted == cap
    assert ring.write(block[accepted:]) == 0
    s = ring.stats()
    assert (s.refused, s.dropped_newest, s.dropped_oldest) == (30, 0, 0)  # refused twice
    ring.consume(20)
    assert ring.write(block[accepted:]) == 15  # retried once there is room
    assert ring.read_copy().tolist() == block[20:].tolist()
    s = ring.stats()
    assert (s.refused, s.read, s.dropped, s.fill) == (30, cap + 15, 0, 0)


@LAYOUTS
def test_drop_oldest_overwrites_and_counts(double_mapped: bool) -> None:
    ring = AudioRing(100, np.int16, DO, use_double_mapping=double_mapped)
    cap = ring.capacity
    for start in range(0, cap + 37, 7):
        ring.write(seq(start, min(7, cap + 37 - start)))
    s = ring.stats()
    # not yet seen by the reader: counted as pending
    assert (s.dropped_oldest, s.overruns, s.overrun_items, s.fill) == (37, 0, 0, cap)
    assert ring.read().tolist() == seq(37, cap).tolist()
    s = ring.stats()
    assert (s.dropped_oldest, s.overruns, s.overrun_items) == (37, 1, 37)
    # one write larger than the whole ring keeps only its last ringful
    big = seq(5000, 2 * cap + 5)
    assert ring.write(big) == len(big)
    assert ring.read_copy().tolist() == big[-cap:].tolist()
    s = ring.stats()
    assert (s.written, s.read, s.dropped_oldest, s.overruns) == (3 * cap + 42, cap, 2 * cap + 42, 2)
    check_balance(s)


@pytest.mark.parametrize("policy", list(RingOverflowPolicy))
@LAYOUTS
def test_reserve_commit_for_the_ingest_kernel(
    policy: RingOverflowPolicy, double_mapped: bool
) -> None:
    ring = AudioRing(100, np.int16, policy, use_double_mapping=double_mapped)
    cap, h = ring.capacity, ring.native_handle()
    ring.write(seq(0, cap - 3))
    ring.consume(cap - 3)  # the next reservation wraps
    p = lib.rtms_ring_reserve(h, 8)
    assert p != ffi.NULL
    ffi.memmove(p, seq(1000, 8).tobytes(), 16)
    lib.rtms_ring_commit(h, 5)  # publish only 5 of the 8
    view = ring.read()
    assert view.tolist() == seq(1000, 5).tolist() and view.flags.c_contiguous
    assert lib.rtms_ring_reserve(h, cap + 1) == ffi.NULL  # more than a ringful: refused
    s = ring.stats()
    assert s.refused + s.dropped_newest == cap + 1
    assert (s.refused == cap + 1) == (policy == BP)
    if policy != DO:
        ring.write(seq(0, cap - 5))  # full
        assert lib.rtms_ring_reserve(h, 1) == ffi.NULL
        assert ring.stats().refused + ring.stats().dropped_newest == cap + 2
    lib.rtms_ring_commit(h, 3)  # a commit without an open reservation publishes nothing
    assert ring.stats().written == (cap + 2 if policy == DO else 2 * cap - 3)


# ---- budget ------------------------------------------------------------------


@LAYOUTS
def test_budget_ceiling(double_mapped: bool) -> None:
    flags = 0 if double_mapped else lib.RTMS_RING_FLAG_MIRRORED
    one = lib.rtms_ring_footprint_for(3000, 2, flags)
    budget = MemoryBudget(3 * one + one // 2)
    rings = [
        AudioRing(3000, np.int16, budget=budget, use_double_mapping=double_mapped) for _ in range(3)
    ]
    assert all(r.footprint_bytes == one for r in rings)
    assert budget.used_bytes == 3 * one
    with pytest.raises(RingBudgetExceededError, match="budget"):
        AudioRing(3000, np.int16, budget=budget, use_double_mapping=double_mapped)
    assert budget.used_bytes == 3 * one  # the failed attempt left nothing charged
    AudioRing(100, np.int16, budget=budget, use_double_mapping=False)  # a small one still fits
    gc.collect()
    del rings[0]
    gc.collect()
    assert budget.used_bytes == 2 * one
    rings.append(AudioRing(3000, np.int16, budget=budget, use_double_mapping=double_mapped))
    assert budget.used_bytes == 3 * one


def test_budget_outlives_its_python_owner() -> None:
    raw_budget = lib.rtms_budget_new(1 << 20)
    raw_ring = lib.rtms_ring_new(1000, 2, lib.RTMS_RING_DROP_OLDEST, raw_budget)
    assert lib.rtms_budget_used(raw_budget) == lib.rtms_ring_footprint(raw_ring)
    lib.rtms_budget_free(raw_budget)  # the ring still holds the budget
    lib.rtms_ring_release(raw_ring)  # refunds and frees the budget: no use after free


def test_budget_rejects_concurrent_creation_past_the_limit() -> None:
    one = lib.rtms_ring_footprint_for(2048, 2, 0)
    budget = MemoryBudget(10 * one)
    made: list[AudioRing] = []
    failures: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        for _ in range(10):
            try:
                ring = AudioRing(2048, np.int16, budget=budget)
            except RingBudgetExceededError:
                with lock:
                    failures.append(1)
            else:
                with lock:
                    made.append(ring)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 10 and len(failures) == 20
    assert budget.used_bytes == 10 * one


# ---- threads -----------------------------------------------------------------

THREADED_ITEMS = 3_000_000


@LAYOUTS
def test_threads_backpressure_moves_everything_in_order(double_mapped: bool) -> None:
    ring = AudioRing(4096, np.int32, BP, use_double_mapping=double_mapped)
    data = np.arange(THREADED_ITEMS, dtype=np.int32)
    errors: list[BaseException] = []
    stop = threading.Event()

    def produce() -> None:
        try:
            pos = 0
            while pos < THREADED_ITEMS and not stop.is_set():
                accepted = ring.write(data[pos : pos + 320])
                pos += accepted
                ring.notifier.notify()
                if accepted == 0:
                    time.sleep(0)  # full: let the reader run
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    expected = 0
    checksum = 0
    try:
        while expected < THREADED_ITEMS:
            assert ring.wait_readable(1, timeout_s=10)
            view = ring.read(1000)
            # in order, no loss, no tear: each view is exactly the next run of the sequence
            assert view[0] == expected and view[-1] == expected + len(view) - 1
            assert np.array_equal(view, data[expected : expected + len(view)])
            checksum += int(view.sum(dtype=np.int64))
            expected += len(view)
            assert ring.consume(len(view)) == 0
    finally:
        stop.set()
        producer.join()
    assert not errors
    assert checksum == THREADED_ITEMS * (THREADED_ITEMS - 1) // 2
    s = ring.stats()
    assert (s.written, s.read, s.dropped, s.fill) == (THREADED_ITEMS, THREADED_ITEMS, 0, 0)


@LAYOUTS
def test_threads_drop_oldest_accounts_every_overrun(double_mapped: bool) -> None:
    ring = AudioRing(1024, np.int32, DO, use_double_mapping=double_mapped)
    done = threading.Event()
    stop = threading.Event()
    written = [0]

    def produce() -> None:
        # keep writing until the reader has been lapped at least once (bounded)
        pos = 0
        block = np.arange(256, dtype=np.int32)
        while pos < 40_000_000 and not stop.is_set():
            if pos >= 1_000_000 and ring.stats().overrun_items > 0:
                break
            ring.write(block + pos)
            pos += 256
        written[0] = pos
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    expected = 0
    received = 0
    gaps = 0
    use_view = True
    try:
        while not (done.is_set() and ring.available == 0):
            if use_view:
                view = ring.read(700)
                held = view.copy()
                overwritten = ring.consume(len(view))
                intact = held[overwritten:]
            else:
                intact = ring.read_copy(700)
            use_view = not use_view
            if len(intact) == 0:
                continue
            # no tear: every intact run is consecutive; anything skipped is a counted gap
            assert intact[0] >= expected
            assert np.array_equal(
                intact, np.arange(intact[0], intact[0] + len(intact), dtype=np.int32)
            )
            gaps += int(intact[0]) - expected
            expected = int(intact[-1]) + 1
            received += len(intact)
    finally:
        stop.set()
        producer.join()
    gaps += written[0] - expected  # items lapped after the last intact read
    s = ring.stats()
    assert s.written == written[0]
    assert s.read == received
    assert s.overrun_items == s.dropped_oldest == gaps > 0
    assert s.overruns > 0 and s.fill == 0
    check_balance(s)


# ---- the view contract -------------------------------------------------------


@pytest.mark.parametrize("policy", [DN, BP])
@LAYOUTS
def test_view_is_stable_until_consumed_then_shows_newer_items(
    policy: RingOverflowPolicy, double_mapped: bool
) -> None:
    ring = AudioRing(100, np.int16, policy, use_double_mapping=double_mapped)
    cap = ring.capacity
    ring.write(seq(0, 40))
    view = ring.read()
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 1
    with pytest.raises(ValueError):
        view.flags.writeable = True
    assert ring.read().tolist() == view.tolist()  # read() does not consume
    ring.write(seq(40, 2 * cap))  # fills the ring; the producer cannot touch the view
    assert view.tolist() == seq(0, 40).tolist()
    ring.consume(cap)  # the view's items are released...
    ring.write(seq(40 + cap - 40, cap))  # ...and their slots reused by newer items
    # The contract: after consume the view shows whatever later occupies those slots.
    assert view.tolist() == seq(cap, 40).tolist()


@LAYOUTS
def test_drop_oldest_view_reports_items_overwritten_while_held(double_mapped: bool) -> None:
    ring = AudioRing(100, np.int16, DO, use_double_mapping=double_mapped)
    cap = ring.capacity
    ring.write(seq(0, cap))
    view = ring.read()
    assert lib.rtms_ring_overwritten(ring.native_handle(), len(view)) == 0
    ring.write(seq(cap, 10))  # laps the first 10 items of the view
    assert view[:10].tolist() == seq(cap, 10).tolist()  # overwritten in place
    assert view[10:].tolist() == seq(10, cap - 10).tolist()
    assert lib.rtms_ring_overwritten(ring.native_handle(), len(view)) == 10
    assert ring.consume(len(view)) == 10
    s = ring.stats()
    assert (s.read, s.overruns, s.overrun_items, s.fill) == (cap - 10, 1, 10, 10)
    assert ring.read_copy().tolist() == seq(cap, 10).tolist()
    check_balance(ring.stats())


# ---- lifetime ----------------------------------------------------------------


@LAYOUTS
def test_view_outlives_the_ring_object(double_mapped: bool) -> None:
    budget = MemoryBudget(1 << 20)
    ring = AudioRing(500, np.int16, BP, budget=budget, use_double_mapping=double_mapped)
    ring.write(seq(7, 300))
    view = ring.read()
    del ring
    gc.collect()
    assert budget.used_bytes > 0  # the view holds the native ring
    assert view.tolist() == seq(7, 300).tolist()
    del view
    gc.collect()
    assert budget.used_bytes == 0  # and releases it with the last view


def test_ring_wrapped_from_native_outlives_its_creator() -> None:
    raw_budget = ffi.gc(lib.rtms_budget_new(1 << 20), lib.rtms_budget_free)
    raw = lib.rtms_ring_new(640, 2, lib.RTMS_RING_BACKPRESSURE, raw_budget)
    block = seq(100, 320)
    assert lib.rtms_ring_write(raw, ffi.from_buffer(block), 320) == 320
    wrapped = AudioRing._from_native(raw, np.int16)
    lib.rtms_ring_release(raw)  # the creator (e.g. the ingest kernel) lets go
    assert lib.rtms_budget_used(raw_budget) > 0
    assert wrapped.read_copy().tolist() == block.tolist()
    wrapped.write(block)
    view = wrapped.read()
    del wrapped
    gc.collect()
    assert view.tolist() == block.tolist()
    del view
    gc.collect()
    assert lib.rtms_budget_used(raw_budget) == 0


def test_from_native_checks_its_input() -> None:
    raw = ffi.gc(lib.rtms_ring_new(64, 4, 0, ffi.NULL), lib.rtms_ring_release)
    with pytest.raises(TypeError, match="4 bytes"):
        AudioRing._from_native(raw, np.int16)
    with pytest.raises(ValueError):
        AudioRing._from_native(ffi.NULL, np.int16)
    assert AudioRing._from_native(raw, np.float32).capacity == lib.rtms_ring_capacity(raw)


# ---- waiting readers ---------------------------------------------------------


def test_wait_readable_times_out_and_wakes() -> None:
    ring = AudioRing(64, np.int16, BP)
    t0 = time.monotonic()
    assert ring.wait_readable(1, timeout_s=0.02) is False
    assert time.monotonic() - t0 >= 0.02

    def later() -> None:
        time.sleep(0.02)
        ring.write(seq(0, 10))
        ring.notifier.notify()

    t = threading.Thread(target=later)
    t.start()
    assert ring.wait_readable(10, timeout_s=5)
    t.join()


async def test_trio_reader_wakes_once_per_sweep() -> None:
    notifier = RingNotifier()
    rings = [AudioRing(1000, np.int16, BP, notifier=notifier) for _ in range(3)]
    readers = [TrioRingReader(r) for r in rings]
    got: list[list[int]] = [[] for _ in rings]

    async def consume(i: int) -> None:
        await readers[i].wait_readable(320)
        got[i] = readers[i].read_copy().tolist()

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(consume, i)
        await trio.testing.wait_all_tasks_blocked()
        for sweep in range(4):  # 80 items per ring per sweep; one notify per sweep
            for r in rings:
                r.write(seq(sweep * 80, 80))
            notifier.notify()
            await trio.testing.wait_all_tasks_blocked()
    assert got == [seq(0, 320).tolist()] * 3
    assert not notifier._trio_waiters


async def test_trio_reader_woken_from_a_producer_thread() -> None:
    ring = AudioRing(4096, np.int16, BP)
    reader = TrioRingReader(ring)

    def produce() -> None:
        for i in range(20):
            ring.write(seq(i * 100, 100))
            ring.notifier.notify()
            time.sleep(0.001)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, produce)
        with trio.fail_after(10):
            await reader.wait_readable(2000)
    assert reader.available == 2000
    assert reader.read_copy().tolist() == seq(0, 2000).tolist()


async def test_trio_wait_is_cancellable_and_leaves_no_waiter() -> None:
    ring = AudioRing(64, np.int16, BP)
    reader = TrioRingReader(ring)
    with trio.move_on_after(0.01) as scope:
        await reader.wait_readable(1)
    assert scope.cancelled_caught
    assert not ring.notifier._trio_waiters
    ring.write(seq(0, 5))
    with trio.fail_after(1):
        await reader.wait_readable(5)  # already readable: returns at once


# ---- model-based -------------------------------------------------------------

ITEM = np.dtype([("v", "<i4"), ("pad", "V508")])  # 512-byte items: 8 per page when mapped


class RingMachine(RuleBasedStateMachine):
    """Random write/read/consume interleavings against a Python model of the ring."""

    ring: AudioRing
    cap: int
    policy: RingOverflowPolicy

    @initialize(
        policy=st.sampled_from(list(RingOverflowPolicy)),
        double_mapped=st.booleans(),
        capacity=st.integers(1, 20),
    )
    def create(self, policy: RingOverflowPolicy, double_mapped: bool, capacity: int) -> None:
        self.ring = AudioRing(capacity, ITEM, policy, use_double_mapping=double_mapped)
        self.cap = self.ring.capacity
        self.policy = policy
        self.stream: list[int] = []  # every item accepted, by position
        self.rp = 0
        self.counts = {
            "read": 0,
            "dropped_newest": 0,
            "refused": 0,
            "overruns": 0,
            "overrun_items": 0,
        }
        self.view: tuple[int, np.ndarray[Any, Any]] | None = None

    def _accept(self, n: int) -> int:
        if self.policy == DO:
            return n
        room = self.cap - (len(self.stream) - self.rp)
        if n > room:
            self.counts["refused" if self.policy == BP else "dropped_newest"] += n - room
        return min(n, room)

    def _skip_overwritten(self) -> None:
        lapped = len(self.stream) - self.cap - self.rp
        if lapped > 0:
            self.counts["overruns"] += 1
            self.counts["overrun_items"] += lapped
            self.rp += lapped

    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(0, 2 * self.cap + 2))
        block = np.zeros(n, ITEM)
        block["v"] = np.arange(len(self.stream), len(self.stream) + n) + 1
        accepted = self._accept(n)
        assert self.ring.write(block) == accepted
        self.stream.extend(block["v"][:accepted].tolist())

    @rule(n=st.integers(0, 10))
    def write_silence(self, n: int) -> None:
        accepted = self._accept(n)
        assert self.ring.write_silence(n) == accepted
        self.stream.extend([0] * accepted)

    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        max_items = data.draw(st.none() | st.integers(0, self.cap + 1))
        view = self.ring.read(max_items)
        self._skip_overwritten()
        n = (
            len(self.stream) - self.rp
            if max_items is None
            else min(max_items, len(self.stream) - self.rp)
        )
        assert view["v"].tolist() == self.stream[self.rp : self.rp + n]
        assert view.flags.c_contiguous
        self.view = (self.rp, view)

    @rule(data=st.data())
    def consume(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(0, min(self.cap, len(self.stream) - self.rp)))
        lapped = max(0, min(n, len(self.stream) - self.cap - self.rp))
        if self.view is not None and self.view[0] == self.rp and self.policy != DO:
            # a view of unconsumed items is unchanged until consumed
            assert self.view[1]["v"].tolist() == self.stream[self.rp : self.rp + len(self.view[1])]
        assert self.ring.consume(n) == lapped
        if lapped:
            self.counts["overruns"] += 1
            self.counts["overrun_items"] += lapped
        self.counts["read"] += n - lapped
        self.rp += n
        self.view = None

    @rule(max_items=st.integers(0, 25))
    def read_copy(self, max_items: int) -> None:
        got = self.ring.read_copy(max_items)
        self._skip_overwritten()
        n = min(max_items, len(self.stream) - self.rp)
        assert got["v"].tolist() == self.stream[self.rp : self.rp + n]
        self.counts["read"] += n
        self.rp += n
        self.view = None

    @invariant()
    def stats_match_the_model(self) -> None:
        s = self.ring.stats()
        w = len(self.stream)
        pending = max(0, w - self.cap - self.rp)
        assert s.written == w
        assert s.fill == self.ring.available == w - self.rp - pending
        assert s.dropped_oldest == self.counts["overrun_items"] + pending
        for name, value in self.counts.items():
            assert getattr(s, name) == value, name
        check_balance(s)


RingMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestRingMachine = RingMachine.TestCase
