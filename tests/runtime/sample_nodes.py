"""Small node types that make the executor's behaviour visible."""

from __future__ import annotations

import asyncio

from tether.data import RuntimeData, Text
from tether.manifest import CamelModel
from tether.runtime import Emit, Node, ProcessResult


class SuffixParams(CamelModel):
    suffix: str = ""


class Suffix(Node[SuffixParams]):
    """Appends its suffix to Text: the path an item took shows in its text."""

    params_model = SuffixParams

    async def process(self, data: RuntimeData) -> ProcessResult:
        assert isinstance(data, Text)
        return Text(text=data.text + self.params.suffix)


class SlowParams(CamelModel):
    seconds: float = 0.01


class Slow(Node[SlowParams]):
    params_model = SlowParams
    processed = 0

    async def process(self, data: RuntimeData) -> ProcessResult:
        await asyncio.sleep(self.params.seconds)
        type(self).processed += 1
        return data


class Explode(Node[CamelModel]):
    """Fails on the input whose text is "boom"."""

    async def process(self, data: RuntimeData) -> ProcessResult:
        if isinstance(data, Text) and data.text.startswith("boom"):
            raise RuntimeError("detonated on purpose")
        return data


class BatchParams(CamelModel):
    size: int = 3


class Batch(Node[BatchParams]):
    """Joins `size` texts into one: it holds state between inputs."""

    params_model = BatchParams

    def __init__(self, node_id: str, params: BatchParams) -> None:
        super().__init__(node_id, params)
        self.pending: list[str] = []

    async def process(self, data: RuntimeData) -> ProcessResult:
        assert isinstance(data, Text)
        self.pending.append(data.text)
        if len(self.pending) < self.params.size:
            return None
        joined, self.pending = "+".join(self.pending), []
        return Text(text=joined)

    async def flush(self) -> ProcessResult:
        return Text(text="+".join(self.pending)) if self.pending else None

    @property
    def is_idle(self) -> bool:
        return not self.pending


class Lifecycle(Node[CamelModel]):
    """Records setup and teardown, to show every run cleans up."""

    events: list[str] = []

    async def setup(self) -> None:
        type(self).events.append(f"setup {self.node_id}")

    async def teardown(self) -> None:
        type(self).events.append(f"teardown {self.node_id}")


class WrongPort(Node[CamelModel]):
    async def process(self, data: RuntimeData) -> ProcessResult:
        return Emit("nowhere", data)


class SlowTeardown(Node[CamelModel]):
    """Cleans up with an await, as a node closing a network client does."""

    finished: list[str] = []

    async def teardown(self) -> None:
        await asyncio.sleep(0.02)
        type(self).finished.append(self.node_id)


class BrokenTeardown(Node[CamelModel]):
    async def teardown(self) -> None:
        raise OSError("could not release the device")


class AwaitsCancelledFuture(Node[CamelModel]):
    """Awaits a future that something else cancelled, as a library call may."""

    async def process(self, data: RuntimeData) -> ProcessResult:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future
        return data
