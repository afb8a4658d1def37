"""A page written for the seed works unchanged against the edge (docs/architecture.md §2)."""

import pytest
from playwright.async_api import BrowserContext, expect

from tests.browser.harness import seed_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_the_seed_snippet_sees_completed_with_only_the_upload_cookie(
    context: BrowserContext, edge_url: str
) -> None:
    page = await seed_page(context, edge_url)

    await expect(page.locator("body")).to_have_attribute("data-final", "completed")
    seen = await page.evaluate("window.seen")
    assert seen[-1]["status"] == "completed"
    assert seen[-1]["progress"] == 100
    assert len({event["job_id"] for event in seen}) == 1
    assert seen[-1]["result"]["duration_seconds"] == pytest.approx(1.5, abs=0.001)
    # The cookie did it: the page never saw a token, and the cookie is HttpOnly.
    assert await page.evaluate("document.cookie") == ""
