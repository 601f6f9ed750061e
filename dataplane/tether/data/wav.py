"""WAV files <-> Audio, for the CLI and examples (PCM 16-bit only, as the stdlib reads)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from tether.data.types import Audio
from tether.errors import DataValidationError


def read_wav(path: Path) -> Audio:
    try:
        with wave.open(str(path), "rb") as reader:
            if reader.getsampwidth() != 2:
                bits = 8 * reader.getsampwidth()
                raise DataValidationError(
                    str(path), f"only 16-bit PCM WAV is supported, got {bits}-bit"
                )
            channels = reader.getnchannels()
            frames = reader.readframes(reader.getnframes())
            sample_rate = reader.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        raise DataValidationError(str(path), f"cannot read WAV: {exc}") from exc
    samples = np.frombuffer(frames, dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels)
    return Audio(samples=samples, sample_rate=sample_rate, timestamp=0.0)


def write_wav(path: Path, audio: Audio) -> None:
    """Write as 16-bit PCM; float audio is taken as [-1, 1] and clipped."""
    samples = audio.samples
    if samples.dtype.kind in "iu" and samples.dtype != np.dtype("<i2"):
        samples = samples / np.iinfo(samples.dtype).max
    if samples.dtype.kind == "f":
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(audio.channels)
        writer.setsampwidth(2)
        writer.setframerate(audio.sample_rate)
        writer.writeframes(samples.tobytes())
