"""The reference server's webhook headers, signed by ``servicekit.webhooks`` (the spec's
test vector is checked in servicekit's own tests) and verified here independently."""

import base64
import hashlib
import hmac

import pytest

from reference_analyzer.webhooks import new_message_id, webhook_headers
from servicekit import webhooks

pytestmark = pytest.mark.unit

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_signature_is_an_independent_hmac_of_id_timestamp_and_body():
    body = b'{"job_id":"j","status":"progress","progress":20}'
    mac = hmac.new(KEY, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    headers = webhook_headers(SECRET, "msg_1", 1700000000, body)
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def test_signed_headers_pass_the_bridges_verifier():
    body = b'{"job_id":"j","status":"completed"}'
    headers = webhook_headers(SECRET, "msg_2", 1700000000, body)
    webhooks.verify(SECRET, headers, body, now=1700000000)


def test_headers_are_unsigned_without_a_secret():
    assert webhook_headers(None, "msg_1", 5, b"{}") == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "5",
    }


def test_message_ids_are_unique_and_dot_free():
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert not any("." in i for i in ids)
