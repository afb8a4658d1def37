"""What the chaos tests do to a stack and how they read what it did: uploads, the
topics read from the beginning, the bucket."""

import asyncio
import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import ConsumerRecord

from contracts import headers, topics
from servicekit.s3 import s3_client
from servicekit.settings import S3Settings
from tests.support.audio import sine_wav
from tests.support.kafka import read_topic

FINAL = ("completed", "failed")
# An upload that meets an outage may wait for the producer's retries; beyond this the
# client gives up, and that counts as a failure of the test, not as a refusal.
UPLOAD_TIMEOUT_SECONDS = 120.0
# How long a client keeps sending refused uploads again: an outage longer than this is
# a recovery that did not happen.
REFUSED_FOR_SECONDS = 180.0


@dataclass(frozen=True)
class Accepted:
    """An upload that got its 202: a promise (docs/architecture.md §5.1)."""

    job_id: str
    sha256: str
    size: int
    seconds: float
    access_token: str


@dataclass
class Load:
    accepted: list[Accepted] = field(default_factory=list)
    # Status codes of uploads that were refused (503 while a dependency is down).
    refused: list[int] = field(default_factory=list)


def audio_for(index: int, salt: int) -> tuple[bytes, float]:
    """A distinct WAV per upload (its own duration, so a mixed-up result shows)."""
    seconds = round(1.0 + 0.1 * index, 2)
    return sine_wav(seconds, frequency=220.0 + salt + 10 * index), seconds


async def upload(client: httpx.AsyncClient, data: bytes, name: str) -> httpx.Response:
    return await client.post(
        "/tokens/chaos/upload-audio",
        files={"file": (name, data, "audio/wav")},
        timeout=UPLOAD_TIMEOUT_SECONDS,
    )


async def run_uploads(
    base_url: str,
    count: int,
    *,
    salt: int,
    concurrency: int = 2,
    on_accepted: Callable[[int], Awaitable[None]] | None = None,
    retry_refused: bool = True,
) -> Load:
    """``count`` accepted uploads (or ``count`` attempts, without ``retry_refused``).

    A 503 is the answer the gateway owes while Kafka cannot take the bytes; a client
    tries again, so with ``retry_refused`` a refused upload is sent again after a pause.
    Any other answer fails the run."""
    load = Load()
    give_up = time.monotonic() + REFUSED_FOR_SECONDS
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            data, seconds = audio_for(index, salt)
            while True:
                response = await upload(client, data, f"chaos-{salt}-{index}.wav")
                if response.status_code == 202:
                    body = response.json()
                    assert body["sha256"] == hashlib.sha256(data).hexdigest()
                    load.accepted.append(
                        Accepted(
                            body["job_id"], body["sha256"], len(data), seconds, body["access_token"]
                        )
                    )
                    if on_accepted is not None:
                        await on_accepted(len(load.accepted))
                    break
                assert response.status_code == 503, (response.status_code, response.text)
                assert response.json()["error"]["code"], response.text
                load.refused.append(response.status_code)
                if not retry_refused:
                    break
                assert time.monotonic() < give_up, f"still refused after {REFUSED_FOR_SECONDS} s"
                await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=base_url) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return load


def ce_id(record: ConsumerRecord[bytes, bytes]) -> str:
    return str(dict((k, v.decode()) for k, v in record.headers)[headers.ID])


@dataclass
class Finals:
    """The final statuses on job.status, per job: (ce_id, status, event) of each record."""

    by_job: dict[str, list[tuple[str, str, dict[str, Any]]]]

    def distinct(self, job_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """One entry per distinct event (ce_id): a redelivered record names the same
        event, and every consumer drops it by its ce_id (docs/architecture.md §4)."""
        return {cid: (status, event) for cid, status, event in self.by_job.get(job_id, [])}


async def final_statuses(bootstrap: str) -> Finals:
    by_job: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for record in await read_topic(bootstrap, topics.JOB_STATUS):
        event = json.loads(record.value or b"{}")
        if event.get("status") in FINAL:
            by_job[event["job_id"]].append((ce_id(record), event["status"], event))
    return Finals(dict(by_job))


async def stored_events(bootstrap: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """audio.stored per job: (ce_id, event) of each record."""
    by_job: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for record in await read_topic(bootstrap, topics.AUDIO_STORED):
        event = json.loads(record.value or b"{}")
        by_job[event["job_id"]].append((ce_id(record), event))
    return dict(by_job)


def s3_settings(env: dict[str, str]) -> S3Settings:
    return S3Settings(
        s3_endpoint_url=env["S3_ENDPOINT_URL"],
        s3_access_key_id=env["S3_ACCESS_KEY_ID"],
        s3_secret_access_key=env["S3_SECRET_ACCESS_KEY"],
    )


@dataclass(frozen=True)
class Bucket:
    # key -> (size, sha256 recorded on the object)
    objects: dict[str, tuple[int, str]]
    open_uploads: list[str]
    # Keys listed more than once (there must be none).
    repeated: list[str]


async def bucket_contents(env: dict[str, str]) -> Bucket:
    settings = s3_settings(env)
    async with s3_client(settings) as s3:
        keys: list[tuple[str, int]] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket):
            keys.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
        objects: dict[str, tuple[int, str]] = {}
        for key, size in keys:
            head = await s3.head_object(Bucket=settings.s3_bucket, Key=key)
            objects[key] = (size, head["Metadata"].get("sha256", ""))
        uploads = await s3.list_multipart_uploads(Bucket=settings.s3_bucket)
        open_uploads = [u["Key"] for u in uploads.get("Uploads", [])]
    repeated = [k for k, n in Counter(k for k, _ in keys).items() if n > 1]
    return Bucket(objects, open_uploads, repeated)
