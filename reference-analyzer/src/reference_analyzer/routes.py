"""HTTP routes of the reference analysis server (docs/architecture.md §7).

``POST /analyze`` answers ``202`` and analyses in the background; ``GET /healthz`` and
``GET /readyz`` are the probes; ``GET /jobs/{job_id}`` is a debug view for tests.
Every error answer has the services' one JSON shape, ``{"error": {"code", "message"}}``:
the routes raise :class:`servicekit.http.ApiError` and the app installs servicekit's
handlers (:func:`servicekit.http.install_error_handlers`).

``POST /analyze`` checks, in order, each as soon as what decides it has been read: the
signature's headers (401), the body's size (413, from ``Content-Length`` before
reading, else while reading), the signature (401), the body (422), the audio's size
against ``MAX_DOWNLOAD_BYTES`` (413). Only then is the job noted, so that a refused
call leaves no trace but a log line (docs/architecture.md §7).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message, Receive

from contracts import AnalysisRequest, AnalysisWebhook, ErrorCode
from reference_analyzer.admission import BodyTooLarge, RequestGuard, Unauthorized
from reference_analyzer.jobs import JobRegistry
from reference_analyzer.logs import JobLogger
from reference_analyzer.modes import Mode, ModeError, resolve
from reference_analyzer.settings import Settings
from reference_analyzer.worker import Analyzer
from servicekit import webhooks
from servicekit.http import ApiError, ErrorBody

log = logging.getLogger(__name__)


class AnalyzeAccepted(BaseModel):
    job_id: str
    status: Literal["accepted"] = "accepted"


class JobView(BaseModel):
    """What the server has seen of a job (a debug view; never the job's URLs)."""

    job_id: str
    requests: int
    accepted: int
    running: int
    finished: int
    delivered: dict[str, int]
    undelivered: int
    final: AnalysisWebhook | None
    replayed: int = Field(
        0, description="Requests answered 202 as replays of one that had started a run."
    )
    stopped: int = Field(
        0, description="Runs stopped at their request's deadline, their result not sent."
    )


@dataclass
class Services:
    settings: Settings
    analyzer: Analyzer
    registry: JobRegistry
    guard: RequestGuard
    ready: bool = False


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services_dependency(request: Request) -> Services:
    """:func:`_services` as a coroutine: FastAPI runs a plain function in a worker thread."""
    return _services(request)


ServicesDep = Annotated[Services, Depends(_services_dependency)]


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Rejected (test mode `reject`)."},
    401: {"model": ErrorBody, "description": "Missing, forged or stale signature."},
    413: {"model": ErrorBody, "description": "Body, or the audio's `size`, over the limit."},
    422: {"model": ErrorBody, "description": "Invalid body or test-mode keys."},
    503: {"model": ErrorBody, "description": "Busy or test mode `fail_first`."},
}

_SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"Standard Webhooks `{name}`; required when the server has a "
        "signing secret (always in production).",
    }
    for name in (webhooks.ID_HEADER, webhooks.TIMESTAMP_HEADER, webhooks.SIGNATURE_HEADER)
]


class _AdmittedFirst(APIRoute):
    """A route whose request is admitted (:meth:`RequestGuard.admit`: signature
    headers, size, signature) before FastAPI reads and parses its body, which it then
    gets from what was admitted."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        parse_and_handle = super().get_route_handler()

        async def admit_then_handle(request: Request) -> Response:
            guard = _services(request).guard
            try:
                body = await guard.admit(request.headers, request.stream())
            except Unauthorized as exc:
                log.warning("answering 401: %s", exc)
                raise ApiError(
                    401, "unauthorized", "missing or invalid request signature"
                ) from None
            except BodyTooLarge as exc:
                raise ApiError(413, "too_large", str(exc)) from None
            return await parse_and_handle(Request(request.scope, _replay(body, request.receive)))

        return admit_then_handle


def _replay(body: bytes, receive: Receive) -> Receive:
    """An ASGI ``receive`` that gives ``body`` once, then what ``receive`` gives."""
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replaying


async def analyze(
    body: AnalysisRequest, request: Request, services: ServicesDep
) -> AnalyzeAccepted:
    """Accept an analysis; progress and the result follow as webhooks to `webhook_url`.

    Signed by the caller with the server's signing secret (Standard Webhooks, as its
    webhooks are); a replay of a request that started an analysis is answered `202`
    again and starts nothing. The analysis stops at the body's `deadline`, if any,
    without a word more."""
    settings = services.settings
    guard = services.guard
    for name, url in (("audio_url", body.audio_url), ("webhook_url", body.webhook_url)):
        if not _is_http_url(url):
            raise ApiError(422, "invalid_request", f"`{name}` must be an http(s) URL")
    if body.deadline is not None and body.deadline <= datetime.now(UTC):
        raise ApiError(422, "invalid_request", "`deadline` has passed")
    if body.size > settings.max_download_bytes:
        message = (
            f"the audio is {body.size} bytes, over this server's limit of "
            f"{settings.max_download_bytes}"
        )
        raise ApiError(413, "too_large", message)
    try:
        behaviour = resolve(
            body.metadata,
            default_mode=settings.mode,
            default_fail_first=settings.fail_first,
            slow_delay_seconds=settings.slow_delay_seconds,
        )
    except ModeError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    job_log = JobLogger(body.job_id)
    record = services.registry.note_request(body.job_id)
    if guard.already_started(request.headers):
        record.replayed += 1
        job_log.info("answering 202: a replay of a request that started an analysis")
        return AnalyzeAccepted(job_id=body.job_id)
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}
    if record.requests <= behaviour.fail_first:
        message = f"test mode: request {record.requests} of the first {behaviour.fail_first} fails"
        job_log.info("answering 503: %s", message)
        raise ApiError(503, "unavailable", message, retry_after)
    if behaviour.mode is Mode.REJECT:
        job_log.info("answering 400: test mode reject")
        raise ApiError(400, ErrorCode.ANALYSIS_REJECTED.value, "test mode: rejected")
    if services.analyzer.pending >= settings.max_pending_jobs:
        job_log.warning("answering 503: %d analyses pending", services.analyzer.pending)
        raise ApiError(503, "busy", "too many analyses pending", retry_after)
    services.analyzer.submit(body, behaviour, record)
    guard.started(request.headers)
    job_log.info("accepted (request %d for this job)", record.requests)
    return AnalyzeAccepted(job_id=body.job_id)


router.add_api_route(
    "/analyze",
    analyze,
    methods=["POST"],
    status_code=202,
    response_model=AnalyzeAccepted,
    responses=_ERRORS,
    openapi_extra={"parameters": _SIGNATURE_HEADERS},
    route_class_override=_AdmittedFirst,
)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(services: ServicesDep) -> dict[str, str]:
    if not services.ready:
        raise ApiError(503, "not_ready", "starting or stopping")
    return {"status": "ready"}


@router.get("/jobs/{job_id}", response_model=JobView, responses={404: {"model": ErrorBody}})
async def get_job(
    job_id: str,
    services: ServicesDep,
    wait: Annotated[float, Query(ge=0, le=60, description="Seconds to wait for idle.")] = 0,
) -> JobView:
    """Debug view of a job. With `wait`, first waits (at most that long) until no
    analysis of the job is running, so tests wait for a condition, not a sleep."""
    record = services.registry.get(job_id)
    if record is None:
        raise ApiError(404, "not_found", "no request seen for this job")
    if wait:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(record.idle.wait(), wait)
    return JobView(
        job_id=record.job_id,
        requests=record.requests,
        accepted=record.accepted,
        running=record.running,
        finished=record.finished,
        delivered=dict(record.delivered),
        undelivered=record.undelivered,
        final=record.final,
        replayed=record.replayed,
        stopped=record.stopped,
    )
