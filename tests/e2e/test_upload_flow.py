"""One upload through the edge, the way a seed frontend does it, to a verified result."""

import hashlib

import httpx
import pytest

from servicekit.s3 import s3_client
from servicekit.settings import S3Settings
from tests.support.audio import sine_wav
from tests.support.sse import events

pytestmark = pytest.mark.e2e


async def test_an_upload_streams_progress_to_completed_with_real_features(
    edge_url: str, infra: dict[str, str]
) -> None:
    audio = sine_wav(seconds=3.5, sample_rate=22050, channels=2)
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        accepted = await client.post(
            "/tokens/t1/upload-audio", files={"file": ("tone.wav", audio, "audio/wav")}
        )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert job["status"] == "accepted"
        assert job["sha256"] == hashlib.sha256(audio).hexdigest()

        progress_path = f"/tokens/analysis-progress/{job['job_id']}"
        async with httpx.AsyncClient(base_url=edge_url) as stranger:
            assert (await stranger.get(progress_path)).status_code == 401

        seen = []
        # As the seed's page does: the bare path, with the cookie the upload response set.
        async with client.stream("GET", progress_path, timeout=120) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            async for event in events(stream):
                assert event.event is None  # default type, so EventSource.onmessage fires
                seen.append(event.json())
                if seen[-1]["status"] in ("completed", "failed"):
                    break

    statuses = [e["status"] for e in seen]
    assert statuses[-1] == "completed", seen[-1]
    assert all(e["job_id"] == job["job_id"] for e in seen)
    progress = [e["progress"] for e in seen]
    assert progress == sorted(progress) and progress[-1] == 100
    result = seen[-1]["result"]
    assert result["sample_rate"] == 22050
    assert result["channels"] == 2
    assert result["duration_seconds"] == pytest.approx(3.5, abs=0.001)

    settings = S3Settings(
        s3_endpoint_url=infra["S3_ENDPOINT_URL"],
        s3_access_key_id=infra["S3_ACCESS_KEY_ID"],
        s3_secret_access_key=infra["S3_SECRET_ACCESS_KEY"],
    )
    async with s3_client(settings) as s3:
        obj = await s3.get_object(Bucket=settings.s3_bucket, Key=f"audio/{job['job_id']}")
        body = await obj["Body"].read()
    assert hashlib.sha256(body).hexdigest() == job["sha256"]
    assert obj["Metadata"]["sha256"] == job["sha256"]
