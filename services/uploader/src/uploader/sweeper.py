"""Abort multipart uploads that nobody will finish (docs/architecture.md §5.4, §8).

A crash, a revoked partition or a lost abort marker can leave a multipart upload
behind; S3 keeps (and bills) its parts until it is aborted. Every interval, on every
replica (aborting is idempotent), uploads under the key prefix are aborted:

- one that no open job of this process owns, older than ``older_than``
  (``STALE_UPLOAD_SECONDS``): it must exceed the longest one-shot upload that another
  replica may still be storing;
- one of a checkpointed resumable upload only past ``resumable_older_than``
  (``UPLOAD_MAX_AGE_SECONDS`` + ``STALE_UPLOAD_SECONDS``): such an upload may legitimately
  wait for its client up to the gateway's maximum age, and its gateway ends it then
  (``upload_expired``); past that and the margin, its end was lost, and its checkpoint
  (which holds its file name and owner) goes with it.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from uploader.ports import ObjectStore, StorageError

log = logging.getLogger(__name__)


async def _forget_nothing(job_id: str) -> None:
    return None


async def sweep(
    store: ObjectStore,
    prefix: str,
    older_than: timedelta,
    owned: set[str],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    *,
    checkpointed: Mapping[str, str] | None = None,
    resumable_older_than: timedelta | None = None,
    forget: Callable[[str], Awaitable[None]] = _forget_nothing,
) -> list[str]:
    """Abort stale uploads under ``prefix``, sparing ``owned`` upload ids and, until
    ``resumable_older_than``, ``checkpointed`` ones (upload id → job id, whose
    checkpoint is ``forget``-ten when its upload is aborted); the keys aborted."""
    checkpointed = checkpointed or {}
    aborted = []
    for key, upload_id, initiated in await store.unfinished(prefix):
        age = now() - initiated
        job_id = checkpointed.get(upload_id)
        if job_id is not None:
            if resumable_older_than is None or age < resumable_older_than:
                continue
        elif upload_id in owned or age < older_than:
            continue
        await store.abort(key, upload_id)
        if job_id is not None:
            await forget(job_id)
        aborted.append(key)
    if aborted:
        log.warning("aborted %d abandoned multipart uploads", len(aborted))
    return aborted


async def sweep_forever(
    store: ObjectStore,
    prefix: str,
    older_than: timedelta,
    interval: float,
    owned: Callable[[], set[str]],
    checkpointed: Callable[[], Awaitable[Mapping[str, str]]],
    resumable_older_than: timedelta,
    forget: Callable[[str], Awaitable[None]],
) -> None:
    while True:
        try:
            await sweep(
                store,
                prefix,
                older_than,
                owned(),
                checkpointed=await checkpointed(),
                resumable_older_than=resumable_older_than,
                forget=forget,
            )
        except StorageError:
            log.warning("sweeping abandoned multipart uploads failed", exc_info=True)
        await asyncio.sleep(interval)
