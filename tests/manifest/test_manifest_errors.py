"""Invalid manifests: each mistake is reported once, at the path the user wrote, clearly.

Covers the schema (`parse_manifest`), the catalog checks (node types, params, ports) and
the graph rules (`validate_manifest`). Each case starts from the valid `document`
fixture (gain -> tts) and breaks one thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import ManifestValidationError
from tether.manifest import NodeCatalog, parse_manifest, validate_manifest
from tether.manifest.validation import pydantic_issues

Mutation = Callable[[dict[str, Any]], Any]


def set_at(path: str, value: Any) -> Mutation:
    """Set the value at a dotted path ("nodes.1.params.retry.maxRetries")."""

    def mutate(document: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
        return document

    return mutate


def delete_at(path: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> Any:
        *parents, last = path.split(".")
        target: Any = document
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]
        return document

    return mutate


def with_graph(nodes: list[tuple[str, str]], edges: list[dict[str, str]]) -> Mutation:
    """Replace the graph: nodes as (id, nodeType) pairs without params."""

    def mutate(document: dict[str, Any]) -> Any:
        document["nodes"] = [{"id": node_id, "nodeType": kind} for node_id, kind in nodes]
        document["connections"] = edges
        return document

    return mutate


def add_connection(**connection: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> Any:
        document["connections"].append(
            {key.replace("from_", "from"): value for key, value in connection.items()}
        )
        return document

    return mutate


@dataclass(frozen=True)
class Case:
    sentence: str
    mutate: Mutation
    path: str
    message: str
    value: Any = None


CASES = [
    Case(
        "a version other than v1 is refused and the supported versions are named",
        set_at("version", "v2"),
        "version",
        "unsupported manifest version; supported versions: v1",
        "v2",
    ),
    Case(
        "a manifest without metadata.name is refused",
        delete_at("metadata.name"),
        "metadata.name",
        "required field is missing",
    ),
    Case(
        "a manifest with an empty node list is refused",
        lambda d: {**d, "nodes": [], "connections": []},
        "nodes",
        "list should have at least 1 item after validation, not 0",
        [],
    ),
    Case(
        "an unknown top-level key is refused and the allowed keys are listed",
        set_at("kind", "Pipeline"),
        "kind",
        "unknown field; allowed: version, metadata, nodes, connections",
        "Pipeline",
    ),
    Case(
        "a document that is a list rather than a mapping is refused",
        lambda d: [d],
        "",
        "a manifest is a mapping with the keys version, metadata, nodes and connections; "
        "this document is a list",
    ),
    Case(
        "a missing nodeType is reported in the user's camelCase spelling",
        delete_at("nodes.0.nodeType"),
        "nodes[0].nodeType",
        "required field is missing",
    ),
    Case(
        "a node id with a space is refused with the rule for ids",
        set_at("nodes.0.id", "my gain"),
        "nodes[0].id",
        "a node id has 1 to 63 letters, digits, '-' or '_', "
        "and starts and ends with a letter or digit",
        "my gain",
    ),
    Case(
        "a node id used twice is refused at its second use",
        with_graph([("gain", "Gain"), ("gain", "PassThrough")], []),
        "nodes[1].id",
        "duplicate node id; nodes[0] already uses it",
        "gain",
    ),
    Case(
        "an unknown node type is refused with a suggestion and the known types",
        set_at("nodes.0.nodeType", "Gian"),
        "nodes[0].nodeType",
        "unknown node type; did you mean 'Gain'? known types: Gain, PassThrough, Remote, Splitter",
        "Gian",
    ),
    Case(
        "an unknown param key is refused and the node type's params are listed",
        set_at("nodes.0.params", {"gain": 6}),
        "nodes[0].params.gain",
        "unknown field; allowed: gainDb",
        6,
    ),
    Case(
        "a param given to a node type that takes none is refused",
        set_at("nodes.0", {"id": "gain", "nodeType": "PassThrough", "params": {"gainDb": 6}}),
        "nodes[0].params.gainDb",
        "no fields allowed here",
        6,
    ),
    Case(
        "a param of the wrong type is refused",
        set_at("nodes.0.params.gainDb", "loud"),
        "nodes[0].params.gainDb",
        "input should be a valid number, unable to parse string as a number",
        "loud",
    ),
    Case(
        "a param outside its bounds is refused with the bound",
        set_at("nodes.0.params.gainDb", 100),
        "nodes[0].params.gainDb",
        "input should be less than or equal to 60",
        100,
    ),
    Case(
        "a nested param is reported with its full camelCase path",
        set_at("nodes.1.params.retry.maxRetries", -1),
        "nodes[1].params.retry.maxRetries",
        "input should be greater than or equal to 0",
        -1,
    ),
    Case(
        "a required param that is missing is reported",
        delete_at("nodes.1.params.url"),
        "nodes[1].params.url",
        "required field is missing",
    ),
    Case(
        "a duration that is not like 30s is refused with the accepted forms",
        set_at("nodes.1.params.timeout", "30 seconds"),
        "nodes[1].params.timeout",
        "a duration is a string such as '30s', '250ms', '5m' or '1h'",
        "30 seconds",
    ),
    Case(
        "a connection to an unknown node is refused and the nodes are listed",
        set_at("connections.0.to", "stt"),
        "connections[0].to",
        "no node has this id; nodes: gain, tts",
        "stt",
    ),
    Case(
        "a connection from an unknown output port is refused and the outputs are listed",
        set_at("connections.0.fromPort", "voice"),
        "connections[0].fromPort",
        "node 'gain' (Gain) has no output port of this name; its outputs: out",
        "voice",
    ),
    Case(
        "a target port is refused: every node has one input, where connections merge",
        set_at("connections.0.toPort", "audio"),
        "connections[0].toPort",
        "unknown field; allowed: from, to, fromPort",
        "audio",
    ),
    Case(
        "a connection made twice is refused at its second appearance",
        add_connection(from_="gain", to="tts", fromPort="out"),
        "connections[1]",
        "duplicate of connections[0]",
    ),
    Case(
        "a node connected to itself is refused",
        add_connection(from_="gain", to="gain"),
        "connections[1]",
        "connects node 'gain' to itself; a node cannot feed itself",
    ),
    Case(
        "a cycle is refused at the connection that closes it, with the cycle's path",
        with_graph(
            [("mic", "PassThrough"), ("a", "PassThrough"), ("b", "PassThrough"), ("out", "Gain")],
            [
                {"from": "mic", "to": "a"},
                {"from": "a", "to": "b"},
                {"from": "b", "to": "a"},
                {"from": "b", "to": "out"},
            ],
        ),
        "connections[2]",
        "closes a cycle a -> b -> a; a pipeline must be acyclic",
    ),
    Case(
        "a connection key misspelt as form is refused as unknown",
        set_at("connections.0", {"from": "gain", "to": "tts", "form": "x"}),
        "connections[0].form",
        "unknown field; allowed: from, to, fromPort",
        "x",
    ),
]


def check(document: Any, catalog: NodeCatalog) -> None:
    manifest = parse_manifest(document, source="case.yaml")
    validate_manifest(manifest, catalog, source="case.yaml")


@pytest.mark.parametrize("case", CASES, ids=[case.sentence for case in CASES])
def test_invalid_manifest_is_reported_at_its_path(
    case: Case, document: dict[str, Any], catalog: NodeCatalog
) -> None:
    with pytest.raises(ManifestValidationError) as caught:
        check(case.mutate(document), catalog)
    [issue] = caught.value.issues
    assert issue.path == case.path
    assert issue.message == case.message
    assert issue.value == case.value
    assert caught.value.source == "case.yaml"
    assert f"{case.path or '<manifest>'}: {issue.message}" in str(caught.value)


def test_every_issue_of_a_manifest_is_reported_at_once(
    document: dict[str, Any], catalog: NodeCatalog
) -> None:
    document["nodes"][0]["nodeType"] = "Gian"
    document["nodes"][1]["params"]["retry"]["maxRetries"] = -1
    document["connections"].append({"from": "tts", "to": "nowhere"})
    with pytest.raises(ManifestValidationError) as caught:
        check(document, catalog)
    assert [issue.path for issue in caught.value.issues] == [
        "nodes[0].nodeType",
        "nodes[1].params.retry.maxRetries",
        "connections[1].to",
    ]


def test_schema_errors_are_all_reported_before_validation(document: dict[str, Any]) -> None:
    document["version"] = "v3"
    del document["metadata"]["name"]
    document["nodes"][1]["id"] = "-tts"
    with pytest.raises(ManifestValidationError) as caught:
        parse_manifest(document)
    assert [issue.path for issue in caught.value.issues] == [
        "version",
        "metadata.name",
        "nodes[1].id",
    ]


def test_a_graph_that_is_one_big_cycle_has_no_source_and_no_sink(
    document: dict[str, Any], catalog: NodeCatalog
) -> None:
    document["connections"].append({"from": "tts", "to": "gain"})
    with pytest.raises(ManifestValidationError) as caught:
        check(document, catalog)
    assert [(issue.path, issue.message) for issue in caught.value.issues] == [
        ("connections[1]", "closes a cycle gain -> tts -> gain; a pipeline must be acyclic"),
        (
            "connections",
            "no source node: every node is fed by a connection, "
            "so none receives the pipeline's input",
        ),
        (
            "connections",
            "no sink node: every node feeds a connection, so none gives the pipeline's output",
        ),
    ]


class TokenFile(BaseModel):
    token_file: str = Field(alias="tokenFile")
    model_config = ConfigDict(extra="forbid")


class TokenEnv(BaseModel):
    token_env: str = Field(alias="tokenEnv")
    model_config = ConfigDict(extra="forbid")


class Endpoint(BaseModel):
    url: str
    weight: int = 1
    model_config = ConfigDict(extra="forbid")


class UnionParams(BaseModel):
    channels: int | list[int] = 1
    auth: TokenFile | TokenEnv | None = None
    sample_rates: list[int] | tuple[int, ...] = Field(default=(16000,), alias="sampleRates")
    endpoints: list[Endpoint] | Endpoint = Field(default_factory=list)


EITHER_KEY = "unknown field; allowed: tokenFile; or unknown field; allowed: tokenEnv"


def union_issues(params: dict[str, Any]) -> list[tuple[str, str, Any]]:
    with pytest.raises(ValidationError) as caught:
        UnionParams.model_validate(params)
    issues = pydantic_issues(caught.value, params, prefix=("nodes", 0, "params"), model=UnionParams)
    return [(issue.path, issue.message, issue.value) for issue in issues]


def test_errors_of_union_members_merge_into_one_issue_without_type_tags() -> None:
    """pydantic puts tags like "int" and "list[int]" in union error locations."""
    assert union_issues({"channels": "stereo"}) == [
        (
            "nodes[0].params.channels",
            "input should be a valid integer, unable to parse string as an integer; "
            "or input should be a valid list",
            "stereo",
        )
    ]


def test_an_unknown_key_in_a_union_of_models_lists_each_member_s_keys() -> None:
    assert union_issues({"auth": {"tokenFile": "/run/token", "scope": "all"}}) == [
        (
            "nodes[0].params.auth.scope",
            "unknown field; allowed: tokenFile; or unknown field; allowed: tokenEnv",
            "all",
        ),
        ("nodes[0].params.auth.tokenEnv", "required field is missing", None),
        ("nodes[0].params.auth.tokenFile", "unknown field; allowed: tokenEnv", "/run/token"),
    ]


def test_a_missing_key_in_a_union_of_models_is_reported_for_each_member() -> None:
    assert union_issues({"auth": {"scope": "all"}}) == [
        ("nodes[0].params.auth.tokenFile", "required field is missing", None),
        ("nodes[0].params.auth.scope", EITHER_KEY, "all"),
        ("nodes[0].params.auth.tokenEnv", "required field is missing", None),
    ]


def test_the_same_error_from_several_union_members_is_reported_once() -> None:
    assert union_issues({"sampleRates": ["fast"]}) == [
        (
            "nodes[0].params.sampleRates[0]",
            "input should be a valid integer, unable to parse string as an integer",
            "fast",
        )
    ]


def test_an_unknown_key_under_a_union_tag_still_lists_the_allowed_keys() -> None:
    assert union_issues({"endpoints": [{"url": "grpc://a", "wieght": 2}]}) == [
        ("nodes[0].params.endpoints[0].wieght", "unknown field; allowed: url, weight", 2),
        (
            "nodes[0].params.endpoints",
            "input should be a valid dictionary or instance of Endpoint",
            [{"url": "grpc://a", "wieght": 2}],
        ),
    ]


def test_keys_that_are_not_identifiers_are_quoted_in_paths(document: dict[str, Any]) -> None:
    document["metadata"]["labels"] = {"app.kubernetes.io/name": 5}
    with pytest.raises(ManifestValidationError) as caught:
        parse_manifest(document)
    [issue] = caught.value.issues
    assert issue.path == 'metadata.labels["app.kubernetes.io/name"]'
