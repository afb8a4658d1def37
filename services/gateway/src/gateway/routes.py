"""The seed's upload route: ``POST /tokens/{token_id}/upload-audio`` (docs/architecture.md §2)."""

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from gateway.accepted import UploadAccepted, accepted_body, set_progress_cookie
from gateway.auth import UploadAuth
from gateway.ingest import UploadLimits, ingest
from gateway.ports import UploadSink
from gateway.resumable import ietf, tus
from gateway.resumable.routes import get_resumable
from servicekit.http import ApiError, DependencyUnavailable, ErrorBody, from_state
from servicekit.metrics import BYTES_INGESTED, UPLOADS
from servicekit.tokens import JobTokens

router = APIRouter()

TOKEN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


# What the route needs, built by gateway.app and kept on app.state.
Sink = Annotated[UploadSink, Depends(from_state(UploadSink, "sink"))]
Limits = Annotated[UploadLimits, Depends(from_state(UploadLimits, "limits"))]
Tokens = Annotated[JobTokens, Depends(from_state(JobTokens, "tokens"))]


def _owner(
    request: Request, auth: Annotated[UploadAuth, Depends(from_state(UploadAuth, "auth"))]
) -> str | None:
    return auth.owner(request)


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
    sink: Sink,
    limits: Limits,
    tokens: Tokens,
    owner: Annotated[str | None, Depends(_owner)],
) -> UploadAccepted | Response:
    """Accept an audio file (multipart field `file`). Answers 202 once every byte is
    durably in Kafka; progress then streams from `progress_url`. With `Tus-Resumable`
    (tus 1.0) or `Upload-Complete` (the IETF draft) it creates a resumable upload."""
    if not TOKEN_ID.match(token_id):
        raise ApiError(422, "invalid_token_id", "token_id must be 1–128 of A-Z a-z 0-9 _ . -")
    if not sink.available():
        # Answered before the body is read: the client learns at once, and an upload of
        # a gigabyte is not sent only to be refused (issue 11).
        UPLOADS.labels("unavailable").inc()
        raise DependencyUnavailable("Kafka", detail="known down, refused before the body")
    if tus.wants_tus(request):
        return await tus.create(request, get_resumable(request), token_id, owner)
    if ietf.wants_ietf(request):
        return await ietf.create(request, get_resumable(request), token_id, owner)
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
    token = tokens.issue(done.job_id, owner)
    set_progress_cookie(request, response, tokens, done.job_id, token)
    return accepted_body(
        done.job_id, token, done.filename, done.content_type, done.size, done.sha256
    )
