"""The server config file: defaults, relative paths, and every invalid field named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.errors import ManifestLoadError, ManifestValidationError
from tether.server.config import load_server_config

EXAMPLES = Path(__file__).parents[2] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(text)
    return path


def test_the_example_config_loads_with_paths_beside_it() -> None:
    config = load_server_config(EXAMPLES / "server.yaml")
    assert [entry.file for entry in config.pipelines] == [
        EXAMPLES / "text-cleanup.yaml",
        EXAMPLES / "local-voice.yaml",
    ]


def test_a_partial_listener_block_keeps_the_default_port(tmp_path: Path) -> None:
    config = load_server_config(write(tmp_path, "grpc: {host: 0.0.0.0}\nhttp: {enabled: false}\n"))
    assert (config.grpc.host, config.grpc.port) == ("0.0.0.0", 50051)
    assert (config.http.port, config.http.enabled) == (8080, False)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_server_config(write(tmp_path, ""))
    assert not config.allow_inline_manifests
    assert config.limits.max_hops == 8
    assert config.webrtc.ice_servers == []


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("pipelinesDir: nowhere\n", "pipelinesDir", "does not exist"),
        ("pipelines: [{file: absent.yaml}]\n", "pipelines[0].file", "does not exist"),
        ("pipelines: [{}]\n", "pipelines[0]", "exactly one of file or manifest"),
        ("limits: {maxMessageBytes: 3000000000}\n", "limits.maxMessageBytes", "less than"),
        ("limits: {maxHops: 0}\n", "limits.maxHops", "greater than"),
        ("gracePeriod: soon\n", "gracePeriod", "duration"),
        ("grpc: {port: 70000}\n", "grpc.port", "less than"),
        ("tls: {certFile: a.pem, keyFile: b.pem}\n", "tls.certFile", "does not exist"),
        ("auth: {}\n", "auth", "tokenFile, jwt, or both"),
        ("auth: {jwt: {algorithm: HS256}}\n", "auth.jwt", "HS256 needs secretFile"),
        ("webrtc: {hostAddresses: [eth0]}\n", "webrtc.hostAddresses[0]", "not an IP address"),
        ("webrtc: {iceServers: [stun.example.org]}\n", "webrtc.iceServers[0]", "stun:"),
        ("allowInlineManifest: true\n", "allowInlineManifest", "unknown field"),
    ],
)
def test_an_invalid_field_is_named(tmp_path: Path, text: str, path: str, message: str) -> None:
    with pytest.raises(ManifestValidationError, match="invalid server config") as caught:
        load_server_config(write(tmp_path, text))
    issues = {issue.path: issue.message for issue in caught.value.issues}
    assert path in issues, issues
    assert message in issues[path]


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestLoadError, match="must be a mapping"):
        load_server_config(write(tmp_path, "- a\n- b\n"))
