"""Every exception Tether raises, in one tree.

    TetherError
    ├── DataValidationError ........ malformed RuntimeData or wire bytes (names the field)
    ├── ManifestError
    │   ├── ManifestLoadError ...... a manifest source could not be read or parsed
    │   ├── ManifestValidationError  the manifest breaks the schema or graph rules
    │   └── UnknownNodeTypeError ... a node type no registry knows
    └── PipelineError
        ├── NodeExecutionError ..... a node failed while running (names the node)
        └── InputStreamError ....... the caller's input iterator failed

Code that catches `TetherError` never sees an exception of a dependency: those are
translated where the dependency is called, and chained with `raise ... from`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_MAX_VALUE_CHARS = 80


def _short(value: Any) -> str:
    """A value as it appears in an error message: repr, cut short for the logs."""
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


class TetherError(Exception):
    """Base of every error Tether raises."""


class DataValidationError(TetherError):
    """RuntimeData, or its wire bytes, is malformed. `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ManifestError(TetherError):
    """A manifest cannot be used."""


class ManifestLoadError(ManifestError):
    """A manifest source (file, URL, text) could not be read or parsed."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"cannot load manifest from {source}: {message}")


@dataclass(frozen=True)
class ManifestIssue:
    """One thing wrong with a manifest: where, what, and the value found there."""

    path: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        found = "" if self.value is None else f" (got {_short(self.value)})"
        return f"{self.path or '<manifest>'}: {self.message}{found}"


class ManifestValidationError(ManifestError):
    """The manifest breaks the schema or the graph rules; `issues` lists every finding."""

    def __init__(self, issues: Sequence[ManifestIssue], source: str | None = None) -> None:
        self.issues = tuple(issues)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"invalid manifest{where}:\n{lines}")


class UnknownNodeTypeError(ManifestError):
    """A node type that no registry knows."""

    def __init__(self, node_type: str, known: Sequence[str]) -> None:
        self.node_type = node_type
        self.known = tuple(sorted(known))
        super().__init__(f"unknown node type {node_type!r}; known: {', '.join(self.known)}")


class PipelineError(TetherError):
    """A pipeline run failed."""


class NodeExecutionError(PipelineError):
    """A node raised while processing. The original exception is `__cause__`."""

    def __init__(self, node_id: str, message: str) -> None:
        self.node_id = node_id
        self.message = message
        super().__init__(f"node {node_id!r} failed: {message}")


class InputStreamError(PipelineError):
    """The iterator feeding a streaming run raised."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(f"input stream failed: {message}")
