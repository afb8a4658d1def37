import pytest

from contracts import topics
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


def _projection_fetch(settings: Settings) -> dict[str, int]:
    """The projection consumer's fetch options, as the subscriber hands them to aiokafka
    (FastStream keeps them in the undocumented ``_connection_args``)."""
    from faststream.kafka.subscriber.usecase import LogicSubscriber

    from servicekit.service import service_of

    (subscriber,) = [
        s
        for s in service_of(create_app(settings)).broker.subscribers
        if isinstance(s, LogicSubscriber) and topics.JOB_STATUS in s.topic_names_for_subscribe
    ]
    args = subscriber._connection_args
    return {k: args[k] for k in ("fetch_min_bytes", "fetch_max_wait_ms")}


def test_the_projection_lets_the_broker_gather_statuses_for_its_fetch_wait():
    assert _projection_fetch(Settings(projection_fetch_wait_ms=40)) == {
        "fetch_min_bytes": 256 * 1024,
        "fetch_max_wait_ms": 40,
    }


def test_no_fetch_wait_takes_each_status_as_soon_as_it_is_there():
    fetch = _projection_fetch(Settings(projection_fetch_wait_ms=0))
    assert fetch["fetch_min_bytes"] == 1
