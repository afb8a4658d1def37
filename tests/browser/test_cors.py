"""CORS by configured origins: a page on another port works only when its origin is listed.

The stack runs with ``CORS_ALLOWED_ORIGINS`` naming ``origins.allowed`` (see conftest).
"""

import asyncio
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page

from tests.browser.harness import BrowserStack, Origins, picked
from tests.support.audio import sine_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(autouse=True)
def _needs_cors_settings(browser_stack: BrowserStack) -> None:
    if not browser_stack.configured:
        pytest.skip("gateway/notifier were already running, without this test's CORS origins")


async def _page_at(context: BrowserContext, origin: str) -> tuple[Page, list[str]]:
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    await page.goto(f"{origin}/cross_origin.html")
    wav = sine_wav(seconds=1.0)
    await page.set_input_files("#file", files=picked("cors.wav", wav))
    return page, console


async def _call(page: Page, function: str, argument: str) -> Any:
    # The page's promises settle on their own; the deadline only guards against a hang.
    return await asyncio.wait_for(page.evaluate(f"a => {function}(a)", argument), 90)


async def test_an_allowed_origin_uploads_and_streams_with_the_job_cookie(
    context: BrowserContext, edge_url: str, origins: Origins
) -> None:
    page, _ = await _page_at(context, origins.allowed)

    answer = await _call(page, "upload", edge_url)
    assert answer.get("status") == 202, answer
    job_id = answer["job"]["job_id"]

    # The bare seed path: only the HttpOnly cookie of the cross-origin answer grants it.
    streamed = await _call(page, "follow", f"{edge_url}/tokens/analysis-progress/{job_id}")
    assert "error" not in streamed, streamed
    assert streamed["seen"][-1] == "completed"


async def test_a_page_from_an_unlisted_origin_is_refused_by_the_browser(
    context: BrowserContext, edge_url: str, origins: Origins
) -> None:
    page, console = await _page_at(context, origins.refused)

    # CORS does not keep a form POST from reaching the server; it keeps the page from
    # reading the answer, so the page never learns the job id nor gets its cookie.
    answer = await _call(page, "upload", edge_url)
    assert "job" not in answer, answer
    assert "Failed to fetch" in answer["error"]

    # Even with a valid token in the URL, the stream is refused to this origin.
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        accepted = await client.post(
            "/tokens/t1/upload-audio", files={"file": ("a.wav", sine_wav(0.5), "audio/wav")}
        )
    assert accepted.status_code == 202, accepted.text
    streamed = await _call(page, "follow", edge_url + accepted.json()["progress_url"])
    assert streamed == {"seen": [], "error": "closed"}

    blocked = [line for line in console if "blocked by CORS policy" in line]
    assert any("/upload-audio" in line for line in blocked), console
    assert any("/tokens/analysis-progress/" in line for line in blocked), console
