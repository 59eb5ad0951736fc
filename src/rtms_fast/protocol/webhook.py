"""Zoom webhooks for RTMS: body Structs, signature checks and a framework-free handler.

Covers ``meeting.rtms_started/stopped/interrupted``, the same for ``webinar.`` and
``session.`` (Video SDK, id ``session_id``), ``contact_center.voice_rtms_*`` (id
``engagement_id``) and ``endpoint.url_validation`` (RTMS_PROTOCOL.md sections 13, 14, 18).

Signing: header ``x-zm-signature: v0=<hex>`` where ``<hex> = HMAC-SHA256(secret,
"v0:{x-zm-request-timestamp}:{raw body}")``; compared in constant time. Every request must
verify, ``endpoint.url_validation`` included: its answer is an HMAC of an attacker-chosen
token under the same secret, so answering it unsigned would let anyone mint signatures.

Payloads come in two shapes in the wild (``payload.{...}`` and ``payload.object.{...}``);
``handle_webhook`` reads either and returns a normalised ``StreamStart`` / ``StreamStop`` /
``StreamInterrupted``. This module never opens sockets or reads a clock: ``now_s`` is passed in.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

import msgspec

from .errors import (
    InvalidField,
    MalformedJSON,
    MissingField,
    MissingHeader,
    ProtocolError,
    SignatureMismatch,
    StaleTimestamp,
)
from .tolerance import stop_reason_from_name

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Product",
    "RtmsWebhookPayload",
    "StreamInterrupted",
    "StreamStart",
    "StreamStop",
    "WebhookBody",
    "WebhookEvent",
    "WebhookResult",
    "handle_webhook",
    "parse_webhook_body",
    "stream_change",
    "url_validation_response",
    "verify_webhook",
    "webhook_headers",
    "webhook_signature",
]

SIGNATURE_HEADER: Final = "x-zm-signature"
TIMESTAMP_HEADER: Final = "x-zm-request-timestamp"


class Product(enum.Enum):
    """The Zoom product a stream belongs to; decides which id is signed."""

    MEETING = "meeting"
    WEBINAR = "webinar"
    VIDEO_SDK = "session"
    CONTACT_CENTER = "contact_center"


class WebhookEvent(str, enum.Enum):
    """Webhook ``event`` names this module understands."""

    URL_VALIDATION = "endpoint.url_validation"
    MEETING_RTMS_STARTED = "meeting.rtms_started"
    MEETING_RTMS_STOPPED = "meeting.rtms_stopped"
    MEETING_RTMS_INTERRUPTED = "meeting.rtms_interrupted"
    WEBINAR_RTMS_STARTED = "webinar.rtms_started"
    WEBINAR_RTMS_STOPPED = "webinar.rtms_stopped"
    WEBINAR_RTMS_INTERRUPTED = "webinar.rtms_interrupted"
    SESSION_RTMS_STARTED = "session.rtms_started"
    SESSION_RTMS_STOPPED = "session.rtms_stopped"
    SESSION_RTMS_INTERRUPTED = "session.rtms_interrupted"
    CONTACT_CENTER_VOICE_RTMS_STARTED = "contact_center.voice_rtms_started"
    CONTACT_CENTER_VOICE_RTMS_STOPPED = "contact_center.voice_rtms_stopped"
    CONTACT_CENTER_VOICE_RTMS_INTERRUPTED = "contact_center.voice_rtms_interrupted"


class RtmsWebhookPayload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """``payload`` of an RTMS webhook; the same fields may sit in ``payload.object``."""

    meeting_uuid: str | None = None
    webinar_uuid: str | None = None
    session_id: str | None = None
    engagement_id: str | None = None
    rtms_stream_id: str | None = None
    server_urls: str | None = None
    """The signaling URL (``wss://rtms-<region>.zoom.us/...``)."""
    signature: str | None = None
    stop_reason: int | str | None = None
    operator_id: str | None = None
    account_id: str | None = None
    plain_token: str | None = msgspec.field(default=None, name="plainToken")
    object: RtmsWebhookPayload | None = None


class WebhookBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A webhook request body: ``{"event": ..., "event_ts": ms, "payload": {...}}``."""

    event: str
    event_ts: int | None = None
    payload: RtmsWebhookPayload | None = None


class StreamStart(msgspec.Struct, frozen=True, kw_only=True):
    """An RTMS stream to join, from any product's ``*rtms_started`` webhook."""

    product: Product
    rtms_stream_id: str
    signature_id: str
    """The id that goes into the handshake signature and ``meeting_uuid`` of msg 1."""
    server_urls: str
    event_ts_ms: int | None = None
    signature: str | None = None
    """A ready signature when the webhook carried one."""


class StreamStop(msgspec.Struct, frozen=True, kw_only=True):
    """An RTMS stream that ended (``*rtms_stopped``)."""

    product: Product
    rtms_stream_id: str
    signature_id: str | None = None
    event_ts_ms: int | None = None
    stop_reason: int | None = None


class StreamInterrupted(msgspec.Struct, frozen=True, kw_only=True):
    """An RTMS stream interrupted (``*rtms_interrupted``); it may still be rejoined."""

    product: Product
    rtms_stream_id: str
    signature_id: str | None = None
    event_ts_ms: int | None = None


StreamChange = StreamStart | StreamStop | StreamInterrupted


class WebhookResult(msgspec.Struct, frozen=True, kw_only=True):
    """What to answer (``status_code``, ``body``) and what happened (``stream``, ``error``)."""

    status_code: int
    body: bytes
    content_type: str = "application/json"
    event: str | None = None
    stream: StreamStart | StreamStop | StreamInterrupted | None = None
    error: ProtocolError | None = None


_PREFIX_PRODUCTS: Final = (
    ("meeting.", Product.MEETING),
    ("webinar.", Product.WEBINAR),
    ("session.", Product.VIDEO_SDK),
    ("contact_center.", Product.CONTACT_CENTER),
)
_BODY_DECODER: Final = msgspec.json.Decoder(WebhookBody)
_ENCODER: Final = msgspec.json.Encoder()


def webhook_signature(secret: str, timestamp: str | int, raw_body: bytes) -> str:
    """``"v0=<hex>"``: the ``x-zm-signature`` value for this timestamp and body."""
    message = b"v0:" + str(timestamp).encode("ascii") + b":" + bytes(raw_body)
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def webhook_headers(secret: str, timestamp_s: int, raw_body: bytes) -> dict[str, str]:
    """The signing headers a sender (the simulator) attaches to ``raw_body``."""
    return {
        "content-type": "application/json",
        SIGNATURE_HEADER: webhook_signature(secret, timestamp_s, raw_body),
        TIMESTAMP_HEADER: str(timestamp_s),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                value = candidate
                break
    if value is None or not value.strip():
        raise MissingHeader(f"header {name!r} is missing", field=name)
    return value.strip()


def verify_webhook(headers: Mapping[str, str], raw_body: bytes, secret: str, now_s: float,
                   max_age_s: float = 300) -> None:
    """Check the request signature, then its age; raise a typed error or return None.

    Header names are matched case-insensitively. The timestamp is in seconds; a value that
    only makes sense as milliseconds (> 1e11) is read as such. Raises MissingHeader,
    InvalidField (timestamp not a number), SignatureMismatch or StaleTimestamp (older than
    ``max_age_s`` or that far in the future).
    """
    signature = _header(headers, SIGNATURE_HEADER)
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    expected = webhook_signature(secret, timestamp_text, raw_body)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise SignatureMismatch("x-zm-signature does not match the body", field=SIGNATURE_HEADER)
    try:
        timestamp_s = float(timestamp_text)
    except ValueError:
        raise InvalidField(
            f"timestamp {timestamp_text!r} is not a number", field=TIMESTAMP_HEADER
        ) from None
    if timestamp_s > 1e11:  # milliseconds
        timestamp_s /= 1000.0
    age_s = now_s - timestamp_s
    if not -max_age_s <= age_s <= max_age_s:
        raise StaleTimestamp(
            f"request timestamp is {age_s:.0f} s from now (limit {max_age_s:.0f} s)",
            field=TIMESTAMP_HEADER,
        )


def url_validation_response(plain_token: str, secret: str) -> dict[str, str]:
    """The JSON answer to ``endpoint.url_validation``."""
    encrypted = hmac.new(secret.encode(), plain_token.encode(), hashlib.sha256).hexdigest()
    return {"plainToken": plain_token, "encryptedToken": encrypted}


def parse_webhook_body(raw_body: bytes) -> WebhookBody:
    """Decode a webhook body; MalformedJSON or InvalidField/MissingField on failure."""
    try:
        return _BODY_DECODER.decode(raw_body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path = text.rsplit("`$", 1)[1].rstrip("`").lstrip(".") if "`$" in text else ""
        if text.startswith("Object missing required field"):
            name = text.split("`")[1]
            raise MissingField(text, field=f"{path}.{name}" if path else name) from None
        raise InvalidField(text, field=path) from None
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"webhook body is not JSON: {exc}") from None


def _pick(payload: RtmsWebhookPayload, name: str) -> str | int | None:
    """A payload field from ``payload`` or, failing that, ``payload.object``."""
    value: str | int | None = getattr(payload, name)
    if value is None and payload.object is not None:
        value = getattr(payload.object, name)
    return value


def _pick_str(payload: RtmsWebhookPayload, name: str) -> str | None:
    value = _pick(payload, name)
    return value if isinstance(value, str) and value else None


def stream_change(body: WebhookBody) -> StreamStart | StreamStop | StreamInterrupted | None:
    """The normalised stream change of an RTMS webhook, None for other events.

    Raises MissingField when an RTMS event lacks ``rtms_stream_id`` (or, for a start,
    ``server_urls`` or the product's id).
    """
    product = next((p for prefix, p in _PREFIX_PRODUCTS if body.event.startswith(prefix)), None)
    suffix = body.event.rsplit(".", 1)[-1]
    if product is None or suffix.removeprefix("voice_") not in (
        "rtms_started", "rtms_stopped", "rtms_interrupted"
    ):
        return None
    payload = body.payload or RtmsWebhookPayload()
    stream_id = _pick_str(payload, "rtms_stream_id")
    if stream_id is None:
        raise MissingField("RTMS webhook without rtms_stream_id", field="payload.rtms_stream_id")
    id_fields = {
        Product.MEETING: ("meeting_uuid",),
        Product.WEBINAR: ("meeting_uuid", "webinar_uuid"),
        Product.VIDEO_SDK: ("session_id",),
        Product.CONTACT_CENTER: ("engagement_id",),
    }[product]
    # The product's own id first, then any other id (payloads that mix products).
    candidates = (*id_fields, "meeting_uuid", "session_id", "engagement_id", "webinar_uuid")
    signature_id = next((v for f in candidates if (v := _pick_str(payload, f)) is not None), None)
    if suffix.endswith("rtms_started"):
        server_urls = _pick_str(payload, "server_urls")
        if server_urls is None:
            raise MissingField("rtms_started without server_urls", field="payload.server_urls")
        if signature_id is None:
            raise MissingField(
                f"rtms_started without {id_fields[0]}", field=f"payload.{id_fields[0]}"
            )
        return StreamStart(
            product=product,
            rtms_stream_id=stream_id,
            signature_id=signature_id,
            server_urls=server_urls,
            event_ts_ms=body.event_ts,
            signature=_pick_str(payload, "signature"),
        )
    if suffix.endswith("rtms_stopped"):
        raw_reason = _pick(payload, "stop_reason")
        reason: int | None
        if isinstance(raw_reason, str):
            known = stop_reason_from_name(raw_reason)
            reason = int(known) if known is not None else 0
        else:
            reason = raw_reason
        return StreamStop(
            product=product,
            rtms_stream_id=stream_id,
            signature_id=signature_id,
            event_ts_ms=body.event_ts,
            stop_reason=reason,
        )
    return StreamInterrupted(
        product=product, rtms_stream_id=stream_id, signature_id=signature_id,
        event_ts_ms=body.event_ts,
    )


def _answer(status_code: int, obj: object, **kw: object) -> WebhookResult:
    return WebhookResult(status_code=status_code, body=_ENCODER.encode(obj), **kw)  # type: ignore[arg-type]


def handle_webhook(headers: Mapping[str, str], raw_body: bytes, secret: str, now_s: float,
                   max_age_s: float = 300) -> WebhookResult:
    """Verify, parse and answer one webhook request; never raises for bad input.

    401 for a missing header, bad signature or stale timestamp; 400 for a body that is not
    JSON, has no ``event``, or is an RTMS event without its ids; 200 with the url_validation
    answer; otherwise 200 ``{"status":"ok"}`` (unknown events included, so Zoom does not
    retry them). ``error`` holds the typed error of a 4xx answer.
    """
    try:
        verify_webhook(headers, raw_body, secret, now_s, max_age_s)
    except ProtocolError as exc:
        return _answer(401, {"error": exc.detail}, error=exc)
    try:
        body = parse_webhook_body(raw_body)
        if body.event == WebhookEvent.URL_VALIDATION.value:
            token = body.payload.plain_token if body.payload is not None else None
            if not token:
                raise MissingField("url_validation without plainToken",
                                   field="payload.plainToken")
            return _answer(200, url_validation_response(token, secret), event=body.event)
        stream = stream_change(body)
    except ProtocolError as exc:
        return _answer(400, {"error": exc.detail}, error=exc)
    return _answer(200, {"status": "ok"}, event=body.event, stream=stream)
