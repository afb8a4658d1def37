import uuid

import pytest

from notifier.access import job_id_of
from servicekit.http import ApiError

pytestmark = pytest.mark.unit


def test_job_id_must_be_a_uuid():
    with pytest.raises(ApiError) as caught:
        job_id_of("not-a-uuid")
    assert caught.value.status_code == 422


def test_job_id_is_canonicalised():
    job = uuid.uuid4()
    assert job_id_of(str(job).upper()) == str(job)
