"""A registry of the sample node types, and a quick way to build pipelines from them."""

from __future__ import annotations

from typing import Any

import pytest
from sample_nodes import (
    AwaitsCancelledFuture,
    Batch,
    BrokenTeardown,
    Explode,
    Lifecycle,
    Slow,
    SlowTeardown,
    Suffix,
    WrongPort,
)

from tether.manifest import Manifest, parse_manifest
from tether.runtime import NodeRegistry, Pipeline


@pytest.fixture
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    for node_class in (
        Suffix,
        Slow,
        Explode,
        Batch,
        Lifecycle,
        WrongPort,
        SlowTeardown,
        BrokenTeardown,
        AwaitsCancelledFuture,
    ):
        registry.register(node_class)
    Slow.processed = 0
    Lifecycle.events = []
    SlowTeardown.finished = []
    return registry


def build_manifest(
    nodes: dict[str, tuple[str, dict[str, Any]]], edges: list[tuple[str, str]]
) -> Manifest:
    return parse_manifest(
        {
            "version": "v1",
            "metadata": {"name": "test"},
            "nodes": [{"id": i, "nodeType": t, "params": p} for i, (t, p) in nodes.items()],
            "connections": [{"from": a, "to": b} for a, b in edges],
        }
    )


@pytest.fixture
def make_pipeline(registry: NodeRegistry) -> Any:
    def make(
        nodes: dict[str, tuple[str, dict[str, Any]]],
        edges: list[tuple[str, str]],
        queue_size: int = 8,
    ) -> Pipeline:
        return Pipeline.from_manifest(build_manifest(nodes, edges), registry, queue_size=queue_size)

    return make
