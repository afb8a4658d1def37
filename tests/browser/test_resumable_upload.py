"""The demo page sends large files as resumable uploads (the IETF draft) and resumes
after the network drops: Chromium's offline emulation cuts it mid-upload (issue 13)."""

import asyncio
import re

import pytest
from playwright.async_api import BrowserContext, Request, expect

from tests.browser.harness import MAX_UPLOAD_BYTES, picked
from tests.support.audio import plucked_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


async def test_a_large_file_resumes_after_the_network_drops_and_completes(
    context: BrowserContext, edge_url: str
) -> None:
    page = await context.new_page()
    await page.goto(f"{edge_url}/")
    wav = plucked_wav(seconds=16.0, sample_rate=22050, channels=2)
    assert 1024 * 1024 < len(wav) < MAX_UPLOAD_BYTES
    methods: list[str] = []
    cut: list[asyncio.Task[None]] = []

    def seen(request: Request) -> None:
        if "/uploads/" in request.url:
            methods.append(request.method)
        if request.method == "PATCH" and not cut:
            cut.append(asyncio.ensure_future(context.set_offline(True)))

    page.on("request", seen)
    await page.set_input_files("#file", files=picked("long.wav", wav))
    card = page.locator(".card", has_text="long.wav")
    await expect(card.locator(".message")).to_contain_text("Connection lost")
    await context.set_offline(False)
    await expect(card).to_have_attribute(
        "data-status", re.compile("completed|failed"), timeout=300_000
    )
    message = await card.locator(".message").inner_text()
    assert await card.get_attribute("data-status") == "completed", (message, methods)
    assert "HEAD" in methods  # it asked the server for the offset before resuming
    assert methods.count("PATCH") >= 2
