"""Quiet request bodies through the edge (issue 19 point 3): Caddy streams a body as
it arrives and sets no timeout of its own on it, so the gateway sees the client go
quiet and cuts it with 408, which reaches the client at once; a resumable append cut
that way resumes."""

import hashlib

import httpx
import pytest

from devstack import StackInfo
from tests.support.audio import sine_wav, wav_form
from tests.support.slow_client import SlowRequest

pytestmark = pytest.mark.e2e

DRAFT = {"Upload-Draft-Interop-Version": "8"}
ANSWERED_WITHIN = 20
"""The gateway cuts a body quiet for QUIET_SECONDS (3) at its next check; the edge must
pass its answer on while the client's connection is open, not once it gives up on the
body (a minute later without the Caddyfile's ``enable_full_duplex``)."""


async def test_a_one_shot_upload_gone_quiet_gets_408_through_the_edge(stack: StackInfo) -> None:
    body = wav_form(4 * 1024 * 1024, "quiet")
    slow = await SlowRequest.send(
        stack.edge_url,
        "POST",
        "/tokens/t1/upload-audio",
        {
            "Content-Type": "multipart/form-data; boundary=quiet",
            "Content-Length": str(len(body)),
        },
        body[: 256 * 1024],
    )
    status, _, answer = await slow.answer(within=ANSWERED_WITHIN)
    slow.close()
    assert status == 408
    assert answer["error"]["code"] == "upload_timeout"


async def test_a_resumable_append_gone_quiet_through_the_edge_resumes(stack: StackInfo) -> None:
    audio = sine_wav(seconds=20.0, sample_rate=22050, channels=2)  # about 1.7 MiB
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=60) as client:
        created = await client.post(
            "/tokens/t1/upload-audio",
            content=b"",
            headers={**DRAFT, "Upload-Complete": "?0", "Upload-Length": str(len(audio))},
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        sent = len(audio) // 2
        slow = await SlowRequest.send(
            stack.edge_url,
            "PATCH",
            location,
            {
                **DRAFT,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": "0",
                "Upload-Complete": "?1",
                "Content-Length": str(len(audio)),
            },
            audio[:sent],
        )
        status, _, answer = await slow.answer(within=ANSWERED_WITHIN)
        slow.close()
        assert status == 408
        assert answer["error"]["code"] == "upload_timeout"

        head = await client.head(location, headers=DRAFT)
        offset = int(head.headers["upload-offset"])
        assert 0 < offset <= sent
        done = await client.patch(
            location,
            content=audio[offset:],
            headers={
                **DRAFT,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": str(offset),
                "Upload-Complete": "?1",
            },
        )
    assert done.status_code == 202, done.text
    assert done.json()["sha256"] == hashlib.sha256(audio).hexdigest()
