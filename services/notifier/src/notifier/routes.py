"""HTTP routes: the seed's SSE progress stream and a JSON snapshot of a job."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from notifier.access import job_id_of
from notifier.deps import Services, ServicesDep
from notifier.progress import EventStreamResponse
from servicekit.http import ApiError
from servicekit.tokens import authorize, presented_tokens

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid job access token."},
    403: {"description": "The token is for another job."},
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
    request: Request,
    access_token: AccessToken = None,
    last_event_id: Annotated[
        str | None, Query(description="Resume after this event id (as `Last-Event-ID`).")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The current state first, then every change as it happens; ends after
    `completed` or `failed`, or after the stream's maximum lifetime (then a reconnect
    with `Last-Event-ID` resumes). Each event's `id` lets a reconnect resume exactly."""
    # Served by notifier.progress before FastAPI's routing (issue 14); this declaration
    # documents the route and hands back what reaches it (other methods, e.g. HEAD).
    return EventStreamResponse(request.app.state.progress)


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
