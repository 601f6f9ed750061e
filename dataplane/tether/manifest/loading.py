"""Reading manifests from dicts, files, URLs and text, into the `Manifest` model.

Every way in ends in `parse_manifest`, so a manifest reads the same wherever it comes
from. Errors of PyYAML, json and httpx are translated here and never leave this module:
a source that cannot be read raises `ManifestLoadError`, a document that breaks the
schema raises `ManifestValidationError`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit, urlunsplit

import httpx
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tether.errors import ManifestIssue, ManifestLoadError, ManifestValidationError
from tether.manifest.models import Manifest
from tether.manifest.validation import pydantic_issues

ManifestSource = str | os.PathLike[str] | Mapping[str, Any]
"""A manifest as a dict, a file path, an http(s) URL, or YAML/JSON text."""

SUPPORTED_VERSIONS: tuple[str, ...] = get_args(Manifest.model_fields["version"].annotation)
_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def parse_manifest(document: Mapping[str, Any], *, source: str | None = None) -> Manifest:
    """Check a document against the manifest schema. `source` only serves error messages."""
    return _parse_document(document, source)


def load_manifest(source: ManifestSource, *, timeout: float = 10.0) -> Manifest:
    """Load a manifest from a dict, a .yaml/.yml/.json file, an http(s) URL or text.

    A string is text when it contains a newline or starts with "{", a URL when it starts
    with http:// or https://, and a file path otherwise. `timeout` bounds a URL fetch.
    """
    where = _locate(source)
    if isinstance(where, _Url):
        with _translate_http_errors(where, timeout):
            response = httpx.get(where.url, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
        return _parse_response(where, response)
    return _load_local(where)


async def load_manifest_async(
    source: ManifestSource,
    *,
    timeout: float = 10.0,
) -> Manifest:
    """`load_manifest` for event loops: URLs are fetched asynchronously, files in a thread."""
    where = _locate(source)
    if isinstance(where, _Url):
        with _translate_http_errors(where, timeout):
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
                response = await client.get(where.url)
                response.raise_for_status()
        return _parse_response(where, response)
    return await asyncio.to_thread(_load_local, where)


def parse_manifest_text(text: str, *, source: str = "<text>") -> Manifest:
    """A manifest from YAML or JSON text, and only text: never read as a path or URL.

    For manifests that arrive in requests, where a string must not reach the file system
    or the network.
    """
    return _load_local(_Text(text), source)


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """The manifest as the user writes it (camelCase keys, "30s" durations), JSON-compatible."""
    return manifest.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class _Document:
    document: Mapping[str, Any]


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _File:
    path: Path
    given_as_text: bool


@dataclass(frozen=True)
class _Url:
    url: str

    @property
    def display(self) -> str:
        """The URL for messages, without any user:password it may carry."""
        parts = urlsplit(self.url)
        if "@" not in parts.netloc:
            return self.url
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


_Local = _Document | _Text | _File


def _locate(source: ManifestSource) -> _Local | _Url:
    if isinstance(source, Mapping):
        return _Document(source)
    if isinstance(source, os.PathLike):
        return _File(Path(source), given_as_text=False)
    if source.startswith(("http://", "https://")):
        return _Url(source)
    if "\n" in source or source.lstrip().startswith("{"):
        return _Text(source)
    return _File(Path(source), given_as_text=True)


def _load_local(where: _Local, text_source: str = "<text>") -> Manifest:
    if isinstance(where, _Document):
        return _parse_document(where.document, None)
    if isinstance(where, _Text):
        is_json = where.text.lstrip().startswith("{")
        return _parse_document(_decode(where.text, text_source, is_json=is_json), None)
    origin = str(where.path)
    try:
        text = where.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = ""
        if where.given_as_text and where.path.suffix not in _FILE_SUFFIXES:
            hint = "; a string is read as manifest text only if it has a newline or starts with '{'"
        raise ManifestLoadError(origin, f"no such file{hint}") from None
    except UnicodeDecodeError as exc:
        raise ManifestLoadError(
            origin, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise ManifestLoadError(origin, exc.strerror or type(exc).__name__) from exc
    is_json = where.path.suffix.lower() == ".json"
    return _parse_document(_decode(text, origin, is_json=is_json), origin)


def _parse_response(where: _Url, response: httpx.Response) -> Manifest:
    content_type = response.headers.get("content-type", "")
    is_json = "json" in content_type or urlsplit(where.url).path.endswith(".json")
    return _parse_document(_decode(response.text, where.display, is_json=is_json), where.display)


@contextmanager
def _translate_http_errors(where: _Url, timeout: float) -> Iterator[None]:
    """The one place httpx's errors become ManifestLoadError, for both the sync and async path."""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        status = exc.response
        raise ManifestLoadError(
            where.display, f"HTTP {status.status_code} {status.reason_phrase}"
        ) from exc
    except httpx.TimeoutException as exc:
        raise ManifestLoadError(where.display, f"no response within {timeout:g}s") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ManifestLoadError(
            where.display, f"request failed: {exc or type(exc).__name__}"
        ) from exc


def _decode(text: str, origin: str, *, is_json: bool) -> Any:
    """The document in YAML or JSON text; syntax errors name their line and column."""
    if is_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestLoadError(
                origin, f"JSON syntax error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from exc
    try:
        return yaml.load(text, Loader=_StrictLoader)  # safe: a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        raise ManifestLoadError(origin, f"YAML syntax error{where}: {what}") from exc
    except yaml.YAMLError as exc:
        raise ManifestLoadError(origin, f"YAML syntax error: {exc}") from exc


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key != "<<":
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_document(document: object, source: str | None) -> Manifest:
    if not isinstance(document, Mapping):
        raise ManifestValidationError(
            [
                ManifestIssue(
                    "",
                    "a manifest is a mapping with the keys version, metadata, nodes and "
                    f"connections; this document is {_kind(document)}",
                )
            ],
            source,
        )
    try:
        return Manifest.model_validate(dict(document))
    except ValidationError as exc:
        issues = pydantic_issues(exc, document, model=Manifest, explain=_explain)
        raise ManifestValidationError(issues, source) from exc


def _explain(details: ErrorDetails) -> str | None:
    """Messages for the schema errors where pydantic's own would puzzle a user."""
    loc = details["loc"]
    if loc == ("version",) and details["type"] == "literal_error":
        return f"unsupported manifest version; supported versions: {', '.join(SUPPORTED_VERSIONS)}"
    if (
        len(loc) == 3
        and loc[0] == "nodes"
        and loc[2] == "id"
        and details["type"] == "string_pattern_mismatch"
    ):
        return (
            "a node id has 1 to 63 letters, digits, '-' or '_', "
            "and starts and ends with a letter or digit"
        )
    return None


def _kind(document: object) -> str:
    if document is None:
        return "empty"
    if isinstance(document, bool):
        return "a boolean"
    if isinstance(document, int | float):
        return "a number"
    if isinstance(document, str):
        return "a string"
    if isinstance(document, list):
        return "a list"
    return f"a {type(document).__name__}"
