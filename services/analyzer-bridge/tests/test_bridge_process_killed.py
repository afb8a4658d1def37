"""``kill -9`` of a real bridge process with 20 analyses pending (issue 4's acceptance).

The bridge runs as ``python -m analyzer_bridge``; the reference analysis server runs in
the test, and its webhooks to the bridge are held until the bridge has been killed and
started again. So at the kill every job is requested and none is final, and every
webhook that finishes a job reaches the restarted process with a capability URL the
killed one issued.
"""

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from analyzer_bridge_testing import (
    SIGNING_SECRET,
    EventLog,
    ReferenceServer,
    barrier,
    stored,
    wait_for,
    wait_until,
)

from analyzer_bridge.settings import Settings
from tests.support.inprocess import bound_socket, serving
from tests.support.kafka import publish_event

pytestmark = pytest.mark.integration

JOBS = 20
FINAL = ("completed", "failed")


class HeldWebhooks(httpx.AsyncBaseTransport):
    """Sends requests on, except that those to ``port`` wait until ``released`` is set."""

    def __init__(self, port: int, released: asyncio.Event) -> None:
        self._port = port
        self._released = released
        self._inner = httpx.AsyncHTTPTransport()
        self.held = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.port == self._port and not self._released.is_set():
            self.held += 1
            await self._released.wait()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def bridge_env(values: dict[str, str]) -> dict[str, str]:
    """This process's environment without any bridge setting, plus ``values``."""
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names} | values


@contextlib.asynccontextmanager
async def bridge_process(
    env: dict[str, str], url: str, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m analyzer_bridge``, once it answers ``/readyz``; stopped afterwards."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "analyzer_bridge", env=env, stdout=out, stderr=out
        )
    try:

        async def ready() -> bool:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"the bridge exited:\n{output[-3000:]}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{url}/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        # Generous: importing the service takes seconds on a busy shared machine.
        await wait_for(ready, 120, "the bridge to be ready")
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_killed_bridge_restarts_and_brings_20_pending_analyses_to_one_final_state(
    infra, namespace, producer, stored_audio, db, tmp_path
):
    sock = bound_socket()
    port = sock.getsockname()[1]
    sock.close()  # the bridge processes bind it; both use it, as the webhook URLs name it
    url = f"http://127.0.0.1:{port}"
    released = asyncio.Event()
    held = HeldWebhooks(port, released)
    table = f"{namespace.name}.analyses"
    jobs = [str(uuid.uuid4()) for _ in range(JOBS)]

    async def states() -> dict[str, int]:
        try:
            rows = await db.fetch(f"SELECT state, count(*) AS n FROM {table} GROUP BY state")
        except asyncpg.UndefinedTableError:  # the first bridge has not created it yet
            return {}
        return {r["state"]: r["n"] for r in rows}

    async with (
        httpx.AsyncClient(transport=held) as outgoing,
        contextlib.AsyncExitStack() as stack,
    ):
        stack.callback(released.set)  # never leave the server's runs waiting
        reference = ReferenceServer(outgoing, max_concurrent_jobs=JOBS, webhook_attempts=20)
        reference.url = await stack.enter_async_context(serving(reference.app, bound_socket()))
        env = bridge_env(
            {
                "KAFKA_BOOTSTRAP_SERVERS": infra["KAFKA_BOOTSTRAP_SERVERS"],
                "KAFKA_TOPIC_PARTITIONS": "1",
                "S3_ENDPOINT_URL": infra["S3_ENDPOINT_URL"],
                "S3_ACCESS_KEY_ID": infra.get("S3_ACCESS_KEY_ID", "audiopipe"),
                "S3_SECRET_ACCESS_KEY": infra.get("S3_SECRET_ACCESS_KEY", "audiopipe-secret"),
                "DATABASE_URL": infra["DATABASE_URL"],
                "DATABASE_SCHEMA": namespace.name,
                "CONSUMER_GROUP": f"{namespace.name}-bridge",
                **{name.upper(): topic for name, topic in namespace.topics.items()},
                "ANALYSIS_SERVER_URL": reference.url,
                "PUBLIC_BASE_URL": url,
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(port),
                "WEBHOOK_SIGNING_SECRET": SIGNING_SECRET,
                "DEADLINE_SWEEP_INTERVAL_SECONDS": "0.2",
                "LOG_LEVEL": "INFO",
            }
        )
        log = tmp_path / "bridge.log"
        status_topic = namespace.topics["job_status_topic"]

        async with bridge_process(env, url, log) as first:
            events = EventLog(
                infra["KAFKA_BOOTSTRAP_SERVERS"],
                [namespace.topics["analysis_result_topic"], status_topic],
            )
            await events.start()
            stack.push_async_callback(events.stop)
            for job_id in jobs:
                await publish_event(
                    producer,
                    namespace.topics["audio_stored_topic"],
                    stored(job_id),
                    source="tests",
                    ce_id=f"{job_id}:stored",
                )
            await wait_for(lambda: _equals(states, {"requested": JOBS}), 60, "20 accepted analyses")
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL

        # Nothing can have moved since: the killed process left 20 analyses pending.
        assert await states() == {"requested": JOBS}
        assert held.held >= 1  # the server's first webhooks are waiting for the bridge

        async with bridge_process(env, url, log):
            released.set()
            await wait_for(lambda: _equals(states, {"completed": JOBS}), 60, "20 completed")

            def finished() -> set[str]:
                return {
                    s.headers["ce_subject"]
                    for s in events.seen
                    if s.topic == status_topic and s.value.get("status") in FINAL
                }

            await wait_until(lambda: finished() >= set(jobs), 30, "20 final job.status events")
            await barrier(producer, events, status_topic)

        for job_id in jobs:
            ends = [s for s in events.of(job_id, status_topic) if s.value["status"] in FINAL]
            # A republish after the restart would carry the same ce_id: still one event.
            assert {s.headers["ce_id"] for s in ends} == {f"{job_id}:status:final"}
            assert {s.value["status"] for s in ends} == {"completed"}
            seen = await reference.job(job_id)
            assert seen["requests"] == 1  # the restart requested nothing again
            assert seen["delivered"]["completed"] == 1  # accepted by the restarted bridge
            assert seen["undelivered"] == 0


async def _equals(states, expected: dict[str, int]) -> bool:
    return bool(await states() == expected)
