"""Voice activity detection with webrtcvad: cuts a stream into speech segments.

webrtcvad classifies each 10, 20 or 30 ms frame as speech or not. Single frames are
noisy, so the detector decides over a sliding `window` of frames:

- Speech starts when at least 80% of the window is voiced. The segment begins at the
  first voiced frame in that window, so the start is exact even though the decision
  comes later.
- Speech ends when at least 80% of the window is unvoiced. The segment ends after the
  last voiced frame, less webrtcvad's own hangover (after speech it keeps saying "speech"
  for a fixed number of frames; see `_HANGOVER`), so the end is exact too.
- Each segment is extended by `padding` on both sides. Segments whose padded spans would
  overlap are merged, so a pause splits speech only if it is longer than twice the padding
  (and long enough to end speech at all). A segment is closed once no later speech can
  merge with it.
- Segments whose speech (without padding) is shorter than `minSpeechDuration` are dropped.

Decisions depend only on the frames, never on how the input was cut into chunks: one long
Audio and the same audio in 20 ms pieces give identical segments and events.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Annotated, Any, Final

import numpy as np
import numpy.typing as npt
import webrtcvad
from pydantic import AfterValidator, Field

from tether.data import Audio, Json, RuntimeData
from tether.data.types import Metadata
from tether.manifest.types import CamelModel, Duration
from tether.nodes._checks import AudioFormat, expect_kind, invalid_input, lock_format
from tether.runtime.node import Emit, Node, ProcessResult, Produced

SAMPLE_RATES: Final = (8000, 16000, 32000, 48000)
"""The rates webrtcvad accepts."""

_MOSTLY: Final = 0.8
"""Share of the window that must agree before speech starts or ends."""

_MAX_SPEECH_FRAMES: Final = 6
# webrtcvad's hangover, from WebRTC's vad_core.c (kOverHangMax1*/kOverHangMax2*): after
# a run of speech frames ends, the next frames still report speech. A run longer than
# kMaxSpeechFrames (6) gets the long hangover, a shorter run the short one.
# Indexed [aggressiveness][0 short | 1 long][10, 20, 30 ms frames].
_HANGOVER: Final = {
    0: ((8, 4, 3), (14, 7, 5)),
    1: ((8, 4, 3), (14, 7, 5)),
    2: ((6, 3, 2), (9, 5, 3)),
    3: ((6, 3, 2), (9, 5, 3)),
}


def _vad_frame(seconds: float) -> float:
    milliseconds = round(seconds * 1000)
    if milliseconds not in (10, 20, 30) or not math.isclose(seconds * 1000, milliseconds):
        raise ValueError("webrtcvad frames are 10ms, 20ms or 30ms")
    return milliseconds / 1000


FrameDuration = Annotated[Duration, AfterValidator(_vad_frame)]
"""A Duration that must be 10, 20 or 30 ms."""


class VoiceActivityDetectorParams(CamelModel):
    aggressiveness: int = Field(default=2, ge=0, le=3)
    """webrtcvad mode: 0 keeps the most speech (and noise), 3 rejects the most noise
    (and some speech). 2 is a balance that suits ordinary rooms and phone lines."""
    frame_duration: FrameDuration = 0.02
    """Frame webrtcvad judges: "10ms", "20ms" or "30ms". 20 ms matches the usual stream
    chunk, so a 20 ms stream never leaves a partial frame behind."""
    padding: Duration = Field(default=0.3, ge=0.0, le=5.0)
    """Audio kept before and after the speech ("300ms", like the classic webrtcvad
    example), so word edges are never clipped. Pauses up to twice this are bridged."""
    min_speech_duration: Duration = Field(default=0.25, ge=0.0, le=60.0)
    """Segments with less speech than this (padding not counted) are dropped. 250 ms, as in
    Silero VAD: shorter than a short word, longer than a cough or a click."""
    window: Duration = Field(default=0.3, ge=0.01, le=5.0)
    """Span over which frames are counted to decide start and end ("300ms"), rounded to
    whole frames. Longer rejects more noise but needs longer pauses to end speech."""


@dataclass
class _Segment:
    start: int
    """First voiced frame (frame index)."""
    last_voiced: int
    """Latest voiced frame (frame index)."""
    last_run: int
    """Length of the voiced run ending at `last_voiced`, in frames."""
    announced: bool = False
    """speech_start has been emitted."""
    end: int | None = None
    """Set once speech has ended: sample index just after the speech. The segment then
    waits for a pause long enough that no later speech can merge with it."""


class _SampleBuffer:
    """Samples addressed by absolute index: appended at the end, dropped from the front."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self._chunks: deque[npt.NDArray[Any]] = deque()
        self._dtype = dtype
        self.start = 0
        self.end = 0

    def append(self, samples: npt.NDArray[Any]) -> None:
        if samples.shape[0]:
            self._chunks.append(samples)
            self.end += samples.shape[0]

    def drop_before(self, index: int) -> None:
        while self._chunks and self.start + self._chunks[0].shape[0] <= index:
            self.start += self._chunks.popleft().shape[0]
        if self._chunks and self.start < index:
            self._chunks[0] = self._chunks[0][index - self.start :]
            self.start = index

    def slice(self, begin: int, end: int) -> npt.NDArray[Any]:
        parts = []
        position = self.start
        for chunk in self._chunks:
            chunk_end = position + chunk.shape[0]
            if chunk_end > begin and position < end:
                parts.append(chunk[max(begin - position, 0) : min(end, chunk_end) - position])
            position = chunk_end
        return np.concatenate(parts) if parts else np.zeros(0, self._dtype)


class VoiceActivityDetector(Node[VoiceActivityDetectorParams]):
    """Emits only the speech in mono audio at 8, 16, 32 or 48 kHz (int16 or float).

    On port "out", each speech segment as one Audio in the input's dtype and shape,
    timestamped with its start, with the latest input's metadata plus "speech_start" and
    "speech_end" (seconds, as strings).
    On port "events", Json {"event": "speech_start", "time": t} as soon as a segment is
    certain to be kept, and {"event": "speech_end", "time": t, "duration": d} when it
    closes. Times include the padding, so they match the emitted audio; they count from
    the first input's timestamp (0.0 if it has none) by the number of samples received.

    `is_idle` is True when nothing received could still become part of a detected
    segment: no segment is open or waiting to close, no partial frame is held, and no
    voiced frame is in the decision window. The pre-roll kept for the leading padding
    does not count, so a stream resumed elsewhere from an idle point can lose at most the
    leading padding of its next segment. Resumable streams should carry timestamps, so
    that the resumed detector's clock continues where this one was.
    """

    params_model = VoiceActivityDetectorParams
    outputs = ("out", "events")

    def __init__(self, node_id: str, params: VoiceActivityDetectorParams) -> None:
        super().__init__(node_id, params)
        self._vad = webrtcvad.Vad(params.aggressiveness)
        self._format: AudioFormat | None = None
        self._column = False
        self._base = 0.0
        self._metadata: Metadata = {}
        self._frame = 0
        self._padding = 0
        self._window = 1
        self._needed = 1
        self._short_hangover = 0
        self._long_hangover = 0
        self._pending = np.zeros(0, np.int16)
        self._audio: _SampleBuffer | None = None
        self._frames = 0
        self._run = 0
        self._ring: deque[bool] = deque()
        self._segment: _Segment | None = None

    @property
    def is_idle(self) -> bool:
        return self._segment is None and self._pending.shape[0] == 0 and not any(self._ring)

    async def process(self, data: RuntimeData) -> ProcessResult:
        audio = expect_kind(self, data, Audio)
        if self._format is None:
            self._start(audio)
        self._format = lock_format(self, self._format, audio)
        self._metadata = audio.metadata
        assert self._audio is not None
        samples = audio.samples.reshape(-1)
        self._audio.append(samples)
        pcm = np.concatenate([self._pending, _to_int16(samples)])
        complete = pcm.shape[0] // self._frame
        produced: list[Produced] = []
        for k in range(complete):
            frame = pcm[k * self._frame : (k + 1) * self._frame]
            voiced = self._vad.is_speech(frame.tobytes(), audio.sample_rate)
            produced.extend(self._step(bool(voiced)))
        self._pending = pcm[complete * self._frame :].copy()
        return produced

    async def flush(self) -> ProcessResult:
        """Closes a segment still open at the end of the input; a partial frame is not judged."""
        segment = self._segment
        last_frame_voiced = self._run > 0
        self._pending = np.zeros(0, np.int16)
        self._ring.clear()
        self._run = 0
        if segment is None:
            return None
        if segment.end is None:
            # Speech ran to the end of the input: no hangover followed it to take off.
            segment.end = self._speech_end(segment, compensate=not last_frame_voiced)
        return self._close(segment)

    def _start(self, audio: Audio) -> None:
        if audio.sample_rate not in SAMPLE_RATES:
            raise invalid_input(
                self,
                "input.sample_rate",
                f"takes audio at 8000, 16000, 32000 or 48000 Hz, got {audio.sample_rate} Hz; "
                "put a Resample node before it",
            )
        if audio.channels != 1:
            raise invalid_input(
                self, "input.samples", f"takes mono audio, got {audio.channels} channels"
            )
        if audio.samples.dtype != np.int16 and audio.samples.dtype.kind != "f":
            raise invalid_input(
                self, "input.samples", f"takes int16 or float samples, got {audio.samples.dtype}"
            )
        params = self.params
        frame_ms = round(params.frame_duration * 1000)
        self._column = audio.samples.ndim == 2
        self._base = audio.timestamp or 0.0
        self._frame = audio.sample_rate * frame_ms // 1000
        self._padding = round(params.padding * audio.sample_rate)
        self._window = max(1, round(params.window / params.frame_duration))
        self._needed = math.ceil(_MOSTLY * self._window)
        self._ring = deque(maxlen=self._window)
        short, long = _HANGOVER[params.aggressiveness]
        self._short_hangover = short[frame_ms // 10 - 1]
        self._long_hangover = long[frame_ms // 10 - 1]
        self._audio = _SampleBuffer(audio.samples.dtype)

    def _step(self, voiced: bool) -> list[Produced]:
        """Advance the detector by one judged frame; return what that frame completes."""
        index = self._frames
        self._frames += 1
        self._run = self._run + 1 if voiced else 0
        self._ring.append(voiced)
        segment = self._segment
        produced: list[Produced] = []
        triggered = voiced and sum(self._ring) >= self._needed
        if segment is not None and segment.end is not None:
            # Speech has ended; the segment waits in case speech resumes close enough.
            if self._no_merge_possible(segment):
                produced.extend(self._close(segment))
                segment = None
            elif triggered:
                segment.end = None
                segment.last_voiced, segment.last_run = index, self._run
                produced.extend(self._announce(segment))
        elif segment is not None:
            if voiced:
                segment.last_voiced, segment.last_run = index, self._run
                produced.extend(self._announce(segment))
            elif len(self._ring) - sum(self._ring) >= self._needed:
                segment.end = self._speech_end(segment, compensate=True)
                # A new start must be decided on frames after this end.
                self._ring.clear()
                if self._no_merge_possible(segment):
                    produced.extend(self._close(segment))
                    segment = None
        if segment is None and triggered:
            first_voiced = self._frames - len(self._ring) + self._ring.index(True)
            segment = self._segment = _Segment(first_voiced, index, self._run)
            produced.extend(self._announce(segment))
        if self._segment is None:
            self._drop_old_audio()
        return produced

    def _speech_end(self, segment: _Segment, *, compensate: bool) -> int:
        """Sample index just after the segment's speech, less webrtcvad's hangover."""
        hangover = 0
        if compensate:
            run = segment.last_run
            if run >= _MAX_SPEECH_FRAMES + 1 + self._long_hangover:
                hangover = self._long_hangover
            else:
                hangover = min(self._short_hangover, run - 1)
        end_frame = max(segment.last_voiced + 1 - hangover, segment.start + 1)
        return end_frame * self._frame

    def _no_merge_possible(self, segment: _Segment) -> bool:
        """No later speech can start within twice the padding of this segment's end."""
        assert segment.end is not None
        voiced = [i for i, flag in enumerate(self._ring) if flag]
        earliest = self._frames - len(self._ring) + voiced[0] if voiced else self._frames
        return earliest * self._frame >= segment.end + 2 * self._padding

    def _announce(self, segment: _Segment) -> list[Produced]:
        """speech_start, once the speech is long enough that the segment will be kept."""
        if segment.announced:
            return []
        # The end can only move later, and the hangover taken off it is at most the long one.
        least_end = (segment.last_voiced + 1 - self._long_hangover) * self._frame
        if (least_end - segment.start * self._frame) < self._min_speech_samples():
            return []
        segment.announced = True
        return [self._event("speech_start", self._time(self._padded_start(segment)))]

    def _close(self, segment: _Segment) -> list[Produced]:
        assert segment.end is not None
        assert self._audio is not None
        assert self._format is not None
        self._segment = None
        if segment.end - segment.start * self._frame < self._min_speech_samples():
            return []
        start = self._padded_start(segment)
        end = min(segment.end + self._padding, self._audio.end)
        start_time, end_time = self._time(start), self._time(end)
        samples = self._audio.slice(start, end)
        produced: list[Produced] = []
        if not segment.announced:
            produced.append(self._event("speech_start", start_time))
        produced.append(
            Audio(
                samples=samples.reshape(-1, 1) if self._column else samples,
                sample_rate=self._format.sample_rate,
                timestamp=start_time,
                metadata={
                    **self._metadata,
                    "speech_start": str(start_time),
                    "speech_end": str(end_time),
                },
            )
        )
        produced.append(
            self._event("speech_end", end_time, duration=round(end_time - start_time, 6))
        )
        return produced

    def _drop_old_audio(self) -> None:
        """Keep only what a future segment's leading padding could reach."""
        assert self._audio is not None
        oldest_candidate = self._frames - len(self._ring)
        self._audio.drop_before(max(0, oldest_candidate * self._frame - self._padding))

    def _padded_start(self, segment: _Segment) -> int:
        return max(0, segment.start * self._frame - self._padding)

    def _min_speech_samples(self) -> float:
        assert self._format is not None
        return self.params.min_speech_duration * self._format.sample_rate

    def _time(self, sample: int) -> float:
        assert self._format is not None
        return round(self._base + sample / self._format.sample_rate, 6)

    def _event(self, event: str, time: float, **extra: float) -> Emit:
        return Emit("events", Json(value={"event": event, "time": time, **extra}, timestamp=time))


def _to_int16(samples: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """What webrtcvad reads: int16 as is, float (full scale = 1) scaled, rounded and clipped."""
    if samples.dtype == np.int16:
        return samples.astype(np.int16, copy=False)
    scaled = np.rint(samples.astype(np.float64) * 32767)
    return np.clip(scaled, -32768, 32767).astype(np.int16)
