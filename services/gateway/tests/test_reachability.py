"""The gateway's view of whether Kafka answers (in memory: the probe is a stub)."""

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError

from gateway.reachability import KafkaUnreachable, Reachability
from tests.support.waiting import eventually

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


async def test_a_wait_ends_as_soon_as_kafka_is_seen_down() -> None:
    view = Reachability(Probe(), interval_seconds=1)
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(view.unless_down(never, timeout=600))
    await asyncio.sleep(0)
    view.mark_down("probe failed")
    with pytest.raises(KafkaUnreachable):
        await waiting
    assert never.cancelled()


async def test_with_kafka_known_down_a_wait_fails_at_once_and_a_slow_one_times_out() -> None:
    view = Reachability(Probe(), interval_seconds=1)
    loop = asyncio.get_running_loop()
    with pytest.raises(KafkaTimeoutError):
        await view.unless_down(loop.create_future(), timeout=0.01)
    view.mark_down("probe failed")
    with pytest.raises(KafkaUnreachable):
        await view.unless_down(loop.create_future(), timeout=600)


async def test_a_wait_that_completes_gives_its_result() -> None:
    view = Reachability(Probe(), interval_seconds=1)
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    done.set_result("acknowledged")
    assert await view.unless_down(done, timeout=1) == "acknowledged"


async def test_the_probe_loop_ends_when_stopped() -> None:
    probe = Probe()
    probe.answers = [True] * 100
    view = Reachability(probe, interval_seconds=0.01)
    running = asyncio.create_task(view.run())
    await eventually(lambda: len(probe.answers) < 98, within=10, what="two probes")
    view.stop()
    await asyncio.wait_for(running, 5)
    assert running.done() and not running.cancelled()
