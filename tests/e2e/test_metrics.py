"""Every service exposes Prometheus metrics, and a job moves them (issue 7)."""

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.audio import sine_wav
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

SERVICES = ("gateway", "uploader", "analyzer-bridge", "notifier")
# The stack runs two notifier replicas; a job's counters move on whichever owns it.
REPLICAS = {"notifier": ("notifier", "notifier-2")}


async def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


async def scrape_replicas(
    service_urls: dict[str, str], service: str
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The samples of every replica of ``service``, summed."""
    summed: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for replica in REPLICAS.get(service, (service,)):
        if replica not in service_urls:
            continue
        for key, value in (await scrape(service_urls[replica])).items():
            summed[key] = summed.get(key, 0.0) + value
    return summed


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_a_job_moves_the_counters_of_every_service(
    edge_url: str, service_urls: dict[str, str]
) -> None:
    before = {name: await scrape_replicas(service_urls, name) for name in SERVICES}
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        accepted = await client.post(
            "/tokens/t1/upload-audio", files={"file": ("m.wav", sine_wav(1.0), "audio/wav")}
        )
        assert accepted.status_code == 202
        job = accepted.json()

        async def finished() -> bool:
            answer = await client.get(
                job["status_url"], params={"access_token": job["access_token"]}
            )
            return answer.status_code == 200 and answer.json()["status"] in ("completed", "failed")

        await eventually(finished, within=60, every=0.2, what="the job to finish")
    after = {name: await scrape_replicas(service_urls, name) for name in SERVICES}

    def moved(service: str, name: str, **labels: str) -> float:
        return total(after[service], name, **labels) - total(before[service], name, **labels)

    assert moved("gateway", "audiopipe_uploads_total", outcome="accepted") == 1
    assert moved("gateway", "audiopipe_bytes_ingested_total") == job["size"]
    assert (
        moved(
            "gateway",
            "audiopipe_http_requests_total",
            route="/tokens/{token_id}/upload-audio",
            status="202",
        )
        == 1
    )
    # A file within one part is one PutObject, no multipart part (uploader.assembly).
    assert moved("uploader", "audiopipe_objects_stored_total") >= 1
    # Downstream services may also be working through jobs that other tests left on the
    # shared topics: at least this job's share moved.
    assert moved("analyzer-bridge", "audiopipe_analysis_requests_total", outcome="accepted") >= 1
    # Only the final webhook for certain: progress is reported by time, and this short
    # analysis ends before the reference analyzer's first progress report is due.
    assert moved("analyzer-bridge", "audiopipe_webhooks_total", outcome="final") >= 1
    assert moved("notifier", "audiopipe_jobs_finished_total", status="completed") >= 1
    for service in ("uploader", "analyzer-bridge", "notifier"):
        assert moved(service, "faststream_received_messages_total") >= 1, service
    for service in ("gateway", "uploader", "analyzer-bridge"):
        assert moved(service, "faststream_published_messages_total") >= 1, service
