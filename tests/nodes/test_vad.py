"""VoiceActivityDetector: boundary accuracy on generated speech, unary against streamed,
padding and merging, dropped blips, events, idleness, and refused inputs and params."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from node_drivers import on_port, processed, streamed
from pydantic import ValidationError

from tether.data import Audio, Json, Text
from tether.errors import DataValidationError
from tether.manifest import parse_manifest
from tether.nodes import VoiceActivityDetector
from tether.nodes.vad import VoiceActivityDetectorParams
from tether.runtime import Pipeline, default_registry
from tether.runtime.node import Emit, Produced
from tether.testing.signals import (
    chunks,
    convert,
    silence_with_noise,
    speech_like,
    speech_sample,
)

TOLERANCE = 0.06
"""Seconds the detected span may be off from the truth (three 20 ms frames)."""


def vad(**params: Any) -> VoiceActivityDetector:
    return VoiceActivityDetector("vad", VoiceActivityDetectorParams.model_validate(params))


def spans(produced: list[Produced]) -> list[tuple[float, float]]:
    segments = [s for s in on_port(produced, "out") if isinstance(s, Audio)]
    return [(s.timestamp or 0.0, (s.timestamp or 0.0) + s.duration) for s in segments]


def events(produced: list[Produced]) -> list[dict[str, Any]]:
    return [e.value for e in on_port(produced, "events") if isinstance(e, Json)]


def two_bursts(pause: float, rate: int = 16000) -> Audio:
    """Noise, 0.8 s speech, `pause` of noise, 0.8 s speech, noise."""
    parts = [
        silence_with_noise(1.0, rate, seed=1),
        speech_like(0.8, rate, seed=2),
        silence_with_noise(pause, rate, seed=3),
        speech_like(0.8, rate, fundamental=180, seed=4),
        silence_with_noise(1.0, rate, seed=5),
    ]
    return Audio(samples=convert(np.concatenate(parts), np.int16), sample_rate=rate)


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("frame", ["10ms", "20ms", "30ms"])
async def test_detected_speech_matches_the_truth_unary_and_streamed(rate: int, frame: str) -> None:
    audio, (start, end) = speech_sample(sample_rate=rate)
    unary = await processed(vad(padding="0ms", frameDuration=frame), [audio])
    stream = await streamed(vad(padding="0ms", frameDuration=frame), chunks(audio, 0.02))
    assert unary == stream
    [(found_start, found_end)] = spans(unary)
    assert found_start == pytest.approx(start, abs=TOLERANCE)
    assert found_end == pytest.approx(end, abs=TOLERANCE)


@pytest.mark.parametrize("fundamental", [120, 160, 200])
@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
async def test_boundaries_hold_for_every_aggressiveness_and_voice_pitch(
    fundamental: int, aggressiveness: int
) -> None:
    audio, (start, end) = speech_sample(fundamental=fundamental, seed=fundamental)
    produced = await processed(vad(padding="0ms", aggressiveness=aggressiveness), [audio])
    [(found_start, found_end)] = spans(produced)
    assert found_start == pytest.approx(start, abs=TOLERANCE)
    assert found_end == pytest.approx(end, abs=TOLERANCE)


async def test_a_segment_comes_out_with_its_events_around_it() -> None:
    audio, _ = speech_sample()
    produced = await processed(vad(padding="0ms"), [audio])
    assert [p.port if isinstance(p, Emit) else "out" for p in produced] == [
        "events",
        "out",
        "events",
    ]
    [segment] = on_port(produced, "out")
    assert isinstance(segment, Audio)
    assert segment.samples.dtype == np.int16
    assert segment.sample_rate == 16000
    assert segment.timestamp is not None
    start, end = segment.timestamp, segment.timestamp + segment.duration
    assert dict(segment.metadata) == {"speech_start": str(start), "speech_end": str(round(end, 6))}
    assert events(produced) == [
        {"event": "speech_start", "time": start},
        {"event": "speech_end", "time": pytest.approx(end), "duration": pytest.approx(end - start)},
    ]
    first = round(start * 16000)
    np.testing.assert_array_equal(segment.samples, audio.samples[first : first + segment.frames])


async def test_speech_start_is_announced_while_the_speech_is_still_going() -> None:
    audio, (_, end) = speech_sample()
    node = vad(padding="0ms")
    announced_at = None
    for piece in chunks(audio, 0.02):
        produced = await node.process(piece)
        assert isinstance(produced, list)
        if any(e["event"] == "speech_start" for e in events(produced)):
            announced_at = piece.timestamp
            break
    assert announced_at is not None
    assert announced_at < end - 0.5


async def test_padding_extends_both_ends_and_stops_at_the_stream_start() -> None:
    audio, (start, end) = speech_sample(lead=0.1)
    [(found_start, found_end)] = spans(await processed(vad(padding="300ms"), [audio]))
    assert found_start == 0.0
    assert found_end == pytest.approx(end + 0.3, abs=TOLERANCE)
    audio, (start, end) = speech_sample()
    [(found_start, found_end)] = spans(await processed(vad(padding="300ms"), [audio]))
    assert found_start == pytest.approx(start - 0.3, abs=TOLERANCE)
    assert found_end == pytest.approx(end + 0.3, abs=TOLERANCE)


async def test_a_pause_shorter_than_twice_the_padding_does_not_split_speech() -> None:
    audio = two_bursts(pause=0.5)
    merged = spans(await streamed(vad(padding="300ms"), chunks(audio, 0.02)))
    split = spans(await streamed(vad(padding="100ms"), chunks(audio, 0.02)))
    assert len(merged) == 1
    assert merged[0] == pytest.approx((0.7, 1.0 + 0.8 + 0.5 + 0.8 + 0.3), abs=TOLERANCE)
    assert len(split) == 2
    assert split[0] == pytest.approx((0.9, 1.9), abs=TOLERANCE)
    assert split[1] == pytest.approx((2.2, 3.2), abs=TOLERANCE)


async def test_noise_alone_yields_no_segment_and_no_event() -> None:
    for seed in range(5):
        noise = convert(silence_with_noise(4.0, 16000, sigma=300 / 32768, seed=seed), np.int16)
        produced = await processed(
            vad(padding="0ms", minSpeechDuration="0ms", aggressiveness=0),
            [Audio(samples=noise, sample_rate=16000)],
        )
        assert produced == []


async def test_min_speech_duration_drops_a_short_blip() -> None:
    blip, (start, end) = speech_sample(speech=0.2)
    kept = await processed(vad(padding="0ms", minSpeechDuration="0ms"), [blip])
    dropped = await processed(vad(padding="0ms", minSpeechDuration="300ms"), [blip])
    assert spans(kept) == [pytest.approx((start, end), abs=TOLERANCE)]
    assert dropped == []


async def test_float_audio_is_judged_like_int16_and_comes_out_as_float() -> None:
    audio, _ = speech_sample(dtype=np.float32)
    as_int16 = Audio(samples=convert(audio.samples, np.int16), sample_rate=16000)
    float_result = await processed(vad(), [audio])
    int_result = await processed(vad(), [as_int16])
    assert spans(float_result) == spans(int_result)
    assert events(float_result) == events(int_result)
    [segment] = on_port(float_result, "out")
    assert isinstance(segment, Audio)
    assert segment.samples.dtype == np.float32


async def test_a_mono_column_comes_out_as_a_column() -> None:
    audio, _ = speech_sample()
    column = Audio(samples=audio.samples.reshape(-1, 1), sample_rate=16000)
    [segment] = on_port(await processed(vad(), [column]), "out")
    assert isinstance(segment, Audio)
    assert segment.samples.shape == (segment.frames, 1)


async def test_times_count_from_the_first_input_timestamp() -> None:
    audio, (start, end) = speech_sample()
    pieces = chunks(Audio(samples=audio.samples, sample_rate=16000, timestamp=100.0), 0.02)
    [(found_start, found_end)] = spans(await streamed(vad(padding="0ms"), pieces))
    assert found_start == pytest.approx(100.0 + start, abs=TOLERANCE)
    assert found_end == pytest.approx(100.0 + end, abs=TOLERANCE)


async def test_an_open_segment_is_closed_by_flush() -> None:
    audio, (start, _) = speech_sample(tail=0.0)
    node = vad(padding="0ms")
    produced = await node.process(audio)
    assert spans(produced if isinstance(produced, list) else []) == []
    assert not node.is_idle
    flushed = await node.flush()
    assert isinstance(flushed, list)
    [(found_start, found_end)] = spans(flushed)
    assert found_start == pytest.approx(start, abs=TOLERANCE)
    assert found_end == pytest.approx(audio.duration, abs=0.001)
    assert node.is_idle


async def test_idle_only_when_nothing_held_could_still_become_speech() -> None:
    audio, (start, end) = speech_sample()
    node = vad(padding="0ms", window="300ms")
    idle_at: dict[float, bool] = {}
    for piece in chunks(audio, 0.02):
        await node.process(piece)
        idle_at[round((piece.timestamp or 0.0) + 0.02, 2)] = node.is_idle
    assert idle_at[0.6]
    assert not any(idle for t, idle in idle_at.items() if start < t <= end)
    # After the speech: the end takes most of a window of unvoiced frames to decide.
    assert idle_at[round(end + 0.5, 2)]
    # A partial frame is state too.
    await node.process(Audio(samples=np.zeros(100, np.int16), sample_rate=16000))
    assert not node.is_idle


async def test_a_pipeline_delivers_segments_and_events_from_both_ports() -> None:
    manifest = parse_manifest(
        {
            "version": "v1",
            "metadata": {"name": "vad"},
            "nodes": [
                {"id": "frames", "nodeType": "AudioChunker", "params": {"duration": "20ms"}},
                {"id": "vad", "nodeType": "VoiceActivityDetector", "params": {"padding": "0ms"}},
            ],
            "connections": [{"from": "frames", "to": "vad"}],
        }
    )
    audio, (start, end) = speech_sample()
    outputs = await Pipeline.from_manifest(manifest, default_registry()).run(audio)
    kinds = [(o.node_id, type(o.data).__name__) for o in outputs]
    assert kinds == [("vad", "Json"), ("vad", "Audio"), ("vad", "Json")]
    segment = outputs[1].data
    assert isinstance(segment, Audio)
    assert segment.timestamp is not None
    assert segment.timestamp == pytest.approx(start, abs=TOLERANCE)
    assert segment.timestamp + segment.duration == pytest.approx(end, abs=TOLERANCE)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            Audio(samples=np.zeros(441, np.int16), sample_rate=44100),
            "input.sample_rate",
            "Resample",
        ),
        (Audio(samples=np.zeros((160, 2), np.int16), sample_rate=16000), "input.samples", "mono"),
        (Audio(samples=np.zeros(160, np.int32), sample_rate=16000), "input.samples", "int32"),
        (Text(text="hello"), "input", "takes Audio, got Text"),
    ],
    ids=["rate", "stereo", "int32", "text"],
)
async def test_vad_refuses_what_webrtcvad_cannot_judge(data: Any, field: str, message: str) -> None:
    with pytest.raises(DataValidationError, match=message) as caught:
        await vad().process(data)
    assert caught.value.field == field
    assert "'vad' (VoiceActivityDetector)" in str(caught.value)


@pytest.mark.parametrize(
    "params",
    [
        {"aggressiveness": 7},
        {"aggressiveness": -1},
        {"frameDuration": "25ms"},
        {"frameDuration": "1s"},
        {"padding": "-1ms"},
        {"window": "0ms"},
        {"minSpeechDuration": "soon"},
    ],
)
def test_vad_params_refuse_values_outside_their_bounds(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        VoiceActivityDetectorParams.model_validate(params)


def test_vad_params_defaults_and_accepted_frame_durations() -> None:
    defaults = VoiceActivityDetectorParams()
    assert defaults.model_dump(by_alias=True) == {
        "aggressiveness": 2,
        "frameDuration": "20ms",
        "padding": "300ms",
        "minSpeechDuration": "250ms",
        "window": "300ms",
    }
    for frame, seconds in (("10ms", 0.01), ("20ms", 0.02), ("30ms", 0.03), (0.03, 0.03)):
        params = VoiceActivityDetectorParams.model_validate({"frameDuration": frame})
        assert params.frame_duration == seconds
