"""The resumable upload draft's ``104 (Upload Resumption Supported)`` on the wire
(draft-ietf-httpbis-resumable-upload-11 §4.1, issue 13), straight to the gateway and
through the Caddy edge, which forwards 1xx answers from its upstream: the 104 carries
``Location`` before the body is read, so a creation cut off half way resumes; clients
that do not ask for it (curl without the interop header, the seed's form post) see
only the final answer."""

import asyncio
import re
import shutil
from pathlib import Path

import httpx
import pytest

from devstack import StackInfo
from tests.support.audio import sine_wav

pytestmark = pytest.mark.e2e

CREATE = "/tokens/t1/upload-audio"
UPLOAD_URL = re.compile(r"^/uploads/[0-9a-f-]{36}\?access_token=[\w.-]+$")


@pytest.fixture(params=["gateway", "edge"])
def origin(request: pytest.FixtureRequest, stack: StackInfo) -> tuple[str, int]:
    if request.param == "edge":
        host, _, port = stack.edge_url.removeprefix("http://").partition(":")
        return host, int(port)
    address = next(c.address for c in stack.components if c.name == "gateway")
    assert address
    host, _, port = address.partition(":")
    return host, int(port)


def head_of(raw: bytes) -> tuple[int, dict[str, str]]:
    status_line, *lines = raw.decode().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers


async def creation(
    origin: tuple[str, int], size: int, **headers: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*origin)
    fields = {"Host": "audiopipe", "Content-Length": str(size), **headers}
    request = f"POST {CREATE} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    writer.write(request.encode() + b"\r\n")  # the headers only: no byte of the body yet
    await writer.drain()
    return reader, writer


async def test_104_with_location_comes_before_the_body_and_a_cut_creation_resumes(
    origin: tuple[str, int],
) -> None:
    audio = sine_wav(seconds=6.0, sample_rate=22050, channels=2)
    reader, writer = await creation(
        origin, len(audio), **{"Upload-Draft-Interop-Version": "8", "Upload-Complete": "?1"}
    )
    status, interim = head_of((await reader.readuntil(b"\r\n\r\n"))[:-4])
    assert status == 104
    assert UPLOAD_URL.match(interim["location"]), interim
    assert interim["upload-draft-interop-version"] == "8"
    assert interim["upload-limit"].startswith("max-size=")

    # Half the body, then the connection is gone: the 104 told where to resume.
    writer.write(audio[: len(audio) // 2])
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    base = f"http://{origin[0]}:{origin[1]}"
    draft = {"Upload-Draft-Interop-Version": "8"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        head = await client.head(interim["location"], headers=draft)
        assert head.status_code == 204
        offset = int(head.headers["upload-offset"])
        assert 0 <= offset <= len(audio) // 2
        done = await client.patch(
            interim["location"],
            content=audio[offset:],
            headers={
                **draft,
                "Content-Type": "application/partial-upload",
                "Upload-Offset": str(offset),
                "Upload-Complete": "?1",
            },
        )
    assert done.status_code == 202, done.text
    assert done.json()["size"] == len(audio)


async def test_a_creation_without_the_interop_header_gets_no_104(
    origin: tuple[str, int],
) -> None:
    audio = sine_wav(seconds=1.0)
    reader, writer = await creation(origin, len(audio), **{"Upload-Complete": "?1"})
    writer.write(audio)
    await writer.drain()
    status, final = head_of((await reader.readuntil(b"\r\n\r\n"))[:-4])
    writer.close()
    await writer.wait_closed()
    assert status == 202
    assert UPLOAD_URL.match(final["location"])


async def test_the_seed_form_post_and_curl_see_only_their_final_answers(
    stack: StackInfo, tmp_path: Path
) -> None:
    audio = sine_wav(seconds=1.0)
    async with httpx.AsyncClient(base_url=stack.edge_url, timeout=30) as client:
        seed = await client.post(CREATE, files={"file": ("a.wav", audio, "audio/wav")})
    assert seed.status_code == 202, seed.text

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl")
    (tmp_path / "a.wav").write_bytes(audio)
    # curl (7.x/8.x) reads past any 1xx; with the interop header it gets the 104 too.
    run = await asyncio.create_subprocess_exec(
        curl,
        "-sS",
        "-o",
        str(tmp_path / "body.json"),
        "-w",
        "%{http_code}",
        "--data-binary",
        f"@{tmp_path / 'a.wav'}",
        "-H",
        "Upload-Draft-Interop-Version: 8",
        "-H",
        "Upload-Complete: ?1",
        stack.edge_url + CREATE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await run.communicate()
    assert (run.returncode, out.decode()) == (0, "202"), err
    assert '"job_id"' in (tmp_path / "body.json").read_text()
