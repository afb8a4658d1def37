"""Standard Webhooks signatures (symmetric scheme, ``v1``) for the webhooks we send.

Spec: https://www.standardwebhooks.com/ and
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
("Signature scheme", "Webhook headers"):

- the signed content is ``{msg_id}.{timestamp}.{body}``, with the body exactly as sent;
- the signature is ``v1,`` + base64(HMAC-SHA256(key, content));
- the secret is serialized as ``whsec_<base64>``; the key is the decoded base64 part;
- ``webhook-id`` stays the same on every retry of one message (it is the receiver's
  idempotency key), while ``webhook-timestamp`` is the time of each attempt.

:func:`sign` is pure so that the bridge's verifier can be tested against it.
"""

import base64
import binascii
import hashlib
import hmac
import uuid
from typing import Final

SECRET_PREFIX: Final = "whsec_"
ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional, as in the
    reference libraries)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook signing secret is `whsec_` followed by base64") from exc
    if not key:
        raise ValueError("the webhook signing secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value of one attempt: ``v1,<base64 HMAC-SHA256>``."""
    # The spec forbids `.` in the id: it would make the signed content ambiguous.
    if not msg_id or "." in msg_id:
        raise ValueError("a webhook id must be non-empty and must not contain `.`")
    payload = body.encode() if isinstance(body, str) else body
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, payload)
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def new_message_id() -> str:
    """A fresh, unique ``webhook-id``."""
    return f"msg_{uuid.uuid4().hex}"


def webhook_headers(secret: str | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt; unsigned when ``secret`` is None."""
    headers = {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp)}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, msg_id, timestamp, body)
    return headers
