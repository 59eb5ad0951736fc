"""Fixtures of the engine tests."""

from __future__ import annotations

from typing import Any

import pytest

from rtms_fast.pump import MediaPump


@pytest.fixture(params=["epoll", "poll-free"])
def sweep_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a native sweep finds its sockets: epoll's readiness report, or reading
    every arena socket (forced here for every pump the test makes)."""
    mode = "always" if request.param == "poll-free" else "never"
    init = MediaPump.__init__

    def forced(self: MediaPump, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.poll_free_mode = mode

    monkeypatch.setattr(MediaPump, "__init__", forced)
    return str(request.param)
