"""The uploader's integration rig: real gateway and uploader processes on the real
broker and S3 server, each test with its own consumer group and bucket."""

import asyncio
import hashlib
import os
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer
from faststream.kafka import KafkaBroker

from contracts import headers, topics
from servicekit.kafka import ce_headers
from servicekit.s3 import s3_client
from servicekit.settings import S3Settings
from tests.support.kafka import partitions_of
from tests.support.processes import ServiceProcess
from tests.support.s3 import drop_bucket

WAV_HEADER = bytes.fromhex(
    "52494646ffffffff57415645666d74201000000001000100401f0000803e00000200100064617461ffffffff"
)
PART_BYTES = 5 * 1024 * 1024


def audio_bytes(size: int) -> bytes:
    return WAV_HEADER + os.urandom(size - len(WAV_HEADER))


async def send_chunk(
    broker: KafkaBroker, job_id: str, seq: int, data: bytes, offset: int | None = None
) -> None:
    """Chunk ``seq`` of a job on ``audio.upload``, as the gateway sends it (with
    ``ce_uploadoffset``, its byte ``offset``, for a resumable upload)."""
    hdrs = ce_headers(
        "audiopipe.upload.chunk", f"{job_id}:chunk:{seq}", "tests", job_id, headers.OCTET_STREAM
    )
    hdrs[headers.SEQUENCE] = str(seq)
    if offset is not None:
        hdrs[headers.UPLOAD_OFFSET] = str(offset)
    await broker.publish(data, topics.AUDIO_UPLOAD, key=job_id.encode(), headers=hdrs)


class StatusLog:
    """Every ``job.status`` message from now on: job id → [(status, ce_id)]."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.seen: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.errors: dict[str, str] = {}
        """job id → the error code of its ``failed`` status."""
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        partitions = await partitions_of(self.bootstrap, topics.JOB_STATUS)
        await self.consumer.start()
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for p in partitions:  # resolve the positions now, before anything is produced
            await self.consumer.position(p)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import json

        async for record in self.consumer:
            hdrs = {k: v.decode() for k, v in record.headers}
            body = json.loads(record.value or b"{}")
            self.seen[body.get("job_id", "")].append(
                (str(body.get("status")), hdrs.get(headers.ID, ""))
            )
            if body.get("error"):
                self.errors.setdefault(body.get("job_id", ""), body["error"].get("code"))

    def statuses(self, job_id: str) -> list[str]:
        return [s for s, _ in self.seen.get(job_id, [])]

    def distinct(self, job_id: str, status: str) -> set[str]:
        return {ce for s, ce in self.seen.get(job_id, []) if s == status}

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.consumer.stop()


class UploadRig:
    def __init__(self, infra: dict[str, str], log_dir: Path) -> None:
        self.infra = infra
        self.log_dir = log_dir
        tag = uuid.uuid4().hex[:10]
        self.group = f"uploader-test-{tag}"
        self.gateway_deletions = f"gateway-test-{tag}.deletions"
        self.bucket = f"test-{tag}"
        self.env = {
            **infra,
            "CONSUMER_GROUP": self.group,
            "DELETION_CONSUMER_GROUP": self.gateway_deletions,
            "S3_BUCKET": self.bucket,
            "PART_BYTES": str(PART_BYTES),
            "LOG_LEVEL": "INFO",
        }
        self.processes: list[ServiceProcess] = []
        self.status = StatusLog(infra["KAFKA_BOOTSTRAP_SERVERS"])
        self.s3_settings = S3Settings(
            s3_endpoint_url=infra["S3_ENDPOINT_URL"],
            s3_access_key_id=infra["S3_ACCESS_KEY_ID"],
            s3_secret_access_key=infra["S3_SECRET_ACCESS_KEY"],
            s3_bucket=self.bucket,
        )

    async def service(self, module: str, name: str = "", **env: str) -> ServiceProcess:
        proc = ServiceProcess(module, {**self.env, **env}, self.log_dir, name)
        self.processes.append(proc)
        return await proc.start()

    async def upload(self, gateway: ServiceProcess, data: bytes) -> dict[str, str]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as client:
            answer = await client.post(
                "/tokens/t1/upload-audio", files={"file": ("a.wav", data, "audio/wav")}
            )
        assert answer.status_code == 202, answer.text
        body: dict[str, str] = answer.json()
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        return body

    async def objects(self) -> dict[str, tuple[str, str]]:
        """key → (sha256 of the bytes, sha256 recorded in the metadata)."""
        found = {}
        async with s3_client(self.s3_settings) as s3:
            listing = await s3.list_objects_v2(Bucket=self.bucket)
            for item in listing.get("Contents", []):
                obj = await s3.get_object(Bucket=self.bucket, Key=item["Key"])
                digest = hashlib.sha256()
                async for chunk in obj["Body"].iter_chunks(1 << 20):
                    digest.update(chunk)
                found[item["Key"]] = (digest.hexdigest(), obj["Metadata"].get("sha256", ""))
        return found

    async def keys(self) -> list[str]:
        """The keys of the bucket's objects (listed only, not read)."""
        async with s3_client(self.s3_settings) as s3:
            paginator = s3.get_paginator("list_objects_v2")
            return [
                item["Key"]
                async for page in paginator.paginate(Bucket=self.bucket)
                for item in page.get("Contents", [])
            ]

    async def drop_bucket(self) -> None:
        await drop_bucket(self.s3_settings)

    async def multipart_uploads(self) -> list[str]:
        async with s3_client(self.s3_settings) as s3:
            listing = await s3.list_multipart_uploads(Bucket=self.bucket)
            return [u["Key"] for u in listing.get("Uploads", [])]
