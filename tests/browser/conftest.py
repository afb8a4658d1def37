"""A real browser (Debian's headless chromium) against the whole stack.

The services get ``CORS_ALLOWED_ORIGINS`` naming one of two small static servers of the
pages in ``pages/``, so that one page origin is allowed and the other is not.
"""

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright

from tests.browser.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MAX_UPLOAD_BYTES,
    BrowserStack,
    Origins,
    PageServer,
)
from tests.support.stack import running_stack


@pytest.fixture(scope="package")
def origins() -> Iterator[Origins]:
    with PageServer() as allowed, PageServer() as refused:
        yield Origins(allowed=allowed.origin, refused=refused.origin)


@pytest.fixture(scope="package")
def browser_stack(infra: dict[str, str], origins: Origins) -> Iterator[BrowserStack]:
    app_env = {
        "CORS_ALLOWED_ORIGINS": json.dumps([origins.allowed]),
        "MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
    }
    with running_stack(infra, app_env) as info:
        reused = {"gateway", "notifier"} & set(info.reused)
        yield BrowserStack(edge_url=info.edge_url, configured=not reused)


@pytest.fixture(scope="package")
def edge_url(browser_stack: BrowserStack) -> str:
    return browser_stack.edge_url


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: `make browser` installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile per test: no cookies from another test."""
    context = await browser.new_context(viewport={"width": 900, "height": 900})
    context.set_default_timeout(60_000)
    try:
        yield context
    finally:
        await context.close()
