"""The HTTP client of the pipeline server: unary calls as POSTs, streams over a WebSocket.

    options = ClientOptions(token=static_token("s3cr3t"))
    async with HttpClient("http://127.0.0.1:8080", options) as client:
        outputs = await client.execute(PipelineTarget(name="tts"), Text(text="hi"), timeout=5)
        async with await client.open_stream(PipelineTarget(name="stt"), timeout=60) as stream:
            await stream.send(1, audio)
            await stream.close_input()
            async for event in stream:
                ...

One `httpx.AsyncClient` per client: its pool keeps connections alive between calls, and
streams upgrade a connection of the same client to a WebSocket, driven by httpx-ws's
`AsyncWebSocketSession`. (The upgrade request is made here rather than by `aconnect_ws`,
which closes a refused upgrade's response unread: reading it gives a refusal its typed
error, e.g. AuthenticationError "token expired", instead of a bare status.) Bodies and
frames are protobuf; a failed call answers with an HTTP status and an error envelope (an
ExecuteResponse carrying the typed `tether.v1.Error`), which becomes the same error class
the server raised. Every httpx, httpcore, httpx-ws, wsproto and anyio exception becomes a
`tether.errors.RemoteError` in `_translate`, and only there.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import ssl
from collections.abc import Iterator
from typing import Final, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import httpcore
import httpx
import httpx_ws
import wsproto.events
import wsproto.utilities
from google.protobuf import json_format
from google.protobuf.message import Message

from tether.data import RuntimeData, encode
from tether.data.codec import parse_message
from tether.errors import (
    AuthenticationError,
    DataValidationError,
    DeadlineExceededError,
    NetworkError,
    ProtocolError,
    RemoteError,
    ResourceExhaustedError,
    TetherError,
    UnavailableError,
)
from tether.runtime import NodeOutput
from tether.transport.base import (
    ClientOptions,
    PipelineClient,
    PipelineTarget,
    ServerInfo,
    check_outgoing_size,
)
from tether.transport.wire import (
    JSON,
    PROTOBUF,
    FrameStream,
    accept_opened,
    error_from_proto,
    make_header,
    open_frame,
    outputs_from_response,
    server_info_from_proto,
)
from tether.v1 import pipeline_pb2 as pb

logger = logging.getLogger(__name__)

_QUERY_TIMEOUT: Final = 10.0
"""Seconds `info()`, `get_manifest()` and `health()` may take: a probe must never hang.
Callers that need less wrap the call in `asyncio.timeout`."""

_POOL_LIMITS: Final = httpx.Limits(
    max_connections=128, max_keepalive_connections=32, keepalive_expiry=30
)
"""Concurrent unary calls each hold a connection, and every open stream holds one more."""

_WS_READ_CHUNK: Final = 256 * 1024
"""Bytes read from the socket at a time (httpx-ws calls it max_message_size_bytes, but it is
only the read size: messages of any size are reassembled)."""

_CLOSE_TIMEOUT: Final = 5.0
"""How long aclose() waits for the WebSocket's closing handshake. httpx-ws shields it from
cancellation, and a peer that stopped reading could hold it up for good."""

_DEADLINE_SLACK: Final = 0.005
"""A timeout firing this close to the call's deadline counts as the deadline."""

_ERROR_BY_STATUS: Final[dict[int, type[RemoteError]]] = {
    # Only for answers without a readable error envelope, e.g. from a proxy in between.
    401: AuthenticationError,
    403: AuthenticationError,
    413: ResourceExhaustedError,
    429: ResourceExhaustedError,
    502: UnavailableError,
    503: UnavailableError,
    504: DeadlineExceededError,
}

_ERROR_BY_CLOSE_CODE: Final[dict[int, type[RemoteError]]] = {
    # Why a server may close a stream without an error frame.
    1001: UnavailableError,  # going away: shutting down after its grace period
    1009: ResourceExhaustedError,  # a frame exceeded its message limit
    1012: UnavailableError,  # service restart
    1013: UnavailableError,  # try again later
}

_END: Final = pb.ServerFrame(end=pb.StreamEnd())

_M = TypeVar("_M", bound=Message)


def _upgrade_headers() -> dict[str, str]:
    """What turns `GET /v1/stream` into a WebSocket handshake (RFC 6455 section 4.1)."""
    key = base64.b64encode(secrets.token_bytes(16)).decode()
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
    }


def _translate(exc: BaseException, endpoint: str, deadline: float | None = None) -> BaseException:
    """The Tether error for a failure of httpx, httpcore, httpx-ws, wsproto or anyio.

    `deadline` (event-loop time) tells a timeout of the call's own deadline, which is a
    DeadlineExceededError, from a connect timeout or a stall before it, which is a
    NetworkError: the endpoint is unreachable, and another one may do better.

    Anything else (a bug, a cancellation) comes back as it is, to be raised unchanged.
    """
    if isinstance(exc, BaseExceptionGroup):  # what an anyio task group (httpx-ws) raises
        return _translate(exc.exceptions[0], endpoint, deadline)
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, TimeoutError | httpx.TimeoutException | httpcore.TimeoutException):
        now = asyncio.get_running_loop().time()
        if deadline is not None and now >= deadline - _DEADLINE_SLACK:
            return DeadlineExceededError("deadline exceeded", endpoint=endpoint)
        connecting = isinstance(exc, httpx.ConnectTimeout | httpcore.ConnectTimeout)
        what = "connecting" if connecting else "waiting for the server"
        return NetworkError(f"timed out {what} ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, httpx_ws.WebSocketDisconnect):
        error_class = _ERROR_BY_CLOSE_CODE.get(exc.code, NetworkError)
        reason = f": {exc.reason}" if exc.reason else ""
        message = f"the server closed the stream (code {exc.code}{reason})"
        return error_class(message, endpoint=endpoint)
    if isinstance(
        exc,
        httpx_ws.WebSocketInvalidTypeReceived
        | wsproto.utilities.RemoteProtocolError
        | httpx.DecodingError,
    ):
        return ProtocolError(
            f"the server broke the protocol ({type(exc).__name__}: {exc})", endpoint=endpoint
        )
    if isinstance(exc, _NETWORK_FAILURES):
        what = "cannot connect" if isinstance(exc, httpx.ConnectError) else "connection failed"
        return NetworkError(f"{what}: {_reason(exc)} ({type(exc).__name__})", endpoint=endpoint)
    if isinstance(exc, _OTHER_FAILURES):
        return ProtocolError(f"HTTP call failed ({type(exc).__name__}: {exc})", endpoint=endpoint)
    return exc


def _reason(exc: BaseException) -> str:
    """The most telling words for a network failure: the OS's, when it said any
    ("Connection refused" rather than anyio's "All connection attempts failed")."""
    innermost: BaseException = exc
    while (cause := innermost.__cause__ or innermost.__context__) is not None:
        innermost = cause
    if isinstance(innermost, ssl.SSLError):
        return innermost.reason or str(innermost)  # CERTIFICATE_VERIFY_FAILED, not an errno
    if isinstance(innermost, OSError) and innermost.errno:
        return os.strerror(innermost.errno)
    return str(exc) or "the connection broke"


_NETWORK_FAILURES: Final = (
    # httpx's RemoteProtocolError is here too: mostly "Server disconnected without sending a
    # response" or a body cut short, i.e. a connection that broke, which another try may survive.
    httpx.TransportError,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ConnectionNotAvailable,
    httpcore.ProxyError,
    httpx_ws.HTTPXWSException,
    wsproto.utilities.LocalProtocolError,  # writing to a WebSocket that is already closing
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    OSError,
)

_OTHER_FAILURES: Final = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpcore.UnsupportedProtocol,
    wsproto.utilities.ProtocolError,
)


@contextlib.contextmanager
def _http_errors(endpoint: str, deadline: float | None = None) -> Iterator[None]:
    """Raise what `_translate` makes of a failure inside, chained to the original."""
    try:
        yield
    except TetherError:
        raise
    except Exception as exc:
        translated = _translate(exc, endpoint, deadline)
        if translated is exc:
            raise
        raise translated from exc


def _error_from_answer(status: int, content_type: str, body: bytes, endpoint: str) -> RemoteError:
    """The error a non-2xx answer stands for: its envelope's typed error, else its status."""
    envelope = pb.ExecuteResponse()
    with contextlib.suppress(DataValidationError, json_format.ParseError, ValueError):
        if content_type == PROTOBUF:
            envelope = parse_message(body, pb.ExecuteResponse, "error_envelope")
        elif content_type == JSON:  # the server answers JSON when it cannot tell what we want
            json_format.Parse(body, envelope, ignore_unknown_fields=True)
    if envelope.HasField("error"):
        return error_from_proto(envelope.error, endpoint)
    error_class = _ERROR_BY_STATUS.get(status, ProtocolError)
    snippet = body[:120].decode("utf-8", errors="replace").strip()
    return error_class(f"HTTP {status}" + (f": {snippet}" if snippet else ""), endpoint=endpoint)


def _parse(raw: bytes, message_type: type[_M], endpoint: str) -> _M:
    try:
        return parse_message(raw, message_type, message_type.DESCRIPTOR.name)
    except DataValidationError as exc:
        raise ProtocolError(f"the server sent a malformed {exc.field}", endpoint=endpoint) from exc


def _ssl_context(options: ClientOptions) -> ssl.SSLContext:
    tls = options.tls
    context = ssl.create_default_context(cafile=tls.ca_file if tls else None)
    if tls is not None and (tls.cert_file is None) != (tls.key_file is None):
        raise ValueError("ClientTls needs both cert_file and key_file for mutual TLS, or neither")
    if tls is not None and tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class HttpClient(PipelineClient):
    """A pipeline server endpoint reached over HTTP: `http://host:port` or `https://host:port`.

    `https` is verified against `options.tls.ca_file` (the system store when None), presenting
    `options.tls.cert_file`/`key_file` to servers that require mutual TLS. A path after the
    port is kept as a prefix, for servers behind a gateway (`https://gw/tether`).

    Environment proxies (`HTTP_PROXY`...) are ignored: a pipeline hop goes straight to the
    endpoint it was given, as the gRPC and WebRTC clients do.
    """

    transport = "http"

    def __init__(self, endpoint: str, options: ClientOptions | None = None) -> None:
        super().__init__(endpoint, options)
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError(
                f"an HTTP endpoint is http://host:port or https://host:port, not {endpoint!r}"
            )
        self._base = endpoint.rstrip("/")
        self._http = httpx.AsyncClient(
            # Plain http never uses TLS (redirects are not followed), and httpx's default
            # context would load the CA bundle for nothing: 15 ms per client.
            verify=_ssl_context(self.options) if url.scheme == "https" else False,
            limits=_POOL_LIMITS,
            timeout=httpx.Timeout(_QUERY_TIMEOUT, connect=self.options.connect_timeout),
            trust_env=False,
        )
        self._streams: set[HttpStream] = set()
        self._closed = False
        self._closing: asyncio.Event | None = None

    # ---- calls ----

    async def execute(
        self,
        target: PipelineTarget,
        data: RuntimeData,
        *,
        timeout: float | None = None,
    ) -> list[NodeOutput]:
        deadline = self._deadline(timeout)
        request = pb.ExecuteRequest(
            header=make_header(target, self._context(), timeout=timeout), input=encode(data)
        )
        body = request.SerializeToString()
        check_outgoing_size(len(body), self.options, self.endpoint)
        raw = await self._call("POST", "/v1/execute", deadline, content=body)
        return outputs_from_response(_parse(raw, pb.ExecuteResponse, self.endpoint), self.endpoint)

    async def open_stream(
        self,
        target: PipelineTarget,
        *,
        timeout: float | None = None,
    ) -> HttpStream:
        """Open a stream and wait for the server to accept it.

        Refusals (unknown pipeline, authentication, limits) are raised here, before any
        input is sent, so a caller can move to another endpoint with nothing to replay.
        """
        self._check_open()
        header = make_header(target, self._context(), timeout=timeout)
        stream = HttpStream(self, header, self._deadline(timeout))
        self._streams.add(stream)
        try:
            await stream._open()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def info(self) -> ServerInfo:
        raw = await self._call("GET", "/v1/info", self._deadline(_QUERY_TIMEOUT))
        return server_info_from_proto(_parse(raw, pb.ServerInfo, self.endpoint))

    async def get_manifest(self, pipeline_name: str) -> str:
        """The JSON text of a predefined pipeline's manifest (for cycle analysis across servers)."""
        path = f"/v1/pipelines/{quote(pipeline_name, safe='')}/manifest"
        raw = await self._call("GET", path, self._deadline(_QUERY_TIMEOUT))
        return _parse(raw, pb.ManifestResponse, self.endpoint).manifest

    async def health(self) -> bool:
        """GET /readyz: True when ready, False while it answers but is not (draining).

        NetworkError when the server cannot be reached.
        """
        self._check_open()
        deadline = self._deadline(_QUERY_TIMEOUT)
        with _http_errors(self.endpoint, deadline):
            async with asyncio.timeout_at(deadline):
                response = await self._http.get(f"{self._base}/readyz")
        return response.status_code == 200

    async def aclose(self) -> None:
        """Close open streams, then the connection pool. Idempotent."""
        if self._closing is not None:
            await self._closing.wait()
            return
        self._closing = asyncio.Event()
        self._closed = True
        try:
            for stream in list(self._streams):
                await stream.aclose()
            await self._http.aclose()
        finally:
            self._closing.set()

    # ---- plumbing ----

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the client for {self.endpoint} is closed")

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": PROTOBUF, **(extra or {})}
        token = self._token()  # per call: a rotated token file takes effect at once
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _timeout(self, deadline: float | None) -> httpx.Timeout:
        """httpx's per-phase timeouts: connect is bounded on its own, the rest by the deadline
        (which `asyncio.timeout_at` enforces over the whole call)."""
        remaining = (
            None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        )
        connect = self.options.connect_timeout
        return httpx.Timeout(
            remaining, connect=connect if remaining is None else min(connect, remaining)
        )

    async def _call(
        self, method: str, path: str, deadline: float | None, *, content: bytes | None = None
    ) -> bytes:
        """The body of a 200 answer; any other answer raises the error it carries."""
        self._check_open()
        extra = {"Content-Type": PROTOBUF} if content is not None else {}
        request = self._http.build_request(
            method,
            self._base + path,
            content=content,
            headers=self._headers(extra),
            timeout=self._timeout(deadline),
        )
        with _http_errors(self.endpoint, deadline):
            async with asyncio.timeout_at(deadline):
                response = await self._http.send(request, stream=True)
                try:
                    body = await self._read_body(response)
                finally:
                    await response.aclose()
        if response.status_code != 200:
            content_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
            raise _error_from_answer(response.status_code, content_type, body, self.endpoint)
        return body

    async def _read_body(self, response: httpx.Response) -> bytes:
        """The whole body of an answer, refused when it is over max_message_bytes.

        The declared length is checked before reading (aiohttp always declares it). A body
        without one is measured once read: stopping httpx's nested body iterators midway
        would leave them for the garbage collector to close in a task of its own.
        """
        limit = self.options.max_message_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResourceExhaustedError(
                f"an answer of {declared} bytes exceeds max_message_bytes ({limit})",
                endpoint=self.endpoint,
            )
        body = await response.aread()
        if len(body) > limit:
            raise ResourceExhaustedError(
                f"an answer of {len(body)} bytes exceeds max_message_bytes ({limit})",
                endpoint=self.endpoint,
            )
        return body


class HttpStream(FrameStream):
    """One stream over a WebSocket. Send from one task, iterate events in another.

    A task of its own owns the WebSocket session (httpx-ws runs it in an anyio task group,
    which must be entered and left by the same task) and reads every server frame into a
    queue as it arrives. Reading eagerly means that a caller who sends all its inputs
    before iterating never deadlocks against a server that waits for its outputs to be
    read; the queue holds what the caller has not taken yet.

    The client sends no keepalive pings: aiohttp answers pings only while the server reads
    the stream, and a server busy with a long node would miss them. The server pings
    instead, and the stream's deadline bounds a server that stops answering.
    """

    def __init__(
        self, client: HttpClient, header: pb.RequestHeader, deadline: float | None
    ) -> None:
        super().__init__(client.endpoint)
        self._client = client
        self._header = header
        self._deadline = deadline
        self._frames: asyncio.Queue[pb.ServerFrame | RemoteError] = asyncio.Queue()
        self._accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._session: httpx_ws.AsyncWebSocketSession | None = None
        self._owner: asyncio.Task[None] | None = None
        self._failure: RemoteError | None = None
        """Why the stream ended early, once known: sends raise it, not a bare NetworkError."""
        self._ended = False
        """The caller has read the `end` frame."""
        self._end_received = False
        """The owner task has queued the `end` frame."""

    async def _open(self) -> None:
        self._owner = owner = asyncio.create_task(
            self._own_session(), name=f"tether-http-stream {self._endpoint}"
        )
        # A stream that ended on its own leaves the client's books; aclose() is then optional.
        owner.add_done_callback(lambda _: self._client._streams.discard(self))
        try:
            async with asyncio.timeout_at(self._deadline):
                await asyncio.shield(self._accepted)
        except TimeoutError:
            raise DeadlineExceededError(
                "deadline exceeded opening the stream", endpoint=self._endpoint
            ) from None
        self.request_id = accept_opened(await self._read_frame(), self._endpoint)

    async def aclose(self) -> None:
        """Abandon the stream: the owner task closes the WebSocket and ends. Idempotent."""
        self._client._streams.discard(self)
        owner = self._owner
        if owner is not None and not owner.done():
            owner.cancel()
            # Wait even when our caller is cancelled, so no task outlives the stream.
            await asyncio.shield(asyncio.wait({owner}, timeout=_CLOSE_TIMEOUT))
            if not owner.done():
                logger.warning(
                    "stream to %s is still closing after %.0fs", self._endpoint, _CLOSE_TIMEOUT
                )
        if not self._ended:
            # Wake whoever still waits for a frame in another task.
            self._fail(NetworkError("the stream was closed by the client"))

    # ---- the owner task ----

    async def _own_session(self) -> None:
        client = self._client
        try:
            with _http_errors(self._endpoint, self._deadline):
                async with client._http.stream(
                    "GET",
                    f"{client._base}/v1/stream",
                    headers=client._headers(_upgrade_headers()),
                    timeout=client._timeout(self._deadline),
                ) as response:
                    if response.status_code != 101:
                        body = await client._read_body(response)
                        content_type = (
                            response.headers.get("Content-Type", "").partition(";")[0].strip()
                        )
                        raise _error_from_answer(
                            response.status_code, content_type, body, self._endpoint
                        )
                    session = httpx_ws.AsyncWebSocketSession(
                        response.extensions["network_stream"],
                        max_message_size_bytes=_WS_READ_CHUNK,
                        keepalive_ping_interval_seconds=None,
                        response=response,
                    )
                    async with session:
                        self._session = session
                        await session.send_bytes(open_frame(self._header).SerializeToString())
                        if not self._accepted.done():
                            self._accepted.set_result(None)
                        await self._read_frames(session)
        except RemoteError as exc:
            self._fail(exc)
        except Exception as exc:
            # A bug, not a transport failure: say so loudly, but never leave a caller waiting.
            logger.exception("stream to %s failed unexpectedly", self._endpoint)
            error = ProtocolError(f"the stream failed unexpectedly ({type(exc).__name__}: {exc})")
            error.__cause__ = exc
            self._fail(error)
        finally:
            self._session = None
            if not self._end_received:
                # However the owner ended (cancelled by aclose, or by the loop), readers wake up.
                self._fail(NetworkError("the stream was closed by the client"))

    async def _read_frames(self, session: httpx_ws.AsyncWebSocketSession) -> None:
        """Queue every server frame until the server ends the stream or fails it."""
        limit = self._client.options.max_message_bytes
        while True:
            message = await session.receive()
            if not isinstance(message, wsproto.events.BytesMessage):
                raise ProtocolError(
                    f"the server sent a {type(message).__name__}, not a binary frame"
                )
            if len(message.data) > limit:
                raise ResourceExhaustedError(f"a stream frame exceeds max_message_bytes ({limit})")
            frame = _parse(bytes(message.data), pb.ServerFrame, self._endpoint)
            kind = frame.WhichOneof("kind")
            if kind == "error":
                self._fail(error_from_proto(frame.error, self._endpoint))
                return
            self._frames.put_nowait(frame)
            if kind == "end":
                self._end_received = True
                return

    def _fail(self, error: RemoteError) -> None:
        """The stream has failed: every later read and send raises the first error."""
        if self._failure is None:
            if error.endpoint is None:
                error.endpoint = self._endpoint
            self._failure = error
            self._frames.put_nowait(error)
        if not self._accepted.done():
            self._accepted.set_exception(self._failure)
            self._accepted.exception()  # retrieved: whoever waits gets it; nobody else must

    # ---- plumbing ----

    async def _read_frame(self) -> pb.ServerFrame:
        if self._ended:  # nothing comes after the end: reading again must not wait for it
            return _END
        try:
            async with asyncio.timeout_at(self._deadline):
                item = await self._frames.get()
        except TimeoutError:
            self._fail(DeadlineExceededError("stream deadline exceeded", endpoint=self._endpoint))
            await self.aclose()
            item = self._frames.get_nowait()  # a frame that just came, or the failure queued last
        if isinstance(item, RemoteError):
            self._frames.put_nowait(item)  # every later read fails the same way
            raise item
        if item.WhichOneof("kind") == "end":
            self._ended = True
        return item

    async def _write_frame(self, frame: pb.ClientFrame) -> None:
        raw = frame.SerializeToString()
        check_outgoing_size(len(raw), self._client.options, self._endpoint)
        if self._failure is not None:
            raise self._failure
        session = self._session
        if session is None:
            raise NetworkError("the stream's connection is closed", endpoint=self._endpoint)
        try:
            # The deadline bounds a write that a server no longer reading would block forever.
            with _http_errors(self._endpoint, self._deadline):
                async with asyncio.timeout_at(self._deadline):
                    await session.send_bytes(raw)
        except DeadlineExceededError as exc:
            self._fail(exc)
            await self.aclose()  # a write cut short has broken the framing: nothing can follow
            raise
        except NetworkError:
            # The connection broke: the server may have said why, in a frame still arriving.
            if self._owner is not None:
                await asyncio.wait({self._owner}, timeout=self._client.options.connect_timeout)
            if self._failure is not None:
                raise self._failure from None
            raise
