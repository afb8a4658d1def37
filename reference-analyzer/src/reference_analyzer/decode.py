"""Decoding audio files block by block with soundfile (libsndfile: WAV, FLAC,
OGG/Vorbis/Opus, MP3 and more). Blocking: call it from a worker thread."""

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import soundfile

from contracts import ErrorCode
from reference_analyzer.errors import AnalysisError
from reference_analyzer.features import FeatureAccumulator


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    """As announced by the container; an estimate for some formats (MP3)."""
    format: str
    subtype: str


def _invalid(exc: Exception) -> AnalysisError:
    return AnalysisError(ErrorCode.INVALID_AUDIO, f"the audio could not be decoded: {exc}")


class AudioDecoder:
    """An open audio file that feeds a :class:`FeatureAccumulator` in bounded blocks."""

    def __init__(self, path: Path, *, block_frames: int = 65536) -> None:
        try:
            self._file: Any = soundfile.SoundFile(str(path))
        except (soundfile.SoundFileError, RuntimeError, TypeError, ValueError) as exc:
            raise _invalid(exc) from exc
        self.info = AudioInfo(
            sample_rate=int(self._file.samplerate),
            channels=int(self._file.channels),
            frames=max(int(self._file.frames), 0),
            format=str(self._file.format),
            subtype=str(self._file.subtype),
        )
        if self.info.sample_rate <= 0 or self.info.channels <= 0:
            self.close()
            raise AnalysisError(ErrorCode.INVALID_AUDIO, "the audio has no sample rate or channels")
        # One reusable buffer: memory stays at one block whatever the file's length.
        self._buffer = np.empty((block_frames, self.info.channels), dtype=np.float32)

    def new_accumulator(self) -> FeatureAccumulator:
        return FeatureAccumulator(
            self.info.sample_rate, self.info.channels, frames_hint=self.info.frames
        )

    def decode_into(self, accumulator: FeatureAccumulator, max_frames: int) -> int:
        """Decode up to ``max_frames`` more frames into ``accumulator``; 0 at the end."""
        done = 0
        while done < max_frames:
            wanted = min(len(self._buffer), max_frames - done)
            try:
                block = self._file.read(
                    wanted, dtype="float32", always_2d=True, out=self._buffer[:wanted]
                )
            except (soundfile.SoundFileError, RuntimeError, ValueError) as exc:
                raise _invalid(exc) from exc
            if len(block) == 0:
                break
            accumulator.add(block)
            done += len(block)
            if len(block) < wanted:
                break
        return done

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
