"""A three-broker cluster loses the leader of `audio.upload` (kill -9) during uploads:
every upload that got a 202 is stored once with the right sha256; an upload that meets
the election gets a 503 or succeeds, never a 500 and never a hang.

The cluster is this module's own (KAFKA_BROKERS=3 in a temporary run folder, its own
ports), with the gateway and the uploader, the two services on that path.
"""

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from contracts import topics
from devstack import Settings, Stack
from tests.chaos.jobs import audio_for, bucket_contents, run_uploads, stored_events
from tests.support.ownstack import kill9, own_environ, own_stack
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SHIFT = 400
UPLOADS = 20
APPS = ("gateway", "uploader")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Stack]:
    extra = {"KAFKA_BROKERS": "3"}
    settings = Settings.from_environ(own_environ(SHIFT, extra))
    apps = [spec for spec in settings.apps if spec.name in APPS]
    with own_stack("kafka-cluster", SHIFT, extra, app_specs=apps) as (stack, _):
        yield stack


async def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in described["partitions"]}
    finally:
        await admin.close()


async def test_the_services_create_three_replicas_two_in_sync(cluster: Stack) -> None:
    bootstrap = cluster.env()["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in (*topics.ALL, topics.dead_letter(topics.AUDIO_UPLOAD)):
            (described,) = await admin.describe_topics([name])
            assert {len(p["replicas"]) for p in described["partitions"]} == {3}, name
        answer: Any  # DescribeConfigs response: its fields are not typed
        (answer,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.AUDIO_UPLOAD)]
        )
        configs = {entry[0]: entry[1] for entry in answer.resources[0][4]}
    finally:
        await admin.close()
    assert configs["min.insync.replicas"] == "2"
    assert configs["unclean.leader.election.enable"] == "false"
    # The raw audio is kept as long as a replay needs it, and no longer (docs/scaling.md):
    # the retention the gateway and the uploader create it with (make run's, 30 min).
    retention = int(cluster.env()["AUDIO_UPLOAD_RETENTION_SECONDS"]) * 1000
    assert configs["retention.ms"] == str(retention)
    assert int(configs["segment.ms"]) <= retention // 4


async def test_killing_the_upload_leader_loses_no_accepted_upload(cluster: Stack) -> None:
    env = cluster.env()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    gateway = f"http://127.0.0.1:{cluster.settings.app_port('gateway')}"
    leader = (await _leaders(bootstrap, topics.AUDIO_UPLOAD))[0]
    victim = cluster.settings.kafka_node_name(leader - 1)  # node.id is index + 1
    killed = asyncio.Event()

    async def after(accepted: int) -> None:
        # A few uploads in: the rest are sent, and some are in flight, during the election.
        if accepted == 4 and not killed.is_set():
            killed.set()
            await asyncio.to_thread(kill9, cluster, victim)

    load = await run_uploads(
        gateway, UPLOADS, salt=400, concurrency=4, on_accepted=after, retry_refused=False
    )
    assert killed.is_set()
    assert len(load.accepted) + len(load.refused) == UPLOADS
    assert set(load.refused) <= {503}
    assert len(load.accepted) >= 4

    # A new leader took over every partition the victim led. The admin client may pick
    # the dead node for its first request: ask until the cluster answers without it.
    async def leaders_without_victim() -> dict[int, int] | None:
        try:
            found = await _leaders(bootstrap, topics.AUDIO_UPLOAD)
        except KafkaError:
            return None
        return found if leader not in found.values() else None

    await eventually(leaders_without_victim, within=60, every=0.5, what="a new leader")

    want = {a.job_id: a for a in load.accepted}

    async def all_stored() -> dict[str, list[tuple[str, dict[str, object]]]] | None:
        stored = await stored_events(bootstrap)
        return stored if want.keys() <= stored.keys() else None

    stored = await eventually(all_stored, within=120, every=1.0, what="every 202 stored")
    for job_id, accepted in want.items():
        # Once: one event (a redelivered record would repeat its ce_id, never a new one).
        assert len({cid for cid, _ in stored[job_id]}) == 1, stored[job_id]
        _, event = stored[job_id][0]
        assert event["sha256"] == accepted.sha256
        assert event["size"] == accepted.size
    # What the client sent, byte for byte: the sha256 of the file it computed itself.
    sent = {hashlib.sha256(audio_for(i, 400)[0]).hexdigest() for i in range(UPLOADS)}
    assert {a.sha256 for a in load.accepted} <= sent

    bucket = await bucket_contents(env)
    assert not bucket.repeated
    for job_id, accepted in want.items():
        assert bucket.objects[f"audio/{job_id}"] == (accepted.size, accepted.sha256)
