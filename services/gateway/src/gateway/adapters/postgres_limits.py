"""The fair-use counts in PostgreSQL, shared by every gateway replica (docs/architecture.md
§6): :class:`gateway.ports.Quota` over asyncpg, in the gateway's schema.

- ``client_rates``: each client's GCRA timestamp (one row per client that uploaded).
- ``client_days``: bytes each client sent per UTC day.
- ``upload_leases``: what is open now. A **body** lease (``upload``: a one-shot upload;
  ``append``: a body sent to a resumable upload) lives while its request body is being
  received; its replica renews it (``holder``, ``expires_at``), so a killed replica's
  leases lapse after ``lease_seconds``. A **resumable** lease names its upload
  (``job_id``) and counts as open for as long as the upload's row in ``uploads`` is
  open (the upload store's table, same schema), or, before that row exists, until it
  lapses.

An admission reads the counts and writes its lease in one transaction under one
advisory lock, so two replicas cannot both let in the last allowed upload. The
counting is ours rather than a library's: the well-kept ones (``limits``) keep their
counters in Redis, Memcached or MongoDB, none of which this stack runs, while the
gateway already has PostgreSQL; it is one short transaction per upload.
"""

import logging
import uuid
from datetime import datetime
from typing import TypeAlias

import asyncpg

from gateway.limits import FairUse, Refused, Usage, judge_bytes, judge_upload, next_rate_tat
from servicekit.postgres import PostgresResource, locked, unavailable_on_outage
from servicekit.settings import DatabaseSettings

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.client_rates (
    client_key text PRIMARY KEY,
    tat timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.client_days (
    client_key text NOT NULL,
    day date NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (client_key, day)
);
CREATE TABLE IF NOT EXISTS {schema}.upload_leases (
    lease_id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('upload', 'append', 'resumable')),
    client_key text NOT NULL,
    job_id uuid,
    reserved_bytes bigint NOT NULL DEFAULT 0,
    holder uuid,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_leases_client ON {schema}.upload_leases (client_key);
CREATE INDEX IF NOT EXISTS upload_leases_job ON {schema}.upload_leases (job_id)
    WHERE kind = 'resumable';
"""

Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

_USAGE = """
SELECT now() AS now,
       (SELECT tat FROM {s}.client_rates WHERE client_key = $1) AS tat,
       (SELECT count(*) FROM {s}.upload_leases l
         WHERE l.client_key = $1 AND (
               (l.kind = 'upload' AND l.expires_at > now())
            OR (l.kind = 'resumable' AND (
                    EXISTS (SELECT 1 FROM {s}.uploads u
                             WHERE u.job_id = l.job_id AND u.state = 'open')
                 OR (l.expires_at > now() AND NOT EXISTS (
                         SELECT 1 FROM {s}.uploads u WHERE u.job_id = l.job_id)))))) AS open,
       coalesce((SELECT bytes FROM {s}.client_days
                  WHERE client_key = $1 AND day = (now() AT TIME ZONE 'UTC')::date), 0) AS today,
       (SELECT coalesce(sum(reserved_bytes), 0) FROM {s}.upload_leases
         WHERE kind IN ('upload', 'append') AND expires_at > now()) AS in_flight
"""


# What an admission writes, as one statement (each round trip is on the path to the
# 202): the client's next GCRA time, the day's charge, the resumable upload's own lease
# and the body's lease.
_ADMIT = """
WITH rate AS (
    INSERT INTO {s}.client_rates (client_key, tat)
    SELECT $1, $2::timestamptz WHERE $2::timestamptz IS NOT NULL
    ON CONFLICT (client_key) DO UPDATE SET tat = EXCLUDED.tat
), charge AS (
    INSERT INTO {s}.client_days (client_key, day, bytes)
    SELECT $1, (now() AT TIME ZONE 'UTC')::date, $3::bigint WHERE $3::bigint > 0
    ON CONFLICT (client_key, day) DO UPDATE SET bytes = {s}.client_days.bytes + EXCLUDED.bytes
), upload AS (
    INSERT INTO {s}.upload_leases
        (lease_id, kind, client_key, job_id, reserved_bytes, holder, expires_at)
    SELECT gen_random_uuid(), 'resumable', $1, $7::uuid, $8::bigint, NULL,
           now() + $10 * interval '1 second'
    WHERE $7::uuid IS NOT NULL
)
INSERT INTO {s}.upload_leases
    (lease_id, kind, client_key, job_id, reserved_bytes, holder, expires_at)
VALUES ($6, $4, $1, NULL, $5, $9, now() + $10 * interval '1 second')
"""

_RELEASE = """
WITH gone AS (DELETE FROM {s}.upload_leases WHERE lease_id = $1 RETURNING client_key)
INSERT INTO {s}.client_days (client_key, day, bytes)
SELECT client_key, (now() AT TIME ZONE 'UTC')::date, $2::bigint FROM gone WHERE $2::bigint > 0
ON CONFLICT (client_key, day) DO UPDATE SET bytes = {s}.client_days.bytes + EXCLUDED.bytes
"""


class PostgresQuota(PostgresResource):
    """:class:`gateway.ports.Quota`. ``holder`` names this replica's body leases; only
    those it still holds (``_held``) are renewed, so one whose release failed lapses."""

    ddl = _SCHEMA

    def __init__(
        self, settings: DatabaseSettings, rules: FairUse, lease_seconds: float = 60.0
    ) -> None:
        super().__init__(settings, max_size=4)
        self.rules = rules
        self.holder = uuid.uuid4()
        self._lease_seconds = lease_seconds
        self._held: set[uuid.UUID] = set()
        self._usage = _USAGE.format(s=self.schema)
        self._admit = _ADMIT.format(s=self.schema)
        self._release_sql = _RELEASE.format(s=self.schema)

    @unavailable_on_outage
    async def admit_upload(
        self,
        client: str,
        size: int | None,
        body_bytes: int | None,
        resumable_job: str | None = None,
    ) -> str:
        body = body_bytes or 0
        # One lock for every admission: they are short, and the global bound needs them
        # serial.
        async with self._pool.acquire() as conn, locked(conn, [f"{self.schema}.limits"]):
            usage = await self._read(conn, client)
            refusal = judge_upload(self.rules, usage, size or body)
            if refusal is not None:
                raise Refused(refusal)
            # A declared size is charged at once; else each body as it comes.
            kind = "upload" if resumable_job is None else "append"
            lease = await self._write(
                conn, client, next_rate_tat(self.rules, usage), size or body, kind, body,
                resumable_job, size or 0,
            )  # fmt: skip
        return self._hold(lease)

    @unavailable_on_outage
    async def admit_append(self, job_id: str, client: str, body_bytes: int | None) -> str:
        body = body_bytes or 0
        # One lock for every admission: they are short, and the global bound needs them
        # serial.
        async with self._pool.acquire() as conn, locked(conn, [f"{self.schema}.limits"]):
            upload = await conn.fetchrow(
                f"""SELECT client_key, reserved_bytes FROM {self.schema}.upload_leases
                    WHERE job_id = $1 AND kind = 'resumable'""",
                uuid.UUID(job_id),
            )
            client = upload["client_key"] if upload else client
            charged_at_creation = bool(upload and upload["reserved_bytes"])
            refusal = judge_bytes(
                self.rules, await self._read(conn, client), 0 if charged_at_creation else body
            )
            if refusal is not None:
                raise Refused(refusal)
            charge = 0 if charged_at_creation else body
            lease = await self._write(conn, client, None, charge, "append", body, None, 0)
        return self._hold(lease)

    def _hold(self, lease: uuid.UUID) -> str:
        """Renewed from now on: once its transaction committed."""
        self._held.add(lease)
        return str(lease)

    async def release(self, lease_id: str, undeclared_bytes: int = 0) -> None:
        key = uuid.UUID(lease_id)
        self._held.discard(key)
        try:
            await self._release(key, undeclared_bytes)
        except Exception:
            log.warning("lease %s not released; it lapses by itself", lease_id, exc_info=True)

    @unavailable_on_outage
    async def _release(self, lease_id: uuid.UUID, undeclared_bytes: int) -> None:
        await self._pool.execute(self._release_sql, lease_id, undeclared_bytes)

    @unavailable_on_outage
    async def renew(self) -> None:
        s = self.schema
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"""UPDATE {s}.upload_leases SET expires_at = now() + $2 * interval '1 second'
                    WHERE lease_id = ANY($1::uuid[])""",
                list(self._held),
                self._lease_seconds,
            )
            await conn.execute(
                f"""DELETE FROM {s}.upload_leases l
                    WHERE (l.kind <> 'resumable' AND l.expires_at < now())
                       OR (l.kind = 'resumable' AND EXISTS (
                               SELECT 1 FROM {s}.uploads u
                                WHERE u.job_id = l.job_id AND u.state <> 'open'))
                       OR (l.kind = 'resumable' AND l.expires_at < now() AND NOT EXISTS (
                               SELECT 1 FROM {s}.uploads u WHERE u.job_id = l.job_id))"""
            )
            await conn.execute(f"DELETE FROM {s}.client_rates WHERE tat < now()")
            await conn.execute(
                f"""DELETE FROM {s}.client_days
                    WHERE day < (now() AT TIME ZONE 'UTC')::date - 1"""
            )

    @unavailable_on_outage
    async def forget(self, job_id: str) -> None:
        await self._pool.execute(
            f"DELETE FROM {self.schema}.upload_leases WHERE job_id = $1", uuid.UUID(job_id)
        )

    @unavailable_on_outage
    async def usage_of(self, client: str) -> Usage:
        """What ``client`` and everyone use now (for tests and operators)."""
        async with self._pool.acquire() as conn:
            return await self._read(conn, client)

    async def _read(self, conn: "Connection", client: str) -> Usage:
        row = await conn.fetchrow(self._usage, client)
        assert row is not None
        return Usage(
            now=row["now"],
            rate_tat=row["tat"],
            open_uploads=int(row["open"]),
            bytes_today=int(row["today"]),
            bytes_in_flight=int(row["in_flight"]),
        )

    async def _write(
        self,
        conn: "Connection",
        client: str,
        tat: datetime | None,
        charge: int,
        kind: str,
        body: int,
        resumable_job: str | None,
        size: int,
    ) -> uuid.UUID:
        lease_id = uuid.uuid4()
        await conn.execute(
            self._admit,
            client,
            tat,
            charge,
            kind,
            body,
            lease_id,
            uuid.UUID(resumable_job) if resumable_job else None,
            size,
            self.holder,
            self._lease_seconds,
        )
        return lease_id
