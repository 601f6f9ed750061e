"""The RuntimeData codec under random input (hypothesis).

Covers: random arrays of every supported dtype, byte order and up to 4 dimensions
(zero-size included) round-tripping exactly as Tensor, and 1-D/2-D numeric ones as Audio;
random RuntimeData of every kind round-tripping; arbitrary bytes, and valid messages with
bytes flipped, cut off, inserted, removed or appended, either decoding to valid RuntimeData or
raising DataValidationError, never anything else. Examples live in `test_codec.py`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import numpy.typing as npt
from hypothesis import event, find, given, settings

from tether.data import (
    RUNTIME_DATA_TYPES,
    SUPPORTED_DTYPES,
    Audio,
    Binary,
    Json,
    RuntimeData,
    Tensor,
    Text,
    Video,
    from_bytes,
    to_bytes,
)
from tether.errors import DataValidationError

EXAMPLES = settings(max_examples=250, deadline=None)

ALL_DTYPES = sorted(SUPPORTED_DTYPES)
NUMERIC_DTYPES = [name for name in ALL_DTYPES if name != "bool"]


VIEWS: list[Callable[[npt.NDArray[Any]], npt.NDArray[Any]]] = [
    lambda a: a,
    lambda a: a[::-1] if a.ndim else a,
    lambda a: a[::2] if a.ndim else a,
    lambda a: a.transpose(1, 0, 2) if a.ndim == 3 else a.T,
]


@st.composite
def arrays(
    draw: st.DrawFn, names: list[str], *, min_dims: int = 0, max_dims: int = 4
) -> npt.NDArray[Any]:
    """Arrays of `names` in every byte order, with any values (NaN and inf too), as they
    are or as non-contiguous views."""
    dtype = np.dtype(draw(st.sampled_from(names))).newbyteorder(draw(st.sampled_from("<>=")))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=4))
    array: npt.NDArray[Any]
    if dtype.kind == "f" and dtype.itemsize == 2:
        # hypothesis's own float16 elements reject about a third of their draws; random bits
        # cover every float16 instead, NaN payloads included.
        bits = draw(hnp.arrays(np.dtype("u2").newbyteorder(dtype.byteorder), shape))
        array = bits.view(dtype)
    else:
        array = draw(hnp.arrays(dtype, shape))
    view: Callable[[npt.NDArray[Any]], npt.NDArray[Any]] = draw(st.sampled_from(VIEWS))
    return view(array)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
common = {
    "timestamp": st.none() | st.floats(allow_nan=False),
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
}
runtime_data: st.SearchStrategy[RuntimeData] = st.one_of(
    st.builds(
        Audio,
        samples=arrays(NUMERIC_DTYPES, min_dims=1, max_dims=2),
        sample_rate=st.integers(1, 2**32 - 1),
        **common,
    ),
    st.builds(
        Video,
        frame=arrays(ALL_DTYPES, min_dims=3, max_dims=3),
        pixel_format=st.text(max_size=8),
        pts=st.none() | st.integers(-(2**63), 2**63 - 1),
        **common,
    ),
    st.builds(Text, text=st.text(), **common),
    st.builds(Binary, data=st.binary(), mime_type=st.text(max_size=16), **common),
    st.builds(Tensor, array=arrays(ALL_DTYPES), **common),
    st.builds(Json, value=json_values, **common),
)


def assert_same_array(decoded: npt.NDArray[Any], original: npt.NDArray[Any]) -> None:
    """Same shape and values, bit for bit, in the little-endian twin of the original dtype."""
    little = np.dtype(original.dtype.name).newbyteorder("<")
    assert decoded.dtype == little
    assert decoded.dtype.str[0] in "<|"
    assert decoded.shape == original.shape
    assert decoded.tobytes() == original.astype(little).tobytes()
    assert np.array_equal(decoded, original, equal_nan=True)


def arrays_of(data: RuntimeData) -> list[npt.NDArray[Any]]:
    if isinstance(data, Tensor):
        return [data.array]
    if isinstance(data, Audio):
        return [data.samples]
    if isinstance(data, Video):
        return [data.frame]
    return []


def assert_same(decoded: RuntimeData, original: RuntimeData) -> None:
    """Equal, with NaNs in arrays compared by their bits."""
    assert type(decoded) is type(original)
    assert decoded.timestamp == original.timestamp
    assert dict(decoded.metadata) == dict(original.metadata)
    for decoded_array, original_array in zip(arrays_of(decoded), arrays_of(original), strict=True):
        assert_same_array(decoded_array, original_array)
    if isinstance(original, Audio | Video | Tensor):
        # Their __eq__ would call NaN unequal to itself; the arrays are checked above.
        fields = {"samples", "frame", "array"}
        assert {k: v for k, v in vars(decoded).items() if k not in fields} == {
            k: v for k, v in vars(original).items() if k not in fields
        }
    else:
        assert decoded == original


def assert_valid(data: RuntimeData) -> None:
    """What decoding may return: RuntimeData that keeps the types' promises, with read-only
    little-endian arrays, and that encodes and decodes again."""
    assert isinstance(data, RUNTIME_DATA_TYPES)
    for array in arrays_of(data):
        assert array.dtype.name in SUPPORTED_DTYPES
        assert array.dtype.str[0] in "<|"
        assert not array.flags.writeable
        if array.dtype.kind == "b":
            assert array.view(np.uint8).max(initial=0) <= 1
    if isinstance(data, Audio):
        assert data.samples.ndim in (1, 2)
        assert data.sample_rate > 0
    if isinstance(data, Video):
        assert data.frame.ndim == 3
    again = from_bytes(to_bytes(data))
    assert type(again) is type(data)


# --- (a) round trips ------------------------------------------------------------------


@EXAMPLES
@given(array=arrays(ALL_DTYPES))
def test_any_array_round_trips_exactly_as_a_tensor(array: npt.NDArray[Any]) -> None:
    decoded = from_bytes(to_bytes(Tensor(array=array)))

    assert isinstance(decoded, Tensor)
    assert_same_array(decoded.array, array)


@EXAMPLES
@given(
    samples=arrays(NUMERIC_DTYPES, min_dims=1, max_dims=2),
    sample_rate=st.integers(1, 2**32 - 1),
)
def test_any_one_or_two_dimensional_numeric_array_round_trips_exactly_as_audio(
    samples: npt.NDArray[Any], sample_rate: int
) -> None:
    decoded = from_bytes(to_bytes(Audio(samples=samples, sample_rate=sample_rate)))

    assert isinstance(decoded, Audio)
    assert decoded.sample_rate == sample_rate
    assert decoded.channels == (1 if samples.ndim == 1 else samples.shape[1])
    assert_same_array(decoded.samples, samples)


@EXAMPLES
@given(data=runtime_data)
def test_any_runtime_data_round_trips(data: RuntimeData) -> None:
    event(type(data).__name__)

    assert_same(from_bytes(to_bytes(data)), data)


# --- (b) arbitrary bytes --------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


# Mostly numbers that RuntimeData and its parts use, sometimes unknown ones.
_field_numbers = st.sampled_from([1, 2, 3, 4, 5, 6, 10, 11]) | st.integers(1, 15)
_payloads = (
    st.binary(max_size=24)
    | st.sampled_from(ALL_DTYPES).map(str.encode)
    | st.text(max_size=8).map(str.encode)
)
# Random bytes in protobuf's shape: random fields of every wire type, with random numbers,
# lengths that fit, and payloads that are random bytes, dtype names, text or such messages.
protobuf_shaped: st.SearchStrategy[bytes] = st.recursive(
    st.just(b""),
    lambda inner: st.lists(
        st.builds(lambda n, v: _key(n, 0) + _varint(v), _field_numbers, st.integers(0, 2**64 - 1))
        | st.builds(lambda n, b: _key(n, 1) + b, _field_numbers, st.binary(min_size=8, max_size=8))
        | st.builds(lambda n, b: _key(n, 5) + b, _field_numbers, st.binary(min_size=4, max_size=4))
        | st.builds(
            lambda n, b: _key(n, 2) + _varint(len(b)) + b, _field_numbers, _payloads | inner
        ),
        max_size=4,
    ).map(b"".join),
    max_leaves=10,
)
arbitrary_bytes = st.binary(max_size=256) | protobuf_shaped


def _decodes(raw: bytes) -> bool:
    try:
        from_bytes(raw)
    except DataValidationError:
        return False
    return True


@EXAMPLES
@given(raw=arbitrary_bytes)
def test_arbitrary_bytes_decode_to_valid_data_or_raise_data_validation_error(raw: bytes) -> None:
    try:
        data = from_bytes(raw)
    except DataValidationError as exc:
        event(f"refused: {exc.field}")
        return
    event(f"decoded: {type(data).__name__}")
    assert_valid(data)


def test_arbitrary_bytes_sometimes_decode() -> None:
    # Guards the test above against vacuity: its inputs do not all take the refusal path.
    # (Valid arrays are too unlikely by chance; the corrupted messages below reach them.)
    raw = find(arbitrary_bytes, _decodes, settings=settings(database=None, max_examples=1000))

    assert_valid(from_bytes(raw))


# --- (c) corrupted messages -----------------------------------------------------------


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A valid message with bytes flipped, cut off, inserted, removed or appended."""
    raw = bytearray(to_bytes(draw(runtime_data)))
    how = draw(st.sampled_from(["flip", "truncate", "insert", "remove", "extend"]))
    event(how)
    # Positions uniform over the message: hypothesis's integers (and its randoms) favour
    # the first bytes, tags and lengths, and would rarely reach array data or strings.
    position = random.Random(draw(st.integers(0, 2**64 - 1))).randrange
    if how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            raw[position(len(raw))] ^= draw(st.integers(1, 255))
    elif how == "truncate":
        del raw[position(len(raw)) :]
    elif how == "insert":
        at = position(len(raw) + 1)
        raw[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif how == "remove":
        at = position(len(raw))
        del raw[at : at + draw(st.integers(1, 8))]
    else:
        raw += draw(st.binary(min_size=1, max_size=32))
    return bytes(raw)


@EXAMPLES
@given(raw=corrupted())
def test_corrupted_messages_decode_to_valid_data_or_raise_data_validation_error(
    raw: bytes,
) -> None:
    try:
        data = from_bytes(raw)
    except DataValidationError as exc:
        event(f"refused: {exc.field}")
        return
    event(f"decoded: {type(data).__name__}")
    assert_valid(data)


def test_truncating_a_message_anywhere_is_refused() -> None:
    # One field holds the whole message, so every strict prefix cuts it.
    raw = to_bytes(Audio(samples=np.arange(64, dtype=np.float32), sample_rate=8000))

    refused = [keep for keep in range(1, len(raw)) if not _decodes(raw[:keep])]

    assert refused == list(range(1, len(raw)))
