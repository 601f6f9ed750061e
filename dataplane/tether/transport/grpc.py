"""The gRPC client of the pipeline server, and the gRPC details both sides share.

    options = ClientOptions(token=static_token("s3cr3t"))
    async with GrpcClient("grpc://127.0.0.1:50051", options) as client:
        outputs = await client.execute(PipelineTarget(name="tts"), Text(text="hello"), timeout=5)

One `grpc.aio` channel per client, opened at the first call and reused by every call
after it. Every grpc failure becomes a `tether.errors.RemoteError` in `_translate`, and
only there: a typed error the server put in the `tether-error-bin` trailer comes back as
the same class; otherwise the gRPC status code decides (see `_ERROR_BY_STATUS`).

Messages travel as raw bytes and are parsed here rather than by grpc's deserializer, so
a malformed answer is a `ProtocolError`, not grpc's opaque "Exception deserializing
response!".
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, NoReturn, TypeVar
from urllib.parse import urlsplit

import grpc
import grpc.aio
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from tether.data import RuntimeData, encode
from tether.data.codec import parse_message
from tether.errors import (
    AuthenticationError,
    DataValidationError,
    DeadlineExceededError,
    NetworkError,
    ProtocolError,
    RemoteError,
    RemoteValidationError,
    ResourceExhaustedError,
    UnavailableError,
)
from tether.runtime import NodeOutput
from tether.transport.base import (
    ClientOptions,
    PipelineClient,
    PipelineTarget,
    ServerInfo,
    check_outgoing_size,
)
from tether.transport.wire import (
    FrameStream,
    accept_opened,
    error_from_proto,
    make_header,
    open_frame,
    outputs_from_response,
    server_info_from_proto,
)
from tether.v1 import pipeline_pb2 as pb

SERVICE_NAME: Final = "tether.v1.PipelineService"
ERROR_TRAILER: Final = "tether-error-bin"
"""Trailing metadata key holding the serialized `tether.v1.Error` of a failed call."""

_EXECUTE: Final = f"/{SERVICE_NAME}/Execute"
_STREAM: Final = f"/{SERVICE_NAME}/Stream"
_GET_INFO: Final = f"/{SERVICE_NAME}/GetInfo"
_GET_MANIFEST: Final = f"/{SERVICE_NAME}/GetManifest"
_HEALTH_CHECK: Final = "/grpc.health.v1.Health/Check"

_QUERY_TIMEOUT: Final = 10.0
"""Seconds `info()`, `get_manifest()` and `health()` may take: a probe must never hang.
Callers that need less wrap the call in `asyncio.timeout`."""

_LAST_FRAME_GRACE: Final = 1.0
"""Seconds a stream waits for the call's status after the server's last frame (end or
error). The server sends it at once; the bound only guards against a broken peer."""

Code = pb.ErrorCode

STATUS_BY_ERROR_CODE: Final[Mapping[int, grpc.StatusCode]] = {
    Code.ERROR_CODE_EXECUTION: grpc.StatusCode.INTERNAL,
    Code.ERROR_CODE_VALIDATION: grpc.StatusCode.INVALID_ARGUMENT,
    Code.ERROR_CODE_UNKNOWN_PIPELINE: grpc.StatusCode.NOT_FOUND,
    Code.ERROR_CODE_INCOMPATIBLE_MANIFEST: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ERROR_CODE_UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.ERROR_CODE_RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.ERROR_CODE_DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Code.ERROR_CODE_CIRCULAR_REFERENCE: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ERROR_CODE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.ERROR_CODE_INTERNAL: grpc.StatusCode.INTERNAL,
}
"""The gRPC status a server reports for each Tether error code (the trailer says which exactly)."""

_ERROR_BY_STATUS: Final[Mapping[grpc.StatusCode, type[RemoteError]]] = {
    # Statuses without a Tether trailer come from grpc itself or from something in the
    # middle (a proxy, a server of another kind); anything not listed is a ProtocolError.
    grpc.StatusCode.UNAVAILABLE: NetworkError,  # refused, reset, no route, TLS failure
    grpc.StatusCode.CANCELLED: NetworkError,  # the server or a proxy cut the call
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,  # e.g. a message over the limit
    grpc.StatusCode.ABORTED: UnavailableError,
    grpc.StatusCode.INVALID_ARGUMENT: RemoteValidationError,
}


def _translate(exc: BaseException, endpoint: str) -> RemoteError:
    """The Tether error for a grpc failure. The only place that maps grpc errors."""
    if isinstance(exc, grpc.aio.AioRpcError):
        trailer = _trailer(exc)
        if trailer is not None:
            with contextlib.suppress(DataValidationError):  # a garbled trailer: use the status
                return error_from_proto(parse_message(trailer, pb.Error, ERROR_TRAILER), endpoint)
        code = exc.code()
        error_class = _ERROR_BY_STATUS.get(code, ProtocolError)
        return error_class(f"gRPC {code.name}: {exc.details() or 'no details'}", endpoint=endpoint)
    if isinstance(exc, asyncio.CancelledError):
        # grpc.aio raises CancelledError in every task using a call that was cancelled
        # locally, i.e. by `aclose()` of the stream or the client, not by asyncio.
        return NetworkError("the call was closed on this side", endpoint=endpoint)
    if isinstance(exc, asyncio.InvalidStateError):  # grpc.aio: a write on a finished call
        return ProtocolError("the call already ended", endpoint=endpoint)
    # grpc.aio.UsageError, InternalError and the like: grpc itself failed.
    return ProtocolError(f"gRPC failure: {type(exc).__name__}: {exc}", endpoint=endpoint)


def _trailer(exc: grpc.aio.AioRpcError) -> bytes | None:
    # grpc-stubs types this as a tuple of `_Metadatum`; grpc.aio returns its Metadata mapping.
    metadata: grpc.aio.Metadata | None = exc.trailing_metadata()  # type: ignore[assignment]
    value = metadata.get(ERROR_TRAILER) if metadata is not None else None
    return value if isinstance(value, bytes) else None


@contextlib.contextmanager
def _grpc_errors(endpoint: str) -> Iterator[None]:
    """Let no grpc exception out: each becomes the RemoteError `_translate` picks."""
    try:
        yield
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # a real cancellation of this task
        raise _translate(exc, endpoint) from exc
    except (grpc.RpcError, grpc.aio.BaseError, asyncio.InvalidStateError) as exc:
        raise _translate(exc, endpoint) from exc


_M = TypeVar("_M", bound=Message)


def _parse(raw: bytes, message_type: type[_M], endpoint: str) -> _M:
    try:
        return parse_message(raw, message_type, message_type.DESCRIPTOR.name)
    except DataValidationError as exc:
        raise ProtocolError(f"server sent a malformed message: {exc}", endpoint=endpoint) from exc


def _within_limit(raw: bytes, options: ClientOptions, endpoint: str) -> bytes:
    check_outgoing_size(len(raw), options, endpoint)
    return raw


_STATUS_TASK: Final = "_AioCall._handle_status_once_received"
_SETTLE_TIMEOUT: Final = 0.5


async def _settle_cancelled_call() -> None:
    """Give grpc.aio a moment to finish its bookkeeping of a call cancelled here.

    grpc.aio watches each streaming call's status in a task of its own, which sees a local
    cancellation only when the core hands it over from grpc's poller thread, a moment
    later. Waiting for it keeps "closed" meaning closed: nothing of the stream is left
    running (an event loop closed right after would warn of a destroyed pending task).
    grpc gives no handle on that task, so it is found by its coroutine's name among the
    pending ones; the first to finish is taken as ours. If grpc renames it, nothing is
    found and nothing waits.
    """
    watchers = {
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__qualname__", "") == _STATUS_TASK
    }
    if watchers:
        await asyncio.wait(watchers, timeout=_SETTLE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)


def keepalive_options(connect_timeout: float) -> list[tuple[str, int]]:
    """Client channel options that bound how long a dead or black-holed server goes unnoticed."""
    return [
        # Ping after 20 s of silence, give up 10 s later: a stream to a server that vanished
        # without a RST (power loss, a partition) fails instead of waiting forever.
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        # Only while calls are open: idle channels that ping get GOAWAY "too_many_pings"
        # from stock servers and proxies.
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        # grpc uses the minimum reconnect backoff as its connect timeout (default 20 s): a
        # black-holed endpoint must fail within connect_timeout so a fallback gets a chance.
        ("grpc.min_reconnect_backoff_ms", max(100, round(connect_timeout * 1000))),
        # After a failure, reconnect soon (default backoff grows to 120 s): a restarted
        # server must not stay unreachable long after it is back.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


@dataclass(frozen=True)
class _Calls:
    channel: grpc.aio.Channel
    execute: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
    stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes]
    get_info: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
    get_manifest: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
    health_check: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]


class GrpcClient(PipelineClient):
    """A pipeline server endpoint reached over gRPC: `grpc://host:port` or `grpcs://host:port`.

    `grpcs` uses TLS, verified against `options.tls.ca_file` (the system store when None),
    presenting `options.tls.cert_file`/`key_file` to servers that require mutual TLS.
    """

    transport = "grpc"

    def __init__(self, endpoint: str, options: ClientOptions | None = None) -> None:
        super().__init__(endpoint, options)
        url = urlsplit(endpoint)
        if url.scheme not in ("grpc", "grpcs"):
            raise ValueError(
                f"a gRPC endpoint is grpc://host:port or grpcs://host:port, not {endpoint!r}"
            )
        if not url.hostname or url.port is None or url.path not in ("", "/") or url.query:
            raise ValueError(
                f"a gRPC endpoint needs a host and a port and nothing else: {endpoint!r}"
            )
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        self._target = f"{host}:{url.port}"
        self._secure = url.scheme == "grpcs"
        self._calls: _Calls | None = None
        self._streams: weakref.WeakSet[GrpcStream] = weakref.WeakSet()
        self._closed = False
        self._closing: asyncio.Event | None = None

    # ---- calls ----

    async def execute(
        self,
        target: PipelineTarget,
        data: RuntimeData,
        *,
        timeout: float | None = None,
    ) -> list[NodeOutput]:
        request = pb.ExecuteRequest(
            header=make_header(target, self._context(), timeout=timeout), input=encode(data)
        )
        body = _within_limit(request.SerializeToString(), self.options, self.endpoint)
        calls = self._connect()
        with _grpc_errors(self.endpoint):
            raw = await calls.execute(body, timeout=timeout, metadata=self._metadata())
        return outputs_from_response(_parse(raw, pb.ExecuteResponse, self.endpoint), self.endpoint)

    async def open_stream(
        self,
        target: PipelineTarget,
        *,
        timeout: float | None = None,
    ) -> GrpcStream:
        """Open a stream and wait for the server to accept it.

        Refusals (unknown pipeline, authentication, limits) are raised here, before any
        input is sent, so a caller can move to another endpoint with nothing to replay.
        """
        header = make_header(target, self._context(), timeout=timeout)
        calls = self._connect()
        with _grpc_errors(self.endpoint):
            call = calls.stream(None, timeout=timeout, metadata=self._metadata())
        stream = GrpcStream(call, self.endpoint, self.options)
        self._streams.add(stream)
        try:
            await stream._open(header)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def info(self) -> ServerInfo:
        calls = self._connect()
        with _grpc_errors(self.endpoint):
            raw = await calls.get_info(
                pb.InfoRequest().SerializeToString(),
                timeout=_QUERY_TIMEOUT,
                metadata=self._metadata(),
            )
        return server_info_from_proto(_parse(raw, pb.ServerInfo, self.endpoint))

    async def get_manifest(self, pipeline_name: str) -> str:
        """The JSON text of a predefined pipeline's manifest (for cycle analysis across servers)."""
        calls = self._connect()
        request = pb.ManifestRequest(pipeline_name=pipeline_name)
        with _grpc_errors(self.endpoint):
            raw = await calls.get_manifest(
                request.SerializeToString(), timeout=_QUERY_TIMEOUT, metadata=self._metadata()
            )
        return _parse(raw, pb.ManifestResponse, self.endpoint).manifest

    async def health(self) -> bool:
        """The standard gRPC health check of `tether.v1.PipelineService`.

        False while the server answers but is not ready (draining, or not a Tether
        server); NetworkError when it cannot be reached.
        """
        calls = self._connect()
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        with _grpc_errors(self.endpoint):
            try:
                raw = await calls.health_check(request.SerializeToString(), timeout=_QUERY_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:  # it answers, but not for Tether
                    return False
                raise
        response = _parse(raw, health_pb2.HealthCheckResponse, self.endpoint)
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def aclose(self) -> None:
        """Close the channel, cancelling calls and streams still running. Idempotent."""
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = asyncio.Event()
        self._closed = True
        calls, self._calls = self._calls, None
        try:
            # Streams first, each settled, then the channel (which would cancel them anyway).
            for stream in list(self._streams):
                await stream.aclose()
            if calls is not None:
                await calls.channel.close(None)
        finally:
            self._closing.set()

    # ---- plumbing ----

    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        token = self._token()  # per call: a rotated token file takes effect at once
        return (("authorization", f"Bearer {token}"),) if token else None

    def _connect(self) -> _Calls:
        if self._closed:
            raise RuntimeError(f"the client for {self.endpoint} is closed")
        if self._calls is None:
            self._calls = self._open_channel()
        return self._calls

    def _open_channel(self) -> _Calls:
        limit = self.options.max_message_bytes
        options = [
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            *keepalive_options(self.options.connect_timeout),
        ]
        if self._secure:
            channel = grpc.aio.secure_channel(self._target, self._credentials(), options=options)
        else:
            channel = grpc.aio.insecure_channel(self._target, options=options)
        # No serializers: requests and responses are bytes, parsed by us (see module doc).
        return _Calls(
            channel=channel,
            execute=channel.unary_unary(_EXECUTE, None, None),
            stream=channel.stream_stream(_STREAM, None, None),
            get_info=channel.unary_unary(_GET_INFO, None, None),
            get_manifest=channel.unary_unary(_GET_MANIFEST, None, None),
            health_check=channel.unary_unary(_HEALTH_CHECK, None, None),
        )

    def _credentials(self) -> grpc.ChannelCredentials:
        tls = self.options.tls
        if tls is None:
            return grpc.ssl_channel_credentials()
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ValueError(
                "ClientTls needs both cert_file and key_file for mutual TLS, or neither"
            )
        return grpc.ssl_channel_credentials(
            root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
            private_key=tls.key_file.read_bytes() if tls.key_file else None,
            certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
        )


class GrpcStream(FrameStream):
    """One bidirectional `Stream` call. Send from one task, iterate events in another."""

    def __init__(
        self, call: grpc.aio.StreamStreamCall[bytes, bytes], endpoint: str, options: ClientOptions
    ) -> None:
        super().__init__(endpoint)
        self._call = call
        self._options = options

    async def _open(self, header: pb.RequestHeader) -> None:
        await self._write_frame(open_frame(header))
        frame = await self._read_frame(eof="the server ended the stream before accepting it")
        self.request_id = accept_opened(frame, self._endpoint)

    async def _after_close_input(self) -> None:
        with _grpc_errors(self._endpoint):
            await self._call.done_writing()

    async def aclose(self) -> None:
        if not self._call.done():
            self._call.cancel()
            await _settle_cancelled_call()

    async def _write_frame(self, frame: pb.ClientFrame) -> None:
        raw = _within_limit(frame.SerializeToString(), self._options, self._endpoint)
        if not self._call.done():
            try:
                with _grpc_errors(self._endpoint):
                    await self._call.write(raw)
                return
            except RemoteError:
                if not self._call.done():
                    raise
        # The call has finished: report why, not merely that it did.
        await self._raise_status()

    async def _read_frame(
        self, eof: str = "the server ended the stream without StreamEnd"
    ) -> pb.ServerFrame:
        with _grpc_errors(self._endpoint):
            raw = await self._call.read()
        if not isinstance(raw, bytes):  # grpc.aio.EOF: the server closed the stream
            raise ProtocolError(eof, endpoint=self._endpoint)
        frame = _parse(raw, pb.ServerFrame, self._endpoint)
        if frame.WhichOneof("kind") in ("end", "error"):
            await self._await_status()
        return frame

    async def _await_status(self) -> None:
        """Wait for the status the server sends right after its last frame.

        A finished call needs no cancelling: cancelled locally, grpc.aio finishes its own
        bookkeeping task for the call only later, in the background.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_LAST_FRAME_GRACE):
                await self._call.code()

    async def _raise_status(self) -> NoReturn:
        """Raise the error a finished call ended with, as if grpc had raised it here."""
        code = await self._call.code()
        if code == grpc.StatusCode.OK:
            raise ProtocolError("the server already ended the stream", endpoint=self._endpoint)
        status = grpc.aio.AioRpcError(
            code,
            grpc.aio.Metadata(),
            await self._call.trailing_metadata(),
            await self._call.details(),
            None,
        )
        with _grpc_errors(self._endpoint):
            raise status
