"""The pipeline server's configuration file (`tether serve --config FILE`), validated once here."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, ValidationError, ValidationInfo, model_validator

from tether.errors import ManifestLoadError, ManifestValidationError
from tether.manifest import CamelModel, Duration
from tether.manifest.validation import pydantic_issues


def _relative_to_config_file(value: Path, info: ValidationInfo) -> Path:
    base_dir = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base_dir is None else base_dir / value


def _exists(value: Path) -> Path:
    if not value.exists():
        raise ValueError(f"{value} does not exist")
    return value


ConfigPath = Annotated[Path, AfterValidator(_relative_to_config_file)]
"""A path; relative ones resolve against the config file's folder."""
ExistingPath = Annotated[ConfigPath, AfterValidator(_exists)]
"""A path that must exist when the server starts (certificates, keys, manifests)."""


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return value


def _ice_server_url(value: str) -> str:
    if not value.startswith(("stun:", "turn:", "turns:")):
        raise ValueError(f"{value!r} is not a stun:, turn: or turns: URL")
    return value


class ListenConfig(CamelModel):
    host: str = "127.0.0.1"
    """Loopback by default; pods set 0.0.0.0."""
    port: int = Field(ge=0, le=65535)
    """0 picks a free port (printed at start-up)."""
    enabled: bool = True


class GrpcListenConfig(ListenConfig):
    port: int = Field(default=50051, ge=0, le=65535)


class HttpListenConfig(ListenConfig):
    port: int = Field(default=8080, ge=0, le=65535)


class TlsConfig(CamelModel):
    cert_file: ExistingPath
    key_file: ExistingPath
    client_ca_file: ExistingPath | None = None
    """When set, clients must present a certificate signed by this CA (mutual TLS)."""


class JwtConfig(CamelModel):
    algorithm: Literal["HS256", "RS256"]
    secret_file: ExistingPath | None = None
    """HS256 shared secret."""
    public_key_file: ExistingPath | None = None
    """RS256 PEM public key."""
    audience: str | None = None
    issuer: str | None = None
    leeway: Duration = 0.0
    """Clock skew tolerated on `exp` and `nbf`."""

    @model_validator(mode="after")
    def _key_matches_algorithm(self) -> JwtConfig:
        if self.algorithm == "HS256" and self.secret_file is None:
            raise ValueError("HS256 needs secretFile")
        if self.algorithm == "RS256" and self.public_key_file is None:
            raise ValueError("RS256 needs publicKeyFile")
        return self


class AuthConfig(CamelModel):
    """Bearer tokens accepted: static tokens from a file, JWTs, or both."""

    token_file: ConfigPath | None = None
    """One token per line; re-read when the file changes, as mounted Secrets do."""
    jwt: JwtConfig | None = None

    @model_validator(mode="after")
    def _something_to_check(self) -> AuthConfig:
        if self.token_file is None and self.jwt is None:
            raise ValueError("auth needs tokenFile, jwt, or both (omit auth to disable it)")
        return self


class WebRtcConfig(CamelModel):
    enabled: bool = True
    ice_servers: list[Annotated[str, AfterValidator(_ice_server_url)]] = Field(default_factory=list)
    """STUN/TURN URLs. None by default: nothing is contacted outside the host."""
    host_addresses: list[Annotated[str, AfterValidator(_ip_address)]] = Field(
        default_factory=lambda: ["127.0.0.1"], min_length=1
    )
    """Addresses offered as ICE host candidates; pods set their pod IP."""


class PipelineEntry(CamelModel):
    """A predefined pipeline: a manifest file, or the manifest inline."""

    file: ExistingPath | None = None
    manifest: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> PipelineEntry:
        if (self.file is None) == (self.manifest is None):
            raise ValueError("give exactly one of file or manifest")
        return self

    @property
    def source(self) -> Path | dict[str, Any]:
        """The file or the manifest, whichever was given."""
        if self.file is not None:
            return self.file
        assert self.manifest is not None  # guaranteed by _exactly_one_source
        return self.manifest


class LimitsConfig(CamelModel):
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=2**31 - 1)
    """Largest request, response or stream frame; 16 MiB fits 1080p RGB frames."""
    max_concurrent_streams: int = Field(default=64, ge=1)
    """Streams beyond this are refused (resource exhausted) rather than queued."""
    max_hops: int = Field(default=8, ge=1)
    """Longest chain of pipelines one request may pass through."""
    default_timeout: Duration | None = None
    """Deadline for requests that carry none; None waits as long as the client does."""


class ServerConfig(CamelModel):
    grpc: GrpcListenConfig = Field(default_factory=GrpcListenConfig)
    http: HttpListenConfig = Field(default_factory=HttpListenConfig)
    pipelines_dir: ExistingPath | None = None
    """Every *.yaml/*.yml/*.json manifest here is served under its metadata.name."""
    pipelines: list[PipelineEntry] = Field(default_factory=list)
    allow_inline_manifests: bool = False
    """Off by default: an inline manifest runs arbitrary node types with arbitrary params."""
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    grace_period: Duration = 10.0
    """How long shutdown waits for in-flight requests and streams."""
    auth: AuthConfig | None = None
    tls: TlsConfig | None = None
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig)


def load_server_config(path: Path) -> ServerConfig:
    """Read and validate a server config file; relative paths resolve against its folder."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestLoadError(str(path), str(exc)) from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ManifestLoadError(str(path), "the server config must be a mapping")
    try:
        config = ServerConfig.model_validate(document, context={"base_dir": path.parent})
    except ValidationError as exc:
        issues = pydantic_issues(exc, document, model=ServerConfig)
        raise ManifestValidationError(issues, source=str(path), what="server config") from None
    return config
