"""WAV sink: one 16-bit PCM WAV file per participant of a session.

``SessionWavSink`` waits on the session's ring notifier, drains every participant ring
every ``flush_interval_s`` (copies, so rings are free at once) and appends to
``<directory>/<participant>.wav`` in a worker thread (the stdlib ``wave`` module keeps the
header right on close). float32 rings are converted to int16 with saturation. The file's
rate and channel count are those of the ring. This module must never touch sockets.
"""

from __future__ import annotations

import os
import re
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import trio

from rtms_fast.session import Session

__all__ = ["SessionWavSink", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of an id (stream ids and user ids can hold ``/`` or ``=``)."""
    return _UNSAFE.sub("_", text).strip("._") or "unnamed"


def _as_int16(samples: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    if samples.dtype == np.int16:
        return samples
    scaled = np.clip(np.rint(samples * 32768.0), -32768, 32767)
    return scaled.astype(np.int16)


class SessionWavSink:
    """Write every participant's audio of ``session`` to WAV files under ``directory``."""

    def __init__(self, session: Session, directory: str | os.PathLike[str],
                 flush_interval_s: float = 0.2) -> None:
        self.session = session
        self.directory = Path(directory)
        self.flush_interval_s = flush_interval_s
        self._files: dict[str, wave.Wave_write] = {}
        self.samples_written: dict[str, int] = {}

    @property
    def paths(self) -> dict[str, Path]:
        """Participant key -> WAV path, for files created so far."""
        return {key: self._path(key) for key in self._files}

    def _path(self, key: str) -> Path:
        return self.directory / f"{safe_name(key)}.wav"

    async def run(self) -> None:
        """Drain until the session has finished and every ring is empty."""
        session = self.session
        try:
            while True:
                await session.notifier.wait_trio(
                    lambda: session.finished.is_set()
                    or any(session.ring(k).available for k, _, _ in session.participants())
                )
                finished = session.finished.is_set()
                await self._drain()
                if finished:
                    return
                await trio.sleep(self.flush_interval_s)
        finally:
            with trio.CancelScope(shield=True):
                await self._drain()
                files = list(self._files.values())
                await trio.to_thread.run_sync(_close_all, files)

    async def _drain(self) -> None:
        batch: list[tuple[str, bytes]] = []
        for key, _, _ in self.session.participants():
            ring = self.session.ring(key)
            if ring.available:
                batch.append((key, _as_int16(ring.read_copy()).astype("<i2").tobytes()))
        if not batch:
            return
        rate = self.session.audio_sample_rate_hz or 16000
        for key, data in batch:
            if key not in self._files:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._files[key] = await trio.to_thread.run_sync(
                    _open_wav, self._path(key), rate, self.session.channels(key))
            frames = len(data) // (2 * self.session.channels(key))
            self.samples_written[key] = self.samples_written.get(key, 0) + frames
        await trio.to_thread.run_sync(_write_all, [(self._files[k], d) for k, d in batch])


def _open_wav(path: Path, rate_hz: int, channels: int) -> wave.Wave_write:
    handle = wave.open(str(path), "wb")  # noqa: SIM115 - closed by the sink
    handle.setnchannels(channels)
    handle.setsampwidth(2)
    handle.setframerate(rate_hz)
    return handle


def _write_all(items: list[tuple[wave.Wave_write, bytes]]) -> None:
    for handle, data in items:
        handle.writeframes(data)


def _close_all(handles: list[wave.Wave_write]) -> None:
    for handle in handles:
        handle.close()
