"""Clients for the pipeline server, one per protocol, behind one interface.

    async with connect("grpc", "grpc://127.0.0.1:50051") as client:
        outputs = await client.execute(PipelineTarget(name="tts"), Text(text="hi"), timeout=5)

Each protocol module is imported on first use: a gRPC user never loads aiortc.
"""

from __future__ import annotations

from importlib import import_module
from typing import Final, Literal

from tether.transport.base import (
    ClientOptions,
    ClientStream,
    ClientTls,
    PipelineClient,
    PipelineTarget,
    ServerInfo,
    StreamEvent,
    TokenSource,
    static_token,
    token_from_env,
    token_from_file,
)

Transport = Literal["grpc", "http", "webrtc"]

_CLIENTS: Final[dict[str, tuple[str, str]]] = {
    "grpc": ("tether.transport.grpc", "GrpcClient"),
    "http": ("tether.transport.http", "HttpClient"),
    "webrtc": ("tether.transport.webrtc", "WebRtcClient"),
}
TRANSPORTS: Final = tuple(_CLIENTS)


def client_class(transport: str) -> type[PipelineClient]:
    try:
        module_name, class_name = _CLIENTS[transport]
    except KeyError:
        raise ValueError(
            f"unknown transport {transport!r}; use one of {', '.join(_CLIENTS)}"
        ) from None
    client: type[PipelineClient] = getattr(import_module(module_name), class_name)
    return client


def connect(transport: str, endpoint: str, options: ClientOptions | None = None) -> PipelineClient:
    """A client for `endpoint` over `transport`. Connections open lazily, on first use."""
    return client_class(transport)(endpoint, options)


__all__ = [
    "TRANSPORTS",
    "ClientOptions",
    "ClientStream",
    "ClientTls",
    "PipelineClient",
    "PipelineTarget",
    "ServerInfo",
    "StreamEvent",
    "TokenSource",
    "Transport",
    "client_class",
    "connect",
    "static_token",
    "token_from_env",
    "token_from_file",
]
