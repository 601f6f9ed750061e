"""The simplest nodes: one that changes nothing and one that only takes its time."""

from __future__ import annotations

import asyncio

from pydantic import Field

from tether.data import RuntimeData
from tether.manifest.types import CamelModel, Duration, NoParams
from tether.runtime.node import Node, ProcessResult


class PassThrough(Node[NoParams]):
    """Returns every input unchanged: a placeholder, a tap point, or a test fixture."""

    params_model = NoParams

    async def process(self, data: RuntimeData) -> ProcessResult:
        return data


class DelayParams(CamelModel):
    delay: Duration = Field(ge=0, le=600)
    """Seconds to hold each input ("250ms", "5s"). Up to 10 minutes: longer than any
    deadline worth drilling, short enough that a typo cannot wedge a run for hours."""


class Delay(Node[DelayParams]):
    """Waits `delay`, then passes the input on: makes a slow node for deadline and retry drills.

    The wait is an ordinary sleep, so cancelling the run ends it at once.
    """

    params_model = DelayParams

    async def process(self, data: RuntimeData) -> ProcessResult:
        await asyncio.sleep(self.params.delay)
        return data
