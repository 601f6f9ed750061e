"""Round trips and throughput of Tether's transports against raw echoes of the same libraries.

A Tether server hosting an `echo` pipeline (one PassThrough node) and one raw echo server
per library (`_raw_servers.py`) each run in a child process on 127.0.0.1, and the same
client process times both in the same run, interleaved in short rounds so that a change
in the machine's load hits both alike:

1. unary round trips, 3840 B and 192000 B: Tether over grpc, http and webrtc beside
   grpc.aio unary, httpx -> aiohttp POST (and aiohttp's client, for comparison) and an
   aiortc data channel;
2. streaming, 3840 B frames sent every 20 ms (50 frames/s): send -> echoed output, beside
   grpc.aio bidi, WebSocket echo (httpx-ws, Tether's client library, and aiohttp's client)
   and an aiortc data channel;
3. streaming back to back, frames pipelined with a bounded window: frames per second.

Tether's payload is `Binary(data=N bytes)`, so its size is exact; the baselines echo the
same N bytes.

    .venv/bin/python benchmarks/transports.py [--quick] [--transports grpc,http,webrtc]
                                              [--repeat N]
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import gc
import os
import platform
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp
import grpc
import grpc.aio
import httpx
import httpx_ws
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

import _raw_servers
import _report
from tether.data import Binary
from tether.runtime import NodeOutput
from tether.runtime.allocator import keep_freed_memory
from tether.testing.server import ServerProcess
from tether.transport import TRANSPORTS, ClientStream, PipelineClient, PipelineTarget, connect
from tether.transport.ice import rtc_configuration, set_local_description
from tether.transport.webrtc import close_peer_connection

UNARY_SIZES: Final = (3840, 192_000)
"""20 ms of 48 kHz mono float32 audio, and a full second of it."""
FRAME_SIZE: Final = 3840
FRAME_INTERVAL: Final = 0.020
WINDOW: Final = 32
"""Frames in flight at most in the throughput test: a sender that never waits would only
measure how fast queues fill."""
UNARY_ROUND: Final = 25
"""Calls each contender makes before the next one's turn."""
PACED_ROUND: Final = 50
BURST_ROUND: Final = 500
HANG_GUARD: Final = 120.0
"""Seconds one round may take before the benchmark gives up: a hang fails, never stalls."""
MAX_MESSAGE_BYTES: Final = _raw_servers.MAX_MESSAGE_BYTES

ECHO: Final = PipelineTarget(name="echo")
SERVER_CONFIG: Final[dict[str, Any]] = {
    "pipelines": [
        {
            "manifest": {
                "version": "v1",
                "metadata": {"name": "echo"},
                "nodes": [{"id": "echo", "nodeType": "PassThrough"}],
            }
        }
    ],
    "gracePeriod": "2s",
}

_T = TypeVar("_T")

UnaryCall = Callable[[bytes], Awaitable[bytes]]
"""Sends a payload, returns what came back."""


@dataclass(frozen=True)
class Settings:
    transports: tuple[str, ...]
    repeat: int
    """Timed unary calls per case."""
    warmup: int
    frames: int
    """Frames of the paced stream."""
    burst: int
    """Frames of the throughput test."""


@dataclass
class Contender:
    """One side of a comparison: Tether over a transport, or a raw baseline."""

    label: str
    """Its name in the unary table."""
    stream_label: str
    """Its name in the streaming tables, where a baseline may be another part of the library."""
    call: UnaryCall
    open_duplex: Callable[[], Awaitable[Duplex]]
    samples: list[float] = field(default_factory=list)


# ---- streams: one interface over Tether's and every raw library's ----


class Duplex(abc.ABC):
    """A stream of echoed payloads: send from one task, receive in another."""

    @abc.abstractmethod
    async def send(self, payload: bytes) -> None: ...

    @abc.abstractmethod
    async def receive(self) -> bytes:
        """The next echoed payload."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """End the stream politely (the peer sees a normal end)."""


class TetherDuplex(Duplex):
    def __init__(self, stream: ClientStream) -> None:
        self._stream = stream
        self._events = stream.events()
        self._seq = 0

    async def send(self, payload: bytes) -> None:
        self._seq += 1
        await self._stream.send(self._seq, Binary(data=payload))

    async def receive(self) -> bytes:
        async for event in self._events:
            if isinstance(event, NodeOutput):  # acks are the protocol's; a baseline has none
                if not isinstance(event.data, Binary):
                    raise RuntimeError(f"echo returned {type(event.data).__name__}, not Binary")
                return event.data.data
        raise RuntimeError("the Tether stream ended early")

    async def aclose(self) -> None:
        try:
            await self._stream.close_input()
            async for _ in self._events:
                pass
        finally:
            await self._stream.aclose()


class GrpcDuplex(Duplex):
    def __init__(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        self._call = call

    async def send(self, payload: bytes) -> None:
        await self._call.write(payload)

    async def receive(self) -> bytes:
        message = await self._call.read()
        if not isinstance(message, bytes):
            raise RuntimeError("the raw gRPC stream ended early")
        return message

    async def aclose(self) -> None:
        await self._call.done_writing()
        while isinstance(await self._call.read(), bytes):
            pass


class HttpxWsDuplex(Duplex):
    def __init__(
        self, session: httpx_ws.AsyncWebSocketSession, closer: contextlib.AsyncExitStack
    ) -> None:
        self._session = session
        self._closer = closer

    async def send(self, payload: bytes) -> None:
        await self._session.send_bytes(payload)

    async def receive(self) -> bytes:
        message: bytes = await self._session.receive_bytes()
        return message

    async def aclose(self) -> None:
        await self._closer.aclose()


class AiohttpWsDuplex(Duplex):
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws

    async def send(self, payload: bytes) -> None:
        await self._ws.send_bytes(payload)

    async def receive(self) -> bytes:
        message = await self._ws.receive()
        if message.type != aiohttp.WSMsgType.BINARY:
            raise RuntimeError(f"the raw WebSocket sent {message.type.name}")
        data: bytes = message.data
        return data

    async def aclose(self) -> None:
        await self._ws.close()


class ChannelDuplex(Duplex):
    """A raw aiortc data channel; messages arrive by callback, into a queue."""

    def __init__(self, channel: RTCDataChannel) -> None:
        self._channel = channel
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue()
        channel.on("message", self._inbox.put_nowait)

    async def send(self, payload: bytes) -> None:
        self._channel.send(payload)

    async def receive(self) -> bytes:
        return await self._inbox.get()

    async def aclose(self) -> None:
        self._channel.close()


# ---- clients of the raw servers ----


class RawRtcPeer:
    """An aiortc offerer connected to the raw echo answerer, on loopback only."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pc = RTCPeerConnection(rtc_configuration(()))
        self._unary: ChannelDuplex | None = None

    async def connect(self) -> None:
        opened = self._pc.createDataChannel("echo")
        ready = asyncio.Event()
        opened.on("open", ready.set)
        await set_local_description(self._pc, await self._pc.createOffer(), ["127.0.0.1"])
        offer = self._pc.localDescription
        async with httpx.AsyncClient(trust_env=False) as signaling:
            response = await signaling.post(
                self._url + _raw_servers.WEBRTC_OFFER, json={"sdp": offer.sdp, "type": offer.type}
            )
            response.raise_for_status()
            answer = response.json()
        await self._pc.setRemoteDescription(RTCSessionDescription(**answer))
        async with asyncio.timeout(10):
            await ready.wait()
        self._unary = ChannelDuplex(opened)

    async def call(self, payload: bytes) -> bytes:
        assert self._unary is not None
        await self._unary.send(payload)
        return await self._unary.receive()

    async def open_duplex(self) -> ChannelDuplex:
        channel = self._pc.createDataChannel("stream")
        ready = asyncio.Event()
        channel.on("open", ready.set)
        async with asyncio.timeout(10):
            await ready.wait()
        return ChannelDuplex(channel)

    async def aclose(self) -> None:
        await close_peer_connection(self._pc)


class Clients:
    """Every client the run needs, made once and closed when the `async with` ends."""

    def __init__(self, tether: ServerProcess, raw: dict[str, _raw_servers.RawServer]) -> None:
        self._exit = contextlib.AsyncExitStack()
        self.tether = tether
        self.raw = raw

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit.aclose()

    def tether_client(self, transport: str) -> PipelineClient:
        client = connect(transport, self.tether.url(transport))
        self._exit.push_async_callback(client.aclose)
        return client

    async def contenders(self, transport: str) -> list[Contender]:
        """Tether first, then the raw baselines of the libraries `transport` is built on."""
        client = self.tether_client(transport)
        tether = Contender(
            f"tether {transport}",
            f"tether {transport}",
            call=lambda payload: _tether_call(client, payload),
            open_duplex=lambda: _tether_duplex(client),
        )
        if transport == "grpc":
            return [tether, *self._grpc()]
        if transport == "http":
            return [tether, *self._http()]
        return [tether, *(await self._webrtc())]

    def _grpc(self) -> list[Contender]:
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.raw['grpc'].port}",
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._exit.push_async_callback(channel.close, None)
        unary = channel.unary_unary(_raw_servers.GRPC_UNARY, None, None)
        bidi = channel.stream_stream(_raw_servers.GRPC_STREAM, None, None)

        async def call(payload: bytes) -> bytes:
            answer: bytes = await unary(payload)
            return answer

        async def open_duplex() -> Duplex:
            return GrpcDuplex(bidi(None))

        return [Contender("grpc.aio unary", "grpc.aio bidi", call=call, open_duplex=open_duplex)]

    def _http(self) -> list[Contender]:
        base = self.raw["http"].url
        httpx_client = httpx.AsyncClient(
            verify=False, trust_env=False, timeout=30, limits=httpx.Limits(max_connections=128)
        )
        self._exit.push_async_callback(httpx_client.aclose)
        session = aiohttp.ClientSession()
        self._exit.push_async_callback(session.close)

        async def httpx_call(payload: bytes) -> bytes:
            response = await httpx_client.post(base + _raw_servers.HTTP_ECHO, content=payload)
            response.raise_for_status()
            return response.content

        async def httpx_duplex() -> Duplex:
            closer = contextlib.AsyncExitStack()
            ws: httpx_ws.AsyncWebSocketSession = await closer.enter_async_context(
                httpx_ws.aconnect_ws(
                    base + _raw_servers.HTTP_WS,
                    httpx_client,
                    max_message_size_bytes=256 * 1024,  # Tether's read size
                    keepalive_ping_interval_seconds=None,
                )
            )
            return HttpxWsDuplex(ws, closer)

        async def aiohttp_call(payload: bytes) -> bytes:
            async with session.post(base + _raw_servers.HTTP_ECHO, data=payload) as response:
                response.raise_for_status()
                return await response.read()

        async def aiohttp_duplex() -> Duplex:
            ws = await session.ws_connect(base + _raw_servers.HTTP_WS, max_msg_size=0)
            return AiohttpWsDuplex(ws)

        return [
            Contender(
                "httpx -> aiohttp",
                "httpx-ws -> aiohttp ws",
                call=httpx_call,
                open_duplex=httpx_duplex,
            ),
            Contender(
                "aiohttp -> aiohttp",
                "aiohttp ws -> aiohttp ws",
                call=aiohttp_call,
                open_duplex=aiohttp_duplex,
            ),
        ]

    async def _webrtc(self) -> list[Contender]:
        peer = RawRtcPeer(self.raw["webrtc"].url)
        self._exit.push_async_callback(peer.aclose)
        await peer.connect()
        return [
            Contender(
                "aiortc channel",
                "aiortc channel",
                call=peer.call,
                open_duplex=peer.open_duplex,
            )
        ]


async def _tether_call(client: PipelineClient, payload: bytes) -> bytes:
    outputs = await client.execute(ECHO, Binary(data=payload), timeout=HANG_GUARD)
    if len(outputs) != 1 or not isinstance(outputs[0].data, Binary):
        raise RuntimeError(f"echo returned {outputs!r:.200}, not one Binary")
    return outputs[0].data.data


async def _tether_duplex(client: PipelineClient) -> Duplex:
    return TetherDuplex(await client.open_stream(ECHO))


# ---- timing ----


def _check_echo(label: str, sent: bytes, echoed: bytes) -> None:
    if echoed != sent:
        raise RuntimeError(
            f"{label} echoed {len(echoed)} bytes that differ from the {len(sent)} sent"
        )


def _rotated(items: Sequence[_T], round_number: int) -> list[_T]:
    """Who goes first changes every round, so none is always timed on a cold start."""
    shift = round_number % len(items)
    return [*items[shift:], *items[:shift]]


async def time_unary(contenders: Sequence[Contender], size: int, settings: Settings) -> None:
    """`settings.repeat` timed calls of each contender, in interleaved rounds."""
    payload = os.urandom(size)
    for contender in contenders:
        contender.samples = []
        for _ in range(settings.warmup):
            async with asyncio.timeout(HANG_GUARD):
                _check_echo(contender.label, payload, await contender.call(payload))
    gc.collect()
    done, round_number = 0, 0
    while done < settings.repeat:
        count = min(UNARY_ROUND, settings.repeat - done)
        for contender in _rotated(contenders, round_number):
            call = contender.call
            async with asyncio.timeout(HANG_GUARD):
                for _ in range(count):
                    start = time.perf_counter_ns()
                    echoed = await call(payload)
                    contender.samples.append((time.perf_counter_ns() - start) / 1e9)
                    if len(echoed) != size:
                        _check_echo(contender.label, payload, echoed)
        done += count
        round_number += 1


async def paced(duplex: Duplex, payload: bytes, frames: int) -> list[float]:
    """Send a frame every FRAME_INTERVAL; seconds from each send to its echo."""
    sent: deque[int] = deque()
    latencies: list[float] = []

    async def receive_all() -> None:
        for _ in range(frames):
            echoed = await duplex.receive()
            latencies.append((time.perf_counter_ns() - sent.popleft()) / 1e9)
            if len(echoed) != len(payload):
                _check_echo("a paced stream", payload, echoed)

    loop = asyncio.get_running_loop()
    async with asyncio.timeout(HANG_GUARD), asyncio.TaskGroup() as group:
        group.create_task(receive_all())
        start = loop.time()
        for i in range(frames):
            await asyncio.sleep(max(0.0, start + i * FRAME_INTERVAL - loop.time()))
            sent.append(time.perf_counter_ns())
            await duplex.send(payload)
    return latencies


async def burst(duplex: Duplex, payload: bytes, frames: int) -> float:
    """Seconds to echo `frames` frames back to back, at most WINDOW in flight."""
    window = asyncio.Semaphore(WINDOW)

    async def receive_all() -> None:
        for _ in range(frames):
            echoed = await duplex.receive()
            window.release()
            if len(echoed) != len(payload):
                _check_echo("a burst", payload, echoed)

    start = time.perf_counter_ns()
    async with asyncio.timeout(HANG_GUARD), asyncio.TaskGroup() as group:
        group.create_task(receive_all())
        for _ in range(frames):
            await window.acquire()
            await duplex.send(payload)
    return (time.perf_counter_ns() - start) / 1e9


async def time_streams(
    contenders: Sequence[Contender],
    total: int,
    per_round: int,
    run: Callable[[Duplex, bytes, int], Awaitable[list[float] | float]],
) -> None:
    """Run `run` on one open stream per contender, `per_round` frames at a time, in turns."""
    payload = os.urandom(FRAME_SIZE)
    duplexes: list[Duplex] = []
    try:
        for contender in contenders:
            async with asyncio.timeout(HANG_GUARD):
                duplex = await contender.open_duplex()
            duplexes.append(duplex)
            contender.samples = []
            for _ in range(10):  # warm-up, lockstep, checked byte for byte
                await duplex.send(payload)
                async with asyncio.timeout(HANG_GUARD):
                    _check_echo(contender.label, payload, await duplex.receive())
        gc.collect()
        pairs = list(zip(contenders, duplexes, strict=True))
        done, round_number = 0, 0
        while done < total:
            count = min(per_round, total - done)
            for contender, duplex in _rotated(pairs, round_number):
                result = await run(duplex, payload, count)
                contender.samples.extend(result if isinstance(result, list) else [result])
            done += count
            round_number += 1
    finally:
        for contender, duplex in zip(contenders, duplexes, strict=False):
            try:
                async with asyncio.timeout(10):
                    await duplex.aclose()
            except Exception as exc:  # told, not raised: it would hide why the run stopped
                print(
                    f"closing the {contender.stream_label} stream failed: {exc!r}", file=sys.stderr
                )


# ---- reporting ----


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def latency_rows(
    transport: str, contenders: Sequence[Contender], *lead: str, streaming: bool = False
) -> list[list[str]]:
    """One row per baseline: Tether's percentiles, the baseline's, and their ratios."""
    tether, *baselines = contenders
    ours = _report.summarize(tether.samples)
    rows = []
    for baseline in baselines:
        theirs = _report.summarize(baseline.samples)
        rows.append(
            [
                transport,
                *lead,
                baseline.stream_label if streaming else baseline.label,
                *(ms(t) for t in (*ours, *theirs)),
                *(f"{_report.ratio(a, b):.2f}x" for a, b in zip(ours, theirs, strict=True)),
            ]
        )
    return rows


def throughput_rows(
    transport: str, contenders: Sequence[Contender], frames: int
) -> list[list[str]]:
    """Frames per second over all rounds: every frame sent, over the time all rounds took."""
    tether, *baselines = contenders
    ours = frames / sum(tether.samples)
    rows = []
    for baseline in baselines:
        theirs = frames / sum(baseline.samples)
        rows.append(
            [
                transport,
                baseline.stream_label,
                f"{ours:,.0f}",
                f"{theirs:,.0f}",
                f"{_report.ratio(ours, theirs):.2f}x",
            ]
        )
    return rows


LATENCY_HEADERS: Final = (
    "tether p50",
    "tether p99",
    "raw p50",
    "raw p99",
    "ratio p50",
    "ratio p99",
)


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


# ---- the run ----


async def run(
    settings: Settings, tether: ServerProcess, raw: dict[str, _raw_servers.RawServer]
) -> None:
    async with Clients(tether, raw) as clients:
        contenders = {t: await clients.contenders(t) for t in settings.transports}

        section(
            f"1. unary round trip, ms: {settings.repeat} calls per case after {settings.warmup}"
            f" warm-up, in turns of {UNARY_ROUND}; ratio = tether / raw"
        )
        rows: list[list[str]] = []
        for transport, group in contenders.items():
            for size in UNARY_SIZES:
                await time_unary(group, size, settings)
                rows += latency_rows(transport, group, f"{size} B")
        _report.print_table(rows, ["transport", "payload", "raw baseline", *LATENCY_HEADERS])

        section(
            f"2. streaming round trip at {1 / FRAME_INTERVAL:.0f} frames/s, ms: send -> echo of"
            f" {settings.frames} frames of {FRAME_SIZE} B, in turns of {PACED_ROUND};"
            " ratio = tether / raw"
        )
        rows = []
        for transport, group in contenders.items():
            await time_streams(group, settings.frames, PACED_ROUND, paced)
            rows += latency_rows(transport, group, streaming=True)
        _report.print_table(rows, ["transport", "raw baseline", *LATENCY_HEADERS])

        section(
            f"3. streaming throughput, frames/s: {settings.burst} frames of {FRAME_SIZE} B back"
            f" to back, at most {WINDOW} in flight, in turns of {BURST_ROUND};"
            " ratio = tether / raw (below 1: slower)"
        )
        rows = []
        for transport, group in contenders.items():
            await time_streams(group, settings.burst, BURST_ROUND, burst)
            rows += throughput_rows(transport, group, settings.burst)
        _report.print_table(rows, ["transport", "raw baseline", "tether", "raw", "ratio"])


def load_note(before: tuple[float, float, float]) -> str:
    after = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min)"
        f" {' '.join(f'{x:.2f}' for x in before)} at start,"
        f" {' '.join(f'{x:.2f}' for x in after)} at end"
    )


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="a few iterations of everything (for tests)"
    )
    parser.add_argument(
        "--transports",
        default=",".join(TRANSPORTS),
        help=f"comma-separated, from {','.join(TRANSPORTS)} (default: all)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed unary calls per case (default 1000; 20 with --quick)",
    )
    args = parser.parse_args(argv)
    transports = tuple(t.strip() for t in args.transports.split(",") if t.strip())
    if not transports or set(transports) - set(TRANSPORTS):
        parser.error(f"--transports takes some of {','.join(TRANSPORTS)}")
    repeat = args.repeat if args.repeat is not None else (20 if args.quick else 1000)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    return Settings(
        transports=transports,
        repeat=repeat,
        warmup=5 if args.quick else 50,
        frames=25 if args.quick else 250,
        burst=200 if args.quick else 2000,
    )


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)
    load_before = os.getloadavg()
    # Tether's server and the raw servers raise glibc's thresholds too: no process pays for
    # page-faulting freed 192 kB buffers back in, which would swamp the transports' costs.
    tuned = keep_freed_memory()
    libraries = ("grpcio", "httpx", "httpx-ws", "aiohttp", "aiortc", "protobuf")
    print(
        f"python {platform.python_version()}, "
        + ", ".join(f"{name} {version(name)}" for name in libraries)
    )
    print(
        "payload: Tether sends Binary(data=N bytes) through the `echo` pipeline (PassThrough);"
        " each raw baseline echoes the same N bytes. Servers run in child processes on 127.0.0.1;"
        f" glibc allocator thresholds {'raised in every process' if tuned else 'left at defaults'}."
    )
    with contextlib.ExitStack() as children:
        workdir = Path(children.enter_context(tempfile.TemporaryDirectory(prefix="tether-bench-")))
        tether = children.enter_context(ServerProcess(SERVER_CONFIG, workdir))
        raw = {t: children.enter_context(_raw_servers.RawServer(t)) for t in settings.transports}
        asyncio.run(run(settings, tether, raw))
    print()
    print(load_note(load_before))


if __name__ == "__main__":
    main()
