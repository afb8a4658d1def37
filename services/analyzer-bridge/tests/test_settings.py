import base64
from typing import Any

import pytest
from pydantic import ValidationError

from analyzer_bridge.settings import Settings
from servicekit.settings import DEV_DATABASE_URL, DEV_WEBHOOK_CAPABILITY_SECRET

pytestmark = pytest.mark.unit


def test_defaults_point_at_the_local_stack():
    settings = Settings()
    assert settings.http_port == 8103
    assert settings.analysis_deadline_seconds == 600
    assert settings.presign_expiry_seconds == 900
    assert settings.presign_endpoint_url == settings.s3_endpoint_url


def test_presign_endpoint_can_differ_from_the_s3_endpoint():
    settings = Settings(s3_presign_endpoint_url="http://s3.internal:8333")
    assert settings.presign_endpoint_url == "http://s3.internal:8333"


PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "job_token_secret": "a-real-job-token-secret-of-32-bytes",
    "s3_secret_access_key": "a-real-s3-secret",
    "webhook_capability_secret": "a-real-capability-secret-32-bytes",
    "database_url": "postgresql://bridge:a-real-password@db:5432/audiopipe",
}
SIGNING_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def test_production_refuses_the_development_capability_secret():
    with pytest.raises(ValidationError, match="webhook_capability_secret"):
        Settings(**{**PRODUCTION, "webhook_capability_secret": DEV_WEBHOOK_CAPABILITY_SECRET})


@pytest.mark.parametrize("unset", [{}, {"webhook_signing_secret": ""}])
def test_production_refuses_to_start_without_a_signing_secret(unset):
    with pytest.raises(ValidationError, match="webhook_signing_secret is required"):
        Settings(**PRODUCTION, **unset)


def test_production_starts_with_real_secrets_and_a_signing_secret():
    settings = Settings(**PRODUCTION, webhook_signing_secret=SIGNING_SECRET)
    assert settings.webhook_signing_secret is not None


def test_development_may_leave_webhooks_unsigned(monkeypatch):
    monkeypatch.delenv("WEBHOOK_SIGNING_SECRET", raising=False)
    assert Settings().webhook_signing_secret is None


def test_signing_secret_must_be_whsec_base64():
    with pytest.raises(ValidationError, match="whsec_"):
        Settings(webhook_signing_secret="whsec_***")


def test_empty_signing_secret_means_unsigned_webhooks():
    assert Settings(webhook_signing_secret="").webhook_signing_secret is None


def test_request_metadata_is_a_json_object_from_the_environment(monkeypatch):
    monkeypatch.setenv("ANALYSIS_REQUEST_METADATA", '{"reference.mode": "slow"}')
    assert Settings().analysis_request_metadata == {"reference.mode": "slow"}
    monkeypatch.delenv("ANALYSIS_REQUEST_METADATA")
    assert Settings().analysis_request_metadata == {}


def test_request_metadata_must_be_an_object_of_strings(monkeypatch):
    monkeypatch.setenv("ANALYSIS_REQUEST_METADATA", '["reference.mode"]')
    with pytest.raises(ValidationError):
        Settings()


def test_production_refuses_the_development_database_url_and_never_shows_the_dsn():
    with pytest.raises(ValueError, match="database_url has its development default"):
        Settings(
            **{
                **PRODUCTION,
                "database_url": DEV_DATABASE_URL,
                "webhook_signing_secret": SIGNING_SECRET,
            }
        )
    settings = Settings(**{**PRODUCTION, "webhook_signing_secret": SIGNING_SECRET})
    assert "a-real-password" not in repr(settings)
    assert settings.database_dsn == PRODUCTION["database_url"]


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"webhook_capability_secret": "short-but-real"}, "at least 32 bytes"),
        ({"job_token_secret": "change-me"}, "an example's value"),
        ({"job_token_secret": "please-CHANGEME-now-0123456789abcdef"}, "placeholder"),
        (
            {"database_url": "postgresql://audiopipe:change-me@postgres.db.svc:5432/audiopipe"},
            "database_url",
        ),
        (
            {"webhook_signing_secret": "whsec_" + base64.b64encode(b"k" * 24).decode()},
            "decode to at least 32 bytes",
        ),
        (
            {"webhook_signing_secret": "whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI="},
            "example",
        ),
    ],
)
def test_production_refuses_short_example_and_placeholder_secrets(override, problem):
    with pytest.raises(ValidationError, match=problem):
        Settings(**{**PRODUCTION, "webhook_signing_secret": SIGNING_SECRET, **override})
