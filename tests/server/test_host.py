"""The transport-independent server core, driven in-process: how streams end when the
client vanishes or a deadline passes, when an ack rides in its output's frame, and how
inline manifest text is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tether.data import RuntimeData, Text, encode
from tether.manifest import CamelModel, parse_manifest
from tether.runtime import Ack, Node, NodeOutput, Pipeline, ProcessResult, default_registry
from tether.server.auth import ANONYMOUS
from tether.server.config import ServerConfig
from tether.server.host import PipelineHost
from tether.transport.wire import events_from_frame
from tether.v1 import pipeline_pb2 as pb


class KeepsLast(Node[CamelModel]):
    """Passes each input on at once but keeps it until the stream ends, like the tail of
    an overlap-add filter: its outputs are ready long before their acks."""

    def __init__(self, node_id: str, params: CamelModel) -> None:
        super().__init__(node_id, params)
        self.kept: RuntimeData | None = None

    async def process(self, data: RuntimeData) -> ProcessResult:
        self.kept = data
        return data

    async def flush(self) -> ProcessResult:
        self.kept = None
        return None

    @property
    def is_idle(self) -> bool:
        return self.kept is None


def make_host(**config: object) -> PipelineHost:
    registry = default_registry()
    registry.register(KeepsLast)
    pipelines = {}
    for name, node_type in (("echo", "PassThrough"), ("keeps-last", "KeepsLast")):
        manifest = parse_manifest(
            {
                "version": "v1",
                "metadata": {"name": name},
                "nodes": [{"id": name, "nodeType": node_type}],
            }
        )
        pipelines[name] = Pipeline.from_manifest(manifest, registry)
    return PipelineHost(ServerConfig.model_validate(config), pipelines, registry)


def outcomes(host: PipelineHost) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for metric in host.metrics.requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def input_frame(seq: int) -> pb.ClientFrame:
    return pb.ClientFrame(input=pb.StreamInput(seq=seq, data=encode(Text(text=str(seq)))))


CLOSE = pb.ClientFrame(close=pb.StreamClose())


def client_events(frames: list[pb.ServerFrame]) -> list[NodeOutput | Ack]:
    """What a client of any transport makes of the frames."""
    return [event for frame in frames for event in events_from_frame(frame, "test")]


async def test_an_output_and_the_ack_ready_behind_it_leave_in_one_frame() -> None:
    host = make_host()
    sent: list[pb.ServerFrame] = []

    async def frames() -> AsyncIterator[pb.ClientFrame]:
        for seq in range(20):
            yield input_frame(seq)
        yield CLOSE

    async def slow_send(frame: pb.ServerFrame) -> None:
        sent.append(frame)
        await asyncio.sleep(0.001)  # the pipeline is faster than the network

    header = pb.RequestHeader(pipeline_name="echo")
    async with asyncio.timeout(10):
        await host.stream(header, frames(), slow_send, transport="test", principal=ANONYMOUS)
    assert [f.WhichOneof("kind") for f in sent] == ["opened", *["output"] * 20, "end"]
    assert [f.output.ack for f in sent[1:-1]] == list(range(20))
    assert client_events(sent) == [
        event for seq in range(20) for event in (NodeOutput("echo", Text(text=str(seq))), Ack(seq))
    ]


async def test_an_output_never_waits_for_an_ack_that_is_not_ready() -> None:
    host = make_host()
    sent: list[pb.ServerFrame] = []
    output_arrived = asyncio.Event()

    async def frames() -> AsyncIterator[pb.ClientFrame]:
        # Like a real-time client, send the next input only once the last one's output
        # arrived: an output held back for its ack would stall the stream here.
        for seq in (1, 2):
            yield input_frame(seq)
            await output_arrived.wait()
            output_arrived.clear()
        yield CLOSE

    async def send(frame: pb.ServerFrame) -> None:
        sent.append(frame)
        if frame.HasField("output"):
            output_arrived.set()

    header = pb.RequestHeader(pipeline_name="keeps-last")
    async with asyncio.timeout(10):
        await host.stream(header, frames(), send, transport="test", principal=ANONYMOUS)
    assert [f.WhichOneof("kind") for f in sent] == ["opened", "output", "output", "ack", "end"]
    assert not sent[1].output.HasField("ack")
    assert not sent[2].output.HasField("ack")
    # The node let go of input 2 only when the stream ended, after its output had left.
    assert client_events(sent) == [
        NodeOutput("keeps-last", Text(text="1")),
        NodeOutput("keeps-last", Text(text="2")),
        Ack(2),
    ]


async def test_a_client_that_vanishes_is_counted_as_disconnected_not_as_a_server_error() -> None:
    host = make_host()
    sent: list[pb.ServerFrame] = []

    async def frames() -> AsyncIterator[pb.ClientFrame]:
        yield input_frame(0)  # ...and then the connection drops: no StreamClose

    async def send(frame: pb.ServerFrame) -> None:
        sent.append(frame)

    header = pb.RequestHeader(pipeline_name="echo")
    await host.stream(header, frames(), send, transport="test", principal=ANONYMOUS)
    assert outcomes(host) == {"disconnected": 1.0}
    assert not [f for f in sent if f.HasField("error")]


async def test_a_stream_past_its_deadline_leaves_no_pipeline_task_behind() -> None:
    host = make_host()

    async def frames() -> AsyncIterator[pb.ClientFrame]:
        for seq in range(1000):
            yield input_frame(seq)

    async def slow_send(frame: pb.ServerFrame) -> None:
        if frame.HasField("output"):  # the error frame at the end goes out at once
            await asyncio.sleep(0.05)

    header = pb.RequestHeader(pipeline_name="echo", timeout_ms=200)
    await host.stream(header, frames(), slow_send, transport="test", principal=ANONYMOUS)
    assert outcomes(host) == {"deadline_exceeded": 1.0}
    running = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("tether-")]
    assert running == []


@pytest.mark.parametrize("text", ["http://127.0.0.1:9/evil.yaml", "/etc/passwd", "manifest.yaml"])
async def test_inline_manifest_text_is_never_read_as_a_url_or_a_path(text: str) -> None:
    host = make_host(allowInlineManifests=True)
    request = pb.ExecuteRequest(
        header=pb.RequestHeader(manifest=text), input=encode(Text(text="x"))
    )
    response = await host.execute(request, transport="test")
    assert response.error.code == pb.ERROR_CODE_INCOMPATIBLE_MANIFEST
    assert "this document is a string" in response.error.message


async def test_a_response_over_the_message_limit_is_a_typed_error() -> None:
    host = make_host(limits={"maxMessageBytes": 2048})
    request = pb.ExecuteRequest(
        header=pb.RequestHeader(pipeline_name="echo"), input=encode(Text(text="x" * 1500))
    )
    assert (await host.execute(request, transport="test")).outputs
    request.input.CopyFrom(encode(Text(text="x" * 3000)))
    response = await host.execute(request, transport="test")
    assert response.error.code == pb.ERROR_CODE_RESOURCE_EXHAUSTED
    assert "over the 2048-byte limit" in response.error.message
    assert outcomes(host) == {"ok": 1.0, "resource_exhausted": 1.0}
