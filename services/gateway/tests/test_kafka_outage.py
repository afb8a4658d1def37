"""Kafka down, as an upload sees it (issue 11): a fast 503, and recovery without help;
and what an upload costs it when it is up (issue 21): its produce requests.

The gateway talks to the real broker through a proxy that the test cuts and restores,
so the other tests keep their broker. Nothing here measures time: that the answer
comes before the body is read is shown by the client still holding most of its body.
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import CeType, headers, topics
from gateway.app import create_app
from gateway.settings import Settings
from tests.support.audio import WAV_HEAD, wav_form
from tests.support.inprocess import bound_socket, serving
from tests.support.kafka import topic_ends
from tests.support.kafka_proxy import PRODUCE_API_KEY, KafkaProxy
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024
BOUNDARY = "outage"


@dataclass
class Gateway:
    url: str
    proxy: KafkaProxy
    bootstrap: str


@pytest.fixture
async def gateway(infra: dict[str, str]) -> AsyncIterator[Gateway]:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    proxy = KafkaProxy(bootstrap)
    settings = Settings(
        kafka_bootstrap_servers=await proxy.start(),
        database_url=infra["DATABASE_URL"],
        chunk_bytes=CHUNK,
        kafka_probe_interval_seconds=0.2,
    )
    try:
        async with serving(create_app(settings), bound_socket()) as url:
            try:
                yield Gateway(url, proxy, bootstrap)
            finally:
                await proxy.restore()  # the producer flushes what it holds as it stops
    finally:
        await proxy.close()


def head(token_id: str, content_length: int) -> bytes:
    return (
        f"POST /tokens/{token_id}/upload-audio HTTP/1.1\r\nHost: gateway\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def form(size: int) -> bytes:
    return wav_form(size, BOUNDARY)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], dict[str, Any]]:
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    answer_headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
    body = await reader.readexactly(int(answer_headers["content-length"]))
    return int(status_line.split()[1]), answer_headers, json.loads(body)


async def ready(url: str, expected: int) -> bool:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/readyz")).status_code == expected


async def upload(url: str, token_id: str = "t-ok") -> httpx.Response:
    files = {"file": ("a.wav", WAV_HEAD + b"\0" * 3 * CHUNK, "audio/wav")}
    async with httpx.AsyncClient(timeout=60) as http:
        return await http.post(f"{url}/tokens/{token_id}/upload-audio", files=files)


async def test_with_kafka_known_down_an_upload_is_refused_before_its_body_and_then_recovers(
    gateway: Gateway,
) -> None:
    assert (await upload(gateway.url)).status_code == 202

    await gateway.proxy.cut()
    await eventually(lambda: ready(gateway.url, 503), what="the gateway to see Kafka down")
    body = form(8 * 1024 * 1024)
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    # Headers and the first 16 KiB only: the answer cannot depend on the rest.
    writer.write(head("t-down", len(body)) + body[: 16 * 1024])
    await writer.drain()
    status, answer_headers, answer = await asyncio.wait_for(read_answer(reader), 60)
    writer.close()
    assert status == 503
    assert answer_headers["retry-after"] == "5"
    assert answer["error"]["code"] == "unavailable"

    await gateway.proxy.restore()
    await eventually(lambda: ready(gateway.url, 200), what="the gateway to see Kafka again")
    recovered = await upload(gateway.url)
    assert recovered.status_code == 202, recovered.text
    assert recovered.json()["size"] == len(WAV_HEAD) + 3 * CHUNK


async def messages_of(
    bootstrap: str, token_id: str, start: dict[TopicPartition, int], wanted: str
) -> list[tuple[str, str | None]]:
    """(ce_type, ce_sequence) of the job started with ``token_id``, in partition order,
    once one of them is ``wanted``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        job: str | None = None
        seen: list[tuple[str, str | None]] = []
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    assert record.key is not None and record.value is not None
                    meta = {k: v.decode() for k, v in record.headers}
                    kind = meta.get(headers.TYPE, "")
                    starts_ours = (
                        kind == CeType.UPLOAD_STARTED
                        and json.loads(record.value)["token_id"] == token_id
                    )
                    if job is None and starts_ours:
                        job = record.key.decode()
                    if job is not None and record.key.decode() == job:
                        seen.append((kind, meta.get(headers.SEQUENCE)))
            if any(kind == wanted for kind, _ in seen):
                return seen
    finally:
        await consumer.stop()


async def test_a_one_chunk_upload_is_one_produce_request_and_its_status_another(
    gateway: Gateway,
) -> None:
    # UploadStarted, the chunk and UploadFinished go out as one record batch; the
    # `accepted` status follows once it is acknowledged (docs/architecture.md §5.1).
    start = await topic_ends(gateway.bootstrap, topics.AUDIO_UPLOAD)
    token_id = f"t-{uuid.uuid4().hex[:12]}"
    assert (await upload(gateway.url)).status_code == 202  # metadata known, connected
    before = gateway.proxy.requests[PRODUCE_API_KEY]
    files = {"file": ("a.wav", WAV_HEAD + b"\0" * (CHUNK // 2), "audio/wav")}
    async with httpx.AsyncClient(timeout=60) as http:
        answer = await http.post(f"{gateway.url}/tokens/{token_id}/upload-audio", files=files)
    assert answer.status_code == 202, answer.text
    seen = await asyncio.wait_for(
        messages_of(gateway.bootstrap, token_id, start, CeType.UPLOAD_FINISHED), 60
    )
    assert seen == [
        (CeType.UPLOAD_STARTED, None),
        (CeType.UPLOAD_CHUNK, "0"),
        (CeType.UPLOAD_FINISHED, None),
    ]
    await eventually(
        lambda: gateway.proxy.requests[PRODUCE_API_KEY] - before >= 2,
        what="the accepted status's produce request",
    )
    assert gateway.proxy.requests[PRODUCE_API_KEY] - before == 2


async def test_an_upload_cut_off_by_a_sudden_outage_is_503_and_aborted_once_kafka_returns(
    gateway: Gateway,
) -> None:
    start = await topic_ends(gateway.bootstrap, topics.AUDIO_UPLOAD)
    token_id = f"t-{uuid.uuid4().hex[:12]}"

    body = form(64 * CHUNK)
    host, port = gateway.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head(token_id, len(body)) + body[: 4 * CHUNK])
    await writer.drain()
    # The upload is under way in Kafka when the broker goes.
    await asyncio.wait_for(messages_of(gateway.bootstrap, token_id, start, CeType.UPLOAD_CHUNK), 60)
    await gateway.proxy.cut()

    async def send_the_rest() -> None:
        writer.write(body[4 * CHUNK :])
        await writer.drain()

    sending = asyncio.create_task(send_the_rest())
    status, answer_headers, answer = await asyncio.wait_for(read_answer(reader), 60)
    sending.cancel()
    writer.transport.abort()
    assert status == 503
    assert answer_headers["retry-after"] == "5"
    assert answer["error"]["code"] == "unavailable"

    await gateway.proxy.restore()
    seen = await asyncio.wait_for(
        messages_of(gateway.bootstrap, token_id, start, CeType.UPLOAD_ABORTED), 120
    )
    kinds = [kind for kind, _ in seen]
    assert kinds[0] == CeType.UPLOAD_STARTED and kinds[-1] == CeType.UPLOAD_ABORTED
    assert CeType.UPLOAD_FINISHED not in kinds
    # The marker comes after every chunk that made it, and those have no gap.
    chunks = [int(seq) for kind, seq in seen if kind == CeType.UPLOAD_CHUNK and seq]
    assert chunks == list(range(len(chunks)))
    assert kinds.count(CeType.UPLOAD_ABORTED) == 1


async def test_a_gateway_started_while_kafka_is_down_waits_for_it_then_takes_uploads(
    infra: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Kafka down at start (issue 23): the gateway does not exit. It is alive and not
    ready, says what it waits for in /readyz and in its log, refuses uploads with 503,
    and once the broker answers it starts and takes them (servicekit.service,
    docs/architecture.md §15)."""
    proxy = KafkaProxy(infra["KAFKA_BOOTSTRAP_SERVERS"])
    settings = Settings(
        kafka_bootstrap_servers=await proxy.start(),
        database_url=infra["DATABASE_URL"],
        chunk_bytes=CHUNK,
        kafka_probe_interval_seconds=0.2,
        kafka_wait_seconds=2,
        start_retry_max_seconds=1,
    )
    await proxy.cut()
    try:
        async with (
            serving(create_app(settings), bound_socket()) as url,
            httpx.AsyncClient(base_url=url, timeout=20) as http,
        ):
            assert (await http.get("/healthz")).status_code == 200
            waiting = await http.get("/readyz")
            assert waiting.status_code == 503
            assert waiting.json()["error"]["message"].startswith("waiting for Kafka: ")
            assert any(
                r.name == "servicekit.service" and "waiting for Kafka" in r.getMessage()
                for r in caplog.records
            )
            refused = await upload(url)
            assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
            assert refused.json()["error"]["code"] == "unavailable"

            await proxy.restore()
            await eventually(lambda: ready(url, 200), what="the gateway to start")
            accepted = await upload(url)
            assert accepted.status_code == 202, accepted.text
            assert accepted.json()["size"] == len(WAV_HEAD) + 3 * CHUNK
    finally:
        await proxy.close()
