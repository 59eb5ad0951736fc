"""Data-plane knobs reach the pump the engine builds."""

from __future__ import annotations

from rtms_fast.engine import Engine
from rtms_fast.native import lib
from rtms_fast.settings import EngineSettings


def test_delayed_ack_setting_reaches_the_pump() -> None:
    on = Engine(EngineSettings())
    off = Engine(EngineSettings(tcp_delayed_ack=False))
    assert on.pump is not None and off.pump is not None
    assert on.pump._recv_flags == lib.RTMS_RECV_DELAY_ACK
    assert off.pump._recv_flags == 0


def test_delayed_ack_from_environment() -> None:
    s = EngineSettings.from_env({"RTMS_FAST_TCP_DELAYED_ACK": "false"})
    assert s.tcp_delayed_ack is False


def test_no_pump_without_use_pump() -> None:
    assert Engine(EngineSettings(use_pump=False)).pump is None
