"""The edge's security headers (issue 19 point 6; docs/architecture.md §6): every answer,
from the demo page and from each service behind it, says what a browser may do with it."""

import httpx
import pytest

pytestmark = pytest.mark.e2e

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


async def test_demo_page_policy_allows_its_own_files_and_no_inline_script(
    edge_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=edge_url, timeout=10) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert {k: page.headers.get(k) for k in COMMON} == COMMON
    csp = directives(page.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    assert not any("'unsafe-inline'" in v or "'unsafe-eval'" in v for v in csp.values())
    assert "microphone=(self)" in page.headers["permissions-policy"]
    assert "server" not in page.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/tokens/t1/upload-audio"),  # gateway: 4xx, no file
        ("GET", "/jobs/00000000-0000-4000-8000-000000000000"),  # notifier: 401, no token
        ("POST", "/tokens/webhook/analysis-complete"),  # bridge: 4xx, no capability
    ],
)
async def test_api_answers_may_run_and_frame_nothing(edge_url: str, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=edge_url, timeout=10) as client:
        answer = await client.request(method, path)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert {k: answer.headers.get(k) for k in COMMON} == COMMON
    csp = directives(answer.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
