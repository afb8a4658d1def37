"""Issue 20's acceptance, black-box through the edge: upload, wait for `completed`,
`DELETE /jobs/{id}` with the 202's access token; then the job answers 410 and its
recording is gone from S3 (docs/architecture.md §14)."""

import httpx
import pytest
from botocore.exceptions import ClientError

from servicekit.s3 import s3_client
from servicekit.settings import S3Settings
from tests.support.audio import sine_wav
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


async def test_a_deleted_job_is_gone_through_the_edge_and_from_s3(
    edge_url: str, infra: dict[str, str]
) -> None:
    settings = S3Settings(
        s3_endpoint_url=infra["S3_ENDPOINT_URL"],
        s3_access_key_id=infra["S3_ACCESS_KEY_ID"],
        s3_secret_access_key=infra["S3_SECRET_ACCESS_KEY"],
    )
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        accepted = await client.post(
            "/tokens/t1/upload-audio", files={"file": ("tone.wav", sine_wav(1.0), "audio/wav")}
        )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        token = {"access_token": job["access_token"]}
        path = f"/jobs/{job['job_id']}"

        async def completed() -> bool:
            answer = await client.get(path, params=token)
            return answer.status_code == 200 and answer.json()["status"] == "completed"

        await eventually(completed, within=60, what="the job completed")

        # The read-only token of the progress URL may not delete it.
        shared = httpx.URL(job["progress_url"]).params["access_token"]
        refused = await client.delete(path, params={"access_token": shared})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "insufficient_scope"

        deleted = await client.delete(path, params=token)
        assert deleted.status_code in (202, 204), deleted.text

        async def gone() -> bool:
            return (await client.get(path, params=token)).status_code in (404, 410)

        await eventually(gone, within=30, what="the job gone")
        again = await client.delete(path, params=token)
        assert again.status_code in (202, 204, 410), again.text  # repeating it is harmless

    async def erased() -> bool:
        async with s3_client(settings) as s3:
            try:
                await s3.head_object(Bucket=settings.s3_bucket, Key=f"audio/{job['job_id']}")
            except ClientError:
                return True
            return False

    await eventually(erased, within=30, what="the recording erased from S3")
