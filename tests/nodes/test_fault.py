"""Fault: which inputs fail (every Nth, seeded probability), what failing does in each
mode (error, corrupt, hang), and how a fault surfaces from a pipeline run."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from tether.data import Audio, Binary, Json, RuntimeData, Tensor, Text, Video
from tether.errors import NodeExecutionError
from tether.manifest import parse_manifest
from tether.nodes import Fault, InjectedFault
from tether.nodes.fault import FaultParams
from tether.runtime import Pipeline, default_registry


def fault(**params: Any) -> Fault:
    return Fault("fault", FaultParams.model_validate(params))


async def failing_inputs(node: Fault, count: int) -> list[int]:
    """The input numbers (from 1) that the raised errors reported."""
    failed = []
    for index in range(1, count + 1):
        try:
            await node.process(Text(text=str(index)))
        except InjectedFault as error:
            failed.append(error.index)
    return failed


async def test_every_nth_input_fails_and_the_error_names_it() -> None:
    assert await failing_inputs(fault(failEvery=3), 10) == [3, 6, 9]
    with pytest.raises(InjectedFault, match=r"node 'fault' on input #1$"):
        await fault(failEvery=1).process(Text(text="x"))


async def test_inputs_that_do_not_fail_pass_through_unchanged() -> None:
    node = fault(failEvery=2)
    data = Json(value={"a": 1}, timestamp=1.0)
    assert await node.process(data) is data


async def test_seeded_probability_repeats_exactly() -> None:
    first = await failing_inputs(fault(failProbability=0.3, seed=11), 200)
    again = await failing_inputs(fault(failProbability=0.3, seed=11), 200)
    other = await failing_inputs(fault(failProbability=0.3, seed=12), 200)
    assert first == again
    assert first != other
    assert 40 <= len(first) <= 80


async def test_probability_extremes_fail_all_or_nothing() -> None:
    assert await failing_inputs(fault(failProbability=1.0, seed=1), 20) == list(range(1, 21))
    assert await failing_inputs(fault(failProbability=0.0, seed=1), 20) == []
    assert await failing_inputs(fault(), 20) == []


async def test_every_nth_and_probability_combine_without_shifting_the_random_schedule() -> None:
    random_only = set(await failing_inputs(fault(failProbability=0.2, seed=5), 60))
    combined = set(await failing_inputs(fault(failProbability=0.2, seed=5, failEvery=10), 60))
    assert combined == random_only | {10, 20, 30, 40, 50, 60}


SAMPLES: list[RuntimeData] = [
    Audio(samples=np.linspace(-0.5, 0.5, 320, dtype=np.float32), sample_rate=16000, timestamp=1.0),
    Video(frame=np.zeros((4, 6, 3), np.uint8), pts=9),
    Tensor(array=np.arange(12, dtype=np.int64).reshape(3, 4)),
    Binary(data=b"\x00" * 64, mime_type="audio/opus"),
    Text(text="hello world", metadata={"lang": "en"}),
    Json(value={"text": "hello", "confidence": 0.9}),
]


@pytest.mark.parametrize("data", SAMPLES, ids=lambda data: type(data).__name__)
async def test_corrupt_mode_returns_damaged_data_of_the_same_kind(data: RuntimeData) -> None:
    result = await fault(failEvery=1, mode="corrupt", seed=3).process(data)
    assert type(result) is type(data)
    assert result != data
    assert (result.timestamp, dict(result.metadata)) == (data.timestamp, dict(data.metadata))
    match data, result:
        case (Audio(), Audio()):
            assert result.samples.shape == data.samples.shape
            assert result.samples.dtype == data.samples.dtype
            assert result.sample_rate == data.sample_rate
        case (Video(), Video()):
            assert (result.frame.shape, result.pts) == (data.frame.shape, data.pts)
        case (Tensor(), Tensor()):
            assert (result.array.shape, result.array.dtype) == (data.array.shape, data.array.dtype)
        case (Binary(), Binary()):
            assert (len(result.data), result.mime_type) == (len(data.data), data.mime_type)
        case (Text(), Text()):
            assert result.text
        case (Json(), Json()):
            assert isinstance(result.value, str)


async def test_corruption_is_repeatable_with_a_seed() -> None:
    data = Binary(data=bytes(32))
    first = await fault(failEvery=1, mode="corrupt", seed=3).process(data)
    again = await fault(failEvery=1, mode="corrupt", seed=3).process(data)
    assert first == again


async def test_hang_mode_never_returns_but_cancels_cleanly() -> None:
    node = fault(failEvery=2, mode="hang")
    assert await node.process(Text(text="first")) == Text(text="first")
    task = asyncio.create_task(node.process(Text(text="second")))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout=0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_injected_error_surfaces_as_a_node_execution_error_of_the_run() -> None:
    manifest = parse_manifest(
        {
            "version": "v1",
            "metadata": {"name": "drill"},
            "nodes": [
                {"id": "in", "nodeType": "PassThrough"},
                {"id": "chaos", "nodeType": "Fault", "params": {"failEvery": 1}},
            ],
            "connections": [{"from": "in", "to": "chaos"}],
        }
    )
    pipeline = Pipeline.from_manifest(manifest, default_registry())
    with pytest.raises(NodeExecutionError, match="'chaos'") as caught:
        await pipeline.run(Text(text="x"))
    assert isinstance(caught.value.__cause__, InjectedFault)


@pytest.mark.parametrize(
    "params",
    [{"failEvery": 0}, {"failProbability": 1.5}, {"failProbability": -0.1}, {"mode": "crash"}],
)
def test_fault_params_refuse_impossible_schedules_and_unknown_modes(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        FaultParams.model_validate(params)
