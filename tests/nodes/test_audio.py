"""Gain, Resample and AudioChunker: sample math per dtype, streaming state, timestamps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import soxr
from node_drivers import processed, streamed
from pydantic import ValidationError

from tether.data import Audio, Json, Text
from tether.errors import DataValidationError
from tether.nodes import AudioChunker, Gain, Resample
from tether.nodes.audio import AudioChunkerParams, GainParams, ResampleParams
from tether.testing.signals import chunks

DOUBLE_DB = 20 * np.log10(2)  # 6.0206 dB


def gain(db: float) -> Gain:
    return Gain("gain", GainParams.model_validate({"gainDb": db}))


def resample(rate: int, **params: Any) -> Resample:
    return Resample("resample", ResampleParams.model_validate({"sampleRate": rate, **params}))


def chunker(duration: str, **params: Any) -> AudioChunker:
    return AudioChunker(
        "chunker", AudioChunkerParams.model_validate({"duration": duration, **params})
    )


def sine(frequency: float, rate: int, seconds: float, dtype: Any = np.float32) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * frequency * t)
    if np.dtype(dtype).kind == "i":
        return np.rint(wave * np.iinfo(dtype).max).astype(dtype)
    return wave.astype(dtype)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.shape[0], 1 / rate)[np.argmax(spectrum)])


# Gain


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
async def test_gain_of_six_db_doubles_float_amplitude_in_the_same_dtype(dtype: Any) -> None:
    samples = np.array([0.0, 0.25, -0.125, 0.4], dtype=dtype)
    result = await gain(DOUBLE_DB).process(Audio(samples=samples, sample_rate=16000))
    assert isinstance(result, Audio)
    assert result.samples.dtype == dtype
    np.testing.assert_allclose(result.samples, samples.astype(np.float64) * 2, rtol=1e-3)


async def test_gain_does_not_clip_float_audio() -> None:
    result = await gain(DOUBLE_DB).process(Audio(samples=np.array([0.8, -0.9]), sample_rate=8000))
    assert isinstance(result, Audio)
    np.testing.assert_allclose(result.samples, [1.6, -1.8], rtol=1e-4)


async def test_negative_gain_halves_int16_with_rounding() -> None:
    samples = np.array([1000, -1000, 3, 32767], dtype=np.int16)
    result = await gain(-DOUBLE_DB).process(Audio(samples=samples, sample_rate=16000))
    assert isinstance(result, Audio)
    assert result.samples.dtype == np.int16
    assert result.samples.tolist() == [500, -500, 2, 16384]


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
async def test_gain_clips_integer_audio_to_its_dtype_range(dtype: Any) -> None:
    info = np.iinfo(dtype)
    samples = np.array([info.max // 2 + 10, info.min // 2 - 10, 100], dtype=dtype)
    result = await gain(DOUBLE_DB).process(Audio(samples=samples, sample_rate=16000))
    assert isinstance(result, Audio)
    assert result.samples.dtype == dtype
    assert result.samples.tolist() == [info.max, info.min, 200]


async def test_gain_keeps_shape_timestamp_and_metadata() -> None:
    stereo = np.full((4, 2), 0.25, dtype=np.float32)
    data = Audio(samples=stereo, sample_rate=48000, timestamp=3.5, metadata={"call": "42"})
    result = await gain(-120).process(data)
    assert isinstance(result, Audio)
    assert (result.samples.shape, result.timestamp, dict(result.metadata)) == (
        (4, 2),
        3.5,
        {"call": "42"},
    )
    assert result.sample_rate == 48000
    assert np.all(np.abs(result.samples) < 1e-6)


async def test_gain_refuses_text_naming_the_node_and_the_kind_it_takes() -> None:
    with pytest.raises(DataValidationError) as caught:
        await gain(3).process(Text(text="loud"))
    assert caught.value.field == "input"
    assert str(caught.value) == "input: node 'gain' (Gain) takes Audio, got Text"


async def test_gain_refuses_unsigned_samples() -> None:
    with pytest.raises(DataValidationError, match="float or signed integer samples, got uint8"):
        await gain(3).process(Audio(samples=np.zeros(4, np.uint8), sample_rate=8000))


@pytest.mark.parametrize("params", [{"gainDb": 60.5}, {"gainDb": -121}, {}, {"gain": 3}])
def test_gain_params_refuse_out_of_range_or_missing_gain(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GainParams.model_validate(params)


# Resample


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32])
async def test_resample_changes_rate_and_length_and_keeps_dtype_and_pitch(dtype: Any) -> None:
    data = Audio(samples=sine(1000, 48000, 1.0, dtype), sample_rate=48000)
    outputs = await processed(resample(16000), [data])
    assert all(isinstance(o, Audio) and o.sample_rate == 16000 for o in outputs)
    samples = np.concatenate([o.samples for o in outputs if isinstance(o, Audio)])
    assert samples.dtype == dtype
    assert samples.shape == (16000,)
    assert dominant_frequency(samples, 16000) == pytest.approx(1000, abs=2)


async def test_resample_handles_several_channels() -> None:
    stereo = np.stack([sine(440, 44100, 0.5), sine(880, 44100, 0.5)], axis=1)
    outputs = await processed(resample(22050), [Audio(samples=stereo, sample_rate=44100)])
    samples = np.concatenate([o.samples for o in outputs if isinstance(o, Audio)])
    assert samples.shape == (11025, 2)
    assert dominant_frequency(samples[:, 0], 22050) == pytest.approx(440, abs=3)
    assert dominant_frequency(samples[:, 1], 22050) == pytest.approx(880, abs=3)


async def test_resample_keeps_a_mono_column_a_column_to_the_last_sample() -> None:
    column = sine(440, 48000, 0.1).reshape(-1, 1)
    outputs = await processed(resample(16000), [Audio(samples=column, sample_rate=48000)])
    assert len(outputs) == 2
    assert all(isinstance(o, Audio) and o.samples.ndim == 2 for o in outputs)
    assert sum(o.frames for o in outputs if isinstance(o, Audio)) == 1600


@pytest.mark.parametrize("chunk", [0.01, 0.02, 0.0137])
async def test_streamed_resampling_equals_resampling_the_whole_signal(chunk: float) -> None:
    rng = np.random.default_rng(7)
    signal = (rng.standard_normal(44100) * 0.1).astype(np.float32)
    whole = Audio(samples=signal, sample_rate=44100, timestamp=0.0)
    outputs = await streamed(resample(16000), chunks(whole, chunk))
    joined = np.concatenate([o.samples for o in outputs if isinstance(o, Audio)])
    one_shot = soxr.resample(signal, 44100, 16000, quality="HQ")
    assert joined.shape == one_shot.shape
    np.testing.assert_allclose(joined, one_shot, atol=1e-6)


async def test_resampled_chunks_are_timestamped_by_their_first_sample() -> None:
    whole = Audio(samples=sine(300, 48000, 0.5), sample_rate=48000, timestamp=10.0)
    outputs = [
        o for o in await streamed(resample(16000), chunks(whole, 0.02)) if isinstance(o, Audio)
    ]
    assert len(outputs) > 5
    produced = 0
    for output in outputs:
        assert output.timestamp == pytest.approx(10.0 + produced / 16000)
        produced += output.frames


async def test_resample_without_timestamps_gives_none() -> None:
    outputs = await processed(
        resample(8000), [Audio(samples=sine(300, 16000, 0.1), sample_rate=16000)]
    )
    assert outputs
    assert all(isinstance(o, Audio) and o.timestamp is None for o in outputs)


async def test_resample_passes_audio_at_the_target_rate_through() -> None:
    node = resample(16000)
    data = Audio(samples=sine(300, 16000, 0.1), sample_rate=16000)
    assert await node.process(data) is data
    assert node.is_idle
    assert await node.flush() is None


async def test_resample_counts_as_idle_so_stream_acks_keep_flowing() -> None:
    node = resample(16000)
    await node.process(Audio(samples=sine(300, 48000, 0.02), sample_rate=48000))
    assert node.is_idle
    tail = await node.flush()
    assert isinstance(tail, Audio)
    assert tail.frames > 0


@pytest.mark.parametrize(
    "second",
    [
        Audio(samples=np.zeros(480, np.float32), sample_rate=44100),
        Audio(samples=np.zeros((480, 2), np.float32), sample_rate=48000),
        Audio(samples=np.zeros(480, np.int16), sample_rate=48000),
    ],
    ids=["rate", "channels", "dtype"],
)
async def test_resample_refuses_a_format_change_mid_stream(second: Audio) -> None:
    node = resample(16000)
    await node.process(Audio(samples=np.zeros(480, np.float32), sample_rate=48000))
    with pytest.raises(DataValidationError, match="cannot change audio format within a stream"):
        await node.process(second)


async def test_resample_refuses_dtypes_soxr_cannot_take() -> None:
    with pytest.raises(DataValidationError, match="got float16"):
        await resample(16000).process(Audio(samples=np.zeros(10, np.float16), sample_rate=8000))


async def test_resample_refuses_json() -> None:
    with pytest.raises(DataValidationError, match=r"'resample' \(Resample\) takes Audio, got Json"):
        await resample(16000).process(Json(value={}))


@pytest.mark.parametrize(
    "params", [{"sampleRate": 999}, {"sampleRate": 16000, "quality": "best"}, {}]
)
def test_resample_params_refuse_bad_rates_and_qualities(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ResampleParams.model_validate(params)


def test_resample_quality_defaults_to_soxr_hq() -> None:
    assert ResampleParams.model_validate({"sampleRate": 16000}).quality == "HQ"


# AudioChunker


async def test_chunker_regroups_uneven_inputs_into_fixed_frames() -> None:
    signal = np.arange(2000, dtype=np.int16)
    pieces, start = [], 0
    for size in (100, 500, 77, 1000, 323):
        pieces.append(Audio(samples=signal[start : start + size], sample_rate=16000, timestamp=5.0))
        start += size
    outputs = await processed(chunker("20ms"), pieces)
    frames = [o for o in outputs if isinstance(o, Audio)]
    assert [f.frames for f in frames] == [320] * 6 + [80]
    np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), signal)
    assert [f.timestamp for f in frames] == pytest.approx([5.0 + 0.02 * k for k in range(7)])


async def test_chunker_pads_the_last_frame_with_zeros_when_asked() -> None:
    data = Audio(samples=np.ones((500, 2), np.float32), sample_rate=8000)
    frames = await processed(chunker("30ms", padLast=True), [data])
    assert [f.samples.shape for f in frames if isinstance(f, Audio)] == [
        (240, 2),
        (240, 2),
        (240, 2),
    ]
    last = frames[-1]
    assert isinstance(last, Audio)
    assert last.samples[:20].sum() == 40
    assert not last.samples[20:].any()


async def test_chunker_is_idle_exactly_when_its_buffer_is_empty() -> None:
    node = chunker("10ms")  # 160 samples at 16 kHz
    assert node.is_idle
    assert await node.process(Audio(samples=np.zeros(100, np.int16), sample_rate=16000)) == []
    assert not node.is_idle
    frames = await node.process(Audio(samples=np.zeros(60, np.int16), sample_rate=16000))
    assert isinstance(frames, list)
    assert len(frames) == 1
    assert node.is_idle
    await node.process(Audio(samples=np.zeros(10, np.int16), sample_rate=16000))
    assert not node.is_idle
    rest = await node.flush()
    assert isinstance(rest, Audio)
    assert rest.frames == 10
    assert node.is_idle
    assert await node.flush() is None


async def test_chunker_frames_carry_the_metadata_of_the_input_they_start_in() -> None:
    inputs = [
        Audio(samples=np.zeros(300, np.float32), sample_rate=16000, metadata={"part": "a"}),
        Audio(samples=np.zeros(300, np.float32), sample_rate=16000, metadata={"part": "b"}),
        Audio(samples=np.zeros(300, np.float32), sample_rate=16000, metadata={"part": "c"}),
    ]
    frames = await streamed(chunker("10ms"), inputs)
    # Frames start at samples 0, 160, 320, 480, 640, 800; inputs start at 0, 300, 600.
    assert [dict(f.metadata)["part"] for f in frames if isinstance(f, Audio)] == list("aabbcc")
    assert [f.timestamp for f in frames if isinstance(f, Audio)] == pytest.approx(
        [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]
    )


async def test_chunker_refuses_a_sample_rate_change() -> None:
    node = chunker("20ms")
    await node.process(Audio(samples=np.zeros(10, np.int16), sample_rate=16000))
    with pytest.raises(DataValidationError, match="started with 16000 Hz"):
        await node.process(Audio(samples=np.zeros(10, np.int16), sample_rate=8000))


@pytest.mark.parametrize("duration", ["0ms", "2m", "-5ms"])
def test_chunker_params_refuse_empty_or_huge_frames(duration: str) -> None:
    with pytest.raises(ValidationError, match="duration"):
        AudioChunkerParams.model_validate({"duration": duration})
