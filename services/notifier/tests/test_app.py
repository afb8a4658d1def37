import pytest

from notifier.app import create_app
from notifier.settings import Settings

pytestmark = pytest.mark.unit


def test_openapi_documents_the_public_routes():
    paths = create_app(Settings()).openapi()["paths"]
    stream = paths["/tokens/analysis-progress/{job_id}"]["get"]["responses"]
    assert "text/event-stream" in stream["200"]["content"]
    assert "/jobs/{job_id}" in paths


def test_schema_name_must_be_a_plain_identifier():
    with pytest.raises(ValueError, match="identifier"):
        Settings(database_schema="x; DROP TABLE y")


def test_cors_origins_come_from_a_json_list_in_the_environment(monkeypatch):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", '["http://app.example"]')
    assert Settings().cors_allowed_origins == ["http://app.example"]
