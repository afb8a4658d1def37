"""Every format clients send, uploaded through the edge, reaches `completed` with its
true duration, rate and channels; a damaged one fails as `invalid_audio` in words.

The clips are generated here (tests.support.audio.CLIPS, PyAV's encoders), 1.5 s each;
WebM is written as MediaRecorder writes it, with no duration in its header."""

from typing import Any

import httpx
import pytest

from tests.support.audio import CLIPS
from tests.support.sse import events

pytestmark = pytest.mark.e2e

SECONDS = 1.5


async def upload_and_follow(
    edge_url: str, name: str, data: bytes
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Upload through the edge as `curl -F file=@name` does; the job's events to the end."""
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=edge_url, timeout=30) as client:
        accepted = await client.post(
            "/tokens/t1/upload-audio",
            files={"file": (name, data, "application/octet-stream")},
        )
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        async with client.stream("GET", job["progress_url"], timeout=120) as stream:
            assert stream.status_code == 200
            async for event in events(stream):
                seen.append(event.json())
                if seen[-1]["status"] in ("completed", "failed"):
                    break
    return job, seen


@pytest.mark.parametrize("name", list(CLIPS))
async def test_each_format_completes_with_its_true_duration(edge_url: str, name: str) -> None:
    clip = CLIPS[name]
    job, seen = await upload_and_follow(
        edge_url, f"clip.{clip.extension}", clip.tone(SECONDS, channels=2)
    )
    assert job["content_type"] == clip.media_type
    final = seen[-1]
    assert final["status"] == "completed", final
    result = final["result"]
    assert result["sample_rate"] == clip.sample_rate
    assert result["channels"] == 2
    assert result["format"] == clip.format
    # ±50 ms, and up to one frame of padding where the codec pads (AAC, Opus, MP3, Vorbis).
    tolerance = 0.050 + clip.codec_frame / clip.sample_rate
    assert result["duration_seconds"] == pytest.approx(SECONDS, abs=tolerance)
    assert result["frames"] == round(result["duration_seconds"] * clip.sample_rate)


async def test_a_mono_recording_keeps_its_one_channel(edge_url: str) -> None:
    clip = CLIPS["webm-opus"]
    _, seen = await upload_and_follow(edge_url, "mono.webm", clip.tone(SECONDS, channels=1))
    assert seen[-1]["status"] == "completed", seen[-1]
    assert seen[-1]["result"]["channels"] == 1


@pytest.mark.parametrize("name", ["m4a-aac", "flac", "wav-pcm16"])
async def test_a_cut_off_file_fails_as_invalid_audio_saying_so(edge_url: str, name: str) -> None:
    clip = CLIPS[name]
    data = clip.tone(SECONDS)
    # Accepted at the door (its head is fine), refused by the analysis.
    job, seen = await upload_and_follow(edge_url, f"cut.{clip.extension}", data[: len(data) // 2])
    final = seen[-1]
    assert final["status"] == "failed", final
    error = final["error"]
    assert error["code"] == "invalid_audio"
    assert "damaged" in error["message"] or "cut off" in error["message"]
    assert "/tmp" not in error["message"] and "reference-analyzer-" not in error["message"]
    assert job["job_id"] == final["job_id"]
