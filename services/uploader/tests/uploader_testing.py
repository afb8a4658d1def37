"""Fakes of the uploader's ports (uploader.ports), for unit tests of its rules and
handler. They keep what they were given in plain dicts and lists to assert on."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from contracts import AudioStored, JobDeleted, JobStatusChanged

PART = 10


class FakeStore:
    def __init__(self) -> None:
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.aborted: list[str] = []
        self.puts: list[str] = []
        self.keys: dict[str, str] = {}
        """upload id → its key"""
        self.initiated: dict[str, datetime] = {}
        self.modified: dict[str, datetime] = {}
        """key → when the object was stored"""

    async def start(self, key: str, content_type: str) -> str:
        upload_id = f"u{len(self.keys)}"
        self.uploads[upload_id] = {}
        self.keys[upload_id] = key
        self.initiated[upload_id] = datetime.now(UTC)
        return upload_id

    async def put_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> str:
        self.uploads[upload_id][number] = bytes(data)
        return f"etag{number}"

    async def complete(self, key, upload_id, etags, metadata, content_type) -> None:
        parts = self.uploads.pop(upload_id)
        assert all(len(parts[n]) >= PART for n in range(1, len(parts)))
        self.objects[key] = (b"".join(parts[n] for n in sorted(parts)), metadata)
        self.modified[key] = datetime.now(UTC)

    async def put(
        self, key: str, data: bytes | bytearray, metadata: dict[str, str], content_type: str
    ) -> None:
        self.objects[key] = (bytes(data), metadata)
        self.modified[key] = datetime.now(UTC)
        self.puts.append(key)

    async def abort(self, key: str, upload_id: str) -> None:
        self.uploads.pop(upload_id, None)
        self.aborted.append(upload_id)

    async def stored_sha256(self, key: str) -> str | None:
        obj = self.objects.get(key)
        return obj[1]["sha256"] if obj else None

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def unfinished(self, prefix: str) -> list[tuple[str, str, datetime]]:
        return [
            (self.keys[upload_id], upload_id, self.initiated[upload_id])
            for upload_id in self.uploads
            if self.keys[upload_id].startswith(prefix)
        ]

    async def abort_all(self, key: str) -> int:
        mine = [u for u in self.uploads if self.keys.get(u) == key]
        for upload_id in mine:
            await self.abort(key, upload_id)
        return len(mine)

    async def stored_before(self, prefix: str, cutoff: datetime):
        for key in list(self.objects):
            if key.startswith(prefix) and self.modified.get(key, cutoff) < cutoff:
                yield key


class FakeEvents:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.dead: list[tuple[str, str]] = []

    async def stored(self, event: AudioStored) -> None:
        self.events.append((f"{event.job_id}:stored", event))

    async def status(self, event: JobStatusChanged, ce_id: str) -> None:
        self.events.append((ce_id, event))

    async def deleted(self, event: JobDeleted) -> None:
        self.events.append((f"{event.job_id}:deleted:{event.erase}", event))

    async def dead_letter(
        self, topic: str, key: bytes | None, value: bytes, headers: dict[str, str], reason: str
    ) -> None:
        self.dead.append((topic, reason))

    def statuses(self) -> list[str]:
        return [e.status for _, e in self.events if isinstance(e, JobStatusChanged)]


class FakeCheckpoints:
    """uploader.ports.Database in memory: checkpoints, tombstones, the sweep lock."""

    def __init__(self) -> None:
        from uploader.ports import Checkpoint

        self.saved: dict[str, Checkpoint] = {}
        self.deleted_jobs: set[str] = set()
        """Tombstones (this fake is uploader.ports.Tombstones too)."""

    async def save(self, checkpoint) -> bool:
        if checkpoint.started.job_id in self.deleted_jobs:
            return False
        self.saved[checkpoint.started.job_id] = checkpoint
        return True

    async def load(self, job_id: str):
        return self.saved.get(job_id)

    async def delete(self, job_id: str) -> None:
        self.saved.pop(job_id, None)

    async def uploads(self) -> dict[str, str]:
        return {c.upload_id: job_id for job_id, c in self.saved.items()}

    async def record(self, job_id: str) -> None:
        self.deleted_jobs.add(job_id)

    async def deleted(self, job_id: str) -> bool:
        return job_id in self.deleted_jobs

    async def prune(self, older_than_seconds: float) -> int:
        return 0

    @asynccontextmanager
    async def held(self, name: str) -> AsyncIterator[bool]:
        yield True
