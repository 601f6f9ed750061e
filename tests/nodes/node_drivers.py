"""Run a node through its public methods, as the executor would, and sort what it produced."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from tether.data import RuntimeData
from tether.runtime.node import Emit, Node, Produced, as_produced


async def processed(node: Node[Any], inputs: Iterable[RuntimeData]) -> list[Produced]:
    """Calls `process` for every input, then `flush`, and gathers everything produced."""
    produced: list[Produced] = []
    for item in inputs:
        produced.extend(as_produced(await node.process(item)))
    produced.extend(as_produced(await node.flush()))
    return produced


async def _items(inputs: Iterable[RuntimeData]) -> AsyncIterator[RuntimeData]:
    for item in inputs:
        yield item


async def streamed(node: Node[Any], inputs: Iterable[RuntimeData]) -> list[Produced]:
    """Feeds the inputs to `node.stream` as an async iterator and gathers its outputs."""
    return [produced async for produced in node.stream(_items(inputs))]


def on_port(produced: Iterable[Produced], port: str) -> list[RuntimeData]:
    """What went to `port`; plain values go to the node's first port, "out"."""
    return [
        item.data if isinstance(item, Emit) else item
        for item in produced
        if (item.port if isinstance(item, Emit) else "out") == port
    ]
