"""Topic configs given at creation (servicekit.kafka.ensure_topics, retention_configs):
a new topic gets them, its dead-letter twin only when named, and a topic that exists is
left as it is. Against the real broker."""

import uuid
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from servicekit.kafka import ensure_topics, retention_configs

pytestmark = pytest.mark.integration


async def configs_of(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answer: Any  # DescribeConfigs response: its fields are not typed
        (answer,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {entry[0]: entry[1] for entry in answer.resources[0][4]}
    finally:
        await admin.close()


@pytest.mark.unit
def test_segments_roll_often_enough_for_the_retention_to_bound_a_records_life() -> None:
    assert retention_configs(2 * 24 * 3600) == {
        "retention.ms": str(2 * 24 * 3600 * 1000),
        "segment.ms": str(3600 * 1000),  # at most an hour
    }
    assert retention_configs(1800) == {"retention.ms": "1800000", "segment.ms": "450000"}


async def test_a_new_topic_gets_its_configs_and_an_existing_one_keeps_its_own(
    infra: dict[str, str],
) -> None:
    bootstrap = infra["KAFKA_BOOTSTRAP_SERVERS"]
    topic = f"configs-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, 1, [topic], configs={topic: retention_configs(7200)})
    created = await configs_of(bootstrap, topic)
    assert (created["retention.ms"], created["segment.ms"]) == ("7200000", "1800000")
    assert created["max.message.bytes"] != "1048588"  # the services' own, not the default
    dead = await configs_of(bootstrap, f"{topic}.dlq")
    assert dead["retention.ms"] != "7200000"  # not named: the broker's default

    await ensure_topics(bootstrap, 1, [topic], configs={topic: retention_configs(60)})
    assert (await configs_of(bootstrap, topic))["retention.ms"] == "7200000"
