"""The public surface of rtms_fast.protocol, and the sans-IO rule: no sockets, clocks or
Trio anywhere in the package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rtms_fast.protocol as protocol

PACKAGE_DIR = Path(protocol.__file__).parent
ALLOWED_IMPORTS = {
    "__future__", "collections", "enum", "hashlib", "hmac", "re", "typing",
    "msgspec",
}

REQUIRED_NAMES = [
    "MsgType", "StatusCode", "StopReason", "EventType", "ZccEventType", "StreamState",
    "SessionState", "MediaType", "MediaContentType", "MediaCodec", "AudioSampleRate",
    "AudioChannel", "DataOption", "Resolution", "TranscriptLanguage", "url_key_for_media_type",
    "media_type_from_url_key", "SignalingHandshakeRequest", "SignalingHandshakeResponse",
    "MediaHandshakeRequest", "MediaHandshakeResponse", "EventSubscription",
    "EventSubscriptionItem", "EventUpdate", "Event", "Participant", "ClientReadyAck",
    "StreamStateUpdate", "SessionStateUpdate", "SessionStateRequest", "SessionStateResponse",
    "KeepAliveRequest", "KeepAliveResponse", "MediaDataAudio", "MediaDataVideo",
    "MediaDataShare", "MediaDataTranscript", "MediaDataChat", "StreamStateRequest",
    "StreamStateResponse", "StreamCloseRequest", "StreamCloseResponse", "MetaDataAudio",
    "MetaDataVideo", "MetaDataShare", "MetaDataTranscript", "MetaDataChat",
    "VideoSubscriptionRequest", "VideoSubscriptionResponse", "AudioParams", "VideoParams",
    "DeskshareParams", "TranscriptParams", "MediaParams", "ServerUrls", "MediaServer",
    "MediaContent", "TranscriptContent", "ChatContent", "Message", "decode_message",
    "encode_message", "ProtocolError", "MalformedJSON", "UnknownMessageType", "InvalidField",
    "SignatureMismatch", "StaleTimestamp", "StateError", "ToleranceStats", "rtms_signature",
    "verify_rtms_signature", "StreamStart", "StreamStop", "webhook_signature",
    "verify_webhook", "url_validation_response", "handle_webhook", "WebhookResult",
    "ClientSignalingConnection", "ClientMediaConnection", "ServerSignalingConnection",
    "ServerMediaConnection", "HandshakeAccepted", "HandshakeRejected", "KeepAliveRequested",
    "EventReceived", "StreamStateChanged", "SessionStateChanged", "MediaReceived",
    "TranscriptReceived", "ChatReceived", "StreamClosed", "CloseAcknowledged",
    "KeepAliveTimeout", "VideoSubscriptionResult", "ProtocolViolation",
]


def test_public_names_exist_and_are_exported() -> None:
    exported = set(protocol.__all__)
    assert sorted(set(REQUIRED_NAMES) - exported) == []
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None, name
    assert len(protocol.__all__) == len(exported)  # no duplicates


def test_protocol_imports_only_stdlib_basics_and_msgspec() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {roots - ALLOWED_IMPORTS}"


def test_importing_protocol_loads_no_io_modules() -> None:
    code = ("import sys, rtms_fast.protocol; "
            "print(','.join(m for m in ('trio', 'socket', 'asyncio', 'ssl', 'selectors') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == ""


def test_events_are_frozen_slotted_values() -> None:
    event = protocol.KeepAliveRequested(1, 2)
    assert not hasattr(event, "__dict__")
    with pytest.raises(AttributeError):
        event.sequence = 5  # type: ignore[misc]
    assert event == protocol.KeepAliveRequested(1, 2)
    assert hash(event) == hash(protocol.KeepAliveRequested(1, 2))
