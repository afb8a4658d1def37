"""Signed webhooks by default (issue 11): the stack generates a signing secret, the
bridge verifies it, and a capability URL alone is no longer enough."""

import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from analyzer_bridge.capability import WEBHOOK_PATH, Capabilities
from devstack import StackInfo
from devstack.config import default_run_dir
from devstack.signing import FILE_NAME
from servicekit.settings import DEV_WEBHOOK_CAPABILITY_SECRET
from servicekit.webhooks import signed_headers
from tests.support.stack import ROOT

pytestmark = pytest.mark.e2e

OTHER_SECRET = "whsec_" + "b3RoZXItc2VjcmV0LW5vdC10aGUtc3RhY2tzLW9uZQ=="


def capability_url(job_id: str) -> str:
    secret = os.environ.get("WEBHOOK_CAPABILITY_SECRET") or DEV_WEBHOOK_CAPABILITY_SECRET
    token = Capabilities(secret, 600).issue(job_id)
    return f"{WEBHOOK_PATH}?job_id={job_id}&token={token}"


def test_the_stack_keeps_its_signing_secret_in_the_run_folder(stack: StackInfo) -> None:
    path = Path(default_run_dir(ROOT)) / FILE_NAME
    assert path.read_text().strip() == stack.env["WEBHOOK_SIGNING_SECRET"]
    assert path.stat().st_mode & 0o077 == 0


async def test_a_valid_capability_url_with_a_wrong_or_no_signature_is_401(
    stack: StackInfo, edge_url: str
) -> None:
    job_id = str(uuid.uuid4())
    body = json.dumps({"job_id": job_id, "status": "progress", "progress": 10}).encode()
    now = int(time.time())
    secret = stack.env["WEBHOOK_SIGNING_SECRET"]
    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        url = capability_url(job_id)
        forged = await client.post(
            url,
            content=body,
            headers={**json_type, **signed_headers(OTHER_SECRET, "m1", now, body)},
        )
        unsigned = await client.post(url, content=body, headers=json_type)
        # Control: the stack's own secret passes the signature check, and the call goes
        # on to the job lookup (this job id was never requested).
        signed = await client.post(
            url, content=body, headers={**json_type, **signed_headers(secret, "m2", now, body)}
        )
    assert forged.status_code == 401, forged.text
    assert forged.json()["error"]["code"] == "unauthorized"
    assert unsigned.status_code == 401, unsigned.text
    assert signed.status_code == 404, signed.text
