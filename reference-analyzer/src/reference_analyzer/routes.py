"""HTTP routes of the reference analysis server (docs/architecture.md §7).

``POST /analyze`` answers ``202`` and analyses in the background; ``GET /healthz`` and
``GET /readyz`` are the probes; ``GET /jobs/{job_id}`` is a debug view for tests.
Every error answer has the services' one JSON shape, ``{"error": {"code", "message"}}``:
the routes raise :class:`servicekit.http.ApiError` and the app installs servicekit's
handlers (:func:`servicekit.http.install_error_handlers`).
"""

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from contracts import AnalysisRequest, AnalysisWebhook, ErrorCode
from reference_analyzer.jobs import JobRegistry
from reference_analyzer.logs import JobLogger
from reference_analyzer.modes import Mode, ModeError, resolve
from reference_analyzer.settings import Settings
from reference_analyzer.worker import Analyzer
from servicekit.http import ApiError, ErrorBody


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


@dataclass
class Services:
    settings: Settings
    analyzer: Analyzer
    registry: JobRegistry
    ready: bool = False


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Rejected (test mode `reject`)."},
    422: {"model": ErrorBody, "description": "Invalid body or test-mode keys."},
    503: {"model": ErrorBody, "description": "Busy or test mode `fail_first`."},
}


@router.post("/analyze", status_code=202, response_model=AnalyzeAccepted, responses=_ERRORS)
async def analyze(body: AnalysisRequest, services: ServicesDep) -> AnalyzeAccepted:
    """Accept an analysis; progress and the result follow as webhooks to `webhook_url`."""
    settings = services.settings
    for name, url in (("audio_url", body.audio_url), ("webhook_url", body.webhook_url)):
        if not _is_http_url(url):
            raise ApiError(422, "invalid_request", f"`{name}` must be an http(s) URL")
    try:
        behaviour = resolve(
            body.metadata,
            default_mode=settings.mode,
            default_fail_first=settings.fail_first,
            slow_delay_seconds=settings.slow_delay_seconds,
        )
    except ModeError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    log = JobLogger(body.job_id)
    record = services.registry.note_request(body.job_id)
    retry_after = {"Retry-After": str(settings.retry_after_seconds)}
    if record.requests <= behaviour.fail_first:
        message = f"test mode: request {record.requests} of the first {behaviour.fail_first} fails"
        log.info("answering 503: %s", message)
        raise ApiError(503, "unavailable", message, retry_after)
    if behaviour.mode is Mode.REJECT:
        log.info("answering 400: test mode reject")
        raise ApiError(400, ErrorCode.ANALYSIS_REJECTED.value, "test mode: rejected")
    if services.analyzer.pending >= settings.max_pending_jobs:
        log.warning("answering 503: %d analyses pending", services.analyzer.pending)
        raise ApiError(503, "busy", "too many analyses pending", retry_after)
    services.analyzer.submit(body, behaviour, record)
    log.info("accepted (request %d for this job)", record.requests)
    return AnalyzeAccepted(job_id=body.job_id)


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
    )
