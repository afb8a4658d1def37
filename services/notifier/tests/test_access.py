import uuid

import pytest

from notifier.access import authorize, job_id_of
from servicekit.http import ApiError
from servicekit.tokens import JobTokens

pytestmark = pytest.mark.unit

TOKENS = JobTokens("notifier-unit-test-secret-32-bytes-long", 60)


def test_job_id_must_be_a_uuid():
    with pytest.raises(ApiError) as caught:
        job_id_of("not-a-uuid")
    assert caught.value.status_code == 422


def test_job_id_is_canonicalised():
    job = uuid.uuid4()
    assert job_id_of(str(job).upper()) == str(job)


def test_no_token_is_401():
    with pytest.raises(ApiError) as caught:
        authorize(TOKENS, str(uuid.uuid4()), [])
    assert caught.value.status_code == 401


def test_forged_token_is_401():
    job = str(uuid.uuid4())
    forged = JobTokens("another-secret-that-is-32-bytes-long!", 60).issue(job)
    with pytest.raises(ApiError) as caught:
        authorize(TOKENS, job, [forged])
    assert caught.value.status_code == 401


def test_token_of_another_job_is_403():
    with pytest.raises(ApiError) as caught:
        authorize(TOKENS, str(uuid.uuid4()), [TOKENS.issue(str(uuid.uuid4()))])
    assert caught.value.status_code == 403


def test_any_presented_token_that_grants_access_is_enough():
    job = str(uuid.uuid4())
    authorize(TOKENS, job, ["garbage", TOKENS.issue(job)])
