"""Write a WAV of generated speech-like audio: two utterances between stretches of room noise.

    python examples/make_speech_wav.py build/demo-speech.wav

The signal is synthetic (see tether.testing.signals), so the demo needs no recordings
and no downloads; the true speech spans are printed for comparison with the VAD.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tether.data import Audio
from tether.data.wav import write_wav
from tether.testing.signals import speech_sample

SAMPLE_RATE = 48000


def main(path: Path) -> None:
    first, (start1, end1) = speech_sample(sample_rate=SAMPLE_RATE, lead=0.8, speech=1.2, tail=0.6)
    second, (start2, end2) = speech_sample(
        sample_rate=SAMPLE_RATE, lead=0.4, speech=0.9, tail=0.8, fundamental=190.0, seed=7
    )
    samples = np.concatenate([first.samples, second.samples])
    offset = first.duration
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, Audio(samples=samples, sample_rate=SAMPLE_RATE))
    print(f"wrote {path}: {len(samples) / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz")
    print(f"true speech: {start1:.2f}-{end1:.2f} s and {offset + start2:.2f}-{offset + end2:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/demo-speech.wav"))
