"""The RTMS simulator: plays the Zoom side (webhooks, signaling, media) for tests,
benchmarks and demos. Nothing here is used by the ingest path at run time.
"""

from __future__ import annotations

from rtms_fast.sim.server import (
    CODEC_NAMES,
    FaultKind,
    MediaStream,
    SimConfig,
    SimCounters,
    SimSession,
    Simulator,
    audio_params_json,
    negotiate_audio,
    run_simulator,
)
from rtms_fast.sim.source import (
    AudioFormat,
    AudioSource,
    MixedAudioSource,
    deskshare_frame,
    g722_available,
    meeting_uuid_for,
    participant_id,
    participant_name,
    speakers_for_frame,
    stream_id_for,
    transcript_end_ms,
    transcript_text,
    video_frame,
)

__all__ = [
    "CODEC_NAMES",
    "AudioFormat",
    "AudioSource",
    "FaultKind",
    "MediaStream",
    "MixedAudioSource",
    "SimConfig",
    "SimCounters",
    "SimSession",
    "Simulator",
    "audio_params_json",
    "deskshare_frame",
    "g722_available",
    "meeting_uuid_for",
    "negotiate_audio",
    "participant_id",
    "participant_name",
    "run_simulator",
    "speakers_for_frame",
    "stream_id_for",
    "transcript_end_ms",
    "transcript_text",
    "video_frame",
]
