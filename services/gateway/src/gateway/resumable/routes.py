"""HTTP for the upload resource ``/uploads/{job_id}``: tus when the request carries
``Tus-Resumable``, else the IETF draft; and ``OPTIONS`` on the creation route."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from gateway.deps import AuthDep, ResumableDep
from gateway.limits import client_key
from gateway.ports import UploadRow
from gateway.resumable import ietf, tus
from servicekit.http import ErrorBody
from servicekit.tokens import presented_tokens

router = APIRouter()

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody}
    for code in (400, 401, 403, 404, 408, 409, 410, 412, 413, 415, 429, 460, 503)
}


JobId = Annotated[
    str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


@router.options("/tokens/{token_id}/upload-audio", status_code=204)
@router.options("/uploads/{job_id}", status_code=204)
async def options(resumable: ResumableDep) -> Response:
    """What resumable uploads this server offers: the draft's ``Upload-Limit`` and
    tus's discovery headers."""
    return Response(
        status_code=204,
        headers={"Upload-Limit": ietf.limits(resumable), **tus.discovery(resumable)},
    )


async def get_upload(
    request: Request, job_id: JobId, resumable: ResumableDep, auth: AuthDep
) -> UploadRow:
    """The upload the request names, if the job's access token (``access_token`` or a
    bearer token) or its owner's JWT grants appending to it; a tus request must speak
    this server's tus version."""
    presented = presented_tokens(request, request.query_params.get("access_token"))
    row = await resumable.find(job_id, presented, await auth.owner_if_any(request))
    if tus.wants_tus(request):
        tus.check_version(request)
    return row


UploadDep = Annotated[UploadRow, Depends(get_upload)]


@router.head("/uploads/{job_id}", responses=_ERRORS)
async def offset(request: Request, row: UploadDep, resumable: ResumableDep) -> Response:
    """Offset retrieval: answered from PostgreSQL, so any replica can answer it."""
    if tus.wants_tus(request):
        return await tus.head(resumable, row)
    return await ietf.head(resumable, row)


@router.patch("/uploads/{job_id}", responses=_ERRORS)
async def append(request: Request, row: UploadDep, resumable: ResumableDep) -> Response:
    """Append bytes at ``Upload-Offset`` (``application/partial-upload`` for the draft,
    ``application/offset+octet-stream`` for tus)."""
    length = request.headers.get("content-length")
    lease = await resumable.quota.admit_append(
        row.job_id, client_key(request, None), int(length) if length and length.isdigit() else None
    )
    try:
        if tus.wants_tus(request):
            return await tus.patch(request, resumable, row)
        return await ietf.patch(request, resumable, row)
    finally:
        await resumable.quota.release(lease)


@router.delete("/uploads/{job_id}", status_code=204, responses=_ERRORS)
async def cancel(request: Request, row: UploadDep, resumable: ResumableDep) -> Response:
    """Cancel the upload: the multipart upload is aborted and the job fails."""
    if tus.wants_tus(request):
        return await tus.delete(resumable, row)
    return await ietf.delete(resumable, row)
