"""A real browser as a WebRTC client: headless Chromium opens the server's demo page,
which runs a pipeline over a data channel in the JSON form of the stream frames, with the
bearer token, when the server needs one, in the URL fragment (never sent anywhere).

Chromium is driven over the DevTools protocol (a WebSocket, with aiohttp's client):
navigate, then evaluate the page's result promise. It runs with its networking reduced
to loopback: no STUN servers, host names resolve to nothing but 127.0.0.1, and no
background services. Skipped, with the reason, where no `chromium` binary exists;
`make test` installs it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tether.testing.server import ServerProcess
from tether.transport.ice import sdp_candidates

TIME_LIMIT = 60.0
"""Seconds one browser test may take; never a latency assertion."""

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (make test installs it with apt)"
)

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--no-pings",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # Nothing but 127.0.0.1 resolves: no request can leave the machine by name.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--remote-debugging-port=0",
]


@pytest.fixture(scope="module")
def server_config() -> dict[str, Any]:
    return {"webrtc": {"hostAddresses": ["127.0.0.1"]}}


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[int]:
    """A headless Chromium; yields its DevTools port. Killed when the test ends."""
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    log = tmp_path / "chromium.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield _devtools_port(profile / "DevToolsActivePort", process, log)
    finally:
        process.kill()
        process.wait()


def _devtools_port(port_file: Path, process: subprocess.Popen[bytes], log: Path) -> int:
    """Chromium writes the port it chose (and the browser target's path) into its profile."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if port_file.exists() and (lines := port_file.read_text().splitlines()):
            return int(lines[0])
        time.sleep(0.05)
    pytest.fail(f"chromium did not start its DevTools server; its log:\n{log.read_text()}")


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands, and waiting for one event."""

    def __init__(self, websocket: aiohttp.ClientWebSocketResponse) -> None:
        self.websocket = websocket
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self.websocket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self.websocket.receive_json()
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"DevTools {method} failed: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            self._events.append(message)

    async def event(self, method: str) -> dict[str, Any]:
        while True:
            for index, message in enumerate(self._events):
                if message.get("method") == method:
                    return self._events.pop(index)
            self._events.append(await self.websocket.receive_json())


@pytest.fixture
async def devtools(chromium: int) -> AsyncIterator[DevTools]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{chromium}/json/list") as response:
            targets = await response.json()
        [page] = [t for t in targets if t["type"] == "page"]
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as websocket:
            yield DevTools(websocket)


async def run_demo(
    devtools: DevTools, server: ServerProcess, *, fragment: str = "", **query: str
) -> dict[str, Any]:
    """Open the demo page with `query` (and `#fragment`) and return what its result
    promise resolves to, with the text shown and the page's address once it ran."""
    url = f"{server.http_url}/v1/webrtc/demo?{urlencode(query)}"
    if fragment:
        url += f"#{fragment}"
    await devtools.call("Page.enable")
    await devtools.call("Page.navigate", url=url)
    await devtools.event("Page.loadEventFired")
    evaluated = await devtools.call(
        "Runtime.evaluate", expression="window.tetherDone", awaitPromise=True, returnByValue=True
    )
    value: dict[str, Any] = evaluated["result"]["value"]
    shown = await devtools.call(
        "Runtime.evaluate",
        expression="document.getElementById('result').textContent",
        returnByValue=True,
    )
    value["shown"] = shown["result"]["value"]
    address = await devtools.call(
        "Runtime.evaluate", expression="location.href", returnByValue=True
    )
    value["address"] = address["result"]["value"]
    return value


async def test_a_browser_runs_a_pipeline_over_a_data_channel(
    devtools: DevTools, server: ServerProcess
) -> None:
    async with asyncio.timeout(TIME_LIMIT):
        result = await run_demo(devtools, server, pipeline="upper", text="hello")
    assert result["ok"], json.dumps(result)
    assert result["shown"] == "HELLO"
    assert result["outputs"] == [
        {"nodeId": "upper", "data": {"text": {"text": "HELLO"}}, "ack": "1"}
    ]
    # The server offered the browser 127.0.0.1 and nothing else.
    answered = sdp_candidates(result["answer"])
    assert answered
    assert {c.address for c in answered} == {"127.0.0.1"}


async def test_a_browser_is_shown_the_typed_error_of_a_failing_node(
    devtools: DevTools, server: ServerProcess
) -> None:
    async with asyncio.timeout(TIME_LIMIT):
        result = await run_demo(devtools, server, pipeline="faulty", text="x")
    assert not result["ok"]
    assert result["error"].startswith("ERROR_CODE_EXECUTION")
    assert result["shown"].startswith("error: ERROR_CODE_EXECUTION")


async def test_a_browser_passes_the_token_from_the_url_fragment_and_nowhere_else(
    devtools: DevTools, start_server: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("s3cr3t\n")
    server: ServerProcess = start_server(auth={"tokenFile": str(token_file)})
    async with asyncio.timeout(TIME_LIMIT):
        result = await run_demo(
            devtools, server, fragment="token=s3cr3t", pipeline="upper", text="hello"
        )
    assert result["ok"], json.dumps(result)
    assert result["shown"] == "HELLO"
    # Read, then gone from the address bar (and its history entry).
    assert "s3cr3t" not in result["address"]
    assert result["address"].endswith("/v1/webrtc/demo?pipeline=upper&text=hello")


async def test_a_browser_ignores_a_token_in_the_query_string(
    devtools: DevTools, start_server: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("s3cr3t\n")
    server: ServerProcess = start_server(auth={"tokenFile": str(token_file)})
    async with asyncio.timeout(TIME_LIMIT):
        result = await run_demo(devtools, server, pipeline="upper", text="x", token="s3cr3t")
    assert not result["ok"]
    assert result["error"].startswith("ERROR_CODE_UNAUTHENTICATED")
