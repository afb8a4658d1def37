import uuid

import pytest

from contracts import AudioStored, CeType, JobStatus, JobStatusChanged, headers
from notifier.handlers import parse
from servicekit.kafka import PoisonMessage, ce_headers

pytestmark = pytest.mark.unit

JOB = str(uuid.uuid4())
STATUS = JobStatusChanged(job_id=JOB, status=JobStatus.UPLOADED, progress=50)


def test_status_message_gives_its_ce_id_and_event():
    message_headers = ce_headers(CeType.JOB_STATUS_CHANGED, "ce-1", "tests", JOB)
    assert parse(message_headers, STATUS.model_dump_json().encode()) == ("ce-1", STATUS)


@pytest.mark.parametrize(
    ("message_headers", "body"),
    [
        (ce_headers(CeType.JOB_STATUS_CHANGED, "ce-1", "t", JOB), b"{not json"),
        (ce_headers("audiopipe.unknown", "ce-1", "t", JOB), STATUS.model_dump_json().encode()),
        ({headers.TYPE: CeType.JOB_STATUS_CHANGED}, STATUS.model_dump_json().encode()),
        (
            ce_headers(CeType.JOB_STATUS_CHANGED, "ce-1", "t", "job-1"),
            STATUS.model_copy(update={"job_id": "job-1"}).model_dump_json().encode(),
        ),
        (
            ce_headers(CeType.AUDIO_STORED, "ce-1", "t", JOB),
            AudioStored(
                job_id=JOB, bucket="b", key="k", size=1, sha256="0", content_type="audio/wav"
            )
            .model_dump_json()
            .encode(),
        ),
    ],
    ids=["bad-json", "unknown-type", "no-ce-id", "job-id-not-uuid", "wrong-event"],
)
def test_unprocessable_messages_are_poison(message_headers, body):
    with pytest.raises(PoisonMessage):
        parse(message_headers, body)
