"""Which offset is safe to commit on an ``audio.upload`` partition.

Jobs interleave on a partition, and a job's bytes are durable only once its multipart
upload is complete. So the committed offset may pass a message only when every job
that began before it is finished: it is the start offset of the earliest job still
open on that partition, or just past the last processed message when none is open.
After a crash, consumption resumes at the earliest unfinished job's ``started`` and
rebuilds it; messages of jobs already finished are recognised and skipped.

A resumable upload may stay open for hours; holding the partition at its ``started``
would replay hours of other jobs after a crash. Once such a job has a durable
checkpoint (its parts in S3, uploader.ports.Checkpoint), it holds only the first chunk
whose bytes are not in a saved part, or nothing (``holds``, from the assembler), and is
rebuilt from the checkpoint on replay (docs/architecture.md §12).

Replayed jobs are recognised by their object in S3 (a ``HEAD``), which a job that
nobody can have stored yet need not pay for: :class:`AppendedSinceAssignment`.
"""

from collections import defaultdict
from collections.abc import Hashable, Mapping


class CommitTracker:
    def __init__(self) -> None:
        self._open: dict[Hashable, dict[str, int]] = defaultdict(dict)
        self._next: dict[Hashable, int] = {}

    def opened(self, partition: Hashable, job_id: str, offset: int) -> None:
        self._open[partition].setdefault(job_id, offset)

    def closed(self, partition: Hashable, job_id: str) -> None:
        self._open[partition].pop(job_id, None)

    def close_everywhere(self, job_id: str) -> None:
        """The job was deleted: it holds no partition's committed offset any more."""
        for jobs in self._open.values():
            jobs.pop(job_id, None)

    def processed(self, partition: Hashable, offset: int) -> None:
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def safe_offset(
        self, partition: Hashable, holds: Mapping[str, int | None] | None = None
    ) -> int | None:
        """The offset to commit, or None when nothing was processed yet. ``holds``
        overrides the start of checkpointed jobs (None: they hold nothing)."""
        holds = holds or {}
        kept = [holds.get(job_id, start) for job_id, start in self._open.get(partition, {}).items()]
        kept_offsets = [offset for offset in kept if offset is not None]
        processed = self._next.get(partition)
        if kept_offsets:
            return min(kept_offsets)
        return processed

    def forget(self, partition: Hashable) -> list[str]:
        """Drop a revoked partition; the job ids that were open on it."""
        self._next.pop(partition, None)
        return list(self._open.pop(partition, {}))


class AppendedSinceAssignment:
    """Which records of a partition were appended after this consumer was assigned it.

    The first record handled after an assignment came with the partition's end offset
    as the broker saw it then (the consumer's ``highwater``, from a fetch made after the
    assignment); every record at or past it was appended after the previous owner lost
    the partition, so no owner before this one can have handled it: its ``started``
    needs no look in S3 for an object stored already. Records before it may be a replay
    (a crash between storing and committing) and are looked up. A process that still
    holds the partition without knowing it lost it could store such a job at the same
    time: the same bytes under the same key, and a second ``audio.stored`` that its
    consumers take as a redelivery."""

    def __init__(self) -> None:
        self._start: dict[Hashable, int] = {}

    def fresh(self, partition: Hashable, offset: int, highwater: int | None) -> bool:
        """Whether the record at ``offset`` was appended after the assignment; the
        partition's ``highwater`` is what the consumer knows of its end now."""
        start = self._start.get(partition)
        if start is None:
            if highwater is None:
                return False
            start = self._start[partition] = highwater
        return offset >= start

    def forget(self, partition: Hashable) -> None:
        """A revoked partition: its next assignment starts anew."""
        self._start.pop(partition, None)
