"""The gRPC transport, end to end: `GrpcClient` against `tether.server` in a child process.

Covers, on 127.0.0.1: unary and streaming round trips; every typed error crossing the
wire (unknown pipeline, deadline, remote node failure, loop, authentication, limits,
shutdown); corrupt bytes sent straight to the service; dead, black-holed, killed and
restarted servers; health during a drain; discovery; TLS and mutual TLS; and that no
grpc exception ever leaves the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from conftest import Certificates, StartServer
from tether.data import Binary, Json, RuntimeData, Tensor, Text, encode
from tether.errors import (
    AuthenticationError,
    CircularReferenceError,
    DeadlineExceededError,
    NetworkError,
    RemoteError,
    RemoteExecutionError,
    RemoteValidationError,
    ResourceExhaustedError,
    TetherError,
    UnavailableError,
    UnknownPipelineError,
)
from tether.runtime import Ack, NodeOutput, RequestContext, serving
from tether.testing.server import ServerProcess
from tether.transport.base import (
    ClientOptions,
    ClientTls,
    PipelineTarget,
    static_token,
    token_from_file,
)
from tether.transport.grpc import ERROR_TRAILER, GrpcClient
from tether.transport.wire import error_from_proto
from tether.v1 import data_pb2
from tether.v1 import pipeline_pb2 as pb

ECHO = PipelineTarget(name="echo")
UPPER = PipelineTarget(name="upper")
SLOW = PipelineTarget(name="slow")
FAULTY = PipelineTarget(name="faulty")

CORRUPT = b"\xff\xff\xff\xff\x0f"
"""Not protobuf: field number 0 and a truncated varint."""


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    # gRPC only: these tests never touch the HTTP port, and servers start faster without it.
    return {"http": {"enabled": False}}


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[GrpcClient]:
    async with GrpcClient(server.grpc_url) as client:
        yield client


@contextlib.asynccontextmanager
async def raw_channel(server: ServerProcess) -> AsyncIterator[grpc.aio.Channel]:
    """A bare grpc channel, to put bytes on the wire that GrpcClient would never send."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield channel


def typed_error(exc: grpc.aio.AioRpcError) -> RemoteError:
    """The typed error the server put in the trailer of a failed call."""
    # grpc-stubs type the trailers as `_Metadatum` objects; grpc.aio gives (key, value) pairs.
    trailers: grpc.aio.Metadata = exc.trailing_metadata()  # type: ignore[assignment]
    trailer = trailers[ERROR_TRAILER]
    assert isinstance(trailer, bytes)
    return error_from_proto(pb.Error.FromString(trailer), "raw")


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def echo_stream(client: GrpcClient, items: list[RuntimeData]) -> list[NodeOutput | Ack]:
    stream = await client.open_stream(ECHO, timeout=30)
    async with stream:
        for seq, data in enumerate(items):
            await stream.send(seq, data)
        await stream.close_input()
        return await collect(stream.events())


def assert_is_ours(exc: BaseException) -> None:
    """A Tether error, and no grpc exception: not raised, nor subclassed."""
    assert isinstance(exc, TetherError), f"{type(exc).__name__} escaped: {exc}"
    assert not isinstance(exc, grpc.RpcError | grpc.aio.BaseError)


# ---- round trips ----


async def test_text_goes_through_a_remote_pipeline_and_comes_back_transformed(
    client: GrpcClient,
) -> None:
    outputs = await client.execute(UPPER, Text(text="hello, tether"), timeout=10)
    assert outputs == [NodeOutput("upper", Text(text="HELLO, TETHER"))]


@pytest.mark.parametrize("dtype", ["float32", "int16", "complex64", "bool", "uint64"])
async def test_a_tensor_round_trips_with_its_dtype_shape_and_values(
    client: GrpcClient, dtype: str
) -> None:
    array = (
        np.arange(24).reshape(2, 3, 4) % 2 if dtype == "bool" else np.arange(24).reshape(2, 3, 4)
    ).astype(dtype)
    sent = Tensor(array=array, timestamp=1.25, metadata={"frame": "7"})
    [output] = await client.execute(ECHO, sent, timeout=10)
    assert output.node_id == "echo"
    assert output.data == sent
    assert isinstance(output.data, Tensor)
    assert output.data.array.dtype == np.dtype(dtype)


async def test_a_json_value_and_binary_payload_round_trip(client: GrpcClient) -> None:
    for sent in (
        Json(value={"a": [1, 2.5, None, "ü"]}),
        Binary(data=bytes(range(256)), mime_type="x/y"),
    ):
        assert await client.execute(ECHO, sent, timeout=10) == [NodeOutput("echo", sent)]


async def test_a_stream_of_500_inputs_comes_back_in_order_with_acks(client: GrpcClient) -> None:
    events = await echo_stream(client, [Text(text=f"item {i}") for i in range(500)])

    outputs = [event for event in events if isinstance(event, NodeOutput)]
    assert [output.data for output in outputs] == [Text(text=f"item {i}") for i in range(500)]
    acks = [event.seq for event in events if isinstance(event, Ack)]
    assert acks == sorted(set(acks))
    assert acks[-1] == 499
    # An ack for N comes only after the outputs of every input up to N.
    seen = 0
    for event in events:
        if isinstance(event, NodeOutput):
            seen += 1
        else:
            assert seen >= event.seq + 1


async def test_inputs_and_outputs_flow_concurrently_on_one_stream(client: GrpcClient) -> None:
    stream = await client.open_stream(UPPER, timeout=30)
    async with stream:
        events = stream.events()
        for seq in range(20):
            await stream.send(seq, Text(text=f"word {seq}"))
            # Each answer arrives before the next input is even sent: no batching, no stall.
            assert await anext(events) == NodeOutput("upper", Text(text=f"WORD {seq}"))
            assert await anext(events) == Ack(seq)
        await stream.close_input()
        assert await collect(events) == []
    assert stream.request_id


async def test_the_request_id_of_the_caller_is_the_one_the_server_uses(client: GrpcClient) -> None:
    with serving(RequestContext(request_id="req-42")):
        stream = await client.open_stream(ECHO, timeout=10)
    async with stream:
        assert stream.request_id == "req-42"


# ---- typed errors from the server ----


async def test_an_unknown_pipeline_raises_unknown_pipeline_error(client: GrpcClient) -> None:
    with pytest.raises(UnknownPipelineError, match="no pipeline named 'nope'") as caught:
        await client.execute(PipelineTarget(name="nope"), Text(text="x"), timeout=10)
    assert caught.value.endpoint == client.endpoint
    with pytest.raises(UnknownPipelineError):
        await client.open_stream(PipelineTarget(name="nope"), timeout=10)


async def test_a_call_past_its_deadline_raises_deadline_exceeded_at_the_deadline(
    client: GrpcClient,
) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await client.execute(SLOW, Text(text="x"), timeout=0.3)
    assert time.monotonic() - started < 1.5  # the Delay node takes 2 s


async def test_a_stream_past_its_deadline_raises_deadline_exceeded(client: GrpcClient) -> None:
    stream = await client.open_stream(SLOW, timeout=0.5)
    async with stream:
        await stream.send(1, Text(text="x"))
        with pytest.raises(DeadlineExceededError):
            await collect(stream.events())


async def test_a_failing_remote_node_raises_remote_execution_error_naming_the_node(
    client: GrpcClient,
) -> None:
    with pytest.raises(RemoteExecutionError, match="InjectedFault") as caught:
        await client.execute(FAULTY, Text(text="x"), timeout=10)
    assert caught.value.node_id == "fault"

    stream = await client.open_stream(FAULTY, timeout=10)
    async with stream:
        await stream.send(1, Text(text="x"))
        with pytest.raises(RemoteExecutionError) as caught:
            await collect(stream.events())
    assert caught.value.node_id == "fault"


async def test_a_request_that_already_visited_the_pipeline_raises_circular_reference(
    client: GrpcClient,
) -> None:
    with (
        serving(RequestContext(visited=("upper", "echo"))),
        pytest.raises(CircularReferenceError, match="upper -> echo -> echo"),
    ):
        await client.execute(ECHO, Text(text="x"), timeout=10)


async def test_a_message_over_the_server_limit_raises_resource_exhausted(
    start_server: StartServer,
) -> None:
    server = start_server(limits={"maxMessageBytes": 64 * 1024})
    async with GrpcClient(server.grpc_url) as client:
        with pytest.raises(ResourceExhaustedError):
            await client.execute(ECHO, Binary(data=bytes(100_000)), timeout=10)
        small = Binary(data=bytes(1000))
        assert await client.execute(ECHO, small, timeout=10) == [NodeOutput("echo", small)]


async def test_the_client_holds_to_its_own_message_limit(server: ServerProcess) -> None:
    options = ClientOptions(max_message_bytes=32 * 1024)
    async with GrpcClient(server.grpc_url, options) as client:
        with pytest.raises(ResourceExhaustedError):
            await client.execute(ECHO, Binary(data=bytes(64 * 1024)), timeout=10)
        stream = await client.open_stream(ECHO, timeout=10)
        async with stream:
            with pytest.raises(ResourceExhaustedError, match="exceeds max_message_bytes"):
                await stream.send(1, Binary(data=bytes(64 * 1024)))
            # Refused before it left: the stream goes on.
            await stream.send(2, Text(text="small"))
            await stream.close_input()
            assert await collect(stream.events()) == [
                NodeOutput("echo", Text(text="small")),
                Ack(2),
            ]


# ---- corrupt bytes on the wire ----


async def test_corrupt_execute_bytes_get_a_validation_error_and_the_server_serves_on(
    server: ServerProcess, client: GrpcClient
) -> None:
    async with raw_channel(server) as channel:
        execute = channel.unary_unary("/tether.v1.PipelineService/Execute", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await execute(CORRUPT, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = typed_error(caught.value)
    assert isinstance(error, RemoteValidationError)
    assert "execute_request" in error.message

    assert await client.execute(ECHO, Text(text="still here"), timeout=10)


async def test_data_whose_bytes_do_not_fit_its_shape_gets_a_validation_error(
    server: ServerProcess,
) -> None:
    bad = data_pb2.RuntimeData(
        tensor=data_pb2.Tensor(array=data_pb2.NDArray(dtype="float32", shape=[4], data=b"abc"))
    )
    request = pb.ExecuteRequest(header=pb.RequestHeader(pipeline_name="echo"), input=bad)
    async with raw_channel(server) as channel:
        execute = channel.unary_unary("/tether.v1.PipelineService/Execute", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await execute(request.SerializeToString(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensor.array.data" in typed_error(caught.value).message


def _client_frame(**kind: Any) -> bytes:
    return pb.ClientFrame(**kind).SerializeToString()


async def _raw_stream(
    server: ServerProcess, frames: list[bytes]
) -> tuple[list[pb.ServerFrame], grpc.StatusCode]:
    """Send `frames` as they are, half-close, and return what the server answered."""
    async with raw_channel(server) as channel:
        call = channel.stream_stream("/tether.v1.PipelineService/Stream", None, None)(
            None, timeout=10
        )
        for frame in frames:
            await call.write(frame)
        await call.done_writing()
        answers: list[pb.ServerFrame] = []
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for raw in call:
                answers.append(pb.ServerFrame.FromString(raw))
        return answers, await call.code()


async def test_a_corrupt_stream_frame_gets_a_validation_error_frame_and_the_server_serves_on(
    server: ServerProcess, client: GrpcClient
) -> None:
    opening = _client_frame(open=pb.StreamOpen(header=pb.RequestHeader(pipeline_name="echo")))
    good = pb.ClientFrame(
        input=pb.StreamInput(seq=1, data=encode(Text(text="ok")))
    ).SerializeToString()
    answers, code = await _raw_stream(server, [opening, good, CORRUPT])

    kinds = [answer.WhichOneof("kind") for answer in answers]
    assert kinds[0] == "opened"
    assert kinds[-1] == "error"
    assert answers[-1].error.code == pb.ERROR_CODE_VALIDATION
    assert "client_frame" in answers[-1].error.message
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    assert len(await echo_stream(client, [Text(text="a"), Text(text="b")])) == 4


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([CORRUPT], "client_frame"),
        ([_client_frame(input=pb.StreamInput(seq=1))], "must start with an open frame"),
        ([], "closed before its open frame"),
    ],
    ids=["corrupt", "input-first", "empty"],
)
async def test_a_stream_that_does_not_open_properly_is_refused_with_a_validation_error(
    server: ServerProcess, frames: list[bytes], expected: str
) -> None:
    answers, code = await _raw_stream(server, frames)
    [answer] = answers
    assert answer.error.code == pb.ERROR_CODE_VALIDATION
    assert expected in answer.error.message
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# ---- dead, slow and vanishing servers ----


async def test_a_refused_connection_fails_fast_with_network_error(free_port: int) -> None:
    async with GrpcClient(f"grpc://127.0.0.1:{free_port}") as client:
        for call in (
            lambda: client.execute(ECHO, Text(text="x"), timeout=30),
            lambda: client.open_stream(ECHO, timeout=30),
            client.info,
            client.health,
        ):
            started = time.monotonic()
            with pytest.raises(NetworkError, match="Connection refused"):
                await call()
            assert time.monotonic() - started < 1.0


async def test_a_black_holed_endpoint_fails_within_the_connect_timeout(black_hole: int) -> None:
    options = ClientOptions(connect_timeout=0.5)
    async with GrpcClient(f"grpc://127.0.0.1:{black_hole}", options) as client:
        started = time.monotonic()
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=30)
        assert time.monotonic() - started < 1.5


async def test_a_server_killed_mid_stream_raises_network_error_instead_of_hanging(
    start_server: StartServer,
) -> None:
    server = start_server()
    async with GrpcClient(server.grpc_url) as client:
        stream = await client.open_stream(ECHO, timeout=60)
        async with stream, contextlib.aclosing(stream.events()) as events:
            await stream.send(1, Text(text="before"))
            assert await anext(events) == NodeOutput("echo", Text(text="before"))
            server.kill()
            async with asyncio.timeout(5):  # a hang fails the test as TimeoutError
                with pytest.raises(NetworkError) as caught:
                    await collect(events)
                assert_is_ours(caught.value)
                with pytest.raises(NetworkError):
                    await stream.send(2, Text(text="after"))
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=30)


async def test_a_client_reconnects_soon_after_its_server_is_back(
    start_server: StartServer, free_port: int
) -> None:
    first = start_server(grpc={"port": free_port})
    async with GrpcClient(first.grpc_url) as client:
        assert await client.health()
        first.kill()
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=5)
        start_server(grpc={"port": free_port})
        started = time.monotonic()
        while True:
            try:
                await client.execute(ECHO, Text(text="x"), timeout=5)
                break
            except NetworkError:
                assert time.monotonic() - started < 3.0, "still unreachable 3 s after the restart"
                await asyncio.sleep(0.05)


async def test_health_is_true_then_false_while_the_server_drains_after_sigterm(
    start_server: StartServer,
) -> None:
    server = start_server(gracePeriod="20s")
    assert server.process is not None
    async with GrpcClient(server.grpc_url) as client:
        assert await client.health() is True
        # An open stream keeps the server draining instead of stopping at once.
        stream = await client.open_stream(ECHO, timeout=30)
        async with stream, contextlib.aclosing(stream.events()) as events:
            server.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                while await client.health():  # noqa: ASYNC110 - polling the server is the test
                    await asyncio.sleep(0.02)

            with pytest.raises(UnavailableError, match="shutting down"):
                await client.execute(ECHO, Text(text="new work"), timeout=5)
            # Work already under way finishes normally.
            await stream.send(1, Text(text="in flight"))
            assert await anext(events) == NodeOutput("echo", Text(text="in flight"))
            await stream.close_input()
            assert await collect(events) == [Ack(1)]
    assert await asyncio.to_thread(server.process.wait, 10) == 0


async def test_closing_a_stream_ends_its_reader_with_network_error(client: GrpcClient) -> None:
    stream = await client.open_stream(ECHO, timeout=30)
    async with contextlib.aclosing(stream.events()) as events:
        reader = asyncio.create_task(collect(events))
        await asyncio.sleep(0.05)
        await stream.aclose()
        await stream.aclose()  # idempotent
        with pytest.raises(NetworkError):
            await asyncio.wait_for(reader, 5)


async def test_closing_the_client_ends_its_open_streams(server: ServerProcess) -> None:
    client = GrpcClient(server.grpc_url)
    stream = await client.open_stream(ECHO, timeout=30)
    async with contextlib.aclosing(stream.events()) as events:
        reader = asyncio.create_task(collect(events))
        await asyncio.sleep(0.05)
        await client.aclose()
        with pytest.raises(NetworkError):
            await asyncio.wait_for(reader, 5)
        with pytest.raises(NetworkError):
            await stream.send(1, Text(text="too late"))


# ---- discovery ----


async def test_info_lists_the_pipelines_node_types_and_limits(client: GrpcClient) -> None:
    info = await client.info()
    assert set(info.pipelines) == {"echo", "upper", "slow", "faulty"}
    assert {"PassThrough", "TextTransform", "Delay", "Fault"} <= set(info.node_types)
    assert info.protocol_version == "tether.v1"
    assert info.max_message_bytes == 16 * 1024 * 1024
    assert not info.inline_manifests_allowed
    assert '"delay"' in info.params_schemas["Delay"]


async def test_get_manifest_returns_a_predefined_pipeline_as_json(client: GrpcClient) -> None:
    assert '"nodeType": "TextTransform"' in await client.get_manifest("upper")
    with pytest.raises(UnknownPipelineError):
        await client.get_manifest("nope")


async def test_health_answers_with_the_standard_grpc_health_service(server: ServerProcess) -> None:
    async with raw_channel(server) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            health_pb2.HealthCheckRequest.SerializeToString,
            health_pb2.HealthCheckResponse.FromString,
        )
        for service in ("", "tether.v1.PipelineService"):
            response = await check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


# ---- authentication and TLS ----


async def test_calls_without_a_valid_token_raise_authentication_error(
    start_server: StartServer, tmp_path: Path
) -> None:
    (tmp_path / "tokens").write_text("right-token\n")
    server = start_server(auth={"tokenFile": str(tmp_path / "tokens")})

    async with GrpcClient(server.grpc_url) as anonymous:
        with pytest.raises(AuthenticationError, match="missing bearer token"):
            await anonymous.execute(ECHO, Text(text="x"), timeout=10)
        with pytest.raises(AuthenticationError):
            await anonymous.open_stream(ECHO, timeout=10)
        with pytest.raises(AuthenticationError):
            await anonymous.info()
        assert await anonymous.health()  # probes need no token

    async with GrpcClient(
        server.grpc_url, ClientOptions(token=static_token("right-token"))
    ) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=10)
        assert len(await echo_stream(client, [Text(text="x")])) == 2


async def test_the_token_is_read_for_every_call_so_rotation_takes_effect_at_once(
    start_server: StartServer, tmp_path: Path
) -> None:
    (tmp_path / "tokens").write_text("old\nnew\n")
    server = start_server(auth={"tokenFile": str(tmp_path / "tokens")})
    token_file = tmp_path / "client-token"
    token_file.write_text("old")
    options = ClientOptions(token=token_from_file(token_file))
    async with GrpcClient(server.grpc_url, options) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=10)
        token_file.write_text("revoked")
        with pytest.raises(AuthenticationError, match="not accepted"):
            await client.execute(ECHO, Text(text="x"), timeout=10)
        token_file.write_text("new")
        assert await client.execute(ECHO, Text(text="x"), timeout=10)


async def test_a_stream_may_carry_its_token_in_the_open_frame(
    start_server: StartServer, tmp_path: Path
) -> None:
    (tmp_path / "tokens").write_text("s3cr3t\n")
    server = start_server(auth={"tokenFile": str(tmp_path / "tokens")})
    opening = pb.StreamOpen(
        header=pb.RequestHeader(pipeline_name="echo", authorization="Bearer s3cr3t")
    )
    answers, code = await _raw_stream(
        server, [_client_frame(open=opening), _client_frame(close=pb.StreamClose())]
    )
    assert [answer.WhichOneof("kind") for answer in answers] == ["opened", "end"]
    assert code == grpc.StatusCode.OK

    anonymous = pb.StreamOpen(header=pb.RequestHeader(pipeline_name="echo"))
    answers, code = await _raw_stream(server, [_client_frame(open=anonymous)])
    assert answers[-1].error.code == pb.ERROR_CODE_UNAUTHENTICATED
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_grpcs_verifies_the_server_against_the_given_ca(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = start_server(tls=certificates.server_tls())
    assert server.grpc_url.startswith("grpcs://")
    options = ClientOptions(tls=ClientTls(ca_file=certificates.ca))
    async with GrpcClient(server.grpc_url, options) as client:
        assert await client.execute(UPPER, Text(text="secret"), timeout=10) == [
            NodeOutput("upper", Text(text="SECRET"))
        ]
    # A CA that did not sign the server's certificate: the handshake fails.
    untrusted = ClientOptions(tls=ClientTls(ca_file=certificates.client_ca))
    async with GrpcClient(server.grpc_url, untrusted) as client:
        with pytest.raises(NetworkError):
            await client.execute(UPPER, Text(text="secret"), timeout=10)


async def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = start_server(tls=certificates.server_tls(mutual=True))
    without_cert = ClientOptions(tls=ClientTls(ca_file=certificates.ca))
    async with GrpcClient(server.grpc_url, without_cert) as client:
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=10)
    with_cert = ClientOptions(
        tls=ClientTls(
            ca_file=certificates.ca,
            cert_file=certificates.client_cert,
            key_file=certificates.client_key,
        )
    )
    async with GrpcClient(server.grpc_url, with_cert) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=10)


# ---- the client itself ----


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:1",
        "grpc://127.0.0.1",
        "grpc://:50051",
        "grpc://127.0.0.1:50051/path",
        "127.0.0.1:50051",
    ],
)
def test_an_endpoint_that_is_not_a_grpc_url_is_refused_at_once(endpoint: str) -> None:
    with pytest.raises(ValueError, match="gRPC endpoint"):
        GrpcClient(endpoint)


async def test_a_closed_client_refuses_new_calls_and_closes_only_once(
    server: ServerProcess,
) -> None:
    client = GrpcClient(server.grpc_url)
    assert await client.health()
    await asyncio.gather(client.aclose(), client.aclose())
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.health()


# ---- no grpc exception escapes (like httpx's test_httpcore_all_exceptions_mapped) ----

Call = Callable[[GrpcClient], Awaitable[object]]


async def _execute(client: GrpcClient) -> object:
    return await client.execute(ECHO, Text(text="x"), timeout=5)


async def _stream(client: GrpcClient) -> object:
    return await echo_stream(client, [Text(text="x")])


async def _info(client: GrpcClient) -> object:
    return await client.info()


async def _manifest(client: GrpcClient) -> object:
    return await client.get_manifest("echo")


async def _health(client: GrpcClient) -> object:
    return await client.health()


CALLS: dict[str, Call] = {
    "execute": _execute,
    "stream": _stream,
    "info": _info,
    "get_manifest": _manifest,
    "health": _health,
}


@pytest.mark.parametrize("situation", ["refused", "black-holed", "killed"])
@pytest.mark.parametrize("call", list(CALLS))
async def test_no_grpc_exception_escapes_any_call_to_an_unreachable_server(
    call: str,
    situation: str,
    free_port: int,
    black_hole: int,
    start_server: StartServer,
) -> None:
    if situation == "killed":
        server = start_server()
        server.kill()
        url = server.grpc_url
    else:
        url = f"grpc://127.0.0.1:{free_port if situation == 'refused' else black_hole}"
    async with GrpcClient(url, ClientOptions(connect_timeout=0.3)) as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the point is which one
            await CALLS[call](client)
    assert_is_ours(caught.value)
    assert isinstance(caught.value, NetworkError)
    assert isinstance(caught.value.__cause__, grpc.RpcError)  # chained, not swallowed


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.execute(SLOW, Text(text="x"), timeout=0.2), DeadlineExceededError),
        (lambda c: c.execute(FAULTY, Text(text="x"), timeout=5), RemoteExecutionError),
        (lambda c: c.execute(ECHO, Binary(data=bytes(100_000)), timeout=5), ResourceExhaustedError),
        (lambda c: c.open_stream(PipelineTarget(name="nope"), timeout=5), UnknownPipelineError),
        (lambda c: c.get_manifest("nope"), UnknownPipelineError),
    ],
    ids=["deadline", "node-failure", "too-large", "stream-unknown", "manifest-unknown"],
)
async def test_no_grpc_exception_escapes_a_call_the_server_refuses(
    start_server: StartServer, call: Call, expected: type[RemoteError]
) -> None:
    server = start_server(limits={"maxMessageBytes": 64 * 1024})
    async with GrpcClient(server.grpc_url) as client:
        with pytest.raises(expected) as caught:
            await call(client)
    assert_is_ours(caught.value)
