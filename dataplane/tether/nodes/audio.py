"""Audio nodes: gain, resampling and fixed-size framing.

All take `Audio` with samples shaped (frames,) or (frames, channels), float or signed
integer, and keep the input's timestamp base and metadata.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import soxr
from pydantic import Field

from tether.data import Audio, RuntimeData
from tether.data.types import Metadata
from tether.manifest.types import CamelModel, Duration
from tether.nodes._checks import AudioFormat, expect_kind, invalid_input, lock_format
from tether.runtime.node import Node, ProcessResult


class GainParams(CamelModel):
    gain_db: float = Field(ge=-120.0, le=60.0)
    """Gain in decibels of amplitude: +6.02 doubles, -6.02 halves. The range spans from
    below 16-bit silence (-96 dB) to more amplification than any sane signal needs."""


class Gain(Node[GainParams]):
    """Scales audio by `gainDb`.

    Float audio is scaled in its own dtype and not clipped: floats have headroom, and
    whatever consumes them decides what full scale means. Integer audio is scaled in
    float64, rounded, and clipped to its dtype's range, so loud input saturates instead
    of wrapping around.
    """

    params_model = GainParams

    def __init__(self, node_id: str, params: GainParams) -> None:
        super().__init__(node_id, params)
        self._factor = 10.0 ** (params.gain_db / 20.0)

    async def process(self, data: RuntimeData) -> ProcessResult:
        audio = expect_kind(self, data, Audio)
        samples = audio.samples
        if samples.dtype.kind == "f":
            scaled = (samples * self._factor).astype(samples.dtype, copy=False)
        elif samples.dtype.kind == "i":
            info = np.iinfo(samples.dtype)
            product = np.rint(samples.astype(np.float64) * self._factor)
            scaled = np.clip(product, info.min, info.max).astype(samples.dtype)
        else:
            raise invalid_input(
                self, "input.samples", f"takes float or signed integer samples, got {samples.dtype}"
            )
        return dataclasses.replace(audio, samples=scaled)


Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
_SOXR_DTYPES: Final = frozenset(np.dtype(name) for name in ("float32", "float64", "int16", "int32"))


class ResampleParams(CamelModel):
    sample_rate: int = Field(ge=1000, le=384_000)
    """Target rate in Hz. Bounded by what audio hardware and codecs use (1 kHz to 384 kHz)."""
    quality: Quality = "HQ"
    """soxr quality: QQ (quick), LQ, MQ, HQ or VHQ. HQ is soxr's own default: transparent
    for speech and music at a modest cost; VHQ only matters for mastering."""


class Resample(Node[ResampleParams]):
    """Converts audio to `sampleRate` with soxr, mono or multi-channel, keeping the dtype.

    A stream goes through one streaming resampler, so chunk boundaries do not click and the
    concatenated output equals resampling the whole signal at once. The resampler holds a
    few milliseconds back (its filter delay) and releases them on flush, so a single input
    yields two outputs: the bulk from `process` and the tail from `flush`. Output chunks may
    differ in size from input chunks; an input that releases nothing yields nothing.

    Each output is timestamped with the media time of its first sample: the first input's
    timestamp plus the output samples before it (None when inputs carry no timestamps).
    Input at the target rate passes through untouched. The input format (rate, channels,
    dtype: float32, float64, int16 or int32) must not change within a stream.
    """

    params_model = ResampleParams

    def __init__(self, node_id: str, params: ResampleParams) -> None:
        super().__init__(node_id, params)
        self._format: AudioFormat | None = None
        self._resampler: Any = None  # soxr.ResampleStream, created for the first input
        self._empty: npt.NDArray[Any] | None = None  # what flush feeds: no frames, input's shape
        self._base: float | None = None
        self._produced = 0
        self._metadata: Metadata = {}

    @property
    def is_idle(self) -> bool:
        # The resampler holds a few milliseconds of filter history and not-yet-released
        # samples. Counting that as state would stop every stream acknowledgement behind
        # this node for good, so a resumed stream would replay the whole session; a
        # resume that restarts the filter loses at most those milliseconds instead.
        return True

    async def process(self, data: RuntimeData) -> ProcessResult:
        audio = expect_kind(self, data, Audio)
        if audio.samples.dtype not in _SOXR_DTYPES:
            raise invalid_input(
                self,
                "input.samples",
                f"takes float32, float64, int16 or int32 samples, got {audio.samples.dtype}",
            )
        first = self._format is None
        self._format = lock_format(self, self._format, audio)
        if audio.sample_rate == self.params.sample_rate:
            return audio
        if first:
            self._base = audio.timestamp
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(
                audio.sample_rate,
                self.params.sample_rate,
                audio.channels,
                dtype=audio.samples.dtype.name,
                quality=self.params.quality,
            )
        self._empty = audio.samples[:0]
        self._metadata = audio.metadata
        return self._emit(self._resampler.resample_chunk(np.ascontiguousarray(audio.samples)))

    async def flush(self) -> ProcessResult:
        if self._resampler is None or self._empty is None:
            return None
        tail = self._resampler.resample_chunk(np.ascontiguousarray(self._empty), last=True)
        self._resampler = None
        return self._emit(tail)

    def _emit(self, samples: npt.NDArray[Any]) -> Audio | None:
        if samples.shape[0] == 0:
            return None
        rate = self.params.sample_rate
        timestamp = None if self._base is None else self._base + self._produced / rate
        self._produced += samples.shape[0]
        return Audio(
            samples=samples, sample_rate=rate, timestamp=timestamp, metadata=self._metadata
        )


class AudioChunkerParams(CamelModel):
    duration: Duration = Field(default=0.02, gt=0, le=60)
    """Length of each frame ("20ms"), rounded to whole samples. 20 ms by default: the frame
    size of WebRTC, Opus and most voice pipelines, and a valid VAD frame."""
    pad_last: bool = False
    """Pad the final, short frame with zeros to full size on flush. Off by default, so no
    audio is invented; turn it on for consumers that only take full frames."""


class AudioChunker(Node[AudioChunkerParams]):
    """Regroups audio into frames of exactly `duration`, whatever sizes the inputs have.

    Samples are buffered across inputs; each full frame is emitted as soon as it is
    complete, and flush emits what remains. Frame k is timestamped first timestamp (or
    0.0) + k x frame duration, and carries the metadata of the input its first sample came
    from. The format (rate, channels, dtype) must not change within a stream.
    """

    params_model = AudioChunkerParams

    def __init__(self, node_id: str, params: AudioChunkerParams) -> None:
        super().__init__(node_id, params)
        self._format: AudioFormat | None = None
        self._size = 0
        self._base = 0.0
        self._buffer: npt.NDArray[Any] | None = None
        self._emitted = 0
        # (absolute index of an input's first sample, its metadata), oldest first.
        self._origins: list[tuple[int, Metadata]] = []

    @property
    def is_idle(self) -> bool:
        """True exactly when no samples are waiting to complete a frame."""
        return self._buffer is None or self._buffer.shape[0] == 0

    async def process(self, data: RuntimeData) -> ProcessResult:
        audio = expect_kind(self, data, Audio)
        if self._format is None:
            self._size = max(1, round(self.params.duration * audio.sample_rate))
            self._base = audio.timestamp or 0.0
        self._format = lock_format(self, self._format, audio)
        held = 0 if self._buffer is None else self._buffer.shape[0]
        self._origins.append((self._emitted * self._size + held, audio.metadata))
        if self._buffer is None or held == 0:
            buffer = audio.samples
        else:
            buffer = np.concatenate([self._buffer, audio.samples])
        complete = buffer.shape[0] // self._size
        frames = [
            self._frame(buffer[k * self._size : (k + 1) * self._size]) for k in range(complete)
        ]
        self._buffer = buffer[complete * self._size :]
        return frames

    async def flush(self) -> ProcessResult:
        if self._buffer is None or self._buffer.shape[0] == 0:
            return None
        rest = self._buffer
        if self.params.pad_last:
            padding = np.zeros((self._size - rest.shape[0], *rest.shape[1:]), dtype=rest.dtype)
            rest = np.concatenate([rest, padding])
        frame = self._frame(rest)
        self._buffer = None
        return frame

    def _frame(self, samples: npt.NDArray[Any]) -> Audio:
        assert self._format is not None
        start = self._emitted * self._size
        while len(self._origins) > 1 and self._origins[1][0] <= start:
            self._origins.pop(0)
        self._emitted += 1
        return Audio(
            samples=samples,
            sample_rate=self._format.sample_rate,
            timestamp=self._base + start / self._format.sample_rate,
            metadata=self._origins[0][1],
        )
