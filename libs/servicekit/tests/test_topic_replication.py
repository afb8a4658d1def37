"""How many copies of a topic the services ask for when the settings leave it open."""

import pytest

from servicekit.kafka import bootstrap_list, make_broker, replication_for
from servicekit.settings import ServiceSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("brokers", "expected"), [(1, (1, 1)), (2, (2, 1)), (3, (3, 2)), (5, (3, 2))]
)
def test_three_copies_two_in_sync_where_the_cluster_allows(
    brokers: int, expected: tuple[int, int]
) -> None:
    assert replication_for(brokers) == expected


def test_the_settings_name_them_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().kafka_replication_factor is None
    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", "2")
    settings = ServiceSettings()
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)
    monkeypatch.setenv("KAFKA_REPLICATION_FACTOR", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ServiceSettings()


def test_a_cluster_address_list_reaches_the_broker_as_one_address_each() -> None:
    settings = ServiceSettings(kafka_bootstrap_servers="a:1, b:2,c:3")
    assert bootstrap_list(settings.kafka_bootstrap_servers) == ["a:1", "b:2", "c:3"]
    broker = make_broker(settings, "test", "a test broker")
    assert broker._connection_kwargs["bootstrap_servers"] == ["a:1", "b:2", "c:3"]
