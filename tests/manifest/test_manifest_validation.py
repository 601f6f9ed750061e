"""Valid manifests: what `validate_manifest` returns, durations, and cycle search.

The failures of validation live in test_manifest_errors.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tether.manifest import (
    NodeCatalog,
    find_cycle,
    parse_duration,
    parse_manifest,
    validate_manifest,
)


def test_a_valid_manifest_gives_parsed_params_and_its_graph(
    document: dict[str, Any], catalog: NodeCatalog
) -> None:
    validated = validate_manifest(parse_manifest(document), catalog)
    gain, tts = validated.params["gain"], validated.params["tts"]
    assert isinstance(gain, catalog["Gain"].params_model)
    assert isinstance(tts, catalog["Remote"].params_model)
    assert gain.gain_db == 6.0  # type: ignore[attr-defined]
    assert tts.timeout == 0.25  # type: ignore[attr-defined]
    assert tts.retry.max_retries == 2  # type: ignore[attr-defined]
    assert tts.retry.initial_backoff == 1.0  # type: ignore[attr-defined]
    assert tts.model_dump(by_alias=True)["timeout"] == "250ms"
    assert validated.graph.sources == ["gain"]
    assert validated.graph.sinks == ["tts"]


def test_params_of_every_node_are_there_even_when_empty(
    document: dict[str, Any], catalog: NodeCatalog
) -> None:
    document["nodes"].append({"id": "copy", "nodeType": "PassThrough"})
    document["connections"].append({"from": "tts", "to": "copy"})
    validated = validate_manifest(parse_manifest(document), catalog)
    assert list(validated.params) == ["gain", "tts", "copy"]
    assert validated.params["copy"].model_dump() == {}


def test_named_output_ports_of_the_node_type_are_accepted(
    document: dict[str, Any], catalog: NodeCatalog
) -> None:
    document["nodes"] = [
        {"id": "split", "nodeType": "Splitter"},
        {"id": "voice", "nodeType": "PassThrough"},
        {"id": "silence", "nodeType": "PassThrough"},
    ]
    document["connections"] = [
        {"from": "split", "fromPort": "voice", "to": "voice"},
        {"from": "split", "fromPort": "silence", "to": "silence"},
    ]
    validated = validate_manifest(parse_manifest(document), catalog)
    assert validated.graph.sinks == ["voice", "silence"]


def test_a_diamond_is_not_a_cycle(document: dict[str, Any], catalog: NodeCatalog) -> None:
    document["nodes"] = [{"id": n, "nodeType": "PassThrough"} for n in ("a", "b", "c", "d")]
    document["connections"] = [
        {"from": "a", "to": "b"},
        {"from": "a", "to": "c"},
        {"from": "b", "to": "d"},
        {"from": "c", "to": "d"},
    ]
    validated = validate_manifest(parse_manifest(document), catalog)
    assert (validated.graph.sources, validated.graph.sinks) == (["a"], ["d"])


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("250ms", 0.25), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), (2, 2.0)],
)
def test_durations_are_parsed_into_seconds(written: str | int, seconds: float) -> None:
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["30", "30 sec", "-1s", "1d", "", True])
def test_durations_without_a_known_unit_are_refused(written: str | bool) -> None:
    with pytest.raises(ValueError, match="a duration"):
        parse_duration(written)


def test_find_cycle_returns_the_cycle_deep_in_a_longer_graph() -> None:
    adjacency = {
        "mic": ["vad", "meter"],
        "meter": [],
        "vad": ["chunk"],
        "chunk": ["stt"],
        "stt": ["translate"],
        "translate": ["tts", "log"],
        "log": [],
        "tts": ["chunk"],
    }
    assert find_cycle(adjacency) == ["chunk", "stt", "translate", "tts", "chunk"]


def test_find_cycle_returns_none_for_a_long_acyclic_graph() -> None:
    adjacency = {f"n{i}": [f"n{i + 1}", f"n{i + 2}"] for i in range(50)}
    assert find_cycle(adjacency) is None


def test_find_cycle_handles_chains_deeper_than_the_recursion_limit() -> None:
    depth = 20_000
    adjacency = {f"n{i}": [f"n{i + 1}"] for i in range(depth)}
    adjacency[f"n{depth}"] = ["n10"]
    cycle = find_cycle(adjacency)
    assert cycle is not None
    assert (cycle[0], cycle[-1], len(cycle)) == ("n10", "n10", depth - 10 + 2)
