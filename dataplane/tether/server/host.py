"""The transport-independent heart of the pipeline server.

Transport adapters (gRPC, HTTP, WebRTC) only parse their protocol, authenticate, and
call `execute` or `stream` here; resolution, loop guarding, limits, deadlines, token
expiry, metrics and error mapping happen once, in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tether import __version__
from tether.data import RuntimeData, decode, encode
from tether.errors import (
    AuthenticationError,
    CircularReferenceError,
    DeadlineExceededError,
    IncompatibleManifestError,
    InputStreamError,
    ManifestError,
    NetworkError,
    ProtocolError,
    ResourceExhaustedError,
    TetherError,
    UnavailableError,
    UnknownPipelineError,
)
from tether.manifest import load_manifest, manifest_to_dict, parse_manifest_text
from tether.runtime import Ack, NodeRegistry, Pipeline, RequestContext, default_registry, serving
from tether.runtime.pipeline import AckedOutput
from tether.server.auth import Authenticator, NoAuthentication, Principal
from tether.server.config import ServerConfig
from tether.server.metrics import ServerMetrics
from tether.transport.wire import PROTOCOL_VERSION, error_to_proto, header_timeout
from tether.v1 import pipeline_pb2 as pb

logger = logging.getLogger(__name__)

SendFrame = Callable[[pb.ServerFrame], Awaitable[None]]

_INLINE_CACHE_SIZE: Final = 32
_MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Resolved:
    pipeline: Pipeline
    context: RequestContext
    label: str
    """Metrics label: the predefined name, or "inline" (user-chosen names are unbounded)."""


class PipelineHost:
    def __init__(
        self,
        config: ServerConfig,
        pipelines: dict[str, Pipeline],
        registry: NodeRegistry,
    ) -> None:
        self.config = config
        self.pipelines = pipelines
        self.registry = registry
        self.metrics = ServerMetrics()
        self.authenticator: Authenticator | NoAuthentication = (
            Authenticator(config.auth) if config.auth else NoAuthentication()
        )
        self._inline: OrderedDict[str, Pipeline] = OrderedDict()
        self._active_streams = 0
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    @classmethod
    def from_config(
        cls, config: ServerConfig, registry: NodeRegistry | None = None
    ) -> PipelineHost:
        """Load and validate every predefined pipeline; any invalid one stops start-up."""
        registry = registry or default_registry()
        sources: list[Path | Mapping[str, Any]] = [entry.source for entry in config.pipelines]
        if config.pipelines_dir is not None:
            sources += sorted(
                p for p in config.pipelines_dir.iterdir() if p.suffix in _MANIFEST_SUFFIXES
            )
        pipelines: dict[str, Pipeline] = {}
        for source in sources:
            pipeline = Pipeline.from_manifest(load_manifest(source), registry)
            if pipeline.name in pipelines:
                raise ManifestError(f"two predefined pipelines are named {pipeline.name!r}")
            pipelines[pipeline.name] = pipeline
        return cls(config, pipelines, registry)

    # ---- discovery ----

    def info(self) -> pb.ServerInfo:
        limits = self.config.limits
        return pb.ServerInfo(
            server_version=__version__,
            protocol_version=PROTOCOL_VERSION,
            node_types=[
                pb.NodeTypeInfo(
                    name=info.name,
                    params_schema=json.dumps(info.params_model.model_json_schema(by_alias=True)),
                    outputs=info.outputs,
                )
                for info in self.registry.catalog().values()
            ],
            pipelines=sorted(self.pipelines),
            limits=pb.Limits(
                max_message_bytes=limits.max_message_bytes,
                max_concurrent_streams=limits.max_concurrent_streams,
                max_hops=limits.max_hops,
                inline_manifests_allowed=self.config.allow_inline_manifests,
            ),
        )

    def manifest_of(self, name: str) -> pb.ManifestResponse:
        pipeline = self._predefined(name)
        return pb.ManifestResponse(
            pipeline_name=name, manifest=json.dumps(manifest_to_dict(pipeline.manifest))
        )

    @property
    def ready(self) -> bool:
        return not self.draining

    # ---- requests ----

    def authenticate(self, authorization: str | None) -> Principal:
        return self.authenticator.authenticate(authorization)

    async def execute(
        self, request: pb.ExecuteRequest, *, transport: str, timeout: float | None = None
    ) -> pb.ExecuteResponse:
        """Run a unary request. Failures come back inside the response, never raised."""
        started = time.perf_counter()
        label = "unresolved"
        try:
            with self._in_flight_request():
                resolved = self.resolve(request.header)
                label = resolved.label
                data = decode(request.input)
                deadline = _earliest(
                    timeout, header_timeout(request.header), self.config.limits.default_timeout
                )
                with serving(resolved.context):
                    async with asyncio.timeout(deadline):
                        outputs = await resolved.pipeline.run(data)
                response = pb.ExecuteResponse(
                    request_id=resolved.context.request_id,
                    outputs=[pb.Output(node_id=o.node_id, data=encode(o.data)) for o in outputs],
                )
                self._check_size(response, "response")
        except (TetherError, TimeoutError) as exc:
            response = pb.ExecuteResponse(
                request_id=request.header.request_id, error=error_to_proto(exc)
            )
        except Exception as exc:
            logger.exception("unexpected failure serving request %s", request.header.request_id)
            response = pb.ExecuteResponse(
                request_id=request.header.request_id, error=error_to_proto(exc)
            )
        outcome = _outcome(response.error) if response.HasField("error") else "ok"
        self._record(label, transport, "unary", outcome, started)
        return response

    async def stream(
        self,
        header: pb.RequestHeader,
        frames: AsyncIterator[pb.ClientFrame],
        send: SendFrame,
        *,
        transport: str,
        principal: Principal,
        timeout: float | None = None,
    ) -> None:
        """Serve one stream whose `open` frame carried `header`, until it ends or fails.

        Every failure is sent to the client as an error frame; only a client that went
        away ends the stream silently.
        """
        started = time.perf_counter()
        label = "unresolved"
        outcome = "ok"
        try:
            with self._in_flight_request(), self._stream_slot(transport):
                resolved = self.resolve(header)
                label = resolved.label
                await send(
                    pb.ServerFrame(opened=pb.StreamOpened(request_id=resolved.context.request_id))
                )
                await self._run_stream(
                    resolved, header, frames, send, transport, principal, timeout
                )
                await send(pb.ServerFrame(end=pb.StreamEnd()))
        except Exception as exc:
            if _client_went_away(exc):
                # Nobody is left to tell, and it is no failure of the server's.
                logger.debug("stream ended by the client: %s", exc)
                outcome = "disconnected"
            else:
                if not isinstance(exc, TetherError | TimeoutError):
                    logger.exception("unexpected failure serving stream %s", header.request_id)
                error = error_to_proto(exc)
                outcome = _outcome(error)
                with contextlib.suppress(NetworkError):
                    await send(pb.ServerFrame(error=error))
        self._record(label, transport, "stream", outcome, started)

    async def _run_stream(
        self,
        resolved: Resolved,
        header: pb.RequestHeader,
        frames: AsyncIterator[pb.ClientFrame],
        send: SendFrame,
        transport: str,
        principal: Principal,
        timeout: float | None,
    ) -> None:
        frames_in = self.metrics.stream_frames.labels(transport, "in")
        frames_out = self.metrics.stream_frames.labels(transport, "out")

        async def inputs() -> AsyncIterator[tuple[int, RuntimeData]]:
            last_seq = -1
            async for frame in frames:
                frames_in.inc()
                kind = frame.WhichOneof("kind")
                if kind == "close":
                    return
                if kind != "input":
                    raise ProtocolError(f"unexpected {kind or 'empty'} frame inside a stream")
                if frame.input.seq <= last_seq:
                    raise ProtocolError(
                        f"sequence numbers must increase: {frame.input.seq} after {last_seq}"
                    )
                last_seq = frame.input.seq
                yield frame.input.seq, decode(frame.input.data)
            raise NetworkError("the client closed the stream without StreamClose")

        expires_in = principal.seconds_left()
        deadline = _earliest(
            timeout, header_timeout(header), self.config.limits.default_timeout, expires_in
        )
        try:
            with serving(resolved.context):
                async with (
                    asyncio.timeout(deadline),
                    contextlib.aclosing(resolved.pipeline.stream_coalesced(inputs())) as events,
                ):
                    async for event in events:
                        if isinstance(event, Ack):
                            frame = pb.ServerFrame(ack=pb.StreamAck(seq=event.seq))
                        else:
                            output = event.output if isinstance(event, AckedOutput) else event
                            frame = pb.ServerFrame(
                                output=pb.StreamOutput(
                                    node_id=output.node_id, data=encode(output.data)
                                )
                            )
                            if isinstance(event, AckedOutput):
                                frame.output.ack = event.ack.seq
                            self._check_size(frame, f"output of node {output.node_id!r}")
                        await send(frame)
                        frames_out.inc()
        except TimeoutError:
            if expires_in is not None and deadline == expires_in:
                raise AuthenticationError(
                    "token expired during the stream; reopen it with a fresh token"
                ) from None
            raise DeadlineExceededError("stream deadline exceeded") from None

    def resolve(self, header: pb.RequestHeader) -> Resolved:
        if self.draining:
            raise UnavailableError("server is shutting down")
        which = header.WhichOneof("pipeline")
        if which == "pipeline_name":
            pipeline, label = self._predefined(header.pipeline_name), header.pipeline_name
        elif which == "manifest":
            pipeline, label = self._inline_pipeline(header.manifest), "inline"
        else:
            raise UnknownPipelineError("the request names no pipeline")
        visited = tuple(header.visited)
        if pipeline.name in visited:
            chain = " -> ".join((*visited, pipeline.name))
            raise CircularReferenceError(
                f"request loops back to pipeline {pipeline.name!r}: {chain}"
            )
        if len(visited) >= self.config.limits.max_hops:
            raise CircularReferenceError(
                f"request already passed through {len(visited)} pipelines "
                f"(limit {self.config.limits.max_hops})"
            )
        context = RequestContext(
            request_id=header.request_id or RequestContext().request_id,
            visited=(*visited, pipeline.name),
        )
        return Resolved(pipeline, context, label)

    def _predefined(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self.pipelines)) or "none"
            raise UnknownPipelineError(
                f"no pipeline named {name!r}; this server hosts: {known}"
            ) from None

    def _inline_pipeline(self, text: str) -> Pipeline:
        if not self.config.allow_inline_manifests:
            raise IncompatibleManifestError(
                "this server does not accept inline manifests (allowInlineManifests)"
            )
        key = hashlib.sha256(text.encode()).hexdigest()
        if (cached := self._inline.get(key)) is not None:
            self._inline.move_to_end(key)
            return cached
        manifest = parse_manifest_text(text, source="inline manifest")
        unknown = sorted({n.node_type for n in manifest.nodes if n.node_type not in self.registry})
        if unknown:
            raise IncompatibleManifestError(
                f"this server has no node types {', '.join(unknown)}", unknown_node_types=unknown
            )
        pipeline = Pipeline.from_manifest(manifest, self.registry)
        self._inline[key] = pipeline
        if len(self._inline) > _INLINE_CACHE_SIZE:
            self._inline.popitem(last=False)
        return pipeline

    # ---- limits and shutdown ----

    @contextlib.contextmanager
    def _stream_slot(self, transport: str) -> Iterator[None]:
        if self._active_streams >= self.config.limits.max_concurrent_streams:
            raise ResourceExhaustedError(
                f"server is at its limit of {self.config.limits.max_concurrent_streams} "
                "concurrent streams"
            )
        self._active_streams += 1
        gauge = self.metrics.active_streams.labels(transport)
        gauge.inc()
        try:
            yield
        finally:
            self._active_streams -= 1
            gauge.dec()

    @contextlib.contextmanager
    def _in_flight_request(self) -> Iterator[None]:
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def drain(self, grace_period: float) -> bool:
        """Refuse new work, then wait for in-flight work; True if it all finished in time."""
        self.draining = True
        try:
            async with asyncio.timeout(grace_period):
                await self._idle.wait()
        except TimeoutError:
            logger.warning(
                "%d request(s) still running after the %.1fs grace period",
                self._in_flight,
                grace_period,
            )
            return False
        return True

    def _check_size(self, message: pb.ExecuteResponse | pb.ServerFrame, what: str) -> None:
        """Refuse what the client would refuse anyway: a typed error, not a broken call."""
        limit = self.config.limits.max_message_bytes
        if (size := message.ByteSize()) > limit:
            raise ResourceExhaustedError(f"the {what} is {size} bytes, over the {limit}-byte limit")

    def record_refusal(self, transport: str, kind: str, error: pb.Error) -> None:
        """Count a request an adapter refused before it reached the host (auth, corrupt body)."""
        self.metrics.requests.labels("unresolved", transport, kind, _outcome(error)).inc()

    def _record(self, label: str, transport: str, kind: str, outcome: str, started: float) -> None:
        self.metrics.requests.labels(label, transport, kind, outcome).inc()
        self.metrics.request_seconds.labels(label, transport, kind).observe(
            time.perf_counter() - started
        )


def _outcome(error: pb.Error) -> str:
    """The metrics outcome of a failure: its error code, e.g. "deadline_exceeded"."""
    return pb.ErrorCode.Name(error.code).removeprefix("ERROR_CODE_").lower()


def _client_went_away(error: BaseException) -> bool:
    # The frame reader raises NetworkError; inside a run it arrives as the cause of an
    # InputStreamError.
    return isinstance(error, NetworkError) or (
        isinstance(error, InputStreamError) and isinstance(error.__cause__, NetworkError)
    )


def _earliest(*timeouts: float | None) -> float | None:
    given = [t for t in timeouts if t is not None]
    return min(given) if given else None
