"""Typed errors of the RTMS protocol core.

Every error names what was wrong (``field``: a dotted path into the message such as
``"content.user_id"``, or ``None`` when no single field is to blame) and which message it came
in (``msg_type``, ``None`` when unknown). Callers drop the one message, count it, and keep the
connection: nothing here is fatal on its own. This module must never import I/O libraries.
"""

from __future__ import annotations

__all__ = [
    "InvalidField",
    "MalformedJSON",
    "MissingField",
    "MissingHeader",
    "ProtocolError",
    "SignatureMismatch",
    "StaleTimestamp",
    "StateError",
    "UnexpectedMessage",
    "UnknownMessageType",
    "WebhookError",
]


class ProtocolError(Exception):
    """Base class: a message or request that breaks the RTMS protocol."""

    field: str | None
    msg_type: int | None

    def __init__(self, message: str, *, field: str | None = None, msg_type: int | None = None):
        self.field = field
        self.msg_type = msg_type
        self.detail = message
        where = []
        if msg_type is not None:
            where.append(f"msg_type {msg_type}")
        if field is not None:
            where.append(f"field {field!r}" if field else "message root")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class MalformedJSON(ProtocolError):
    """The bytes are not one JSON document (truncated, invalid syntax, invalid UTF-8)."""


class UnknownMessageType(ProtocolError):
    """``msg_type`` is an integer that names no RTMS message."""


class InvalidField(ProtocolError):
    """A field has the wrong type or an invalid value (or the root is not an object)."""


class MissingField(InvalidField):
    """A required field is absent."""


class SignatureMismatch(ProtocolError):
    """A signature (RTMS handshake or webhook ``x-zm-signature``) does not verify."""


class StaleTimestamp(ProtocolError):
    """A signed timestamp is older (or further in the future) than the allowed age."""


class StateError(ProtocolError):
    """An action that is illegal in the connection's current state."""


class UnexpectedMessage(StateError):
    """A well-formed message that the peer must not send in this state or on this socket."""


class WebhookError(ProtocolError):
    """Base class of webhook verification failures that are not signature/timestamp ones."""


class MissingHeader(WebhookError):
    """A required HTTP header is absent or empty; ``field`` names the header."""
