"""A progress stream survives its notifiers being killed (kill -9) and restarted.

A browser's EventSource gives up for good on any answer but 200, so while the notifiers
restart the edge must hold the reconnect (Caddy's lb_try_duration) instead of answering
502. The stack is this module's own (its run folder, its ports, two notifier replicas,
a slow reference analyzer so that the jobs are still analysing when the kill comes):
killing its processes disturbs no other test.
"""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from devstack import Stack
from tests.browser.harness import picked, seed_page
from tests.support.audio import plucked_wav
from tests.support.ownstack import kill9, own_stack, restart
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SHIFT = 300
# The analysis pauses this long after it has begun: the kill lands while both jobs are
# `analyzing`, and the restart has time to happen before or after they complete.
ANALYSIS_DELAY_SECONDS = 8
NOTIFIERS = ("notifier", "notifier-2")
PROGRESS = "/tokens/analysis-progress/"

# Observes every EventSource a page makes (the pages' own code stays as it is): each
# open and error event, with the readyState it left the source in (0: reconnecting).
RECORD_EVENTSOURCE = """
window.eventSourceLog = [];
const NativeEventSource = window.EventSource;
window.EventSource = class extends NativeEventSource {
  constructor(...args) {
    super(...args);
    this.addEventListener("open", () => window.eventSourceLog.push("open"));
    this.addEventListener("error", () => window.eventSourceLog.push(`error:${this.readyState}`));
  }
};
"""


@pytest.fixture(scope="module")
def restart_stack() -> Iterator[Stack]:
    metadata = {"reference.mode": "slow", "reference.delay_seconds": str(ANALYSIS_DELAY_SECONDS)}
    extra = {"ANALYSIS_REQUEST_METADATA": json.dumps(metadata)}
    with own_stack("notifier-restart", SHIFT, extra) as (stack, _):
        yield stack


@pytest.fixture
async def recorded(context: BrowserContext) -> BrowserContext:
    await context.add_init_script(RECORD_EVENTSOURCE)
    return context


async def _demo_page(context: BrowserContext, edge_url: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{edge_url}/")
    await page.set_input_files("#file", files=picked("plucks.wav", plucked_wav(2.0)))
    return page


def _progress_requests(log: Path) -> list[dict[str, Any]]:
    """The edge's access-log entries of progress streams (one per finished request)."""
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("logger", "").startswith("http.log.access") and entry["request"][
            "uri"
        ].startswith(PROGRESS):
            entries.append(entry)
    return entries


async def test_streams_reconnect_through_the_edge_and_complete_after_a_notifier_restart(
    restart_stack: Stack, recorded: BrowserContext
) -> None:
    edge_url = restart_stack.edge_url
    seed = await seed_page(recorded, edge_url)
    demo = await _demo_page(recorded, edge_url)
    card = demo.locator(".card", has_text="plucks.wav")

    # Both jobs stream and are analysing: the slow analysis holds them there.
    async def both_analyzing() -> bool:
        statuses = [e["status"] for e in await seed.evaluate("window.seen")]
        return "analyzing" in statuses and await card.get_attribute("data-status") == "analyzing"

    await eventually(both_analyzing, within=90, every=0.2, what="both jobs to be analysing")
    assert await seed.evaluate("window.eventSourceLog") == ["open"]

    # Every notifier dies at once; the edge has nowhere to send a reconnect until the
    # restart (as `make run` would do it) brings them back.
    for name in NOTIFIERS:
        kill9(restart_stack, name)
    started = await asyncio.to_thread(restart, restart_stack)
    assert set(NOTIFIERS) <= set(started)

    await expect(seed.locator("body")).to_have_attribute("data-final", "completed", timeout=90_000)
    await expect(card).to_have_attribute("data-status", "completed", timeout=90_000)
    seen = await seed.evaluate("window.seen")
    assert seen[-1]["status"] == "completed"
    assert seen[-1]["result"]["duration_seconds"] == pytest.approx(1.5, abs=0.001)
    assert [e["status"] for e in seen].count("completed") == 1

    # The streams did break and did reconnect: an error that left the source
    # reconnecting (readyState 0, not 2 = given up), then a second open.
    for page in (seed, demo):
        log = await page.evaluate("window.eventSourceLog")
        assert log[:3] == ["open", "error:0", "open"], log
        assert "error:2" not in log, log

    # And the edge answered every progress request with 200: the first streams (cut by
    # the kill) and the reconnects, never a 502.
    job_id = seen[-1]["job_id"]
    mine = f"{PROGRESS}{job_id}"
    edge_log = restart_stack.paths.log("edge")

    def seed_requests() -> list[dict[str, Any]]:
        entries = [e for e in _progress_requests(edge_log) if e["request"]["uri"] == mine]
        return entries if len(entries) >= 2 else []

    entries = await eventually(seed_requests, within=30, what="the edge to log both requests")
    assert [e["status"] for e in entries] == [200] * len(entries)
    assert all(e["status"] == 200 for e in _progress_requests(edge_log))
