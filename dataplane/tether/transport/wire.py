"""The wire contract's vocabulary shared by servers and clients of every transport:
request headers, content types, error codes in both directions, and server frames as
client events.

Pure functions, no I/O; `FrameStream` is the client side of a stream as frames, and
leaves moving them to each transport.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Final

from tether.data import RuntimeData, decode, encode
from tether.errors import (
    AuthenticationError,
    CircularReferenceError,
    DataValidationError,
    DeadlineExceededError,
    IncompatibleManifestError,
    InputStreamError,
    ManifestError,
    NodeExecutionError,
    ProtocolError,
    RemoteError,
    RemoteExecutionError,
    RemoteValidationError,
    ResourceExhaustedError,
    UnavailableError,
    UnknownPipelineError,
)
from tether.runtime import Ack, NodeOutput, RequestContext
from tether.transport.base import ClientStream, PipelineTarget, ServerInfo, StreamEvent
from tether.v1 import pipeline_pb2 as pb

PROTOCOL_VERSION: Final = "tether.v1"

PROTOBUF: Final = "application/x-protobuf"
"""HTTP bodies in protobuf; `JSON` is their protobuf JSON mapping, for people with curl."""
JSON: Final = "application/json"

Code = pb.ErrorCode

_CODE_BY_ERROR: Final[tuple[tuple[type[BaseException], pb.ErrorCode.ValueType], ...]] = (
    # Order matters: the first matching class wins.
    (NodeExecutionError, Code.ERROR_CODE_EXECUTION),
    (RemoteExecutionError, Code.ERROR_CODE_EXECUTION),
    (DataValidationError, Code.ERROR_CODE_VALIDATION),
    (RemoteValidationError, Code.ERROR_CODE_VALIDATION),
    (ProtocolError, Code.ERROR_CODE_VALIDATION),
    (UnknownPipelineError, Code.ERROR_CODE_UNKNOWN_PIPELINE),
    (IncompatibleManifestError, Code.ERROR_CODE_INCOMPATIBLE_MANIFEST),
    (ManifestError, Code.ERROR_CODE_INCOMPATIBLE_MANIFEST),
    (AuthenticationError, Code.ERROR_CODE_UNAUTHENTICATED),
    (ResourceExhaustedError, Code.ERROR_CODE_RESOURCE_EXHAUSTED),
    (DeadlineExceededError, Code.ERROR_CODE_DEADLINE_EXCEEDED),
    (TimeoutError, Code.ERROR_CODE_DEADLINE_EXCEEDED),
    (CircularReferenceError, Code.ERROR_CODE_CIRCULAR_REFERENCE),
    (UnavailableError, Code.ERROR_CODE_UNAVAILABLE),
)

_ERROR_BY_CODE: Final[dict[pb.ErrorCode.ValueType, type[RemoteError]]] = {
    Code.ERROR_CODE_EXECUTION: RemoteExecutionError,
    Code.ERROR_CODE_VALIDATION: RemoteValidationError,
    Code.ERROR_CODE_UNKNOWN_PIPELINE: UnknownPipelineError,
    Code.ERROR_CODE_INCOMPATIBLE_MANIFEST: IncompatibleManifestError,
    Code.ERROR_CODE_UNAUTHENTICATED: AuthenticationError,
    Code.ERROR_CODE_RESOURCE_EXHAUSTED: ResourceExhaustedError,
    Code.ERROR_CODE_DEADLINE_EXCEEDED: DeadlineExceededError,
    Code.ERROR_CODE_CIRCULAR_REFERENCE: CircularReferenceError,
    Code.ERROR_CODE_UNAVAILABLE: UnavailableError,
    Code.ERROR_CODE_INTERNAL: RemoteExecutionError,
}


def error_to_proto(error: BaseException) -> pb.Error:
    """The wire form of a failure on the server. Unknown failures say only their type."""
    if isinstance(error, InputStreamError) and error.__cause__ is not None:
        error = error.__cause__  # the transport's frame reader failed: report why
    code = next((c for error_class, c in _CODE_BY_ERROR if isinstance(error, error_class)), None)
    if code is None:
        return pb.Error(
            code=Code.ERROR_CODE_INTERNAL, message=f"internal error ({type(error).__name__})"
        )
    message = pb.Error(code=code, message=_message_of(error))
    if isinstance(error, NodeExecutionError | RemoteError) and error.node_id:
        message.node_id = error.node_id
    if isinstance(error, IncompatibleManifestError):
        message.details.extend(error.unknown_node_types)
    return message


def _message_of(error: BaseException) -> str:
    if isinstance(error, RemoteError):
        return error.message
    if isinstance(error, TimeoutError):
        return "deadline exceeded"
    return str(error)


def error_from_proto(error: pb.Error, endpoint: str) -> RemoteError:
    """The client-side exception for an error the server sent."""
    error_class = _ERROR_BY_CODE.get(error.code, ProtocolError)
    if error_class is IncompatibleManifestError:
        return IncompatibleManifestError(
            error.message, unknown_node_types=list(error.details), endpoint=endpoint
        )
    if error_class is RemoteExecutionError:
        return RemoteExecutionError(error.message, endpoint=endpoint, node_id=error.node_id or None)
    return error_class(error.message or f"error code {error.code}", endpoint=endpoint)


def make_header(
    target: PipelineTarget,
    context: RequestContext,
    *,
    timeout: float | None,
    token: str | None = None,
) -> pb.RequestHeader:
    header = pb.RequestHeader(request_id=context.request_id, visited=context.visited)
    if target.name is not None:
        header.pipeline_name = target.name
    else:
        header.manifest = target.manifest or ""
    if timeout is not None:
        header.timeout_ms = max(1, round(timeout * 1000))
    if token:
        header.authorization = f"Bearer {token}"
    return header


def header_timeout(header: pb.RequestHeader) -> float | None:
    return header.timeout_ms / 1000 if header.timeout_ms else None


def open_frame(header: pb.RequestHeader) -> pb.ClientFrame:
    return pb.ClientFrame(open=pb.StreamOpen(header=header))


def input_frame(seq: int, data: RuntimeData) -> pb.ClientFrame:
    return pb.ClientFrame(input=pb.StreamInput(seq=seq, data=encode(data)))


def accept_opened(frame: pb.ServerFrame, endpoint: str) -> str:
    """The request id from the server's answer to `open`; its error if it refused."""
    kind = frame.WhichOneof("kind")
    if kind == "error":
        raise error_from_proto(frame.error, endpoint)
    if kind != "opened":
        raise ProtocolError(f"the server answered an open frame with {kind}", endpoint=endpoint)
    return frame.opened.request_id


def outputs_from_response(response: pb.ExecuteResponse, endpoint: str) -> list[NodeOutput]:
    if response.HasField("error"):
        raise error_from_proto(response.error, endpoint)
    try:
        return [NodeOutput(output.node_id, decode(output.data)) for output in response.outputs]
    except DataValidationError as exc:
        raise ProtocolError(f"server sent malformed data: {exc}", endpoint=endpoint) from exc


def events_from_frame(frame: pb.ServerFrame, endpoint: str) -> tuple[StreamEvent, ...]:
    """A server frame as client events: none for `opened` and `end`, and `NodeOutput`
    then `Ack` for an output that carries an ack, exactly as if the ack came on its own."""
    kind = frame.WhichOneof("kind")
    if kind == "output":
        try:
            output = NodeOutput(frame.output.node_id, decode(frame.output.data))
        except DataValidationError as exc:
            raise ProtocolError(f"server sent malformed data: {exc}", endpoint=endpoint) from exc
        if frame.output.HasField("ack"):
            return output, Ack(frame.output.ack)
        return (output,)
    if kind == "ack":
        return (Ack(frame.ack.seq),)
    if kind == "error":
        raise error_from_proto(frame.error, endpoint)
    if kind in ("opened", "end"):
        return ()
    raise ProtocolError(f"server sent an unknown frame ({kind})", endpoint=endpoint)


class FrameStream(ClientStream):
    """A client stream as `ClientFrame`s out and `ServerFrame`s in, whatever carries them.

    A transport writes and reads frames, and opens the stream its own way: it sends
    `open_frame`, then takes the answer with `accept_opened`.
    """

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint
        self._input_closed = False
        self.request_id = ""
        """The id the server runs this stream under (its logs and metrics use it)."""

    @abc.abstractmethod
    async def _write_frame(self, frame: pb.ClientFrame) -> None: ...

    @abc.abstractmethod
    async def _read_frame(self) -> pb.ServerFrame:
        """The next frame; raises why the stream ended if it did without one."""

    async def _after_close_input(self) -> None:
        """Runs once the close frame is written."""

    def _after_events(self) -> None:
        """Runs when `events()` stops, however it does."""

    async def send(self, seq: int, data: RuntimeData) -> None:
        if self._input_closed:
            raise RuntimeError("send() after close_input()")
        await self._write_frame(input_frame(seq, data))

    async def close_input(self) -> None:
        if self._input_closed:
            return
        self._input_closed = True
        await self._write_frame(pb.ClientFrame(close=pb.StreamClose()))
        await self._after_close_input()

    async def events(self) -> AsyncIterator[StreamEvent]:
        try:
            while (frame := await self._read_frame()).WhichOneof("kind") != "end":
                # Raises an error frame's error.
                for event in events_from_frame(frame, self._endpoint):
                    yield event
        finally:
            self._after_events()


def server_info_from_proto(info: pb.ServerInfo) -> ServerInfo:
    return ServerInfo(
        server_version=info.server_version,
        protocol_version=info.protocol_version,
        node_types=tuple(n.name for n in info.node_types),
        pipelines=tuple(info.pipelines),
        max_message_bytes=info.limits.max_message_bytes,
        max_concurrent_streams=info.limits.max_concurrent_streams,
        max_hops=info.limits.max_hops,
        inline_manifests_allowed=info.limits.inline_manifests_allowed,
        params_schemas={n.name: n.params_schema for n in info.node_types},
    )
