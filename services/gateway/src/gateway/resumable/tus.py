"""tus 1.0.0 core with the creation, creation-with-upload, termination, checksum
(sha256) and expiration extensions (https://tus.io/protocols/resumable-upload).

Creation is ``POST /tokens/{token_id}/upload-audio`` with ``Tus-Resumable``, so the
route that clients already know is the tus endpoint; the upload URL is the same
``/uploads/{job_id}`` resource the IETF draft uses (docs/architecture.md §12).

Checksum: ``Upload-Checksum`` covers one PATCH's body, and a mismatching body must not
be appended. Bytes go to Kafka as they arrive and cannot be taken back, so a PATCH that
carries a checksum is read whole first (at most ``checksum_max_bytes``, else 413),
verified, then appended; PATCHes without one stream as usual. It is read under the
upload's lease (:meth:`Resumable.append`), so parallel PATCHes to one upload hold at
most one such body in memory.
"""

import base64
import binascii
from email.utils import format_datetime

from fastapi import Request, Response

from gateway.ingest import clean_filename
from gateway.ports import State, UploadRow
from gateway.resumable.fields import sf_integer
from gateway.resumable.uploads import (
    NewUpload,
    OffsetMismatch,
    Resumable,
    accepted_json,
    creation_answer,
)
from servicekit.http import ApiError

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
OFFSET_STREAM = "application/offset+octet-stream"


def wants_tus(request: Request) -> bool:
    return "tus-resumable" in request.headers


def check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != VERSION:
        raise ApiError(
            412,
            "unsupported_tus_version",
            f"this server speaks tus {VERSION}",
            headers={"Tus-Version": VERSION, "Tus-Resumable": VERSION},
        )


def discovery(resumable: Resumable) -> dict[str, str]:
    return {
        "Tus-Resumable": VERSION,
        "Tus-Version": VERSION,
        "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(resumable.limits.max_bytes),
        "Tus-Checksum-Algorithm": "sha256",
    }


def _headers(row: UploadRow, **extra: str) -> dict[str, str]:
    found = {
        "Tus-Resumable": VERSION,
        "Upload-Offset": str(row.offset),
        "Upload-Expires": format_datetime(row.expires_at, usegmt=True),
        "Cache-Control": "no-store",
    }
    if row.length is not None:
        found["Upload-Length"] = str(row.length)
    found.update(extra)
    return found


def _metadata(value: str | None) -> dict[str, str]:
    found = {}
    for pair in (value or "").split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key:
            continue
        try:
            found[key] = base64.b64decode(encoded, validate=True).decode() if encoded else ""
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ApiError(400, "invalid_metadata", f"Upload-Metadata {key} is not base64") from exc
    return found


async def create(
    request: Request, resumable: Resumable, token_id: str, owner: str | None, client: str
) -> Response:
    check_version(request)
    if request.headers.get("upload-defer-length"):
        raise ApiError(400, "defer_length_unsupported", "Upload-Length is required")
    length = sf_integer(request.headers.get("upload-length"))
    if length is None:
        raise ApiError(400, "invalid_upload_length", "Upload-Length is required")
    metadata = _metadata(request.headers.get("upload-metadata"))
    checksum = _checksum(request, resumable)
    new = NewUpload(
        protocol="tus",
        token_id=token_id,
        owner=owner,
        filename=clean_filename(metadata.get("filename") or metadata.get("name")),
        length=length,
        client=client,
        body_bytes=sf_integer(request.headers.get("content-length")),
    )
    async with resumable.creating(new) as created:
        has_body = sf_integer(request.headers.get("content-length")) not in (None, 0) or (
            "transfer-encoding" in request.headers
        )
        row = await resumable.store.get(created.job_id)
        assert row is not None
        size, sha256 = 0, ""
        if has_body:
            _content_type(request)
            done = await resumable.append(
                created.job_id,
                request.stream(),
                offset=0,
                complete=None,
                length=None,
                checksum=checksum,
            )
            row, size, sha256 = done.row, done.size, done.sha256
        body = accepted_json(created, new, row, size, sha256)
        return creation_answer(request, resumable, created, body, 201, _headers(row))


def _content_type(request: Request) -> None:
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != OFFSET_STREAM:
        raise ApiError(415, "unsupported_media_type", f"a tus PATCH body is {OFFSET_STREAM}")


def _checksum(request: Request, resumable: Resumable) -> bytes | None:
    """The SHA-256 an ``Upload-Checksum`` names, checked before anything is read: a body
    declared larger than a checksummed PATCH may be is refused at once."""
    checksum = request.headers.get("upload-checksum")
    if checksum is None:
        return None
    algorithm, _, encoded = checksum.strip().partition(" ")
    if algorithm != "sha256":
        raise ApiError(400, "unsupported_checksum", "Upload-Checksum must use sha256")
    try:
        expected = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ApiError(400, "invalid_checksum", "Upload-Checksum is not base64") from exc
    if len(expected) != 32:
        raise ApiError(400, "invalid_checksum", "Upload-Checksum is not a SHA-256")
    limit = resumable.checksum_max_bytes
    declared = sf_integer(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise ApiError(413, "too_large", f"a PATCH with a checksum is at most {limit} bytes")
    return expected


async def head(resumable: Resumable, row: UploadRow) -> Response:
    return Response(status_code=200, headers=_headers(await resumable.current(row)))


async def patch(request: Request, resumable: Resumable, row: UploadRow) -> Response:
    _content_type(request)
    offset = sf_integer(request.headers.get("upload-offset"))
    if offset is None:
        raise ApiError(400, "missing_upload_offset", "Upload-Offset is required")
    resumable.usable(row)
    if row.state is State.COMPLETE:
        raise ApiError(
            409,
            "upload_complete",
            "the upload is complete already",
            headers=_headers(row),
        )
    if offset != row.offset:
        # Checked again under the lock; this spares reading a body that cannot fit.
        raise ApiError(
            409, "offset_mismatch", f"the upload is at offset {row.offset}", _headers(row)
        )
    checksum = _checksum(request, resumable)
    try:
        done = await resumable.append(
            row.job_id,
            request.stream(),
            offset=offset,
            complete=None,
            length=None,
            checksum=checksum,
        )
    except OffsetMismatch as error:
        error.headers = _headers(row, **{"Upload-Offset": str(error.expected)})
        raise
    return Response(status_code=204, headers=_headers(done.row))


async def delete(resumable: Resumable, row: UploadRow) -> Response:
    await resumable.cancel(row)
    return Response(status_code=204, headers={"Tus-Resumable": VERSION})
