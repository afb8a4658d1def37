"""The gateway's view of whether Kafka answers (in memory: the probe is a stub)."""

import pytest

from gateway.reachability import Reachability

pytestmark = pytest.mark.unit


class Probe:
    def __init__(self) -> None:
        self.answers: list[bool | Exception] = []

    async def __call__(self) -> bool:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_failed_probe_marks_kafka_down_and_a_successful_one_up_again() -> None:
    probe = Probe()
    probe.answers = [True, False, True]
    view = Reachability(probe, interval_seconds=1)
    assert await view.check() and view.up
    assert not await view.check()
    assert not view.up and not await view.kafka_connected()
    assert await view.check()
    assert view.up and await view.kafka_connected()


async def test_a_probe_that_raises_counts_as_down() -> None:
    probe = Probe()
    probe.answers = [ConnectionError("refused")]
    view = Reachability(probe, interval_seconds=1)
    assert not await view.check()
    assert not view.up


async def test_a_failed_publish_marks_down_until_a_probe_answers() -> None:
    probe = Probe()
    probe.answers = [True]
    view = Reachability(probe, interval_seconds=1)
    view.mark_down("timeout")
    assert not view.up
    await view.check()
    assert view.up
