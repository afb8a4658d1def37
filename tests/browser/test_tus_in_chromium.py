"""tus-js-client (from npm) in headless Chromium through the edge: the upload is
aborted half way, resumed from the server's offset and the job completes (issue 13)."""

import base64

import pytest
from playwright.async_api import BrowserContext

from tests.browser.harness import load_script
from tests.support.audio import plucked_wav
from tests.support.tus import FINAL_STATUS, tus_client_dir

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

UPLOAD = """
async ([b64, endpoint]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const file = new Blob([bytes], { type: "audio/wav" });
  const seen = [];
  let body = null;
  const run = (stopAt) => new Promise((resolve, reject) => {
    const upload = new tus.Upload(file, {
      endpoint, chunkSize: 256 * 1024, retryDelays: [0, 500],
      uploadUrl: window.uploadUrl || null, storeFingerprintForResuming: false,
      metadata: { filename: "browser.wav", filetype: "audio/wav" },
      onAfterResponse(req, res) {
        seen.push(req.getMethod());
        if (req.getMethod() === "POST") body = JSON.parse(res.getBody());
      },
      onProgress(sent) {
        if (stopAt && sent >= stopAt) {
          window.uploadUrl = upload.url;
          upload.abort().then(() => resolve("stopped"));
        }
      },
      onError: (e) => reject(String(e)),
      onSuccess: () => resolve("done"),
    });
    upload.start();
  });
  const first = await run(bytes.length / 2);
  const second = await run(null);
  return { first, second, seen, body };
}
"""


async def test_tus_js_client_in_chromium_resumes_and_the_job_completes(
    context: BrowserContext, edge_url: str
) -> None:
    page = await context.new_page()
    await page.goto(f"{edge_url}/")
    bundle = tus_client_dir() / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"
    await load_script(page, edge_url, bundle)
    wav = plucked_wav(seconds=8.0, sample_rate=22050, channels=2)
    endpoint = f"{edge_url}/tokens/t1/upload-audio"
    result = await page.evaluate(UPLOAD, [base64.b64encode(wav).decode(), endpoint])
    assert (result["first"], result["second"]) == ("stopped", "done")
    assert "HEAD" in result["seen"]  # the second run asked for the offset
    job = result["body"]
    status = await page.evaluate(
        FINAL_STATUS, f"{edge_url}{job['status_url']}?access_token={job['access_token']}"
    )
    assert status == "completed"
