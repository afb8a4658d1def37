"""CORS by configured origins (docs/architecture.md §6): listed origins only, cookies included."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from servicekit.http import allow_origins, create_app

pytestmark = pytest.mark.unit

ALLOWED = "http://app.example"


def _client(origins: list[str]) -> TestClient:
    app = create_app(title="t", description="t")
    allow_origins(app, origins, methods=["GET"], headers=["Last-Event-ID"])
    return TestClient(app)


def test_a_listed_origin_may_read_answers_with_credentials():
    answer = _client([ALLOWED]).get("/healthz", headers={"Origin": ALLOWED})
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.headers["access-control-allow-credentials"] == "true"


def test_an_unlisted_origin_gets_no_cors_headers():
    answer = _client([ALLOWED]).get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


def test_a_preflight_from_an_unlisted_origin_is_refused():
    answer = _client([ALLOWED]).options(
        "/healthz",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers


def test_a_preflight_from_a_listed_origin_allows_the_resume_header():
    answer = _client([ALLOWED]).options(
        "/healthz",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert answer.status_code == 200
    assert "last-event-id" in answer.headers["access-control-allow-headers"].lower()


def test_no_origins_means_same_origin_only():
    answer = _client([]).get("/healthz", headers={"Origin": ALLOWED})
    assert "access-control-allow-origin" not in answer.headers


def test_a_wildcard_origin_is_refused_at_start():
    with pytest.raises(ValueError, match="not `\\*`"):
        allow_origins(FastAPI(), ["*"], methods=["GET"])
