"""The engine's garbage-collector policy: freeze survivors, reclaim after sessions end."""

from __future__ import annotations

import gc
import weakref

import pytest
import trio
import trio.testing

from rtms_fast.gc_policy import GcPolicyStats, run_gc_policy
from rtms_fast.settings import EngineSettings, SettingsError


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_freezes_every_interval_and_restores_the_collector(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats = GcPolicyStats()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_gc_policy, 1.0, 300.0, lambda: 0, stats)
        await trio.sleep(3.5)
        assert stats.freezes == 3
        assert gc.get_freeze_count() > 0
        nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0  # the last policy task gave the collector back
    assert stats.full_collections == 1  # the closing pass


async def test_frozen_cyclic_garbage_is_reclaimed_by_the_periodic_full_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats = GcPolicyStats()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_gc_policy, 1.0, 10.0, lambda: 0, stats)
        cycle = _Cycle()
        alive = weakref.ref(cycle)
        await trio.sleep(1.5)  # frozen while still referenced
        del cycle
        gc.collect()  # a normal pass cannot see frozen objects
        assert alive() is not None
        await trio.sleep(5)
        assert alive() is not None and stats.full_collections == 0
        await trio.sleep(5)  # the full interval has passed
        assert alive() is None
        assert stats.full_collections == 1 and stats.collected >= 1
        assert stats.longest_full_collection_s > 0
        nursery.cancel_scope.cancel()


async def test_many_ended_sessions_bring_the_full_pass_forward(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats = GcPolicyStats()
    ended = [0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_gc_policy, 1.0, 300.0, lambda: ended[0], stats)
        await trio.sleep(2.5)
        ended[0] = 99
        await trio.sleep(2)
        assert stats.full_collections == 0
        ended[0] = 100
        await trio.sleep(1)
        assert stats.full_collections == 1
        nursery.cancel_scope.cancel()


async def test_zero_interval_leaves_the_collector_alone() -> None:
    stats = GcPolicyStats()
    with trio.move_on_after(0.05):
        await run_gc_policy(0.0, 300.0, lambda: 0, stats)
    assert stats.freezes == 0 and gc.get_freeze_count() == 0


def test_settings_validate_the_gc_knobs() -> None:
    assert EngineSettings(gc_freeze_interval_s=0).gc_freeze_interval_s == 0
    with pytest.raises(SettingsError, match="gc_freeze_interval_s"):
        EngineSettings(gc_freeze_interval_s=-1)
    with pytest.raises(SettingsError, match="gc_full_collect_interval_s"):
        EngineSettings(gc_full_collect_interval_s=0)
