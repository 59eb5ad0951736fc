"""Sans-IO core of the RTMS protocol: enums, message Structs, errors, signatures, webhooks
and connection state machines (client and server, signaling and media).

Nothing in this package touches sockets, clocks or Trio; time is always passed in as an
argument (``now_ms``), so every protocol rule can be tested in microseconds.

Typical client use, one machine per WebSocket::

    sig = rtms_signature(client_id, meeting_uuid, stream_id, client_secret)
    signaling = ClientSignalingConnection(meeting_uuid, stream_id, sig)
    await ws.send(signaling.handshake(now_ms))
    for event in signaling.receive(await ws.get_message(), now_ms):
        if isinstance(event, HandshakeAccepted):
            url = event.server_urls.url_for(MediaType.AUDIO)   # open a media socket
        elif isinstance(event, KeepAliveRequested):
            await ws.send(signaling.keep_alive_response(event.sequence, event.timestamp))
        elif isinstance(event, StreamClosed):
            ...                                                # close every socket
    # and whenever signaling.next_deadline_ms() has passed: signaling.poll(now_ms)

The server machines (``ServerSignalingConnection``, ``ServerMediaConnection``) mirror this
for the simulator. The transition rules are documented in ``_state.py``.
"""

from __future__ import annotations

from ._connection import ConnectionStats, WireData, status_for_error
from ._state import ClientMediaState, ClientSignalingState, ServerMediaState, ServerSignalingState
from .client import *  # noqa: F403
from .client import __all__ as _client_all
from .enums import *  # noqa: F403
from .enums import __all__ as _enums_all
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .events import *  # noqa: F403
from .events import __all__ as _events_all
from .keepalive_tap import KeepAliveTap, is_keepalive_request
from .messages import *  # noqa: F403
from .messages import __all__ as _messages_all
from .server import *  # noqa: F403
from .server import __all__ as _server_all
from .signature import rtms_signature, verify_rtms_signature
from .tolerance import ToleranceStats, stop_reason_from_name
from .webhook import *  # noqa: F403
from .webhook import __all__ as _webhook_all

__all__ = [
    *_client_all,
    *_enums_all,
    *_errors_all,
    *_events_all,
    *_messages_all,
    *_server_all,
    *_webhook_all,
    "ClientMediaState",
    "ClientSignalingState",
    "ConnectionStats",
    "KeepAliveTap",
    "ServerMediaState",
    "ServerSignalingState",
    "ToleranceStats",
    "WireData",
    "is_keepalive_request",
    "rtms_signature",
    "status_for_error",
    "stop_reason_from_name",
    "verify_rtms_signature",
]
