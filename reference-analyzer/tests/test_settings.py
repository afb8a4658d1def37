import pydantic
import pytest

from reference_analyzer.modes import Mode
from reference_analyzer.settings import Settings

pytestmark = pytest.mark.unit

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("HTTP_HOST", "HTTP_PORT", "WEBHOOK_SIGNING_SECRET", "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("REFERENCE_ANALYZER_" + name, raising=False)
    return monkeypatch


def test_defaults(clean_env):
    settings = Settings()
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8105)
    assert settings.signing_secret is None
    assert settings.environment == "development"
    assert settings.mode is Mode.NORMAL
    assert settings.max_duration_seconds == 3600
    assert settings.max_download_bytes == 2 * 1024**3


def test_plain_names_are_read_and_prefixed_names_win(clean_env):
    clean_env.setenv("HTTP_PORT", "9000")
    clean_env.setenv("WEBHOOK_SIGNING_SECRET", VECTOR_SECRET)
    assert Settings().http_port == 9000
    assert Settings().signing_secret == VECTOR_SECRET
    clean_env.setenv("REFERENCE_ANALYZER_HTTP_PORT", "9001")
    assert Settings().http_port == 9001


def test_test_modes_come_from_prefixed_variables(clean_env):
    clean_env.setenv("REFERENCE_ANALYZER_MODE", "silent")
    clean_env.setenv("REFERENCE_ANALYZER_FAIL_FIRST", "2")
    settings = Settings()
    assert (settings.mode, settings.fail_first) == (Mode.SILENT, 2)


@pytest.mark.parametrize(
    "secret", ["not base64!", "whsec_" + "QUJD", "whsec_" + "A" * 120]
)  # malformed, 3 bytes, 90 bytes
def test_a_malformed_or_weak_signing_secret_refuses_to_start(clean_env, secret):
    clean_env.setenv("WEBHOOK_SIGNING_SECRET", secret)
    with pytest.raises(pydantic.ValidationError, match="secret"):
        Settings()


def test_an_empty_signing_secret_means_unsigned(clean_env):
    clean_env.setenv("WEBHOOK_SIGNING_SECRET", "")
    assert Settings().signing_secret is None


def test_the_secret_is_not_shown_in_the_settings_repr(clean_env):
    clean_env.setenv("WEBHOOK_SIGNING_SECRET", VECTOR_SECRET)
    assert VECTOR_SECRET not in repr(Settings())


STRONG_SECRET = "whsec_" + "cmVmZXJlbmNlLWFuYWx5emVyLXByb2R1Y3Rpb24ta2V5IQ=="  # 34 bytes


@pytest.mark.parametrize("name", ["ENVIRONMENT", "REFERENCE_ANALYZER_ENVIRONMENT"])
def test_production_refuses_to_start_without_a_signing_secret(clean_env, name):
    # Without one, anyone who reaches the server makes it fetch and decode any URL.
    clean_env.setenv(name, "production")
    with pytest.raises(pydantic.ValidationError, match="webhook_signing_secret is required"):
        Settings()
    clean_env.setenv("WEBHOOK_SIGNING_SECRET", STRONG_SECRET)
    assert Settings().environment == "production"


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (VECTOR_SECRET, "at least 32 bytes"),  # 24 bytes: enough in development only
        ("whsec_Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=", "example"),  # published
    ],
)
def test_production_refuses_a_short_or_published_signing_secret(clean_env, secret, why):
    clean_env.setenv("ENVIRONMENT", "production")
    clean_env.setenv("WEBHOOK_SIGNING_SECRET", secret)
    with pytest.raises(pydantic.ValidationError, match=why):
        Settings()
