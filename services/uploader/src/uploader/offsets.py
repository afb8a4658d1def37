"""Which offset is safe to commit on an ``audio.upload`` partition.

Jobs interleave on a partition, and a job's bytes are durable only once its multipart
upload is complete. So the committed offset may pass a message only when every job
that began before it is finished: it is the start offset of the earliest job still
open on that partition, or just past the last processed message when none is open.
After a crash, consumption resumes at the earliest unfinished job's ``started`` and
rebuilds it; messages of jobs already finished are recognised and skipped.
"""

from collections import defaultdict
from collections.abc import Hashable


class CommitTracker:
    def __init__(self) -> None:
        self._open: dict[Hashable, dict[str, int]] = defaultdict(dict)
        self._next: dict[Hashable, int] = {}

    def opened(self, partition: Hashable, job_id: str, offset: int) -> None:
        self._open[partition].setdefault(job_id, offset)

    def closed(self, partition: Hashable, job_id: str) -> None:
        self._open[partition].pop(job_id, None)

    def processed(self, partition: Hashable, offset: int) -> None:
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def safe_offset(self, partition: Hashable) -> int | None:
        """The offset to commit, or None when nothing was processed yet."""
        open_jobs = self._open.get(partition)
        if open_jobs:
            return min(open_jobs.values())
        return self._next.get(partition)

    def forget(self, partition: Hashable) -> list[str]:
        """Drop a revoked partition; the job ids that were open on it."""
        self._next.pop(partition, None)
        return list(self._open.pop(partition, {}))
