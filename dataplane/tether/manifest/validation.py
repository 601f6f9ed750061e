"""Validation of a parsed manifest against the node types a runtime knows.

Schema checks happen in `parse_manifest`; this module adds what needs the node catalog
(params models, port names) and the graph rules. It reports every issue it can find in
one `ManifestValidationError`, so a user fixes a manifest in one round instead of one
error per run.

`pydantic_issues` is the one place where pydantic's errors become `ManifestIssue`s:
schema errors and params errors read the same way, in the user's own spelling.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tether.errors import ManifestIssue, ManifestValidationError
from tether.manifest.catalog import NodeCatalog
from tether.manifest.graph import Graph, find_cycle
from tether.manifest.models import Connection, Manifest

Loc = tuple[int | str, ...]
Explain = Callable[[ErrorDetails], str | None]
"""Gives a better message than pydantic's for an error it recognises, else None."""

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


@dataclass(frozen=True)
class ValidatedManifest:
    """A manifest that passed every check, with what the runtime needs to build it."""

    manifest: Manifest
    params: Mapping[str, BaseModel]
    """The parsed params model instance of every node, by node id."""
    graph: Graph


def validate_manifest(
    manifest: Manifest, catalog: NodeCatalog, *, source: str | None = None
) -> ValidatedManifest:
    """Check node types, params, ports and graph rules; raise one error listing every issue.

    `source` (a file name or URL) only serves the error message.
    """
    issues: list[ManifestIssue] = []
    first_index = _check_node_ids(manifest, issues)
    params = _check_nodes(manifest, catalog, issues)
    valid_connections = _check_connections(manifest, catalog, first_index, issues)
    _check_graph(manifest, first_index, valid_connections, issues)
    if issues:
        raise ManifestValidationError(issues, source)
    return ValidatedManifest(
        manifest=manifest,
        params=types.MappingProxyType(params),
        graph=Graph.from_manifest(manifest),
    )


def _check_node_ids(manifest: Manifest, issues: list[ManifestIssue]) -> dict[str, int]:
    """The index of each node id's first use; later uses are reported."""
    first_index: dict[str, int] = {}
    for index, node in enumerate(manifest.nodes):
        if node.id in first_index:
            issues.append(
                ManifestIssue(
                    f"nodes[{index}].id",
                    f"duplicate node id; nodes[{first_index[node.id]}] already uses it",
                    node.id,
                )
            )
        else:
            first_index[node.id] = index
    return first_index


def _check_nodes(
    manifest: Manifest, catalog: NodeCatalog, issues: list[ManifestIssue]
) -> dict[str, BaseModel]:
    params: dict[str, BaseModel] = {}
    for index, node in enumerate(manifest.nodes):
        info = catalog.get(node.node_type)
        if info is None:
            issues.append(
                ManifestIssue(
                    f"nodes[{index}].nodeType",
                    _unknown_type_message(node.node_type, catalog),
                    node.node_type,
                )
            )
            continue
        try:
            params[node.id] = info.params_model.model_validate(node.params)
        except ValidationError as exc:
            issues.extend(
                pydantic_issues(
                    exc, node.params, prefix=("nodes", index, "params"), model=info.params_model
                )
            )
    return params


def _unknown_type_message(node_type: str, catalog: NodeCatalog) -> str:
    known = sorted(catalog)
    close = difflib.get_close_matches(node_type, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown node type; {hint}known types: {', '.join(known) or '(none registered)'}"


def _check_connections(
    manifest: Manifest,
    catalog: NodeCatalog,
    first_index: Mapping[str, int],
    issues: list[ManifestIssue],
) -> list[Connection]:
    """Report bad connections; return those whose both ends exist, for the graph checks."""
    node_types = {node.id: node.node_type for node in manifest.nodes}
    node_list = ", ".join(first_index)
    seen: dict[tuple[str, str, str], int] = {}
    valid: list[Connection] = []
    for index, connection in enumerate(manifest.connections):
        where = f"connections[{index}]"
        ends_exist = True
        for end, node_id in (("from", connection.source), ("to", connection.target)):
            if node_id not in first_index:
                ends_exist = False
                issues.append(
                    ManifestIssue(
                        f"{where}.{end}", f"no node has this id; nodes: {node_list}", node_id
                    )
                )
        if not ends_exist:
            continue
        valid.append(connection)
        source_info = catalog.get(node_types[connection.source])
        if source_info is not None and connection.source_port not in source_info.outputs:
            issues.append(
                ManifestIssue(
                    f"{where}.fromPort",
                    _port_message(
                        connection.source, source_info.name, "output", source_info.outputs
                    ),
                    connection.source_port,
                )
            )
        key = (connection.source, connection.source_port, connection.target)
        if key in seen:
            issues.append(ManifestIssue(where, f"duplicate of connections[{seen[key]}]"))
        else:
            seen[key] = index
        if connection.source == connection.target:
            issues.append(
                ManifestIssue(
                    where,
                    f"connects node {connection.source!r} to itself; a node cannot feed itself",
                )
            )
    return valid


def _port_message(node_id: str, node_type: str, kind: str, ports: Sequence[str]) -> str:
    if not ports:
        return f"node {node_id!r} ({node_type}) has no {kind} ports"
    listed = ", ".join(ports)
    return f"node {node_id!r} ({node_type}) has no {kind} port of this name; its {kind}s: {listed}"


def _check_graph(
    manifest: Manifest,
    first_index: Mapping[str, int],
    connections: Sequence[Connection],
    issues: list[ManifestIssue],
) -> None:
    # Self-loops are already reported, and would otherwise hide longer cycles.
    adjacency: dict[str, list[str]] = {node_id: [] for node_id in first_index}
    for connection in connections:
        if connection.source != connection.target:
            adjacency[connection.source].append(connection.target)
    cycle = find_cycle(adjacency)
    if cycle is not None:
        closing = next(
            index
            for index, c in enumerate(manifest.connections)
            if (c.source, c.target) == (cycle[-2], cycle[-1])
        )
        issues.append(
            ManifestIssue(
                f"connections[{closing}]",
                f"closes a cycle {' -> '.join(cycle)}; a pipeline must be acyclic",
            )
        )
    graph = Graph(tuple(first_index), tuple(c for c in connections if c.source != c.target))
    if first_index and not graph.sources:
        issues.append(
            ManifestIssue(
                "connections",
                "no source node: every node is fed by a connection, "
                "so none receives the pipeline's input",
            )
        )
    if first_index and not graph.sinks:
        issues.append(
            ManifestIssue(
                "connections",
                "no sink node: every node feeds a connection, so none gives the pipeline's output",
            )
        )


def pydantic_issues(
    error: ValidationError,
    document: Any,
    *,
    prefix: Loc = (),
    model: type[BaseModel] | None = None,
    explain: Explain | None = None,
) -> list[ManifestIssue]:
    """Translate pydantic's errors into issues whose paths use the keys the user wrote.

    `document` is the input that was validated. Walking it tells a key the user wrote
    apart from the tags pydantic puts in a location for union members ("int",
    "list[Endpoint]"), which mean nothing to the user and are dropped. The errors of
    all members of a union at one place are merged into one issue.
    """
    issues: list[ManifestIssue] = []
    merged: dict[str, int] = {}
    for details in error.errors(include_url=False):
        loc, from_union = _user_loc(details, document)
        path = format_path((*prefix, *loc))
        message = (explain(details) if explain else None) or _message(details, model)
        value = None if details["type"] == "missing" else details["input"]
        if not from_union:
            issues.append(ManifestIssue(path, message, value))
        elif path not in merged:
            merged[path] = len(issues)
            issues.append(ManifestIssue(path, message, value))
        else:
            earlier = issues[merged[path]]
            if message not in earlier.message.split("; or "):
                issues[merged[path]] = ManifestIssue(
                    path, f"{earlier.message}; or {message}", value
                )
    return issues


def format_path(loc: Iterable[int | str]) -> str:
    """`("nodes", 1, "params", "retry")` -> `nodes[1].params.retry`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not _PLAIN_KEY.match(part):
            path += f"[{json.dumps(part)}]"
        else:
            path += f".{part}" if path else part
    return path


def _user_loc(details: ErrorDetails, document: Any) -> tuple[Loc, bool]:
    """The error's location without union tags, and whether any tag was dropped."""
    loc = details["loc"]
    kept: list[int | str] = []
    current: Any = document
    dropped = False
    for position, part in enumerate(loc):
        last = position == len(loc) - 1
        if isinstance(part, int) and isinstance(current, Sequence) and not isinstance(current, str):
            kept.append(part)
            current = current[part] if 0 <= part < len(current) else None
        elif isinstance(current, Mapping) and part in current:
            kept.append(part)
            current = current[part]
        elif isinstance(current, Mapping) and last and details["type"] == "missing":
            kept.append(part)
        else:
            dropped = True
    return tuple(kept), dropped


def _message(details: ErrorDetails, model: type[BaseModel] | None) -> str:
    if details["type"] == "missing":
        return "required field is missing"
    if details["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, details["loc"]) if model else None
        if allowed is None:
            return "unknown field"
        return (
            f"unknown field; allowed: {', '.join(allowed)}" if allowed else "no fields allowed here"
        )
    message = details["msg"]
    for prefix in _MESSAGE_PREFIXES:
        message = message.removeprefix(prefix)
    # pydantic's sentences start upper case; issues read as "path: message".
    if len(message) > 1 and message[1].islower():
        message = message[0].lower() + message[1:]
    return message


def _allowed_keys(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """The keys the model at `loc`'s parent accepts, when that model is known for sure."""
    candidates: list[type[BaseModel]] = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        named = [m for m in candidates if m.__name__ == part]
        if named:  # a union tag naming one member model
            candidates = named
            continue
        following = list(
            dict.fromkeys(
                nested
                for m in candidates
                if (field := _field(m, part)) is not None
                for nested in _models_in(field.annotation)
            )
        )
        if following:
            candidates = following
        # Otherwise `part` is a union tag such as "list[Endpoint]": the candidates stay.
    if len(candidates) != 1:
        return None
    return [field.alias or name for name, field in candidates[0].model_fields.items()]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold: through Optional, unions, lists, dicts, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]
