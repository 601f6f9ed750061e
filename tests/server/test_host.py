"""The transport-independent server core, driven in-process: how streams end when the
client vanishes or a deadline passes, and how inline manifest text is read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tether.data import Text, encode
from tether.manifest import parse_manifest
from tether.runtime import Pipeline, default_registry
from tether.server.auth import ANONYMOUS
from tether.server.config import ServerConfig
from tether.server.host import PipelineHost
from tether.v1 import pipeline_pb2 as pb


def make_host(**config: object) -> PipelineHost:
    registry = default_registry()
    echo = parse_manifest(
        {
            "version": "v1",
            "metadata": {"name": "echo"},
            "nodes": [{"id": "echo", "nodeType": "PassThrough"}],
        }
    )
    return PipelineHost(
        ServerConfig.model_validate(config),
        {"echo": Pipeline.from_manifest(echo, registry)},
        registry,
    )


def outcomes(host: PipelineHost) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for metric in host.metrics.requests.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def input_frame(seq: int) -> pb.ClientFrame:
    return pb.ClientFrame(input=pb.StreamInput(seq=seq, data=encode(Text(text=str(seq)))))


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
