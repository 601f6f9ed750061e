"""The same behaviour over gRPC, HTTP and WebRTC: every test here runs once per transport
against a real server in a child process.

Covers unary calls of every RuntimeData kind, a 10 s audio stream in 20 ms frames, remote
fan-out and fan-in pipelines, inline manifests, unknown pipelines, node failures,
deadlines, 20 concurrent streams, the loop guard and a server killed mid-stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from streaming import HANG_GUARD, drain

from tether.data import Audio, Binary, Json, RuntimeData, Tensor, Text, Video
from tether.errors import (
    CircularReferenceError,
    DeadlineExceededError,
    IncompatibleManifestError,
    NetworkError,
    RemoteExecutionError,
    TetherError,
    UnknownPipelineError,
)
from tether.runtime import Ack, NodeOutput, RequestContext, serving
from tether.testing.server import ServerProcess
from tether.transport import TRANSPORTS, PipelineClient, PipelineTarget, connect

FAN_OUT = {
    "version": "v1",
    "metadata": {"name": "fan-out"},
    "nodes": [
        {"id": "in", "nodeType": "PassThrough"},
        {"id": "upper", "nodeType": "TextTransform", "params": {"operations": [{"op": "upper"}]}},
        {"id": "lower", "nodeType": "TextTransform", "params": {"operations": [{"op": "lower"}]}},
    ],
    "connections": [{"from": "in", "to": "upper"}, {"from": "in", "to": "lower"}],
}
FAN_IN = {
    "version": "v1",
    "metadata": {"name": "fan-in"},
    "nodes": [
        {"id": "a", "nodeType": "TextTransform", "params": {"operations": [{"op": "upper"}]}},
        {"id": "b", "nodeType": "TextTransform", "params": {"operations": [{"op": "lower"}]}},
        {"id": "join", "nodeType": "PassThrough"},
    ],
    "connections": [{"from": "a", "to": "join"}, {"from": "b", "to": "join"}],
}
AUDIO_GAIN = {
    "version": "v1",
    "metadata": {"name": "gain"},
    "nodes": [{"id": "gain", "nodeType": "Gain", "params": {"gainDb": 6.0206}}],
}
INLINE = json.dumps(
    {
        "version": "v1",
        "metadata": {"name": "inline-upper"},
        "nodes": [
            {"id": "up", "nodeType": "TextTransform", "params": {"operations": [{"op": "upper"}]}}
        ],
    }
)


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    return {
        "allowInlineManifests": True,
        "pipelines": [{"manifest": FAN_OUT}, {"manifest": FAN_IN}, {"manifest": AUDIO_GAIN}],
    }


@pytest.fixture(params=TRANSPORTS)
async def client(
    request: pytest.FixtureRequest, server: ServerProcess
) -> AsyncIterator[PipelineClient]:
    transport: str = request.param
    async with connect(transport, server.url(transport)) as client:
        yield client


def name(pipeline: str) -> PipelineTarget:
    return PipelineTarget(name=pipeline)


ALL_KINDS: list[RuntimeData] = [
    Audio(samples=np.linspace(-1, 1, 960, dtype=np.float32), sample_rate=48000, timestamp=1.5),
    Audio(samples=np.arange(320, dtype=np.int16).reshape(160, 2), sample_rate=16000),
    Video(
        frame=np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3), pixel_format="rgb24", pts=42
    ),
    Text(text="grüße, 世界", metadata={"lang": "de"}),
    Binary(data=bytes(range(256)), mime_type="application/x-test"),
    Tensor(array=np.arange(24, dtype=np.complex64).reshape(2, 3, 4)),
    Json(value={"a": [1, 2.5, None, True], "b": {"c": "d"}}),
]


@pytest.mark.parametrize("data", ALL_KINDS, ids=lambda d: type(d).__name__)
async def test_unary_call_returns_every_kind_unchanged(
    client: PipelineClient, data: RuntimeData
) -> None:
    async with asyncio.timeout(HANG_GUARD):
        outputs = await client.execute(name("echo"), data, timeout=30)
    assert outputs == [NodeOutput("echo", data)]


async def test_ten_seconds_of_audio_stream_in_order_with_nothing_lost(
    client: PipelineClient,
) -> None:
    frame = 960  # 20 ms at 48 kHz
    frames = 500
    sent = [
        Audio(
            samples=np.full(frame, i / frames, dtype=np.float32),
            sample_rate=48000,
            timestamp=i * 0.02,
        )
        for i in range(frames)
    ]
    received: list[Audio] = []
    acks: list[int] = []
    async with asyncio.timeout(HANG_GUARD), await client.open_stream(name("gain")) as stream:

        async def produce() -> None:
            for seq, audio in enumerate(sent):
                await stream.send(seq, audio)
            await stream.close_input()

        producer = asyncio.create_task(produce())
        async for event in stream:
            if isinstance(event, Ack):
                acks.append(event.seq)
            else:
                assert isinstance(event.data, Audio)
                received.append(event.data)
        await producer
    assert [a.timestamp for a in received] == [a.timestamp for a in sent]
    for original, doubled in zip(sent, received, strict=True):
        np.testing.assert_allclose(doubled.samples, original.samples * 2, rtol=1e-4)
    assert acks == sorted(acks)
    assert acks[-1] == frames - 1


async def test_a_stateless_stream_acknowledges_each_input_right_after_its_output(
    client: PipelineClient,
) -> None:
    # The server sends most acks inside output frames; clients see them apart, as before.
    async with asyncio.timeout(HANG_GUARD), await client.open_stream(name("echo")) as stream:
        for seq in range(50):
            await stream.send(seq, Text(text=str(seq)))
        await stream.close_input()
        events = await drain(stream.events())
    assert events == [
        event for seq in range(50) for event in (NodeOutput("echo", Text(text=str(seq))), Ack(seq))
    ]


async def test_remote_fan_out_returns_every_branch(client: PipelineClient) -> None:
    outputs = await client.execute(name("fan-out"), Text(text="MiXeD"), timeout=30)
    assert sorted((o.node_id, o.data) for o in outputs) == [  # type: ignore[type-var]
        ("lower", Text(text="mixed")),
        ("upper", Text(text="MIXED")),
    ]


async def test_remote_fan_in_receives_from_every_source(client: PipelineClient) -> None:
    outputs = await client.execute(name("fan-in"), Text(text="MiXeD"), timeout=30)
    assert sorted(o.data.text for o in outputs) == ["MIXED", "mixed"]  # type: ignore[union-attr]
    assert {o.node_id for o in outputs} == {"join"}


async def test_inline_manifest_runs_when_the_server_allows_it(client: PipelineClient) -> None:
    outputs = await client.execute(PipelineTarget(manifest=INLINE), Text(text="inline"), timeout=30)
    assert outputs == [NodeOutput("up", Text(text="INLINE"))]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_inline_manifest_is_refused_when_the_server_does_not_allow_it(
    transport: str, start_server: Any
) -> None:
    server: ServerProcess = start_server(allowInlineManifests=False)
    async with connect(transport, server.url(transport)) as client:
        with pytest.raises(IncompatibleManifestError, match="allowInlineManifests"):
            await client.execute(PipelineTarget(manifest=INLINE), Text(text="x"), timeout=30)
        # Predefined pipelines still run.
        assert await client.execute(name("echo"), Text(text="x"), timeout=30)


async def test_inline_manifest_with_unknown_node_types_lists_them(client: PipelineClient) -> None:
    manifest = json.dumps(
        {"version": "v1", "metadata": {"name": "x"}, "nodes": [{"id": "a", "nodeType": "Teleport"}]}
    )
    with pytest.raises(IncompatibleManifestError) as caught:
        await client.execute(PipelineTarget(manifest=manifest), Text(text="x"), timeout=30)
    assert caught.value.unknown_node_types == ("Teleport",)


async def test_unknown_pipeline_is_named_in_the_error(client: PipelineClient) -> None:
    with pytest.raises(UnknownPipelineError, match=r"no pipeline named 'nope'.*echo"):
        await client.execute(name("nope"), Text(text="x"), timeout=30)


async def test_remote_node_failure_names_the_node(client: PipelineClient) -> None:
    with pytest.raises(RemoteExecutionError) as caught:
        await client.execute(name("faulty"), Text(text="x"), timeout=30)
    assert caught.value.node_id == "fault"
    assert not caught.value.retryable


async def test_deadline_exceeded_is_reported_as_such(client: PipelineClient) -> None:
    with pytest.raises(DeadlineExceededError) as caught:
        async with asyncio.timeout(HANG_GUARD):
            await client.execute(name("slow"), Text(text="x"), timeout=0.3)
    assert caught.value.retryable


async def test_twenty_concurrent_streams_each_get_their_own_outputs(client: PipelineClient) -> None:
    async def one_stream(index: int) -> list[str]:
        async with await client.open_stream(name("upper")) as stream:
            for seq in range(25):
                await stream.send(seq, Text(text=f"s{index}-{seq}"))
            await stream.close_input()
            return [e.data.text async for e in stream if isinstance(e, NodeOutput)]  # type: ignore[union-attr]

    async with asyncio.timeout(HANG_GUARD):
        results = await asyncio.gather(*(one_stream(i) for i in range(20)))
    for index, texts in enumerate(results):
        assert texts == [f"S{index}-{seq}" for seq in range(25)]


async def test_request_that_already_visited_the_pipeline_is_refused(client: PipelineClient) -> None:
    with (
        serving(RequestContext(visited=("edge", "echo"))),
        pytest.raises(CircularReferenceError) as caught,
    ):
        await client.execute(name("echo"), Text(text="x"), timeout=30)
    assert "edge -> echo -> echo" in str(caught.value)


async def test_request_beyond_the_hop_limit_is_refused(client: PipelineClient) -> None:
    chain = tuple(f"p{i}" for i in range(8))
    with (
        serving(RequestContext(visited=chain)),
        pytest.raises(CircularReferenceError, match="limit 8"),
    ):
        await client.execute(name("echo"), Text(text="x"), timeout=30)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_killed_mid_stream_gives_a_network_error(
    transport: str, start_server: Any
) -> None:
    server: ServerProcess = start_server()
    async with connect(transport, server.url(transport)) as client:
        stream = await client.open_stream(name("echo"))
        await stream.send(0, Text(text="before"))
        events = stream.events()
        first = await anext(events)
        assert first == NodeOutput("echo", Text(text="before"))
        server.kill()
        # A clean end would be wrong too: the stream was never closed.
        with pytest.raises(NetworkError):
            await drain(events)
        await stream.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_every_failure_is_a_tether_error(transport: str, free_port: int) -> None:
    endpoint = (
        f"grpc://127.0.0.1:{free_port}" if transport == "grpc" else f"http://127.0.0.1:{free_port}"
    )
    async with connect(transport, endpoint) as client:
        with pytest.raises(TetherError):
            await client.execute(name("echo"), Text(text="x"), timeout=5)
        with pytest.raises(TetherError):
            await client.open_stream(name("echo"), timeout=5)
