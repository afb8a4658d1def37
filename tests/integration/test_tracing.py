"""One job, one trace: the context travels from the upload request through every Kafka
message, the analysis request and its webhook (issue 7). All services run in this
process so that one in-memory exporter sees every span."""

import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import topics
from servicekit.compat.uvicorn_protocols import DetachingHttpToolsProtocol
from servicekit.kafka import ensure_topics
from servicekit.settings import S3Settings
from servicekit.telemetry import instrument_httpx
from tests.support.audio import sine_wav
from tests.support.inprocess import bound_socket, serving, url_of
from tests.support.kafka import start_group_at_end
from tests.support.s3 import drop_bucket
from tests.support.sse import events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # As servicekit.telemetry.configure_tracing instruments a service's calls.
    instrument_httpx()
    yield exporter
    HTTPXClientInstrumentor().uninstrument()
    exporter.clear()


async def test_one_jobs_spans_across_all_services_share_one_trace(
    infra: dict[str, str], spans: InMemorySpanExporter
) -> None:
    from analyzer_bridge.app import create_app as bridge_app
    from analyzer_bridge.settings import Settings as BridgeSettings
    from gateway.app import create_app as gateway_app
    from gateway.settings import Settings as GatewaySettings
    from notifier.app import create_app as notifier_app
    from notifier.settings import Settings as NotifierSettings
    from reference_analyzer.app import create_app as reference_app
    from reference_analyzer.settings import Settings as ReferenceSettings
    from uploader.app import create_app as uploader_app
    from uploader.settings import Settings as UploaderSettings

    tag = uuid.uuid4().hex[:8]
    kafka = infra["KAFKA_BOOTSTRAP_SERVERS"]
    s3: dict[str, Any] = {k.lower(): v for k, v in infra.items() if k.startswith("S3_")}
    await ensure_topics(kafka, partitions=6)
    await start_group_at_end(kafka, f"trace-uploader-{tag}", topics.AUDIO_UPLOAD)
    await start_group_at_end(kafka, f"trace-notifier-{tag}", topics.JOB_STATUS)
    sockets = {
        name: bound_socket() for name in ("gateway", "uploader", "bridge", "notifier", "reference")
    }
    # Every service that keeps state gets the session's database, never a default one.
    common: dict[str, Any] = {
        "kafka_bootstrap_servers": kafka,
        "database_url": infra["DATABASE_URL"],
    }
    apps = {
        "reference": reference_app(ReferenceSettings(http_port=0)),
        "notifier": notifier_app(
            NotifierSettings(
                **common,
                database_schema=f"notifier_t{tag}",
                consumer_group=f"trace-notifier-{tag}",
            )
        ),
        "bridge": bridge_app(
            BridgeSettings(
                **common,
                **s3,
                database_schema=f"bridge_t{tag}",
                consumer_group=f"trace-bridge-{tag}",
                kafka_auto_offset_reset="latest",
                s3_bucket=f"trace-{tag}",
                analysis_server_url=url_of(sockets["reference"]),
                public_base_url=url_of(sockets["bridge"]),
            )
        ),
        "uploader": uploader_app(
            UploaderSettings(
                **common, **s3, consumer_group=f"trace-uploader-{tag}", s3_bucket=f"trace-{tag}"
            )
        ),
        "gateway": gateway_app(GatewaySettings(**common)),
    }
    bucket = S3Settings.model_validate({**s3, "s3_bucket": f"trace-{tag}"})
    async with AsyncExitStack() as stack:
        stack.push_async_callback(drop_bucket, bucket)  # after the services stopped
        for name, app in apps.items():
            # As servicekit.serve serves each (the notifier: detached=True).
            options = {"http": DetachingHttpToolsProtocol} if name == "notifier" else {}
            await stack.enter_async_context(serving(app, sockets[name], **options))
        spans.clear()
        async with httpx.AsyncClient(base_url=url_of(sockets["gateway"]), timeout=30) as http:
            answer = await http.post(
                "/tokens/t1/upload-audio", files={"file": ("t.wav", sine_wav(0.5), "audio/wav")}
            )
            assert answer.status_code == 202
            job = answer.json()
        async with (
            httpx.AsyncClient(base_url=url_of(sockets["notifier"]), timeout=60) as http,
            http.stream("GET", job["progress_url"]) as stream,
        ):
            async for event in events(stream):
                if event.json()["status"] in ("completed", "failed"):
                    assert event.json()["status"] == "completed"
                    break
            snapshot = await http.get(
                f"/jobs/{job['job_id']}", params={"access_token": job["access_token"]}
            )
            assert snapshot.status_code == 200

    finished = spans.get_finished_spans()
    upload = [
        s
        for s in finished
        if s.attributes
        and s.attributes.get("http.route") == "/tokens/{token_id}/upload-audio"
        and s.kind == trace.SpanKind.SERVER
    ]
    assert len(upload) == 1
    trace_id = upload[0].context.trace_id
    in_trace = [s for s in finished if s.context.trace_id == trace_id]

    def consumed(topic: str) -> bool:
        return any(
            s.kind == trace.SpanKind.CONSUMER and s.name == f"{topic} process" for s in in_trace
        )

    assert consumed(topics.AUDIO_UPLOAD), "uploader"
    assert consumed(topics.AUDIO_STORED), "analyzer-bridge"
    # The notifier consumes in batches; each event's recording joins the event's trace.
    assert any(s.name == "job.status record" for s in in_trace), "notifier"
    webhook = [
        s
        for s in in_trace
        if s.kind == trace.SpanKind.SERVER
        and s.attributes
        and s.attributes.get("http.route") == "/tokens/webhook/analysis-complete"
    ]
    assert webhook, "the analysis server's webhook continues the job's trace"
    assert any(s.name == "sse deliver" for s in in_trace), "the SSE delivery"

    # Credentials in query strings (job tokens, the webhook's capability) reach no span.
    progress_token = job["progress_url"].split("access_token=")[1]
    for span in finished:
        for value in (span.attributes or {}).values():
            text = str(value)
            assert job["access_token"] not in text and progress_token not in text, span.name
            assert "token=ey" not in text, (span.name, text)
    assert any(
        "access_token=REDACTED" in str(v) for s in finished for v in (s.attributes or {}).values()
    ), "the snapshot's URL is recorded, redacted"
