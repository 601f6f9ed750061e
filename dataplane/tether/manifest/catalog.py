"""What manifest validation needs to know about node types, without importing them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True)
class NodeTypeInfo:
    """A node type as validation sees it: its params model and its port names."""

    name: str
    params_model: type[BaseModel]
    outputs: tuple[str, ...]


NodeCatalog = Mapping[str, NodeTypeInfo]
"""Node types by name, as produced by `tether.runtime.NodeRegistry.catalog()`."""
