"""Manifests: the schema, loading from files/URLs/text, validation and graph analysis.

This package imports nothing of Tether but `tether.errors`, so the operator and tools
can use it without the runtime.
"""

from tether.manifest.catalog import NodeCatalog, NodeTypeInfo
from tether.manifest.graph import Graph, find_cycle
from tether.manifest.loading import (
    load_manifest,
    load_manifest_async,
    manifest_to_dict,
    parse_manifest,
    parse_manifest_text,
)
from tether.manifest.models import Connection, Manifest, Metadata, NodeSpec
from tether.manifest.types import CamelModel, Duration, NoParams, parse_duration
from tether.manifest.validation import ValidatedManifest, validate_manifest

__all__ = [
    "CamelModel",
    "Connection",
    "Duration",
    "Graph",
    "Manifest",
    "Metadata",
    "NoParams",
    "NodeCatalog",
    "NodeSpec",
    "NodeTypeInfo",
    "ValidatedManifest",
    "find_cycle",
    "load_manifest",
    "load_manifest_async",
    "manifest_to_dict",
    "parse_duration",
    "parse_manifest",
    "parse_manifest_text",
    "validate_manifest",
]
