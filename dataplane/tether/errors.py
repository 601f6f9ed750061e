"""Every exception Tether raises, in one tree.

    TetherError
    ├── DataValidationError ........ malformed RuntimeData or wire bytes (names the field)
    ├── ManifestError
    │   ├── ManifestLoadError ...... a manifest source could not be read or parsed
    │   ├── ManifestValidationError  the manifest breaks the schema or graph rules
    │   └── UnknownNodeTypeError ... a node type no registry knows
    ├── NodeRegistrationError ...... a node type cannot join a registry
    ├── PipelineError
    │   ├── NodeExecutionError ..... a node failed while running (names the node)
    │   └── InputStreamError ....... the caller's input iterator failed
    └── RemoteError ................ a call to a pipeline server failed (`retryable` says
        │                            whether another attempt may succeed)
        ├── NetworkError ........... no connection, or it broke (retryable)
        ├── DeadlineExceededError .. the deadline passed (retryable)
        ├── ResourceExhaustedError . the server is at a limit (retryable)
        ├── UnavailableError ....... the server is shutting down or not ready (retryable)
        ├── RemoteExecutionError ... a node failed on the server (names the node)
        ├── RemoteValidationError .. the server refused malformed data or frames
        ├── UnknownPipelineError ... no predefined pipeline of that name
        ├── IncompatibleManifestError the server cannot run the manifest
        ├── AuthenticationError .... missing, wrong or expired credentials
        ├── CircularReferenceError . the request already visited this pipeline
        └── ProtocolError .......... the peer broke the wire contract

Code that catches `TetherError` never sees an exception of a dependency: those are
translated where the dependency is called, and chained with `raise ... from`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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

    def __init__(
        self, issues: Sequence[ManifestIssue], source: str | None = None, *, what: str = "manifest"
    ) -> None:
        self.issues = tuple(issues)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"invalid {what}{where}:\n{lines}")


class UnknownNodeTypeError(ManifestError):
    """A node type that no registry knows."""

    def __init__(self, node_type: str, known: Sequence[str]) -> None:
        self.node_type = node_type
        self.known = tuple(sorted(known))
        super().__init__(f"unknown node type {node_type!r}; known: {', '.join(self.known)}")


class NodeRegistrationError(TetherError):
    """A node type cannot be registered: not a `tether.Node`, or its name is taken."""


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


class RemoteError(TetherError):
    """A call to a pipeline server failed.

    `retryable` tells the resilience layer whether another attempt, possibly on another
    endpoint, may succeed; it never has to parse messages. `endpoint` names the server.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str, *, endpoint: str | None = None, node_id: str | None = None
    ) -> None:
        self.message = message
        self.endpoint = endpoint
        self.node_id = node_id
        where = f" [{endpoint}]" if endpoint else ""
        super().__init__(f"{message}{where}")


class NetworkError(RemoteError):
    """No connection could be made, or it broke mid-call."""

    retryable = True


class DeadlineExceededError(RemoteError):
    retryable = True


class ResourceExhaustedError(RemoteError):
    """The server is at a limit (concurrent streams, message size)."""

    retryable = True


class UnavailableError(RemoteError):
    """The server is shutting down or not ready."""

    retryable = True


class RemoteExecutionError(RemoteError):
    """A node failed on the server; `node_id` names it."""


class RemoteValidationError(RemoteError):
    """The server refused malformed data or a corrupt frame."""


class UnknownPipelineError(RemoteError):
    """The server hosts no predefined pipeline of that name."""


class IncompatibleManifestError(RemoteError):
    """The server cannot run the manifest; `unknown_node_types` lists what it lacks."""

    def __init__(
        self,
        message: str,
        *,
        unknown_node_types: Sequence[str] = (),
        endpoint: str | None = None,
    ) -> None:
        self.unknown_node_types = tuple(unknown_node_types)
        super().__init__(message, endpoint=endpoint)


class AuthenticationError(RemoteError):
    """Credentials are missing, wrong or expired. Never carries the token itself."""


class CircularReferenceError(RemoteError):
    """The request already passed through this pipeline, or through too many."""


class ProtocolError(RemoteError):
    """The peer sent something the wire contract does not allow."""
