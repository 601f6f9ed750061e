"""Bearer-token authentication for every transport: static tokens from a file, and JWTs.

Tokens never leave this module: errors say what was wrong, never what was sent.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from tether.errors import AuthenticationError
from tether.server.config import AuthConfig, JwtConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who a request runs for, and until when (Unix time; None never expires)."""

    subject: str
    expires_at: float | None = None

    def seconds_left(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - time.time()


ANONYMOUS = Principal("anonymous")


class TokenFile:
    """Static tokens, one per line; re-read whenever the file changes.

    Kubernetes updates a mounted Secret by swapping a symlink, so the file's identity
    (inode, size, mtime) is compared at each check instead of watching for events.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._tokens: tuple[bytes, ...] = ()

    def tokens(self) -> tuple[bytes, ...]:
        try:
            status = os.stat(self.path)
        except OSError as exc:
            logger.error(
                "token file %s cannot be read: %s; refusing every token", self.path, exc.strerror
            )
            return ()
        stamp = (status.st_ino, status.st_size, status.st_mtime_ns)
        if stamp != self._stamp:
            lines = self.path.read_text().splitlines()
            self._tokens = tuple(line.strip().encode() for line in lines if line.strip())
            self._stamp = stamp
            logger.info("loaded %d static token(s) from %s", len(self._tokens), self.path)
        return self._tokens

    def accepts(self, token: str) -> bool:
        candidate = token.encode()
        # compare_digest against every token: the time taken says nothing about which matched.
        matches = [hmac.compare_digest(candidate, known) for known in self.tokens()]
        return any(matches)


class JwtVerifier:
    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        key_file = config.secret_file if config.algorithm == "HS256" else config.public_key_file
        assert key_file is not None  # guaranteed by JwtConfig's validator
        self._key_file = key_file

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key_file.read_text().strip(),
                algorithms=[self.config.algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.InvalidTokenError as exc:
            # The class says what was wrong; a message could quote parts of the token.
            raise AuthenticationError(f"invalid token ({type(exc).__name__})") from None
        # The leeway that admitted the token also extends how long a stream may use it.
        return Principal(str(claims.get("sub", "jwt")), float(claims["exp"]) + self.config.leeway)


class Authenticator:
    """Checks the `Authorization` value of a request or stream start."""

    def __init__(self, config: AuthConfig) -> None:
        self._token_file = TokenFile(config.token_file) if config.token_file else None
        self._jwt = JwtVerifier(config.jwt) if config.jwt else None

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("authorization must be 'Bearer <token>'")
        if not token.isascii() or not token.isprintable():
            # RFC 6750 tokens are printable ASCII; anything else cannot match and must not
            # reach an encoder that would raise.
            raise AuthenticationError("malformed bearer token")
        if self._token_file is not None and self._token_file.accepts(token):
            return Principal("static-token")
        if self._jwt is not None and token.count(".") == 2:
            return self._jwt.verify(token)
        raise AuthenticationError("token not accepted")


class NoAuthentication:
    """Used when the config has no `auth`: every request is anonymous."""

    def authenticate(self, authorization: str | None) -> Principal:
        return ANONYMOUS
