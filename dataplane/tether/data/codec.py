"""RuntimeData <-> protobuf, with arrays as raw little-endian bytes.

Pure functions, no I/O. Decoding trusts nothing: every malformed message becomes a
`DataValidationError` naming the field, never a numpy or protobuf exception.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError, Message

from tether.data.types import Audio, Binary, Json, RuntimeData, Tensor, Text, Video
from tether.errors import DataValidationError
from tether.v1 import data_pb2 as pb

_M = TypeVar("_M", bound=Message)

_UINT32_MAX = 2**32 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Every dtype the wire carries, by the name used on the wire.
SUPPORTED_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
}


def encode(data: RuntimeData) -> pb.RuntimeData:
    """Build the protobuf message for `data`."""
    message = pb.RuntimeData()
    if isinstance(data, Audio):
        # Refuse here what decode() would refuse, so that a sender learns of it, not a receiver.
        _encode_array(data.samples, message.audio.samples, "audio.samples")
        if data.samples.ndim not in (1, 2):
            raise DataValidationError(
                "audio.samples.shape", f"must be 1-D or 2-D, got {data.samples.shape}"
            )
        if not 0 < data.sample_rate <= _UINT32_MAX:
            raise DataValidationError(
                "audio.sample_rate", f"must be in 1..{_UINT32_MAX}, got {data.sample_rate}"
            )
        message.audio.sample_rate = data.sample_rate
    elif isinstance(data, Video):
        _encode_array(data.frame, message.video.frame, "video.frame")
        if data.frame.ndim != 3:
            raise DataValidationError(
                "video.frame.shape", f"must be (height, width, planes), got {data.frame.shape}"
            )
        message.video.pixel_format = _utf8(data.pixel_format, "video.pixel_format")
        if data.pts is not None:
            if not _INT64_MIN <= data.pts <= _INT64_MAX:
                raise DataValidationError("video.pts", f"does not fit in int64: {data.pts}")
            message.video.pts = data.pts
    elif isinstance(data, Text):
        message.text.text = _utf8(data.text, "text.text")
    elif isinstance(data, Binary):
        message.binary.data = data.data
        message.binary.mime_type = _utf8(data.mime_type, "binary.mime_type")
    elif isinstance(data, Tensor):
        _encode_array(data.array, message.tensor.array, "tensor.array")
    elif isinstance(data, Json):
        try:
            message.json.json = json.dumps(data.value, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            raise DataValidationError("json.value", f"not JSON-serialisable: {exc}") from exc
    else:
        raise DataValidationError("data", f"not RuntimeData: {type(data).__name__}")
    if data.timestamp is not None:
        message.timestamp = data.timestamp
    if data.metadata:
        for key, value in data.metadata.items():
            _utf8(key, "metadata")
            _utf8(value, f"metadata[{key!r}]")
        message.metadata.update(data.metadata)
    return message


def decode(message: pb.RuntimeData) -> RuntimeData:
    """Build RuntimeData from its protobuf message; arrays are zero-copy, read-only views."""
    kind = message.WhichOneof("kind")
    common: dict[str, Any] = {
        "timestamp": message.timestamp if message.HasField("timestamp") else None,
        "metadata": dict(message.metadata),
    }
    if kind == "audio":
        samples = _decode_array(message.audio.samples, "audio.samples")
        if samples.ndim not in (1, 2):
            raise DataValidationError(
                "audio.samples.shape", f"must be 1-D or 2-D, got {samples.shape}"
            )
        if message.audio.sample_rate == 0:
            raise DataValidationError("audio.sample_rate", "must be positive")
        return Audio(samples=samples, sample_rate=message.audio.sample_rate, **common)
    if kind == "video":
        frame = _decode_array(message.video.frame, "video.frame")
        if frame.ndim != 3:
            raise DataValidationError(
                "video.frame.shape", f"must be (height, width, planes), got {frame.shape}"
            )
        pts = message.video.pts if message.video.HasField("pts") else None
        return Video(frame=frame, pixel_format=message.video.pixel_format, pts=pts, **common)
    if kind == "text":
        return Text(text=message.text.text, **common)
    if kind == "binary":
        return Binary(data=message.binary.data, mime_type=message.binary.mime_type, **common)
    if kind == "tensor":
        return Tensor(array=_decode_array(message.tensor.array, "tensor.array"), **common)
    if kind == "json":
        try:
            # NaN, Infinity and 1e999 would decode to floats that encode() refuses.
            value = json.loads(
                message.json.json, parse_constant=_refuse_constant, parse_float=_finite_float
            )
        except (ValueError, RecursionError) as exc:  # deep nesting raises RecursionError
            raise DataValidationError("json.json", f"invalid JSON: {exc}") from exc
        return Json(value=value, **common)
    raise DataValidationError("kind", "no RuntimeData kind is set")


def to_bytes(data: RuntimeData) -> bytes:
    return encode(data).SerializeToString()


def from_bytes(raw: bytes) -> RuntimeData:
    return decode(parse_message(raw, pb.RuntimeData, "runtime_data"))


def parse_message(raw: bytes, message_type: type[_M], field: str) -> _M:
    """Parse protobuf bytes, turning a parse failure into a DataValidationError on `field`."""
    message = message_type()
    try:
        message.ParseFromString(raw)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise DataValidationError(
            field, f"corrupt or truncated protobuf ({len(raw)} bytes)"
        ) from exc
    return message


def _encode_array(array: npt.NDArray[Any], target: pb.NDArray, field: str) -> None:
    if not isinstance(array, np.ndarray):
        raise DataValidationError(field, f"must be a numpy array, got {type(array).__name__}")
    name = array.dtype.name
    wire_dtype = SUPPORTED_DTYPES.get(name)
    if wire_dtype is None:
        raise DataValidationError(f"{field}.dtype", f"unsupported dtype {array.dtype}")
    target.dtype = name
    target.shape.extend(array.shape)
    # astype to the little-endian dtype is a no-op for native arrays on little-endian hosts;
    # tobytes(order="C") handles non-contiguous inputs.
    target.data = array.astype(wire_dtype, copy=False).tobytes(order="C")


def _decode_array(message: pb.NDArray, field: str) -> npt.NDArray[Any]:
    dtype = SUPPORTED_DTYPES.get(message.dtype)
    if dtype is None:
        raise DataValidationError(f"{field}.dtype", f"unsupported dtype {message.dtype!r}")
    shape = tuple(message.shape)
    count = math.prod(shape)
    if count * dtype.itemsize != len(message.data):
        raise DataValidationError(
            f"{field}.data",
            f"{len(message.data)} bytes do not hold shape {shape} of {message.dtype}"
            f" ({count * dtype.itemsize} bytes expected)",
        )
    array = np.frombuffer(message.data, dtype=dtype)
    if dtype.kind == "b" and array.view(np.uint8).max(initial=0) > 1:
        raise DataValidationError(f"{field}.data", "bool array holds bytes other than 0 and 1")
    try:
        return array.reshape(shape)
    except ValueError as exc:  # e.g. more dimensions, or a larger one, than numpy allows
        raise DataValidationError(
            f"{field}.shape", f"numpy cannot use shape {shape}: {exc}"
        ) from exc


def _utf8(text: str, field: str) -> str:
    """`text`, once known to be UTF-8-encodable: lone surrogates (from surrogateescape) are not."""
    if not text.isascii():  # O(1): CPython keeps the flag, so the common case costs nothing
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise DataValidationError(field, f"not encodable as UTF-8: {exc.reason}") from exc
    return text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value
