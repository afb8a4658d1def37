import base64

import pytest

from servicekit import webhooks
from servicekit.webhooks import WebhookVerificationError, sign, signed_headers, verify

pytestmark = pytest.mark.unit

# The Standard Webhooks reference test vector (also in the svix libraries' tests).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_reproduces_the_specification_test_vector():
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_secret_prefix_is_optional():
    assert sign(SECRET.removeprefix("whsec_"), MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_verify_accepts_the_test_vector():
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": SIGNATURE,
    }
    verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_verify_ignores_header_case():
    headers = {
        "Webhook-Id": MSG_ID,
        "WEBHOOK-TIMESTAMP": str(TIMESTAMP),
        "Webhook-Signature": SIGNATURE,
    }
    verify(SECRET, headers, BODY, now=TIMESTAMP + 10)


def test_any_matching_entry_of_a_signature_list_accepts():
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    headers["webhook-signature"] = f"v1,bm9wZQ== v1a,xyz {SIGNATURE}"
    verify(SECRET, headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing):
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    del headers[missing]
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_tampered_body_is_rejected():
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, b'{"test": 2432232315}', now=TIMESTAMP)


def test_other_secret_is_rejected():
    other = "whsec_" + base64.b64encode(b"another key of some length").decode()
    headers = signed_headers(other, MSG_ID, TIMESTAMP, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_signature_of_another_message_id_is_rejected():
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    headers["webhook-id"] = "msg_other"
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_stale_or_future_timestamp_is_rejected(skew):
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(SECRET, headers, BODY, now=TIMESTAMP + skew)


@pytest.mark.parametrize("skew", [-300, 300])
def test_timestamp_at_the_tolerance_edge_is_accepted(skew):
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    verify(SECRET, headers, BODY, now=TIMESTAMP + skew)


@pytest.mark.parametrize(
    "value", ["", "v1,", "v1,not base64!", "v2," + SIGNATURE[3:], SIGNATURE[3:]]
)
def test_malformed_signature_is_rejected(value):
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    headers["webhook-signature"] = value
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_non_integer_timestamp_is_rejected():
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    headers["webhook-timestamp"] = "yesterday"
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers, BODY, now=TIMESTAMP)


def test_malformed_secret_is_a_configuration_error():
    with pytest.raises(ValueError, match="whsec_"):
        webhooks.secret_key("whsec_not*base64")


def test_check_headers_decides_what_the_headers_alone_can_without_a_body():
    headers = signed_headers(SECRET, MSG_ID, TIMESTAMP, BODY)
    assert webhooks.check_headers(headers, now=TIMESTAMP) == (MSG_ID, TIMESTAMP, SIGNATURE)
    with pytest.raises(WebhookVerificationError):
        webhooks.check_headers(headers, now=TIMESTAMP + webhooks.TOLERANCE_SECONDS + 1)
    with pytest.raises(WebhookVerificationError):
        webhooks.check_headers({"webhook-id": MSG_ID}, now=TIMESTAMP)
