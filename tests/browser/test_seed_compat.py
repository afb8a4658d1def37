"""A page written for the seed works unchanged against the edge (docs/architecture.md §2)."""

import pytest
from playwright.async_api import BrowserContext, Route, expect

from tests.browser.harness import PAGES, picked
from tests.support.audio import sine_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_the_seed_snippet_sees_completed_with_only_the_upload_cookie(
    context: BrowserContext, edge_url: str
) -> None:
    page = await context.new_page()
    # The test page is not shipped in web/: the browser gets it as if the edge served it,
    # so that it has the edge's origin; everything after the page load is the real edge.
    url = f"{edge_url}/seed-compat.html"

    async def serve_page(route: Route) -> None:
        await route.fulfill(path=PAGES / "seed.html")

    await page.route(url, serve_page)
    await page.goto(url)
    await page.unroute(url)

    await page.set_input_files("#file", files=picked("seed.wav", sine_wav(1.5)))
    await page.click("button")

    await expect(page.locator("body")).to_have_attribute("data-final", "completed")
    seen = await page.evaluate("window.seen")
    assert seen[-1]["status"] == "completed"
    assert seen[-1]["progress"] == 100
    assert len({event["job_id"] for event in seen}) == 1
    assert seen[-1]["result"]["duration_seconds"] == pytest.approx(1.5, abs=0.001)
    # The cookie did it: the page never saw a token, and the cookie is HttpOnly.
    assert await page.evaluate("document.cookie") == ""
