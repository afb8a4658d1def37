"""The seed's upload route: ``POST /tokens/{token_id}/upload-audio`` (docs/architecture.md §2)."""

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from gateway.accepted import JobGrant, UploadAccepted, accepted_body, set_progress_cookie
from gateway.deps import AuthDep, LimitsDep, QuotaDep, ResumableDep, SinkDep, TokensDep
from gateway.ingest import checked_headers, ingest
from gateway.limits import client_key
from gateway.resumable import ietf, tus
from servicekit.http import ApiError, DependencyUnavailable, ErrorBody
from servicekit.metrics import BYTES_INGESTED, UPLOADS

router = APIRouter()

TOKEN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


async def _owner(request: Request, auth: AuthDep) -> str | None:
    return await auth.owner(request)


@router.post(
    "/tokens/{token_id}/upload-audio",
    status_code=202,
    response_model=UploadAccepted,
    responses={code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 429, 503)},
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
    sink: SinkDep,
    limits: LimitsDep,
    tokens: TokensDep,
    quota: QuotaDep,
    resumable: ResumableDep,
    owner: Annotated[str | None, Depends(_owner)],
) -> UploadAccepted | Response:
    """Accept an audio file (multipart field `file`). Answers 202 once every byte is
    durably in Kafka; progress then streams from `progress_url`. With `Tus-Resumable`
    (tus 1.0) or `Upload-Complete` (the IETF draft) it creates a resumable upload.
    Beyond the client's fair use: 429 with `Retry-After`, before the body is read."""
    if not TOKEN_ID.match(token_id):
        raise ApiError(422, "invalid_token_id", "token_id must be 1–128 of A-Z a-z 0-9 _ . -")
    if not sink.available():
        # Answered before the body is read: the client learns at once, and an upload of
        # a gigabyte is not sent only to be refused (issue 11).
        UPLOADS.labels("unavailable").inc()
        raise DependencyUnavailable("Kafka", detail="known down, refused before the body")
    client = client_key(request, owner)
    if tus.wants_tus(request):
        return await tus.create(request, resumable, token_id, owner, client)
    if ietf.wants_ietf(request):
        return await ietf.create(request, resumable, token_id, owner, client)
    length = request.headers.get("content-length")
    declared = int(length) if length and length.isdigit() else None
    try:
        checked_headers(request.headers.get("content-type"), declared, limits)
        lease = await quota.admit_upload(client, declared, declared)
    except ApiError as error:
        UPLOADS.labels(error.code).inc()
        raise
    done = None
    try:
        done = await ingest(
            request.stream(),
            content_type=request.headers.get("content-type"),
            content_length=declared,
            token_id=token_id,
            owner=owner,
            sink=sink,
            limits=limits,
        )
    except ApiError as error:
        UPLOADS.labels(error.code).inc()
        raise
    finally:
        await quota.release(lease, done.size if done and declared is None else 0)
    UPLOADS.labels("accepted").inc()
    BYTES_INGESTED.inc(done.size)
    grant = JobGrant.issue(tokens, done.job_id, owner)
    set_progress_cookie(request, response, tokens, grant)
    return accepted_body(grant, done.filename, done.content_type, done.size, done.sha256)
