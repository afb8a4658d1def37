"""The demo page's Record button (a fake microphone, the browser's own WebM/Opus), its
layout at phone width, and results of any analysis server's shape (issue 10, items 3
and 6)."""

import json
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.harness import picked, settled_for_picture
from tests.support.audio import plucked_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHONE_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "demo-phone.png"
RECORD_SECONDS = 2.0

# Whatever sticks out of the page or of its card, and stage labels wider than their
# box (they ran past the card's edge at 390 px).
OVERFLOWING = """() => {
  const width = document.documentElement.clientWidth, out = [];
  for (const el of document.querySelectorAll("main *")) {
    const r = el.getBoundingClientRect();
    if (r.width && (r.left < -0.5 || r.right > width + 0.5)) out.push(el.className || el.tagName);
  }
  for (const card of document.querySelectorAll(".card")) {
    const edge = card.getBoundingClientRect().right;
    for (const li of card.querySelectorAll(".stages li")) {
      if (li.scrollWidth > li.clientWidth + 1 || li.getBoundingClientRect().right > edge)
        out.push(`stage ${li.textContent}`);
    }
  }
  return { out, scrollWidth: document.documentElement.scrollWidth, width };
}"""


async def _table(card, selector: str) -> dict[str, str]:
    rows = card.locator(f"{selector} tr")
    names = await rows.locator("th").all_inner_texts()
    values = await rows.locator("td").all_inner_texts()
    return dict(zip(names, values, strict=True))


def _watch_errors(page: Page) -> list[Exception]:
    errors: list[Exception] = []
    page.on("pageerror", lambda error: errors.append(error))
    return errors


async def test_a_recording_is_uploaded_as_its_own_job_and_analyzed(
    context: BrowserContext, edge_url: str
) -> None:
    await context.grant_permissions(["microphone"], origin=edge_url)
    page = await context.new_page()
    errors = _watch_errors(page)
    await page.goto(f"{edge_url}/")
    record = page.locator("#record")

    await record.click()
    await expect(record).to_have_attribute("aria-pressed", "true")
    # Stopped from inside the page, so that no round trip lengthens the recording.
    await page.evaluate(
        """(ms) => new Promise((resolve) => setTimeout(() => {
             document.getElementById("record").click(); resolve();
           }, ms))""",
        RECORD_SECONDS * 1000,
    )
    card = page.locator(".card", has_text="recording-")
    await expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
    await expect(record).to_have_attribute("aria-pressed", "false")

    name = await card.locator(".name").inner_text()
    assert name.startswith("recording-") and name.endswith(".webm")  # Chromium's own format
    recorded = float(await card.get_attribute("data-recorded-seconds") or "nan")
    assert RECORD_SECONDS <= recorded < RECORD_SECONDS + 1
    facts = await _table(card, ".facts")
    duration = float(facts["Duration"].removesuffix(" s"))
    assert abs(duration - recorded) <= 0.3, (duration, recorded)
    assert facts["Sample rate"] == "48,000 Hz"  # Opus decodes at 48 kHz
    assert errors == []


async def test_the_page_fits_a_phone_screen(browser: Browser, edge_url: str) -> None:
    context = await browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    context.set_default_timeout(60_000)
    try:
        page = await context.new_page()
        errors = _watch_errors(page)
        await page.goto(f"{edge_url}/")
        await page.set_input_files("#file", files=picked("plucks.wav", plucked_wav(seconds=3.0)))
        card = page.locator(".card", has_text="plucks.wav")
        await expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
        await expect(card.locator(".envelope")).to_be_visible()

        layout = await page.evaluate(OVERFLOWING)
        assert layout["out"] == []
        assert layout["scrollWidth"] <= layout["width"] == 390
        assert errors == []
        PHONE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await settled_for_picture(page)
        await page.screenshot(path=PHONE_SCREENSHOT, full_page=True)
    finally:
        await context.close()


async def test_a_result_of_another_servers_shape_is_shown_field_by_field(
    context: BrowserContext, edge_url: str
) -> None:
    """The upload and its progress stream are played back by the browser itself, with
    the result an analysis server other than the reference one might send."""
    job_id = str(uuid.uuid4())
    result = {
        "duration_s": 2.5,
        "sample_rate": 16000,
        "channels": 1,
        "integrated_lufs": -23.04,
        "loudness_range_lu": 4.5,
        "true_peak_dbtp": -1.2,
        "labels": ["speech", "noise"],
        "model": "tiny-v2",
    }
    events = [
        {"job_id": job_id, "status": "analyzing", "progress": 60},
        {"job_id": job_id, "status": "completed", "progress": 100, "result": result},
    ]
    stream = "".join(f"id: {i}\ndata: {json.dumps(e)}\n\n" for i, e in enumerate(events, 1))

    async def accept(route: Route) -> None:
        await route.fulfill(
            status=202,
            json={
                "job_id": job_id,
                "status": "accepted",
                "progress": 0,
                "size": 1234,
                "content_type": "audio/wav",
                "progress_url": f"/tokens/analysis-progress/{job_id}",
            },
        )

    async def progress(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/event-stream", body=stream)

    page = await context.new_page()
    errors = _watch_errors(page)
    await page.route("**/tokens/demo/upload-audio", accept)
    await page.route(f"**/tokens/analysis-progress/{job_id}", progress)
    await page.goto(f"{edge_url}/")
    await page.set_input_files("#file", files=picked("speech.wav", plucked_wav(seconds=0.5)))

    card = page.locator(".card", has_text="speech.wav")
    await expect(card).to_have_attribute("data-status", "completed")
    assert await _table(card, ".facts") == {
        "Sample rate": "16,000 Hz",
        "Channels": "1 (mono)",
        "True peak": "-1.2 dBTP",
        "Integrated loudness": "-23.0 LUFS",
        "Loudness range": "4.5 LU",
    }
    assert await _table(card, ".extra") == {
        "duration_s": "2.5",
        "labels": '["speech","noise"]',
        "model": "tiny-v2",
    }
    await expect(card.locator("figure")).to_be_hidden()
    assert errors == []
