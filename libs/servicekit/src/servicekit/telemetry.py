"""OpenTelemetry tracing (issue 7): one trace per job, from the upload request through
every Kafka message (W3C ``traceparent`` header, FastStream's telemetry middleware), the
analysis request and its webhook (httpx and FastAPI instrumentation), to SSE delivery.

Exporting is configuration and off by default: set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the
standard variable) to send spans over OTLP/HTTP. Tests install their own provider
(e.g. with an in-memory exporter) before the services start; it is kept.
"""

import os

from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["configure_tracing", "current_trace_id"]


def configure_tracing(service: str) -> None:
    """Install a tracer provider once per process; exporting only when configured."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Outgoing calls (the analysis request, its webhooks) carry the trace context.
    HTTPXClientInstrumentor().instrument()


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
