"""Abort multipart uploads that nobody will finish (docs/architecture.md §5.4).

A crash, a revoked partition or a lost abort marker can leave a multipart upload
behind; S3 keeps (and bills) its parts until it is aborted. Uploads older than the
configured age that no open job of this process owns are aborted. The age must exceed
the longest upload that another uploader replica may still be working on.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from uploader.ports import ObjectStore, StorageError

log = logging.getLogger(__name__)


async def sweep(
    store: ObjectStore,
    prefix: str,
    older_than: timedelta,
    owned: set[str],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[str]:
    """Abort stale uploads under ``prefix`` except ``owned`` upload ids; the keys aborted."""
    aborted = []
    for key, upload_id, initiated in await store.unfinished(prefix):
        if upload_id in owned or now() - initiated < older_than:
            continue
        await store.abort(key, upload_id)
        aborted.append(key)
    if aborted:
        log.warning("aborted %d abandoned multipart uploads", len(aborted))
    return aborted


async def sweep_forever(
    store: ObjectStore,
    prefix: str,
    older_than: timedelta,
    interval: float,
    owned: Callable[[], Awaitable[set[str]]],
) -> None:
    while True:
        try:
            await sweep(store, prefix, older_than, await owned())
        except StorageError:
            log.warning("sweeping abandoned multipart uploads failed", exc_info=True)
        await asyncio.sleep(interval)
