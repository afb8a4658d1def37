"""PostgreSQL going away under a running bridge (issue 11): webhooks get 503 JSON with
Retry-After instead of 500s, ``audio.stored`` is not committed until it is recorded,
an accepted request is recorded once the database is back instead of being made
twice, and the bridge recovers by itself.

The bridge reaches the database through a TCP proxy the test owns, so the session's
PostgreSQL, which other tests share, is never stopped.
"""

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import TopicPartition
from analyzer_bridge_testing import FakeAnalysisServer, stored, wait_until
from fastapi import Request, Response

from tests.support.kafka import committed_offset, publish_event
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxy(infra) -> AsyncIterator[TcpProxy]:
    database = urlsplit(infra["DATABASE_URL"])
    async with tcp_proxy(database.hostname or "127.0.0.1", database.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def through(infra, proxy) -> dict[str, object]:
    """Settings of a bridge whose database is behind ``proxy``."""
    direct = urlsplit(infra["DATABASE_URL"])
    netloc = direct.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
    return {
        "database_url": direct._replace(netloc=netloc).geturl(),
        "database_timeout_seconds": 1.0,
    }


def completed(job_id: str) -> dict[str, object]:
    return {"job_id": job_id, "status": "completed", "result": {"duration_seconds": 1.5}}


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["error"]["code"] == "unavailable"
    assert "postgresql" in body["error"]["message"]


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        return (await client.get("/readyz")).status_code == 200


async def test_webhooks_get_503_with_retry_after_while_the_database_is_down_then_land(
    start_bridge, proxy, through
):
    async with start_bridge(**through) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.accepted(job_id)
        await proxy.cut()

        progress = {"job_id": job_id, "status": "progress", "progress": 50}
        assert_unavailable(await bridge.server.send(job_id, progress))
        assert_unavailable(await bridge.server.send(job_id, completed(job_id), webhook_id="m1"))
        async with httpx.AsyncClient(base_url=bridge.url, timeout=20) as client:
            assert (await client.get("/readyz")).status_code == 503

        await proxy.restore()
        await wait_until(lambda: _ready(bridge.url), what="the bridge to be ready again")
        # The analysis server retries as told; now the result lands, once.
        answer = await bridge.server.send(job_id, completed(job_id), webhook_id="m1")
        assert answer.status_code == 200, answer.text
        assert (await bridge.final(job_id))["status"] == "completed"
        await bridge.barrier()
        assert len(bridge.finals(job_id)) == 1
        assert (await bridge.row(job_id))["state"] == "completed"


async def test_audio_stored_while_the_database_is_down_is_not_committed_and_requested_once(
    start_bridge, proxy, through, caplog
):
    async with start_bridge(**through) as bridge:
        await bridge.accepted(str(uuid.uuid4()))
        # The group has committed something (within KAFKA_COMMIT_INTERVAL_SECONDS).
        only = TopicPartition(bridge.settings.audio_stored_topic, 0)  # one partition
        bootstrap, group = bridge.settings.kafka_bootstrap_servers, bridge.settings.consumer_group
        await wait_until(lambda: committed_offset(bootstrap, group, only), what="the first commit")
        await proxy.cut()
        job_id = str(uuid.uuid4())
        sent = await publish_event(
            bridge.producer,
            bridge.settings.audio_stored_topic,
            stored(job_id),
            source="tests",
            ce_id=f"{job_id}:stored",
        )
        await wait_until(
            lambda: any("will be redelivered" in r.getMessage() for r in caplog.records),
            what="the consumer to fail on the outage",
        )
        assert sent is not None
        committed = await committed_offset(
            bridge.settings.kafka_bootstrap_servers,
            bridge.settings.consumer_group,
            TopicPartition(bridge.settings.audio_stored_topic, sent.partition),
        )
        assert committed is not None and committed <= sent.offset

        await proxy.restore()
        await wait_until(lambda: bridge.server.requests_for(job_id), what="the request")
        await bridge.accepted(str(uuid.uuid4()))  # one partition: read after the job
        assert len(bridge.server.requests_for(job_id)) == 1
        assert (await bridge.row(job_id))["state"] == "requested"


class CuttingServer(FakeAnalysisServer):
    """Accepts the request, and takes the database away while doing so."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__()
        self.proxy = proxy

    async def _analyze(self, request: Request) -> Response:
        await self.proxy.cut()
        return await super()._analyze(request)


async def test_a_request_accepted_while_the_database_went_down_is_recorded_not_repeated(
    start_bridge, proxy, through, caplog
):
    async with start_bridge(server=CuttingServer(proxy), **through) as bridge:
        job_id = str(uuid.uuid4())
        await bridge.publish(bridge.stored(job_id))
        await wait_until(lambda: bridge.server.requests_for(job_id), what="the request")
        await wait_until(
            lambda: any(
                r.name == "analyzer_bridge.requesting" and "unavailable" in r.getMessage()
                for r in caplog.records
            ),
            what="the bridge to fail to record the accepted request",
        )
        await proxy.restore()

        async def requested():
            row = await bridge.row(job_id)
            return row is not None and row["state"] == "requested"

        await wait_until(requested, what="the request to be recorded")
        assert len(bridge.server.requests_for(job_id)) == 1
        await wait_until(lambda: bridge.statuses(job_id), what="analyzing")
        assert bridge.statuses(job_id) == [("analyzing", 51)]
