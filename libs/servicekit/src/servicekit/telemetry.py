"""OpenTelemetry tracing (issue 7): one trace per job, from the upload request through
every Kafka message (W3C ``traceparent`` header, FastStream's telemetry middleware), the
analysis request and its webhook (httpx and FastAPI instrumentation), to SSE delivery.

Exporting is configuration and off by default: set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
standard variable) to send spans over OTLP/HTTP. Tests install their own provider
(e.g. with an in-memory exporter) before the services start; it is kept.
"""

import os
import re
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

__all__ = [
    "SECRET_PARAMETERS",
    "URL_ATTRIBUTES",
    "configure_tracing",
    "current_trace_id",
    "instrument_httpx",
    "redact",
    "redact_async_client_span",
    "redact_client_span",
    "redact_server_span",
]


def configure_tracing(service: str) -> None:
    """Install a tracer provider once per process; exporting only when configured.

    Without an exporter nothing is recorded (the ``ALWAYS_OFF`` sampler): spans are
    still made and their context still travels (``traceparent`` on every message and
    request, the ``trace_id`` of every log line), but no attributes, events or timings
    are kept for nobody to read. Recording every span cost each event's hop a few
    percent of its CPU (issue 21, bench/results/profile-jobs.md). With an exporter the
    standard ``OTEL_TRACES_SAMPLER`` applies (default: every trace)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    resource = Resource.create({"service.name": service})
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider = TracerProvider(resource=resource, sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)
    # Outgoing calls (the analysis request, its webhooks) carry the trace context.
    instrument_httpx()


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


SECRET_PARAMETERS = ("access_token", "token")
"""Query parameters that carry credentials: job access tokens (progress and upload URLs)
and webhook capabilities. Their values never reach a span (issue 19)."""
_SECRET_VALUE = re.compile(rf"((?:^|[?&])(?:{'|'.join(SECRET_PARAMETERS)})=)[^&#\s]*")
URL_ATTRIBUTES = ("http.url", "url.full", "url.query", "http.target")


def redact(text: str) -> str:
    """A URL or query string with the credentials' values replaced."""
    return _SECRET_VALUE.sub(r"\1REDACTED", text)


def _redact_span(span: Any) -> None:
    attributes = getattr(span, "attributes", None)
    if not attributes or not span.is_recording():
        return
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and _SECRET_VALUE.search(value):
            span.set_attribute(name, redact(value))


def redact_server_span(span: Any, scope: dict[str, Any]) -> None:
    """FastAPI instrumentation's ``server_request_hook``: the request's URL attributes
    without credentials (OpenTelemetry redacts only cloud signatures by itself)."""
    _redact_span(span)


def redact_client_span(span: Any, request: Any) -> None:
    """httpx instrumentation's ``request_hook``, for outgoing calls (a webhook URL
    carries its capability)."""
    _redact_span(span)


async def redact_async_client_span(span: Any, request: Any) -> None:
    """The same for ``httpx.AsyncClient``, whose hook must be a coroutine function."""
    _redact_span(span)


def instrument_httpx() -> None:
    """Outgoing calls carry the trace context, and no credential in their spans."""
    HTTPXClientInstrumentor().instrument(
        request_hook=redact_client_span, async_request_hook=redact_async_client_span
    )
