"""Loading manifests from dicts, files, text and http URLs, and the errors of each source.

URLs are served by a real HTTP server on 127.0.0.1 (the `manifest_server` fixture), so
the tests exercise httpx as users do, not a mock of it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.errors import ManifestLoadError, ManifestValidationError
from tether.manifest import (
    Manifest,
    load_manifest,
    load_manifest_async,
    manifest_to_dict,
    parse_manifest,
)


def assert_is_the_document(manifest: Manifest) -> None:
    """The `document` fixture's manifest, however it was loaded."""
    assert manifest.name == "gain-then-tts"
    assert [(node.id, node.node_type) for node in manifest.nodes] == [
        ("gain", "Gain"),
        ("tts", "Remote"),
    ]
    assert manifest.node("tts").params == {
        "url": "grpc://127.0.0.1:1",
        "timeout": "250ms",
        "retry": {"maxRetries": 2},
    }
    [connection] = manifest.connections
    assert (connection.source, connection.source_port) == ("gain", "out")
    assert connection.target == "tts"


def test_a_dict_is_loaded(document: dict[str, Any]) -> None:
    assert_is_the_document(load_manifest(document))


def test_a_yaml_file_is_loaded_from_a_path(tmp_path: Path, manifest_yaml: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(manifest_yaml)
    assert_is_the_document(load_manifest(path))


def test_a_yml_file_is_loaded_from_a_path_string(tmp_path: Path, manifest_yaml: str) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(manifest_yaml)
    assert_is_the_document(load_manifest(str(path)))


def test_a_json_file_is_loaded(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document, indent="\t"))  # tabs: valid JSON, invalid YAML
    assert_is_the_document(load_manifest(path))


def test_yaml_text_is_loaded(manifest_yaml: str) -> None:
    assert_is_the_document(load_manifest(manifest_yaml))


def test_json_text_on_one_line_is_loaded(document: dict[str, Any]) -> None:
    assert_is_the_document(load_manifest(json.dumps(document)))


def test_a_manifest_is_fetched_from_an_http_url(manifest_server: Any, manifest_yaml: str) -> None:
    url = manifest_server.serve("/manifests/tts", manifest_yaml)
    assert_is_the_document(load_manifest(url))


def test_a_json_manifest_is_fetched_by_its_content_type(
    manifest_server: Any, document: dict[str, Any]
) -> None:
    body = json.dumps(document, indent="\t")
    url = manifest_server.serve("/manifest", body, content_type="application/json")
    assert_is_the_document(load_manifest(url))


async def test_the_async_loader_fetches_a_url(manifest_server: Any, manifest_yaml: str) -> None:
    url = manifest_server.serve("/tts.yaml", manifest_yaml)
    assert_is_the_document(await load_manifest_async(url))


async def test_the_async_loader_reads_files_and_dicts(
    tmp_path: Path, manifest_yaml: str, document: dict[str, Any]
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(manifest_yaml)
    assert_is_the_document(await load_manifest_async(path))
    assert_is_the_document(await load_manifest_async(document))


def test_an_http_error_names_the_url_and_the_status(manifest_server: Any) -> None:
    url = manifest_server.base_url + "/missing.yaml"
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(url)
    assert caught.value.source == url
    assert caught.value.message == "HTTP 404 Not Found"
    assert str(caught.value) == f"cannot load manifest from {url}: HTTP 404 Not Found"


async def test_the_async_loader_reports_http_errors_the_same_way(manifest_server: Any) -> None:
    url = manifest_server.serve("/broken", "oops", status=500)
    with pytest.raises(ManifestLoadError) as caught:
        await load_manifest_async(url)
    assert caught.value.source == url
    assert caught.value.message == "HTTP 500 Internal Server Error"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) but never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def test_a_server_that_never_answers_times_out_with_the_timeout_named(silent_port: int) -> None:
    url = f"http://127.0.0.1:{silent_port}/manifest.yaml"
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(url, timeout=0.2)
    assert caught.value.message == "no response within 0.2s"


def test_a_refused_connection_is_a_load_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(f"http://127.0.0.1:{port}/manifest.yaml", timeout=2)
    assert caught.value.message.startswith("request failed: ")


def test_credentials_in_a_url_never_appear_in_errors(manifest_server: Any) -> None:
    port = manifest_server.base_url.rpartition(":")[2]
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(f"http://alice:s3cret@127.0.0.1:{port}/missing")
    assert "s3cret" not in str(caught.value)
    assert caught.value.source == f"http://***@127.0.0.1:{port}/missing"


def test_a_schema_error_in_a_file_names_the_file(tmp_path: Path, manifest_yaml: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(manifest_yaml.replace("version: v1", "version: v9"))
    with pytest.raises(ManifestValidationError) as caught:
        load_manifest(path)
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"invalid manifest in {path}:\n  - version: ")


def test_a_yaml_syntax_error_names_its_line_and_column(manifest_yaml: str) -> None:
    broken = manifest_yaml.replace("      retry: {maxRetries: 2}", "      retry: {maxRetries: 2")
    assert broken != manifest_yaml
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(broken)
    # PyYAML notices the unclosed brace where the next line's key cannot continue it.
    assert caught.value.message == (
        "YAML syntax error at line 13, column 12: "
        "while parsing a flow mapping; expected ',' or '}', but got ':'"
    )


def test_a_yaml_syntax_error_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: v1\nmetadata:\n  name: x\n nodes: []\n")
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(path)
    assert caught.value.source == str(path)
    assert caught.value.message.startswith("YAML syntax error at line 4, column 2: ")


def test_a_duplicate_yaml_key_is_refused_instead_of_silently_overwritten(
    manifest_yaml: str,
) -> None:
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(manifest_yaml + "metadata: {name: other}\n")
    assert caught.value.message == (
        "YAML syntax error at line 15, column 1: "
        "while constructing a mapping; duplicate key 'metadata'"
    )


def test_a_json_syntax_error_names_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "version": "v1",\n  "metadata": }\n')
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(path)
    assert caught.value.message == "JSON syntax error at line 3, column 15: Expecting value"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("- a\n- b\n", "a list", id="a list"),
        pytest.param("just words\n", "a string", id="a string"),
        pytest.param("# only a comment\n", "empty", id="an empty document"),
    ],
)
def test_a_document_that_is_not_a_mapping_is_refused_clearly(text: str, kind: str) -> None:
    with pytest.raises(ManifestValidationError) as caught:
        load_manifest(text)
    [issue] = caught.value.issues
    assert issue.path == ""
    assert issue.message.endswith(f"this document is {kind}")


def test_a_missing_file_is_a_load_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(path)
    assert (caught.value.source, caught.value.message) == (str(path), "no such file")


def test_one_line_of_yaml_is_taken_for_a_path_and_the_error_says_so() -> None:
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest("version: v1")
    assert caught.value.message == (
        "no such file; a string is read as manifest text only if it has a newline "
        "or starts with '{'"
    )


def test_a_file_that_is_not_utf8_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ManifestLoadError) as caught:
        load_manifest(path)
    assert caught.value.message.startswith("not UTF-8 text")


def test_a_manifest_round_trips_through_manifest_to_dict(document: dict[str, Any]) -> None:
    manifest = parse_manifest(document)
    as_dict = manifest_to_dict(manifest)
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["connections"] == [{"from": "gain", "to": "tts", "fromPort": "out"}]
    assert as_dict["nodes"][0] == {"id": "gain", "nodeType": "Gain", "params": {"gainDb": 6}}
    assert parse_manifest(as_dict) == manifest
