"""The server's own start and stop, across its transports: after `gracePeriod`, HTTP
unary calls, WebSocket streams and WebRTC streams still running are cut off, each client
gets a typed error, and the process exits 0 promptly; a server whose HTTP port cannot be
bound leaves no gRPC port listening behind it.

Draining (new work refused, work under way allowed to finish) is covered per transport in
test_grpc.py and test_http.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import StartServer
from tether.data import Text
from tether.errors import NetworkError, UnavailableError
from tether.server.app import PipelineServer
from tether.server.config import ServerConfig
from tether.transport import PipelineTarget
from tether.transport.http import HttpClient
from tether.transport.webrtc import WebRtcClient

GLACIAL = PipelineTarget(name="glacial")
GLACIAL_PIPELINE = {
    "manifest": {
        "version": "v1",
        "metadata": {"name": "glacial"},
        "nodes": [{"id": "wait", "nodeType": "Delay", "params": {"delay": "100s"}}],
    }
}

EXIT_BOUND = 15.0
"""Seconds from SIGTERM to exit beyond which the server counts as hung; the grace period is 1 s."""


async def active_streams(raw: httpx.AsyncClient, transport: str) -> float:
    response = await raw.get("/metrics")
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "tether_server_active_streams" and sample.labels == {
                "transport": transport
            }:
                return sample.value
    return 0.0


async def failure_of(call: Awaitable[Any]) -> BaseException:
    """What `call` raised; fails the test if it returned."""
    try:
        result = await call
    except Exception as exc:
        return exc
    raise AssertionError(f"the call returned {result!r} instead of failing")


async def test_work_still_running_after_the_grace_period_is_cut_off_and_the_server_exits_0(
    start_server: StartServer,
) -> None:
    server = start_server(
        gracePeriod="1s", pipelines=[GLACIAL_PIPELINE], webrtc={"hostAddresses": ["127.0.0.1"]}
    )
    assert server.process is not None
    async with (
        HttpClient(server.http_url) as http,
        WebRtcClient(server.http_url) as webrtc,
        httpx.AsyncClient(base_url=server.http_url, trust_env=False) as raw,
    ):
        unary = asyncio.create_task(http.execute(GLACIAL, Text(text="unary")))
        websocket = await http.open_stream(GLACIAL)
        datachannel = await webrtc.open_stream(GLACIAL)
        async with websocket, contextlib.aclosing(websocket.events()) as ws_events:
            await websocket.send(1, Text(text="websocket"))
            await datachannel.send(1, Text(text="webrtc"))
            dc_events = datachannel.events()
            async with asyncio.timeout(EXIT_BOUND):
                for transport in ("http", "webrtc"):
                    while await active_streams(raw, transport) < 1:  # noqa: ASYNC110 - another process
                        await asyncio.sleep(0.02)
            assert not unary.done()

            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            async with asyncio.timeout(EXIT_BOUND):
                unary_error = await failure_of(unary)
                ws_error = await failure_of(anext(ws_events))
                dc_error = await failure_of(anext(dc_events))
                exit_code = await asyncio.to_thread(server.process.wait, EXIT_BOUND)
            stopped_in = time.monotonic() - signalled
        await datachannel.aclose()

    assert exit_code == 0, server.logs()
    assert stopped_in < EXIT_BOUND
    assert isinstance(unary_error, UnavailableError), repr(unary_error)
    assert "shut down before" in unary_error.message
    assert isinstance(ws_error, UnavailableError), repr(ws_error)
    assert "shut down before" in ws_error.message
    assert isinstance(dc_error, NetworkError), repr(dc_error)  # the peer connection closed
    assert "cut off" in server.logs()


def _listening_socket() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


async def test_a_server_whose_http_port_is_taken_stops_its_grpc_server_before_failing(
    free_port: int,
) -> None:
    grpc_port = free_port
    with _listening_socket() as taken:
        config = ServerConfig.model_validate(
            {
                "pipelines": [GLACIAL_PIPELINE],
                "grpc": {"port": grpc_port},
                "http": {"port": taken.getsockname()[1]},
            }
        )
        server = PipelineServer(config)
        with pytest.raises(OSError, match=r"(?i)in use"):
            await server.start()
    # Nothing answers on the gRPC port any more: connecting is refused.
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", grpc_port)):
        pass
