"""The Authenticator on its own: schemes, malformed tokens, token files and JWT leeway."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from tether.errors import AuthenticationError
from tether.server.auth import Authenticator
from tether.server.config import AuthConfig

SECRET = "unit-test-secret-0123456789abcdef0123"


@pytest.fixture
def authenticator(tmp_path: Path) -> Authenticator:
    (tmp_path / "tokens").write_text("alpha\n\n  beta  \n")
    (tmp_path / "secret").write_text(SECRET)
    return Authenticator(
        AuthConfig.model_validate(
            {
                "tokenFile": str(tmp_path / "tokens"),
                "jwt": {
                    "algorithm": "HS256",
                    "secretFile": str(tmp_path / "secret"),
                    "leeway": "30s",
                },
            }
        )
    )


@pytest.mark.parametrize("token", ["alpha", "beta"])
def test_every_token_of_the_file_is_accepted(authenticator: Authenticator, token: str) -> None:
    assert authenticator.authenticate(f"Bearer {token}").expires_at is None


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Basic YWxwaGE=", "must be 'Bearer <token>'"),
        ("Bearer", "must be 'Bearer <token>'"),
        ("Bearer alp\xffha", "malformed bearer token"),
        ("Bearer al\udcffpha", "malformed bearer token"),
        ("Bearer al\npha", "malformed bearer token"),
        ("Bearer gamma", "token not accepted"),
    ],
)
def test_bad_authorization_is_refused_with_a_reason(
    authenticator: Authenticator, authorization: str | None, message: str
) -> None:
    with pytest.raises(AuthenticationError, match=message) as caught:
        authenticator.authenticate(authorization)
    assert "alp" not in str(caught.value)


def test_a_missing_token_file_refuses_every_token(tmp_path: Path) -> None:
    authenticator = Authenticator(AuthConfig(token_file=tmp_path / "absent"))
    with pytest.raises(AuthenticationError):
        authenticator.authenticate("Bearer alpha")


def test_the_jwt_leeway_extends_the_time_a_stream_may_use_the_token(
    authenticator: Authenticator,
) -> None:
    expired_a_moment_ago = jwt.encode({"exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    principal = authenticator.authenticate(f"Bearer {expired_a_moment_ago}")
    left = principal.seconds_left()
    assert left is not None
    assert 20 < left <= 30
