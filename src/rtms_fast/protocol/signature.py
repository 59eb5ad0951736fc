"""The RTMS handshake signature (RTMS_PROTOCOL.md section 2).

``signature = lowercase hex(HMAC-SHA256(key=client_secret,
msg="{client_id},{meeting_uuid|session_id|engagement_id},{rtms_stream_id}"))``; the same value
goes into the signaling handshake (msg 1) and every media handshake (msg 3). Verification
compares in constant time. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["rtms_signature", "verify_rtms_signature"]


def rtms_signature(client_id: str, meeting_uuid: str, rtms_stream_id: str,
                   client_secret: str) -> str:
    """The lowercase hex HMAC-SHA256 signature a client sends in msgs 1 and 3.

    ``meeting_uuid`` is whichever id the product uses (meeting/webinar uuid, Video SDK
    ``session_id``, Contact Center ``engagement_id``).
    """
    message = f"{client_id},{meeting_uuid},{rtms_stream_id}".encode()
    return hmac.new(client_secret.encode(), message, hashlib.sha256).hexdigest()


def verify_rtms_signature(client_id: str, meeting_uuid: str, rtms_stream_id: str,
                          client_secret: str, signature: str) -> bool:
    """True when ``signature`` is the signature of these ids (hex case ignored).

    Constant time in the content of ``signature``; a non-ASCII signature is simply False.
    """
    expected = rtms_signature(client_id, meeting_uuid, rtms_stream_id, client_secret)
    try:
        given = signature.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), given)
