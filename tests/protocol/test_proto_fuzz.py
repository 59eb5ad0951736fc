# mypy: disable-error-code="comparison-overlap"
"""Fuzz harness: hostile input never raises anything but ProtocolError from the decoder,
and never raises at all from a state machine's ``receive``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proto_strategies import JSON_VALUES, MESSAGE_CLASSES, TEXT, strategy_for

from rtms_fast.protocol import (
    ClientMediaConnection,
    ClientSignalingConnection,
    MediaType,
    ProtocolError,
    ProtocolViolation,
    ServerMediaConnection,
    ServerSignalingConnection,
    decode_message,
    encode_message,
)
from rtms_fast.protocol._connection import BaseConnection

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _mutations() -> st.SearchStrategy[bytes]:
    """Valid messages with one field replaced, removed, or the msg_type changed."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        cls = draw(st.sampled_from(MESSAGE_CLASSES))
        obj: dict[str, Any] = json.loads(encode_message(draw(strategy_for(cls))))
        action = draw(st.sampled_from(["replace", "drop", "retag", "nest"]))
        keys = sorted(obj)
        key = draw(st.sampled_from(keys))
        if action == "replace":
            obj[key] = draw(JSON_VALUES)
        elif action == "drop":
            del obj[key]
        elif action == "retag":
            obj["msg_type"] = draw(st.integers(-3, 40) | st.text(max_size=3) | st.none())
        else:
            obj[key] = {"content": obj.get(key), draw(TEXT): draw(JSON_VALUES)}
        return json.dumps(obj).encode()

    return mutate()


# Well-formed messages that move states, in any order and on any socket.
CANONICAL = [
    b'{"msg_type":1,"meeting_uuid":"m","rtms_stream_id":"s","signature":"x"}',
    b'{"msg_type":2,"status_code":0,"media_server":{"server_urls":{"all":"ws://x"}}}',
    b'{"msg_type":2,"status_code":15,"reason":"no"}',
    b'{"msg_type":3,"meeting_uuid":"m","rtms_stream_id":"s","signature":"x","media_type":1}',
    b'{"msg_type":4,"status_code":0,"payload_encrypted":false}',
    b'{"msg_type":4,"reason":"no"}',
    b'{"msg_type":7,"rtms_stream_id":"s"}',
    b'{"msg_type":8,"state":4,"reason":"MEETING_ENDED"}',
    b'{"msg_type":8,"state":1}',
    b'{"msg_type":12,"sequence":1,"timestamp":2}',
    b'{"msg_type":13,"sequence":1}',
    b'{"msg_type":14,"content":{"user_id":1,"user_name":"A","data":"AA==","timestamp":1}}',
    b'{"msg_type":21}',
    b'{"msg_type":22,"status_code":0}',
]
VALID = st.sampled_from(MESSAGE_CLASSES).flatmap(strategy_for).map(encode_message)
RAW = st.binary(max_size=200) | TEXT.map(str.encode) | _mutations() | \
    JSON_VALUES.map(lambda v: json.dumps(v).encode()) | VALID | st.sampled_from(CANONICAL)


@FUZZ
@given(data=RAW)
def test_decoder_raises_only_protocol_errors(data: bytes) -> None:
    try:
        decode_message(data)
    except ProtocolError as exc:
        assert exc.msg_type is None or isinstance(exc.msg_type, int)
        assert exc.field is None or isinstance(exc.field, str)


def _machines() -> list[Callable[[], BaseConnection[Any]]]:
    def client_sig_idle() -> BaseConnection[Any]:
        return ClientSignalingConnection("m", "s", "sig")

    def client_media_idle() -> BaseConnection[Any]:
        return ClientMediaConnection("m", "s", "sig", MediaType.VIDEO)

    def server_media_streaming() -> BaseConnection[Any]:
        s = ServerMediaConnection()
        s.receive(b'{"msg_type":3,"meeting_uuid":"m","rtms_stream_id":"s","signature":"x",'
                  b'"media_type":1}', 0)
        s.accept(0)
        return s

    def client_sig() -> BaseConnection[Any]:
        c = ClientSignalingConnection("m", "s", "sig")
        c.handshake(0)
        return c

    def client_sig_ready() -> BaseConnection[Any]:
        c = ClientSignalingConnection("m", "s", "sig")
        c.handshake(0)
        c.receive(b'{"msg_type":2,"status_code":0,"media_server":{"server_urls":"ws://x"}}', 0)
        c.ready_ack()
        return c

    def client_media() -> BaseConnection[Any]:
        c = ClientMediaConnection("m", "s", "sig", MediaType.AUDIO)
        c.handshake(0)
        return c

    def server_sig() -> BaseConnection[Any]:
        return ServerSignalingConnection(client_id="c", client_secret="k")

    def server_sig_ready() -> BaseConnection[Any]:
        s = ServerSignalingConnection()
        s.receive(b'{"msg_type":1,"meeting_uuid":"m","rtms_stream_id":"s","signature":"x"}', 0)
        s.accept("ws://x", 0)
        return s

    def server_media() -> BaseConnection[Any]:
        return ServerMediaConnection()

    return [client_sig_idle, client_sig, client_sig_ready, client_media_idle, client_media,
            server_sig, server_sig_ready, server_media, server_media_streaming]


MACHINES = _machines()


@FUZZ
@given(factory=st.sampled_from(MACHINES), messages=st.lists(RAW, min_size=1, max_size=4))
def test_machines_survive_any_input(factory: Callable[[], BaseConnection[Any]],
                                    messages: list[bytes]) -> None:
    machine = factory()
    received_before = machine.stats.messages_received
    dropped_before = machine.stats.messages_dropped
    dropped = 0
    for now_ms, data in enumerate(messages, start=1):
        events = machine.receive(data, now_ms)  # type: ignore[attr-defined]
        dropped += sum(isinstance(e, ProtocolViolation) for e in events)
        machine.poll(now_ms)  # type: ignore[attr-defined]
    assert machine.stats.messages_received - received_before == len(messages)
    assert machine.stats.messages_dropped - dropped_before >= dropped
