"""HTTP routes: the seed's SSE progress stream and a JSON snapshot of a job."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response

from notifier.access import authorize, job_id_of, presented_tokens
from notifier.deps import Services, ServicesDep
from notifier.streams import EventStreamResponse, job_stream
from servicekit.http import ApiError

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid job access token."},
    403: {"description": "The token is for another job."},
    422: {"description": "The job id is not a UUID, or Last-Event-ID is not an event id."},
}

AccessToken = Annotated[
    str | None, Query(description="The job access token, for clients without cookies.")
]


def _authorized_job(services: Services, request: Request, raw_id: str, token: str | None) -> str:
    job_id = job_id_of(raw_id)
    authorize(services.tokens, job_id, presented_tokens(request, token))
    return job_id


def _event_id(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(422, "invalid_last_event_id", "Last-Event-ID is not an event id")
    return value


@router.get(
    "/tokens/analysis-progress/{job_id}",
    response_class=EventStreamResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The progress stream."},
        204: {"description": "The job is final and its final event was already seen."},
        503: {"description": "Too many open streams, or shutting down; retry later."},
        **_ERRORS,
    },
    summary="Follow a job's progress (Server-Sent Events)",
)
async def analysis_progress(
    job_id: str,
    request: Request,
    services: ServicesDep,
    access_token: AccessToken = None,
    last_event_id: Annotated[
        str | None, Query(description="Resume after this event id (as `Last-Event-ID`).")
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """The current state first, then every change as it happens; ends after
    `completed` or `failed`. Each event's `id` lets a reconnect resume exactly."""
    job = _authorized_job(services, request, job_id, access_token)
    after = _event_id(last_event_id_header or last_event_id)
    if services.draining:
        raise ApiError(503, "shutting_down", "this notifier is shutting down", {"Retry-After": "1"})
    store = services.require_store()
    if after is not None:
        current = await store.current(job)
        if current is not None and current.is_final and current.event_id <= after:
            return Response(status_code=204)
    if not services.slots.acquire():
        raise ApiError(
            503, "too_many_streams", "too many open progress streams", {"Retry-After": "5"}
        )
    settings = services.settings
    stream = job_stream(
        store,
        services.fanout,
        job,
        after=after,
        heartbeat_seconds=settings.sse_heartbeat_seconds,
        retry_ms=settings.sse_retry_ms,
    )
    return EventStreamResponse(stream, on_close=services.slots.release)


@router.get("/jobs/{job_id}", responses={404: {"description": "No event yet."}, **_ERRORS})
async def job_snapshot(
    job_id: str, request: Request, services: ServicesDep, access_token: AccessToken = None
) -> dict[str, Any]:
    """The job's current state, for clients that do not stream."""
    job = _authorized_job(services, request, job_id, access_token)
    current = await services.require_store().current(job)
    if current is None:
        raise ApiError(404, "not_found", "no status for this job yet")
    return current.public()
