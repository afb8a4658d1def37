"""Time to a 503 with Kafka down, and to the first 202 once it is back (issue 11).

One gateway in this process talks to the real broker through a proxy
(``tests.support.kafka_proxy``) that is cut, as a dead broker refuses connections, and
restored. Measured from the client:

- known down: a new upload of 8 MiB, from its first byte to the 503;
- sudden outage: an upload in progress when the proxy is cut, from the cut to the 503;
- recovery: from the restore to the first 202.

Run: ``uv run python -m bench.kafka_outage [rounds]`` with the local stack's Kafka (or
``KAFKA_BOOTSTRAP_SERVERS``).
"""

import asyncio
import os
import statistics
import sys
import time

import httpx

from bench.common import raise_upload_limits
from bench.report import write
from gateway.app import create_app
from gateway.settings import Settings
from tests.support.audio import WAV_HEAD, wav_form
from tests.support.inprocess import bound_socket, serving
from tests.support.kafka_proxy import KafkaProxy
from tests.support.waiting import eventually

CHUNK = 64 * 1024
BOUNDARY = "bench"


def form(size: int) -> bytes:
    return wav_form(size, BOUNDARY)


async def post(
    url: str, body: bytes, first: int, cut: KafkaProxy | None = None
) -> tuple[int, float]:
    """Send ``first`` bytes of the body, cut the proxy if given, send the rest while
    waiting for the answer; the status and the seconds from the cut (or the start)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /tokens/bench/upload-audio HTTP/1.1\r\nHost: gateway\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:first]
    )
    await writer.drain()
    if cut is not None:
        await asyncio.sleep(0.5)  # the first chunks are acknowledged
        await cut.cut()
    start = time.perf_counter()

    async def rest() -> None:
        writer.write(body[first:])
        await writer.drain()

    sending = asyncio.create_task(rest())
    status_line = await reader.readline()
    seconds = time.perf_counter() - start
    sending.cancel()
    writer.transport.abort()
    return int(status_line.split()[1]), seconds


async def ready(http: httpx.AsyncClient, url: str, status: int) -> None:
    async def answers() -> bool:
        return (await http.get(f"{url}/readyz")).status_code == status

    await eventually(answers, within=60, what=f"/readyz {status}")


def summary(name: str, samples: list[float], statuses: list[int]) -> dict[str, object]:
    ordered = sorted(samples)
    return {
        "case": name,
        "n": len(samples),
        "statuses": ", ".join(f"{s}×{statuses.count(s)}" for s in sorted(set(statuses))),
        "median s": round(statistics.median(ordered), 3),
        "max s": round(ordered[-1], 3),
    }


async def main(rounds: int) -> None:
    raise_upload_limits()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from devstack import Stack

        bootstrap = Stack().env()["KAFKA_BOOTSTRAP_SERVERS"]
    proxy = KafkaProxy(bootstrap)
    settings = Settings(kafka_bootstrap_servers=await proxy.start(), chunk_bytes=CHUNK)
    known: list[float] = []
    known_status: list[int] = []
    sudden: list[float] = []
    sudden_status: list[int] = []
    recovery: list[float] = []
    body = form(8 * 1024 * 1024)
    async with serving(create_app(settings), bound_socket()) as url, httpx.AsyncClient() as http:
        for _ in range(rounds):
            status, seconds = await post(url, body, 4 * CHUNK, cut=proxy)
            sudden.append(seconds)
            sudden_status.append(status)
            await ready(http, url, 503)
            for _ in range(5):
                status, seconds = await post(url, body, 0)
                known.append(seconds)
                known_status.append(status)
            await proxy.restore()
            start = time.perf_counter()
            while True:
                files = {"file": ("a.wav", WAV_HEAD + b"\0" * CHUNK, "audio/wav")}
                answer = await http.post(f"{url}/tokens/bench/upload-audio", files=files)
                if answer.status_code == 202:
                    break
                await asyncio.sleep(0.05)
            recovery.append(time.perf_counter() - start)
    await proxy.close()
    write(
        "kafka_outage",
        "Gateway with Kafka down: time to 503, and to the first 202 after",
        [
            summary("known down: new 8 MiB upload → 503", known, known_status),
            summary("sudden outage mid-upload: cut → 503", sudden, sudden_status),
            summary("broker back: restore → first 202", recovery, [202] * len(recovery)),
        ],
        notes=[
            "KAFKA_TIMEOUT_SECONDS=5 and KAFKA_PROBE_INTERVAL_SECONDS=1 (the defaults); "
            "chunks of 64 KiB; the proxy refuses connections while cut, as a dead broker.",
            "Before issue 11: 40.0–70.1 s to the 503 (measured by killing the broker).",
        ],
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
