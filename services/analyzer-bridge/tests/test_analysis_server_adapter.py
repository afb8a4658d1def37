import httpx
import pytest

from analyzer_bridge.adapters.analysis_server import HttpAnalysisServer
from analyzer_bridge.ports import ServerUnreachable
from contracts import AnalysisRequest

pytestmark = pytest.mark.unit

REQUEST = AnalysisRequest(
    job_id="j",
    audio_url="http://s3/audio?sig",
    content_type="audio/wav",
    size=3,
    sha256="0" * 64,
    webhook_url="http://edge/tokens/webhook/analysis-complete?job_id=j&token=t",
)


def server(handler) -> HttpAnalysisServer:
    return HttpAnalysisServer("http://analysis:8105/", 10, transport=httpx.MockTransport(handler))


async def test_posts_the_request_to_analyze():
    seen = []

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
