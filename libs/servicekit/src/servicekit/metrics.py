"""Prometheus metrics of every service, defined once (issue 7).

Each service serves them at ``GET /metrics`` (see :func:`servicekit.http.create_app`).
Kafka messages consumed and produced come from FastStream's Prometheus middleware
(``faststream_*`` series, added by :func:`servicekit.kafka.make_broker`); the rest are
here, named ``audiopipe_*``.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from servicekit.compat.faststream import kafka_consumers
from servicekit.compat.starlette import route_path

__all__ = [
    "ANALYSIS_REQUESTS",
    "ANALYSIS_RETRIES",
    "BYTES_INGESTED",
    "CONSUMER_LAG",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "JOBS_FINISHED",
    "OBJECTS_STORED",
    "S3_PARTS",
    "SSE_STREAMS",
    "UPLOADER_BUFFERED",
    "UPLOADER_BUFFERED_PEAK",
    "UPLOADER_EVICTIONS",
    "UPLOADER_MEMORY_BUDGET",
    "UPLOADER_REREAD_BYTES",
    "UPLOADS",
    "WEBHOOKS",
    "HttpMetrics",
    "registry",
    "watch_consumer_lag",
]

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter(
    "audiopipe_http_requests_total",
    "HTTP requests answered.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "audiopipe_http_request_duration_seconds",
    "Time from request to response start (for SSE: until the stream opens).",
    ["service", "method", "route"],
)
BYTES_INGESTED = Counter("audiopipe_bytes_ingested_total", "Audio bytes accepted by the gateway.")
UPLOADS = Counter("audiopipe_uploads_total", "Uploads by outcome.", ["outcome"])
S3_PARTS = Counter("audiopipe_s3_part_uploads_total", "Multipart parts uploaded to S3.")
OBJECTS_STORED = Counter("audiopipe_objects_stored_total", "Verified objects completed in S3.")
ANALYSIS_REQUESTS = Counter(
    "audiopipe_analysis_requests_total", "Analysis requests by outcome.", ["outcome"]
)
ANALYSIS_RETRIES = Counter("audiopipe_analysis_retries_total", "Analysis request retries.")
WEBHOOKS = Counter("audiopipe_webhooks_total", "Analysis webhooks by outcome.", ["outcome"])
SSE_STREAMS = Gauge("audiopipe_sse_streams_open", "Open SSE progress streams.")
JOBS_FINISHED = Counter(
    "audiopipe_jobs_finished_total", "Jobs that reached a final state.", ["status"]
)
CONSUMER_LAG = Gauge(
    "audiopipe_kafka_consumer_lag",
    "Messages behind the end of each assigned partition.",
    ["group", "topic", "partition"],
)

# The uploader's memory budget (docs/architecture.md §5.2, issue 19).
UPLOADER_MEMORY_BUDGET = Gauge(
    "audiopipe_uploader_memory_budget_bytes",
    "MEMORY_BUDGET_BYTES: the most the uploader holds of open jobs' unfinished parts.",
)
UPLOADER_BUFFERED = Gauge(
    "audiopipe_uploader_buffered_bytes",
    "Bytes of open jobs' unfinished parts held in memory (being filled or on their way to S3).",
)
UPLOADER_BUFFERED_PEAK = Gauge(
    "audiopipe_uploader_buffered_peak_bytes",
    "The most bytes of unfinished parts held at once since the process started.",
)
UPLOADER_EVICTIONS = Counter(
    "audiopipe_uploader_evictions_total",
    "Parts being filled that the uploader let go to stay within its memory budget.",
)
UPLOADER_REREAD_BYTES = Counter(
    "audiopipe_uploader_reread_bytes_total",
    "Bytes of chunks read back from audio.upload for parts that were let go.",
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNTRACKED = frozenset({"/metrics", "/healthz", "/readyz"})


class HttpMetrics:
    """Pure ASGI middleware (no response buffering, so SSE streams pass untouched)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACKED:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_measure(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                route = route_path(scope, "unmatched")
                HTTP_LATENCY.labels(self.service, scope["method"], route).observe(
                    time.perf_counter() - start
                )
            await send(message)

        try:
            await self.app(scope, receive, send_and_measure)
        finally:
            route = route_path(scope, "unmatched")
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()


async def watch_consumer_lag(broker: KafkaBroker, interval: float = 5.0) -> None:
    """Keep :data:`CONSUMER_LAG` current for every grouped subscriber of ``broker``."""
    while True:
        for subscribed in kafka_consumers(broker):
            group, consumer = subscribed.group_id, subscribed.consumer
            if not group:
                continue
            try:
                for tp in consumer.assignment():
                    end = consumer.highwater(tp)
                    if end is None:
                        continue
                    position = await consumer.position(tp)
                    CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(
                        max(0, end - position)
                    )
            except Exception:  # a rebalance in progress; next round
                log.debug("consumer lag not available", exc_info=True)
        await asyncio.sleep(interval)


def registry() -> Any:
    return REGISTRY
