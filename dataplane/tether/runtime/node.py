"""The node base class every node type derives from.

A node instance lives for one run (one unary call or one stream), so it may keep
per-run state on `self`. Heavy resources that outlive a run (models) belong in
class-level caches the node type manages itself.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeAlias, TypeVar

from pydantic import BaseModel

from tether.data import RuntimeData
from tether.manifest.catalog import NodeTypeInfo
from tether.manifest.models import DEFAULT_OUTPUT_PORT
from tether.manifest.types import NoParams


@dataclass(frozen=True, slots=True)
class Emit:
    """An output sent to a named output port instead of the node's first one."""

    port: str
    data: RuntimeData


Produced: TypeAlias = RuntimeData | Emit
ProcessResult: TypeAlias = Produced | Sequence[Produced] | None
"""What `process` and `flush` return: one value, several, or nothing."""

ParamsT = TypeVar("ParamsT", bound=BaseModel)


class Node(Generic[ParamsT]):
    """Base of all node types.

    Override `process` (one input in, zero or more outputs out) and, for nodes that
    buffer, `flush` and `is_idle`. Override `stream` only to take over the whole input
    stream, as a remote node does.
    """

    node_type: ClassVar[str] = ""
    """The name manifests use; defaults to the class name."""
    params_model: ClassVar[type[BaseModel]] = NoParams
    outputs: ClassVar[tuple[str, ...]] = (DEFAULT_OUTPUT_PORT,)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "node_type" not in cls.__dict__:
            cls.node_type = cls.__name__

    def __init__(self, node_id: str, params: ParamsT) -> None:
        self.node_id = node_id
        self.params = params

    @classmethod
    def info(cls) -> NodeTypeInfo:
        return NodeTypeInfo(cls.node_type, cls.params_model, cls.outputs)

    async def setup(self) -> None:
        """Acquire what the run needs. Called once before the first input."""

    async def teardown(self) -> None:
        """Release what `setup` acquired. Called once, also after failures and cancellation."""

    async def process(self, data: RuntimeData) -> ProcessResult:
        """Handle one input; return what it produces now."""
        return data

    async def flush(self) -> ProcessResult:
        """The input has ended: return what is still buffered."""
        return None

    @property
    def is_idle(self) -> bool:
        """True when the node holds no state from earlier inputs.

        Stream acknowledgements pass a node only while it is idle, so a client that
        resumes a stream elsewhere never loses what a buffering node had kept.
        """
        return True

    async def stream(self, inputs: AsyncIterator[RuntimeData]) -> AsyncGenerator[Produced, None]:
        """Turn the input stream into the output stream; by default through `process`."""
        async for data in inputs:
            for produced in as_produced(await self.process(data)):
                yield produced
        for produced in as_produced(await self.flush()):
            yield produced


def as_produced(result: ProcessResult) -> Sequence[Produced]:
    if result is None:
        return ()
    if isinstance(result, Sequence):
        return result
    return (result,)
