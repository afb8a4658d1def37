"""Standard Webhooks signatures (https://www.standardwebhooks.com/, docs/architecture.md §6).

A sender signs ``"{webhook-id}.{webhook-timestamp}.{raw body}"`` with HMAC-SHA256 under
the shared secret and sends ``webhook-signature: v1,<base64>`` (several space-separated
entries during a key rotation). A receiver accepts when any ``v1`` entry matches and
the timestamp is within the tolerance, which bounds how long a captured call can be
replayed. Secrets are written ``whsec_<base64 key>``.

Not PyPI's ``standardwebhooks`` (1.1.0), though it reproduces the spec's vector: its
``verify`` raises ValueError on a signature entry without a comma and UnicodeDecodeError
on a body that is not UTF-8 (a 500 where a forged call must get 401), and reads the
clock itself, so the tolerance cannot be tested at its edges.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

__all__ = [
    "ID_HEADER",
    "SECRET_PREFIX",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "WebhookVerificationError",
    "check_headers",
    "secret_key",
    "sign",
    "signed_headers",
    "verify",
]

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
SECRET_PREFIX: Final = "whsec_"
TOLERANCE_SECONDS: Final = 5 * 60


class WebhookVerificationError(Exception):
    """The call is unsigned, forged or stale; answer 401."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is `whsec_` followed by base64") from exc


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value, ``v1,<base64>``, for one message."""
    digest = _digest(secret_key(secret), msg_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a sender adds to a webhook call."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
    }


def check_headers(
    headers: Mapping[str, str], now: float, tolerance_seconds: int = TOLERANCE_SECONDS
) -> tuple[str, int, str]:
    """What the headers alone decide, so that a receiver can refuse before reading the
    body: the three headers are there and the timestamp is recent. Returns the id, the
    timestamp and the signatures; raises :class:`WebhookVerificationError`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(ID_HEADER)
    timestamp_text = lowered.get(TIMESTAMP_HEADER)
    signatures = lowered.get(SIGNATURE_HEADER)
    if not msg_id or not timestamp_text or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    return msg_id, timestamp, signatures


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> None:
    """Return when ``body`` is signed under ``secret`` and recent, else raise
    :class:`WebhookVerificationError`. ``headers`` may use any letter case."""
    msg_id, timestamp, signatures = check_headers(headers, now, tolerance_seconds)
    expected = _digest(secret_key(secret), msg_id, timestamp, body)
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other schemes (e.g. v1a, asymmetric) are not configured here
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return
    raise WebhookVerificationError("no matching webhook signature")
