"""The WebRTC client of the pipeline server, and the data-channel plumbing both sides share.

    options = ClientOptions(token=static_token("s3cr3t"))
    async with WebRtcClient("http://127.0.0.1:8080", options) as client:
        outputs = await client.execute(PipelineTarget(name="tts"), Text("hello"), timeout=5)

The endpoint is the server's HTTP URL: signaling is `POST /v1/webrtc/offer` there (SDP
offer in, answer out, with the bearer token in `Authorization`), and `info()`,
`health()` and `get_manifest()` are the HTTP client's (`tether.transport.http`).

One peer connection per client, made at the first call, and one data channel per call
or stream on it (opened in-band, DCEP). A channel carries the stream frames of
`tether.v1.ClientFrame`/`ServerFrame`, fragmented as `tether.transport.framing` says:
binary messages hold protobuf, text messages the protobuf JSON form (browsers). The
first frame is `open`, whose header carries the bearer token again, so a token that
rotates or expires after the peer connection was made is checked per stream. The
server closes the channel after `end` or `error`. A unary `execute` is a stream with
one input, then `close`.

Liveness. A killed server sends nothing, and neither UDP nor ICE consent (30 s) tells
quickly. The first channel of a peer, labelled `tether-control`, carries heartbeats:
the client sends one every `heartbeat_interval` seconds, the server echoes every
message on that channel, and a peer from which nothing arrived (no echo, no frame, no
acknowledged data) for `peer_timeout` seconds is declared dead: its streams fail with
`NetworkError` and the next call connects anew.

Errors of aiortc, aioice and httpx become `tether.errors.RemoteError` subclasses in
`translate`, and only there. A session description the peer sent that aiortc cannot
apply, whatever it raises, is a `ProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Generic, TypeVar

import httpx
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from google.protobuf import json_format
from google.protobuf.message import Message

from tether.data import RuntimeData
from tether.data.codec import parse_message
from tether.errors import (
    AuthenticationError,
    DataValidationError,
    DeadlineExceededError,
    NetworkError,
    ProtocolError,
    RemoteError,
    ResourceExhaustedError,
    UnavailableError,
)
from tether.runtime import NodeOutput
from tether.transport import framing
from tether.transport.base import (
    ClientOptions,
    PipelineClient,
    PipelineTarget,
    ServerInfo,
    check_outgoing_size,
)
from tether.transport.http import HttpClient
from tether.transport.ice import (
    rtc_configuration,
    sdp_candidates,
    set_local_description,
    unexpected_host_candidates,
)
from tether.transport.wire import (
    FrameStream,
    accept_opened,
    error_from_proto,
    make_header,
    open_frame,
)
from tether.v1 import pipeline_pb2 as pb

logger = logging.getLogger(__name__)

OFFER_PATH: Final = "/v1/webrtc/offer"
CONTROL_LABEL: Final = "tether-control"
"""The first data channel of a peer: heartbeats, echoed by the server."""
STREAM_LABEL: Final = "tether-stream"

HEARTBEAT_INTERVAL: Final = 1.0
PEER_TIMEOUT: Final = 5.0
"""Seconds of silence after which a peer counts as dead. A server whose event loop is
blocked longer than this by a node would be mistaken for a dead one: raise it for such
pipelines."""

_HIGH_WATER: Final = 1024 * 1024
"""Bytes queued on a channel before `send` waits: aiortc itself buffers without bound."""
_LOW_WATER: Final = 256 * 1024
_ERROR_BY_STATUS: Final[dict[int, type[RemoteError]]] = {
    # Only for answers to the offer without a readable error, e.g. from a proxy in between.
    401: AuthenticationError,
    403: AuthenticationError,
    404: UnavailableError,  # a server that does not offer WebRTC (`webrtc.enabled: false`)
    429: ResourceExhaustedError,
    502: UnavailableError,
    503: UnavailableError,
}
_SETTLE_TIME: Final = 0.1
"""Seconds a closed peer connection's own tasks get to finish before they are cancelled."""

_M = TypeVar("_M", bound=Message)

# ---- one place for dependency errors ----


def translate(exc: BaseException, endpoint: str | None) -> RemoteError:
    """The Tether error for an aiortc, aioice, httpx or socket failure. The only such mapping."""
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return NetworkError(f"HTTP request timed out ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, httpx.HTTPError | OSError):
        return NetworkError(f"connection failed: {type(exc).__name__}: {exc}", endpoint=endpoint)
    if isinstance(exc, InvalidStateError | InternalError | OperationError):
        return NetworkError(
            f"the peer connection is closed ({type(exc).__name__})", endpoint=endpoint
        )
    if isinstance(exc, InvalidAccessError | ValueError):
        # aiortc refuses a session description or a message it cannot use.
        return ProtocolError(f"WebRTC refused: {type(exc).__name__}: {exc}", endpoint=endpoint)
    if isinstance(exc, AssertionError | LookupError | AttributeError | TypeError):
        # Only from `description_errors`: aiortc's SDP parser checks with asserts and
        # indexes without checking, so a malformed description fails this way.
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return ProtocolError(f"malformed session description ({detail})", endpoint=endpoint)
    return ProtocolError(f"WebRTC failure: {type(exc).__name__}: {exc}", endpoint=endpoint)


_DEPENDENCY_ERRORS: Final = (
    httpx.HTTPError,
    OSError,
    InvalidStateError,
    InternalError,
    OperationError,
    InvalidAccessError,
    ValueError,
)


@contextlib.contextmanager
def dependency_errors(endpoint: str | None) -> Iterator[None]:
    """Let no aiortc, aioice or httpx exception out: each becomes what `translate` picks."""
    try:
        yield
    except RemoteError:
        raise
    except _DEPENDENCY_ERRORS as exc:
        raise translate(exc, endpoint) from exc


@contextlib.contextmanager
def description_errors(endpoint: str | None) -> Iterator[None]:
    """`dependency_errors` for applying the session description the peer sent.

    Beware: aiortc parses SDP with `assert`s and unchecked lookups, so a malformed
    description raises AssertionError, KeyError, AttributeError... besides ValueError.
    Every failure here is the peer's ProtocolError (or a NetworkError, as `translate`
    says, when the peer connection closed meanwhile); none may escape as aiortc's own.
    """
    try:
        yield
    except RemoteError:
        raise
    except Exception as exc:
        raise translate(exc, endpoint) from exc


# ---- frames on a data channel (client and server) ----


def encode_frame(frame: Message, *, text: bool, max_message_size: int) -> list[bytes] | list[str]:
    """The data-channel messages carrying `frame`: protobuf, or its JSON form when `text`."""
    if text:
        document = json.dumps(json_format.MessageToDict(frame), separators=(",", ":"))
        return framing.split_text(document, max_message_size)
    return framing.split(frame.SerializeToString(), max_message_size)


def decode_frame(raw: bytes | str, message_type: type[_M], endpoint: str | None = None) -> _M:
    """Parse a reassembled frame; a malformed one is a ProtocolError."""
    name = message_type.DESCRIPTOR.name
    if isinstance(raw, str):
        try:
            return json_format.Parse(raw, message_type())
        except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
            raise ProtocolError(f"malformed {name} JSON: {exc}", endpoint=endpoint) from exc
    try:
        return parse_message(raw, message_type, name)
    except DataValidationError as exc:
        raise ProtocolError(f"malformed {name}: {exc.message}", endpoint=endpoint) from exc


class _Closed:
    """Inbox marker: the channel closed."""


_CLOSED: Final = _Closed()


class FrameChannel(Generic[_M]):
    """A data channel carrying framed stream frames; receives `receives`, sends any frame.

    Incoming messages are reassembled and parsed as they arrive (aiortc cannot hold
    them back) into an inbox bounded by `max_buffered` bytes; a peer that floods it
    gets a `ResourceExhaustedError`. `send` waits while more than a megabyte is queued
    on the channel, and raises `NetworkError` once the channel is closed.
    """

    def __init__(
        self,
        channel: RTCDataChannel,
        receives: type[_M],
        *,
        max_frame_size: int,
        max_buffered: int | None = None,
        text: bool | None = False,
        endpoint: str | None = None,
        on_activity: Callable[[], None] | None = None,
        max_message_size: int = framing.DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.channel = channel
        self.receives = receives
        self.text = text
        """Message kind to send: None until the peer's first message shows which it uses."""
        self.endpoint = endpoint
        self.max_message_size = max_message_size
        self._reassembler = framing.Reassembler(max_frame_size)
        self._max_buffered = max_buffered if max_buffered is not None else 4 * max_frame_size
        self._buffered = 0
        self._inbox: asyncio.Queue[tuple[_M, int] | RemoteError | _Closed] = asyncio.Queue()
        self._finished = False
        """A terminal item (close or error) is in the inbox; nothing more goes in."""
        self._failure: RemoteError | None = None
        """The error that ended the channel, if one did: senders raise it too."""
        self._on_activity = on_activity
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        self._drained = asyncio.Event()
        channel.bufferedAmountLowThreshold = _LOW_WATER
        channel.on("open", self._on_open)
        channel.on("message", self._on_message)
        channel.on("close", self._on_close)
        channel.on("bufferedamountlow", self._drained.set)
        if channel.readyState == "open":
            self.opened.set()
        elif channel.readyState == "closed":
            self._on_close()

    # -- events from aiortc (they must never raise) --

    def _on_open(self) -> None:
        self.opened.set()

    def _on_message(self, message: bytes | str) -> None:
        if self._on_activity is not None:
            self._on_activity()
        if self._finished:
            return
        if self.text is None:
            self.text = isinstance(message, str)
        try:
            raw = self._reassembler.feed(message)
        except ProtocolError as exc:
            self._finish(ProtocolError(exc.message, endpoint=self.endpoint))
            return
        if raw is None:
            return
        try:
            frame = decode_frame(raw, self.receives, self.endpoint)
        except ProtocolError as exc:
            self._finish(exc)
            return
        size = len(raw)
        if self._buffered + size > self._max_buffered:
            self._finish(
                ResourceExhaustedError(
                    f"more than {self._max_buffered} bytes of frames arrived"
                    " before they could be processed",
                    endpoint=self.endpoint,
                )
            )
            return
        self._buffered += size
        self._inbox.put_nowait((frame, size))

    def _on_close(self) -> None:
        self.opened.set()  # wake whoever waits for the opening
        self.closed.set()
        self._drained.set()
        self._finish(_CLOSED)

    def _finish(self, item: RemoteError | _Closed) -> None:
        if not self._finished:
            self._finished = True
            self._inbox.put_nowait(item)
            if isinstance(item, RemoteError):
                self._failure = item

    # -- API --

    def fail(self, error: RemoteError) -> None:
        """End the channel with `error`: receivers get it after the frames already in."""
        self._finish(error)
        self._drained.set()
        self.close()

    @property
    def is_open(self) -> bool:
        return bool(self.channel.readyState == "open") and not self.closed.is_set()

    async def receive(self) -> _M:
        """The next frame; NetworkError once the channel closed, or the error that ended it."""
        item = await self._inbox.get()
        if isinstance(item, tuple):
            frame, size = item
            self._buffered -= size
            return frame
        self._inbox.put_nowait(item)  # terminal: every later receive sees it too
        if isinstance(item, RemoteError):
            raise item
        raise NetworkError("the data channel closed", endpoint=self.endpoint)

    async def send(self, frame: Message) -> None:
        for message in encode_frame(
            frame, text=bool(self.text), max_message_size=self.max_message_size
        ):
            if not self.is_open:
                raise self._failure or NetworkError(
                    "the data channel closed", endpoint=self.endpoint
                )
            with dependency_errors(self.endpoint):
                self.channel.send(message)
            while self.channel.bufferedAmount > _HIGH_WATER and self.is_open:
                self._drained.clear()
                await self._drained.wait()

    def close(self) -> None:
        """Close the channel (after the messages already queued). Idempotent."""
        with contextlib.suppress(*_DEPENDENCY_ERRORS):
            self.channel.close()


# ---- closing aiortc peer connections without leaving its tasks behind ----


def _owned_objects(pc: RTCPeerConnection) -> list[object]:
    """The peer connection and every transport under it, down to aioice's connection."""
    owned: list[object] = [pc]
    dtls_transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        owned.append(pc.sctp)
        dtls_transports.append(pc.sctp.transport)
    for dtls in dtls_transports:
        ice = dtls.transport
        owned += [dtls, ice, ice.iceGatherer, ice.iceGatherer._connection]
    return owned


def _tasks_of(owned: list[object]) -> list[asyncio.Task[Any]]:
    """Pending tasks whose coroutine runs a method of one of `owned`."""
    identities = {id(o) for o in owned}
    tasks = []
    for task in asyncio.all_tasks():
        if task.done() or task is asyncio.current_task():
            continue
        frame = getattr(task.get_coro(), "cr_frame", None)
        if frame is not None and id(frame.f_locals.get("self")) in identities:
            tasks.append(task)
    return tasks


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """`pc.close()`, then make sure no task aiortc started for it outlives it.

    aiortc fires and forgets tasks (`asyncio.ensure_future`) and keeps no reference to
    them. Most end a moment after `close()`, and get `_SETTLE_TIME` to do so. One does
    not: a connection attempt still running at `close()` (aiortc's `__connect`) goes on
    to complete ICE, which starts aioice's consent checks, every 5 s, forever. Whatever
    is left after the moment is cancelled, and awaited.
    """
    owned = _owned_objects(pc)
    with contextlib.suppress(*_DEPENDENCY_ERRORS):
        await pc.close()
    if left := _tasks_of(owned):
        await asyncio.wait(left, timeout=_SETTLE_TIME)
    if left := _tasks_of(owned):
        logger.debug("cancelling %d aiortc task(s) still running after close", len(left))
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


# ---- the client ----


class _Peer:
    """The client's peer connection to one server, its control channel and its streams."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        control: RTCDataChannel,
        endpoint: str,
        options: ClientOptions,
        heartbeat_interval: float,
        peer_timeout: float,
    ) -> None:
        self.pc = pc
        self.control = control
        self.endpoint = endpoint
        self.options = options
        self.heartbeat_interval = heartbeat_interval
        self.peer_timeout = peer_timeout
        self.channels: set[FrameChannel[pb.ServerFrame]] = set()
        self.error: RemoteError | None = None
        """Why the peer is unusable; None while it works."""
        self.settled = asyncio.Event()
        """Set once the control channel opened, or the peer failed first."""
        self._dead = asyncio.Event()
        self._last_heard = time.monotonic()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        control.on("open", self.settled.set)
        control.on("message", self._heard)
        control.on(
            "close",
            lambda: self.fail(NetworkError("the server closed the connection", endpoint=endpoint)),
        )
        pc.on("connectionstatechange", self._on_state)

    @property
    def alive(self) -> bool:
        return self.error is None

    def start(self) -> None:
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"tether-webrtc-peer {self.endpoint}"
        )

    def _heard(self, _message: object = None) -> None:
        self._last_heard = time.monotonic()

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.fail(
                NetworkError(
                    f"the peer connection {self.pc.connectionState}", endpoint=self.endpoint
                )
            )

    def fail(self, error: RemoteError) -> None:
        """Mark the peer dead and end every stream on it with `error`."""
        if self.error is not None:
            return
        self.error = error
        self._dead.set()
        self.settled.set()
        for channel in list(self.channels):
            channel.fail(error)

    async def _supervise(self) -> None:
        """Send heartbeats; declare the peer dead after `peer_timeout` of silence; then close it."""
        buffered = 0
        while not self._dead.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_interval):
                    await self._dead.wait()
                break
            # Data the server acknowledged is news from it, even when no message came back.
            now_buffered = sum(c.channel.bufferedAmount for c in self.channels)
            if now_buffered < buffered:
                self._heard()
            buffered = now_buffered
            silence = time.monotonic() - self._last_heard
            if silence > self.peer_timeout:
                self.fail(
                    NetworkError(
                        f"the server went silent for {silence:.1f}s", endpoint=self.endpoint
                    )
                )
                break
            if self.control.readyState == "open":
                with contextlib.suppress(*_DEPENDENCY_ERRORS):
                    self.control.send(b"ping")
        await close_peer_connection(self.pc)

    async def open_channel(self, timeout: float) -> FrameChannel[pb.ServerFrame]:
        if self.error is not None:
            raise self.error
        with dependency_errors(self.endpoint):
            channel = self.pc.createDataChannel(STREAM_LABEL)
        frames = FrameChannel(
            channel,
            pb.ServerFrame,
            max_frame_size=self.options.max_message_bytes,
            endpoint=self.endpoint,
            on_activity=self._heard,
        )
        self.channels.add(frames)
        channel.on("close", lambda: self.channels.discard(frames))
        try:
            async with asyncio.timeout(timeout):
                await frames.opened.wait()
        except TimeoutError:
            frames.close()
            raise NetworkError(
                f"no data channel within {timeout}s", endpoint=self.endpoint
            ) from None
        if self.error is not None:
            raise self.error
        if not frames.is_open:
            raise NetworkError("the data channel closed while opening", endpoint=self.endpoint)
        return frames

    async def close(self) -> None:
        """Close the peer connection and wait until aiortc is done with it. Idempotent."""
        if self._closing is None:
            self._closing = asyncio.create_task(
                self._close(), name=f"tether-webrtc-close {self.endpoint}"
            )
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self.fail(NetworkError("the client was closed", endpoint=self.endpoint))
        if self._supervisor is not None:
            await self._supervisor  # it closes the peer connection once the peer is dead
        else:
            await close_peer_connection(self.pc)


class WebRtcClient(PipelineClient):
    """A pipeline server endpoint reached over WebRTC data channels: `http(s)://host:port`.

    `options.ice_servers` (none by default: nothing outside is contacted) and
    `options.ice_host_addresses` (127.0.0.1 by default) choose how the peer connection
    is made; `heartbeat_interval` and `peer_timeout` how fast a dead server is noticed.
    """

    transport = "webrtc"

    def __init__(
        self,
        endpoint: str,
        options: ClientOptions | None = None,
        *,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        peer_timeout: float = PEER_TIMEOUT,
    ) -> None:
        super().__init__(endpoint.rstrip("/"), options)
        url = httpx.URL(self.endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(
                f"a WebRTC endpoint is the server's http(s)://host:port URL, not {endpoint!r}"
            )
        if heartbeat_interval <= 0 or peer_timeout <= heartbeat_interval:
            raise ValueError("peer_timeout must exceed heartbeat_interval, and both be positive")
        self.heartbeat_interval = heartbeat_interval
        self.peer_timeout = peer_timeout
        self._http: HttpClient | None = None
        """For info(), health() and get_manifest(), made at the first of them."""
        self._signaling: httpx.AsyncClient | None = None
        self._peer: _Peer | None = None
        self._connecting = asyncio.Lock()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.local_sdp: str | None = None
        """The offer of the current peer connection (tests read its candidates)."""
        self.remote_sdp: str | None = None
        """The server's answer for the current peer connection."""

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The current peer connection, if one is made (for diagnostics and tests)."""
        return self._peer.pc if self._peer is not None else None

    # ---- calls ----

    async def execute(
        self,
        target: PipelineTarget,
        data: RuntimeData,
        *,
        timeout: float | None = None,
    ) -> list[NodeOutput]:
        """One input through a new stream; DeadlineExceededError once `timeout` seconds pass."""
        header = make_header(target, self._context(), timeout=timeout, token=self._token())
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._open(header, deadline)
                try:
                    await stream.send(0, data)
                    await stream.close_input()
                    return [event async for event in stream if isinstance(event, NodeOutput)]
                finally:
                    await stream.aclose()
        except TimeoutError:
            raise DeadlineExceededError(
                f"no result within {timeout}s", endpoint=self.endpoint
            ) from None

    async def open_stream(
        self,
        target: PipelineTarget,
        *,
        timeout: float | None = None,
    ) -> WebRtcStream:
        """Open a stream and wait for the server to accept it.

        Refusals (unknown pipeline, authentication, limits) are raised here, before any
        input is sent. `timeout` bounds the whole stream, on both sides.
        """
        header = make_header(target, self._context(), timeout=timeout, token=self._token())
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await self._open(header, deadline)
        except TimeoutError:
            raise DeadlineExceededError(
                f"stream not opened within {timeout}s", endpoint=self.endpoint
            ) from None

    async def info(self) -> ServerInfo:
        """`GET /v1/info`, through the HTTP client."""
        return await self._queries().info()

    async def get_manifest(self, pipeline_name: str) -> str:
        """The JSON text of a predefined pipeline's manifest, through the HTTP client."""
        return await self._queries().get_manifest(pipeline_name)

    async def health(self) -> bool:
        """`GET /readyz`, through the HTTP client: False while the server answers, not ready."""
        return await self._queries().health()

    async def aclose(self) -> None:
        """Close the peer connection and the HTTP clients, ending every stream. Idempotent."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.create_task(
                self._aclose(), name=f"tether-webrtc-aclose {self.endpoint}"
            )
        await asyncio.shield(self._closing)

    async def _aclose(self) -> None:
        async with self._connecting:
            peer, self._peer = self._peer, None
        if peer is not None:
            await peer.close()
        if self._signaling is not None:
            await self._signaling.aclose()
        if self._http is not None:
            await self._http.aclose()

    # ---- plumbing ----

    async def _open(self, header: pb.RequestHeader, deadline: float | None) -> WebRtcStream:
        peer = await self._connection()
        channel = await peer.open_channel(self.options.connect_timeout)
        stream = WebRtcStream(channel, self.endpoint, deadline, self.options)
        try:
            await stream._open(header)
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def _connection(self) -> _Peer:
        async with self._connecting:
            if self._closed:
                raise RuntimeError(f"the client for {self.endpoint} is closed")
            if self._peer is not None and not self._peer.alive:
                old, self._peer = self._peer, None
                await old.close()
            if self._peer is None:
                self._peer = await self._connect()
            return self._peer

    async def _connect(self) -> _Peer:
        timeout = self.options.connect_timeout
        pc = RTCPeerConnection(rtc_configuration(self.options.ice_servers))
        try:
            async with asyncio.timeout(timeout):
                peer = await self._negotiate(pc)
        except TimeoutError:
            await close_peer_connection(pc)
            raise NetworkError(
                f"no WebRTC connection within {timeout}s", endpoint=self.endpoint
            ) from None
        except BaseException:
            await close_peer_connection(pc)
            raise
        peer.start()
        return peer

    async def _negotiate(self, pc: RTCPeerConnection) -> _Peer:
        addresses = self.options.ice_host_addresses
        with dependency_errors(self.endpoint):
            control = pc.createDataChannel(CONTROL_LABEL)  # so that the offer negotiates SCTP
            await set_local_description(pc, await pc.createOffer(), addresses)
        offer = pc.localDescription
        if unexpected := unexpected_host_candidates(offer.sdp, addresses):
            raise RuntimeError(f"aioice gathered host candidates outside {addresses}: {unexpected}")
        if not sdp_candidates(offer.sdp):
            raise NetworkError(
                f"no ICE candidate could be gathered on {list(addresses)}", endpoint=self.endpoint
            )
        answer = await self._post_offer(offer)
        peer = _Peer(
            pc, control, self.endpoint, self.options, self.heartbeat_interval, self.peer_timeout
        )
        with description_errors(self.endpoint):
            await pc.setRemoteDescription(answer)
        self.local_sdp, self.remote_sdp = offer.sdp, answer.sdp
        await peer.settled.wait()
        if peer.error is not None:
            raise peer.error
        return peer

    def _queries(self) -> HttpClient:
        if self._closed:
            raise RuntimeError(f"the client for {self.endpoint} is closed")
        if self._http is None:
            self._http = HttpClient(self.endpoint, self.options)
        return self._http

    async def _post_offer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        """Signaling: the offer to `POST /v1/webrtc/offer`, the server's answer back."""
        if self._signaling is None:
            # No proxy from the environment may sit between us and the server (trust_env).
            tls = self.options.tls
            verify: ssl.SSLContext | bool = True
            if tls is not None:
                verify = ssl.create_default_context(cafile=tls.ca_file)
                if tls.cert_file is not None:
                    verify.load_cert_chain(tls.cert_file, tls.key_file)
            self._signaling = httpx.AsyncClient(
                verify=verify, trust_env=False, timeout=self.options.connect_timeout
            )
        token = self._token()  # per connection: a rotated token file takes effect at once
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with dependency_errors(self.endpoint):
            response = await self._signaling.post(
                self.endpoint + OFFER_PATH,
                json={"sdp": offer.sdp, "type": offer.type},
                headers=headers,
            )
        try:
            body = response.json()
            if response.status_code != 200:
                error = json_format.ParseDict(body["error"], pb.Error(), ignore_unknown_fields=True)
                raise error_from_proto(error, self.endpoint)
            return RTCSessionDescription(sdp=body["sdp"], type=body["type"])
        except (ValueError, KeyError, TypeError, json_format.ParseError) as exc:
            error_class = _ERROR_BY_STATUS.get(response.status_code, ProtocolError)
            raise error_class(
                f"HTTP {response.status_code} answering the WebRTC offer", endpoint=self.endpoint
            ) from exc


class WebRtcStream(FrameStream):
    """One stream on its own data channel. Send from one task, iterate events in another."""

    def __init__(
        self,
        channel: FrameChannel[pb.ServerFrame],
        endpoint: str,
        deadline: float | None,
        options: ClientOptions,
    ) -> None:
        super().__init__(endpoint)
        self._channel = channel
        self._deadline = deadline
        self._options = options

    async def _open(self, header: pb.RequestHeader) -> None:
        await self._write_frame(open_frame(header))
        self.request_id = accept_opened(await self._read_frame(), self._endpoint)

    def _after_events(self) -> None:
        self._channel.close()

    async def aclose(self) -> None:
        self._channel.close()

    async def _write_frame(self, frame: pb.ClientFrame) -> None:
        check_outgoing_size(frame.ByteSize(), self._options, self._endpoint)
        with self._deadline_bound():
            async with asyncio.timeout_at(self._deadline):
                await self._channel.send(frame)

    async def _read_frame(self) -> pb.ServerFrame:
        with self._deadline_bound():
            async with asyncio.timeout_at(self._deadline):
                return await self._channel.receive()

    @contextlib.contextmanager
    def _deadline_bound(self) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            raise DeadlineExceededError(
                "stream deadline exceeded", endpoint=self._endpoint
            ) from None
