"""What the uploader keeps in memory for open jobs, against its budget
(docs/architecture.md §5.2, §12).

The bytes of unfinished parts are counted here: the part each open job is filling and
the parts on their way to S3. :class:`uploader.assembly.Assembler` takes bytes before
it holds them and gives them back when it lets them go; when the budget would be
exceeded it lets go of the part being filled of the job that received a chunk least
recently, which reads it back from Kafka when it needs it (:class:`Span`).
"""

from dataclasses import dataclass

from servicekit.metrics import (
    UPLOADER_BUFFERED,
    UPLOADER_BUFFERED_PEAK,
    UPLOADER_EVICTIONS,
    UPLOADER_MEMORY_BUDGET,
)


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``[first, end)`` of a job came from the ``audio.upload`` record at Kafka
    ``offset``, whose value begins at byte ``origin`` of the job (a resumable chunk may
    repeat bytes already held: they are skipped, so ``first`` can lie past ``origin``)."""

    first: int
    end: int
    offset: int
    origin: int


class MemoryBudget:
    """Bytes held, the most ever held, and the limit (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        UPLOADER_MEMORY_BUDGET.set(limit or 0)

    def exceeded_by(self, more: int) -> bool:
        """Whether holding ``more`` bytes now would pass the limit."""
        return self.limit is not None and self.held + more > self.limit

    def take(self, size: int) -> None:
        self.held += size
        if self.held > self.peak:
            self.peak = self.held
            UPLOADER_BUFFERED_PEAK.set(self.peak)
        UPLOADER_BUFFERED.set(self.held)

    def give(self, size: int) -> None:
        self.held -= size
        UPLOADER_BUFFERED.set(self.held)

    @staticmethod
    def evicted() -> None:
        UPLOADER_EVICTIONS.inc()
