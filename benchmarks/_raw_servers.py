"""Raw echo servers: the baselines `transports.py` times Tether against.

Each is the smallest echo the library can serve, so that the difference to Tether is
Tether's own work. One kind runs per process, as Tether's server does:

    .venv/bin/python benchmarks/_raw_servers.py grpc      # grpc.aio: unary and bidi echo
    .venv/bin/python benchmarks/_raw_servers.py http      # aiohttp: POST echo, WebSocket echo
    .venv/bin/python benchmarks/_raw_servers.py webrtc    # aiortc data channel echo

It listens on 127.0.0.1, an ephemeral port, prints `raw echo server ready port=N` and
serves until SIGTERM or SIGINT. `RawServer` runs one as a child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import grpc
import grpc.aio
from aiohttp import WSMsgType, web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from tether.runtime.allocator import keep_freed_memory
from tether.transport.ice import rtc_configuration, set_local_description
from tether.transport.webrtc import close_peer_connection

KINDS: Final = ("grpc", "http", "webrtc")
HOST: Final = "127.0.0.1"

GRPC_UNARY: Final = "/raw.Echo/Unary"
GRPC_STREAM: Final = "/raw.Echo/Stream"
HTTP_ECHO: Final = "/echo"
HTTP_WS: Final = "/ws"
WEBRTC_OFFER: Final = "/offer"

MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""Tether's default limit, so neither side refuses what the other accepts."""

_READY: Final = re.compile(r"raw echo server ready port=(\d+)")


# ---- the servers (child side) ----


async def _unary_echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _stream_echo(
    requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
) -> None:
    async for message in requests:
        await context.write(message)


async def serve_grpc(stop: asyncio.Event) -> None:
    """Unary and bidi echo on raw bytes: no (de)serializers, as Tether's own service."""
    handler = grpc.method_handlers_generic_handler(
        "raw.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary_echo),
            "Stream": grpc.stream_stream_rpc_method_handler(_stream_echo),
        },
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    _announce(port)
    try:
        await stop.wait()
    finally:
        await server.stop(None)


async def _http_echo(request: web.Request) -> web.Response:
    return web.Response(body=await request.read(), content_type="application/octet-stream")


async def _websocket_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            await ws.send_bytes(message.data)
    return ws


async def _serve_aiohttp(app: web.Application, stop: asyncio.Event) -> None:
    # No access log: Tether's server writes none per request either.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    _announce(server.sockets[0].getsockname()[1])
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


async def serve_http(stop: asyncio.Event) -> None:
    """POST body echo and WebSocket echo, on one aiohttp server (as Tether's HTTP port)."""
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    app.router.add_post(HTTP_ECHO, _http_echo)
    app.router.add_get(HTTP_WS, _websocket_echo)
    await _serve_aiohttp(app, stop)


async def serve_webrtc(stop: asyncio.Event) -> None:
    """An aiortc answerer echoing every data channel message; SDP over `POST /offer`."""
    peers: set[RTCPeerConnection] = set()

    def echo_on(channel: RTCDataChannel) -> None:
        channel.on("message", channel.send)

    async def offer(request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection(rtc_configuration(()))
        peers.add(pc)
        pc.on("datachannel", echo_on)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await set_local_description(pc, await pc.createAnswer(), [HOST])
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    app = web.Application()
    app.router.add_post(WEBRTC_OFFER, offer)
    try:
        await _serve_aiohttp(app, stop)
    finally:
        for pc in peers:
            await close_peer_connection(pc)


def _announce(port: int) -> None:
    print(f"raw echo server ready port={port}", flush=True)


async def serve(kind: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    servers = {"grpc": serve_grpc, "http": serve_http, "webrtc": serve_webrtc}
    await servers[kind](stop)


# ---- the child process (parent side) ----


class RawServer:
    """One raw echo server in a child process, on 127.0.0.1; `with RawServer("grpc") as s:`."""

    def __init__(self, kind: str, *, startup_timeout: float = 30.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown raw server {kind!r}; use one of {', '.join(KINDS)}")
        self.kind = kind
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[str] | None = None
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()

    @property
    def url(self) -> str:
        scheme = "grpc" if self.kind == "grpc" else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def start(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), self.kind],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready and (match := _READY.search(self.process.stdout.readline())):
                self.port = int(match.group(1))
                return self
        logs = self.logs()
        self.stop()
        raise RuntimeError(f"raw {self.kind} server did not start; its log:\n{logs}")

    def logs(self) -> str:
        if self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not gone within `timeout`. Idempotent."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self._log.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=KINDS)
    args = parser.parse_args(argv)
    keep_freed_memory()  # as Tether's server does, so that neither side pays for page faults
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.kind))


if __name__ == "__main__":
    main()
