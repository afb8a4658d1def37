"""Tracing without an exporter records nothing but keeps trace context
(servicekit.telemetry.configure_tracing). The tracer provider is set once per process,
so each case runs in a fresh interpreter."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import json, os, sys
from opentelemetry import propagate, trace
from servicekit.telemetry import configure_tracing, current_trace_id

configure_tracing("probe")
tracer = trace.get_tracer("probe")
with tracer.start_as_current_span("outer") as outer:
    with tracer.start_as_current_span("inner") as inner:
        carrier = {}
        propagate.inject(carrier)
        print(json.dumps({
            "recording": [outer.is_recording(), inner.is_recording()],
            "same_trace": current_trace_id() == format(outer.get_span_context().trace_id, "032x"),
            "traceparent": carrier.get("traceparent", ""),
        }))
sys.stdout.flush()
os._exit(0)  # no export attempt at exit: nothing listens at the endpoint
"""


def probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], env=clean | env, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_without_an_exporter_spans_are_not_recorded_but_their_context_travels() -> None:
    result = probe()
    assert result["recording"] == [False, False]
    assert result["same_trace"] is True
    traceparent = str(result["traceparent"])
    assert traceparent.startswith("00-") and not traceparent.startswith("00-" + "0" * 32)


def test_with_an_exporter_spans_are_recorded() -> None:
    # Nothing listens there; the spans stay queued during this short run.
    result = probe(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_BSP_SCHEDULE_DELAY="60000"
    )
    assert result["recording"] == [True, True]
