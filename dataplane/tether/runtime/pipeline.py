"""The graph executor: runs a validated manifest, unary or streaming.

Every node runs as its own task and reads a bounded inbox, so a slow node holds back
its producers instead of letting queues grow (backpressure). Each connection is FIFO,
so items keep their order along every path. A node fed by several connections (fan-in)
sees their items interleaved in arrival order; a node feeding several (fan-out) hands
every item to every branch.

Streaming runs may carry sequence numbers. After each input the executor sends a
barrier through the graph; a node passes it on once it has finished everything before
it and holds no state from earlier inputs (`Node.is_idle`), and a node with several
upstreams passes the lowest barrier they all reached. When every sink has passed
barrier N, the run yields `Ack(N)`: all outputs of inputs <= N are out, and nothing of
them is kept anywhere. Remote stream resumption is built on this.

A server sends an ack in the frame of the output it follows when it can
(`Pipeline.stream_coalesced`), which halves the frames of a stateless stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from tether.data import RuntimeData
from tether.errors import InputStreamError, NodeExecutionError, PipelineError
from tether.manifest import Manifest, ValidatedManifest, validate_manifest
from tether.runtime.node import Emit, Node
from tether.runtime.registry import NodeRegistry, default_registry

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 8
"""Items buffered per node inbox: enough to smooth jitter, small enough to bound memory."""

_INPUT: Final = "<input>"


@dataclass(frozen=True, slots=True)
class NodeOutput:
    """A value produced by a sink node: the pipeline's output."""

    node_id: str
    data: RuntimeData


@dataclass(frozen=True, slots=True)
class Ack:
    """Inputs with sequence number <= `seq` are fully processed."""

    seq: int


@dataclass(frozen=True, slots=True)
class AckedOutput:
    """An output and the ack right behind it, both ready at once: one frame on the wire.

    Means exactly `output`, then `ack`; only `Pipeline.stream_coalesced` yields it.
    """

    output: NodeOutput
    ack: Ack


@dataclass(frozen=True, slots=True)
class _Barrier:
    upstream: str
    seq: int


@dataclass(frozen=True, slots=True)
class _End:
    upstream: str


@dataclass(frozen=True, slots=True)
class _Failure:
    error: PipelineError


_Item = RuntimeData | _Barrier | _End

Tap = Callable[[str, str, RuntimeData], None]
"""Called with (node id, output port, value) for every value any node produces."""


class Pipeline:
    """A validated manifest bound to its node types, ready to run any number of times.

    Each run gets fresh node instances, so runs never share state.
    """

    def __init__(
        self,
        validated: ValidatedManifest,
        registry: NodeRegistry,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.validated = validated
        self.queue_size = queue_size
        self._node_classes = {
            node.id: registry.get(node.node_type) for node in validated.manifest.nodes
        }

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        registry: NodeRegistry | None = None,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> Pipeline:
        """Validate `manifest` against `registry` (default: every installed node type)."""
        registry = registry or default_registry()
        return cls(validate_manifest(manifest, registry.catalog()), registry, queue_size=queue_size)

    @property
    def name(self) -> str:
        return self.validated.manifest.name

    @property
    def manifest(self) -> Manifest:
        return self.validated.manifest

    async def run(self, data: RuntimeData, *, tap: Tap | None = None) -> list[NodeOutput]:
        """Run one input through the graph and return every sink output."""

        async def single() -> AsyncIterator[RuntimeData]:
            yield data

        async with contextlib.aclosing(self.stream(single(), tap=tap)) as outputs:
            return [output async for output in outputs]

    async def stream(
        self, inputs: AsyncIterable[RuntimeData], *, tap: Tap | None = None
    ) -> AsyncGenerator[NodeOutput, None]:
        """Stream inputs through the graph; outputs come as soon as sinks produce them.

        Close the iterator (`contextlib.aclosing`) when you stop early: that tears down
        every node task at once.
        """
        run = _Run(self, acknowledged=False, tap=tap)
        async with contextlib.aclosing(run.execute(inputs)) as items:
            async for item in items:
                if isinstance(item, NodeOutput):
                    yield item

    async def stream_acked(
        self, inputs: AsyncIterable[tuple[int, RuntimeData]], *, tap: Tap | None = None
    ) -> AsyncGenerator[NodeOutput | Ack, None]:
        """Like `stream`, for inputs numbered by increasing sequence numbers; also yields Acks."""
        async with contextlib.aclosing(self.stream_coalesced(inputs, tap=tap)) as events:
            async for event in events:
                if isinstance(event, AckedOutput):
                    yield event.output
                    yield event.ack
                else:
                    yield event

    def stream_coalesced(
        self, inputs: AsyncIterable[tuple[int, RuntimeData]], *, tap: Tap | None = None
    ) -> AsyncGenerator[NodeOutput | Ack | AckedOutput, None]:
        """Like `stream_acked`, but an output whose ack is already waiting right behind it
        comes together with it as one `AckedOutput`, so that a server can send both in one
        frame.

        An output is never held back for an ack that is not there yet: it waits only
        while more results are already queued, never for a node. A stateless node queues
        the ack as soon as it asks for its next input, before the consumer even wakes up,
        so its outputs and acks almost always pair up.
        """
        return _Run(self, acknowledged=True, tap=tap).execute(inputs)

    def _instantiate(self) -> dict[str, Node[Any]]:
        params: Mapping[str, BaseModel] = self.validated.params
        return {
            node_id: node_class(node_id, params[node_id])
            for node_id, node_class in self._node_classes.items()
        }


class _Run:
    """One execution of a pipeline: node tasks, their inboxes, and the result queue."""

    def __init__(self, pipeline: Pipeline, *, acknowledged: bool, tap: Tap | None) -> None:
        graph = pipeline.validated.graph
        self.acknowledged = acknowledged
        self.tap = tap
        self.nodes = pipeline._instantiate()
        self.inboxes: dict[str, asyncio.Queue[_Item]] = {
            node_id: asyncio.Queue(pipeline.queue_size) for node_id in self.nodes
        }
        self.results: asyncio.Queue[NodeOutput | _Barrier | _End | _Failure] = asyncio.Queue(
            pipeline.queue_size
        )
        self.sources = graph.sources
        self.sinks = set(graph.sinks)
        self.upstreams = {n: graph.upstream(n) or [_INPUT] for n in self.nodes}
        self.routes: dict[str, dict[str, list[str]]] = {n: {} for n in self.nodes}
        for connection in graph.connections:
            targets = self.routes[connection.source].setdefault(connection.source_port, [])
            if connection.target not in targets:
                targets.append(connection.target)
        self.tasks: list[asyncio.Task[None]] = []
        self.failed = False

    async def execute(
        self, inputs: AsyncIterable[RuntimeData] | AsyncIterable[tuple[int, RuntimeData]]
    ) -> AsyncGenerator[NodeOutput | Ack | AckedOutput, None]:
        self.tasks = [
            asyncio.create_task(self._run_node(node_id), name=f"tether-node-{node_id}")
            for node_id in self.nodes
        ]
        self.tasks.append(asyncio.create_task(self._feed(inputs), name="tether-input-feeder"))
        try:
            async for item in self._collect():
                yield item
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _collect(self) -> AsyncIterator[NodeOutput | Ack | AckedOutput]:
        open_sinks = set(self.sinks)
        levels = dict.fromkeys(self.sinks, -1)
        acknowledged = -1
        # An output taken while more results are queued, kept to pair it with an ack
        # among them. Unacknowledged runs have no acks, so nothing is ever kept there.
        held: NodeOutput | None = None
        while open_sinks:
            if held is None:
                item = await self.results.get()
            elif self.results.empty():
                # Nothing is ready behind it: the output leaves now, its ack later.
                yield held
                held = None
                continue
            else:
                item = self.results.get_nowait()
            if isinstance(item, _Failure):
                if held is not None:
                    yield held  # as it would have left before the failure was seen
                raise item.error
            if isinstance(item, _End):
                open_sinks.discard(item.upstream)
            elif isinstance(item, _Barrier):
                levels[item.upstream] = item.seq
                if (level := min(levels.values())) > acknowledged:
                    acknowledged = level
                    if held is not None:
                        yield AckedOutput(held, Ack(level))
                        held = None
                    else:
                        yield Ack(level)
            else:
                if held is not None:
                    yield held
                    held = None
                if self.acknowledged:
                    held = item
                else:
                    yield item
        if held is not None:
            yield held

    async def _feed(
        self, inputs: AsyncIterable[RuntimeData] | AsyncIterable[tuple[int, RuntimeData]]
    ) -> None:
        iterator = aiter(inputs)
        try:
            async for item in iterator:
                if self.acknowledged:
                    seq, data = item  # type: ignore[misc]
                else:
                    data = item
                for source in self.sources:
                    await self.inboxes[source].put(data)
                if self.acknowledged:
                    for source in self.sources:
                        await self.inboxes[source].put(_Barrier(_INPUT, seq))
        except (Exception, asyncio.CancelledError) as exc:
            if _stopping():
                raise
            self._fail(InputStreamError(f"{type(exc).__name__}: {exc}"), exc)
            return
        finally:
            if (close := getattr(iterator, "aclose", None)) is not None:
                await close()
        for source in self.sources:
            await self.inboxes[source].put(_End(_INPUT))

    async def _run_node(self, node_id: str) -> None:
        node = self.nodes[node_id]
        inbox = self.inboxes[node_id]
        open_upstreams = set(self.upstreams[node_id])
        levels = dict.fromkeys(self.upstreams[node_id], -1)
        passed = -1

        async def pass_barrier(*, finished: bool = False) -> None:
            nonlocal passed
            level = min(levels.values())
            # A finished node holds nothing any more, whatever `is_idle` says.
            if level > passed and (finished or node.is_idle):
                passed = level
                await self._send_control(node_id, _Barrier(node_id, level))

        async def inputs() -> AsyncIterator[RuntimeData]:
            # Asked for the next item, the node has finished with the previous one.
            while open_upstreams:
                await pass_barrier()
                item = await inbox.get()
                if isinstance(item, _End):
                    open_upstreams.discard(item.upstream)
                elif isinstance(item, _Barrier):
                    levels[item.upstream] = item.seq
                else:
                    yield item

        finished = False
        try:
            await node.setup()
            async with contextlib.aclosing(node.stream(inputs())) as produced:
                async for value in produced:
                    if isinstance(value, Emit):
                        if value.port not in node.outputs:
                            ports = ", ".join(node.outputs)
                            raise ValueError(
                                f"emitted to unknown port {value.port!r}; ports: {ports}"
                            )
                        await self._send_data(node_id, value.port, value.data)
                    else:
                        await self._send_data(node_id, node.outputs[0], value)
            # A node may stop reading early; drain so its producers are never stuck.
            async for _ in inputs():
                pass
            finished = True
        except (Exception, asyncio.CancelledError) as exc:
            if _stopping():
                raise
            self._fail(NodeExecutionError(node_id, f"{type(exc).__name__}: {exc}"), exc)
        finally:
            try:
                await node.teardown()
            except Exception as exc:
                self._fail(
                    NodeExecutionError(node_id, f"teardown failed: {type(exc).__name__}: {exc}"),
                    exc,
                )
        # Only after teardown: the run is complete when every node has cleaned up.
        if finished and not self.failed:
            await pass_barrier(finished=True)
            await self._send_control(node_id, _End(node_id))

    async def _send_data(self, node_id: str, port: str, data: RuntimeData) -> None:
        if self.tap is not None:
            self.tap(node_id, port, data)
        for target in self.routes[node_id].get(port, ()):
            await self.inboxes[target].put(data)
        if node_id in self.sinks:
            await self.results.put(NodeOutput(node_id, data))

    async def _send_control(self, node_id: str, item: _Barrier | _End) -> None:
        """Barriers and ends go to every downstream node once, whatever the port."""
        targets = dict.fromkeys(
            t for port_targets in self.routes[node_id].values() for t in port_targets
        )
        for target in targets:
            await self.inboxes[target].put(item)
        if node_id in self.sinks:
            await self.results.put(item)

    def _fail(self, error: PipelineError, cause: BaseException) -> None:
        """Stop the run: the first failure wins, every other task is cancelled."""
        if self.failed:
            logger.debug("further failure after the run failed: %s", error)
            return
        self.failed = True
        error.__cause__ = cause
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        # Buffered outputs are moot once the run failed; make room for the failure.
        while self.results.full():
            self.results.get_nowait()
        self.results.put_nowait(_Failure(error))


def _stopping() -> bool:
    """True when the current task is being cancelled, as opposed to a CancelledError that
    came out of something it awaited (a cancelled future of a library, say), which is a
    failure of the run like any other."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
