"""How many progress streams are open, per process, per job and per client address,
and the caps on them (docs/architecture.md §9, issue 19).

One client must not starve the others: a job's token or one address could otherwise
take every stream the process carries, and a stranger's stream would meet the
process's 503. So a job has at most ``SSE_MAX_STREAMS_PER_JOB`` open streams (a
person's tabs), a client address at most ``SSE_MAX_STREAMS_PER_CLIENT``, both refused
with 429 before the process-wide ``SSE_MAX_STREAMS`` (503) is even looked at: a client
over its share hears that it is, not that the server is full.

Decided from the request's head and these counts alone, before any database read, so
that a refusal costs what reading headers costs. The counts are per replica: the edge
spreads streams over the replicas by the fewest open ones, so one client's streams
meet every replica's cap before any one is full (docs/architecture.md §9 says why that
is enough).

A stream holds its slots from its admission to its end, whatever ends it (hang-up,
final event, drain, lifetime, error): :class:`notifier.streams.Stream` releases them
once, and the counts of a job or address that has no stream left are dropped, so
that they cost per job and address with open streams, never per stream or for ever.
"""

from servicekit.http import ApiError
from servicekit.metrics import SSE_STREAMS

RETRY_AFTER = "5"
"""Seconds, for every refusal: a slot frees when one of the holder's streams ends."""


class ClientStreams:
    """The open streams of one client address: one object its streams share (a stream
    keeps a reference, 8 bytes, instead of a string of its own)."""

    __slots__ = ("address", "open")

    def __init__(self, address: str) -> None:
        self.address = address
        self.open = 0


class StreamSlots:
    """Counts open streams per process, job and client address; refuses beyond the caps."""

    def __init__(self, limit: int, per_job: int, per_client: int) -> None:
        self.limit = limit
        self.per_job = per_job
        self.per_client = per_client
        self.open = 0
        self._jobs: dict[str, int] = {}
        self._clients: dict[str, ClientStreams] = {}

    def acquire(self, job_id: str, address: str) -> ClientStreams:
        """A slot for a stream of ``job_id`` from ``address``, or the refusal: 429 over
        the job's or the address's share, else 503 when the process is full. What it
        returns is handed back to :meth:`release`, once."""
        job_open = self._jobs.get(job_id, 0)
        if job_open >= self.per_job:
            raise ApiError(
                429,
                "too_many_job_streams",
                f"this job has {job_open} open progress streams here, the most allowed; "
                "close one (another tab?) or retry later",
                {"Retry-After": RETRY_AFTER},
            )
        client = self._clients.get(address)
        if client is not None and client.open >= self.per_client:
            raise ApiError(
                429,
                "too_many_client_streams",
                f"{client.open} progress streams are open from this address here, the most "
                "allowed; close one or retry later",
                {"Retry-After": RETRY_AFTER},
            )
        if self.open >= self.limit:
            raise ApiError(
                503,
                "too_many_streams",
                "too many open progress streams",
                {"Retry-After": RETRY_AFTER},
            )
        if client is None:
            client = self._clients[address] = ClientStreams(address)
        client.open += 1
        self._jobs[job_id] = job_open + 1
        self.open += 1
        SSE_STREAMS.inc()
        return client

    def release(self, job_id: str, client: ClientStreams) -> None:
        """A stream of ``job_id`` admitted by :meth:`acquire` (which gave ``client``) ended."""
        self.open -= 1
        SSE_STREAMS.dec()
        client.open -= 1
        if not client.open:
            del self._clients[client.address]
        job_open = self._jobs[job_id] - 1
        if job_open:
            self._jobs[job_id] = job_open
        else:
            del self._jobs[job_id]

    def of_job(self, job_id: str) -> int:
        """The open streams of ``job_id``."""
        return self._jobs.get(job_id, 0)

    def of_client(self, address: str) -> int:
        """The open streams from ``address``."""
        client = self._clients.get(address)
        return client.open if client is not None else 0

    def counted(self) -> int:
        """How many jobs and addresses have a count (each has at least one stream)."""
        return len(self._jobs) + len(self._clients)
