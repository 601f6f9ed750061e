"""Graph analysis of a manifest: edges, sources, sinks, topological order and cycles.

`find_cycle` works on any adjacency mapping, so the operator uses it for cycles that
span several RemotePipeline resources as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tether.manifest.models import Connection, Manifest


@dataclass(frozen=True)
class Graph:
    """The connections of a manifest, indexed both ways. Node ids keep manifest order."""

    node_ids: tuple[str, ...]
    connections: tuple[Connection, ...]

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> Graph:
        return cls(tuple(node.id for node in manifest.nodes), tuple(manifest.connections))

    def downstream(self, node_id: str) -> list[str]:
        return _unique(c.target for c in self.connections if c.source == node_id)

    def upstream(self, node_id: str) -> list[str]:
        return _unique(c.source for c in self.connections if c.target == node_id)

    def adjacency(self) -> dict[str, list[str]]:
        return {node_id: self.downstream(node_id) for node_id in self.node_ids}

    @property
    def sources(self) -> list[str]:
        """Nodes no connection feeds: they receive the pipeline's input."""
        return [n for n in self.node_ids if not self.upstream(n)]

    @property
    def sinks(self) -> list[str]:
        """Nodes that feed no connection: their outputs are the pipeline's outputs."""
        return [n for n in self.node_ids if not self.downstream(n)]

    def find_cycle(self) -> list[str] | None:
        return find_cycle(self.adjacency())


def find_cycle(adjacency: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A cycle as a path that ends where it starts (["a", "b", "a"]), or None.

    Iterative depth-first search, so deep chains cannot exhaust the recursion limit.
    """
    visiting, done = 1, 2
    state: dict[str, int] = {}
    for root in adjacency:
        if state.get(root):
            continue
        path: list[str] = [root]
        stack = [iter(adjacency.get(root, ()))]
        state[root] = visiting
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = done
                stack.pop()
                continue
            if state.get(child) == visiting:
                return [*path[path.index(child) :], child]
            if not state.get(child):
                state[child] = visiting
                path.append(child)
                stack.append(iter(adjacency.get(child, ())))
    return None


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
