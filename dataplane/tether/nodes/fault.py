"""A node that misbehaves on purpose, for failure drills: errors, corrupt data or hangs.

Inputs are numbered from 1 within a run. An input is faulty when its number is a multiple
of `failEvery`, or when a draw from the seeded generator falls below `failProbability`
(one draw per input, whether or not `failEvery` already chose it, so the random schedule
does not depend on `failEvery`). Every other input passes through unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from tether.data import Audio, Binary, Json, RuntimeData, Tensor, Text, Video
from tether.manifest.types import CamelModel
from tether.runtime.node import Node, ProcessResult


class InjectedFault(RuntimeError):
    """Raised by a `Fault` node in "error" mode. A drill error, not a Tether error:
    it stands for a bug in a node, which the executor reports as `NodeExecutionError`."""

    def __init__(self, node_id: str, index: int) -> None:
        self.node_id = node_id
        self.index = index
        super().__init__(f"fault injected by node {node_id!r} on input #{index}")


class FaultParams(CamelModel):
    fail_every: int | None = Field(default=None, ge=1)
    """Fail every Nth input (1 = every input). None: only `failProbability` decides."""
    fail_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    """Chance that any input fails. 0 by default, so a drill states exactly what it wants."""
    seed: int | None = None
    """Seeds the random draws and the corrupt bytes, so a drill repeats exactly.
    None: different on every run."""
    mode: Literal["error", "corrupt", "hang"] = "error"
    """What a faulty input does: "error" raises `InjectedFault`; "corrupt" outputs garbage
    of the same kind and size (see `corrupt`); "hang" never returns, until cancelled."""


class Fault(Node[FaultParams]):
    """Passes inputs through, except the ones the schedule picks, which fail as `mode` says."""

    params_model = FaultParams

    def __init__(self, node_id: str, params: FaultParams) -> None:
        super().__init__(node_id, params)
        self._random = random.Random(params.seed)
        self._count = 0

    async def process(self, data: RuntimeData) -> ProcessResult:
        self._count += 1
        every = self.params.fail_every
        # Always draw, so the random schedule is the same whatever `failEvery` is.
        drawn = self._random.random() < self.params.fail_probability
        if not (drawn or (every is not None and self._count % every == 0)):
            return data
        if self.params.mode == "error":
            raise InjectedFault(self.node_id, self._count)
        if self.params.mode == "corrupt":
            return corrupt(data, self._random)
        # A future nobody resolves: waits forever, yet cancels cleanly with the run.
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable: the hang future is never resolved")


def corrupt(data: RuntimeData, rng: random.Random) -> RuntimeData:
    """Garbage of the same kind and size, keeping timestamp and metadata.

    Arrays (Audio, Video, Tensor) keep dtype and shape but get random bytes, so float
    arrays may hold NaN or inf, as real corruption would. Binary gets random bytes of the
    same length and MIME type. Text becomes random bytes of its UTF-8 length, decoded
    with replacement characters. Json becomes a string of hex garbage as long as the
    value's JSON text, so consumers expecting an object find a string.
    """
    match data:
        case Audio():
            return dataclasses.replace(data, samples=_garbage_array(data.samples, rng))
        case Video():
            return dataclasses.replace(data, frame=_garbage_array(data.frame, rng))
        case Tensor():
            return dataclasses.replace(data, array=_garbage_array(data.array, rng))
        case Binary():
            return dataclasses.replace(data, data=rng.randbytes(len(data.data)))
        case Text():
            garbage = rng.randbytes(len(data.text.encode()))
            return dataclasses.replace(data, text=garbage.decode("utf-8", errors="replace"))
        case Json():
            length = len(json.dumps(data.value))
            return dataclasses.replace(data, value=rng.randbytes((length + 1) // 2).hex()[:length])
    raise TypeError(f"cannot corrupt {type(data).__name__}")


def _garbage_array(array: npt.NDArray[Any], rng: random.Random) -> npt.NDArray[Any]:
    raw = rng.randbytes(array.nbytes)
    return np.frombuffer(raw, dtype=array.dtype).reshape(array.shape).copy()
