"""What the browser tests share besides fixtures: the browser's flags, the stack's
settings for them, and a static server for the test pages."""

import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.async_api import BrowserContext, FilePayload, Page, Route

from tests.support.audio import sine_wav
from tests.support.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
PAGES = Path(__file__).parent / "pages"
# The gateway's limit for these tests: small, so that "too large" is quick to provoke.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
# Playwright drives the system chromium (it never downloads a browser of its own); each
# launch gets a fresh temporary profile. Nothing runs in the background to phone home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (a beeping tone) that needs no permission prompt, for recording.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class PageServer:
    """The test pages, served on a port of their own: an origin other than the edge."""

    def __init__(self) -> None:
        handler = partial(_QuietHandler, directory=str(PAGES))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "PageServer":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@dataclass(frozen=True)
class Origins:
    allowed: str
    refused: str


@dataclass(frozen=True)
class BrowserStack:
    edge_url: str
    # Whether gateway and notifier run with app_env; ones that were already running are
    # reused with whatever settings they have.
    configured: bool


def picked(name: str, data: bytes, mime_type: str = "audio/wav") -> list[FilePayload]:
    """A file as a person would pick it in the page's file input."""
    return [{"name": name, "mimeType": mime_type, "buffer": data}]


async def seed_page(context: BrowserContext, edge_url: str) -> Page:
    """The seed's page, unchanged, uploading a 1.5 s tone. The page is not shipped in
    web/: the browser gets it as if the edge served it, so that it has the edge's origin;
    everything after the page load is the real edge."""
    page = await context.new_page()
    url = f"{edge_url}/seed-compat.html"

    async def serve_page(route: Route) -> None:
        await route.fulfill(path=PAGES / "seed.html")

    await page.route(url, serve_page)
    await page.goto(url)
    await page.unroute(url)
    await page.set_input_files("#file", files=picked("seed.wav", sine_wav(1.5)))
    await page.click("button")
    return page


# Transitions (the progress bar's width) still running; a picture taken before they end
# shows a finished job's bar short of full.
NO_ANIMATIONS = "document.getAnimations().length === 0"
FINISHED_BARS = """
[...document.querySelectorAll('.card[data-status="completed"]')].map((card) => {
  const bar = card.querySelector(".bar"), fill = card.querySelector(".fill");
  return fill.getBoundingClientRect().width / bar.clientWidth;
})
"""


async def settled_for_picture(page: Page) -> None:
    """Wait until the page's transitions have ended; then every finished job's bar is
    full, as the picture must show it."""

    # Polled with evaluate: wait_for_function would eval a string, which the page's
    # Content-Security-Policy (no 'unsafe-eval') refuses.
    async def still() -> bool:
        return bool(await page.evaluate(NO_ANIMATIONS))

    await eventually(still, within=10, every=0.05, what="the page's transitions to end")
    fractions = await page.evaluate(FINISHED_BARS)
    assert fractions and all(f > 0.99 for f in fractions), fractions


async def load_script(page: Page, edge_url: str, path: Path) -> None:
    """A client library's bundle in the edge's page as a script of the page's own origin:
    the edge's Content-Security-Policy (``script-src 'self'``) refuses inline scripts,
    which ``add_script_tag(path=...)`` would make. The browser asks the edge's origin for
    it and Playwright answers with the file."""
    url = f"{edge_url}/__tests__/{path.name}"

    async def serve(route: Route) -> None:
        await route.fulfill(path=str(path), content_type="text/javascript")

    await page.route(url, serve)
    await page.add_script_tag(url=url)


async def until_true(page: Page, expression: str, within: float = 60) -> None:
    """Wait until ``expression`` is true in the page, polling with evaluate
    (``wait_for_function`` evals a string, which the page's policy refuses)."""

    async def holds() -> bool:
        return bool(await page.evaluate(expression))

    await eventually(holds, within=within, every=0.05, what=expression)
