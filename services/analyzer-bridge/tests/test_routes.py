"""The webhook route in memory, over fakes of the ports: what a call does to the job
and which events it publishes. The same through the real database, Kafka and servers
is in test_bridge_integration.py and test_bridge_with_*.py."""

import json
from urllib.parse import urlencode

import httpx
import pytest
from analyzer_bridge_fakes import (
    JOB,
    SECRET,
    FakeEvents,
    FakePresigner,
    FakeServer,
    FakeStore,
    rules,
    stored,
)
from pydantic import SecretStr

from analyzer_bridge.analysis import State
from analyzer_bridge.app import Adapters, create_app
from analyzer_bridge.capability import WEBHOOK_PATH, Capabilities
from analyzer_bridge.settings import Settings

pytestmark = pytest.mark.unit

RESULT = {"duration_seconds": 0.5, "sample_rate": 8000, "vendor.extra": [1, 2]}


async def client_for(store: FakeStore, events: FakeEvents) -> httpx.AsyncClient:
    """The bridge's app over fakes of its ports (no lifespan: nothing to connect)."""
    settings = Settings(webhook_capability_secret=SecretStr(SECRET))
    app = create_app(settings, Adapters(store, FakeServer(), FakePresigner(), events))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://bridge")


def url(job_id: str = JOB, token: str | None = None) -> str:
    token = token or Capabilities(SECRET, 3600).issue(job_id)
    return f"{WEBHOOK_PATH}?{urlencode({'job_id': job_id, 'token': token})}"


async def started():
    r = rules()
    await r.store.insert_pending(stored(), 600)
    await r.store.mark_requested(JOB, 51)
    return r, await client_for(r.store, r.events)


async def test_progress_then_the_result_publish_progress_once_and_one_final():
    r, client = await started()
    async with client:
        for p in (50, 40, 50):
            answer = await client.post(
                url(), json={"job_id": JOB, "status": "progress", "progress": p}
            )
            assert answer.status_code == 200
        body = {"job_id": JOB, "status": "completed", "result": RESULT}
        first = await client.post(url(), json=body, headers={"webhook-id": "msg_1"})
        again = await client.post(url(), json=body, headers={"webhook-id": "msg_1"})
    assert first.json() == {"job_id": JOB, "outcome": "won"}
    assert again.json() == {"job_id": JOB, "outcome": "replay"}
    assert r.events.of(JOB) == [("analyzing", 75), ("completed", 100)]
    ((_, result),) = r.events.results
    assert json.loads(result.model_dump_json())["result"] == RESULT


async def test_a_different_final_after_the_first_is_409_and_changes_nothing():
    r, client = await started()
    async with client:
        await client.post(url(), json={"job_id": JOB, "status": "completed", "result": RESULT})
        error = {"code": "invalid_audio", "message": "not audio"}
        answer = await client.post(url(), json={"job_id": JOB, "status": "failed", "error": error})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "conflict"
    assert r.store.rows[JOB].state is State.COMPLETED


async def test_a_token_for_another_job_is_401_and_changes_nothing():
    r, client = await started()
    async with client:
        answer = await client.post(
            url(token=Capabilities(SECRET, 3600).issue("another-job")),
            json={"job_id": JOB, "status": "progress", "progress": 50},
        )
    assert answer.status_code == 401
    assert r.events.statuses == []


async def test_an_invalid_result_fails_the_job_at_once_and_is_422():
    r, client = await started()
    async with client:
        body = {"job_id": JOB, "status": "completed", "result": {"sample_rate": "8000"}}
        answer = await client.post(url(), json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "analysis_invalid_result"
    assert "result.sample_rate" in answer.json()["error"]["message"]
    assert r.events.of(JOB) == [("failed", 100)]


async def test_kafka_down_while_finishing_is_503_with_retry_after():
    r, client = await started()
    r.events.down = True
    async with client:
        body = {"job_id": JOB, "status": "completed", "result": RESULT}
        answer = await client.post(url(), json=body)
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert r.store.rows[JOB].state is State.COMPLETED, "claimed; the sweeper republishes it"


async def test_the_database_down_is_503_with_retry_after():
    r, client = await started()
    r.store.down = 1
    async with client:
        answer = await client.post(url(), json={"job_id": JOB, "status": "progress", "progress": 5})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "unavailable"
    assert "retry-after" in answer.headers


async def test_a_webhook_of_a_deleted_job_is_answered_410_and_changes_nothing():
    r, client = await started()
    await r.store.erase(JOB)
    async with client:
        final = await client.post(
            url(), json={"job_id": JOB, "status": "completed", "result": RESULT}
        )
        progress = await client.post(
            url(), json={"job_id": JOB, "status": "progress", "progress": 9}
        )
        invalid = await client.post(url(), json={"job_id": JOB, "status": "completed", "result": 1})
        unknown = await client.post(
            url("00000000-0000-4000-8000-000000000000"),
            json={
                "job_id": "00000000-0000-4000-8000-000000000000",
                "status": "progress",
                "progress": 9,
            },
        )
    assert [a.status_code for a in (final, progress, invalid)] == [410, 410, 410]
    assert final.json()["error"]["code"] == "job_deleted"
    assert unknown.status_code == 404
    assert r.events.results == [] and r.events.statuses == [] and r.store.rows == {}
