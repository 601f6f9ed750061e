"""Fixtures for the data tests: the two ways RuntimeData crosses the wire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tether.data import RuntimeData, decode, encode, from_bytes, to_bytes

RoundTrip = Callable[[RuntimeData], RuntimeData]


def _through_bytes(data: RuntimeData) -> RuntimeData:
    raw = to_bytes(data)
    assert isinstance(raw, bytes)
    return from_bytes(raw)


def _through_message(data: RuntimeData) -> RuntimeData:
    return decode(encode(data))


@pytest.fixture(
    params=[_through_bytes, _through_message], ids=["to_bytes/from_bytes", "encode/decode"]
)
def roundtrip(request: pytest.FixtureRequest) -> RoundTrip:
    """Encode and decode one value, through serialised bytes or through the message object."""
    fn: RoundTrip = request.param
    return fn
