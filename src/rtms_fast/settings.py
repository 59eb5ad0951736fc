"""Every tunable knob of the ingest engine, in one typed, validated object.

``EngineSettings`` is the single place where limits, timeouts, backpressure
behaviour and media preferences are defined and documented (each field says
its unit). It loads from keyword arguments, from the environment
(``RTMS_FAST_<NAME>``, upper case) and from a TOML file, and is validated on
construction: a bad value raises ``SettingsError`` naming the knob.

This module must never open sockets, start tasks or import Trio: it is data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import msgspec

__all__ = [
    "AUDIO_CODECS",
    "MEDIA_TYPE_NAMES",
    "EngineSettings",
    "SettingsError",
]

#: Media type names accepted in ``media_types`` (RTMS_PROTOCOL.md section 11).
MEDIA_TYPE_NAMES: tuple[str, ...] = ("audio", "video", "deskshare", "transcript", "chat")
#: Audio codec names accepted in ``audio_codec_preferences``.
AUDIO_CODECS: tuple[str, ...] = ("l16", "g711", "g722", "opus")

OverflowPolicyName = Literal["drop_oldest", "drop_newest", "backpressure"]
EventOverflowName = Literal["drop_oldest", "drop_newest"]
OutputDtypeName = Literal["int16", "float32"]
MediaModeName = Literal["split", "unified"]
AudioDataOptName = Literal["multi", "mixed"]
AudioContentTypeName = Literal["raw", "rtp"]
TlsBackendName = Literal["native", "native-openssl", "python"]

_ENV_PREFIX = "RTMS_FAST_"
_SUPPORTED_SAMPLE_RATES_HZ = (8000, 16000, 32000, 48000)


class SettingsError(ValueError):
    """A settings value is invalid; ``knob`` names the field at fault."""

    def __init__(self, knob: str, message: str) -> None:
        super().__init__(f"{knob}: {message}")
        self.knob = knob


class EngineSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of one engine (and every session it runs). All fields have defaults.

    Build with keywords, ``EngineSettings.from_env()``, ``EngineSettings.from_toml(path)``
    or ``EngineSettings.load(toml_path=..., environ=...)`` (TOML first, environment on top).
    """

    # ---- rings and memory --------------------------------------------------------------
    #: Audio kept per participant ring, in milliseconds of output audio.
    ring_capacity_ms: int = 5000
    #: What a full ring does with new audio: ``drop_oldest`` overwrites the oldest audio,
    #: ``drop_newest`` discards the incoming audio, ``backpressure`` refuses the write (the
    #: refused audio is dropped and counted; the socket is never paused, keep-alives go on).
    overflow_policy: OverflowPolicyName = "drop_oldest"
    #: Ceiling on the memory of all rings of the engine together, in bytes. A ring that
    #: would exceed it is not created; its participant's audio is dropped and counted.
    ring_memory_ceiling_bytes: int = 512 * 1024 * 1024

    # ---- data plane ----------------------------------------------------------------------
    #: How often the pump sweeps every media socket, in milliseconds: the latency/CPU trade-off
    #: (20 ms reads every audio frame as it lands; 100 ms costs ~7x less CPU per message).
    sweep_interval_ms: int = 20
    #: Use the batched pump for media sockets (``False``: one Trio task per media socket).
    use_pump: bool = True
    #: With the pump, decode audio in the native batched ingest kernel (frames, JSON, base64,
    #: codec, resampling and ring writes in one call per sweep). ``False``: decode in Python.
    native_ingest: bool = True
    #: Let media sockets delay their TCP ACKs (Linux TCP_QUICKACK off before a socket's
    #: first batched read, again after a gap in its traffic and every 200 ms): an immediate
    #: ACK per small segment costs ~4 us of CPU per message. Turn it off
    #: for a server that sends with Nagle's algorithm on, which could then hold a message
    #: back until the delayed ACK (up to ~40 ms).
    tcp_delayed_ack: bool = True
    #: Every this many seconds, freeze the objects alive into the garbage collector's
    #: permanent generation (``gc.freeze()``), so its passes stop re-scanning long-lived
    #: session state (at 1,000 sessions a full pass took ~140 ms and ~5 % of a core).
    #: Process-wide; 0 leaves the collector alone. See ``rtms_fast.gc_policy``.
    gc_freeze_interval_s: float = 2.0
    #: Unfreeze and run a full collection this often, in seconds (sooner after 100 sessions
    #: ended): reclaims cyclic garbage that was frozen. The pause is in ``stats()``.
    gc_full_collect_interval_s: float = 300.0

    # ---- admission and limits ----------------------------------------------------------
    #: Most sessions an engine runs at once; further starts are refused and counted.
    max_sessions: int = 1000
    #: Most participants with their own audio ring per session; audio of further
    #: participants is dropped and counted.
    max_participants_per_session: int = 64
    #: Largest WebSocket message accepted from a server, in bytes (larger: the connection fails).
    max_message_bytes: int = 16 * 1024 * 1024
    #: Bounded queue of typed events per session (and for the whole engine), in events.
    event_queue_size: int = 1024
    #: What a full event queue does: ``drop_oldest`` or ``drop_newest`` (counted either way).
    event_overflow: EventOverflowName = "drop_oldest"

    # ---- timeouts ------------------------------------------------------------------------
    #: A socket that receives nothing (not even a keep-alive) for this long is dead, in seconds.
    keepalive_timeout_s: float = 65.0
    #: Time allowed for TCP + TLS + WebSocket upgrade + RTMS handshake reply, in seconds.
    handshake_timeout_s: float = 10.0
    #: Time allowed for STREAM_CLOSE_RESP and the WebSocket closing handshakes, in seconds.
    close_timeout_s: float = 3.0
    #: Time allowed for every session to stop when the engine shuts down, in seconds.
    shutdown_timeout_s: float = 10.0

    # ---- reconnection --------------------------------------------------------------------
    #: After a media socket drops abnormally, reconnecting must succeed within this many
    #: seconds of the FIRST drop (an absolute deadline; later drops do not extend it).
    media_reconnect_window_s: float = 30.0
    #: The same absolute window for the signaling socket, in seconds.
    signaling_reconnect_window_s: float = 60.0
    #: First reconnect delay, in seconds; doubled on each further attempt.
    reconnect_backoff_base_s: float = 0.25
    #: Longest reconnect delay, in seconds.
    reconnect_backoff_max_s: float = 5.0
    #: Random spread of each delay, as a fraction of it (0.2 = +-20 %).
    reconnect_backoff_jitter: float = 0.2

    # ---- audio output --------------------------------------------------------------------
    #: Sample rate of the audio in the rings, in Hz; 0 keeps the negotiated stream rate.
    output_sample_rate: int = 0
    #: Sample type of the audio in the rings.
    output_dtype: OutputDtypeName = "int16"
    #: Fill reconnect gaps and missing frames with silence so a ring's sample index maps
    #: to wall time (``False``: gaps are only counted).
    continuous_timeline: bool = False

    # ---- transport -----------------------------------------------------------------------
    #: PEM file of CA certificates trusted for wss:// (``None``: the system store).
    ca_file: str | None = None
    #: HTTP CONNECT proxy for outgoing sockets, ``http://host:port`` (``None``: direct).
    proxy: str | None = None
    #: Who runs TLS on wss:// media sockets: ``native`` (the native module: OpenSSL for the
    #: handshake and sending, received TLS 1.3 records decrypted by its own record layer,
    #: every socket of a sweep in one call without the GIL), ``native-openssl`` (the same,
    #: but every record through OpenSSL's ``SSL_read``: ~4x the CPU per small record) or
    #: ``python`` (``ssl.SSLObject`` per socket). The native ones fall back to ``python``
    #: when the module was built without OpenSSL or the Engine is given its own
    #: ``ssl_context``. Signaling always uses Python's ``ssl`` (trio-websocket).
    tls_backend: TlsBackendName = "native"

    # ---- what to ask the server for ------------------------------------------------------
    #: Media types requested: any of audio, video, deskshare, transcript, chat.
    media_types: tuple[str, ...] = ("audio", "transcript")
    #: ``split``: one media socket per media type (what Zoom's SDK does); ``unified``: one
    #: media socket carrying every type (``media_type`` bitmask, the ``all`` URL).
    media_mode: MediaModeName = "split"
    #: Audio codecs in order of preference; the first one is requested.
    audio_codec_preferences: tuple[str, ...] = ("l16",)
    #: Audio sample rate requested, in Hz (8000, 16000, 32000, 48000).
    audio_sample_rate_hz: int = 16000
    #: Audio channels requested (1 mono, 2 stereo).
    audio_channels: int = 1
    #: ``multi``: one stream per active speaker with user ids; ``mixed``: one mixed stream.
    audio_data_opt: AudioDataOptName = "multi"
    #: ``raw`` codec bytes or ``rtp`` packets in each audio message.
    audio_content_type: AudioContentTypeName = "raw"
    #: Audio chunk interval requested, in milliseconds (a multiple of 20).
    audio_send_rate_ms: int = 20
    #: Transcript source language (RTMS TRANSCRIPT_LANGUAGE, -1 = auto-detect).
    transcript_language: int = -1

    # ---- webhook server ------------------------------------------------------------------
    #: Largest webhook body accepted, in bytes (larger: 413).
    webhook_max_body_bytes: int = 1024 * 1024
    #: Largest accepted age (or future skew) of ``x-zm-request-timestamp``, in seconds.
    webhook_timestamp_tolerance_s: float = 300.0

    def __post_init__(self) -> None:
        _validate(self)

    # ---- loaders -------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EngineSettings:
        """Build from a mapping of knob name to value (strings are converted)."""
        prepared = {k: _prepare_value(k, v) for k, v in values.items()}
        try:
            return msgspec.convert(prepared, cls, strict=False)
        except SettingsError:
            raise
        except msgspec.ValidationError as exc:
            raise _settings_error_from(exc) from None

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        base: Mapping[str, Any] | None = None,
    ) -> EngineSettings:
        """Build from ``RTMS_FAST_<KNOB>`` variables (on top of ``base``), unknown ones refused.

        Tuples are comma-separated (``RTMS_FAST_MEDIA_TYPES=audio,transcript``); an empty
        value for an optional knob (``RTMS_FAST_CA_FILE=``) means ``None``.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = dict(base or {})
        for name, raw in env.items():
            if not name.startswith(_ENV_PREFIX):
                continue
            knob = name[len(_ENV_PREFIX) :].lower()
            if knob not in cls.__struct_fields__:
                raise SettingsError(knob, f"unknown setting (from environment variable {name})")
            values[knob] = raw
        return cls.from_mapping(values)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> EngineSettings:
        """Build from a TOML file: top-level keys, or the keys of a ``[rtms_fast]`` table."""
        return cls.from_mapping(_read_toml(path))

    @classmethod
    def load(
        cls,
        toml_path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> EngineSettings:
        """TOML file (if given), then the environment, then keyword overrides."""
        base: dict[str, Any] = _read_toml(toml_path) if toml_path is not None else {}
        settings = cls.from_env(environ, base=base)
        return settings.replace(**overrides) if overrides else settings

    def replace(self, **changes: Any) -> EngineSettings:
        """A copy with some knobs changed (validated again)."""
        for knob in changes:
            if knob not in self.__struct_fields__:
                raise SettingsError(knob, "unknown setting")
        values = msgspec.structs.asdict(self)
        values.update(changes)
        return type(self).from_mapping(values)

    def as_dict(self) -> dict[str, Any]:
        """Every knob and its value (for logs and summaries)."""
        return msgspec.structs.asdict(self)


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10 only
        try:
            import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise SettingsError("toml", "reading TOML on Python 3.10 needs 'tomli'") from exc
    try:
        with Path(path).open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise SettingsError("toml", f"cannot read {os.fspath(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError("toml", f"invalid TOML in {os.fspath(path)!r}: {exc}") from None
    table = data.get("rtms_fast")
    if isinstance(table, dict):
        return dict(table)
    return data


_OPTIONAL_STR_KNOBS = ("ca_file", "proxy")


def _prepare_value(knob: str, value: Any) -> Any:
    """Turn environment-style strings into the shapes msgspec expects."""
    if knob not in EngineSettings.__struct_fields__:
        raise SettingsError(knob, "unknown setting")
    if not isinstance(value, str):
        if isinstance(value, list):
            return tuple(value)
        return value
    if knob in _OPTIONAL_STR_KNOBS:
        return value or None
    default = getattr(_DEFAULTS, knob)
    if isinstance(default, tuple):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(default, bool):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(knob, f"expected a boolean (true/false), got {value!r}")
    return value.strip()


def _settings_error_from(exc: msgspec.ValidationError) -> SettingsError:
    text = str(exc)
    marker = "- at `$."
    if marker in text:
        message, _, where = text.partition(marker)
        knob = where.rstrip("`").split("[")[0].split(".")[0]
        return SettingsError(knob, message.strip())
    if "unknown field `" in text:
        knob = text.split("unknown field `", 1)[1].split("`", 1)[0]
        return SettingsError(knob, "unknown setting")
    knob, sep, message = text.partition(": ")
    if sep and knob in EngineSettings.__struct_fields__:
        return SettingsError(knob, message)
    return SettingsError("settings", text)


def _require(ok: bool, knob: str, message: str) -> None:
    if not ok:
        raise SettingsError(knob, message)


def _validate(s: EngineSettings) -> None:
    positive_ints = (
        "ring_capacity_ms",
        "ring_memory_ceiling_bytes",
        "sweep_interval_ms",
        "max_sessions",
        "max_participants_per_session",
        "max_message_bytes",
        "event_queue_size",
        "audio_send_rate_ms",
        "webhook_max_body_bytes",
    )
    for knob in positive_ints:
        value = getattr(s, knob)
        _require(
            isinstance(value, int) and not isinstance(value, bool) and value > 0,
            knob,
            f"must be a positive integer, got {value!r}",
        )
    positive_floats = (
        "keepalive_timeout_s",
        "handshake_timeout_s",
        "close_timeout_s",
        "shutdown_timeout_s",
        "reconnect_backoff_base_s",
        "reconnect_backoff_max_s",
        "webhook_timestamp_tolerance_s",
        "gc_full_collect_interval_s",
    )
    for knob in positive_floats:
        value = getattr(s, knob)
        _require(value > 0, knob, f"must be > 0 seconds, got {value!r}")
    _require(s.gc_freeze_interval_s >= 0, "gc_freeze_interval_s",
             f"must be >= 0 seconds (0 leaves the collector alone), "
             f"got {s.gc_freeze_interval_s!r}")
    for knob in ("media_reconnect_window_s", "signaling_reconnect_window_s"):
        value = getattr(s, knob)
        _require(value >= 0, knob, f"must be >= 0 seconds (0 disables reconnects), got {value!r}")
    _require(
        s.reconnect_backoff_max_s >= s.reconnect_backoff_base_s,
        "reconnect_backoff_max_s",
        f"must be >= reconnect_backoff_base_s ({s.reconnect_backoff_base_s}), "
        f"got {s.reconnect_backoff_max_s}",
    )
    _require(
        0.0 <= s.reconnect_backoff_jitter <= 1.0,
        "reconnect_backoff_jitter",
        f"must be a fraction between 0 and 1, got {s.reconnect_backoff_jitter!r}",
    )
    _require(
        s.sweep_interval_ms <= 1000,
        "sweep_interval_ms",
        f"must be at most 1000 ms, got {s.sweep_interval_ms}",
    )
    _require(
        s.output_sample_rate == 0 or s.output_sample_rate in _SUPPORTED_SAMPLE_RATES_HZ,
        "output_sample_rate",
        f"must be 0 (keep the stream rate) or one of {_SUPPORTED_SAMPLE_RATES_HZ}, "
        f"got {s.output_sample_rate}",
    )
    _require(
        s.audio_sample_rate_hz in _SUPPORTED_SAMPLE_RATES_HZ,
        "audio_sample_rate_hz",
        f"must be one of {_SUPPORTED_SAMPLE_RATES_HZ}, got {s.audio_sample_rate_hz}",
    )
    _require(
        s.audio_channels in (1, 2),
        "audio_channels",
        f"must be 1 or 2, got {s.audio_channels}",
    )
    _require(
        s.audio_send_rate_ms % 20 == 0 and s.audio_send_rate_ms <= 1000,
        "audio_send_rate_ms",
        f"must be a multiple of 20 ms up to 1000, got {s.audio_send_rate_ms}",
    )
    _require(bool(s.media_types), "media_types", "must name at least one media type")
    for name in s.media_types:
        _require(
            name in MEDIA_TYPE_NAMES,
            "media_types",
            f"unknown media type {name!r}; expected some of {', '.join(MEDIA_TYPE_NAMES)}",
        )
    _require(
        len(set(s.media_types)) == len(s.media_types),
        "media_types",
        f"lists a media type twice: {s.media_types}",
    )
    _require(
        bool(s.audio_codec_preferences),
        "audio_codec_preferences",
        "must name at least one codec",
    )
    for codec in s.audio_codec_preferences:
        _require(
            codec in AUDIO_CODECS,
            "audio_codec_preferences",
            f"unknown codec {codec!r}; expected some of {', '.join(AUDIO_CODECS)}",
        )
    _require(
        -1 <= s.transcript_language <= 36,
        "transcript_language",
        f"must be -1 (auto) or 0..36, got {s.transcript_language}",
    )
    if s.ca_file is not None:
        _require(Path(s.ca_file).is_file(), "ca_file", f"no such file: {s.ca_file!r}")
    if s.proxy is not None:
        _require(
            s.proxy.startswith("http://") and len(s.proxy) > len("http://"),
            "proxy",
            f"must look like http://host:port, got {s.proxy!r}",
        )
    for knob, allowed in (
        ("overflow_policy", get_args(OverflowPolicyName)),
        ("event_overflow", get_args(EventOverflowName)),
        ("output_dtype", get_args(OutputDtypeName)),
        ("media_mode", get_args(MediaModeName)),
        ("audio_data_opt", get_args(AudioDataOptName)),
        ("audio_content_type", get_args(AudioContentTypeName)),
        ("tls_backend", get_args(TlsBackendName)),
    ):
        value = getattr(s, knob)
        _require(value in allowed, knob, f"must be one of {allowed}, got {value!r}")


_DEFAULTS = EngineSettings()
