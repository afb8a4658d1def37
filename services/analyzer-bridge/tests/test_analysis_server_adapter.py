import json
from datetime import UTC, datetime

import httpx
import pytest

from analyzer_bridge.adapters.analysis_server import HttpAnalysisServer
from analyzer_bridge.ports import ServerUnreachable
from contracts import AnalysisRequest
from servicekit import webhooks

pytestmark = pytest.mark.unit

REQUEST = AnalysisRequest(
    job_id="j",
    audio_url="http://s3/audio?sig",
    content_type="audio/wav",
    size=3,
    sha256="0" * 64,
    webhook_url="http://edge/tokens/webhook/analysis-complete?job_id=j&token=t",
)


SECRET = "whsec_" + "YW5hbHl6ZXItYnJpZGdlLXRlc3Qtc2lnbmluZy1rZXk="


def server(handler, **kwargs) -> HttpAnalysisServer:
    transport = httpx.MockTransport(handler)
    return HttpAnalysisServer("http://analysis:8105/", 10, transport=transport, **kwargs)


def accepting(seen):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"status": "accepted"})

    return handler


async def test_posts_the_request_to_analyze():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json={"status": "accepted"})

    answer = await server(handler).analyze(REQUEST)
    assert answer.status == 202
    assert str(seen[0].url) == "http://analysis:8105/analyze"
    assert AnalysisRequest.model_validate_json(seen[0].content) == REQUEST


async def test_reports_retry_after_and_the_error_message():
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"code": "busy", "message": "try later"}}
        return httpx.Response(503, json=body, headers={"Retry-After": "7"})

    answer = await server(handler).analyze(REQUEST)
    assert (answer.status, answer.retry_after, answer.message) == (503, "7", "try later")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(400, json={"detail": "bad codec"}), "bad codec"),
        (httpx.Response(400, text="plain words"), "plain words"),
    ],
)
async def test_reads_fastapi_and_plain_text_errors(response, message):
    answer = await server(lambda _: response).analyze(REQUEST)
    assert answer.message == message


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_transport_errors_and_timeouts_mean_unreachable(error):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(ServerUnreachable):
        await server(handler).analyze(REQUEST)


async def test_requests_are_signed_over_their_exact_body_with_the_secret():
    seen: list[httpx.Request] = []
    clock = iter([1_700_000_000, 1_700_000_007, 1_700_000_008])
    signing = server(accepting(seen), signing_secret=SECRET, clock=lambda: next(clock))
    await signing.analyze(REQUEST)
    await signing.analyze(REQUEST)  # a retry of the same job
    for request in seen:
        webhooks.verify(SECRET, request.headers, request.content, now=1_700_000_003)
    first, retry = (r.headers for r in seen)
    # The same message each time (the receiver's idempotency key), stamped anew.
    assert first["webhook-id"] == retry["webhook-id"] and "." not in first["webhook-id"]
    assert (first["webhook-timestamp"], retry["webhook-timestamp"]) == ("1700000000", "1700000007")
    other = REQUEST.model_copy(update={"job_id": "k"})
    await signing.analyze(other)
    assert seen[-1].headers["webhook-id"] != first["webhook-id"]


async def test_without_a_secret_requests_go_unsigned():
    seen: list[httpx.Request] = []
    await server(accepting(seen)).analyze(REQUEST)
    assert not {"webhook-id", "webhook-signature"} & set(seen[0].headers)
    assert seen[0].headers["content-type"] == "application/json"


async def test_the_deadline_is_sent_in_rfc_3339_utc_and_left_out_when_unknown():
    seen: list[httpx.Request] = []
    deadline = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await server(accepting(seen)).analyze(REQUEST.model_copy(update={"deadline": deadline}))
    await server(accepting(seen)).analyze(REQUEST)
    assert json.loads(seen[0].content)["deadline"] == "2030-01-02T03:04:05Z"
    assert "deadline" not in json.loads(seen[1].content)
