"""Bearer-header parsing, shared by every service that reads ``Authorization``; job
access tokens and their scopes."""

import time
import uuid

import jwt
import pytest

from servicekit.http import ApiError
from servicekit.tokens import AUDIENCE, JobTokens, Scope, TokenProblem, authorize, bearer_token

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def", "abc.def"), ("bearer abc", "abc"), ("BEARER  abc ", "abc")],
)
def test_the_token_of_a_bearer_header(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwdw==", "abc"])
def test_no_bearer_token_is_none(header: str | None) -> None:
    assert bearer_token(header) is None


SECRET = "servicekit-unit-test-secret-of-32-bytes"
JOB = "0b5c1d52-4d9e-4a52-9d6f-4f7b8f0f2a11"


def test_an_access_token_reads_and_writes_its_job() -> None:
    tokens = JobTokens(SECRET, 60)
    token = tokens.issue(JOB)
    assert tokens.check(token, JOB, Scope.READ) is None
    assert tokens.check(token, JOB, Scope.WRITE) is None


def test_a_progress_token_only_reads() -> None:
    tokens = JobTokens(SECRET, 60)
    token = tokens.issue_progress(JOB)
    assert tokens.check(token, JOB) is None
    assert tokens.check(token, JOB, Scope.WRITE) is TokenProblem.INSUFFICIENT_SCOPE


def test_a_token_from_before_scopes_keeps_both_until_it_expires() -> None:
    legacy = jwt.encode(
        {"sub": JOB, "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 60},
        SECRET,
        algorithm="HS256",
    )
    assert JobTokens(SECRET, 60).check(legacy, JOB, Scope.WRITE) is None


def test_scopes_do_not_cross_jobs_or_secrets() -> None:
    tokens = JobTokens(SECRET, 60)
    assert tokens.check(tokens.issue(JOB), "another") is TokenProblem.WRONG_JOB
    forged = JobTokens("another-secret-that-is-also-32-bytes", 60).issue(JOB)
    assert tokens.check(forged, JOB) is TokenProblem.INVALID


def test_no_token_is_401():
    with pytest.raises(ApiError) as caught:
        authorize(JobTokens(SECRET, 60), str(uuid.uuid4()), [])
    assert caught.value.status_code == 401


def test_forged_token_is_401():
    job = str(uuid.uuid4())
    forged = JobTokens("another-secret-that-is-32-bytes-long!", 60).issue(job)
    with pytest.raises(ApiError) as caught:
        authorize(JobTokens(SECRET, 60), job, [forged])
    assert caught.value.status_code == 401


def test_token_of_another_job_is_403():
    with pytest.raises(ApiError) as caught:
        authorize(
            JobTokens(SECRET, 60),
            str(uuid.uuid4()),
            [JobTokens(SECRET, 60).issue(str(uuid.uuid4()))],
        )
    assert caught.value.status_code == 403


def test_any_presented_token_that_grants_access_is_enough():
    job = str(uuid.uuid4())
    authorize(JobTokens(SECRET, 60), job, ["garbage", JobTokens(SECRET, 60).issue(job)])


def test_a_read_only_token_is_403_insufficient_scope_where_writing_is_needed():
    job = str(uuid.uuid4())
    with pytest.raises(ApiError) as caught:
        authorize(
            JobTokens(SECRET, 60), job, [JobTokens(SECRET, 60).issue_progress(job)], Scope.WRITE
        )
    assert (caught.value.status_code, caught.value.code) == (403, "insufficient_scope")
    assert 'error="insufficient_scope"' in (caught.value.headers or {})["WWW-Authenticate"]
