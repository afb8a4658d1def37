"""Uppy (``@uppy/core`` + ``@uppy/tus`` from npm, bundled) in headless Chromium through
the edge (issue 13): the browser goes offline (Chromium's network emulation) as a PATCH
past half the file is sent, Uppy waits, comes back online, asks for the offset and
resumes from it, and the job completes."""

import asyncio
import base64

import pytest
from playwright.async_api import BrowserContext

from tests.browser.harness import load_script, until_true
from tests.support.audio import plucked_wav
from tests.support.tus import FINAL_STATUS, uppy_bundle

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# window.interrupt: "no" → "ready" (a PATCH past half waits in onBeforeRequest) →
# "offline" (the test took the network away; the PATCH goes out and fails).
UPLOAD = """
async ([b64, endpoint]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const seen = [];
  window.interrupt = "no";
  window.failures = [];
  const uppy = new window.Uppy({ autoProceed: false });
  uppy.use(window.UppyTus, {
    endpoint,
    chunkSize: 256 * 1024,
    retryDelays: [0, 500, 1000, 2000],
    async onBeforeRequest(req) {
      const offset = Number(req.getHeader("Upload-Offset") ?? -1);
      if (req.getMethod() === "PATCH" && offset >= bytes.length / 2 && window.interrupt === "no") {
        window.interruptedAt = offset;
        window.interrupt = "ready";
        while (window.interrupt !== "offline") await new Promise((r) => setTimeout(r, 20));
      }
    },
    onShouldRetry(error, attempt, options, next) {
      window.failures.push(String(error));
      return next(error);
    },
    onAfterResponse(req, res) {
      seen.push({
        method: req.getMethod(),
        status: res.getStatus(),
        sent: req.getHeader("Upload-Offset") ?? null,
        offset: res.getHeader("Upload-Offset") ?? null,
        body: req.getMethod() === "POST" ? JSON.parse(res.getBody()) : null,
      });
    },
  });
  const data = new Blob([bytes], { type: "audio/wav" });
  uppy.addFile({ name: "uppy.wav", type: "audio/wav", data });
  const result = await uppy.upload();
  return { successful: result.successful.length, failed: result.failed.length, seen };
}
"""


async def test_uppy_upload_resumes_after_the_browser_was_offline_and_the_job_completes(
    context: BrowserContext, edge_url: str
) -> None:
    page = await context.new_page()
    await page.goto(f"{edge_url}/")
    await load_script(page, edge_url, uppy_bundle())
    wav = plucked_wav(seconds=12.0, sample_rate=22050, channels=2)
    upload = page.evaluate(
        UPLOAD, [base64.b64encode(wav).decode(), f"{edge_url}/tokens/t1/upload-audio"]
    )
    running = asyncio.ensure_future(upload)
    try:
        await until_true(page, "window.interrupt === 'ready'")
        await context.set_offline(True)
        await page.evaluate("window.interrupt = 'offline'")
        await until_true(page, "window.failures.length > 0")
        await context.set_offline(False)
        result = await running
    finally:
        if not running.done():
            running.cancel()
    assert (result["successful"], result["failed"]) == (1, 0)

    seen = result["seen"]
    interrupted_at = await page.evaluate("window.interruptedAt")
    assert interrupted_at >= len(wav) // 2
    assert [s["method"] for s in seen].count("POST") == 1  # created once, never restarted
    heads = [i for i, s in enumerate(seen) if s["method"] == "HEAD"]
    assert heads, seen  # after the failure Uppy asked the server for the offset
    after = seen[heads[0]]
    assert int(after["offset"]) == interrupted_at  # nothing of the failed PATCH was kept
    assert seen[heads[0] + 1]["method"] == "PATCH"
    assert int(seen[heads[0] + 1]["sent"]) == interrupted_at
    assert int(seen[-1]["offset"]) == len(wav)

    job = next(s["body"] for s in seen if s["method"] == "POST")
    status = await page.evaluate(
        FINAL_STATUS, f"{edge_url}{job['status_url']}?access_token={job['access_token']}"
    )
    assert status == "completed"
