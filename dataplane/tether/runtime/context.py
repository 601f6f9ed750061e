"""The request a pipeline run serves, visible to every node of the run.

A server sets it before running a pipeline; node tasks inherit it (contextvars), so a
remote node can forward the request id and the chain of visited pipelines.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    visited: tuple[str, ...] = ()
    """Pipelines this request passed through, the one running now last."""


_current: ContextVar[RequestContext | None] = ContextVar("tether_request", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


@contextlib.contextmanager
def serving(context: RequestContext) -> Iterator[RequestContext]:
    """Make `context` the current request for the code (and tasks started) inside."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
