"""The analysis server's own result object reaches SSE and ``GET /jobs`` as it came
(issue 10, item 6): no well-known field added, none dropped, unknown ones kept."""

import asyncio

import pytest
from notifier_testing import PROGRESS, Stream, follow, projected

from contracts import AudioFeatures, JobStatus

pytestmark = pytest.mark.integration

OWN_SHAPE = {
    "duration_s": 2.5,
    "sample_rate": 16000,
    "channels": 1,
    "rms_dbfs": -23.1,
    "labels": ["speech", "noise"],
    "segments": [{"start": 0, "end": 1.5, "label": "speech"}],
}


async def test_a_result_of_its_own_shape_is_served_unchanged(client, publish, job, auth):
    await publish(JobStatus.ANALYZING, 60)
    await publish(JobStatus.COMPLETED, 100, result=AudioFeatures.model_validate(OWN_SHAPE))

    state = await projected(client, job, auth, JobStatus.COMPLETED)
    assert state is not None
    assert state["result"] == OWN_SHAPE
    async with client.stream("GET", PROGRESS.format(job), headers=auth) as response:
        stream = await asyncio.wait_for(follow(response.aiter_lines(), Stream()), 30)
    assert stream.ended
    assert stream.events[-1][1]["result"] == OWN_SHAPE
