"""Ready consumers that write what an engine ingests to files.

``EngineRecorder`` writes, under one directory, ``events.jsonl`` (every event of every
session: participants, speakers, transcripts, chat, state changes, stops) and one folder
per stream with one WAV file per participant. Lower-level pieces: ``JsonlSink`` (any event
subscription to JSON lines) and ``SessionWavSink`` (one session's audio to WAV files).
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from rtms_fast.engine import Engine
from rtms_fast.events import AudioStreamStarted
from rtms_fast.sinks.jsonl import JsonlSink, write_events_jsonl
from rtms_fast.sinks.wav import SessionWavSink, safe_name

__all__ = ["EngineRecorder", "JsonlSink", "SessionWavSink", "safe_name", "write_events_jsonl"]


class EngineRecorder:
    """Record an engine's sessions to ``directory`` (WAV per participant, JSONL events).

    Create it before starting sessions (it subscribes at construction), then
    ``nursery.start_soon(recorder.run)``; it ends when the engine's event stream ends.
    """

    def __init__(self, engine: Engine, directory: str | os.PathLike[str], *,
                 wav: bool = True, jsonl: bool = True) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self._wav = wav
        self._audio_events = engine.subscribe()
        self._jsonl = JsonlSink(self.directory / "events.jsonl", engine.subscribe()) \
            if jsonl else None
        self.wav_sinks: dict[str, SessionWavSink] = {}

    @property
    def jsonl_lines(self) -> int:
        return 0 if self._jsonl is None else self._jsonl.lines_written

    async def run(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            if self._jsonl is not None:
                nursery.start_soon(self._jsonl.run)
            async for event in self._audio_events:
                if not self._wav or not isinstance(event, AudioStreamStarted):
                    continue
                if event.rtms_stream_id in self.wav_sinks:
                    continue
                session = self.engine.session(event.rtms_stream_id)
                if session is None:
                    continue
                sink = SessionWavSink(session, self.directory / safe_name(session.rtms_stream_id))
                self.wav_sinks[event.rtms_stream_id] = sink
                nursery.start_soon(sink.run)
