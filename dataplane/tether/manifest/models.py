"""The manifest schema (DESIGN.md §3): one shape for files and for RemotePipeline specs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tether.manifest.types import CamelModel

NODE_ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$"
DEFAULT_OUTPUT_PORT = "out"


class Metadata(CamelModel):
    name: str = Field(min_length=1, max_length=253)
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class NodeSpec(CamelModel):
    id: str = Field(pattern=NODE_ID_PATTERN)
    node_type: str = Field(min_length=1)
    # Validated against the node type's own params model by `validate_manifest`.
    params: dict[str, Any] = Field(default_factory=dict)


class Connection(CamelModel):
    source: str = Field(alias="from")
    target: str = Field(alias="to")
    source_port: str = Field(default=DEFAULT_OUTPUT_PORT, alias="fromPort")


class Manifest(CamelModel):
    version: Literal["v1"]
    metadata: Metadata
    nodes: list[NodeSpec] = Field(min_length=1)
    connections: list[Connection] = Field(default_factory=list)

    @property
    def name(self) -> str:
        return self.metadata.name

    def node(self, node_id: str) -> NodeSpec:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)
