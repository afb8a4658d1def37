import base64
import hashlib
import hmac

import pytest

from reference_analyzer.signing import new_message_id, secret_key, sign, webhook_headers

pytestmark = pytest.mark.unit


def test_official_standard_webhooks_vector():
    # `test_sign_function` of the reference Python library (standard-webhooks/standard-webhooks,
    # libraries/python/tests/test_webhooks.py).
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        '{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_matches_an_independent_hmac_of_id_timestamp_and_body():
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"job_id":"j","status":"progress","progress":20}'
    mac = hmac.new(key, b"msg_1.1700000000." + body, hashlib.sha256).digest()
    assert sign(secret, "msg_1", 1700000000, body) == "v1," + base64.b64encode(mac).decode()


def test_the_whsec_prefix_is_optional():
    assert secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == secret_key(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", ""])
def test_malformed_secrets_are_refused(secret):
    with pytest.raises(ValueError, match="secret"):
        sign(secret, "msg_1", 1, b"{}")


def test_ids_with_a_dot_are_refused():
    with pytest.raises(ValueError, match="id"):
        sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg.1", 1, b"{}")


def test_headers_are_signed_only_with_a_secret():
    unsigned = webhook_headers(None, "msg_1", 5, b"{}")
    assert unsigned == {"webhook-id": "msg_1", "webhook-timestamp": "5"}
    signed = webhook_headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", 5, b"{}")
    assert signed["webhook-signature"].startswith("v1,")


def test_message_ids_are_unique_and_dot_free():
    ids = {new_message_id() for _ in range(100)}
    assert len(ids) == 100
    assert not any("." in i for i in ids)
