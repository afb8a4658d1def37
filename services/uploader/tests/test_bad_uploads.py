"""Bad uploads get a clear 4xx and leave nothing behind: no job status, no S3 object,
no multipart upload (issue 3), on the real gateway, broker, uploader and S3 server."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from uploader_rig import WAV_HEADER, UploadRig, audio_bytes

from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
LIMIT = 3 * MiB
BOUNDARY = "b0undary"


def form(data: bytes, field: str = "file") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="a.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 256 * 1024):
        yield body[i : i + 256 * 1024]


async def cut_off_upload(url: str, body: bytes, sent: int) -> None:
    """Declare the whole body, send only ``sent`` bytes of it, then hang up."""
    parts = urlsplit(url)
    _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        (
            "POST /tokens/t1/upload-audio HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:sent]
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_each_bad_upload_is_refused_and_leaves_nothing_behind(rig: UploadRig) -> None:
    gateway = await rig.service("gateway", MAX_UPLOAD_BYTES=str(LIMIT))
    await rig.service("uploader")
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "missing file field",
            dict(content=form(WAV_HEADER, field="other"), headers=multipart),
            422,
            "missing_file",
        ),
        ("empty file", dict(content=form(b""), headers=multipart), 422, "empty_file"),
        (
            "not audio",
            dict(content=form(b"%PDF-1.7\n" + bytes(5000)), headers=multipart),
            415,
            "not_audio",
        ),
        (
            "declared size over the limit",
            dict(content=form(audio_bytes(LIMIT + MiB)), headers=multipart),
            413,
            "too_large",
        ),
        (
            "streamed size over the limit",
            dict(content=chunked(form(audio_bytes(LIMIT + MiB))), headers=multipart),
            413,
            "too_large",
        ),
        (
            "malformed multipart",
            dict(content=form(audio_bytes(MiB))[:-20], headers=multipart),
            400,
            "malformed_form",
        ),
        ("not multipart", dict(json={"file": "x"}), 415, "unsupported_media_type"),
    ]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        for name, request, status, code in cases:
            answer = await http.post("/tokens/t1/upload-audio", **request)
            assert answer.status_code == status, (name, answer.text)
            assert answer.json()["error"]["code"] == code, name
        bad_token = await http.post(
            "/tokens/not%20ok/upload-audio", content=form(WAV_HEADER), headers=multipart
        )
        assert bad_token.status_code == 422
        assert bad_token.json()["error"]["code"] == "invalid_token_id"
    await cut_off_upload(gateway.url, form(audio_bytes(2 * MiB)), sent=MiB + 4096)

    # A good upload after all of them: once it is stored, the bad ones were seen too
    # (same partitions are not guaranteed, so also wait for the gateway's abort log).
    good = await rig.upload(gateway, audio_bytes(MiB))
    await eventually(lambda: "uploaded" in rig.status.statuses(good["job_id"]), what="good one")
    await eventually(lambda: gateway.log().count("upload aborted") >= 3, what="aborts")

    async def no_multipart_left() -> bool:
        return await rig.multipart_uploads() == []

    await eventually(no_multipart_left, within=10, what="no multipart upload left")
    assert list(await rig.objects()) == [f"audio/{good['job_id']}"]
    assert set(rig.status.seen) == {good["job_id"]}


async def test_abandoned_multipart_uploads_are_aborted_but_open_ones_kept(rig: UploadRig) -> None:
    from datetime import timedelta

    from uploader.adapters.s3 import S3ObjectStore
    from uploader.sweeper import sweep

    settings = rig.s3_settings.model_copy(update={"s3_create_bucket": True})
    async with S3ObjectStore(settings) as store:
        abandoned = await store.start("audio/crashed-job", "audio/wav")
        open_job = await store.start("audio/open-job", "audio/wav")
        aborted = await sweep(store, "audio/", timedelta(0), owned={open_job})
        assert aborted == ["audio/crashed-job"]
        left = {upload_id for _, upload_id, _ in await store.unfinished("audio/")}
        assert left == {open_job}
        assert abandoned not in left
        assert await sweep(store, "audio/", timedelta(hours=1), owned=set()) == []
        await store.abort("audio/open-job", open_job)
