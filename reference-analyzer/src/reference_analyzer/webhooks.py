"""Sending webhooks: signed (Standard Webhooks), retried, in order.

:class:`WebhookSender` delivers one message with retries: connection errors, 429 and
5xx are retried with exponential backoff and jitter (honouring ``Retry-After``); other
answers are final. The ``webhook-id`` stays the same across the retries of a message
and the timestamp and signature are those of each attempt, as the spec requires.

:class:`JobWebhooks` is the sequence of one analysis run: increasing ``progress``
messages, then one final message, shaped by the run's test mode. Progress is sent
beside the analysis, not in its way: a receiver's round trip (the bridge records and
publishes each one) costs a short clip more than decoding it does (issue 14).
"""

import asyncio
import base64
import contextlib
import os
import time
import uuid

import httpx

from contracts import AnalysisRequest, AnalysisWebhook, WebhookStatus
from reference_analyzer.jobs import JobRecord
from reference_analyzer.logs import JobLogger, url_host
from reference_analyzer.modes import Behaviour, Mode, Signing
from servicekit import webhooks
from servicekit.retry import backoff_delay, parse_retry_after

# For `reference.sign=invalid`: a well-formed signature that no receiver can verify.
_WRONG_SECRET = webhooks.SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode("ascii")


def new_message_id() -> str:
    """A fresh, unique ``webhook-id``; without `.`, which the spec forbids in ids because
    the signed content is ``{id}.{timestamp}.{body}``."""
    return f"msg_{uuid.uuid4().hex}"


def webhook_headers(secret: str | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (signed by :mod:`servicekit.webhooks`);
    unsigned when ``secret`` is None. A retry keeps ``msg_id``, the receiver's
    idempotency key, and gets a new timestamp and signature."""
    if secret is not None:
        return webhooks.signed_headers(secret, msg_id, timestamp, body)
    return {webhooks.ID_HEADER: msg_id, webhooks.TIMESTAMP_HEADER: str(timestamp)}


class WebhookSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        secret: str | None,
        attempts: int,
        timeout_seconds: float,
        backoff_seconds: float,
        max_delay_seconds: float,
    ) -> None:
        self._client = client
        self._secret = secret
        self._attempts = attempts
        self._timeout = httpx.Timeout(timeout_seconds)
        self._backoff = backoff_seconds
        self._max_delay = max_delay_seconds

    def _secret_for(self, signing: Signing) -> str | None:
        if signing is Signing.OFF:
            return None
        if signing is Signing.INVALID:
            return _WRONG_SECRET
        return self._secret

    async def deliver(
        self, url: str, body: bytes, msg_id: str, *, signing: Signing, log: JobLogger
    ) -> bool:
        """POST ``body`` to ``url`` until a 2xx or a final refusal; True if delivered."""
        secret = self._secret_for(signing)
        for attempt in range(1, self._attempts + 1):
            headers = webhook_headers(secret, msg_id, int(time.time()), body)
            headers["content-type"] = "application/json"
            retry_after: float | None = None
            try:
                response = await self._client.post(
                    url, content=body, headers=headers, timeout=self._timeout
                )
            except httpx.TransportError as exc:
                reason = type(exc).__name__  # its text may quote the URL
            else:
                if response.is_success:
                    return True
                reason = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    log.warning("webhook %s refused by %s: %s", msg_id, url_host(url), reason)
                    return False
                retry_after = parse_retry_after(
                    response.headers.get("retry-after"), cap=self._max_delay
                )
            if attempt == self._attempts:
                break
            delay = backoff_delay(attempt, self._backoff, self._max_delay, retry_after)
            log.info(
                "webhook %s to %s failed (%s); retry in %.2fs", msg_id, url_host(url), reason, delay
            )
            await asyncio.sleep(delay)
        log.error(
            "webhook %s to %s not delivered after %d attempts",
            msg_id,
            url_host(url),
            self._attempts,
        )
        return False


class JobWebhooks:
    """The webhooks of one analysis run. ``silent`` sends none; ``twice`` delivers the
    final message twice, with the same id and body, as a redelivery would.

    Progress is time-based: at most one progress message per ``interval`` seconds, the
    first one ``interval`` after the run started, carrying the latest value reached. An
    analysis shorter than ``interval`` sends only its result; a long one reports progress
    every ``interval`` (docs/architecture.md §7: any number of progress webhooks). Each
    progress webhook costs the receiving side an HTTP request, a signature check, a
    Kafka event and a push to every stream of the job, so steps a person could not tell
    apart are not sent (issue 21). ``interval`` 0 reports every step.

    :meth:`progress` does not wait for the receiver. One progress message is on its way
    at a time, in order; a newer value replaces one still waiting for its turn, so a
    receiver slower than the analysis gets fewer, later values instead of holding the
    analysis up. :meth:`finish` sends the final message after the progress on its way
    and the latest one waiting, so the receiver sees the run's messages in order; a value
    held back by the interval is dropped, as the result supersedes it.
    """

    def __init__(
        self,
        sender: WebhookSender,
        request: AnalysisRequest,
        behaviour: Behaviour,
        record: JobRecord,
        log: JobLogger,
        *,
        interval: float = 0.0,
    ) -> None:
        self._sender = sender
        self._request = request
        self._behaviour = behaviour
        self._record = record
        self._log = log
        self._interval = interval
        self._last_progress = -1
        self._waiting: AnalysisWebhook | None = None
        self._progress_task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._next_at = self._loop.time() + interval
        self._held: AnalysisWebhook | None = None
        self._timer: asyncio.Task[None] | None = None

    async def progress(self, value: int) -> None:
        """Report progress; values that would not increase it are skipped."""
        value = min(max(value, 0), 100)
        if value <= self._last_progress:
            return
        self._last_progress = value
        message = AnalysisWebhook(
            job_id=self._request.job_id, status=WebhookStatus.PROGRESS, progress=value
        )
        if self._loop.time() < self._next_at:
            self._held = message
            if self._timer is None:
                self._timer = asyncio.create_task(self._release_held())
            return
        self._post(message)

    def _post(self, message: AnalysisWebhook) -> None:
        self._next_at = self._loop.time() + self._interval
        if self._progress_task is None or self._progress_task.done():
            # Handed to the task, so it is sent even if the run finishes at once.
            self._progress_task = asyncio.create_task(self._send_progress(message))
        else:
            self._waiting = message

    async def _release_held(self) -> None:
        await asyncio.sleep(self._next_at - self._loop.time())
        self._timer = None
        message, self._held = self._held, None
        if message is not None:
            self._post(message)

    async def _send_progress(self, message: AnalysisWebhook | None) -> None:
        while message is not None:
            try:
                await self._send(message, new_message_id())
            except Exception:
                # Progress is advisory; the final message must still go.
                self._log.exception("sending a progress webhook crashed")
            message, self._waiting = self._waiting, None

    async def _stop_timer(self) -> None:
        timer, self._timer, self._held = self._timer, None, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def finish(self, message: AnalysisWebhook) -> None:
        await self._stop_timer()
        if self._progress_task is not None:
            await self._progress_task
        msg_id = new_message_id()
        times = 2 if self._behaviour.mode is Mode.TWICE else 1
        for _ in range(times):
            await self._send(message, msg_id)
        self._log.info("analysis %s", message.status.value)

    async def cancel(self) -> None:
        """Stop a progress message still on its way (the run was cancelled)."""
        await self._stop_timer()
        task, self._progress_task = self._progress_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send(self, message: AnalysisWebhook, msg_id: str) -> None:
        if self._behaviour.mode is Mode.SILENT:
            self._log.debug("silent mode: %s webhook not sent", message.status.value)
            return
        body = message.model_dump_json(exclude_none=True).encode()
        delivered = await self._sender.deliver(
            self._request.webhook_url,
            body,
            msg_id,
            signing=self._behaviour.signing,
            log=self._log,
        )
        if delivered:
            self._record.delivered[message.status.value] += 1
        else:
            self._record.undelivered += 1
