"""The seed's upload route: ``POST /tokens/{token_id}/upload-audio`` (DESIGN §2)."""

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from gateway.auth import UploadAuth
from gateway.ingest import UploadLimits, ingest
from gateway.sink import UploadSink
from servicekit.http import ApiError, DependencyUnavailable
from servicekit.metrics import BYTES_INGESTED, UPLOADS
from servicekit.tokens import COOKIE_NAME, JobTokens

router = APIRouter()

TOKEN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class UploadAccepted(BaseModel):
    job_id: str = Field(description="The new job's id (a UUID).")
    status: str = Field(default="accepted", description="Always `accepted`.")
    progress: int = 0
    progress_url: str = Field(
        description="SSE stream of the job's progress. It carries the access token, so it "
        "works as it is (curl, EventSource from another origin); a same-origin page may "
        "also use `/tokens/analysis-progress/{job_id}` alone, with the cookie."
    )
    status_url: str = Field(description="JSON snapshot of the job's state.")
    access_token: str = Field(
        description="Grants read access to this job; also set as an HttpOnly cookie for "
        "the progress path. Pass it as `access_token` or a bearer token elsewhere."
    )
    filename: str
    content_type: str = Field(description="Media type detected from the file's bytes.")
    size: int
    sha256: str


class ErrorBody(BaseModel):
    class Error(BaseModel):
        code: str
        message: str

    error: Error


def get_sink(request: Request) -> UploadSink:
    sink: UploadSink = request.app.state.sink
    return sink


def get_limits(request: Request) -> UploadLimits:
    limits: UploadLimits = request.app.state.limits
    return limits


def get_owner(request: Request) -> str | None:
    auth: UploadAuth = request.app.state.auth
    return auth.owner(request)


def get_tokens(request: Request) -> JobTokens:
    tokens: JobTokens = request.app.state.tokens
    return tokens


@router.post(
    "/tokens/{token_id}/upload-audio",
    status_code=202,
    response_model=UploadAccepted,
    responses={code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 503)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
)
async def upload_audio(
    request: Request,
    response: Response,
    token_id: Annotated[str, Path(description="The seed's token id.")],
    sink: Annotated[UploadSink, Depends(get_sink)],
    limits: Annotated[UploadLimits, Depends(get_limits)],
    tokens: Annotated[JobTokens, Depends(get_tokens)],
    owner: Annotated[str | None, Depends(get_owner)],
) -> UploadAccepted:
    """Accept an audio file (multipart field `file`). Answers 202 once every byte is
    durably in Kafka; progress then streams from `progress_url`."""
    if not TOKEN_ID.match(token_id):
        raise ApiError(422, "invalid_token_id", "token_id must be 1–128 of A-Z a-z 0-9 _ . -")
    if not sink.available():
        # Answered before the body is read: the client learns at once, and an upload of
        # a gigabyte is not sent only to be refused (issue 11).
        UPLOADS.labels("unavailable").inc()
        raise DependencyUnavailable("Kafka", detail="known down, refused before the body")
    length = request.headers.get("content-length")
    try:
        done = await ingest(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=int(length) if length and length.isdigit() else None,
            token_id=token_id,
            owner=owner,
            sink=sink,
            limits=limits,
        )
    except ApiError as error:
        UPLOADS.labels(error.code).inc()
        raise
    except DependencyUnavailable:
        UPLOADS.labels("unavailable").inc()
        raise
    UPLOADS.labels("accepted").inc()
    BYTES_INGESTED.inc(done.size)
    progress_path = f"/tokens/analysis-progress/{done.job_id}"
    token = tokens.issue(done.job_id, owner)
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=tokens.ttl_seconds,
        path=progress_path,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return UploadAccepted(
        job_id=done.job_id,
        progress_url=f"{progress_path}?access_token={token}",
        status_url=f"/jobs/{done.job_id}",
        access_token=token,
        filename=done.filename,
        content_type=done.content_type,
        size=done.size,
        sha256=done.sha256,
    )
