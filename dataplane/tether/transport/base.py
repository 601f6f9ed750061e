"""The client interface every transport implements, and what a call needs to name.

A client talks to one endpoint. The remote node above decides which endpoint, when to
retry and when to fall back; clients only translate calls to their protocol and every
failure to a `tether.errors.RemoteError`.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from tether.data import RuntimeData
from tether.errors import AuthenticationError, ResourceExhaustedError
from tether.runtime import Ack, NodeOutput, RequestContext, current_request

TokenSource = Callable[[], str | None]
"""Returns the bearer token to send now; called for every call, so rotation just works."""


def static_token(token: str) -> TokenSource:
    return lambda: token


def token_from_file(path: Path) -> TokenSource:
    """Read at every call: mounted Secrets change under a running process."""
    return lambda: path.read_text().strip() or None


def token_from_env(name: str) -> TokenSource:
    return lambda: os.environ.get(name) or None


@dataclass(frozen=True)
class PipelineTarget:
    """Which pipeline a call runs: a predefined name, or an inline manifest (YAML/JSON text)."""

    name: str | None = None
    manifest: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.manifest is None):
            raise ValueError("PipelineTarget needs exactly one of name or manifest")

    def __str__(self) -> str:
        return self.name if self.name is not None else "<inline manifest>"


@dataclass(frozen=True)
class ClientTls:
    ca_file: Path | None = None
    """CA that signed the server certificate; None trusts the system store."""
    cert_file: Path | None = None
    """Client certificate, for servers that require mutual TLS."""
    key_file: Path | None = None


@dataclass(frozen=True)
class ClientOptions:
    token: TokenSource | None = None
    tls: ClientTls | None = None
    max_message_bytes: int = 16 * 1024 * 1024
    connect_timeout: float = 2.0
    """Seconds to establish a connection: a dead endpoint must not eat the call's deadline."""
    ice_servers: tuple[str, ...] = ()
    """WebRTC only: STUN/TURN URLs; none by default, so nothing outside is contacted."""
    ice_host_addresses: tuple[str, ...] = ("127.0.0.1",)
    """WebRTC only: local addresses offered as ICE host candidates."""


def check_outgoing_size(size: int, options: ClientOptions, endpoint: str) -> None:
    """Refuse a message over the client's limit before sending any of it: that costs no
    round trip and leaves an open stream usable (the server would fail the whole call)."""
    if size > options.max_message_bytes:
        raise ResourceExhaustedError(
            f"a message of {size} bytes exceeds max_message_bytes ({options.max_message_bytes})",
            endpoint=endpoint,
        )


@dataclass(frozen=True)
class ServerInfo:
    server_version: str
    protocol_version: str
    node_types: tuple[str, ...]
    pipelines: tuple[str, ...]
    max_message_bytes: int
    max_concurrent_streams: int
    max_hops: int
    inline_manifests_allowed: bool
    params_schemas: dict[str, str] = field(default_factory=dict, compare=False)


StreamEvent = NodeOutput | Ack


class ClientStream(abc.ABC):
    """One open stream. Send numbered inputs; iterate outputs and acks until the end.

    Iteration ends after the server finished a stream whose input was closed; failures
    raise `RemoteError` subclasses.
    """

    @abc.abstractmethod
    async def send(self, seq: int, data: RuntimeData) -> None: ...

    @abc.abstractmethod
    async def close_input(self) -> None:
        """No more inputs: the server flushes the pipeline and ends the stream."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[StreamEvent]: ...

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Abandon the stream at once. Idempotent."""

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self.events()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class PipelineClient(abc.ABC):
    """A connection to one pipeline server endpoint over one transport."""

    transport: str

    def __init__(self, endpoint: str, options: ClientOptions | None = None) -> None:
        self.endpoint = endpoint
        self.options = options or ClientOptions()

    @abc.abstractmethod
    async def execute(
        self, target: PipelineTarget, data: RuntimeData, *, timeout: float | None = None
    ) -> list[NodeOutput]: ...

    @abc.abstractmethod
    async def open_stream(
        self, target: PipelineTarget, *, timeout: float | None = None
    ) -> ClientStream: ...

    @abc.abstractmethod
    async def info(self) -> ServerInfo: ...

    @abc.abstractmethod
    async def health(self) -> bool:
        """True when the server is ready to serve; False when it answers but is not."""

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _token(self) -> str | None:
        """The token to send now. A token source that fails (an unreadable Secret file, say)
        is an authentication problem of this client: retrying elsewhere cannot help."""
        if self.options.token is None:
            return None
        try:
            return self.options.token()
        except Exception as exc:
            raise AuthenticationError(
                f"the client's token source failed: {type(exc).__name__}", endpoint=self.endpoint
            ) from exc

    @staticmethod
    def _context() -> RequestContext:
        return current_request() or RequestContext()
