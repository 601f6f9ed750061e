"""The RuntimeData codec, example by example.

Covers: round trips of every kind (Audio, Video, Text, Binary, Tensor, Json) with their
timestamp and metadata, through both `to_bytes`/`from_bytes` and `encode`/`decode`; exact
Tensor round trips for every supported dtype, including non-contiguous, big-endian, empty,
0-d and non-finite inputs; zero-copy, read-only decoded arrays; corrupt wire input refused
with the field named; values refused on encoding. Random inputs live in
`test_codec_properties.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest

from tether.data import (
    SUPPORTED_DTYPES,
    Audio,
    Binary,
    Json,
    RuntimeData,
    Tensor,
    Text,
    Video,
    encode,
    from_bytes,
    to_bytes,
)
from tether.errors import DataValidationError
from tether.v1 import data_pb2 as pb

ALL_DTYPES = sorted(SUPPORTED_DTYPES)
MULTIBYTE_DTYPES = [name for name in ALL_DTYPES if np.dtype(name).itemsize > 1]
RoundTrip = Callable[[RuntimeData], RuntimeData]  # the `roundtrip` fixture, see conftest.py
FLOAT_WIDTHS = {"float16": 16, "float32": 32, "float64": 64, "complex64": 32, "complex128": 64}


def sample_array(dtype: str, shape: tuple[int, ...], seed: int = 0) -> npt.NDArray[Any]:
    """Random bits of `dtype`: for floats this includes NaNs with arbitrary payloads."""
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return np.asarray(rng.integers(0, 2, size=shape) == 1)
    raw = rng.integers(0, 256, size=math.prod(shape) * np.dtype(dtype).itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def assert_same_array(decoded: npt.NDArray[Any], original: npt.NDArray[Any]) -> None:
    """Same values, same bits, same shape, and the little-endian twin of the original dtype."""
    little = np.dtype(original.dtype.name).newbyteorder("<")
    assert decoded.dtype == little
    assert decoded.dtype.byteorder in "<|="
    assert decoded.dtype.str[0] in "<|"
    assert decoded.shape == original.shape
    assert np.array_equal(decoded, original, equal_nan=True)
    assert decoded.tobytes() == original.astype(little).tobytes()


def base_bytes(array: npt.NDArray[Any]) -> object:
    """The object at the end of `array`'s base chain."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base


def tensor_message(dtype: str, shape: Sequence[int], data: bytes) -> bytes:
    message = pb.RuntimeData()
    message.tensor.array.dtype = dtype
    message.tensor.array.shape.extend(shape)
    message.tensor.array.data = data
    return message.SerializeToString()


def audio_message(shape: Sequence[int], sample_rate: int, dtype: str = "float32") -> bytes:
    """Audio of `shape` float32 zeros, whatever `dtype` claims."""
    message = pb.RuntimeData()
    message.audio.samples.dtype = dtype
    message.audio.samples.shape.extend(shape)
    message.audio.samples.data = bytes(math.prod(shape) * 4)
    message.audio.sample_rate = sample_rate
    return message.SerializeToString()


def assert_refused(raw: bytes, field: str) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        from_bytes(raw)
    assert info.value.field == field
    return info.value


def assert_refused_on_encoding(data: RuntimeData, field: str) -> None:
    with pytest.raises(DataValidationError) as info:
        encode(data)
    assert info.value.field == field


# --- Audio and Video ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["int16", "float32"])
@pytest.mark.parametrize(
    ("shape", "channels"), [((480,), 1), ((480, 2), 2)], ids=["mono", "stereo"]
)
def test_audio_round_trips_with_its_samples_and_sample_rate(
    roundtrip: RoundTrip, dtype: str, shape: tuple[int, ...], channels: int
) -> None:
    samples = (np.sin(np.arange(math.prod(shape)) / 7) * 1000).astype(dtype).reshape(shape)
    original = Audio(samples=samples, sample_rate=48_000)

    decoded = roundtrip(original)

    assert decoded == original
    assert isinstance(decoded, Audio)
    assert decoded.channels == channels
    assert decoded.sample_rate == 48_000
    assert_same_array(decoded.samples, samples)


@pytest.mark.parametrize("pts", [0, 1, -90_000, 2**63 - 1, -(2**63)])
def test_video_round_trips_with_its_pts(roundtrip: RoundTrip, pts: int) -> None:
    frame = sample_array("uint8", (4, 6, 3))
    original = Video(frame=frame, pixel_format="bgr24", pts=pts)

    decoded = roundtrip(original)

    assert decoded == original
    assert isinstance(decoded, Video)
    assert (decoded.pts, decoded.pixel_format) == (pts, "bgr24")
    assert (decoded.height, decoded.width) == (4, 6)
    assert_same_array(decoded.frame, frame)


def test_video_without_pts_decodes_with_pts_none(roundtrip: RoundTrip) -> None:
    original = Video(frame=sample_array("uint8", (2, 3, 1)), pixel_format="gray")

    decoded = roundtrip(original)

    assert isinstance(decoded, Video)
    assert decoded.pts is None
    assert decoded == original


# --- Text, Binary and Json ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "hello", "héllo wörld — привет, 你好, 🎧🎙️", "nul\x00inside", "x" * 100_000],
    ids=["empty", "ascii", "unicode", "nul", "long"],
)
def test_text_round_trips(roundtrip: RoundTrip, text: str) -> None:
    assert roundtrip(Text(text=text)) == Text(text=text)


@pytest.mark.parametrize(
    ("data", "mime_type"),
    [
        (b"", "application/octet-stream"),
        (bytes(range(256)), "application/x-test"),
        (b"\x00" * 10_000, "image/png"),
    ],
    ids=["empty", "every-byte", "zeros"],
)
def test_binary_round_trips_with_its_mime_type(
    roundtrip: RoundTrip, data: bytes, mime_type: str
) -> None:
    decoded = roundtrip(Binary(data=data, mime_type=mime_type))

    assert decoded == Binary(data=data, mime_type=mime_type)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "b": {"c": "ü", "d": []}},
        {},
        [1, "two", None, False, {"three": 3.0}],
        [],
        "",
        "snow ☃ and 🎧",
        0,
        -7,
        2**64,
        10**100,
        1.5,
        -0.0,
        1e308,
        5e-324,
        True,
        False,
        None,
    ],
    ids=repr,
)
def test_json_round_trips_every_kind_of_json_value(roundtrip: RoundTrip, value: Any) -> None:
    decoded = roundtrip(Json(value=value))

    assert decoded == Json(value=value)
    assert isinstance(decoded, Json)
    # repr tells True from 1 and 1.0 from 1, which == does not.
    assert repr(decoded.value) == repr(value)


# --- Timestamp and metadata -----------------------------------------------------------

ONE_OF_EACH_KIND: dict[str, Callable[..., RuntimeData]] = {
    "audio": lambda **common: Audio(samples=np.zeros(4, np.float32), sample_rate=8000, **common),
    "video": lambda **common: Video(frame=np.zeros((2, 2, 3), np.uint8), pts=3, **common),
    "text": lambda **common: Text(text="hi", **common),
    "binary": lambda **common: Binary(data=b"\x01", **common),
    "tensor": lambda **common: Tensor(array=np.ones((2, 2), np.int64), **common),
    "json": lambda **common: Json(value={"k": 1}, **common),
}


@pytest.mark.parametrize("make", ONE_OF_EACH_KIND.values(), ids=list(ONE_OF_EACH_KIND))
@pytest.mark.parametrize("timestamp", [1_712_345_678.123456, 0.0, -1.5, 1e-300])
def test_timestamp_and_metadata_survive_for_every_kind(
    roundtrip: RoundTrip, make: Callable[..., RuntimeData], timestamp: float
) -> None:
    metadata = {"trace_id": "abc123", "ключ": "値 🎧", "": "", "empty": ""}
    original = make(timestamp=timestamp, metadata=metadata)

    decoded = roundtrip(original)

    assert decoded == original
    assert type(decoded) is type(original)
    assert decoded.timestamp == timestamp
    assert dict(decoded.metadata) == metadata


@pytest.mark.parametrize("make", ONE_OF_EACH_KIND.values(), ids=list(ONE_OF_EACH_KIND))
def test_timestamp_none_stays_none_for_every_kind(
    roundtrip: RoundTrip, make: Callable[..., RuntimeData]
) -> None:
    decoded = roundtrip(make())

    assert decoded.timestamp is None
    assert dict(decoded.metadata) == {}


# --- Tensor ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_tensor_round_trips_every_supported_dtype_bit_exactly(
    roundtrip: RoundTrip, dtype: str
) -> None:
    array = sample_array(dtype, (2, 3, 4))

    decoded = roundtrip(Tensor(array=array))

    assert isinstance(decoded, Tensor)
    assert_same_array(decoded.array, array)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_tensor_of_ordinary_values_compares_equal_after_round_trip(
    roundtrip: RoundTrip, dtype: str
) -> None:
    original = Tensor(array=(np.arange(12) % 2 if dtype == "bool" else np.arange(12)).astype(dtype))

    assert roundtrip(original) == original


NON_CONTIGUOUS_VIEWS: dict[str, Callable[[npt.NDArray[Any]], npt.NDArray[Any]]] = {
    "step-slice": lambda a: a[::2, 1::3],
    "reversed": lambda a: a[::-1, ::-2],
    "transpose": lambda a: a.T,
    "column": lambda a: a[:, 2],
    "fortran-order": np.asfortranarray,
}


@pytest.mark.parametrize("view", NON_CONTIGUOUS_VIEWS.values(), ids=list(NON_CONTIGUOUS_VIEWS))
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_non_contiguous_tensors_round_trip_as_row_major_arrays(
    roundtrip: RoundTrip, dtype: str, view: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]
) -> None:
    array = view(sample_array(dtype, (6, 7)))
    assert not array.flags.c_contiguous

    decoded = roundtrip(Tensor(array=array))

    assert isinstance(decoded, Tensor)
    assert decoded.array.flags.c_contiguous
    assert_same_array(decoded.array, array)


@pytest.mark.parametrize("dtype", MULTIBYTE_DTYPES)
def test_big_endian_tensors_decode_to_equal_values_in_little_endian(
    roundtrip: RoundTrip, dtype: str
) -> None:
    big = np.dtype(dtype).newbyteorder(">")
    array = sample_array(dtype, (3, 5)).astype(big)
    assert array.dtype.str.startswith(">")

    decoded = roundtrip(Tensor(array=array))

    assert isinstance(decoded, Tensor)
    assert decoded.array.dtype == SUPPORTED_DTYPES[dtype]
    assert_same_array(decoded.array, array)


@pytest.mark.parametrize(
    ("array", "wire"),
    [
        (np.array([1, 2], ">u4"), b"\x01\x00\x00\x00\x02\x00\x00\x00"),
        (np.array([1], "<i2"), b"\x01\x00"),
        (np.array([1.0], ">f8"), b"\x00\x00\x00\x00\x00\x00\xf0\x3f"),
        (np.array([[1, 2], [3, 4]], "u1").T, b"\x01\x03\x02\x04"),
    ],
    ids=["big-endian-uint32", "little-endian-int16", "big-endian-float64", "transposed"],
)
def test_wire_bytes_are_little_endian_and_row_major(array: npt.NDArray[Any], wire: bytes) -> None:
    message = encode(Tensor(array=array))

    assert message.tensor.array.data == wire
    assert list(message.tensor.array.shape) == list(array.shape)
    assert message.tensor.array.dtype == array.dtype.name


@pytest.mark.parametrize("shape", [(0,), (3, 0, 2), (0, 0)], ids=str)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_empty_tensors_round_trip_with_their_shape(
    roundtrip: RoundTrip, dtype: str, shape: tuple[int, ...]
) -> None:
    array = np.zeros(shape, dtype)

    decoded = roundtrip(Tensor(array=array))

    assert isinstance(decoded, Tensor)
    assert decoded.array.size == 0
    assert_same_array(decoded.array, array)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_zero_dimensional_tensors_round_trip_as_scalars(roundtrip: RoundTrip, dtype: str) -> None:
    array = sample_array(dtype, (), seed=3)
    assert array.ndim == 0

    decoded = roundtrip(Tensor(array=array))

    assert isinstance(decoded, Tensor)
    assert decoded.array.shape == ()
    assert_same_array(decoded.array, array)


# Bit patterns: quiet NaN, signalling NaN with a payload, negative NaN with a payload,
# +inf, -inf, -0.0, the smallest subnormal, the largest finite value.
SPECIAL_FLOAT_BITS = {
    16: [0x7E00, 0x7C01, 0xFE01, 0x7C00, 0xFC00, 0x8000, 0x0001, 0x7BFF],
    32: [0x7FC00000, 0x7F800001, 0xFFC00123, 0x7F800000, 0xFF800000, 0x80000000, 1, 0x7F7FFFFF],
    64: [
        0x7FF8000000000000,
        0x7FF0000000000001,
        0xFFF8000000000123,
        0x7FF0000000000000,
        0xFFF0000000000000,
        0x8000000000000000,
        1,
        0x7FEFFFFFFFFFFFFF,
    ],
}


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("dtype", FLOAT_WIDTHS)
def test_nan_inf_and_signed_zero_keep_their_exact_bits(
    roundtrip: RoundTrip, dtype: str, order: Literal["<", ">"]
) -> None:
    width = FLOAT_WIDTHS[dtype]
    bits = np.array(SPECIAL_FLOAT_BITS[width], dtype=f"<u{width // 8}")
    if dtype.startswith("complex"):
        # Every pairing of special parts: (a, b) for all a, b.
        bits = np.stack(np.meshgrid(bits, bits), axis=-1).reshape(-1)
    # Integer conversion keeps the bit pattern whatever the byte order; then reinterpret.
    ordered = bits.astype(bits.dtype.newbyteorder(order))
    array = ordered.view(np.dtype(dtype).newbyteorder(order))
    assert np.isnan(array).any()
    assert np.isinf(array).any()

    decoded = roundtrip(Tensor(array=array))

    assert isinstance(decoded, Tensor)
    assert decoded.array.dtype == SUPPORTED_DTYPES[dtype]
    assert np.array_equal(decoded.array.view(f"<u{width // 8}").ravel(), bits)
    assert np.array_equal(np.signbit(decoded.array.real), np.signbit(array.real))


def array_of(data: RuntimeData) -> npt.NDArray[Any]:
    if isinstance(data, Tensor):
        return data.array
    if isinstance(data, Audio):
        return data.samples
    assert isinstance(data, Video)
    return data.frame


@pytest.mark.parametrize(
    "original",
    [
        Tensor(array=sample_array("float64", (5, 3))),
        Audio(samples=sample_array("int16", (480, 2)), sample_rate=48_000),
        Video(frame=sample_array("uint8", (8, 6, 3))),
    ],
    ids=["tensor", "audio", "video"],
)
def test_decoded_arrays_are_read_only_zero_copy_views_of_the_message_bytes(
    roundtrip: RoundTrip, original: RuntimeData
) -> None:
    array = array_of(roundtrip(original))

    assert array.flags.owndata is False
    buffer = base_bytes(array)
    assert isinstance(buffer, bytes)
    assert len(buffer) == array.nbytes
    # The array's memory is the bytes object's memory, not a copy of it.
    start = np.frombuffer(buffer, np.uint8).ctypes.data
    assert start <= array.ctypes.data < start + len(buffer)
    assert array.flags.writeable is False
    with pytest.raises(ValueError, match="read-only"):
        array[...] = 0


# --- Corrupt wire input ---------------------------------------------------------------

VALID_AUDIO = to_bytes(Audio(samples=np.arange(100, dtype=np.float32), sample_rate=16_000))


@pytest.mark.parametrize("keep", [1, 2, 3, 10, len(VALID_AUDIO) // 2, len(VALID_AUDIO) - 1])
def test_truncated_messages_are_refused(keep: int) -> None:
    error = assert_refused(VALID_AUDIO[:keep], "runtime_data")

    assert "truncated" in error.message


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff" * 16,
        b"\x07",  # wire type 7 does not exist
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # length beyond any buffer
        b"\x1a\x04\x0a\x02\xff\xfe",  # text that is not UTF-8
        np.random.default_rng(7).bytes(256),
    ],
    ids=["all-ones", "bad-wire-type", "huge-length", "invalid-utf8", "random"],
)
def test_random_garbage_is_refused(garbage: bytes) -> None:
    assert_refused(garbage, "runtime_data")


@pytest.mark.parametrize(
    "name", ["float128", "object", "", "<f4", "float", "int", "U3", "complex256", "bfloat16"]
)
def test_unsupported_dtype_names_are_refused(name: str) -> None:
    assert_refused(tensor_message(name, (1,), b"\x00" * 4), "tensor.array.dtype")


def test_unsupported_dtype_in_audio_names_the_audio_field() -> None:
    assert_refused(audio_message((4,), 8000, dtype="float99"), "audio.samples.dtype")


@pytest.mark.parametrize(
    ("dtype", "shape", "size"),
    [
        ("float32", (3,), 8),
        ("float32", (3,), 16),
        ("int16", (2, 2), 7),
        ("float64", (), 0),
        ("uint8", (0,), 1),
        ("complex128", (2,), 16),
    ],
)
def test_data_that_does_not_match_the_shape_is_refused(
    dtype: str, shape: tuple[int, ...], size: int
) -> None:
    assert_refused(tensor_message(dtype, shape, b"\x00" * size), "tensor.array.data")


@pytest.mark.parametrize(
    ("shape", "size", "field"),
    [
        ((1,) * 65, 4, "tensor.array.shape"),  # numpy allows 64 dimensions
        ((0,) * 65, 0, "tensor.array.shape"),
        ((0, 2**63), 0, "tensor.array.shape"),
        ((2**64 - 1, 0), 0, "tensor.array.shape"),
        ((2**32, 2**32, 0), 0, "tensor.array.shape"),
        ((2**40, 2**40), 4, "tensor.array.data"),
        ((2**64 - 1,) * 3, 4, "tensor.array.data"),
    ],
    ids=["65-dims", "65-empty-dims", "2**63", "2**64-1", "overflowing-product", "2**80", "2**192"],
)
def test_absurd_shapes_are_refused(shape: tuple[int, ...], size: int, field: str) -> None:
    assert_refused(tensor_message("float32", shape, b"\x00" * size), field)


def test_sixty_four_dimensions_are_still_accepted() -> None:
    decoded = from_bytes(tensor_message("float32", (1,) * 64, b"\x00" * 4))

    assert isinstance(decoded, Tensor)
    assert decoded.array.ndim == 64


@pytest.mark.parametrize("shape", [(4, 2, 1), (), (1, 1, 1, 1)], ids=str)
def test_audio_samples_that_are_not_one_or_two_dimensional_are_refused(
    shape: tuple[int, ...],
) -> None:
    assert_refused(audio_message(shape, 8000), "audio.samples.shape")


def test_audio_with_sample_rate_zero_is_refused() -> None:
    assert_refused(audio_message((4,), 0), "audio.sample_rate")


@pytest.mark.parametrize("shape", [(4, 2), (4,), (1, 2, 3, 4)], ids=str)
def test_video_frames_that_are_not_three_dimensional_are_refused(shape: tuple[int, ...]) -> None:
    message = pb.RuntimeData()
    message.video.frame.dtype = "uint8"
    message.video.frame.shape.extend(shape)
    message.video.frame.data = bytes(math.prod(shape))

    assert_refused(message.SerializeToString(), "video.frame.shape")


@pytest.mark.parametrize(
    "text",
    ["", "{", "{'a': 1}", "[1,]", "tru", "NaN", "Infinity", "-Infinity", "1e999", "[" * 100_000],
    ids=[
        "empty",
        "open",
        "single-quotes",
        "trailing-comma",
        "tru",
        "nan",
        "inf",
        "-inf",
        "overflowing-float",
        "deep-nesting",
    ],
)
def test_invalid_json_text_is_refused(text: str) -> None:
    assert_refused(pb.RuntimeData(json=pb.Json(json=text)).SerializeToString(), "json.json")


@pytest.mark.parametrize(
    "message",
    [pb.RuntimeData(), pb.RuntimeData(timestamp=1.0, metadata={"a": "b"})],
    ids=["empty", "only-common-fields"],
)
def test_message_without_a_kind_is_refused(message: pb.RuntimeData) -> None:
    assert_refused(message.SerializeToString(), "kind")


@pytest.mark.parametrize("byte", [2, 0xFF])
def test_bool_array_holding_a_byte_other_than_zero_or_one_is_refused(byte: int) -> None:
    assert_refused(tensor_message("bool", (3,), bytes([1, 0, byte])), "tensor.array.data")


# --- Refused on encoding --------------------------------------------------------------


def _circular() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        b"bytes",
        float("nan"),
        float("inf"),
        -float("inf"),
        {"a": [1.0, float("nan")]},
        {("tuple", "key"): 1},
        _circular(),
        _deep(100_000),
    ],
    ids=[
        "set",
        "object",
        "bytes",
        "nan",
        "inf",
        "-inf",
        "nested-nan",
        "tuple-key",
        "circular",
        "deep",
    ],
)
def test_json_values_that_json_cannot_carry_are_refused_on_encoding(value: Any) -> None:
    assert_refused_on_encoding(Json(value=value), "json.value")


@pytest.mark.parametrize(
    "array",
    [
        np.array([1, None], dtype=object),
        np.array(["abc"]),
        np.zeros(2, "datetime64[s]"),
        np.zeros(2, "V4"),
        np.zeros(2, [("x", "f4"), ("y", "i2")]),
    ],
    ids=["object", "str", "datetime64", "void", "structured"],
)
def test_tensors_of_unsupported_dtypes_are_refused_naming_the_dtype_field(
    array: npt.NDArray[Any],
) -> None:
    assert_refused_on_encoding(Tensor(array=array), "tensor.array.dtype")


def test_audio_of_object_dtype_names_the_samples_dtype_field() -> None:
    assert_refused_on_encoding(
        Audio(samples=np.array([0, None], dtype=object), sample_rate=8000), "audio.samples.dtype"
    )


def test_samples_that_are_not_a_numpy_array_are_refused() -> None:
    not_an_array: Any = [0.0, 1.0]

    assert_refused_on_encoding(Audio(samples=not_an_array, sample_rate=8000), "audio.samples")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (Audio(samples=np.zeros((2, 2, 2), np.float32), sample_rate=8000), "audio.samples.shape"),
        (Audio(samples=np.zeros(4, np.float32), sample_rate=0), "audio.sample_rate"),
        (Audio(samples=np.zeros(4, np.float32), sample_rate=-1), "audio.sample_rate"),
        (Audio(samples=np.zeros(4, np.float32), sample_rate=2**32), "audio.sample_rate"),
        (Video(frame=np.zeros((4, 4), np.uint8)), "video.frame.shape"),
        (Video(frame=np.zeros((1, 1, 1), np.uint8), pts=2**63), "video.pts"),
        (Video(frame=np.zeros((1, 1, 1), np.uint8), pts=-(2**63) - 1), "video.pts"),
    ],
    ids=[
        "3-d-audio",
        "rate-0",
        "rate-negative",
        "rate-2**32",
        "2-d-video",
        "pts-2**63",
        "pts-below-int64",
    ],
)
def test_data_the_decoder_would_refuse_is_refused_on_encoding(
    data: RuntimeData, field: str
) -> None:
    assert_refused_on_encoding(data, field)


LONE_SURROGATE = "\udcff"  # what os.fsdecode makes of an undecodable byte


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (Text(text=f"a{LONE_SURROGATE}"), "text.text"),
        (Binary(data=b"", mime_type=LONE_SURROGATE), "binary.mime_type"),
        (Video(frame=np.zeros((1, 1, 1)), pixel_format=LONE_SURROGATE), "video.pixel_format"),
        (Text(text="", metadata={LONE_SURROGATE: "v"}), "metadata"),
        (Text(text="", metadata={"k": LONE_SURROGATE}), "metadata['k']"),
    ],
    ids=["text", "mime-type", "pixel-format", "metadata-key", "metadata-value"],
)
def test_strings_that_are_not_encodable_as_utf8_are_refused_naming_the_field(
    data: RuntimeData, field: str
) -> None:
    assert_refused_on_encoding(data, field)
