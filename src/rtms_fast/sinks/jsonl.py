"""JSONL sink: one JSON line per event (transcripts, chat, participants, state changes, stop).

``JsonlSink`` consumes an ``EventSubscription`` and appends each event as compact JSON
(msgspec, with a ``"type"`` tag naming the event class) to a file. File writes run in a
worker thread in batches, so a slow disk never stalls the Trio loop; the subscription's
bounded queue absorbs bursts (and counts what it drops). Media frame bytes are not written
(only their size): video belongs in its own sink. This module must never parse wire bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

import msgspec
import trio

from rtms_fast.events import EngineEvent, EventSubscription, MediaFrameReceived

__all__ = ["JsonlSink", "write_events_jsonl"]

_ENCODER = msgspec.json.Encoder()


def _line(event: EngineEvent) -> bytes:
    if isinstance(event, MediaFrameReceived):
        record = msgspec.to_builtins(event)
        record["data"] = None
        record["data_bytes"] = len(event.data)
        return _ENCODER.encode(record) + b"\n"
    return _ENCODER.encode(event) + b"\n"


class JsonlSink:
    """Append every event of a subscription to ``path`` as JSON lines until it ends.

    ``lines_written`` counts lines on disk. Use ``await sink.run()`` in a nursery.
    """

    def __init__(self, path: str | os.PathLike[str], subscription: EventSubscription) -> None:
        self.path = Path(path)
        self._subscription = subscription
        self.lines_written = 0

    async def run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file: IO[bytes] = await trio.to_thread.run_sync(self.path.open, "ab")
        try:
            while True:
                try:
                    first = await self._subscription.get()
                except trio.EndOfChannel:
                    break
                batch = [_line(first)]
                # Drain what is already queued, then write it in one thread hop.
                while len(batch) < 4096:
                    try:
                        batch.append(_line(self._subscription.get_nowait()))
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                data = b"".join(batch)
                await trio.to_thread.run_sync(_write_and_flush, file, data)
                self.lines_written += len(batch)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(file.close)


def _write_and_flush(file: IO[bytes], data: bytes) -> None:
    file.write(data)
    file.flush()


def write_events_jsonl(path: str | os.PathLike[str], events: list[EngineEvent]) -> int:
    """Write ``events`` to ``path`` (overwriting) and return the number of lines (blocking)."""
    with Path(path).open("wb") as f:
        for event in events:
            f.write(_line(event))
    return len(events)
