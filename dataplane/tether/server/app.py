"""The pipeline server process: gRPC on one port, HTTP (and WebRTC signaling) on another.

Shutdown is graceful: on SIGTERM or SIGINT the server reports not-ready, refuses new
work, lets in-flight requests and streams finish within the grace period, then cuts off
what still runs, on every transport, and stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from tether.runtime import NodeRegistry
from tether.runtime.allocator import keep_freed_memory
from tether.server.config import ServerConfig
from tether.server.grpc_service import GrpcServerHandle, start_grpc_server
from tether.server.host import PipelineHost
from tether.server.http_app import build_http_app

logger = logging.getLogger(__name__)

READY_LINE_PREFIX = "tether server ready"
"""Printed once both ports listen, with the ports, so supervisors and tests can wait for it."""

_HTTP_STOP_GRACE: Final = 1.0
"""Seconds aiohttp waits for a handler at shutdown before cancelling it (twice over, at
worst). The host has drained and the HTTP app has cut off its own work by then
(`tether.server.http_app`): this only bounds a handler that ignored both. aiohttp's
default, 60 s, kept a process running well past its grace period."""


@dataclass(frozen=True)
class BoundPorts:
    grpc: int | None
    http: int | None


class PipelineServer:
    def __init__(self, config: ServerConfig, registry: NodeRegistry | None = None) -> None:
        self.config = config
        self.host = PipelineHost.from_config(config, registry)
        self._grpc: GrpcServerHandle | None = None
        self._http: web.AppRunner | None = None
        self.ports = BoundPorts(None, None)

    async def start(self) -> BoundPorts:
        """Listen on both ports; if either fails, nothing is left listening."""
        try:
            self.ports = await self._start()
        except BaseException:
            await self._close_listeners()
            raise
        return self.ports

    async def _start(self) -> BoundPorts:
        grpc_port = http_port = None
        if self.config.grpc.enabled:
            self._grpc = await start_grpc_server(self.host, self.config)
            grpc_port = self._grpc.port
        if self.config.http.enabled:
            self._http = web.AppRunner(
                build_http_app(self.host, self.config),
                handle_signals=False,
                # Per-request access logs cost more than the request on the hot path; the
                # server's metrics count requests instead.
                access_log=None,
                # A client that hangs up cancels its request instead of leaving it running.
                handler_cancellation=True,
                shutdown_timeout=_HTTP_STOP_GRACE,
            )
            await self._http.setup()
            site = web.TCPSite(
                self._http,
                self.config.http.host,
                self.config.http.port,
                ssl_context=_server_ssl_context(self.config),
            )
            await site.start()
            http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return BoundPorts(grpc_port, http_port)

    async def stop(self, grace_period: float | None = None) -> None:
        grace = self.config.grace_period if grace_period is None else grace_period
        if self._grpc is not None:
            self._grpc.report_not_serving()
        finished = await self.host.drain(grace)
        # The grace period is over: both transports cut off what still runs.
        await self._close_listeners()
        logger.info("server stopped%s", "" if finished else " (some work was cut off)")

    async def _close_listeners(self) -> None:
        """Stop the gRPC server, then the HTTP one (with WebRTC), ending their work. Idempotent."""
        grpc_server, self._grpc = self._grpc, None
        http_runner, self._http = self._http, None
        if grpc_server is not None:
            await grpc_server.stop()
        if http_runner is not None:
            await http_runner.cleanup()

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        ports = await self.start()
        print(f"{READY_LINE_PREFIX} grpc={ports.grpc or '-'} http={ports.http or '-'}", flush=True)
        await stop.wait()
        logger.info("shutting down: draining for up to %.1fs", self.config.grace_period)
        await self.stop()


def _server_ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls.cert_file, config.tls.key_file)
    if config.tls.client_ca_file is not None:
        context.load_verify_locations(config.tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def run_server(config: ServerConfig) -> int:
    keep_freed_memory()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aioice logs every ICE candidate-pair check at INFO: one line per check per peer.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    asyncio.run(PipelineServer(config).serve_forever())
    return 0
