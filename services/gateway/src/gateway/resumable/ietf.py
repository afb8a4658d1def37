"""Resumable Uploads for HTTP, draft-ietf-httpbis-resumable-upload-11, interop version 8
(docs/architecture.md §12).

Creation is ``POST /tokens/{token_id}/upload-audio`` with ``Upload-Complete``; the
upload resource is ``/uploads/{job_id}`` (HEAD offset retrieval, PATCH append with
``application/partial-upload``, DELETE cancellation, OPTIONS limits).

A creation that names interop version 8 gets ``104 (Upload Resumption Supported)`` with
``Location`` before its body is read (draft -11 §4.1), so that a client cut off during
that first request can resume it. uvicorn has no ASGI message for it; the gateway runs
:class:`servicekit.informational.InformationalHttpToolsProtocol`, which offers
``http.response.informational`` on HTTP/1.1. Where the extension is missing (HTTP/1.0,
another server) ``Location`` is in the final response only, and a client that must
resume from its first byte creates the upload empty with ``Upload-Complete: ?0`` first
(the draft's "careful upload creation").
"""

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from gateway.ingest import clean_filename
from gateway.ports import State, UploadRow
from gateway.resumable.fields import (
    filename_of_disposition,
    repr_sha256,
    sf_boolean,
    sf_integer,
    sha256_field,
)
from gateway.resumable.uploads import (
    Appended,
    NewUpload,
    OffsetMismatch,
    Resumable,
    accepted_json,
    creation_answer,
    final_body,
)
from servicekit.compat.starlette import asgi_send
from servicekit.http import ApiError
from servicekit.informational import EXTENSION as INFORMATIONAL

INTEROP_VERSION = "8"
PARTIAL_UPLOAD = "application/partial-upload"


def wants_ietf(request: Request) -> bool:
    return "upload-complete" in request.headers or "upload-draft-interop-version" in request.headers


def limits(resumable: Resumable, row: UploadRow | None = None) -> str:
    """``Upload-Limit``. Its ``max-age`` is the upload's remaining lifetime (the draft's
    "Limits"): until the earlier of its idle expiry and its maximum age; before there is
    an upload, the lifetime a new one gets."""
    age = resumable.remaining(row) if row is not None else resumable.lifetime()
    return f"max-size={resumable.limits.max_bytes}, max-age={age}"


def _headers(resumable: Resumable, row: UploadRow | None = None, **extra: str) -> dict[str, str]:
    found = {
        "Upload-Limit": limits(resumable, row),
        "Upload-Draft-Interop-Version": INTEROP_VERSION,
    }
    if row is not None:
        found["Upload-Offset"] = str(row.offset)
        found["Upload-Complete"] = "?1" if row.state is State.COMPLETE else "?0"
        if row.length is not None:
            found["Upload-Length"] = str(row.length)
    found.update(extra)
    return found


def _conflict(error: OffsetMismatch) -> JSONResponse:
    # RFC 9457 problem details with the draft's members, plus the project's error shape.
    return JSONResponse(
        {
            "type": "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
            "title": "offset from request does not match offset of resource",
            "expected-offset": error.expected,
            "provided-offset": error.provided,
            "error": {"code": error.code, "message": error.message},
        },
        status_code=409,
        media_type="application/problem+json",
        headers={"Upload-Offset": str(error.expected), "Upload-Complete": "?0"},
    )


def _answer(resumable: Resumable, done: Appended, status: int) -> Response:
    headers = _headers(resumable, done.row, **{"Repr-Digest": sha256_field(done.sha256)})
    if done.complete and done.body is not None:
        return Response(done.body, status_code=202, media_type="application/json", headers=headers)
    return Response(status_code=status, headers=headers)


async def create(
    request: Request, resumable: Resumable, token_id: str, owner: str | None, client: str
) -> Response:
    complete = sf_boolean(request.headers.get("upload-complete"))
    if complete is None:
        raise ApiError(400, "invalid_upload_complete", "Upload-Complete must be ?0 or ?1")
    length = _length(request, complete, offset=0)
    digest_field = request.headers.get("repr-digest")
    expected = repr_sha256(digest_field)
    if digest_field and expected is None:
        raise ApiError(400, "invalid_repr_digest", "Repr-Digest needs a sha-256 member")
    new = NewUpload(
        protocol="ietf",
        token_id=token_id,
        owner=owner,
        filename=clean_filename(
            filename_of_disposition(request.headers.get("content-disposition"))
        ),
        length=length,
        client=client,
        body_bytes=sf_integer(request.headers.get("content-length")),
        repr_sha256=expected,
    )
    async with resumable.creating(new) as created:
        await _resumption_supported(request, resumable, created.location)
        try:
            done = await resumable.append(
                created.job_id, request.stream(), offset=0, complete=complete, length=length
            )
        except ApiError as error:
            error.headers = {**(error.headers or {}), "Location": created.location}
            raise
        headers = _headers(resumable, done.row)
        if done.complete and done.body is not None:
            headers["Repr-Digest"] = sha256_field(done.sha256)
            return creation_answer(request, resumable, created, done.body, 202, headers)
        body = accepted_json(created, new, done.row, done.size, done.sha256)
        return creation_answer(request, resumable, created, body, 201, headers)


async def _resumption_supported(request: Request, resumable: Resumable, location: str) -> None:
    """``104`` with the upload's URL, before the body is read (draft -11 §4.1). Only to a
    client that named this interop version, as the draft's interop implementations do:
    a client that did not ask (curl, the seed's form post) sees only the final answer."""
    if request.headers.get("upload-draft-interop-version") != INTEROP_VERSION:
        return
    if INFORMATIONAL not in request.scope.get("extensions", {}):
        return
    headers = {
        "Location": location,
        "Upload-Draft-Interop-Version": INTEROP_VERSION,
        "Upload-Limit": limits(resumable),
    }
    # A route has no other way to reach the ASGI send (servicekit.compat.starlette).
    await asgi_send(request)(
        {
            "type": INFORMATIONAL,
            "status": 104,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
    )


def _length(request: Request, complete: bool, offset: int) -> int | None:
    length_field = request.headers.get("upload-length")
    length = sf_integer(length_field)
    if length_field is not None and length is None:
        raise ApiError(400, "invalid_upload_length", "Upload-Length must be an integer")
    content_length = sf_integer(request.headers.get("content-length"))
    if complete and content_length is not None:
        implied = offset + content_length
        if length is not None and length != implied:
            raise ApiError(400, "inconsistent_length", "Upload-Length and Content-Length disagree")
        length = implied
    return length


async def head(resumable: Resumable, row: UploadRow) -> Response:
    row = await resumable.current(row)
    return Response(
        status_code=204, headers=_headers(resumable, row, **{"Cache-Control": "no-store"})
    )


async def patch(request: Request, resumable: Resumable, row: UploadRow) -> Response:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != PARTIAL_UPLOAD:
        raise ApiError(415, "unsupported_media_type", f"an append is {PARTIAL_UPLOAD}")
    offset = sf_integer(request.headers.get("upload-offset"))
    if offset is None:
        raise ApiError(400, "missing_upload_offset", "Upload-Offset is required")
    complete = sf_boolean(request.headers.get("upload-complete"))
    if complete is None:
        raise ApiError(400, "invalid_upload_complete", "Upload-Complete must be ?0 or ?1")
    replay = final_body(row)
    lost = complete and offset == row.offset and request.headers.get("content-length") == "0"
    if row.state is State.COMPLETE and lost and replay:
        # The final answer was lost on the way; the draft lets the server replay it.
        return JSONResponse(replay, status_code=202, headers=_headers(resumable, row))
    try:
        done = await resumable.append(
            row.job_id,
            request.stream(),
            offset=offset,
            complete=complete,
            length=_length(request, complete, offset),
        )
    except OffsetMismatch as error:
        return _conflict(error)
    return _answer(resumable, done, 204)


async def delete(resumable: Resumable, row: UploadRow) -> Response:
    await resumable.cancel(row)
    return Response(status_code=204)
