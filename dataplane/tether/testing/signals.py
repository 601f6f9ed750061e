"""Generated audio whose speech span is known exactly, for VAD tests, benchmarks and demos.

    audio, (start, end) = speech_sample()       # 1 s noise, 1.2 s speech-like, 1 s noise
    frames = chunks(audio, 0.02)                # the same audio as a 20 ms stream

The speech-like signal is not speech, but webrtcvad classifies it as speech (checked for
8, 16, 32 and 48 kHz, fundamentals 120-200 Hz, every aggressiveness): a harmonic series
with a drifting pitch, shaped by three vowel formants, amplitude-modulated at a syllable
rate. Samples are float in [-1, 1] unless an integer dtype is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from tether.data import Audio

NOISE_SIGMA = 30 / 32768
"""Standard deviation of the background noise, full scale = 1 (30 LSB of int16).

Exact digital silence is not what microphones produce, and some detectors and
recognisers misbehave on it; this faint noise keeps the tests honest.
"""

_FORMANTS = ((700.0, 130.0), (1220.0, 70.0), (2600.0, 160.0))
"""(centre Hz, half-width Hz) of the formants of an open vowel such as /a/."""
_SYLLABLE_RATE = 4.0
"""Hz: the envelope rises and falls about as often as syllables do in speech."""
_EDGE = 0.01
"""Seconds of fade at each end, so the signal starts and stops without a click."""


def speech_like(
    duration: float,
    sample_rate: int,
    *,
    fundamental: float = 150.0,
    amplitude: float = 0.3,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """A voiced, speech-like float signal of `duration` seconds peaking at `amplitude`."""
    if not 50.0 <= fundamental <= 500.0:
        raise ValueError("fundamental must be a voice pitch, 50-500 Hz")
    rng = np.random.default_rng(seed)
    frames = round(duration * sample_rate)
    t = np.arange(frames) / sample_rate
    # Intonation (slow drift) and a little vibrato: a perfectly steady tone sounds synthetic
    # and is a weaker match for the speech model.
    pitch = fundamental * (
        1 + 0.08 * np.sin(2 * np.pi * 0.7 * t) + 0.01 * np.sin(2 * np.pi * 5.5 * t)
    )
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    signal = np.zeros(frames)
    # Harmonics up to 4 kHz (telephone band, where every VAD looks) and below Nyquist.
    top = min(4000.0, 0.45 * sample_rate)
    harmonic = 1
    while harmonic * fundamental * 1.1 < top:
        frequency = harmonic * fundamental
        weight = 0.05 + sum(
            1 / (1 + ((frequency - centre) / width) ** 2) for centre, width in _FORMANTS
        )
        signal += weight / np.sqrt(harmonic) * np.sin(harmonic * phase + rng.uniform(0, 2 * np.pi))
        harmonic += 1
    signal *= 0.55 + 0.45 * np.sin(2 * np.pi * _SYLLABLE_RATE * t - np.pi / 2)
    edge = min(frames // 2, round(_EDGE * sample_rate))
    if edge:
        ramp = np.linspace(0.0, 1.0, edge)
        signal[:edge] *= ramp
        signal[frames - edge :] *= ramp[::-1]
    peak = float(np.max(np.abs(signal))) if frames else 0.0
    if peak:
        signal *= amplitude / peak
    return signal.astype(np.float32)


def silence_with_noise(
    duration: float, sample_rate: int, *, sigma: float = NOISE_SIGMA, seed: int = 0
) -> npt.NDArray[np.float32]:
    """`duration` seconds of faint white noise (float, full scale = 1)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, sigma, round(duration * sample_rate)).astype(np.float32)


def speech_sample(
    *,
    sample_rate: int = 16000,
    lead: float = 1.0,
    speech: float = 1.2,
    tail: float = 1.0,
    fundamental: float = 150.0,
    sigma: float = NOISE_SIGMA,
    dtype: npt.DTypeLike = np.int16,
    seed: int = 0,
) -> tuple[Audio, tuple[float, float]]:
    """Noise, then speech-like signal, then noise; returns the audio and the true speech span.

    The span is (lead, lead + speech) in seconds from the first sample. The noise runs
    under the speech too, as it would in a room.
    """
    voiced = speech_like(speech, sample_rate, fundamental=fundamental, seed=seed)
    lead_frames = round(lead * sample_rate)
    total = lead_frames + voiced.shape[0] + round(tail * sample_rate)
    samples = silence_with_noise(total / sample_rate, sample_rate, sigma=sigma, seed=seed + 1)
    samples[lead_frames : lead_frames + voiced.shape[0]] += voiced
    truth = (lead_frames / sample_rate, (lead_frames + voiced.shape[0]) / sample_rate)
    return Audio(samples=convert(samples, dtype), sample_rate=sample_rate), truth


def convert(samples: npt.NDArray[Any], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """Float samples (full scale = 1) as `dtype`: integers are scaled, rounded and clipped."""
    target = np.dtype(dtype)
    if target.kind == "f":
        return samples.astype(target)
    if target.kind != "i":
        raise ValueError(f"audio samples are float or signed integers, not {target}")
    info = np.iinfo(target)
    scaled = np.rint(samples.astype(np.float64) * info.max)
    return np.clip(scaled, info.min, info.max).astype(target)


def chunks(audio: Audio, duration: float) -> list[Audio]:
    """`audio` cut into consecutive pieces of `duration` seconds (the last may be shorter).

    Each piece is timestamped from `audio.timestamp` (or 0.0), as a live source would send it.
    """
    size = max(1, round(duration * audio.sample_rate))
    base = audio.timestamp or 0.0
    return [
        Audio(
            samples=audio.samples[start : start + size],
            sample_rate=audio.sample_rate,
            timestamp=base + start / audio.sample_rate,
            metadata=audio.metadata,
        )
        for start in range(0, audio.frames, size)
    ]
