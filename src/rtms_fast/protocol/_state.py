"""Connection states and the one table of legal transitions.

Theory of operation
===================

An RTMS stream uses one signaling WebSocket and one or more media WebSockets. Each socket
gets its own sans-IO machine, and each machine exists in a client and a server flavour
(``client.py``, ``server.py``). All four ask this module, and only this module, whether a
step is legal; they never assign ``state`` themselves.

A step is a *trigger*: something we send (``SEND_*``), something the peer sent
(``RECV_*``), a timer that ``poll(now_ms)`` found expired (``*_TIMEOUT``), or the socket
going away (``CONNECTION_CLOSED``). ``advance(kind, state, trigger)`` returns the next state
or raises ``StateError``. A local action in the wrong state (``ready_ack()`` before the
handshake was accepted) is a bug in the caller and raises. A peer message in the wrong state
is the peer's fault: the machine drops it and reports ``ProtocolViolation`` instead, and the
connection carries on, as the official SDK does (RTMS_PROTOCOL.md section 10).

Client signaling (the order the SDK follows, sections 3-8)::

    IDLE --send msg 1--> HANDSHAKING --msg 2 ok--> CONNECTED --send msg 7--> READY
                              |  msg 2 error / timeout -> FAILED
    CONNECTED|READY --send msg 21--> CLOSING --msg 22 / timeout--> CLOSED
    any open state (IDLE included) --msg 8 TERMINATED--> CLOSED
    any --socket closed--> CLOSED (FAILED while the handshake is pending)

Client media::

    IDLE --send msg 3--> HANDSHAKING --msg 4 ok--> STREAMING
    IDLE|HANDSHAKING --media before msg 4 (tolerated, counted)--> STREAMING
    HANDSHAKING --msg 4 error / timeout--> FAILED

Server signaling (what the simulator runs)::

    AWAITING_HANDSHAKE --msg 1--> HANDSHAKE_RECEIVED --send msg 2 ok--> CONNECTED
    AWAITING_HANDSHAKE|HANDSHAKE_RECEIVED --send msg 2 error / timeout--> FAILED
    CONNECTED --msg 7--> READY
    CONNECTED|READY --msg 21--> CLOSE_REQUESTED --send msg 22--> CLOSED
    CONNECTED|READY|CLOSE_REQUESTED --send msg 8 TERMINATED--> CLOSED

Server media::

    AWAITING_HANDSHAKE --msg 3--> HANDSHAKE_RECEIVED --send msg 4 ok--> STREAMING
    ... --send msg 4 error / timeout--> FAILED

Keep-alives (msg 12/13), events, subscriptions and state updates do not change state; they
are legal in the states listed in ``KEEP_ALIVE_STATES`` and friends below. CLOSED and FAILED
are terminal: only ``CONNECTION_CLOSED`` is accepted there (and changes nothing).
"""

from __future__ import annotations

import enum
from typing import Final

from .errors import StateError

__all__ = [
    "ClientMediaState",
    "ClientSignalingState",
    "ServerMediaState",
    "ServerSignalingState",
    "Trigger",
    "advance",
]


class ClientSignalingState(enum.Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    """Handshake accepted; the caller is opening media sockets."""
    READY = "ready"
    """CLIENT_READY_ACK sent."""
    CLOSING = "closing"
    """STREAM_CLOSE_REQ sent, waiting for STREAM_CLOSE_RESP."""
    CLOSED = "closed"
    FAILED = "failed"


class ClientMediaState(enum.Enum):
    IDLE = "idle"
    HANDSHAKING = "handshaking"
    STREAMING = "streaming"
    CLOSED = "closed"
    FAILED = "failed"


class ServerSignalingState(enum.Enum):
    AWAITING_HANDSHAKE = "awaiting_handshake"
    HANDSHAKE_RECEIVED = "handshake_received"
    CONNECTED = "connected"
    READY = "ready"
    CLOSE_REQUESTED = "close_requested"
    CLOSED = "closed"
    FAILED = "failed"


class ServerMediaState(enum.Enum):
    AWAITING_HANDSHAKE = "awaiting_handshake"
    HANDSHAKE_RECEIVED = "handshake_received"
    STREAMING = "streaming"
    CLOSED = "closed"
    FAILED = "failed"


class Trigger(enum.Enum):
    SEND_HANDSHAKE = "send handshake request"
    RECV_HANDSHAKE = "receive handshake request"
    SEND_ACCEPT = "send handshake acceptance"
    SEND_REJECT = "send handshake rejection"
    RECV_ACCEPT = "receive handshake acceptance"
    RECV_REJECT = "receive handshake rejection"
    RECV_MEDIA_EARLY = "receive media before the handshake response"
    HANDSHAKE_TIMEOUT = "handshake timeout"
    SEND_READY_ACK = "send CLIENT_READY_ACK"
    RECV_READY_ACK = "receive CLIENT_READY_ACK"
    SEND_CLOSE_REQUEST = "send STREAM_CLOSE_REQ"
    RECV_CLOSE_REQUEST = "receive STREAM_CLOSE_REQ"
    SEND_CLOSE_RESPONSE = "send STREAM_CLOSE_RESP"
    RECV_CLOSE_RESPONSE = "receive STREAM_CLOSE_RESP"
    CLOSE_TIMEOUT = "close response timeout"
    SEND_TERMINATED = "send STREAM_STATE_UPDATE TERMINATED"
    RECV_TERMINATED = "receive STREAM_STATE_UPDATE TERMINATED"
    CONNECTION_CLOSED = "connection closed"


_CS = ClientSignalingState
_CM = ClientMediaState
_SS = ServerSignalingState
_SM = ServerMediaState
_T = Trigger

_State = ClientSignalingState | ClientMediaState | ServerSignalingState | ServerMediaState

_TABLE: Final[dict[_State, dict[Trigger, _State]]] = {
    _CS.IDLE: {
        _T.SEND_HANDSHAKE: _CS.HANDSHAKING,
        _T.RECV_TERMINATED: _CS.CLOSED,
        _T.CONNECTION_CLOSED: _CS.CLOSED,
    },
    _CS.HANDSHAKING: {
        _T.RECV_ACCEPT: _CS.CONNECTED,
        _T.RECV_REJECT: _CS.FAILED,
        _T.HANDSHAKE_TIMEOUT: _CS.FAILED,
        _T.RECV_TERMINATED: _CS.CLOSED,
        _T.CONNECTION_CLOSED: _CS.FAILED,
    },
    _CS.CONNECTED: {
        _T.SEND_READY_ACK: _CS.READY,
        _T.SEND_CLOSE_REQUEST: _CS.CLOSING,
        _T.RECV_CLOSE_RESPONSE: _CS.CLOSED,
        _T.RECV_TERMINATED: _CS.CLOSED,
        _T.CONNECTION_CLOSED: _CS.CLOSED,
    },
    _CS.READY: {
        _T.SEND_CLOSE_REQUEST: _CS.CLOSING,
        _T.RECV_CLOSE_RESPONSE: _CS.CLOSED,
        _T.RECV_TERMINATED: _CS.CLOSED,
        _T.CONNECTION_CLOSED: _CS.CLOSED,
    },
    _CS.CLOSING: {
        _T.RECV_CLOSE_RESPONSE: _CS.CLOSED,
        _T.RECV_TERMINATED: _CS.CLOSED,
        _T.CLOSE_TIMEOUT: _CS.CLOSED,
        _T.CONNECTION_CLOSED: _CS.CLOSED,
    },
    _CS.CLOSED: {_T.CONNECTION_CLOSED: _CS.CLOSED},
    _CS.FAILED: {_T.CONNECTION_CLOSED: _CS.FAILED},
    _CM.IDLE: {
        _T.SEND_HANDSHAKE: _CM.HANDSHAKING,
        _T.RECV_MEDIA_EARLY: _CM.STREAMING,
        _T.RECV_TERMINATED: _CM.CLOSED,
        _T.CONNECTION_CLOSED: _CM.CLOSED,
    },
    _CM.HANDSHAKING: {
        _T.RECV_ACCEPT: _CM.STREAMING,
        _T.RECV_MEDIA_EARLY: _CM.STREAMING,
        _T.RECV_REJECT: _CM.FAILED,
        _T.HANDSHAKE_TIMEOUT: _CM.FAILED,
        _T.RECV_TERMINATED: _CM.CLOSED,
        _T.CONNECTION_CLOSED: _CM.FAILED,
    },
    _CM.STREAMING: {_T.RECV_TERMINATED: _CM.CLOSED, _T.CONNECTION_CLOSED: _CM.CLOSED},
    _CM.CLOSED: {_T.CONNECTION_CLOSED: _CM.CLOSED},
    _CM.FAILED: {_T.CONNECTION_CLOSED: _CM.FAILED},
    _SS.AWAITING_HANDSHAKE: {
        _T.RECV_HANDSHAKE: _SS.HANDSHAKE_RECEIVED,
        _T.SEND_REJECT: _SS.FAILED,
        _T.HANDSHAKE_TIMEOUT: _SS.FAILED,
        _T.CONNECTION_CLOSED: _SS.FAILED,
    },
    _SS.HANDSHAKE_RECEIVED: {
        _T.SEND_ACCEPT: _SS.CONNECTED,
        _T.SEND_REJECT: _SS.FAILED,
        _T.HANDSHAKE_TIMEOUT: _SS.FAILED,
        _T.CONNECTION_CLOSED: _SS.FAILED,
    },
    _SS.CONNECTED: {
        _T.RECV_READY_ACK: _SS.READY,
        _T.RECV_CLOSE_REQUEST: _SS.CLOSE_REQUESTED,
        _T.SEND_TERMINATED: _SS.CLOSED,
        _T.CONNECTION_CLOSED: _SS.CLOSED,
    },
    _SS.READY: {
        _T.RECV_CLOSE_REQUEST: _SS.CLOSE_REQUESTED,
        _T.SEND_TERMINATED: _SS.CLOSED,
        _T.CONNECTION_CLOSED: _SS.CLOSED,
    },
    _SS.CLOSE_REQUESTED: {
        _T.SEND_CLOSE_RESPONSE: _SS.CLOSED,
        _T.SEND_TERMINATED: _SS.CLOSED,
        _T.CONNECTION_CLOSED: _SS.CLOSED,
    },
    _SS.CLOSED: {_T.CONNECTION_CLOSED: _SS.CLOSED},
    _SS.FAILED: {_T.CONNECTION_CLOSED: _SS.FAILED},
    _SM.AWAITING_HANDSHAKE: {
        _T.RECV_HANDSHAKE: _SM.HANDSHAKE_RECEIVED,
        _T.SEND_REJECT: _SM.FAILED,
        _T.HANDSHAKE_TIMEOUT: _SM.FAILED,
        _T.CONNECTION_CLOSED: _SM.FAILED,
    },
    _SM.HANDSHAKE_RECEIVED: {
        _T.SEND_ACCEPT: _SM.STREAMING,
        _T.SEND_REJECT: _SM.FAILED,
        _T.HANDSHAKE_TIMEOUT: _SM.FAILED,
        _T.CONNECTION_CLOSED: _SM.FAILED,
    },
    _SM.STREAMING: {_T.SEND_TERMINATED: _SM.CLOSED, _T.CONNECTION_CLOSED: _SM.CLOSED},
    _SM.CLOSED: {_T.CONNECTION_CLOSED: _SM.CLOSED},
    _SM.FAILED: {_T.CONNECTION_CLOSED: _SM.FAILED},
}

TERMINAL_STATES: Final[frozenset[_State]] = frozenset({
    _CS.CLOSED, _CS.FAILED, _CM.CLOSED, _CM.FAILED, _SS.CLOSED, _SS.FAILED, _SM.CLOSED, _SM.FAILED,
})
"""States after which nothing is sent or delivered."""

# Where the non-transition traffic is legal.
KEEP_ALIVE_STATES: Final[frozenset[_State]] = frozenset({
    _CS.HANDSHAKING, _CS.CONNECTED, _CS.READY, _CS.CLOSING,
    _CM.IDLE, _CM.HANDSHAKING, _CM.STREAMING,
    _SS.CONNECTED, _SS.READY, _SS.CLOSE_REQUESTED, _SM.STREAMING,
})
"""States in which keep-alive requests may be sent (server) or answered (client)."""

CLIENT_REQUEST_STATES: Final[frozenset[_State]] = frozenset({_CS.CONNECTED, _CS.READY})
"""Client signaling states in which subscriptions and other requests may be sent."""

SERVER_PUSH_STATES: Final[frozenset[_State]] = frozenset({
    _SS.CONNECTED, _SS.READY, _SS.CLOSE_REQUESTED, _SM.STREAMING,
})
"""Server states in which events, state updates and media may be sent."""


def advance(state: _State, trigger: Trigger) -> _State:
    """The state after ``trigger``; StateError when ``trigger`` is illegal in ``state``."""
    try:
        return _TABLE[state][trigger]
    except KeyError:
        raise StateError(
            f"cannot {trigger.value} in state {type(state).__name__}.{state.name}"
        ) from None


def check(state: _State, allowed: frozenset[_State], action: str) -> None:
    """Raise StateError unless ``state`` is in ``allowed``."""
    if state not in allowed:
        raise StateError(f"cannot {action} in state {type(state).__name__}.{state.name}")
