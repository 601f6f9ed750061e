"""Real pipeline servers for the transport tests, each in a child process on 127.0.0.1.

Every server hosts the same small pipelines, built from built-in nodes:

    echo    PassThrough                      returns each input unchanged
    upper   TextTransform (upper)            upper-cases Text
    slow    Delay 2s                         for deadlines and drains
    faulty  Fault (every input, node fault)  a node that always fails

`server` is one shared server per test module, for tests that do not disturb it;
`start_server(**config)` starts a private one (to kill, drain or configure), stopped
when the test ends. A module tunes both by overriding the module-scoped `server_config`
fixture (e.g. a gRPC-only module turns HTTP off).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tether.testing.server import ServerProcess

PIPELINES: dict[str, list[dict[str, Any]]] = {
    "echo": [{"id": "echo", "nodeType": "PassThrough"}],
    "upper": [
        {"id": "upper", "nodeType": "TextTransform", "params": {"operations": [{"op": "upper"}]}}
    ],
    "slow": [{"id": "slow", "nodeType": "Delay", "params": {"delay": "2s"}}],
    "faulty": [{"id": "fault", "nodeType": "Fault", "params": {"failEvery": 1}}],
}

BASE_CONFIG: dict[str, Any] = {
    # Short, so a test that leaves a stream open does not hold up its teardown for 10 s.
    "gracePeriod": "3s",
}

StartServer = Callable[..., ServerProcess]


def _write_pipelines(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, nodes in PIPELINES.items():
        manifest = {"version": "v1", "metadata": {"name": name}, "nodes": nodes}
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(manifest))
    return folder


@pytest.fixture(scope="session")
def pipelines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the manifests above, for a server config's `pipelinesDir`."""
    return _write_pipelines(tmp_path_factory.mktemp("pipelines"))


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    """Extra server config for every server of a test module; override it in the module."""
    return {}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, pipelines_dir: Path, server_config: dict[str, Any]
) -> Iterator[ServerProcess]:
    """A server shared by a test module; tests must leave it as they found it."""
    workdir = tmp_path_factory.mktemp("server")
    config = {**BASE_CONFIG, "pipelinesDir": str(pipelines_dir), **server_config}
    with ServerProcess(config, workdir) as process:
        yield process


@pytest.fixture
def start_server(
    tmp_path: Path, pipelines_dir: Path, server_config: dict[str, Any]
) -> Iterator[StartServer]:
    """Start a private server: `start_server(limits={...}, auth={...})` merges into the config."""
    started: list[ServerProcess] = []

    def start(**config: Any) -> ServerProcess:
        workdir = tmp_path / f"server-{len(started)}"
        workdir.mkdir()
        merged = {**BASE_CONFIG, "pipelinesDir": str(pipelines_dir), **server_config, **config}
        process = ServerProcess(merged, workdir)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A loopback port that never completes a TCP handshake, like a host behind a dropping firewall.

    A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):  # non-blocking: the SYN is on its way
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@dataclass(frozen=True)
class Certificates:
    """PEM files for TLS tests: a server certificate for 127.0.0.1 and a client certificate,
    each signed by its own CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path

    def server_tls(self, *, mutual: bool = False) -> dict[str, str]:
        """The server config's `tls` section."""
        tls = {"certFile": str(self.server_cert), "keyFile": str(self.server_key)}
        return {**tls, "clientCaFile": str(self.client_ca)} if mutual else tls


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    client = client_ca.issue_cert("client.tether.test")
    files = Certificates(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_ca=folder / "client-ca.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    server_ca.cert_pem.write_to_path(files.ca)
    client_ca.cert_pem.write_to_path(files.client_ca)
    files.server_cert.write_bytes(b"".join(pem.bytes() for pem in server.cert_chain_pems))
    server.private_key_pem.write_to_path(files.server_key)
    files.client_cert.write_bytes(b"".join(pem.bytes() for pem in client.cert_chain_pems))
    client.private_key_pem.write_to_path(files.client_key)
    return files
