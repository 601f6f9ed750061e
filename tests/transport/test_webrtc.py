"""WebRTC specifics, against real servers in child processes on 127.0.0.1: fragmented
frames, ordered acked streams, corrupt frames, the JSON form browsers speak, offer and
per-stream authentication, a server killed mid-stream, deadlines, and that no ICE
candidate other than 127.0.0.1 is ever gathered or offered, on either side.

The behaviour shared with gRPC and HTTP is covered once per transport in test_matrix.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
import numpy as np
import pytest
from aiohttp import web
from aiortc import RTCPeerConnection

from tether.data import Binary, Tensor, Text
from tether.errors import (
    AuthenticationError,
    DeadlineExceededError,
    NetworkError,
    ProtocolError,
    RemoteExecutionError,
    ResourceExhaustedError,
    UnavailableError,
)
from tether.runtime import Ack, NodeOutput, RequestContext
from tether.server.config import ServerConfig
from tether.server.host import PipelineHost
from tether.server.webrtc import WebRtcEndpoint
from tether.testing.server import ServerProcess
from tether.transport import ClientOptions, PipelineTarget, StreamEvent, static_token
from tether.transport.base import TokenSource
from tether.transport.framing import DEFAULT_MAX_MESSAGE_SIZE
from tether.transport.ice import gathering_on, rtc_configuration, sdp_candidates
from tether.transport.webrtc import FrameChannel, WebRtcClient, close_peer_connection
from tether.transport.wire import input_frame, make_header
from tether.v1 import pipeline_pb2 as pb

HANG_GUARD = 60.0
"""Seconds after which a test is considered hung; never a latency assertion."""

LOOPBACK = "127.0.0.1"


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    return {"webrtc": {"hostAddresses": [LOOPBACK]}}


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[WebRtcClient]:
    async with WebRtcClient(server.http_url) as client:
        yield client


def name(pipeline: str) -> PipelineTarget:
    return PipelineTarget(name=pipeline)


async def raw_channel(client: WebRtcClient) -> FrameChannel[pb.ServerFrame]:
    """A fresh stream channel of the client's peer connection, to send frames by hand."""
    peer = await client._connection()
    return await peer.open_channel(timeout=5)


def open_frame(pipeline: str) -> pb.ClientFrame:
    header = make_header(name(pipeline), RequestContext(), timeout=None)
    return pb.ClientFrame(open=pb.StreamOpen(header=header))


# ---- calls ----


async def test_unary_text_call_returns_the_pipeline_output(client: WebRtcClient) -> None:
    async with asyncio.timeout(HANG_GUARD):
        outputs = await client.execute(name("upper"), Text(text="hello"), timeout=10)
    assert outputs == [NodeOutput("upper", Text(text="HELLO"))]


async def test_a_one_mebibyte_tensor_round_trips_in_fragments(client: WebRtcClient) -> None:
    array = np.random.default_rng(7).standard_normal(128 * 1024)  # float64: 1 MiB
    assert array.nbytes == 1024 * 1024 > 10 * DEFAULT_MAX_MESSAGE_SIZE
    async with asyncio.timeout(HANG_GUARD):
        outputs = await client.execute(name("echo"), Tensor(array=array), timeout=30)
    [output] = outputs
    assert isinstance(output.data, Tensor)
    np.testing.assert_array_equal(output.data.array, array)


async def test_five_hundred_items_stream_in_order_with_acks(client: WebRtcClient) -> None:
    count = 500
    outputs: list[str] = []
    acks: list[int] = []
    async with asyncio.timeout(HANG_GUARD), await client.open_stream(name("upper")) as stream:

        async def produce() -> None:
            for seq in range(1, count + 1):
                await stream.send(seq, Text(text=f"item {seq}"))
            await stream.close_input()

        producer = asyncio.create_task(produce())
        async for event in stream:
            if isinstance(event, Ack):
                acks.append(event.seq)
            else:
                assert isinstance(event.data, Text)
                outputs.append(event.data.text)
        await producer
    assert outputs == [f"ITEM {seq}" for seq in range(1, count + 1)]
    assert acks == sorted(acks)
    assert acks[-1] == count


async def test_a_node_failure_is_a_remote_execution_error_naming_the_node(
    client: WebRtcClient,
) -> None:
    with pytest.raises(RemoteExecutionError) as caught:
        async with asyncio.timeout(HANG_GUARD):
            await client.execute(name("faulty"), Text(text="x"), timeout=10)
    assert caught.value.node_id == "fault"
    # The peer connection survives a failed call.
    assert await client.execute(name("upper"), Text(text="again"), timeout=10) == [
        NodeOutput("upper", Text(text="AGAIN"))
    ]


async def test_a_deadline_shorter_than_the_pipeline_is_deadline_exceeded(
    client: WebRtcClient,
) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        async with asyncio.timeout(HANG_GUARD):
            await client.execute(name("slow"), Text(text="x"), timeout=0.5)
    assert time.monotonic() - started < 1.9  # the slow pipeline takes 2 s


async def test_a_frame_over_the_client_limit_is_refused_locally_and_the_stream_goes_on(
    server: ServerProcess,
) -> None:
    async with (
        asyncio.timeout(HANG_GUARD),
        WebRtcClient(server.http_url, ClientOptions(max_message_bytes=1024)) as small,
    ):
        with pytest.raises(ResourceExhaustedError, match="max_message_bytes"):
            await small.execute(name("echo"), Binary(data=bytes(2000)), timeout=10)
        async with await small.open_stream(name("echo"), timeout=10) as stream:
            with pytest.raises(ResourceExhaustedError, match="max_message_bytes"):
                await stream.send(1, Binary(data=bytes(2000)))
            await stream.send(2, Binary(data=b"fits"))
            await stream.close_input()
            events = [event async for event in stream]
        assert events == [NodeOutput("echo", Binary(data=b"fits")), Ack(2)]


async def test_calls_share_one_peer_connection_with_a_channel_each(client: WebRtcClient) -> None:
    await client.execute(name("echo"), Text(text="a"), timeout=10)
    pc = client.peer_connection
    results = await asyncio.gather(
        *(client.execute(name("upper"), Text(text=f"t{i}"), timeout=10) for i in range(5))
    )
    assert client.peer_connection is pc
    assert [r[0].data for r in results] == [Text(text=f"T{i}") for i in range(5)]


# ---- corrupt frames and the JSON form ----


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ([b"\x00\xff\xff\xff"], "an undecodable protobuf frame"),
        ([b"\x80open"], "a framing header with reserved bits"),
        (["\x00{this is not json"], "malformed JSON text"),
        ([b"\x00" + pb.ClientFrame(close=pb.StreamClose()).SerializeToString()], "no open first"),
        ([b"\x00" + open_frame("echo").SerializeToString(), b"\x00\x12\x05\xff"], "mid-stream"),
    ],
    ids=["protobuf", "header", "json", "first-frame", "mid-stream"],
)
async def test_a_corrupt_frame_gets_an_error_frame_and_the_server_still_serves(
    client: WebRtcClient, messages: list[bytes | str], where: str
) -> None:
    async with asyncio.timeout(HANG_GUARD):
        channel = await raw_channel(client)
        for message in messages:
            channel.channel.send(message)
        frame = await channel.receive()
        if frame.WhichOneof("kind") == "opened":
            frame = await channel.receive()
        assert frame.WhichOneof("kind") == "error", where
        assert frame.error.code == pb.ERROR_CODE_VALIDATION
        with pytest.raises(NetworkError):  # the server closed the channel after the error
            await channel.receive()
        outputs = await client.execute(name("upper"), Text(text="still here"), timeout=10)
    assert outputs == [NodeOutput("upper", Text(text="STILL HERE"))]


async def test_text_messages_carry_the_json_form_and_get_json_answers(
    client: WebRtcClient,
) -> None:
    async with asyncio.timeout(HANG_GUARD):
        channel = await raw_channel(client)
        channel.text = True
        received: list[str | bytes] = []
        channel.channel.on("message", received.append)
        await channel.send(open_frame("upper"))
        await channel.send(input_frame(1, Text(text="json")))
        await channel.send(pb.ClientFrame(close=pb.StreamClose()))
        kinds = []
        while (frame := await channel.receive()).WhichOneof("kind") != "end":
            kinds.append(frame.WhichOneof("kind"))
            if frame.WhichOneof("kind") == "output":
                assert frame.output.data.text.text == "JSON"
                assert frame.output.ack == 1  # the ack rides in the output's frame
    assert kinds == ["opened", "output"]
    assert received
    assert all(isinstance(m, str) for m in received)
    assert '"nodeId":"upper"' in "".join(str(m) for m in received)


# ---- authentication ----


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text("s3cr3t\n")
    return path


@pytest.mark.parametrize("token", [None, static_token("wrong")], ids=["no-token", "wrong-token"])
async def test_an_offer_without_valid_credentials_is_refused(
    start_server: Any, token_file: Path, token: TokenSource | None
) -> None:
    server: ServerProcess = start_server(auth={"tokenFile": str(token_file)})
    async with WebRtcClient(server.http_url, ClientOptions(token=token)) as client:
        with pytest.raises(AuthenticationError):
            async with asyncio.timeout(HANG_GUARD):
                await client.execute(name("echo"), Text(text="x"), timeout=10)
        assert client.peer_connection is None  # refused before any peer connection


async def test_each_stream_is_authenticated_with_the_token_of_the_moment(
    start_server: Any, token_file: Path
) -> None:
    server: ServerProcess = start_server(auth={"tokenFile": str(token_file)})
    current = ["s3cr3t"]
    async with WebRtcClient(server.http_url, ClientOptions(token=lambda: current[0])) as client:
        async with asyncio.timeout(HANG_GUARD):
            assert await client.execute(name("upper"), Text(text="ok"), timeout=10)
            pc = client.peer_connection
            current[0] = "revoked"
            with pytest.raises(AuthenticationError):
                await client.execute(name("upper"), Text(text="no"), timeout=10)
            # The token file rotates on the server: the new token works on the same peer.
            await asyncio.to_thread(token_file.write_text, "rotated\n")
            current[0] = "rotated"
            assert await client.execute(name("upper"), Text(text="ok"), timeout=10)
        assert client.peer_connection is pc


# ---- failures ----


async def until_it_fails(events: AsyncIterator[StreamEvent]) -> None:
    async for _ in events:
        pass
    raise AssertionError("the stream ended cleanly, although it was never closed")


async def test_a_server_killed_mid_stream_is_a_network_error_within_the_peer_timeout(
    start_server: Any,
) -> None:
    server: ServerProcess = start_server()
    async with WebRtcClient(server.http_url, heartbeat_interval=0.25, peer_timeout=1.5) as client:
        stream = await client.open_stream(name("echo"))
        await stream.send(1, Text(text="before"))
        events = stream.events()
        assert await anext(events) == NodeOutput("echo", Text(text="before"))
        server.kill()
        killed = time.monotonic()
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(NetworkError):
                await until_it_fails(events)
        assert time.monotonic() - killed < 10
        await stream.aclose()
        # The next call tries a new connection, and fails fast: nobody listens any more.
        with pytest.raises(NetworkError):
            async with asyncio.timeout(HANG_GUARD):
                await client.execute(name("echo"), Text(text="after"), timeout=10)


async def test_a_server_shutting_down_ends_streams_with_a_network_error(
    start_server: Any,
) -> None:
    server: ServerProcess = start_server(gracePeriod="0s")
    async with WebRtcClient(server.http_url) as client:
        stream = await client.open_stream(name("echo"))
        await stream.send(1, Text(text="before"))
        events = stream.events()
        assert await anext(events) == NodeOutput("echo", Text(text="before"))
        stopped = time.monotonic()
        await asyncio.to_thread(server.stop)
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(NetworkError):
                await until_it_fails(events)
        assert time.monotonic() - stopped < 10
        await stream.aclose()


async def test_a_server_without_webrtc_is_unavailable(start_server: Any) -> None:
    server: ServerProcess = start_server(webrtc={"enabled": False})
    async with WebRtcClient(server.http_url) as client:
        with pytest.raises(UnavailableError) as caught:
            await client.execute(name("echo"), Text(text="x"), timeout=10)
    assert isinstance(caught.value.__cause__, ValueError | KeyError | TypeError)


@pytest.fixture
async def garbage_answerer() -> AsyncIterator[str]:
    """A fake server on 127.0.0.1 that answers every offer with an unusable description."""
    answers = iter(["m=application", "v=0\r\nm=application x\r\n"])

    async def answer(_: web.Request) -> web.Response:
        return web.json_response({"sdp": next(answers, "m=application"), "type": "answer"})

    app = web.Application()
    app.add_routes([web.post("/v1/webrtc/offer", answer)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


async def test_an_answer_aiortc_cannot_parse_is_a_protocol_error(garbage_answerer: str) -> None:
    # aiortc's SDP parser asserts: its AssertionError must not reach the caller as such.
    async with WebRtcClient(garbage_answerer) as client:
        for _ in range(2):
            with pytest.raises(ProtocolError, match="malformed session description") as caught:
                async with asyncio.timeout(HANG_GUARD):
                    await client.execute(name("echo"), Text(text="x"), timeout=10)
            assert isinstance(caught.value.__cause__, AssertionError)
            assert client.peer_connection is None


async def test_nothing_listening_is_a_network_error_chained_to_httpx(free_port: int) -> None:
    async with WebRtcClient(f"http://127.0.0.1:{free_port}") as client:
        with pytest.raises(NetworkError) as caught:
            await client.execute(name("echo"), Text(text="x"), timeout=10)
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


async def test_aclose_closes_the_peer_connection_and_is_idempotent(server: ServerProcess) -> None:
    client = WebRtcClient(server.http_url)
    await client.execute(name("echo"), Text(text="x"), timeout=10)
    pc = client.peer_connection
    assert pc is not None
    assert pc.connectionState == "connected"
    await asyncio.gather(client.aclose(), client.aclose())
    await client.aclose()
    assert pc.connectionState == "closed"
    with pytest.raises(RuntimeError, match="closed"):
        await client.execute(name("echo"), Text(text="x"), timeout=10)


async def test_a_stream_the_server_acknowledged_may_be_abandoned(client: WebRtcClient) -> None:
    stream = await client.open_stream(name("slow"))
    await stream.send(1, Text(text="never waited for"))
    await stream.aclose()
    await stream.aclose()
    assert await client.execute(name("echo"), Text(text="x"), timeout=10)


# ---- ICE candidates ----


async def test_no_ice_candidate_but_127_0_0_1_is_ever_gathered_or_offered(
    client: WebRtcClient,
) -> None:
    await client.execute(name("echo"), Text(text="x"), timeout=10)
    assert client.local_sdp is not None
    assert client.remote_sdp is not None
    local = sdp_candidates(client.local_sdp)
    remote = sdp_candidates(client.remote_sdp)  # the server's answer: what it gathered
    assert local
    assert remote
    assert {c.address for c in local + remote} == {LOOPBACK}
    assert {c.type for c in local + remote} == {"host"}
    pc = client.peer_connection
    assert pc is not None
    assert pc.sctp is not None
    ice = pc.sctp.transport.transport
    gathered = ice.iceGatherer.getLocalCandidates()
    assert gathered
    assert {c.ip for c in gathered} == {LOOPBACK}
    assert {c.ip for c in ice.getRemoteCandidates()} == {LOOPBACK}
    connection = ice.iceGatherer._connection  # aioice itself
    assert {c.host for c in connection.local_candidates} == {LOOPBACK}
    assert {c.host for c in connection.remote_candidates} == {LOOPBACK}


async def test_candidate_restriction_does_not_leak_between_settings() -> None:
    """Two peer connections gathering at once, each on its own loopback address."""
    first = RTCPeerConnection(rtc_configuration([]))
    second = RTCPeerConnection(rtc_configuration([]))

    async def gather(pc: RTCPeerConnection, address: str) -> set[str]:
        pc.createDataChannel("x")
        with gathering_on([address]):
            await pc.setLocalDescription(await pc.createOffer())
        return {c.address for c in sdp_candidates(pc.localDescription.sdp)}

    try:
        found = await asyncio.gather(gather(first, "127.0.0.1"), gather(second, "127.0.0.2"))
        assert list(found) == [{"127.0.0.1"}, {"127.0.0.2"}]
    finally:
        await close_peer_connection(first)
        await close_peer_connection(second)
    # Outside the blocks, aioice answers as it always did (it never offers 127.0.0.1).
    assert LOOPBACK not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


def test_host_addresses_must_be_ip_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address"), gathering_on(["localhost"]):
        pass


async def test_closing_peer_connections_while_they_connect_leaves_no_task_behind() -> None:
    # aiortc lets a connection attempt running at close() go on, and start aioice's
    # consent checks, which then run forever.
    offerer = RTCPeerConnection(rtc_configuration([]))
    answerer = RTCPeerConnection(rtc_configuration([]))
    offerer.createDataChannel("x")
    with gathering_on([LOOPBACK]):
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await asyncio.sleep(0.005)  # both are connecting now
    started = time.monotonic()
    await close_peer_connection(offerer)
    await close_peer_connection(answerer)
    assert time.monotonic() - started < 1
    running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert running == []


# ---- the server side, in this process: its peers and their tasks are visible here ----

LOCAL_PIPELINES = [
    {"manifest": {"version": "v1", "metadata": {"name": n}, "nodes": [{"id": n, "nodeType": t}]}}
    for n, t in (("echo", "PassThrough"),)
]


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[WebRtcEndpoint, str]]:
    """A WebRtcEndpoint served by aiohttp in this event loop, for at most one peer."""
    config = ServerConfig.model_validate(
        {"pipelines": LOCAL_PIPELINES, "limits": {"maxConcurrentStreams": 1}}
    )
    endpoint = WebRtcEndpoint(PipelineHost.from_config(config), config.webrtc)

    async def close_endpoint(_: web.Application) -> None:
        await endpoint.close()

    app = web.Application()
    app.add_routes(endpoint.routes())
    app.on_shutdown.append(close_endpoint)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield endpoint, f"http://{LOOPBACK}:{port}"
    finally:
        await runner.cleanup()


async def eventually(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not condition():  # noqa: ASYNC110 - the state belongs to aiortc's callbacks
            await asyncio.sleep(0.02)


async def test_the_server_forgets_a_peer_whose_client_closed(
    local_server: tuple[WebRtcEndpoint, str],
) -> None:
    endpoint, url = local_server
    async with WebRtcClient(url) as client:
        await client.execute(name("echo"), Text(text="x"), timeout=10)
        assert len(endpoint.peers) == 1
    await eventually(lambda: not endpoint.peers)


async def test_closing_the_endpoint_ends_live_streams_and_refuses_new_offers(
    local_server: tuple[WebRtcEndpoint, str],
) -> None:
    endpoint, url = local_server
    async with WebRtcClient(url) as client:
        stream = await client.open_stream(name("echo"))
        await stream.send(1, Text(text="before"))
        events = stream.events()
        assert await anext(events) == NodeOutput("echo", Text(text="before"))
        [peer] = endpoint.peers
        await endpoint.close()
        assert not endpoint.peers
        assert peer.pc.connectionState == "closed"
        assert not peer.streams
        async with asyncio.timeout(HANG_GUARD):
            with pytest.raises(NetworkError):
                await until_it_fails(events)
        await stream.aclose()
        with pytest.raises(UnavailableError, match="shutting down"):
            await client.execute(name("echo"), Text(text="x"), timeout=10)


async def test_offers_beyond_the_peer_limit_are_resource_exhausted(
    local_server: tuple[WebRtcEndpoint, str],
) -> None:
    _, url = local_server
    async with WebRtcClient(url) as first, WebRtcClient(url) as second:
        await first.execute(name("echo"), Text(text="x"), timeout=10)
        with pytest.raises(ResourceExhaustedError):
            await second.execute(name("echo"), Text(text="x"), timeout=10)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"sdp": 1, "type": "offer"}, "must be JSON"),
        ({"sdp": "v=0\r\n", "type": "answer"}, "must be JSON"),
        ({"sdp": "v=0\r\n", "type": "offer"}, "no data channel"),
        (
            {"sdp": "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", "type": "offer"},
            "",
        ),
        # aiortc's parser asserts on these: still the client's error, never a 500.
        ({"sdp": "m=application", "type": "offer"}, "malformed session description"),
        ({"sdp": "v=0\r\nm=application x\r\n", "type": "offer"}, "malformed session"),
    ],
    ids=["sdp-not-text", "not-an-offer", "no-data-channel", "unusable-sdp", "bare-m", "bad-m"],
)
async def test_a_malformed_offer_is_answered_with_a_validation_error(
    local_server: tuple[WebRtcEndpoint, str], body: dict[str, Any], reason: str
) -> None:
    endpoint, url = local_server
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(url + "/v1/webrtc/offer", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "ERROR_CODE_VALIDATION"
    assert reason in error["message"]
    assert not endpoint.peers


async def test_the_host_gets_the_stream_header_without_its_token(
    local_server: tuple[WebRtcEndpoint, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, url = local_server
    headers: list[pb.RequestHeader] = []
    serve = endpoint.host.stream

    async def stream(header: pb.RequestHeader, *args: Any, **kwargs: Any) -> None:
        seen = pb.RequestHeader()
        seen.CopyFrom(header)
        headers.append(seen)
        await serve(header, *args, **kwargs)

    monkeypatch.setattr(endpoint.host, "stream", stream)
    async with WebRtcClient(url, ClientOptions(token=static_token("s3cr3t"))) as client:
        assert await client.execute(name("echo"), Text(text="x"), timeout=10)
    [header] = headers
    assert header.pipeline_name == "echo"
    assert not header.authorization
