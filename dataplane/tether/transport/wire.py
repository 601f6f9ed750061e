"""The wire contract's vocabulary shared by servers and clients of every transport:
request headers, error codes in both directions, and server frames as client events.

Pure functions, no I/O.
"""

from __future__ import annotations

import asyncio
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
    NetworkError,
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
from tether.transport.base import PipelineTarget, ServerInfo
from tether.v1 import pipeline_pb2 as pb

PROTOCOL_VERSION: Final = "tether.v1"

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


def input_frame(seq: int, data: RuntimeData) -> pb.ClientFrame:
    return pb.ClientFrame(input=pb.StreamInput(seq=seq, data=encode(data)))


def outputs_from_response(response: pb.ExecuteResponse, endpoint: str) -> list[NodeOutput]:
    if response.HasField("error"):
        raise error_from_proto(response.error, endpoint)
    try:
        return [NodeOutput(output.node_id, decode(output.data)) for output in response.outputs]
    except DataValidationError as exc:
        raise ProtocolError(f"server sent malformed data: {exc}", endpoint=endpoint) from exc


def event_from_frame(frame: pb.ServerFrame, endpoint: str) -> NodeOutput | Ack | None:
    """A server frame as a client event; None for frames that carry no event (opened, end)."""
    kind = frame.WhichOneof("kind")
    if kind == "output":
        try:
            return NodeOutput(frame.output.node_id, decode(frame.output.data))
        except DataValidationError as exc:
            raise ProtocolError(f"server sent malformed data: {exc}", endpoint=endpoint) from exc
    if kind == "ack":
        return Ack(frame.ack.seq)
    if kind == "error":
        raise error_from_proto(frame.error, endpoint)
    if kind in ("opened", "end"):
        return None
    raise ProtocolError(f"server sent an unknown frame ({kind})", endpoint=endpoint)


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


def cancelled_or_network(exc: BaseException, endpoint: str) -> BaseException:
    """Cancellation stays cancellation; anything else from a socket is a NetworkError."""
    if isinstance(exc, asyncio.CancelledError):
        return exc
    return NetworkError(f"connection failed: {type(exc).__name__}: {exc}", endpoint=endpoint)
