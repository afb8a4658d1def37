"""Fair use (docs/architecture.md §6): how much one client may upload, and all of them.

Every limit is keyed on the client: the JWT's subject when uploads are authenticated,
else the client address the edge saw (``client_key``). Per client: a rate of new
uploads (GCRA, a token bucket kept as one timestamp: ``rate_per_minute`` on average,
``burst`` at once), a number of uploads open at once, and bytes per UTC day; for all
clients together, a bound on the bytes of request bodies being received. The counts
live in PostgreSQL so that they hold across gateway replicas
(:class:`gateway.adapters.postgres_limits.PostgresQuota`); what is decided from them is
here, pure. A refusal is ``429`` with ``Retry-After``, decided before the body is read,
and changes nothing.
"""

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request

from gateway.ports import Quota
from servicekit.http import ApiError, client_address

log = logging.getLogger(__name__)

RETRY_OPEN_SECONDS = 10
"""When to try again after a refusal that only the end of another upload lifts."""


@dataclass(frozen=True)
class FairUse:
    """The limits; 0 turns one off."""

    rate_per_minute: float = 30.0
    burst: int = 10
    open_per_client: int = 4
    bytes_per_day: int = 4 * 1024**3
    bytes_in_flight: int = 8 * 1024**3

    @property
    def off(self) -> bool:
        """Every limit turned off: nothing to count, no database to ask."""
        return not (
            self.rate_per_minute
            or self.open_per_client
            or self.bytes_per_day
            or self.bytes_in_flight
        )

    @property
    def interval(self) -> timedelta:
        """GCRA's emission interval: the time one upload uses up."""
        return timedelta(minutes=1) / self.rate_per_minute

    @property
    def tolerance(self) -> timedelta:
        """GCRA's tolerance: how far ahead of ``now`` the bucket may run (the burst)."""
        return self.interval * (self.burst - 1)


@dataclass(frozen=True)
class Usage:
    """What one client and everyone are using, read under the quota's lock."""

    now: datetime
    rate_tat: datetime | None
    """The client's theoretical arrival time (GCRA), None when it never uploaded."""
    open_uploads: int
    bytes_today: int
    bytes_in_flight: int


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    retry_after: int


class Refused(ApiError):
    """The quota refused a request: a 429 with ``Retry-After`` in the one error shape;
    :attr:`refusal` says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(
            429, refusal.code, refusal.message, {"Retry-After": str(refusal.retry_after)}
        )
        self.refusal = refusal


def next_rate_tat(rules: FairUse, usage: Usage) -> datetime | None:
    """The client's next theoretical arrival time if a new upload is let in."""
    if not rules.rate_per_minute:
        return None
    return max(usage.rate_tat or usage.now, usage.now) + rules.interval


def judge_upload(rules: FairUse, usage: Usage, declared_bytes: int) -> Refusal | None:
    """Whether a new upload of ``declared_bytes`` (0 when not declared) may start."""
    tat = next_rate_tat(rules, usage)
    if tat is not None and tat - rules.interval - usage.now > rules.tolerance:
        wait = tat - rules.interval - rules.tolerance - usage.now
        return Refusal(
            "too_many_uploads",
            f"more than {rules.burst} new uploads at once or {rules.rate_per_minute:g} a "
            "minute from this client; retry later",
            _seconds(wait),
        )
    if rules.open_per_client and usage.open_uploads >= rules.open_per_client:
        return Refusal(
            "too_many_open_uploads",
            f"this client has {usage.open_uploads} uploads open, the most allowed at once; "
            "finish or cancel one first",
            RETRY_OPEN_SECONDS,
        )
    return judge_bytes(rules, usage, declared_bytes)


def judge_bytes(rules: FairUse, usage: Usage, declared_bytes: int) -> Refusal | None:
    """Whether a request body of ``declared_bytes`` may be received now (a new upload,
    or an append to an open one)."""
    if rules.bytes_per_day:
        over = usage.bytes_today + declared_bytes > rules.bytes_per_day
        if over or usage.bytes_today >= rules.bytes_per_day:
            midnight = (usage.now + timedelta(days=1)).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            return Refusal(
                "daily_bytes_exceeded",
                f"this client may upload {rules.bytes_per_day} bytes a day (UTC); "
                f"{usage.bytes_today} are used",
                _seconds(midnight - usage.now),
            )
    if rules.bytes_in_flight and usage.bytes_in_flight + declared_bytes > rules.bytes_in_flight:
        return Refusal(
            "server_busy",
            "the server is receiving as much as it takes at once; retry shortly",
            RETRY_OPEN_SECONDS,
        )
    return None


def _seconds(delta: timedelta) -> int:
    return max(1, math.ceil(delta.total_seconds()))


def client_key(request: Request, owner: str | None) -> str:
    """Whom the limits count a request against: ``sub:<owner>`` for an authenticated
    upload, else ``addr:<address>`` (``servicekit.http.client_address``: the address a
    trusted proxy saw, an IPv6 client by its /64)."""
    if owner is not None:
        return f"sub:{owner}"
    return f"addr:{client_address(request.scope) or 'unknown'}"


class NoQuota:
    """:class:`gateway.ports.Quota` when every limit is off (``FairUse.off``): lets
    everything in and asks no database, so a one-shot upload needs none."""

    async def admit_upload(
        self,
        client: str,
        size: int | None,
        body_bytes: int | None,
        resumable_job: str | None = None,
    ) -> str:
        return ""

    async def admit_append(self, job_id: str, client: str, body_bytes: int | None) -> str:
        return ""

    async def release(self, lease_id: str, undeclared_bytes: int = 0) -> None:
        pass

    async def renew(self) -> None:
        pass

    async def forget(self, job_id: str) -> None:
        pass


async def renew_forever(quota: Quota, every_seconds: float) -> None:
    """Keep this replica's uploads counted while they last (docs/architecture.md §6)."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            await quota.renew()
        except Exception:
            log.warning("could not renew the uploads' leases", exc_info=True)
