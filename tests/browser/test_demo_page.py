"""The demo page at the edge's `/`, driven by a real browser through a real upload."""

from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.browser.harness import MAX_UPLOAD_BYTES, BrowserStack, picked, settled_for_picture
from tests.support.audio import plucked_wav

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "demo.png"
# Passes the gateway's sniffing (RIFF/WAVE), fails the analysis.
NOT_REALLY_WAV = b"RIFF\x00\x10\x00\x00WAVE" + b"\x07" * 4096
STAGES = ["sending", "accepted", "uploading", "uploaded", "analyzing", "completed"]

# Every value a card's data-status takes, in order (a MutationObserver misses none).
RECORD_STATUSES = """
window.statuses = {};
new MutationObserver((records) => {
  for (const r of records) {
    const name = r.target.querySelector(".name").textContent;
    (window.statuses[name] ||= []).push(r.target.dataset.status);
  }
}).observe(document.getElementById("jobs"), {
  subtree: true, attributes: true, attributeFilter: ["data-status"],
});
"""

# What the edge's Content-Security-Policy refused on the page, if anything (issue 19).
RECORD_CSP_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


async def _facts(page: Page, card_name: str) -> dict[str, str]:
    card = page.locator(".card", has_text=card_name)
    rows = card.locator(".facts tr")
    names = await rows.locator("th").all_inner_texts()
    values = await rows.locator("td").all_inner_texts()
    return dict(zip(names, values, strict=True))


async def test_an_upload_shows_live_stages_then_the_analysis_table_and_plot(
    context: BrowserContext, edge_url: str
) -> None:
    page = await context.new_page()
    errors: list[Exception] = []
    page.on("pageerror", lambda error: errors.append(error))
    await page.add_init_script(RECORD_CSP_VIOLATIONS)
    await page.goto(f"{edge_url}/")
    await page.evaluate(RECORD_STATUSES)

    # A file that is not audio, one that only looks like audio, then a real one: one
    # card each, newest on top.
    await page.set_input_files("#file", files=picked("notes.txt", b"hi\n" * 99, "text/plain"))
    refused = page.locator(".card", has_text="notes.txt")
    await expect(refused).to_have_attribute("data-status", "failed")
    await expect(refused.locator(".badge")).to_have_text("refused")
    await expect(refused.locator(".message")).to_have_text(
        "This file is not audio the server understands (WAV, FLAC, MP3, OGG/Opus, M4A or WebM)."
    )

    await page.set_input_files("#file", files=picked("broken.wav", NOT_REALLY_WAV))
    broken = page.locator(".card", has_text="broken.wav")
    await expect(broken).to_have_attribute("data-status", "failed", timeout=90_000)
    await expect(broken.locator(".message")).to_have_text("The file could not be decoded as audio.")

    wav = plucked_wav(seconds=4.0, sample_rate=22050, channels=2)
    await page.set_input_files("#file", files=picked("plucks.wav", wav))
    card = page.locator(".card", has_text="plucks.wav")
    await expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
    await expect(card.locator(".message")).to_have_text("Analysis complete.")
    await expect(card.locator(".bar")).to_have_attribute("aria-valuenow", "100")
    await expect(card.locator(".envelope")).to_be_visible()
    await expect(page.locator(".card").first).to_contain_text("plucks.wav")

    facts = await _facts(page, "plucks.wav")
    assert facts["Duration"] == "4.00 s"
    assert facts["Sample rate"] == "22,050 Hz"
    assert facts["Channels"] == "2 (stereo)"
    assert facts["Format"] == "WAV / PCM_16"
    assert facts["Silence"].endswith(" %") and facts["Silence"] != "0.0 %"  # the silent end

    statuses = (await page.evaluate("window.statuses"))["plucks.wav"]
    assert statuses[0] == "sending" and statuses[-1] == "completed"
    reached = [STAGES.index(s) for s in statuses]
    assert reached == sorted(reached), statuses  # stages only move forward

    assert errors == []  # no script error on the way
    assert await page.evaluate("window.cspViolations") == []  # the edge's policy fits

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await settled_for_picture(page)
    await page.screenshot(path=SCREENSHOT, full_page=True)

    # Delete: the recording, its analysis and its history go everywhere (issue 20).
    await card.locator(".delete").click()
    await expect(card).to_have_attribute("data-status", "deleted")
    await expect(card.locator(".result")).to_be_hidden()
    job_id = await card.get_attribute("data-job-id")
    gone = await page.evaluate(
        "async (path) => (await fetch(path)).status", f"/tokens/analysis-progress/{job_id}"
    )
    assert gone == 410  # the progress stream, with the page's own cookie
    assert errors == []


async def test_a_file_over_the_limit_is_refused_with_a_plain_sentence(
    context: BrowserContext, browser_stack: BrowserStack
) -> None:
    if not browser_stack.configured:
        pytest.skip("the gateway was already running, without this test's upload limit")
    page = await context.new_page()
    await page.goto(f"{browser_stack.edge_url}/")
    big = plucked_wav(seconds=1.0) + b"\0" * MAX_UPLOAD_BYTES
    await page.set_input_files("#file", files=picked("long.wav", big))
    card = page.locator(".card", has_text="long.wav")
    await expect(card).to_have_attribute("data-status", "failed")
    await expect(card.locator(".message")).to_have_text(
        "This file is larger than the server accepts (at most 2.0 MiB)."
    )
