"""rtms-fast: a high-throughput ingest engine for Zoom Realtime Media Streams (RTMS).

The names most applications need are re-exported here and imported on first use,
so ``import rtms_fast`` stays cheap (the engine pulls in Trio and the native core):

    from rtms_fast import Engine, EngineSettings, SessionSpec, WebhookServer
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Engine": "rtms_fast.engine",
    "StartResult": "rtms_fast.engine",
    "EngineSettings": "rtms_fast.settings",
    "SettingsError": "rtms_fast.settings",
    "Session": "rtms_fast.session",
    "SessionSpec": "rtms_fast.session",
    "WebhookServer": "rtms_fast.webhook",
    "EngineRecorder": "rtms_fast.sinks",
    "AudioRing": "rtms_fast.ring",
    "AudioRingGroup": "rtms_fast.ring_group",
    "MemoryBudget": "rtms_fast.ring",
    "RingOverflowPolicy": "rtms_fast.ring",
    "StreamStopped": "rtms_fast.events",
    "StreamLost": "rtms_fast.events",
}

__all__ = [
    "AudioRing",
    "AudioRingGroup",
    "Engine",
    "EngineRecorder",
    "EngineSettings",
    "MemoryBudget",
    "RingOverflowPolicy",
    "Session",
    "SessionSpec",
    "SettingsError",
    "StartResult",
    "StreamLost",
    "StreamStopped",
    "WebhookServer",
    "__version__",
]

if TYPE_CHECKING:
    from rtms_fast.engine import Engine, StartResult
    from rtms_fast.events import StreamLost, StreamStopped
    from rtms_fast.ring import AudioRing, MemoryBudget, RingOverflowPolicy
    from rtms_fast.ring_group import AudioRingGroup
    from rtms_fast.session import Session, SessionSpec
    from rtms_fast.settings import EngineSettings, SettingsError
    from rtms_fast.sinks import EngineRecorder
    from rtms_fast.webhook import WebhookServer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtms_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
