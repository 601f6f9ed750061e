"""The gRPC face of the pipeline server: `tether.v1.PipelineService` and `grpc.health.v1.Health`.

Handlers take and return raw bytes (no grpc deserializer): a corrupt request or frame is
parsed here, by `tether.data.codec.parse_message`, and answered with Tether's own
validation error instead of grpc's generic "Exception deserializing request!". Everything
else happens in `PipelineHost`; this module only speaks gRPC.

Errors travel twice: as a gRPC status code a plain gRPC client understands, and as the
serialized `tether.v1.Error` in the trailing metadata key `tether-error-bin`, from which
`tether.transport.grpc.GrpcClient` rebuilds the typed error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final, NoReturn

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from tether.data.codec import parse_message
from tether.errors import NetworkError, ProtocolError, TetherError
from tether.server.auth import Principal
from tether.server.config import ServerConfig
from tether.server.host import PipelineHost
from tether.transport.grpc import ERROR_TRAILER, SERVICE_NAME, STATUS_BY_ERROR_CODE
from tether.transport.wire import error_to_proto
from tether.v1 import pipeline_pb2 as pb

logger = logging.getLogger(__name__)

_Context = grpc.aio.ServicerContext[bytes, bytes]

_SERVER_KEEPALIVE: Final = (
    # Ping a client that has sent nothing for a minute, so a stream whose client vanished
    # without a FIN (a pod deleted, a cable pulled) ends within ~80 s instead of never.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Tolerate the client keepalive pings GrpcClient sends, also between calls; grpc's
    # default (one ping per 5 min) would answer them with GOAWAY "too_many_pings".
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
)

_STOP_GRACE: Final = 1.0
"""Seconds `stop()` lets calls still running finish; the host has already drained by then."""


class GrpcServerHandle:
    """The running gRPC server: its bound port, readiness reporting and shutdown."""

    def __init__(self, server: grpc.aio.Server, health: HealthServicer, port: int) -> None:
        self.port = port
        self._server = server
        self._health = health
        self._not_serving: asyncio.Task[None] | None = None
        self._stopped = False

    def report_not_serving(self) -> None:
        """Health checks answer NOT_SERVING from now on (call at the start of a drain).

        The health servicer's setter is a coroutine (it wakes `Watch` callers), so the
        change is scheduled here and awaited by `stop()`; it lands at the next await.
        """
        if self._not_serving is None:
            self._not_serving = asyncio.get_running_loop().create_task(
                self._health.enter_graceful_shutdown(), name="tether-grpc-health-not-serving"
            )

    async def stop(self, grace: float = _STOP_GRACE) -> None:
        """Stop accepting calls; cancel those still running after `grace` seconds. Idempotent."""
        if self._not_serving is not None:
            await self._not_serving
        if self._stopped:
            return
        self._stopped = True
        await self._server.stop(grace)


async def start_grpc_server(host: PipelineHost, config: ServerConfig) -> GrpcServerHandle:
    """Serve `host` over gRPC on `config.grpc`; port 0 binds a free port, returned in the handle."""
    max_bytes = config.limits.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_bytes),
            # Two servers on one port would split the traffic silently: fail to bind instead.
            ("grpc.so_reuseport", 0),
            *_SERVER_KEEPALIVE,
        ]
    )
    server.add_generic_rpc_handlers([_PipelineService(host).handler()])

    health = HealthServicer()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)

    address = _address(config.grpc.host, config.grpc.port)
    try:
        if config.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, _credentials(config))
    except RuntimeError as exc:  # grpc says only "Failed to bind to address ..."
        await server.stop(None)
        raise OSError(f"gRPC server cannot listen on {address}: {exc}") from exc
    await server.start()
    logger.info("gRPC listening on %s", _address(config.grpc.host, port))
    return GrpcServerHandle(server, health, port)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _credentials(config: ServerConfig) -> grpc.ServerCredentials:
    tls = config.tls
    assert tls is not None
    client_ca = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


class _PipelineService:
    """The four RPCs of `tether.v1.PipelineService`, on raw bytes."""

    def __init__(self, host: PipelineHost) -> None:
        self.host = host

    def handler(self) -> grpc.GenericRpcHandler[bytes, bytes]:
        # No request_deserializer / response_serializer: grpc hands over and sends bytes as
        # they are, so malformed input reaches our parser and gets our error.
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Execute": grpc.unary_unary_rpc_method_handler(self.execute),
                "Stream": grpc.stream_stream_rpc_method_handler(self.stream),
                "GetInfo": grpc.unary_unary_rpc_method_handler(self.get_info),
                "GetManifest": grpc.unary_unary_rpc_method_handler(self.get_manifest),
            },
        )

    # ---- unary calls ----

    async def execute(self, raw: bytes, context: _Context) -> bytes:
        async def call() -> bytes:
            self._authenticate(context)
            request = parse_message(raw, pb.ExecuteRequest, "execute_request")
            request.header.ClearField("authorization")  # metadata carries gRPC's token
            response = await self.host.execute(
                request, transport="grpc", timeout=context.time_remaining()
            )
            if response.HasField("error"):
                await _abort(context, response.error)
            return response.SerializeToString()

        return await _unary(context, call, on_refusal=self._count_unary_refusal)

    async def get_info(self, raw: bytes, context: _Context) -> bytes:
        async def call() -> bytes:
            self._authenticate(context)
            parse_message(raw, pb.InfoRequest, "info_request")
            return self.host.info().SerializeToString()

        return await _unary(context, call)

    async def get_manifest(self, raw: bytes, context: _Context) -> bytes:
        async def call() -> bytes:
            self._authenticate(context)
            request = parse_message(raw, pb.ManifestRequest, "manifest_request")
            return self.host.manifest_of(request.pipeline_name).SerializeToString()

        return await _unary(context, call)

    # ---- the bidirectional stream ----

    async def stream(self, requests: AsyncIterator[bytes], context: _Context) -> None:
        """Check the `open` frame and the caller, then let the host serve the stream.

        The host sends every frame itself, errors included; an error frame is also
        mirrored into the call's status so plain gRPC clients see the failure.
        """
        failure: pb.Error | None = None

        async def send(frame: pb.ServerFrame) -> None:
            nonlocal failure
            if frame.HasField("error"):
                failure = frame.error
            if context.done() or context.cancelled():
                raise NetworkError("the client went away")
            try:
                await context.write(frame.SerializeToString())
            except (grpc.aio.BaseError, asyncio.InvalidStateError) as exc:
                # ExecuteBatchError (an InternalError) when the peer is gone; UsageError
                # once the call has finished.
                raise NetworkError(f"the client went away ({type(exc).__name__})") from exc

        try:
            try:
                header = await _open_header(requests)
            except TetherError:
                self._authenticate(context)  # the unauthenticated learn nothing of what they sent
                raise
            principal = self._authenticate(context, fallback=header.authorization)
            header.ClearField("authorization")  # the token goes no further than here
        except Exception as exc:
            if not isinstance(exc, TetherError):
                logger.exception("unexpected failure opening a gRPC stream")
            failure = error_to_proto(exc)
            self.host.record_refusal("grpc", "stream", failure)
            try:
                await send(pb.ServerFrame(error=failure))
            except NetworkError:
                return
        else:
            await self.host.stream(
                header,
                _frames(requests),
                send,
                transport="grpc",
                principal=principal,
                timeout=context.time_remaining(),
            )
        if failure is not None and not context.done():
            _set_status(context, failure)

    # ---- helpers ----

    def _count_unary_refusal(self, error: pb.Error) -> None:
        self.host.record_refusal("grpc", "unary", error)

    def _authenticate(self, context: _Context, *, fallback: str = "") -> Principal:
        authorization = _metadata_value(context, "authorization") or fallback or None
        return self.host.authenticate(authorization)


async def _open_header(requests: AsyncIterator[bytes]) -> pb.RequestHeader:
    """The header of the stream's first frame, which must be `open`."""
    first = await anext(aiter(requests), None)
    if first is None:
        raise ProtocolError("the stream closed before its open frame")
    opening = parse_message(first, pb.ClientFrame, "client_frame")
    kind = opening.WhichOneof("kind")
    if kind != "open":
        raise ProtocolError(f"a stream must start with an open frame, not {kind or 'an empty one'}")
    return opening.open.header


async def _frames(requests: AsyncIterator[bytes]) -> AsyncIterator[pb.ClientFrame]:
    """Client frames after the open one; a corrupt frame raises DataValidationError."""
    async for raw in requests:
        yield parse_message(raw, pb.ClientFrame, "client_frame")


async def _unary(
    context: _Context,
    call: Callable[[], Awaitable[bytes]],
    *,
    on_refusal: Callable[[pb.Error], None] | None = None,
) -> bytes:
    """Run a unary handler; a Tether error, or any unexpected one, becomes a typed abort.

    Errors the host answered arrive as AbortError (already counted by the host); others
    are refusals before the host saw the request, reported to `on_refusal`.
    """
    try:
        return await call()
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        if not isinstance(exc, TetherError | TimeoutError):
            logger.exception("unexpected failure in a gRPC handler")
        error = error_to_proto(exc)
        if on_refusal is not None:
            on_refusal(error)
        await _abort(context, error)


def _metadata_value(context: _Context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode("latin-1")
    return None


def _status_of(error: pb.Error) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    code = STATUS_BY_ERROR_CODE.get(error.code, grpc.StatusCode.UNKNOWN)
    return code, error.message, ((ERROR_TRAILER, error.SerializeToString()),)


async def _abort(context: _Context, error: pb.Error) -> NoReturn:
    code, details, trailers = _status_of(error)
    await context.abort(code, details, trailing_metadata=trailers)


def _set_status(context: _Context, error: pb.Error) -> None:
    code, details, trailers = _status_of(error)
    context.set_code(code)
    context.set_details(details)
    context.set_trailing_metadata(trailers)
