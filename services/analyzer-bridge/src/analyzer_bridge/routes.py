"""``POST /tokens/webhook/analysis-complete``: the analysis server's callback
(docs/architecture.md §2, §6).

Checks, in order: the per-job capability token (401), the body's size while reading
it (413), the Standard Webhooks signature when a signing secret is configured (401),
the body (422), the job (404, or 410 for a deleted job: answered, nothing changes, no
event is published); then the job's state decides (see
:mod:`analyzer_bridge.decisions`). A ``completed`` call whose result is unusable (not
an object, a well-known field of the wrong type) is answered 422 and fails the job at
once with ``analysis_invalid_result`` (see :mod:`analyzer_bridge.webhook_body`).
"""

import logging
import time
from collections.abc import Awaitable
from typing import Any, NoReturn, TypeVar

from fastapi import APIRouter, Request

from analyzer_bridge.analysis import Outcome
from analyzer_bridge.capability import WEBHOOK_PATH
from analyzer_bridge.decisions import Verdict, job_progress, judge_progress, outcome_of
from analyzer_bridge.deps import Deps, WebhookDeps
from analyzer_bridge.finishing import Finish
from analyzer_bridge.ports import PublishError
from analyzer_bridge.webhook_body import (
    BodyTooLarge,
    InvalidBody,
    InvalidResult,
    parse,
    read_bounded,
)
from contracts import AnalysisWebhook, ErrorCode
from servicekit import webhooks
from servicekit.http import ApiError
from servicekit.metrics import WEBHOOKS

log = logging.getLogger(__name__)
T = TypeVar("T")


router = APIRouter(tags=["webhooks"])

_UNAUTHORIZED = ApiError(401, "unauthorized", "missing or invalid webhook credentials")


@router.post(
    WEBHOOK_PATH,
    summary="Progress or result of an analysis, from the analysis server",
    responses={401: {}, 404: {}, 409: {}, 410: {}, 413: {}, 422: {}},
)
async def analysis_webhook(
    request: Request, deps: Deps, job_id: str | None = None, token: str | None = None
) -> dict[str, Any]:
    try:
        answer = await _receive(request, deps, job_id, token)
    except ApiError as error:
        WEBHOOKS.labels(error.code).inc()
        raise
    outcome = str(answer.get("outcome", "ok"))
    WEBHOOKS.labels("final" if outcome == Finish.WON.value else outcome).inc()
    return answer


async def _receive(
    request: Request, deps: WebhookDeps, job_id: str | None, token: str | None
) -> dict[str, Any]:
    if not job_id or not token or not deps.capabilities.allows(token, job_id):
        raise _UNAUTHORIZED
    if deps.signing_secret is not None:
        # Unsigned or stale: refused on its headers, before its body is read (issue 19).
        try:
            webhooks.check_headers(request.headers, time.time(), deps.tolerance_seconds)
        except webhooks.WebhookVerificationError as exc:
            log.warning("webhook signature rejected: %s", exc, extra={"job_id": job_id})
            raise _UNAUTHORIZED from None
    try:
        body = await read_bounded(
            request.stream(), deps.max_body_bytes, request.headers.get("content-length")
        )
    except BodyTooLarge as exc:
        raise ApiError(413, "too_large", f"webhook body too large: {exc}") from None
    webhook_id = request.headers.get(webhooks.ID_HEADER)
    if deps.signing_secret is not None:
        try:
            webhooks.verify(
                deps.signing_secret, request.headers, body, time.time(), deps.tolerance_seconds
            )
        except webhooks.WebhookVerificationError as exc:
            log.warning("webhook signature rejected: %s", exc, extra={"job_id": job_id})
            raise _UNAUTHORIZED from None
    try:
        hook = parse(body, deps.max_body_bytes)
    except InvalidBody as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
    if hook.job_id != job_id:
        raise ApiError(422, "invalid_request", "body job_id does not match the URL's")
    if isinstance(hook, InvalidResult):
        await fail_invalid_result(deps, hook, webhook_id)
    return await handle(deps, hook, webhook_id)


async def fail_invalid_result(
    deps: WebhookDeps, invalid: InvalidResult, webhook_id: str | None
) -> NoReturn:
    """The server's final answer is unusable: the job fails now, not at its deadline.

    Always answered 422 naming the field, so that a repeat of the call (same
    ``webhook-id`` or not) gets the same answer and, the job being final, changes
    nothing; a job that had already ended keeps its end.
    """
    job_id = invalid.job_id
    row = await deps.store.get(job_id)
    if row is None:
        raise await _missing(deps, job_id)
    if not row.state.is_final:
        log.warning("invalid result: %s", invalid.message, extra={"job_id": job_id})
        outcome = Outcome.failed(
            ErrorCode.ANALYSIS_INVALID_RESULT.value,
            f"the analysis server sent an invalid result: {invalid.message}",
        )
        await _publish(deps.finisher.finish(job_id, outcome, webhook_id))
    raise ApiError(422, ErrorCode.ANALYSIS_INVALID_RESULT.value, invalid.message)


async def handle(
    deps: WebhookDeps, hook: AnalysisWebhook, webhook_id: str | None
) -> dict[str, Any]:
    job_id = hook.job_id
    outcome = outcome_of(hook)
    if outcome is not None:
        # A final call goes straight to the conditional claim (of two racing finals
        # exactly one wins); the row is read only when the claim is lost, to tell a
        # replay from a conflict or a deleted job: one statement less per job.
        finish = await _publish(deps.finisher.finish(job_id, outcome, webhook_id))
        if finish is Finish.UNKNOWN:  # never here, or erased: 404 or 410
            raise await _missing(deps, job_id)
        if finish is Finish.CONFLICT:
            raise ApiError(409, "conflict", f"job {job_id} already ended differently")
        return {"job_id": job_id, "outcome": finish.value}
    row = await deps.store.get(job_id)
    if row is None:
        raise await _missing(deps, job_id)
    assert hook.progress is not None  # not final: a progress call, which has one
    verdict = judge_progress(row, hook.progress)
    if verdict is Verdict.PROGRESS:
        progress = job_progress(hook.progress)
        if await deps.store.raise_progress(job_id, progress):
            # Progress is advisory: if this publish fails, the next one or the final
            # status supersedes it, so it is not retried.
            await _publish(deps.finisher.publish_analyzing(job_id, progress, "analyzing"))
        return {"job_id": job_id, "outcome": "progress"}
    return {"job_id": job_id, "outcome": verdict.value}  # a progress call: late or lower


async def _missing(deps: WebhookDeps, job_id: str) -> ApiError:
    """No analysis of the job: it was deleted (410, so that the analysis server stops
    calling back) or never was here (404)."""
    if await deps.store.deleted(job_id):
        return ApiError(410, "job_deleted", f"job {job_id} was deleted")
    return ApiError(404, "not_found", f"no analysis for job {job_id}")


async def _publish(call: Awaitable[T]) -> T:
    """A Kafka failure becomes 503 so the analysis server learns of it; a final state
    already claimed is republished by the sweeper with the same ids."""
    try:
        return await call
    except PublishError as exc:
        log.exception("publishing failed")
        raise ApiError(
            503, "unavailable", "could not record the event; retry", {"Retry-After": "5"}
        ) from exc
