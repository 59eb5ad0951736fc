"""Ring buffers in native memory and their numpy readers.

One single-producer single-consumer ring per (session, participant, stream). The
producer is normally the native ingest kernel; Python writes only in tests or in
Python producers. Readers get numpy views straight onto the ring's memory: no copy,
and contiguous even across the wrap (see ``csrc/ring.c`` for the memory layout).

This module must never copy samples on the read path unless asked (``read_copy``),
never block the Trio thread, and never lose an item without counting it.

View contract
-------------
``read()`` returns a read-only view of the oldest unread items and does not consume
them (a second ``read()`` starts at the same item). The rule to code against: use a
view before the next ``consume()`` or ``read_copy()`` on that ring, and under
DROP_OLDEST discard what ``consume()`` reports as overwritten. Precisely:

* DROP_NEWEST and BACKPRESSURE: the producer never writes into unconsumed slots, so
  the view's items stay exactly as returned until they are consumed. Once consumed,
  their slots may be reused: the view then shows whatever the producer writes there
  later (newer samples), never garbage outside the ring and never a fault, because
  the view keeps the native memory alive.
* DROP_OLDEST: the producer never waits, so once the ring is full it can overwrite
  the oldest items at any time, including those the view shows. ``consume(n)``
  returns how many items at the front of the view were (possibly) overwritten while
  it was held; results computed from those items must be discarded. ``read_copy()``
  does this check itself and returns only intact items. Items overwritten before a
  ``read()`` are skipped by it and counted as an overrun, so a later ``read()`` may
  start after an earlier view's first item. (The check is a seqlock-style re-read of
  the producer's claimed write position after use; see ``csrc/ring.c``.)

A view keeps the native ring alive (its ``base`` chain ends in a native reference),
so it may outlive the ``AudioRing`` that produced it.

Waking readers
--------------
The producer side calls ``RingNotifier.notify()`` once per sweep (not per message):
Python's ``AudioRing.write`` does not notify by itself, so a Python producer calls
``ring.notifier.notify()`` after a batch. A notifier can be shared by many rings (one
call per sweep wakes every waiter, each re-checks its own ring). Blocked threads wait
on a ``threading.Condition``; Trio tasks wait on a ``trio.Event`` that ``notify`` sets
directly from the Trio thread, or through ``TrioToken.run_sync_soon`` from any other
thread. ``notify`` costs a few attribute reads when nobody waits.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from rtms_fast.native import ffi, lib

__all__ = [
    "AudioRing",
    "MemoryBudget",
    "RingBudgetExceededError",
    "RingNotifier",
    "RingOverflowPolicy",
    "RingStats",
    "TrioRingReader",
]

_SIZE_MAX = int(ffi.cast("size_t", -1))

# Bound once: an attribute lookup on `lib` per call is a measurable share of a 320-item read.
_ring_write = lib.rtms_ring_write
_ring_peek_at = lib.rtms_ring_peek_at
_ring_consume = lib.rtms_ring_consume
_ring_readable = lib.rtms_ring_readable
_from_buffer = ffi.from_buffer


class RingOverflowPolicy(enum.IntEnum):
    """What a full ring does with a write (values are the C ``RTMS_RING_*`` constants)."""

    DROP_OLDEST = 0  # overwrite the oldest unread items (counted as dropped_oldest)
    DROP_NEWEST = 1  # keep the unread items, drop what does not fit (dropped_newest)
    BACKPRESSURE = 2  # refuse what does not fit and hand it back (refused)


class RingBudgetExceededError(MemoryError):
    """Creating the ring would take its memory budget past the limit."""


@dataclass(frozen=True, slots=True)
class RingStats:
    """A snapshot of one ring's counters, in items.

    Exact when the ring is quiet: ``written == read + dropped_oldest + fill``.
    """

    capacity: int
    fill: int  # readable now
    written: int  # accepted by the producer, silence included
    read: int  # consumed intact
    dropped_oldest: int  # overwritten before being read (found by the reader or pending)
    dropped_newest: int  # dropped by DROP_NEWEST (or a reservation larger than the ring)
    refused: int  # refused by BACKPRESSURE; a retried item counts once per refusal
    overruns: int  # times the reader found items overwritten
    overrun_items: int  # items the reader found overwritten

    @property
    def dropped(self) -> int:
        """Items lost for good, all reasons (refused items went back to the producer)."""
        return self.dropped_oldest + self.dropped_newest


class MemoryBudget:
    """A ceiling on the total bytes of many rings; creation past it fails cleanly.

    Rings charge their page cost (see ``AudioRing.footprint_bytes``) while they live.
    The native budget stays alive as long as a ring charged to it does.
    """

    __slots__ = ("_handle", "limit_bytes")

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 0:
            raise ValueError(f"limit_bytes must be >= 0, got {limit_bytes}")
        raw = lib.rtms_budget_new(limit_bytes)
        if raw == ffi.NULL:
            raise MemoryError("cannot allocate a memory budget")
        self._handle: Any = ffi.gc(raw, lib.rtms_budget_free)
        self.limit_bytes = limit_bytes

    @property
    def used_bytes(self) -> int:
        return int(lib.rtms_budget_used(self._handle))

    @property
    def available_bytes(self) -> int:
        return self.limit_bytes - self.used_bytes

    def __repr__(self) -> str:
        return f"MemoryBudget(used_bytes={self.used_bytes}, limit_bytes={self.limit_bytes})"


class RingNotifier:
    """Wakes readers waiting for data; the producer side calls ``notify()`` once per sweep.

    Thread-safe. Waiters always re-check their own condition, so a spurious or shared
    notification costs one check per waiter and a missed one cannot happen: a waiter
    registers before it checks, and a producer notifies after it publishes.
    """

    __slots__ = ("_cond", "_doorbells", "_thread_waiters", "_trio_waiters")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._thread_waiters = 0
        self._trio_waiters: dict[trio.Event, trio.lowlevel.TrioToken] = {}
        self._doorbells: tuple[Callable[[], None], ...] = ()

    def add_doorbell(self, ring: Callable[[], None]) -> None:
        """Call ``ring()`` whenever a waiter registers, before it checks its condition: a
        producer that only notifies when asked (the media pump) learns that someone waits.
        ``ring`` must be cheap, thread-safe and must not call back into this notifier."""
        with self._cond:
            self._doorbells = (*self._doorbells, ring)

    def remove_doorbell(self, ring: Callable[[], None]) -> None:
        with self._cond:
            self._doorbells = tuple(d for d in self._doorbells if d is not ring)

    def _ring_doorbells(self) -> None:
        for ring in self._doorbells:
            ring()

    def notify(self) -> None:
        """Wake every waiter so it re-checks its ring. Call after publishing data."""
        if not self._thread_waiters and not self._trio_waiters:
            return  # the fast path of a sweep with no one waiting
        with self._cond:
            if self._thread_waiters:
                self._cond.notify_all()
            waiters, self._trio_waiters = self._trio_waiters, {}
        if not waiters:
            return
        try:
            here: trio.lowlevel.TrioToken | None = trio.lowlevel.current_trio_token()
        except RuntimeError:
            here = None
        for event, token in waiters.items():
            if token is here:
                event.set()
            else:
                # a finished Trio run has no waiter left to wake
                with contextlib.suppress(trio.RunFinishedError):
                    token.run_sync_soon(event.set)

    def wait_blocking(self, ready: Callable[[], bool], timeout_s: float | None) -> bool:
        """Block this thread until ``ready()``; False on timeout. Never on the Trio thread."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._thread_waiters += 1
            self._ring_doorbells()
            try:
                while not ready():
                    if deadline is None:
                        self._cond.wait()
                        continue
                    remaining_s = deadline - time.monotonic()
                    if remaining_s <= 0:
                        return False
                    self._cond.wait(remaining_s)
                return True
            finally:
                self._thread_waiters -= 1

    async def wait_trio(self, ready: Callable[[], bool]) -> None:
        """Sleep the calling Trio task until ``ready()``; cancellable; always checkpoints."""
        if ready():
            await trio.lowlevel.checkpoint()
            return
        token = trio.lowlevel.current_trio_token()
        while True:
            event = trio.Event()
            with self._cond:
                self._trio_waiters[event] = token
                self._ring_doorbells()
            try:
                if ready():
                    await trio.lowlevel.checkpoint()
                    return
                await event.wait()
            finally:
                with self._cond:
                    self._trio_waiters.pop(event, None)
            if ready():
                return


def _release_ring_memory(raw_ring: Any) -> Callable[[Any], None]:
    """A finalizer that drops the native reference held on behalf of numpy views."""

    def release(_window_ptr: Any) -> None:
        lib.rtms_ring_release(raw_ring)

    return release


class AudioRing:
    """A single-producer single-consumer ring of samples in native memory.

    ``capacity`` is in items (samples); it is rounded up to whole pages when the ring is
    double-mapped. ``use_double_mapping=False`` forces the portable mirrored layout.
    One thread (or task) reads; one writes. See the module docstring for the view
    contract and the wake-up mechanism.
    """

    __slots__ = (
        "_budget",
        "_handle",
        "_item_size",
        "_offset_out",
        "_overwritten_out",
        "_window",
        "dtype",
        "notifier",
    )

    def __init__(
        self,
        capacity: int,
        dtype: npt.DTypeLike = np.int16,
        policy: RingOverflowPolicy = RingOverflowPolicy.DROP_OLDEST,
        budget: MemoryBudget | None = None,
        *,
        use_double_mapping: bool = True,
        notifier: RingNotifier | None = None,
    ) -> None:
        item_dtype = _check_dtype(dtype)
        if capacity <= 0:
            raise ValueError(f"capacity must be > 0 items, got {capacity}")
        policy = RingOverflowPolicy(policy)
        flags = 0 if use_double_mapping else lib.RTMS_RING_FLAG_MIRRORED
        error = ffi.new("int *")
        raw = lib.rtms_ring_new_ex(
            capacity,
            item_dtype.itemsize,
            int(policy),
            ffi.NULL if budget is None else budget._handle,
            flags,
            error,
        )
        if raw == ffi.NULL:
            if error[0] == lib.RTMS_RING_EBUDGET:
                assert budget is not None
                need = lib.rtms_ring_footprint_for(capacity, item_dtype.itemsize, flags)
                raise RingBudgetExceededError(
                    f"a ring of {capacity} x {item_dtype.itemsize} bytes needs {need} bytes; "
                    f"budget has {budget.available_bytes} of {budget.limit_bytes} left"
                )
            if error[0] == lib.RTMS_RING_ENOMEM:
                raise MemoryError(f"cannot allocate a ring of {capacity} items")
            raise ValueError(
                f"ring of {capacity} items of {item_dtype.itemsize} bytes is too large"
            )
        self._setup(ffi.gc(raw, lib.rtms_ring_release), item_dtype, budget, notifier)

    @classmethod
    def _from_native(
        cls, ring_ptr: Any, dtype: npt.DTypeLike, notifier: RingNotifier | None = None
    ) -> AudioRing:
        """Wrap a ring created in C (``rtms_ring *``), taking a reference of its own."""
        item_dtype = _check_dtype(dtype)
        if ring_ptr == ffi.NULL:
            raise ValueError("ring pointer is NULL")
        raw = ffi.cast("rtms_ring *", ring_ptr)
        item_size = int(lib.rtms_ring_item_size(raw))
        if item_size != item_dtype.itemsize:
            raise TypeError(
                f"ring items are {item_size} bytes, dtype {item_dtype} has {item_dtype.itemsize}"
            )
        lib.rtms_ring_retain(raw)
        self = cls.__new__(cls)
        self._setup(ffi.gc(raw, lib.rtms_ring_release), item_dtype, None, notifier)
        return self

    def _setup(
        self,
        handle: Any,
        item_dtype: np.dtype[Any],
        budget: MemoryBudget | None,
        notifier: RingNotifier | None,
    ) -> None:
        self._handle = handle
        self._budget = budget
        self.dtype = item_dtype
        self._item_size = item_dtype.itemsize
        self.notifier = notifier if notifier is not None else RingNotifier()
        self._offset_out = ffi.new("size_t *")  # out-parameters, reused: one reader at a time
        self._overwritten_out = ffi.new("size_t *")
        # Views chain to the native memory through one extra reference, released when the
        # last view (and this object) is gone: window array -> ffi buffer -> gc'd pointer.
        raw = ffi.cast("rtms_ring *", handle)
        lib.rtms_ring_retain(raw)
        window_ptr = ffi.gc(
            ffi.cast("uint8_t *", lib.rtms_ring_window(raw)), _release_ring_memory(raw)
        )
        window_bytes = 2 * int(lib.rtms_ring_capacity(raw)) * self._item_size
        # a read-only export, so no view can be made writable again
        readonly = memoryview(ffi.buffer(window_ptr, window_bytes)).toreadonly()
        self._window: npt.NDArray[Any] = np.frombuffer(readonly, item_dtype)

    # ---- properties ---------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Items the ring holds (after rounding)."""
        return int(lib.rtms_ring_capacity(self._handle))

    @property
    def policy(self) -> RingOverflowPolicy:
        return RingOverflowPolicy(lib.rtms_ring_policy(self._handle))

    @property
    def is_double_mapped(self) -> bool:
        """True when the pages are mapped twice; False for the mirrored fallback."""
        return bool(lib.rtms_ring_is_double_mapped(self._handle))

    @property
    def footprint_bytes(self) -> int:
        """Bytes this ring charges to its budget."""
        return int(lib.rtms_ring_footprint(self._handle))

    @property
    def available(self) -> int:
        """Items readable now (at most ``capacity``)."""
        n: int = _ring_readable(self._handle)
        return n

    def native_handle(self) -> Any:
        """The ``rtms_ring *`` for native code; valid while this object lives (retain to keep)."""
        return self._handle

    # ---- producer -----------------------------------------------------------

    def write(self, samples: npt.ArrayLike) -> int:
        """Write samples (dtype must match); returns how many were accepted.

        DROP_OLDEST accepts everything. DROP_NEWEST and BACKPRESSURE accept the prefix
        that fits; the rest is counted (dropped_newest / refused). Does not notify.
        """
        block = self._as_block(samples)
        n = block.shape[0]
        if n == 0:
            return 0
        accepted: int = _ring_write(self._handle, _from_buffer(block), n)
        return accepted

    def write_silence(self, n_items: int) -> int:
        """Write ``n_items`` zero items (gap filling); returns how many were accepted."""
        if n_items < 0:
            raise ValueError(f"n_items must be >= 0, got {n_items}")
        return int(lib.rtms_ring_write_silence(self._handle, n_items))

    # ---- consumer -----------------------------------------------------------

    def read(self, max_items: int | None = None) -> npt.NDArray[Any]:
        """A read-only view of up to ``max_items`` oldest unread items, without copying.

        Does not consume; see the module docstring for how long the view is valid.
        """
        limit = _SIZE_MAX if max_items is None else _check_count(max_items, "max_items")
        out = self._offset_out
        n = _ring_peek_at(self._handle, limit, out)
        offset = out[0]
        view: npt.NDArray[Any] = self._window[offset : offset + n]
        return view

    def consume(self, n_items: int) -> int:
        """Release the ``n_items`` oldest unread items (normally ``len(view)``).

        Returns how many of them were overwritten while the view was held (DROP_OLDEST
        only; always 0 otherwise): their values in the view must be discarded.
        Raises ValueError if fewer than ``n_items`` are unread.
        """
        overwritten = self._overwritten_out
        if n_items < 0 or _ring_consume(self._handle, n_items, overwritten) != n_items:
            raise ValueError(f"cannot consume {n_items} items, {self.available} are readable")
        lost: int = overwritten[0]
        return lost

    def read_copy(self, max_items: int | None = None) -> npt.NDArray[Any]:
        """Copy out and consume up to ``max_items`` items; only intact items are returned."""
        limit = self.available if max_items is None else _check_count(max_items, "max_items")
        out = np.empty(min(limit, self.capacity), self.dtype)
        # called even for 0 items: like read(), it skips (and counts) overwritten items
        n = lib.rtms_ring_read(
            self._handle, ffi.from_buffer(out, require_writable=True), out.shape[0]
        )
        return out[:n]

    def stats(self) -> RingStats:
        raw = ffi.new("rtms_ring_stats *")
        lib.rtms_ring_get_stats(self._handle, raw)
        return RingStats(
            capacity=int(raw.capacity),
            fill=int(raw.fill),
            written=int(raw.written),
            read=int(raw.read),
            dropped_oldest=int(raw.dropped_oldest),
            dropped_newest=int(raw.dropped_newest),
            refused=int(raw.refused),
            overruns=int(raw.overruns),
            overrun_items=int(raw.overrun_items),
        )

    def wait_readable(self, min_items: int = 1, timeout_s: float | None = None) -> bool:
        """Block this thread until ``min_items`` are readable; False on timeout.

        For reader threads (e.g. an ASR worker); never call it on the Trio thread (use
        ``TrioRingReader``). Wakes when the producer side calls ``notifier.notify()``.
        """
        self._check_wait(min_items)
        return self.notifier.wait_blocking(lambda: self.available >= min_items, timeout_s)

    # ---- helpers ------------------------------------------------------------

    def _check_wait(self, min_items: int) -> None:
        if not 0 < min_items <= self.capacity:
            raise ValueError(f"min_items must be in 1..{self.capacity}, got {min_items}")

    def _as_block(self, samples: npt.ArrayLike) -> npt.NDArray[Any]:
        if isinstance(samples, np.ndarray):
            if samples.dtype != self.dtype:
                raise TypeError(f"samples must have dtype {self.dtype}, got {samples.dtype}")
            if samples.ndim != 1:
                raise ValueError(f"samples must be 1-D, got shape {samples.shape}")
            return samples if samples.flags.c_contiguous else np.ascontiguousarray(samples)
        if isinstance(samples, (bytes, bytearray, memoryview)):
            raw = memoryview(samples).cast("B")
            if len(raw) % self._item_size:
                raise ValueError(f"{len(raw)} bytes is not a whole number of {self.dtype} items")
            return np.frombuffer(raw, self.dtype)
        raise TypeError(f"samples must be a numpy {self.dtype} array or bytes-like")

    def __repr__(self) -> str:
        return (
            f"AudioRing(capacity={self.capacity}, dtype={self.dtype}, policy={self.policy.name}, "
            f"available={self.available}, double_mapped={self.is_double_mapped})"
        )


class TrioRingReader:
    """The reader of one ring from a Trio task: ``await reader.wait_readable(n)``.

    Wakes when the producer side calls ``ring.notifier.notify()`` (once per sweep).
    Reading itself never blocks, so it is the same as on ``AudioRing``.
    """

    __slots__ = ("ring",)

    def __init__(self, ring: AudioRing) -> None:
        self.ring = ring

    async def wait_readable(self, min_items: int = 1) -> None:
        """Sleep until ``min_items`` are readable (wrap in ``trio.move_on_after`` to bound it)."""
        ring = self.ring
        ring._check_wait(min_items)
        await ring.notifier.wait_trio(lambda: ring.available >= min_items)

    @property
    def available(self) -> int:
        return self.ring.available

    def read(self, max_items: int | None = None) -> npt.NDArray[Any]:
        return self.ring.read(max_items)

    def consume(self, n_items: int) -> int:
        return self.ring.consume(n_items)

    def read_copy(self, max_items: int | None = None) -> npt.NDArray[Any]:
        return self.ring.read_copy(max_items)

    def stats(self) -> RingStats:
        return self.ring.stats()


def _check_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    item_dtype = np.dtype(dtype)
    if item_dtype.hasobject or item_dtype.itemsize == 0:
        raise TypeError(f"ring items must be fixed-size plain data, got {item_dtype}")
    return item_dtype


def _check_count(n: int, name: str) -> int:
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n
