"""The HTTP transport, end to end: `HttpClient` and raw HTTP/WebSocket requests against
`tether.server` in a child process.

Covers, on 127.0.0.1: unary round trips in protobuf and in the JSON form people send with
curl; streams over a WebSocket (protobuf binary frames, and JSON text frames); the HTTP
status and typed error of every failure (unknown pipeline, deadline, node failure, loop,
authentication, limits, shutdown); corrupt bodies and frames; refused, black-holed and
killed servers; probes during a drain; metrics by outcome; discovery; TLS and mutual TLS;
and that no httpx, httpcore, httpx-ws, wsproto or anyio exception leaves the client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import httpx_ws
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Certificates, StartServer
from tether.data import Binary, Json, RuntimeData, Tensor, Text
from tether.errors import (
    AuthenticationError,
    CircularReferenceError,
    DeadlineExceededError,
    NetworkError,
    ProtocolError,
    RemoteError,
    RemoteExecutionError,
    ResourceExhaustedError,
    TetherError,
    UnavailableError,
    UnknownPipelineError,
)
from tether.runtime import Ack, NodeOutput, RequestContext, serving
from tether.testing.server import ServerProcess
from tether.transport.base import ClientOptions, ClientTls, PipelineTarget, static_token
from tether.transport.http import HttpClient, HttpStream
from tether.v1 import pipeline_pb2 as pb

ECHO = PipelineTarget(name="echo")
UPPER = PipelineTarget(name="upper")
SLOW = PipelineTarget(name="slow")
FAULTY = PipelineTarget(name="faulty")

PROTOBUF = "application/x-protobuf"
CORRUPT = b"\xff\xff\xff\xff\x0f"
"""Not protobuf: field number 0 and a truncated varint."""

FOREIGN_MODULES = ("httpx", "httpcore", "httpx_ws", "wsproto", "anyio", "h11", "aiohttp")


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    # HTTP only: these tests never touch the gRPC port. WebRTC off: its endpoint
    # (tether.server.webrtc) is tested on its own.
    return {"grpc": {"enabled": False}, "webrtc": {"enabled": False}}


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[HttpClient]:
    async with HttpClient(server.http_url) as client:
        yield client


@pytest.fixture
async def raw(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A bare httpx client, to send what people send with curl, or what HttpClient never would."""
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False, timeout=10) as raw:
        yield raw


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def echo_stream(client: HttpClient, items: list[RuntimeData]) -> list[NodeOutput | Ack]:
    stream = await client.open_stream(ECHO, timeout=30)
    async with stream:
        for seq, data in enumerate(items):
            await stream.send(seq, data)
        await stream.close_input()
        return await collect(stream.events())


def envelope(response: httpx.Response) -> pb.Error:
    """The typed error of a failed answer, from its protobuf or JSON error envelope."""
    message = pb.ExecuteResponse()
    if response.headers["content-type"].startswith(PROTOBUF):
        message.ParseFromString(response.content)
    else:
        from google.protobuf import json_format

        json_format.Parse(response.text, message)
    assert message.HasField("error"), response.content
    return message.error


def execute_body(pipeline: str, **header: Any) -> bytes:
    """A valid ExecuteRequest of Text "x" for `pipeline`, as HttpClient would send it."""
    request = pb.ExecuteRequest(header=pb.RequestHeader(pipeline_name=pipeline, **header))
    request.input.text.text = "x"
    return request.SerializeToString()


async def one_chunk(payload: bytes) -> AsyncIterator[bytes]:
    """A body httpx sends chunked, without a Content-Length."""
    yield payload


def assert_is_ours(exc: BaseException) -> None:
    """A Tether error, and nothing of httpx & co: not raised, nor subclassed."""
    assert isinstance(exc, TetherError), (
        f"{type(exc).__module__}.{type(exc).__name__} escaped: {exc}"
    )
    for cls in type(exc).__mro__:
        assert not cls.__module__.startswith(FOREIGN_MODULES), f"{cls} is foreign"


async def metric_value(raw: httpx.AsyncClient, **labels: str) -> float:
    response = await raw.get("/metrics")
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "tether_server_requests_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


# ---- unary round trips ----


async def test_text_goes_through_a_remote_pipeline_and_comes_back_transformed(
    client: HttpClient,
) -> None:
    outputs = await client.execute(UPPER, Text(text="hello, tether"), timeout=10)
    assert outputs == [NodeOutput("upper", Text(text="HELLO, TETHER"))]


@pytest.mark.parametrize("dtype", ["float32", "int16", "complex64", "bool", "uint64"])
async def test_a_tensor_round_trips_with_its_dtype_shape_and_values(
    client: HttpClient, dtype: str
) -> None:
    array = np.arange(24).reshape(2, 3, 4)
    sent = Tensor(
        array=(array % 2 if dtype == "bool" else array).astype(dtype),
        timestamp=1.25,
        metadata={"k": "v"},
    )
    [output] = await client.execute(ECHO, sent, timeout=10)
    assert output == NodeOutput("echo", sent)
    assert isinstance(output.data, Tensor)
    assert output.data.array.dtype == np.dtype(dtype)


async def test_a_json_value_and_binary_payload_round_trip(client: HttpClient) -> None:
    for sent in (
        Json(value={"a": [1, 2.5, None, "ü"]}),
        Binary(data=bytes(range(256)), mime_type="x/y"),
    ):
        assert await client.execute(ECHO, sent, timeout=10) == [NodeOutput("echo", sent)]


async def test_the_request_id_and_visited_chain_of_the_caller_travel_with_the_call(
    client: HttpClient,
) -> None:
    with serving(RequestContext(request_id="req-42", visited=("upper",))):
        with pytest.raises(CircularReferenceError, match="upper -> upper"):
            await client.execute(UPPER, Text(text="x"), timeout=10)
        assert await client.execute(ECHO, Text(text="x"), timeout=10)
        async with await client.open_stream(ECHO, timeout=10) as stream:
            assert stream.request_id == "req-42"


async def test_twenty_concurrent_calls_on_one_client_run_side_by_side(client: HttpClient) -> None:
    started = time.monotonic()
    results = await asyncio.gather(
        *(client.execute(SLOW, Text(text=str(i)), timeout=20) for i in range(20))
    )
    assert [r[0].data for r in results] == [Text(text=str(i)) for i in range(20)]
    assert time.monotonic() - started < 2 * 2.0  # each takes 2 s; in turn they would take 40


# ---- the JSON form, as curl sends it ----


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"text": {"text": "hi"}}, {"text": {"text": "hi"}}),
        ({"json": {"json": '{"a": [1, 2]}'}}, {"json": {"json": '{"a":[1,2]}'}}),
        (
            {"tensor": {"array": {"dtype": "float32", "shape": [2, 3], "data": "<b64>"}}},
            {"tensor": {"array": {"dtype": "float32", "shape": ["2", "3"], "data": "<b64>"}}},
        ),
    ],
    ids=["text", "json", "tensor"],
)
async def test_a_json_body_runs_and_gets_a_json_answer_with_base64_arrays(
    raw: httpx.AsyncClient, data: dict[str, Any], expected: dict[str, Any]
) -> None:
    array_b64 = base64.b64encode(np.arange(6, dtype="<f4").tobytes()).decode()
    body = json.loads(
        json.dumps({"header": {"pipelineName": "echo"}, "input": data}).replace("<b64>", array_b64)
    )
    response = await raw.post("/v1/execute", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["requestId"]
    want = json.loads(json.dumps(expected).replace("<b64>", array_b64))
    assert answer["outputs"] == [{"nodeId": "echo", "data": want}]
    if "tensor" in data:
        returned = base64.b64decode(answer["outputs"][0]["data"]["tensor"]["array"]["data"])
        assert np.frombuffer(returned, dtype="<f4").tolist() == [0, 1, 2, 3, 4, 5]


async def test_a_json_error_names_its_code_so_people_can_read_it(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/v1/execute", json={"header": {"pipelineName": "nope"}, "input": {"text": {}}}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ERROR_CODE_UNKNOWN_PIPELINE"
    assert "echo" in response.json()["error"]["message"]  # it lists what the server hosts


# ---- streams ----


async def test_a_stream_of_500_inputs_comes_back_in_order_with_acks(client: HttpClient) -> None:
    items: list[RuntimeData] = [Json(value={"i": i}) for i in range(500)]
    # Everything is sent before anything is read: the client must keep reading meanwhile.
    events = await echo_stream(client, items)
    outputs = [e for e in events if isinstance(e, NodeOutput)]
    acks = [e.seq for e in events if isinstance(e, Ack)]
    assert outputs == [NodeOutput("echo", item) for item in items]
    assert acks == sorted(acks)
    assert acks[-1] == 499
    # Every ack follows the output of its input.
    seen = 0
    for event in events:
        if isinstance(event, NodeOutput):
            seen += 1
        else:
            assert event.seq < seen


async def test_inputs_and_outputs_flow_concurrently_on_one_stream(client: HttpClient) -> None:
    stream = await client.open_stream(UPPER, timeout=30)
    async with stream, contextlib.aclosing(stream.events()) as events:
        assert stream.request_id
        for seq in range(20):
            await stream.send(seq, Text(text=f"item {seq}"))
            assert await anext(events) == NodeOutput("upper", Text(text=f"ITEM {seq}"))
            assert await anext(events) == Ack(seq)
        await stream.close_input()
        assert await collect(events) == []


async def test_a_stream_to_an_unknown_pipeline_is_refused_when_it_opens(client: HttpClient) -> None:
    with pytest.raises(UnknownPipelineError, match="nope"):
        await client.open_stream(PipelineTarget(name="nope"), timeout=10)


async def test_a_stream_past_its_deadline_raises_deadline_exceeded(client: HttpClient) -> None:
    stream = await client.open_stream(SLOW, timeout=0.5)
    async with stream:
        await stream.send(1, Text(text="x"))
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await collect(stream.events())
        assert time.monotonic() - started < 1.5


async def test_a_failing_node_fails_the_stream_with_remote_execution_error(
    client: HttpClient,
) -> None:
    stream = await client.open_stream(FAULTY, timeout=10)
    async with stream:
        await stream.send(1, Text(text="x"))
        with pytest.raises(RemoteExecutionError) as caught:
            await collect(stream.events())
        assert caught.value.node_id == "fault"
        with pytest.raises(RemoteExecutionError):  # and so does every later call
            await stream.send(2, Text(text="y"))


async def test_closing_a_stream_ends_its_reader_with_network_error(client: HttpClient) -> None:
    stream = await client.open_stream(ECHO, timeout=30)
    async with contextlib.aclosing(stream.events()) as events:
        reader = asyncio.create_task(collect(events))
        await asyncio.sleep(0.05)
        await stream.aclose()
        await stream.aclose()  # idempotent
        with pytest.raises(NetworkError):
            await asyncio.wait_for(reader, 5)
    with pytest.raises(NetworkError, match="closed by the client"):
        await stream.send(1, Text(text="too late"))


async def send_many(stream: HttpStream, count: int, data: RuntimeData) -> None:
    for seq in range(count):
        await stream.send(seq, data)


async def test_a_send_the_server_does_not_take_in_ends_at_the_stream_deadline(
    client: HttpClient,
) -> None:
    # Each input waits 2 s in the node: its inbox fills, then the socket buffers.
    stream = await client.open_stream(SLOW, timeout=1.5)
    async with stream:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            await send_many(stream, 200, Binary(data=bytes(1_000_000)))
        assert time.monotonic() - started < 3.0
        with pytest.raises(DeadlineExceededError):
            await collect(stream.events())


async def test_a_stream_speaks_json_text_frames_to_people(server: ServerProcess) -> None:
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        httpx_ws.aconnect_ws(f"{server.http_url}/v1/stream", http) as ws,
    ):
        await ws.send_text(json.dumps({"open": {"header": {"pipelineName": "upper"}}}))
        await ws.send_text(json.dumps({"input": {"seq": "7", "data": {"text": {"text": "hey"}}}}))
        await ws.send_text(json.dumps({"close": {}}))
        frames = [json.loads(await ws.receive_text()) for _ in range(3)]
    assert list(frames[0]) == ["opened"]
    # The ack, ready as the output left, rides in its frame.
    assert frames[1:] == [
        {"output": {"nodeId": "upper", "data": {"text": {"text": "HEY"}}, "ack": "7"}},
        {"end": {}},
    ]


# ---- failures, their HTTP status and their typed error ----


async def test_an_unknown_pipeline_is_a_404_and_an_unknown_pipeline_error(
    client: HttpClient, raw: httpx.AsyncClient
) -> None:
    with pytest.raises(UnknownPipelineError, match="no pipeline named 'nope'"):
        await client.execute(PipelineTarget(name="nope"), Text(text="x"), timeout=10)
    response = await raw.post(
        "/v1/execute", content=execute_body("nope"), headers={"Content-Type": PROTOBUF}
    )
    assert response.status_code == 404
    assert envelope(response).code == pb.ERROR_CODE_UNKNOWN_PIPELINE


async def test_a_call_past_its_deadline_raises_deadline_exceeded_at_the_deadline(
    client: HttpClient,
) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        await client.execute(SLOW, Text(text="x"), timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.0


async def test_the_server_answers_504_when_the_deadline_in_the_header_passes(
    raw: httpx.AsyncClient,
) -> None:
    body = execute_body("slow", timeout_ms=200)
    response = await raw.post("/v1/execute", content=body, headers={"Content-Type": PROTOBUF})
    assert response.status_code == 504
    assert envelope(response).code == pb.ERROR_CODE_DEADLINE_EXCEEDED


async def test_a_failing_node_is_a_500_and_a_remote_execution_error_naming_the_node(
    client: HttpClient, raw: httpx.AsyncClient
) -> None:
    with pytest.raises(RemoteExecutionError, match="fault") as caught:
        await client.execute(FAULTY, Text(text="x"), timeout=10)
    assert caught.value.node_id == "fault"
    response = await raw.post(
        "/v1/execute", content=execute_body("faulty"), headers={"Content-Type": PROTOBUF}
    )
    assert response.status_code == 500
    assert envelope(response).node_id == "fault"


async def test_a_loop_is_a_508_and_a_circular_reference_error(raw: httpx.AsyncClient) -> None:
    body = execute_body("echo", visited=["a", "echo"])
    response = await raw.post("/v1/execute", content=body, headers={"Content-Type": PROTOBUF})
    assert response.status_code == 508
    assert envelope(response).code == pb.ERROR_CODE_CIRCULAR_REFERENCE


async def test_corrupt_protobuf_gets_a_typed_400_and_the_server_serves_on(
    client: HttpClient, raw: httpx.AsyncClient
) -> None:
    response = await raw.post("/v1/execute", content=CORRUPT, headers={"Content-Type": PROTOBUF})
    assert response.status_code == 400
    error = envelope(response)
    assert error.code == pb.ERROR_CODE_VALIDATION
    assert "execute_request" in error.message
    assert await client.execute(ECHO, Text(text="still here"), timeout=10)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"header": {"pipelineName": 3}}', b'{"nonsense": 1}', b"\xff\xfe"],
    ids=["syntax", "wrong-type", "unknown-field", "not-utf8"],
)
async def test_a_malformed_json_body_gets_a_typed_400(raw: httpx.AsyncClient, body: bytes) -> None:
    response = await raw.post(
        "/v1/execute", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERROR_CODE_VALIDATION"


async def test_data_whose_bytes_do_not_fit_its_shape_is_a_400_naming_the_field(
    raw: httpx.AsyncClient,
) -> None:
    request = pb.ExecuteRequest(header=pb.RequestHeader(pipeline_name="echo"))
    request.input.tensor.array.dtype = "float32"
    request.input.tensor.array.shape.extend([4])
    request.input.tensor.array.data = b"\x00" * 3
    response = await raw.post(
        "/v1/execute", content=request.SerializeToString(), headers={"Content-Type": PROTOBUF}
    )
    assert response.status_code == 400
    assert "tensor.array.data" in envelope(response).message


async def test_an_unsupported_content_type_is_a_415(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/v1/execute", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "ERROR_CODE_VALIDATION"


async def test_a_corrupt_stream_frame_gets_a_validation_error_frame_and_the_server_serves_on(
    server: ServerProcess, client: HttpClient
) -> None:
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        httpx_ws.aconnect_ws(f"{server.http_url}/v1/stream", http) as ws,
    ):
        open_frame = pb.ClientFrame(
            open=pb.StreamOpen(header=pb.RequestHeader(pipeline_name="echo"))
        )
        await ws.send_bytes(open_frame.SerializeToString())
        assert pb.ServerFrame.FromString(await ws.receive_bytes()).WhichOneof("kind") == "opened"
        await ws.send_bytes(CORRUPT)
        error = pb.ServerFrame.FromString(await ws.receive_bytes())
        assert error.WhichOneof("kind") == "error"
        assert error.error.code == pb.ERROR_CODE_VALIDATION
        with pytest.raises(httpx_ws.WebSocketDisconnect):  # and the server closes the socket
            await ws.receive_bytes()
    assert await echo_stream(client, [Text(text="still here")]) == [
        NodeOutput("echo", Text(text="still here")),
        Ack(0),
    ]


@pytest.mark.parametrize(
    "first",
    [pb.ClientFrame(close=pb.StreamClose()).SerializeToString(), CORRUPT],
    ids=["not-open", "corrupt"],
)
async def test_a_stream_that_does_not_open_properly_is_refused_with_a_validation_error(
    server: ServerProcess, first: bytes
) -> None:
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        httpx_ws.aconnect_ws(f"{server.http_url}/v1/stream", http) as ws,
    ):
        await ws.send_bytes(first)
        frame = pb.ServerFrame.FromString(await ws.receive_bytes())
    assert frame.error.code == pb.ERROR_CODE_VALIDATION


async def test_a_plain_get_on_the_stream_route_is_a_400_not_a_crash(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/v1/stream")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERROR_CODE_VALIDATION"


# ---- limits ----


async def test_a_body_over_the_limit_is_a_413_and_a_resource_exhausted_error(
    start_server: StartServer,
) -> None:
    server = start_server(limits={"maxMessageBytes": 64 * 1024})
    big = Binary(data=bytes(100_000))
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as raw:
        request = pb.ExecuteRequest(header=pb.RequestHeader(pipeline_name="echo"))
        request.input.binary.data = big.data
        body = request.SerializeToString()
        for content in (body, one_chunk(body)):  # with a Content-Length, and chunked without
            response = await raw.post(
                "/v1/execute", content=content, headers={"Content-Type": PROTOBUF}
            )
            assert response.status_code == 413
            assert envelope(response).code == pb.ERROR_CODE_RESOURCE_EXHAUSTED
    async with HttpClient(server.http_url) as client:
        with pytest.raises(ResourceExhaustedError, match="limit"):
            await client.execute(ECHO, big, timeout=10)
        assert await client.execute(ECHO, Text(text="small"), timeout=10)


async def test_a_stream_frame_over_the_limit_fails_the_stream_with_resource_exhausted(
    start_server: StartServer,
) -> None:
    server = start_server(limits={"maxMessageBytes": 64 * 1024})
    async with HttpClient(server.http_url) as client:
        stream = await client.open_stream(ECHO, timeout=10)
        async with stream:
            await stream.send(1, Binary(data=bytes(100_000)))
            with pytest.raises(ResourceExhaustedError):
                await collect(stream.events())


async def test_the_client_holds_to_its_own_limit_in_both_directions(client: HttpClient) -> None:
    async with HttpClient(client.endpoint, ClientOptions(max_message_bytes=1024)) as small:
        with pytest.raises(ResourceExhaustedError, match="max_message_bytes"):
            await small.execute(ECHO, Binary(data=bytes(2000)), timeout=10)
        stream = await small.open_stream(ECHO, timeout=10)
        async with stream:
            with pytest.raises(ResourceExhaustedError, match="max_message_bytes"):
                await stream.send(1, Binary(data=bytes(2000)))
        with pytest.raises(ResourceExhaustedError, match="max_message_bytes"):
            await small.info()  # a small request, a large answer (node types and their schemas)


async def test_streams_beyond_the_concurrency_limit_are_refused_with_resource_exhausted(
    start_server: StartServer,
) -> None:
    server = start_server(limits={"maxConcurrentStreams": 1})
    async with HttpClient(server.http_url) as client:
        first = await client.open_stream(ECHO, timeout=10)
        async with first:
            with pytest.raises(ResourceExhaustedError, match="concurrent streams"):
                await client.open_stream(ECHO, timeout=10)


# ---- unreachable and dying servers ----


async def test_a_refused_connection_fails_fast_with_network_error(free_port: int) -> None:
    async with HttpClient(f"http://127.0.0.1:{free_port}") as client:
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
    async with HttpClient(f"http://127.0.0.1:{black_hole}", options) as client:
        for call in (
            lambda: client.execute(ECHO, Text(text="x"), timeout=30),
            lambda: client.open_stream(ECHO, timeout=30),
        ):
            started = time.monotonic()
            with pytest.raises(NetworkError, match="timed out connecting"):
                await call()
            assert time.monotonic() - started < 1.5


async def test_a_server_killed_mid_stream_raises_network_error_instead_of_hanging(
    start_server: StartServer,
) -> None:
    server = start_server()
    async with HttpClient(server.http_url) as client:
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
                    await stream.close_input()
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=30)


async def test_a_client_reconnects_soon_after_its_server_is_back(
    start_server: StartServer, free_port: int
) -> None:
    first = start_server(http={"port": free_port})
    async with HttpClient(first.http_url) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=5)  # a pooled connection
        first.kill()
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=5)
        start_server(http={"port": free_port})
        assert await client.execute(ECHO, Text(text="x"), timeout=5)


# ---- probes and metrics ----


async def test_healthz_and_readyz_answer_200_while_serving(
    raw: httpx.AsyncClient, client: HttpClient
) -> None:
    assert (await raw.get("/healthz")).status_code == 200
    assert (await raw.get("/readyz")).status_code == 200
    assert await client.health() is True


async def test_readyz_turns_503_while_the_server_drains_a_stream_after_sigterm(
    start_server: StartServer,
) -> None:
    server = start_server(gracePeriod="20s")
    assert server.process is not None
    async with (
        HttpClient(server.http_url) as client,
        httpx.AsyncClient(base_url=server.http_url) as raw,
    ):
        stream = await client.open_stream(ECHO, timeout=30)
        async with stream, contextlib.aclosing(stream.events()) as events:
            server.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                while (await raw.get("/readyz")).status_code == 200:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.02)
            assert (await raw.get("/readyz")).status_code == 503
            assert (await raw.get("/healthz")).status_code == 200  # alive, only not ready
            assert await client.health() is False
            with pytest.raises(UnavailableError, match="shutting down"):
                await client.execute(ECHO, Text(text="new work"), timeout=5)
            with pytest.raises(UnavailableError, match="shutting down"):
                await client.open_stream(ECHO, timeout=5)
            # Work already under way finishes normally.
            await stream.send(1, Text(text="in flight"))
            assert await anext(events) == NodeOutput("echo", Text(text="in flight"))
            await stream.close_input()
            assert await collect(events) == [Ack(1)]
    assert await asyncio.to_thread(server.process.wait, 10) == 0


async def test_a_stream_still_open_after_the_grace_period_ends_with_unavailable(
    start_server: StartServer,
) -> None:
    server = start_server(gracePeriod="0.5s")
    assert server.process is not None
    async with HttpClient(server.http_url) as client:
        stream = await client.open_stream(ECHO, timeout=30)
        async with stream:
            server.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                with pytest.raises(UnavailableError):
                    await collect(stream.events())


async def test_metrics_count_requests_by_outcome(
    client: HttpClient, raw: httpx.AsyncClient
) -> None:
    response = await raw.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    labels = {"transport": "http", "kind": "unary"}
    before = {
        outcome: await metric_value(raw, outcome=outcome, **labels)
        for outcome in ("ok", "unknown_pipeline", "execution", "validation")
    }
    await client.execute(ECHO, Text(text="x"), timeout=10)
    with pytest.raises(UnknownPipelineError):
        await client.execute(PipelineTarget(name="nope"), Text(text="x"), timeout=10)
    with pytest.raises(RemoteExecutionError):
        await client.execute(FAULTY, Text(text="x"), timeout=10)
    await raw.post(
        "/v1/execute", content=CORRUPT, headers={"Content-Type": PROTOBUF}
    )  # refused, counted too
    for outcome in before:
        assert await metric_value(raw, outcome=outcome, **labels) == before[outcome] + 1, outcome
    assert await metric_value(raw, outcome="ok", pipeline="echo", **labels) >= 1


# ---- discovery ----


async def test_info_lists_the_pipelines_node_types_and_limits(client: HttpClient) -> None:
    info = await client.info()
    assert set(info.pipelines) == {"echo", "upper", "slow", "faulty"}
    assert {"PassThrough", "Delay", "Fault", "TextTransform"} <= set(info.node_types)
    assert info.protocol_version == "tether.v1"
    assert info.max_message_bytes == 16 * 1024 * 1024


async def test_info_answers_json_by_default_and_protobuf_when_asked(raw: httpx.AsyncClient) -> None:
    as_json = await raw.get("/v1/info")
    assert as_json.headers["content-type"].startswith("application/json")
    assert "echo" in as_json.json()["pipelines"]
    as_protobuf = await raw.get("/v1/info", headers={"Accept": PROTOBUF})
    assert as_protobuf.headers["content-type"] == PROTOBUF
    assert "echo" in pb.ServerInfo.FromString(as_protobuf.content).pipelines


async def test_get_manifest_returns_a_predefined_pipeline_as_json(
    client: HttpClient, raw: httpx.AsyncClient
) -> None:
    manifest = json.loads(await client.get_manifest("upper"))
    assert manifest["metadata"]["name"] == "upper"
    assert manifest["nodes"][0]["nodeType"] == "TextTransform"
    with pytest.raises(UnknownPipelineError):
        await client.get_manifest("nope")
    assert (await raw.get("/v1/pipelines/nope/manifest")).status_code == 404


async def test_webrtc_signaling_shares_the_http_port_when_enabled(
    start_server: StartServer, raw: httpx.AsyncClient
) -> None:
    assert (await raw.post("/v1/webrtc/offer", json={})).status_code == 404  # disabled here
    server = start_server(webrtc={"enabled": True})
    async with httpx.AsyncClient(base_url=server.http_url, trust_env=False) as http:
        response = await http.post("/v1/webrtc/offer", json={"not": "an offer"})
    assert response.status_code == 400  # the WebRTC endpoint's own refusal
    assert await asyncio.to_thread(server.stop) == 0  # and shutdown closes it


# ---- authentication ----


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text("first-token\nsecond-token\n")
    return path


async def test_calls_without_a_valid_token_are_401s_and_raise_authentication_error(
    start_server: StartServer, token_file: Path
) -> None:
    server = start_server(auth={"tokenFile": str(token_file)})
    for token in (None, "wrong-token"):
        options = ClientOptions(token=static_token(token) if token else None)
        async with HttpClient(server.http_url, options) as client:
            for call in (
                lambda c=client: c.execute(ECHO, Text(text="x"), timeout=10),
                lambda c=client: c.open_stream(ECHO, timeout=10),
                client.info,
                lambda c=client: c.get_manifest("echo"),
            ):
                with pytest.raises(AuthenticationError) as caught:
                    await call()
                assert "wrong-token" not in str(caught.value)
            assert await client.health() is True  # probes need no token
    async with httpx.AsyncClient(base_url=server.http_url) as raw:
        response = await raw.post(
            "/v1/execute", content=execute_body("echo"), headers={"Content-Type": PROTOBUF}
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert envelope(response).code == pb.ERROR_CODE_UNAUTHENTICATED
        # A corrupt body from someone unauthenticated learns only that they are.
        response = await raw.post(
            "/v1/execute", content=CORRUPT, headers={"Content-Type": PROTOBUF}
        )
        assert response.status_code == 401
        assert (await raw.get("/metrics")).status_code == 200


async def test_a_valid_token_is_accepted_from_the_header_or_the_body(
    start_server: StartServer, token_file: Path
) -> None:
    server = start_server(auth={"tokenFile": str(token_file)})
    async with HttpClient(
        server.http_url, ClientOptions(token=static_token("first-token"))
    ) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=10)
        assert await echo_stream(client, [Text(text="y")]) == [
            NodeOutput("echo", Text(text="y")),
            Ack(0),
        ]
        assert "echo" in (await client.info()).pipelines
    async with httpx.AsyncClient(base_url=server.http_url) as raw:
        body = {
            "header": {"pipelineName": "echo", "authorization": "Bearer second-token"},
            "input": {"text": {}},
        }
        assert (await raw.post("/v1/execute", json=body)).status_code == 200
        async with httpx_ws.aconnect_ws(f"{server.http_url}/v1/stream", raw) as ws:
            header = pb.RequestHeader(pipeline_name="echo", authorization="Bearer second-token")
            await ws.send_bytes(
                pb.ClientFrame(open=pb.StreamOpen(header=header)).SerializeToString()
            )
            assert (
                pb.ServerFrame.FromString(await ws.receive_bytes()).WhichOneof("kind") == "opened"
            )
        async with httpx_ws.aconnect_ws(f"{server.http_url}/v1/stream", raw) as ws:
            header = pb.RequestHeader(pipeline_name="echo", authorization="Bearer wrong")
            await ws.send_bytes(
                pb.ClientFrame(open=pb.StreamOpen(header=header)).SerializeToString()
            )
            frame = pb.ServerFrame.FromString(await ws.receive_bytes())
            assert frame.error.code == pb.ERROR_CODE_UNAUTHENTICATED


async def test_the_token_is_read_for_every_call_so_rotation_takes_effect_at_once(
    start_server: StartServer, token_file: Path
) -> None:
    server = start_server(auth={"tokenFile": str(token_file)})
    current = ["first-token"]
    async with HttpClient(server.http_url, ClientOptions(token=lambda: current[0])) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=10)
        current[0] = "revoked"
        with pytest.raises(AuthenticationError):
            await client.execute(ECHO, Text(text="x"), timeout=10)
        current[0] = "second-token"
        assert await client.execute(ECHO, Text(text="x"), timeout=10)


# ---- TLS ----


async def test_https_verifies_the_server_against_the_given_ca(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = start_server(tls=certificates.server_tls())
    assert server.http_url.startswith("https://")
    options = ClientOptions(tls=ClientTls(ca_file=certificates.ca))
    async with HttpClient(server.http_url, options) as client:
        assert await client.execute(UPPER, Text(text="secret"), timeout=10) == [
            NodeOutput("upper", Text(text="SECRET"))
        ]
        assert await echo_stream(client, [Text(text="wss")]) == [
            NodeOutput("echo", Text(text="wss")),
            Ack(0),
        ]
    async with HttpClient(server.http_url) as untrusting:  # the system store does not know this CA
        with pytest.raises(NetworkError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.execute(ECHO, Text(text="x"), timeout=10)


async def test_mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = start_server(tls=certificates.server_tls(mutual=True))
    with_cert = ClientTls(
        ca_file=certificates.ca,
        cert_file=certificates.client_cert,
        key_file=certificates.client_key,
    )
    async with HttpClient(server.http_url, ClientOptions(tls=with_cert)) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=10)
        assert await echo_stream(client, [Text(text="y")]) == [
            NodeOutput("echo", Text(text="y")),
            Ack(0),
        ]
    async with HttpClient(
        server.http_url, ClientOptions(tls=ClientTls(ca_file=certificates.ca))
    ) as client:
        with pytest.raises(NetworkError):
            await client.execute(ECHO, Text(text="x"), timeout=10)


# ---- the client itself ----


@pytest.mark.parametrize(
    "endpoint", ["grpc://127.0.0.1:1", "127.0.0.1:8080", "http://", "http://h:1/?q=1"]
)
def test_an_endpoint_that_is_not_an_http_url_is_refused_at_once(endpoint: str) -> None:
    with pytest.raises(ValueError, match="HTTP endpoint"):
        HttpClient(endpoint)


async def test_a_closed_client_refuses_new_calls_and_closes_its_streams(
    server: ServerProcess,
) -> None:
    client = HttpClient(server.http_url)
    stream = await client.open_stream(ECHO, timeout=10)
    await asyncio.gather(client.aclose(), client.aclose())
    await client.aclose()
    with pytest.raises(NetworkError):
        await collect(stream.events())
    with pytest.raises(RuntimeError, match="closed"):
        await client.health()
    with pytest.raises(RuntimeError, match="closed"):
        await client.open_stream(ECHO, timeout=10)


# ---- no httpx, httpx-ws or wsproto exception escapes (like httpx's own mapping test) ----

Call = Callable[[HttpClient], Awaitable[object]]


async def _execute(client: HttpClient) -> object:
    return await client.execute(ECHO, Text(text="x"), timeout=1)


async def _stream(client: HttpClient) -> object:
    async with await client.open_stream(ECHO, timeout=1) as stream:
        await stream.send(1, Text(text="x"))
        await stream.close_input()
        return await collect(stream.events())


async def _info(client: HttpClient) -> object:
    return await client.info()


async def _manifest(client: HttpClient) -> object:
    return await client.get_manifest("echo")


async def _health(client: HttpClient) -> object:
    return await client.health()


CALLS: dict[str, Call] = {
    "execute": _execute,
    "stream": _stream,
    "info": _info,
    "get_manifest": _manifest,
    "health": _health,
}


@contextlib.asynccontextmanager
async def misbehaving_server(answer: bytes | None) -> AsyncIterator[str]:
    """A loopback TCP server that reads a request, then writes `answer` and hangs up
    (or, for None, says nothing and holds the connection open)."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            for line in head.splitlines():  # read the body too: unread bytes make close() a RST
                if line.startswith("content-length:"):
                    await reader.readexactly(int(line.partition(":")[2]))
            if answer is None:
                held.append(writer)
                return
            writer.write(answer)
            await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
    finally:
        for writer in held:
            writer.close()
        tcp.close()
        await tcp.wait_closed()


PROTOBUF_200 = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"

ANSWERS: dict[str, bytes | None] = {
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "truncated": PROTOBUF_200 + b"Content-Length: 100\r\n\r\nabc",
    "garbage-200": PROTOBUF_200 + b"Content-Length: 5\r\n\r\n" + CORRUPT,
    "html-502": b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 12\r\n\r\n<h1>502</h1>",
    "silent": None,
}

EXPECTED: dict[str, type[RemoteError]] = {
    "not-http": NetworkError,  # h11 cannot parse it: the endpoint is not what it should be
    "truncated": NetworkError,  # the connection broke mid-answer
    "garbage-200": ProtocolError,
    "html-502": UnavailableError,  # a gateway in front of a server that is down
    "silent": DeadlineExceededError,
}


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (call, answer)
        for call in CALLS
        for answer in ANSWERS
        # Health answers any HTTP answer with True or False (tested below). Silence lasts
        # until the deadline: the other probes' is 10 s, too long to wait for here.
        if call != "health" and (answer != "silent" or call in ("execute", "stream"))
    ],
)
async def test_no_transport_exception_escapes_a_call_to_a_misbehaving_server(
    call: str, answer: str
) -> None:
    async with misbehaving_server(ANSWERS[answer]) as url, HttpClient(url) as client:
        async with asyncio.timeout(15):  # a hang would be a failure of its own
            with pytest.raises(EXPECTED[answer]) as caught:
                await CALLS[call](client)
    assert_is_ours(caught.value)


async def test_health_is_false_for_any_answer_but_200_and_a_network_error_for_broken_ones() -> None:
    for answer, healthy in (("html-502", False), ("garbage-200", True)):
        async with misbehaving_server(ANSWERS[answer]) as url, HttpClient(url) as client:
            assert await client.health() is healthy
    for answer in ("not-http", "truncated"):
        async with misbehaving_server(ANSWERS[answer]) as url, HttpClient(url) as client:
            with pytest.raises(NetworkError) as caught:
                await client.health()
            assert_is_ours(caught.value)


@pytest.mark.parametrize("situation", ["refused", "black-holed", "killed"])
@pytest.mark.parametrize("call", list(CALLS))
async def test_no_transport_exception_escapes_any_call_to_an_unreachable_server(
    call: str,
    situation: str,
    free_port: int,
    black_hole: int,
    start_server: StartServer,
) -> None:
    if situation == "killed":
        server = start_server()
        server.kill()
        url = server.http_url
    else:
        url = f"http://127.0.0.1:{free_port if situation == 'refused' else black_hole}"
    async with HttpClient(url, ClientOptions(connect_timeout=0.3)) as client:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the point is which one
            await CALLS[call](client)
    assert_is_ours(caught.value)
    assert isinstance(caught.value, NetworkError)
    assert type(caught.value.__cause__).__module__.startswith(
        FOREIGN_MODULES
    )  # chained, not swallowed


async def test_no_transport_exception_escapes_a_stream_whose_server_dies_at_any_step(
    start_server: StartServer,
) -> None:
    steps: list[Callable[[Any], Awaitable[object]]] = [
        lambda s: s.send(2, Text(text="x")),
        lambda s: s.close_input(),
        lambda s: collect(s.events()),
    ]
    server = start_server()
    async with HttpClient(server.http_url) as client:
        streams = [await client.open_stream(ECHO, timeout=30) for _ in steps]
        server.kill()
        await asyncio.sleep(0.1)
        for stream, step in zip(streams, steps, strict=True):
            async with stream, asyncio.timeout(5):
                with pytest.raises(RemoteError) as caught:
                    await until_it_fails(step, stream)
            assert_is_ours(caught.value)


async def until_it_fails(step: Callable[[Any], Awaitable[object]], stream: Any) -> None:
    """Repeat `step`: a write may fit in a socket buffer before the failure shows."""
    for _ in range(3):
        await step(stream)
        await asyncio.sleep(0.05)
