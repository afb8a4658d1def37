"""HTTP routes: the seed's SSE progress stream, a JSON snapshot of a job, its deletion,
and an owner's jobs (docs/architecture.md §2)."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel, Field

from notifier import owners
from notifier.access import deleting_owner, job_id_of
from notifier.deps import Services, ServicesDep
from notifier.lifecycle import Deletion
from notifier.progress import EventStreamResponse, ProgressDep
from servicekit.http import ApiError
from servicekit.tokens import authorize, presented_tokens

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid job access token."},
    403: {"description": "The token is for another job."},
    410: {"description": "The job was deleted (`job_deleted`)."},
    422: {"description": "The job id is not a UUID, or Last-Event-ID is not an event id."},
    503: {
        "description": "The database is unavailable (or, for streams: too many open "
        "streams, shutting down); retry after `Retry-After` seconds."
    },
}

AccessToken = Annotated[
    str | None, Query(description="The job access token, for clients without cookies.")
]


def _authorized_job(services: Services, request: Request, raw_id: str, token: str | None) -> str:
    job_id = job_id_of(raw_id)
    authorize(services.tokens, job_id, presented_tokens(request, token))
    return job_id


@router.get(
    "/tokens/analysis-progress/{job_id}",
    response_class=EventStreamResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The progress stream."},
        204: {"description": "The job is final and its final event was already seen."},
        **_ERRORS,
        429: {
            "description": "This job (`too_many_job_streams`) or this client address "
            "(`too_many_client_streams`) has as many open streams as allowed; retry after "
            "`Retry-After` seconds."
        },
    },
    summary="Follow a job's progress (Server-Sent Events)",
)
async def analysis_progress(
    job_id: str,
    endpoint: ProgressDep,
    access_token: AccessToken = None,
    last_event_id: Annotated[
        str | None, Query(description="Resume after this event id (as `Last-Event-ID`).")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The current state first, then every change as it happens; ends after
    `completed` or `failed`, or after the stream's maximum lifetime (then a reconnect
    with `Last-Event-ID` resumes), or when the job is deleted (then a reconnect hears
    410). Each event's `id` lets a reconnect resume exactly."""
    # Served by notifier.progress before FastAPI's routing (issue 14); this declaration
    # documents the route and hands back what reaches it (other methods, e.g. HEAD).
    return EventStreamResponse(endpoint)


@router.get("/jobs/{job_id}", responses={404: {"description": "No event yet."}, **_ERRORS})
async def job_snapshot(
    job_id: str, request: Request, services: ServicesDep, access_token: AccessToken = None
) -> dict[str, Any]:
    """The job's current state, for clients that do not stream."""
    job = _authorized_job(services, request, job_id, access_token)
    current = await services.history.current(job)
    if current is None:
        raise ApiError(404, "not_found", "no status for this job yet")
    return current.public()


class DeletionAccepted(BaseModel):
    job_id: str
    status: Literal["deleting"] = Field(
        description="Announced to every service on `job.deleted` and erased here; the "
        "other services erase their part as they consume it."
    )


@router.delete(
    "/jobs/{job_id}",
    status_code=202,
    response_model=DeletionAccepted,
    responses={
        204: {"description": "The job was deleted already."},
        401: {"description": "No valid job token or owner's bearer token."},
        403: {
            "description": "The job token is for another job (`wrong_job`), or only reads "
            "(`insufficient_scope`: the progress URL's and the cookie's)."
        },
        404: {"description": "With an owner's bearer token: no job of that owner's."},
        422: {"description": "The job id is not a UUID."},
        503: {"description": "Kafka or the database is unavailable; retry after `Retry-After`."},
    },
    summary="Delete a job everywhere",
)
async def delete_job(
    job_id: str, request: Request, services: ServicesDep, access_token: AccessToken = None
) -> Response | DeletionAccepted:
    """Erase the job from every service: its upload, audio, analysis, state and event
    history. Needs the job's own `access_token` (from the upload's answer; `job:write`)
    or, with `UPLOAD_AUTH=jwt`, its owner's bearer token. Answered once the deletion is
    on Kafka: from then on the job answers 410 here, its streams have ended, and every
    service erases its part, whatever crashes meanwhile. Repeating it is harmless."""
    job = job_id_of(job_id)
    owner = await deleting_owner(services.tokens, services.auth, request, job, access_token)
    if await services.deleter.delete(job, owner) is Deletion.ALREADY:
        return Response(status_code=204)
    return DeletionAccepted(job_id=job, status="deleting")


@router.get(
    "/jobs",
    responses={
        401: {"description": "No valid bearer token of the identity provider."},
        404: {"description": "Uploads are anonymous here (`no_owners`): jobs have no owners."},
        422: {"description": "`limit` out of range, or a cursor this route did not give."},
        503: {"description": "The database is unavailable; retry after `Retry-After`."},
    },
    summary="List the caller's jobs, newest first",
)
async def owner_jobs(
    request: Request,
    services: ServicesDep,
    limit: Annotated[
        int, Query(ge=1, le=owners.MAX_PAGE, description="Jobs on this page.")
    ] = owners.DEFAULT_PAGE,
    cursor: Annotated[
        str | None,
        Query(
            max_length=owners.MAX_CURSOR_CHARS,
            description="`next_cursor` of the previous page, for the one after it.",
        ),
    ] = None,
) -> dict[str, Any]:
    """The jobs of the owner whose bearer token (`UPLOAD_AUTH=jwt`) the request
    carries, newest first: `{"jobs": [...], "next_cursor"}`, each job as
    `GET /jobs/{job_id}` shows it; `next_cursor` is null on the last page."""
    owner = await owners.owner_of(services.auth, request)
    return await owners.page(services.lifecycle, owner, cursor, limit)
