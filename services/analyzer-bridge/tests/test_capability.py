import time

import jwt
import pytest

from analyzer_bridge.capability import Capabilities

SECRET = "a-test-secret-of-at-least-32-bytes"
OTHER = "another-test-secret-of-32-bytes-or-more"

pytestmark = pytest.mark.unit


def test_token_grants_its_own_job():
    caps = Capabilities(SECRET, ttl_seconds=60)
    assert caps.allows(caps.issue("job-1"), "job-1")


def test_token_does_not_grant_another_job():
    caps = Capabilities(SECRET, ttl_seconds=60)
    assert not caps.allows(caps.issue("job-1"), "job-2")


def test_token_signed_with_another_secret_is_refused():
    assert not Capabilities(SECRET, 60).allows(Capabilities(OTHER, 60).issue("j"), "j")


def test_expired_token_is_refused():
    caps = Capabilities(SECRET, ttl_seconds=60)
    assert not caps.allows(caps.issue("j", now=time.time() - 120), "j")


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
def test_malformed_token_is_refused(token):
    assert not Capabilities(SECRET, 60).allows(token, "j")


def test_job_token_of_the_gateway_is_not_a_webhook_capability():
    """Another audience signed with the same secret must not open the webhook."""
    other = jwt.encode({"sub": "j", "aud": "audiopipe:job", "exp": time.time() + 60}, SECRET)
    assert not Capabilities(SECRET, 60).allows(other, "j")


def test_unsigned_token_is_refused():
    forged = jwt.encode({"sub": "j", "aud": "audiopipe:analysis-webhook"}, "", algorithm="none")
    assert not Capabilities(SECRET, 60).allows(forged, "j")
