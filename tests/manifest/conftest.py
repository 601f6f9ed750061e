"""Fixtures for manifest tests: a small node catalog and a real HTTP server on loopback.

The catalog is built from `NodeTypeInfo` directly, so these tests do not depend on the
runtime package or on the built-in nodes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import Field

from tether.manifest import CamelModel, Duration, NodeCatalog, NodeTypeInfo, NoParams


class GainParams(CamelModel):
    gain_db: float = Field(default=0.0, ge=-60.0, le=60.0)


class RetryParams(CamelModel):
    max_retries: int = Field(default=3, ge=0)
    initial_backoff: Duration = 1.0


class RemoteParams(CamelModel):
    url: str
    timeout: Duration = 30.0
    retry: RetryParams = Field(default_factory=RetryParams)


CATALOG: NodeCatalog = {
    "PassThrough": NodeTypeInfo("PassThrough", NoParams, ("out",)),
    "Gain": NodeTypeInfo("Gain", GainParams, ("out",)),
    "Remote": NodeTypeInfo("Remote", RemoteParams, ("out",)),
    "Splitter": NodeTypeInfo("Splitter", NoParams, ("voice", "silence")),
}


@pytest.fixture
def catalog() -> NodeCatalog:
    return CATALOG


@pytest.fixture
def document() -> dict[str, Any]:
    """A valid manifest document, fresh for each test so tests may change it: gain -> tts."""
    return {
        "version": "v1",
        "metadata": {"name": "gain-then-tts"},
        "nodes": [
            {"id": "gain", "nodeType": "Gain", "params": {"gainDb": 6}},
            {
                "id": "tts",
                "nodeType": "Remote",
                "params": {
                    "url": "grpc://127.0.0.1:1",
                    "timeout": "250ms",
                    "retry": {"maxRetries": 2},
                },
            },
        ],
        "connections": [{"from": "gain", "to": "tts"}],
    }


@pytest.fixture
def manifest_yaml() -> str:
    """The `document` fixture's manifest, as YAML text."""
    return """\
version: v1
metadata: {name: gain-then-tts}
nodes:
  - id: gain
    nodeType: Gain
    params: {gainDb: 6}
  - id: tts
    nodeType: Remote
    params:
      url: grpc://127.0.0.1:1
      timeout: 250ms
      retry: {maxRetries: 2}
connections:
  - {from: gain, to: tts}
"""


@dataclass
class Route:
    status: int
    content_type: str
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path, Route(404, "text/plain", b"not found"))
        self.send_response(route.status)
        self.send_header("Content-Type", route.content_type)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        self.wfile.write(route.body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@dataclass
class ManifestServer:
    """A real HTTP server on 127.0.0.1 that serves whatever `routes` holds."""

    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)

    def serve(
        self, path: str, body: str, *, content_type: str = "application/yaml", status: int = 200
    ) -> str:
        """Serve `body` at `path` from now on; return its URL."""
        self.routes[path] = Route(status, content_type, body.encode())
        return self.base_url + path


@pytest.fixture(scope="session")
def _running_server() -> Iterator[ManifestServer]:
    """One server for the whole session, as starting and stopping one per test is slow."""
    server = _Server(("127.0.0.1", 0), _Handler)
    served = ManifestServer(f"http://127.0.0.1:{server.server_address[1]}")
    server.routes = served.routes
    thread = threading.Thread(target=server.serve_forever, name="manifest-server", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def manifest_server(_running_server: ManifestServer) -> Iterator[ManifestServer]:
    """The session's server, serving nothing but what this test adds."""
    _running_server.routes.clear()
    yield _running_server
    _running_server.routes.clear()
