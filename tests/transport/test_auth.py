"""Authentication on every transport: static tokens from a rotating file and JWTs,
refused when missing, wrong or expired, streams closed when their JWT expires, and no
token text in any log line or error message."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from streaming import drain

from tether.data import Text
from tether.errors import AuthenticationError
from tether.runtime import NodeOutput
from tether.testing.server import ServerProcess
from tether.transport import (
    TRANSPORTS,
    ClientOptions,
    PipelineClient,
    PipelineTarget,
    connect,
    static_token,
    token_from_file,
)

ECHO = PipelineTarget(name="echo")
STATIC_TOKEN = "static-token-4f1d9c0b7e"
ROTATED_TOKEN = "rotated-token-8a2e6d3f51"
JWT_SECRET = "jwt-secret-for-tests-only-0123456789abcdef"


def make_jwt(expires_in: float, secret: str = JWT_SECRET) -> str:
    return jwt.encode(
        {"sub": "tester", "exp": int(time.time() + expires_in)}, secret, algorithm="HS256"
    )


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("secrets")
    (folder / "tokens").write_text(f"{STATIC_TOKEN}\n")
    (folder / "jwt-secret").write_text(JWT_SECRET)
    return folder


@pytest.fixture(scope="module")
def server_config(secrets_dir: Path) -> dict[str, Any]:
    return {
        "auth": {
            "tokenFile": str(secrets_dir / "tokens"),
            "jwt": {"algorithm": "HS256", "secretFile": str(secrets_dir / "jwt-secret")},
        }
    }


async def open_send_and_drain(client: PipelineClient) -> None:
    async with await client.open_stream(ECHO, timeout=30) as opened:
        await opened.send(0, Text(text="x"))
        await drain(opened.events())


def options(token: str | None) -> ClientOptions:
    return ClientOptions(token=static_token(token) if token else None)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_secret_free(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, "a token leaked"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "token",
    [None, "wrong-token-0000", make_jwt(-60), make_jwt(600, secret="not-the-secret-" * 3)],
    ids=["no token", "wrong token", "expired jwt", "jwt with a foreign signature"],
)
async def test_bad_credentials_are_refused(
    transport: str, token: str | None, server: ServerProcess, all_logs: pytest.LogCaptureFixture
) -> None:
    async with connect(transport, server.url(transport), options(token)) as client:
        with pytest.raises(AuthenticationError) as unary:
            await client.execute(ECHO, Text(text="x"), timeout=30)
        with pytest.raises(AuthenticationError) as stream:
            await open_send_and_drain(client)
    if token:
        assert_secret_free(str(unary.value) + str(stream.value) + all_logs.text, token)
        assert_secret_free(server.logs(), token)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("kind", ["static", "jwt"])
async def test_valid_credentials_are_accepted(
    transport: str, kind: str, server: ServerProcess, all_logs: pytest.LogCaptureFixture
) -> None:
    token = STATIC_TOKEN if kind == "static" else make_jwt(600)
    async with connect(transport, server.url(transport), options(token)) as client:
        assert await client.execute(ECHO, Text(text="x"), timeout=30) == [
            NodeOutput("echo", Text(text="x"))
        ]
    assert_secret_free(all_logs.text + server.logs(), token, JWT_SECRET)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_file_rotation_takes_effect_without_restart(
    transport: str, start_server: Any, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{STATIC_TOKEN}\n")
    server: ServerProcess = start_server(auth={"tokenFile": str(tokens)})
    url = server.url(transport)
    async with (
        connect(transport, url, options(STATIC_TOKEN)) as old,
        connect(transport, url, options(ROTATED_TOKEN)) as new,
    ):
        await old.execute(ECHO, Text(text="x"), timeout=30)
        with pytest.raises(AuthenticationError):
            await new.execute(ECHO, Text(text="x"), timeout=30)
        # Kubernetes swaps a Secret's files atomically: write beside, then rename over.
        staged = tmp_path / "tokens.new"
        staged.write_text(f"{ROTATED_TOKEN}\n")
        os.replace(staged, tokens)
        await new.execute(ECHO, Text(text="x"), timeout=30)
        with pytest.raises(AuthenticationError):
            await old.execute(ECHO, Text(text="x"), timeout=30)
    assert_secret_free(server.logs(), STATIC_TOKEN, ROTATED_TOKEN)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_stream_is_closed_when_its_jwt_expires(transport: str, server: ServerProcess) -> None:
    token = make_jwt(3)
    async with connect(transport, server.url(transport), options(token)) as client:
        stream = await client.open_stream(ECHO)
        await stream.send(0, Text(text="while valid"))
        events = stream.events()
        assert await anext(events) == NodeOutput("echo", Text(text="while valid"))
        with pytest.raises(AuthenticationError, match="expired") as caught:
            await drain(events)
        assert token not in str(caught.value)
        await stream.aclose()
        # A refreshed token opens a new stream.
        async with connect(transport, server.url(transport), options(make_jwt(600))) as refreshed:
            assert await refreshed.execute(ECHO, Text(text="again"), timeout=30)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_unreadable_token_file_is_an_authentication_error_not_a_network_one(
    transport: str, server: ServerProcess, tmp_path: Path
) -> None:
    missing = ClientOptions(token=token_from_file(tmp_path / "absent-token"))
    async with connect(transport, server.url(transport), missing) as client:
        with pytest.raises(AuthenticationError, match="token source failed") as unary:
            await client.execute(ECHO, Text(text="x"), timeout=30)
        with pytest.raises(AuthenticationError, match="token source failed"):
            await client.open_stream(ECHO, timeout=30)
    assert not unary.value.retryable


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_requests_are_counted_on_every_transport(
    transport: str, start_server: Any, secrets_dir: Path
) -> None:
    server: ServerProcess = start_server(auth={"tokenFile": str(secrets_dir / "tokens")})
    async with connect(transport, server.url(transport), options("wrong-token-0000")) as client:
        with pytest.raises(AuthenticationError):
            await client.open_stream(ECHO, timeout=30)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{server.http_url}/metrics")).text
    counted = [
        line
        for line in metrics.splitlines()
        if line.startswith("tether_server_requests_total{")
        and f'transport="{transport}"' in line
        and 'outcome="unauthenticated"' in line
    ]
    assert counted, metrics
    assert "wrong-token" not in metrics


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_discovery_needs_credentials_too(transport: str, server: ServerProcess) -> None:
    async with connect(transport, server.url(transport)) as anonymous:
        with pytest.raises(AuthenticationError):
            await anonymous.info()
        # Health stays open: probes carry no credentials.
        assert await anonymous.health()
    async with connect(transport, server.url(transport), options(STATIC_TOKEN)) as client:
        assert "echo" in (await client.info()).pipelines
