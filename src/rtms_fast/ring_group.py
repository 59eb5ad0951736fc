"""Many audio rings drained in one native call.

An ASR worker that serves hundreds of streams wants every stream's new audio at once,
not one Python round trip per participant: reading 1,000 rings one by one costs a few
microseconds each in method calls alone, more than the engine spends receiving and
decoding the audio. ``AudioRingGroup.read`` copies every member ring's readable items
into one array, ring after ring, consuming them, in two native calls whatever the number
of rings; ``GroupRead`` says which items came from which ring.

A group is the consumer of its rings: while a ring is a member, read it only through
the group (rings are single-consumer). A group may be read from any one thread at a
time (a lock keeps ``add``/``remove`` from another thread safe). Like
``AudioRing.read_copy``, only intact items are returned: under DROP_OLDEST, items the
producer overwrote before or during the copy are skipped and counted by the ring
(``RingStats.dropped_oldest``), never handed out.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from rtms_fast.native import ffi, lib
from rtms_fast.ring import AudioRing

__all__ = ["AudioRingGroup", "GroupRead"]

_readable_many = lib.rtms_ring_readable_many
_read_many = lib.rtms_ring_read_many

if ffi.sizeof("size_t") != np.dtype(np.uintp).itemsize:  # pragma: no cover - exotic ABI
    raise ImportError("size_t and numpy's uintp differ in size on this platform")


class GroupRead:
    """What one ``AudioRingGroup.read`` returned.

    ``samples`` holds every ring's items, ring after ring in group order; ring ``i``'s
    are ``samples[offsets[i]:offsets[i + 1]]`` (``of(i)``), ``counts[i]`` of them.
    ``rings`` is the group's membership at the read, so indices stay meaningful even if
    the group changes afterwards.
    """

    __slots__ = ("counts", "offsets", "rings", "samples")

    def __init__(self, samples: npt.NDArray[Any], counts: npt.NDArray[np.intp],
                 rings: tuple[AudioRing, ...]) -> None:
        self.samples = samples
        self.counts = counts
        offsets = np.zeros(len(counts) + 1, np.intp)
        np.cumsum(counts, out=offsets[1:])
        self.offsets = offsets
        self.rings = rings

    def __len__(self) -> int:
        """Items in all (``len(samples)``)."""
        return int(self.samples.shape[0])

    def of(self, index: int) -> npt.NDArray[Any]:
        """The items of ring ``index`` (a view of ``samples``)."""
        return self.samples[self.offsets[index] : self.offsets[index + 1]]

    def nonempty(self) -> npt.NDArray[np.intp]:
        """Indices of the rings that gave at least one item."""
        return np.flatnonzero(self.counts)


class AudioRingGroup:
    """A set of rings of one dtype, read together (see the module docstring).

    Rings keep the order they were added in; removing one moves the later ones down by
    one index.
    """

    def __init__(self, dtype: npt.DTypeLike = np.int16) -> None:
        self.dtype = np.dtype(dtype)
        self._lock = threading.Lock()
        self._rings: list[AudioRing] = []
        self._members: set[int] = set()  # id() of member rings
        self._reserve(16)

    def _reserve(self, slots: int) -> None:
        """Native arrays for ``slots`` rings (the ring pointers, the per-ring counts)."""
        self._pointers = ffi.new("rtms_ring *[]", slots)
        self._counts = np.zeros(slots, np.uintp)
        self._p_counts = ffi.cast("size_t *", self._counts.ctypes.data)
        for i, ring in enumerate(self._rings):
            self._pointers[i] = ring.native_handle()

    def add(self, ring: AudioRing) -> int:
        """Make ``ring`` a member; returns its index. TypeError if its dtype differs from
        the group's, ValueError if it is a member already."""
        if ring.dtype != self.dtype:
            raise TypeError(f"ring of {ring.dtype} in a group of {self.dtype}")
        with self._lock:
            if id(ring) in self._members:
                raise ValueError("ring is already in this group")
            index = len(self._rings)
            self._rings.append(ring)
            if index == len(self._pointers):
                self._reserve(2 * index)  # copies every ring's pointer, this one's too
            else:
                self._pointers[index] = ring.native_handle()
            self._members.add(id(ring))
            return index

    def remove(self, *rings: AudioRing) -> None:
        """Stop reading ``rings`` (their unread items stay in them), in one pass whatever
        their number. ValueError, removing none, if one is not a member."""
        with self._lock:
            gone = {id(ring) for ring in rings}
            if not gone <= self._members:
                raise ValueError("ring is not in this group")
            self._members -= gone
            self._rings = [r for r in self._rings if id(r) not in gone]
            self._reserve(max(16, len(self._pointers)))

    def __len__(self) -> int:
        return len(self._rings)

    def __contains__(self, ring: object) -> bool:
        return id(ring) in self._members

    @property
    def rings(self) -> tuple[AudioRing, ...]:
        """The member rings, in index order."""
        return tuple(self._rings)

    def index(self, ring: AudioRing) -> int:
        """The index of member ``ring``; ValueError if it is not one."""
        for i, member in enumerate(self._rings):
            if member is ring:
                return i
        raise ValueError("ring is not in this group")

    @property
    def available(self) -> int:
        """Items readable now in all member rings together."""
        with self._lock:
            total: int = _readable_many(self._pointers, len(self._rings), self._p_counts)
            return total

    def read(self, out: npt.NDArray[Any] | None = None) -> GroupRead:
        """Copy out and consume every item readable now in every member ring.

        Without ``out`` the samples land in a new array, valid forever. With ``out`` (a
        writable 1-D array of the group's dtype, reused from call to call to spare the
        allocation) they land there: rings are taken in index order while ``out`` has
        room, and what does not fit stays in its ring for the next call, so size ``out``
        for a whole read interval of every ring. Items that arrive during the call are
        left for the next one.
        """
        if out is not None and (out.dtype != self.dtype or out.ndim != 1
                                or not out.flags.c_contiguous or not out.flags.writeable):
            raise ValueError(f"out must be a writable contiguous 1-D array of {self.dtype}")
        with self._lock:
            n = len(self._rings)
            rings = tuple(self._rings)
            total = int(_readable_many(self._pointers, n, self._p_counts))
            if out is None:
                out = np.empty(total, self.dtype)
            elif total > out.shape[0]:
                counts = self._counts[:n]
                before = np.cumsum(counts) - counts  # items of the rings ahead of each one
                room = np.clip(out.shape[0] - before.astype(np.int64), 0, None)
                np.minimum(counts, room.astype(np.uintp), out=counts)
                total = out.shape[0]
            got = 0
            if total:
                got = int(_read_many(self._pointers, n, self.dtype.itemsize,
                                     ffi.from_buffer(out, require_writable=True),
                                     self._p_counts))
                counts_read = self._counts[:n].astype(np.intp)
            else:
                counts_read = np.zeros(n, np.intp)
        return GroupRead(out[:got], counts_read, rings)
