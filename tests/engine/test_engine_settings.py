"""EngineSettings: defaults, environment and TOML loading, validation naming the knob."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtms_fast.settings import EngineSettings, SettingsError


def test_defaults_are_valid_and_documented_ones_hold() -> None:
    s = EngineSettings()
    assert s.sweep_interval_ms == 20
    assert s.media_reconnect_window_s == 30.0
    assert s.signaling_reconnect_window_s == 60.0


def test_from_env_converts_types() -> None:
    s = EngineSettings.from_env(
        {
            "RTMS_FAST_SWEEP_INTERVAL_MS": "100",
            "RTMS_FAST_MEDIA_TYPES": "audio, chat",
            "RTMS_FAST_CONTINUOUS_TIMELINE": "true",
            "RTMS_FAST_OVERFLOW_POLICY": "drop_newest",
            "RTMS_FAST_KEEPALIVE_TIMEOUT_S": "1.5",
            "RTMS_FAST_CA_FILE": "",
            "RTMS_FAST_TLS_BACKEND": "native-openssl",
            "UNRELATED": "x",
        }
    )
    assert s.sweep_interval_ms == 100
    assert s.media_types == ("audio", "chat")
    assert s.continuous_timeline is True
    assert s.overflow_policy == "drop_newest"
    assert s.keepalive_timeout_s == 1.5
    assert s.ca_file is None
    assert s.tls_backend == "native-openssl"


@pytest.mark.parametrize(
    ("env", "knob"),
    [
        ({"RTMS_FAST_SWEEP_INTERVAL_MS": "0"}, "sweep_interval_ms"),
        ({"RTMS_FAST_SWEEP_INTERVAL_MS": "soon"}, "sweep_interval_ms"),
        ({"RTMS_FAST_OVERFLOW_POLICY": "explode"}, "overflow_policy"),
        ({"RTMS_FAST_MEDIA_TYPES": "audio,smell"}, "media_types"),
        ({"RTMS_FAST_CONTINUOUS_TIMELINE": "maybe"}, "continuous_timeline"),
        ({"RTMS_FAST_NO_SUCH_KNOB": "1"}, "no_such_knob"),
        ({"RTMS_FAST_CA_FILE": "/no/such/ca.pem"}, "ca_file"),
        ({"RTMS_FAST_RECONNECT_BACKOFF_JITTER": "2"}, "reconnect_backoff_jitter"),
        ({"RTMS_FAST_TLS_BACKEND": "openssl"}, "tls_backend"),
    ],
)
def test_bad_env_values_name_the_knob(env: dict[str, str], knob: str) -> None:
    with pytest.raises(SettingsError) as info:
        EngineSettings.from_env(env)
    assert info.value.knob == knob
    assert knob in str(info.value)


def test_keyword_construction_is_validated() -> None:
    with pytest.raises(SettingsError, match="max_sessions"):
        EngineSettings(max_sessions=0)
    with pytest.raises(SettingsError, match="reconnect_backoff_max_s"):
        EngineSettings(reconnect_backoff_base_s=2.0, reconnect_backoff_max_s=1.0)
    with pytest.raises(SettingsError, match="output_sample_rate"):
        EngineSettings(output_sample_rate=44100)


def test_toml_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rtms.toml"
    path.write_text(
        '[rtms_fast]\nmax_sessions = 7\nmedia_types = ["audio"]\nsweep_interval_ms = 50\n'
    )
    s = EngineSettings.load(
        path, environ={"RTMS_FAST_SWEEP_INTERVAL_MS": "40"}, close_timeout_s=0.5
    )
    assert (s.max_sessions, s.media_types, s.sweep_interval_ms, s.close_timeout_s) == (
        7, ("audio",), 40, 0.5,
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("max_sessions = -3\n")
    with pytest.raises(SettingsError) as info:
        EngineSettings.from_toml(bad)
    assert info.value.knob == "max_sessions"
    with pytest.raises(SettingsError) as info:
        s.replace(nope=1)
    assert info.value.knob == "nope"
