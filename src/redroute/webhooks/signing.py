"""Signatures of webhook deliveries (docs/api.md, Webhooks).

    X-Redroute-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

with timestamp the X-Redroute-Timestamp header (ms) and body the raw bytes
POSTed. A receiver recomputes it with its copy of the secret, compares in
constant time, and rejects timestamps too far from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac

SCHEME = "v1"
EVENT_ID_HEADER = "X-Redroute-Event-Id"
TIMESTAMP_HEADER = "X-Redroute-Timestamp"
SIGNATURE_HEADER = "X-Redroute-Signature"


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The X-Redroute-Signature header value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           now_ms: int | None = None, tolerance_ms: int = 5 * 60 * 1000) -> bool:
    """Whether the signature is the secret's for this timestamp and body,
    and (given now_ms) the timestamp within tolerance_ms of it."""
    if now_ms is not None:
        try:
            if abs(now_ms - int(timestamp)) > tolerance_ms:
                return False
        except ValueError:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
