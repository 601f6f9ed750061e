"""WebRTC for the pipeline server: signaling on the HTTP port, streams on data channels.

    endpoint = WebRtcEndpoint(host, config.webrtc)
    app.add_routes(endpoint.routes())      # POST /v1/webrtc/offer, GET /v1/webrtc/demo
    ...
    await endpoint.close()                 # on shutdown: every peer connection

`POST /v1/webrtc/offer` takes `{"sdp": ..., "type": "offer"}` and answers the same
shape, or an error as `{"error": <tether.v1.Error in JSON>}` with a matching HTTP
status. The `Authorization` header is checked before any peer connection exists.

Each offer gets its own peer connection, configured with exactly the ICE servers of
`webrtc.iceServers` (none by default) and host candidates on `webrtc.hostAddresses`
only (see `tether.transport.ice`). Every data channel the peer opens is one stream (the
wire format is in `tether.transport.webrtc`): its first frame must be `open`, whose
header is authenticated on its own, since tokens rotate and expire while a peer
connection lives; then `PipelineHost.stream` serves it, and the channel is closed after
its `end` or `error`. A channel labelled `tether-control` carries heartbeats instead,
each echoed back.

A peer is closed, with its streams, when its connection fails or closes, when it has
not connected within `_SETUP_TIMEOUT`, when a client that sent heartbeats falls silent
for `_SILENCE_TIMEOUT`, and when the endpoint closes.

`GET /v1/webrtc/demo?pipeline=NAME&text=hello[#token=T]` serves a page that runs the
pipeline from a browser over a data channel, using the JSON form of the frames. The
bearer token, if the server needs one, goes in the URL fragment: browsers never send a
fragment, so the token stays out of proxy and server logs and of `Referer` headers, and
the page removes it from the address bar (and so from the history) once read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from google.protobuf import json_format

from tether.errors import (
    NetworkError,
    ProtocolError,
    ResourceExhaustedError,
    TetherError,
    UnavailableError,
)
from tether.server.config import WebRtcConfig
from tether.server.host import PipelineHost
from tether.server.http_app import http_status
from tether.transport.ice import (
    normalize_addresses,
    rtc_configuration,
    sdp_candidates,
    set_local_description,
    unexpected_host_candidates,
)
from tether.transport.webrtc import (
    CONTROL_LABEL,
    OFFER_PATH,
    FrameChannel,
    close_peer_connection,
    dependency_errors,
    description_errors,
)
from tether.transport.wire import error_to_proto
from tether.v1 import pipeline_pb2 as pb

logger = logging.getLogger(__name__)

DEMO_PATH: Final = "/v1/webrtc/demo"

_SETUP_TIMEOUT: Final = 30.0
"""Seconds a peer may take from the answer to a working connection."""
_SILENCE_TIMEOUT: Final = 15.0
"""Seconds without a message from a peer that sent heartbeats before it counts as gone."""
_OPEN_TIMEOUT: Final = 30.0
"""Seconds a new data channel may take to send its `open` frame."""
_SUPERVISE_INTERVAL: Final = 1.0


def _error_response(error: BaseException) -> web.Response:
    """The HTTP app's error envelope, in JSON: `{"error": <tether.v1.Error>}`."""
    message = error_to_proto(error)
    return web.json_response(
        {"error": json_format.MessageToDict(message)}, status=http_status(message)
    )


class WebRtcEndpoint:
    """The WebRTC side of one server: signaling routes and the peer connections they made."""

    def __init__(self, host: PipelineHost, config: WebRtcConfig) -> None:
        self.host = host
        self.config = config
        self.addresses = normalize_addresses(config.host_addresses)
        self.peers: set[_ServerPeer] = set()
        self._closed = False

    def routes(self) -> list[web.RouteDef]:
        return [web.post(OFFER_PATH, self.offer), web.get(DEMO_PATH, self.demo)]

    async def offer(self, request: web.Request) -> web.Response:
        if self._closed or not self.host.ready:
            return _error_response(UnavailableError("server is shutting down"))
        authorization = request.headers.get("Authorization")
        try:
            self.host.authenticate(authorization)
            offer = await _read_offer(request)
            limit = self.host.config.limits.max_concurrent_streams
            if len(self.peers) >= limit:
                raise ResourceExhaustedError(f"server is at its limit of {limit} WebRTC peers")
        except TetherError as exc:
            self.host.record_refusal("webrtc", "offer", error_to_proto(exc))
            return _error_response(exc)
        if self._closed:  # closed while the offer was read: `close()` could not see this peer
            return _error_response(UnavailableError("server is shutting down"))
        peer = _ServerPeer(self, authorization)
        self.peers.add(peer)
        try:
            answer = await peer.answer(offer)
        except TetherError as exc:
            await peer.close()
            return _error_response(exc)
        except BaseException:
            await peer.close()
            raise
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    async def demo(self, request: web.Request) -> web.Response:
        return web.Response(text=DEMO_PAGE, content_type="text/html")

    async def close(self) -> None:
        """Close every peer connection and end its streams. Idempotent."""
        self._closed = True
        await asyncio.gather(*(peer.close() for peer in list(self.peers)))


async def _read_offer(request: web.Request) -> RTCSessionDescription:
    try:
        body = await request.json()
        sdp, kind = body["sdp"], body["type"]
    except (ValueError, KeyError, TypeError):
        raise ProtocolError('the offer must be JSON: {"sdp": "...", "type": "offer"}') from None
    if not isinstance(sdp, str) or kind != "offer":
        raise ProtocolError('the offer must be JSON: {"sdp": "...", "type": "offer"}')
    if "m=application" not in sdp:
        raise ProtocolError("the offer negotiates no data channel (create one before the offer)")
    return RTCSessionDescription(sdp=sdp, type=kind)


class _ServerPeer:
    """One client's peer connection, its stream tasks and the task that watches it."""

    def __init__(self, endpoint: WebRtcEndpoint, authorization: str | None) -> None:
        self.endpoint = endpoint
        self.host = endpoint.host
        self.authorization = authorization
        """The offer's credentials: streams whose header carries none are checked with them."""
        self.pc = RTCPeerConnection(rtc_configuration(endpoint.config.ice_servers))
        self.streams: set[asyncio.Task[None]] = set()
        self._gone = asyncio.Event()
        self._connected = False
        self._heartbeats = False
        self._last_heard = time.monotonic()
        self._supervisor: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        addresses = self.endpoint.addresses
        with description_errors(None):  # a malformed offer is the client's ProtocolError
            await self.pc.setRemoteDescription(offer)
            answer = await self.pc.createAnswer()
        with dependency_errors(None):
            await set_local_description(self.pc, answer, addresses)
        local: RTCSessionDescription = self.pc.localDescription
        if unexpected := unexpected_host_candidates(local.sdp, addresses):
            raise RuntimeError(f"aioice gathered host candidates outside {addresses}: {unexpected}")
        if not sdp_candidates(local.sdp):
            raise UnavailableError(
                f"no ICE candidate could be gathered on webrtc.hostAddresses {list(addresses)}"
            )
        self._supervisor = asyncio.create_task(self._supervise(), name="tether-webrtc-peer")
        return local

    # -- events from aiortc (they must never raise) --

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._connected = True
        elif state in ("failed", "closed"):
            self._gone.set()

    def _heard(self) -> None:
        self._last_heard = time.monotonic()

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        self._heard()
        if channel.label == CONTROL_LABEL:
            self._heartbeats = True
            channel.on("message", lambda message: self._echo(channel, message))
            return
        frames = FrameChannel(
            channel,
            pb.ClientFrame,
            max_frame_size=self.host.config.limits.max_message_bytes,
            text=None,  # answer in the kind the client speaks
            on_activity=self._heard,
        )
        task = asyncio.create_task(self._serve(frames), name=f"tether-webrtc-stream {channel.id}")
        self.streams.add(task)
        task.add_done_callback(self.streams.discard)

    def _echo(self, channel: RTCDataChannel, message: bytes | str) -> None:
        self._heard()
        if channel.readyState == "open":
            with contextlib.suppress(Exception):  # closing under us: the peer is going anyway
                channel.send(message)

    # -- streams --

    async def _serve(self, frames: FrameChannel[pb.ClientFrame]) -> None:
        try:
            try:
                async with asyncio.timeout(_OPEN_TIMEOUT):
                    first = await frames.receive()
            except TimeoutError:
                raise ProtocolError(f"no open frame within {_OPEN_TIMEOUT:.0f}s") from None
            if first.WhichOneof("kind") != "open":
                kind = first.WhichOneof("kind") or "an empty frame"
                raise ProtocolError(f"a stream must begin with an open frame, not {kind}")
            header = first.open.header
            principal = self.host.authenticate(header.authorization or self.authorization)
            header.ClearField("authorization")  # the token goes no further than here
            await self.host.stream(
                header, _incoming(frames), frames.send, transport="webrtc", principal=principal
            )
        except NetworkError:
            logger.debug("a WebRTC stream ended by its client")
        except Exception as exc:
            # Failures before the host took over: a bad first frame, refused credentials.
            if not isinstance(exc, TetherError):
                logger.exception("unexpected failure serving a WebRTC stream")
            error = error_to_proto(exc)
            self.host.record_refusal("webrtc", "stream", error)
            with contextlib.suppress(NetworkError):
                await frames.send(pb.ServerFrame(error=error))
        finally:
            frames.close()

    # -- lifetime --

    async def _supervise(self) -> None:
        """Close the peer once it is gone, never connected, or fell silent."""
        started = time.monotonic()
        while not self._gone.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_SUPERVISE_INTERVAL):
                    await self._gone.wait()
            now = time.monotonic()
            if not self._connected and now - started > _SETUP_TIMEOUT:
                logger.info("closing a WebRTC peer that did not connect in %.0fs", _SETUP_TIMEOUT)
                break
            if self._heartbeats and now - self._last_heard > _SILENCE_TIMEOUT:
                logger.info("closing a WebRTC peer silent for %.0fs", now - self._last_heard)
                break
        await self.close()

    async def close(self) -> None:
        """Cancel the peer's streams, close its connection, forget it. Idempotent."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name="tether-webrtc-peer-close")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._gone.set()
        tasks = [*self.streams, *([self._supervisor] if self._supervisor else [])]
        tasks = [task for task in tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_peer_connection(self.pc)
        self.endpoint.peers.discard(self)


async def _incoming(frames: FrameChannel[pb.ClientFrame]) -> AsyncIterator[pb.ClientFrame]:
    """The frames after `open`; ends when the channel closes (the host calls that going away).

    A malformed frame raises ProtocolError, which the host reports in an error frame.
    """
    while True:
        try:
            frame = await frames.receive()
        except NetworkError:
            return
        yield frame


DEMO_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>Tether over WebRTC</title>
<style>
body { font-family: sans-serif; margin: 2em; }
pre { background: #eee; padding: 1em; }
</style>
</head>
<body>
<h1>Tether over WebRTC</h1>
<p>Pipeline <code id="pipeline"></code> on input <code id="input"></code>:</p>
<pre id="result">connecting&hellip;</pre>
<script>
"use strict";
// One data channel is one stream. Its messages carry the protobuf JSON form of
// tether.v1.ClientFrame and ServerFrame, each message led by one header character:
// "\\u0000" ends a frame, "\\u0001" says more of the frame follows
// (tether/transport/framing.py). This page needs no protobuf library.
const FINAL = "\\u0000", MORE = "\\u0001", MAX_MESSAGE = 65536, TIME_LIMIT_MS = 20000;
const params = new URLSearchParams(location.search);
const pipeline = params.get("pipeline") || "";
const input = params.get("text") || "";
// The token comes in the fragment (#token=...), which the browser sends nowhere: not
// to the server, not to proxies, not in a Referer. Once read, it leaves the address
// bar and the history entry too.
const token = new URLSearchParams(location.hash.slice(1)).get("token");
if (location.hash) history.replaceState(null, "", location.pathname + location.search);
document.getElementById("pipeline").textContent = pipeline;
document.getElementById("input").textContent = input;

function sendFrame(channel, frame) {
  const encoder = new TextEncoder();
  const pieces = [];
  let piece = "", size = 0;
  for (const character of JSON.stringify(frame)) {
    const length = encoder.encode(character).length;
    if (size + length > MAX_MESSAGE - 1) { pieces.push(piece); piece = ""; size = 0; }
    piece += character;
    size += length;
  }
  pieces.push(piece);
  pieces.forEach((p, i) => channel.send((i < pieces.length - 1 ? MORE : FINAL) + p));
}

function gathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

async function run() {
  const pc = new RTCPeerConnection({iceServers: []});
  try {
    const channel = pc.createDataChannel("tether-demo");
    const finished = new Promise((resolve, reject) => {
      const outputs = [];
      let partial = "";
      channel.onmessage = (event) => {
        if (typeof event.data !== "string") return reject(new Error("binary message"));
        const header = event.data[0];
        partial += event.data.slice(1);
        if (header === MORE) return;
        if (header !== FINAL) return reject(new Error("bad frame header"));
        const frame = JSON.parse(partial);
        partial = "";
        if (frame.output) outputs.push(frame.output);
        else if (frame.error) reject(new Error(frame.error.code + ": " + frame.error.message));
        else if (frame.end) resolve(outputs);
      };
      channel.onclose = () => reject(new Error("the channel closed before the end"));
    });
    channel.onopen = () => {
      const header = {pipelineName: pipeline};
      if (token) header.authorization = "Bearer " + token;
      sendFrame(channel, {open: {header: header}});
      sendFrame(channel, {input: {seq: "1", data: {text: {text: input}}}});
      sendFrame(channel, {close: {}});
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);  // aiortc takes no trickled candidates: send them all in the offer
    const headers = {"Content-Type": "application/json"};
    if (token) headers.Authorization = "Bearer " + token;
    const answer = await fetch("/v1/webrtc/offer", {
      method: "POST", headers: headers,
      body: JSON.stringify({sdp: pc.localDescription.sdp, type: pc.localDescription.type}),
    });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error.code + ": " + body.error.message);
    await pc.setRemoteDescription(body);
    const outputs = await finished;
    const texts = outputs.map((o) => (o.data.text ? o.data.text.text : JSON.stringify(o.data)));
    return {ok: true, outputs: outputs, text: texts.join("\\n"), answer: body.sdp};
  } finally {
    pc.close();
  }
}

const timeLimit = new Promise((_, reject) =>
  setTimeout(() => reject(new Error("no result within " + TIME_LIMIT_MS + " ms")), TIME_LIMIT_MS));
window.tetherDone = Promise.race([run(), timeLimit])
  .catch((error) => ({ok: false, error: String(error.message || error)}))
  .then((result) => {
    const shown = result.ok ? result.text : "error: " + result.error;
    document.getElementById("result").textContent = shown;
    document.body.dataset.done = "true";
    return result;
  });
</script>
</body>
</html>
"""
