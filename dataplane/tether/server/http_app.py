"""The pipeline server's HTTP face: unary calls, WebSocket streams, discovery and probes.

    POST /v1/execute                  ExecuteRequest -> ExecuteResponse (protobuf, or JSON)
    GET  /v1/stream                   WebSocket: ClientFrame in, ServerFrame out
    GET  /v1/info                     ServerInfo
    GET  /v1/pipelines/{name}/manifest ManifestResponse
    GET  /healthz                     200 while the process serves
    GET  /readyz                      200 when ready, 503 while draining
    GET  /metrics                     Prometheus exposition
    POST /v1/webrtc/offer             (when WebRTC is enabled; see tether.server.webrtc)

Bodies are `application/x-protobuf`, or the protobuf JSON mapping (`application/json`,
bytes fields in base64) so that people can use curl. A `/v1` route that fails answers
with an HTTP status chosen from the error code *and* the error envelope, an
ExecuteResponse whose `error` holds the typed `tether.v1.Error`, so a client maps the
failure exactly rather than guessing from the status:

    {"error": {"code": "ERROR_CODE_UNKNOWN_PIPELINE", "message": "no pipeline named ..."}}

Only parsing, authentication and framing live here; resolution, limits, deadlines and
metrics happen once, in `PipelineHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, TypeVar

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from google.protobuf import json_format
from google.protobuf.message import Message

from tether.data.codec import parse_message
from tether.errors import (
    AuthenticationError,
    DataValidationError,
    NetworkError,
    ProtocolError,
    RemoteError,
    ResourceExhaustedError,
    TetherError,
    UnavailableError,
)
from tether.server.auth import Principal
from tether.server.config import ServerConfig
from tether.server.host import PipelineHost
from tether.server.metrics import CONTENT_TYPE_LATEST
from tether.transport.wire import JSON, PROTOBUF, error_to_proto
from tether.v1 import pipeline_pb2 as pb

logger = logging.getLogger(__name__)

_PROTOBUF_ALIASES: Final = frozenset({PROTOBUF, "application/protobuf", "application/octet-stream"})

TRANSPORT: Final = "http"

_HEARTBEAT_SECONDS: Final = 20.0
"""The server pings every stream this often and drops the ones whose pong is late (half of
it): a client that vanished without a FIN must not hold a stream slot. aiohttp resets the
timer on any incoming data, so the ping costs nothing on a busy stream."""

_OPEN_FRAME_SECONDS: Final = 10.0
"""How long an upgraded WebSocket may stay silent before its `open` frame."""

_CLOSE_HANDSHAKE_SECONDS: Final = 2.0
"""How long closing a WebSocket waits for the client's close frame."""

_CUT_OFF_SECONDS: Final = _CLOSE_HANDSHAKE_SECONDS + 1.0
"""How long the calls and streams cut off at shutdown get to answer and close."""

_STATUS_BY_CODE: Final[dict[int, int]] = {
    pb.ERROR_CODE_EXECUTION: 500,
    pb.ERROR_CODE_VALIDATION: 400,
    pb.ERROR_CODE_UNKNOWN_PIPELINE: 404,
    pb.ERROR_CODE_INCOMPATIBLE_MANIFEST: 422,
    pb.ERROR_CODE_UNAUTHENTICATED: 401,
    pb.ERROR_CODE_RESOURCE_EXHAUSTED: 429,
    pb.ERROR_CODE_DEADLINE_EXCEEDED: 504,
    pb.ERROR_CODE_CIRCULAR_REFERENCE: 508,
    pb.ERROR_CODE_UNAVAILABLE: 503,
    pb.ERROR_CODE_INTERNAL: 500,
}


def http_status(error: pb.Error) -> int:
    """The HTTP status of a failed request, from its wire error code."""
    return _STATUS_BY_CODE.get(error.code, 500)


def build_http_app(host: PipelineHost, config: ServerConfig) -> web.Application:
    """The aiohttp application serving `host`; the caller runs it (AppRunner, TCPSite)."""
    app = web.Application(client_max_size=config.limits.max_message_bytes)
    handlers = _Handlers(host, config)
    app.add_routes(
        [
            web.post("/v1/execute", handlers.execute),
            web.get("/v1/stream", handlers.stream),
            web.get("/v1/info", handlers.info),
            web.get("/v1/pipelines/{name}/manifest", handlers.manifest),
            web.get("/healthz", handlers.healthz),
            web.get("/readyz", handlers.readyz),
            web.get("/metrics", handlers.metrics),
        ]
    )
    # aiohttp runs these after `PipelineServer.stop` drained the host: by then, whatever
    # still runs has had its grace period.
    app.on_shutdown.append(handlers.cut_off)
    if config.webrtc.enabled:
        # Imported only when enabled: aiortc is heavy, and a server without WebRTC needs none of it.
        from tether.server.webrtc import WebRtcEndpoint

        endpoint = WebRtcEndpoint(host, config.webrtc)
        app.add_routes(endpoint.routes())

        async def close_webrtc(_: web.Application) -> None:
            await endpoint.close()

        app.on_shutdown.append(close_webrtc)
    return app


class _Handlers:
    def __init__(self, host: PipelineHost, config: ServerConfig) -> None:
        self.host = host
        self.max_message_bytes = config.limits.max_message_bytes
        self.websockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        """Streams open now, closed with 1001 (going away) at shutdown."""
        self._running: set[asyncio.Task[Any]] = set()
        """Handlers inside the host (a unary call or a stream): shutdown cancels them."""
        self._cut: set[asyncio.Task[Any]] = set()
        """The handlers `cut_off` cancelled, to tell that cancellation from any other."""

    # ---- unary ----

    async def execute(self, request: web.Request) -> web.Response:
        content_type = request.content_type
        if content_type == JSON:
            as_json = True
        elif content_type in _PROTOBUF_ALIASES:
            as_json = False
        else:
            return self._refuse(
                "unary",
                pb.Error(
                    code=pb.ERROR_CODE_VALIDATION,
                    message=f"unsupported content type {content_type!r}; send {PROTOBUF} or {JSON}",
                ),
                as_json=True,
                status=415,
            )
        if (request.content_length or 0) > self.max_message_bytes:
            return self._refuse(
                "unary", self._too_large(request.content_length), as_json=as_json, status=413
            )

        authorization = request.headers.get("Authorization")
        # A header token is checked before the body is even read; a body token after parsing.
        if authorization is not None and (refusal := self._authenticate(authorization, as_json)):
            return refusal
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse("unary", self._too_large(None), as_json=as_json, status=413)
        try:
            message = _parse(raw, pb.ExecuteRequest, as_json, "execute_request")
        except DataValidationError as exc:
            # Unauthenticated callers learn nothing about their body, not even that it is corrupt.
            if authorization is None and (refusal := self._authenticate(None, as_json)):
                return refusal
            return self._refuse("unary", error_to_proto(exc), as_json=as_json)
        if authorization is None and (
            refusal := self._authenticate(message.header.authorization or None, as_json)
        ):
            return refusal
        message.header.ClearField("authorization")  # the token goes no further than here

        try:
            with self._cut_off_at_shutdown():
                response = await self.host.execute(message, transport=TRANSPORT)
        except _CutOff:
            error = UnavailableError("the server shut down before the request finished")
            response = pb.ExecuteResponse(
                request_id=message.header.request_id, error=error_to_proto(error)
            )
        status = http_status(response.error) if response.HasField("error") else 200
        return _message_response(response, as_json=as_json, status=status)

    # ---- streaming ----

    async def stream(self, request: web.Request) -> web.StreamResponse:
        as_json = not _accepts_protobuf(request)
        principal: Principal | None = None
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            try:
                principal = self.host.authenticate(authorization)
            except AuthenticationError as exc:
                return self._refuse("stream", error_to_proto(exc), as_json=as_json)
        if not self.host.ready:
            error = error_to_proto(UnavailableError("server is shutting down"))
            return self._refuse("stream", error, as_json=as_json)
        ws = web.WebSocketResponse(
            max_msg_size=self.max_message_bytes,
            heartbeat=_HEARTBEAT_SECONDS,
            timeout=_CLOSE_HANDSHAKE_SECONDS,
            compress=False,  # media does not deflate; it would only cost CPU
        )
        if not ws.can_prepare(request).ok:
            error = pb.Error(
                code=pb.ERROR_CODE_VALIDATION, message="GET /v1/stream needs a WebSocket upgrade"
            )
            return self._refuse("stream", error, as_json=as_json)
        await ws.prepare(request)
        self.websockets.add(ws)
        session = _StreamSession(self, ws, principal)
        try:
            with self._cut_off_at_shutdown():
                await session.run()
        except _CutOff:
            await session.cut_off()
        finally:
            await ws.close()
            self.websockets.discard(ws)
        return ws

    # ---- shutdown ----

    @contextlib.contextmanager
    def _cut_off_at_shutdown(self) -> Iterator[None]:
        """Run the block, unless `cut_off` cancels it first: then it raises `_CutOff`."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            yield
        except asyncio.CancelledError:
            # A client that hangs up cancels its handler too (handler_cancellation): only
            # a cancellation that `cut_off` alone made becomes an answer.
            if task not in self._cut or task.uncancel() > 0:
                raise
            raise _CutOff from None
        finally:
            self._running.discard(task)
            self._cut.discard(task)

    async def cut_off(self, _: web.Application) -> None:
        """At shutdown, after the drain: end the calls and streams still running.

        A unary call is answered 503 with an unavailable error, a stream gets an
        unavailable error frame and a close with 1001 (going away): the clients retry
        elsewhere. Never raises, so that the other shutdown hooks run.
        """
        running = [task for task in self._running if not task.done()]
        if running:
            logger.info("cutting off %d HTTP call(s) and stream(s) still running", len(running))
            for task in running:
                self._cut.add(task)
                task.cancel()
            stuck = (await asyncio.wait(running, timeout=_CUT_OFF_SECONDS))[1]
            if stuck:
                logger.warning("%d HTTP handler(s) did not end when cut off", len(stuck))
        # Streams not inside the host (still opening, or closing) go too.
        await asyncio.gather(
            *(_going_away(ws) for ws in self.websockets if not ws.closed), return_exceptions=True
        )

    # ---- discovery ----

    async def info(self, request: web.Request) -> web.Response:
        as_json = not _accepts_protobuf(request)
        if refusal := self._authenticate(request.headers.get("Authorization"), as_json, kind=None):
            return refusal
        return _message_response(self.host.info(), as_json=as_json)

    async def manifest(self, request: web.Request) -> web.Response:
        as_json = not _accepts_protobuf(request)
        if refusal := self._authenticate(request.headers.get("Authorization"), as_json, kind=None):
            return refusal
        try:
            manifest = self.host.manifest_of(request.match_info["name"])
        except TetherError as exc:
            return self._refuse(None, error_to_proto(exc), as_json=as_json)
        return _message_response(manifest, as_json=as_json)

    # ---- probes ----

    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, _: web.Request) -> web.Response:
        if self.host.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="draining\n")

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=self.host.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # ---- refusals ----

    def _authenticate(
        self, authorization: str | None, as_json: bool, kind: str | None = "unary"
    ) -> web.Response | None:
        """None when the caller may proceed, else the 401 to answer."""
        try:
            self.host.authenticate(authorization)
        except AuthenticationError as exc:
            return self._refuse(kind, error_to_proto(exc), as_json=as_json)
        return None

    def _too_large(self, size: int | None) -> pb.Error:
        given = f" of {size} bytes" if size is not None else ""
        limit = self.max_message_bytes
        return error_to_proto(
            ResourceExhaustedError(f"request body{given} exceeds the {limit}-byte limit")
        )

    def _refuse(
        self,
        kind: str | None,
        error: pb.Error,
        *,
        as_json: bool,
        status: int | None = None,
    ) -> web.Response:
        """An error answer for a request the host never saw.

        Unary calls and streams (`kind`) are counted like the ones the host served, so that
        refusals show in `tether_server_requests_total`; discovery calls (None) are not counted.
        """
        if kind is not None:
            self.host.record_refusal(TRANSPORT, kind, error)
        response = _message_response(
            pb.ExecuteResponse(error=error), as_json=as_json, status=status or http_status(error)
        )
        if error.code == pb.ERROR_CODE_UNAUTHENTICATED:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response


class _StreamSession:
    """One WebSocket stream: the open frame, authentication, then `host.stream`."""

    def __init__(
        self, handlers: _Handlers, ws: web.WebSocketResponse, principal: Principal | None
    ) -> None:
        self.handlers = handlers
        self.host = handlers.host
        self.ws = ws
        self.principal = principal
        self.as_json = False
        """Answers follow the form of the `open` frame: JSON text for people, else protobuf."""

    async def run(self) -> None:
        try:
            first = await self._first_frame()
        except NetworkError:
            return  # gone before saying anything: nothing to answer
        except (DataValidationError, RemoteError) as exc:
            await self._fail(error_to_proto(exc))
            return
        header = first.open.header
        if self.principal is None:
            try:
                self.principal = self.host.authenticate(header.authorization or None)
            except AuthenticationError as exc:
                await self._fail(error_to_proto(exc))
                return
        header.ClearField("authorization")
        await self.host.stream(
            header, self._frames(), self._send, transport=TRANSPORT, principal=self.principal
        )

    async def _first_frame(self) -> pb.ClientFrame:
        try:
            message = await self.ws.receive(timeout=_OPEN_FRAME_SECONDS)
        except TimeoutError:
            raise ProtocolError(f"no open frame within {_OPEN_FRAME_SECONDS:.0f}s") from None
        self.as_json = message.type == WSMsgType.TEXT
        frame = self._parse(message)
        if frame is None:
            raise NetworkError("the client left before opening the stream")
        if frame.WhichOneof("kind") != "open":
            raise ProtocolError(
                f"the first frame must be open, not {frame.WhichOneof('kind') or 'empty'}"
            )
        return frame

    async def _frames(self) -> AsyncIterator[pb.ClientFrame]:
        """The client's frames after `open`, until it closes the socket.

        A corrupt frame raises DataValidationError, which the host answers with an error frame.
        """
        while True:
            frame = self._parse(await self.ws.receive())
            if frame is None:
                return
            yield frame

    def _parse(self, message: WSMessage) -> pb.ClientFrame | None:
        """A client frame; None once the socket is closing."""
        if message.type == WSMsgType.BINARY:
            return parse_message(message.data, pb.ClientFrame, "client_frame")
        if message.type == WSMsgType.TEXT:
            return _parse(message.data, pb.ClientFrame, True, "client_frame")
        if message.type == WSMsgType.ERROR:
            # aiohttp has already closed the socket (1009 for an oversized message).
            if self.ws.close_code == WSCloseCode.MESSAGE_TOO_BIG:
                limit = self.handlers.max_message_bytes
                raise ResourceExhaustedError(f"a stream frame exceeds the {limit}-byte limit")
            raise NetworkError(f"WebSocket failed: {message.data}")
        return None  # CLOSE, CLOSING, CLOSED

    async def _send(self, frame: pb.ServerFrame) -> None:
        if self.ws.closed:
            raise NetworkError("the client went away")
        try:
            if self.as_json:
                await self.ws.send_str(json_format.MessageToJson(frame, indent=None))
            else:
                await self.ws.send_bytes(frame.SerializeToString())
        except (ConnectionError, RuntimeError) as exc:
            raise NetworkError(f"the client went away ({type(exc).__name__})") from exc

    async def cut_off(self) -> None:
        """Tell the client that shutdown cut its stream off, and close it with 1001."""
        error = UnavailableError("the server shut down before the stream finished")
        with contextlib.suppress(NetworkError):
            await self._send(pb.ServerFrame(error=error_to_proto(error)))
        await _going_away(self.ws)

    async def _fail(self, error: pb.Error) -> None:
        """Refuse the stream with an error frame, counted like the host's own failures."""
        self.host.record_refusal(TRANSPORT, "stream", error)
        with contextlib.suppress(NetworkError):
            await self._send(pb.ServerFrame(error=error))


class _CutOff(Exception):
    """The handler's work was cancelled by `cut_off` at shutdown."""


async def _going_away(ws: web.WebSocketResponse) -> None:
    """Close a stream with 1001, which clients read as unavailable: try another server."""
    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


_M = TypeVar("_M", bound=Message)


def _parse(raw: bytes | str, message_type: type[_M], as_json: bool, field: str) -> _M:
    """Parse a body or frame in either form; any failure is a DataValidationError on `field`."""
    if not as_json:
        return parse_message(raw if isinstance(raw, bytes) else raw.encode(), message_type, field)
    message = message_type()
    try:
        json_format.Parse(raw, message)
    except (json_format.ParseError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataValidationError(field, f"invalid protobuf JSON: {exc}") from exc
    return message


def _accepts_protobuf(request: web.Request) -> bool:
    return any(alias in request.headers.get("Accept", "") for alias in _PROTOBUF_ALIASES)


def _message_response(message: Message, *, as_json: bool, status: int = 200) -> web.Response:
    if as_json:
        return web.Response(
            status=status, text=json_format.MessageToJson(message), content_type=JSON
        )
    return web.Response(status=status, body=message.SerializeToString(), content_type=PROTOBUF)
