"""Node types by name: registered by decorator or discovered through entry points."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any, TypeVar

from tether.errors import NodeRegistrationError, UnknownNodeTypeError
from tether.manifest.catalog import NodeTypeInfo
from tether.runtime.node import Node

ENTRY_POINT_GROUP = "tether.nodes"

logger = logging.getLogger(__name__)

NodeClass = TypeVar("NodeClass", bound=type[Node[Any]])


class NodeRegistry:
    """A set of node types. Build one with `default_registry()` and add your own:

    registry = tether.default_registry()

    @registry.register
    class Shout(tether.Node[tether.NoParams]):
        async def process(self, data): ...
    """

    def __init__(self) -> None:
        self._types: dict[str, type[Node[Any]]] = {}

    def register(self, node_class: NodeClass) -> NodeClass:
        """Add a node type under its `node_type` name. Usable as a class decorator."""
        if not (isinstance(node_class, type) and issubclass(node_class, Node)):
            raise NodeRegistrationError(f"{node_class!r} is not a subclass of tether.Node")
        name = node_class.node_type
        existing = self._types.get(name)
        if existing is not None and existing is not node_class:
            raise NodeRegistrationError(
                f"node type {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        self._types[name] = node_class
        return node_class

    def get(self, name: str) -> type[Node[Any]]:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownNodeTypeError(name, list(self._types)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._types))

    def catalog(self) -> Mapping[str, NodeTypeInfo]:
        """What manifest validation needs to know about every registered type."""
        return {name: node_class.info() for name, node_class in self._types.items()}

    def copy(self) -> NodeRegistry:
        clone = NodeRegistry()
        clone._types = dict(self._types)
        return clone


def default_registry() -> NodeRegistry:
    """A new registry holding every node type installed under the `tether.nodes` entry points.

    Tether's own built-in nodes are registered the same way, in its pyproject.toml.
    """
    registry = NodeRegistry()
    for node_class in _discover_entry_points():
        registry.register(node_class)
    return registry


@cache
def _discover_entry_points() -> tuple[type[Node[Any]], ...]:
    found: list[type[Node[Any]]] = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            node_class = entry_point.load()
        except Exception as exc:
            raise NodeRegistrationError(
                f"entry point {entry_point.name!r} = {entry_point.value!r} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not (isinstance(node_class, type) and issubclass(node_class, Node)):
            raise NodeRegistrationError(
                f"entry point {entry_point.name!r} = {entry_point.value!r} "
                "is not a tether.Node subclass"
            )
        if node_class.node_type != entry_point.name:
            raise NodeRegistrationError(
                f"entry point {entry_point.name!r} loads node type {node_class.node_type!r}; "
                "the names must match"
            )
        found.append(node_class)
    return tuple(found)
