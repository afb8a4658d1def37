"""Real gateway and uploader processes on the real broker and S3 server.

Each test gets its own consumer group (starting at the end of ``audio.upload``, so old
uploads are not replayed) and its own bucket, so tests do not see each other's jobs.
"""

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faststream.kafka import KafkaBroker

from contracts import topics
from servicekit.kafka import ensure_topics, make_broker
from servicekit.settings import ServiceSettings
from tests.support.kafka import start_group_at_end

# pytest runs with --import-mode=importlib, which puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))
from uploader_rig import UploadRig


@pytest.fixture
async def rig(infra: dict[str, str], tmp_path: Path) -> AsyncIterator[UploadRig]:
    rig = UploadRig(infra, tmp_path)
    await ensure_topics(infra["KAFKA_BOOTSTRAP_SERVERS"], partitions=6)
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    await start_group_at_end(bootstrap, rig.group, topics.AUDIO_UPLOAD)
    # job.deleted too: the erasures of other tests' jobs are none of this test's business.
    for group in (f"{rig.group}.deletions", rig.gateway_deletions):
        await start_group_at_end(bootstrap, group, topics.JOB_DELETED)
    await rig.status.start()
    try:
        yield rig
    finally:
        for proc in rig.processes:
            proc.stop()
        await rig.status.stop()
        await rig.drop_bucket()


@pytest.fixture
async def producer(rig: UploadRig) -> AsyncIterator[KafkaBroker]:
    """A producer of the test's own, to put messages on the topics as a service would."""
    settings = ServiceSettings(kafka_bootstrap_servers=rig.infra["KAFKA_BOOTSTRAP_SERVERS"])
    broker = make_broker(settings, "tests", "tests")
    await broker.start()
    yield broker
    await broker.stop()
