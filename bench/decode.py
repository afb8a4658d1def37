"""Decode speed of the reference analyzer (issue 10 item 7): decode+analysis per format as
× real time on one core (CPU time), next to PyAV's decoder alone.

    uv run python -m bench.decode [--quick] [--seconds S] [--rounds N]

Each format of ``tests.support.audio.CLIPS`` is encoded once (a stereo tone with a
little noise, so that lossless codecs have something to code). Then, in interleaved
rounds (docs/architecture.md §13), each file is decoded (a) by PyAV alone, frames
converted to arrays and dropped, and (b) by the analyzer's own path: ``AudioDecoder``
feeding the ``FeatureAccumulator`` in blocks, i.e. every feature the server reports,
loudness and true peak included. The process is pinned to one CPU; × real time is audio seconds
per CPU second (the machine is shared: wall-clock time would measure the neighbours),
the median and the slowest round, with the wall-clock median beside it. Target: ≥ 100×
for every format.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from bench.report import write
from reference_analyzer.decode import AudioDecoder
from reference_analyzer.settings import Settings
from reference_analyzer.testing import encode
from tests.support.audio import CLIPS

TARGET = 100.0


def signal(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    tone = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)
    noise = np.random.default_rng(3).normal(0, 0.02, (len(t), 2))
    return tone[:, None] + noise


def decoder_alone(path: Path) -> None:
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            frame.to_ndarray()


def analysis(path: Path, block_frames: int) -> int:
    with AudioDecoder(path, block_frames=block_frames) as decoder:
        accumulator = decoder.new_accumulator()
        while decoder.decode_into(accumulator, 1 << 20):
            pass
        accumulator.result(format=decoder.info.format, subtype=decoder.info.subtype)
        return accumulator.frames


def timed(run, *args) -> tuple[float, float]:
    """(CPU seconds, wall-clock seconds) of one run."""
    cpu, wall = time.process_time(), time.perf_counter()
    run(*args)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s clips, 3 rounds")
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    seconds, rounds = (10.0, 3) if args.quick else (args.seconds, args.rounds)
    load = os.getloadavg()[0]
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # one core, whatever FFmpeg would like
    block_frames = Settings.model_fields["block_frames"].default

    with tempfile.TemporaryDirectory(prefix="bench-decode-") as folder:
        files: dict[str, Path] = {}
        sizes: dict[str, int] = {}
        for name, clip in CLIPS.items():
            data = encode(
                signal(seconds, clip.sample_rate),
                clip.sample_rate,
                clip.format,
                clip.subtype,
                muxer_options=clip.muxer_options,
            )
            files[name] = Path(folder) / f"{name}.{clip.extension}"
            files[name].write_bytes(data)
            sizes[name] = len(data)
            decoder_alone(files[name])  # warm up: imports, caches
            analysis(files[name], block_frames)
        alone: dict[str, list[float]] = {name: [] for name in files}
        full: dict[str, list[float]] = {name: [] for name in files}
        full_wall: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(rounds):
            for name, path in files.items():
                alone[name].append(seconds / timed(decoder_alone, path)[0])
                cpu, wall = timed(analysis, path, block_frames)
                full[name].append(seconds / cpu)
                full_wall[name].append(seconds / wall)

    rows = []
    for name in files:
        clip = CLIPS[name]
        rows.append(
            {
                "format": name,
                "codec": f"{clip.format}/{clip.subtype}",
                "rate": clip.sample_rate,
                "KiB": round(sizes[name] / 1024),
                "decoder alone ×rt": statistics.median(alone[name]),
                "decode+analysis ×rt": statistics.median(full[name]),
                "decode+analysis ×rt, slowest round": min(full[name]),
                "decode+analysis ×rt, wall clock": statistics.median(full_wall[name]),
                f"≥ {TARGET:.0f}×": "yes" if statistics.median(full[name]) >= TARGET else "NO",
            }
        )
    write(
        "decode",
        "Decode speed: decode+analysis per format, × real time on one core",
        rows,
        notes=[
            f"{seconds:.0f} s stereo clips, {rounds} interleaved rounds, process pinned to CPU "
            f"{core}. ×rt = audio seconds per CPU second of this process on that one core "
            "(median of the rounds unless said): CPU time, because the machine is shared "
            "and wall-clock time measures the neighbours; the wall-clock median is shown "
            f"beside it (load average at the start: {load:.1f}).",
            "decoder alone: PyAV demux+decode, each frame converted to a numpy array.",
            "decode+analysis: the server's AudioDecoder feeding FeatureAccumulator in "
            f"{block_frames}-frame blocks, i.e. every feature it reports.",
            "WebM is written as MediaRecorder writes it (no duration): its length comes from "
            "a demux-only pass plus the decoding.",
        ],
    )


if __name__ == "__main__":
    main()
