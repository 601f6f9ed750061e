"""RuntimeData and its wire codec."""

from tether.data.codec import SUPPORTED_DTYPES, decode, encode, from_bytes, to_bytes
from tether.data.types import (
    RUNTIME_DATA_TYPES,
    Audio,
    Binary,
    Json,
    RuntimeData,
    Tensor,
    Text,
    Video,
)

__all__ = [
    "RUNTIME_DATA_TYPES",
    "SUPPORTED_DTYPES",
    "Audio",
    "Binary",
    "Json",
    "RuntimeData",
    "Tensor",
    "Text",
    "Video",
    "decode",
    "encode",
    "from_bytes",
    "to_bytes",
]
