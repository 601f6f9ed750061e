"""RuntimeData: the values that flow between nodes.

Each kind is a small frozen dataclass. Arrays are numpy arrays and are never copied
on the way in; decoded arrays are read-only views of the received bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

Metadata: TypeAlias = Mapping[str, str]


def _arrays_equal(left: npt.NDArray[Any], right: npt.NDArray[Any]) -> bool:
    return left.dtype == right.dtype and left.shape == right.shape and np.array_equal(left, right)


@dataclass(frozen=True, eq=False, kw_only=True)
class _Base:
    timestamp: float | None = None
    """Seconds in the producer's media clock."""
    metadata: Metadata = field(default_factory=dict)

    def _common_equal(self, other: _Base) -> bool:
        return (
            type(self) is type(other)
            and self.timestamp == other.timestamp
            and dict(self.metadata) == dict(other.metadata)
        )


@dataclass(frozen=True, eq=False, kw_only=True)
class Audio(_Base):
    """PCM audio: `samples` has shape (frames,) for mono or (frames, channels)."""

    samples: npt.NDArray[Any]
    sample_rate: int

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Audio)
            and self._common_equal(other)
            and self.sample_rate == other.sample_rate
            and _arrays_equal(self.samples, other.samples)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False, kw_only=True)
class Video(_Base):
    """One video frame: `frame` has shape (height, width, planes)."""

    frame: npt.NDArray[Any]
    pixel_format: str = "rgb24"
    pts: int | None = None

    @property
    def height(self) -> int:
        return int(self.frame.shape[0])

    @property
    def width(self) -> int:
        return int(self.frame.shape[1])

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Video)
            and self._common_equal(other)
            and (self.pixel_format, self.pts) == (other.pixel_format, other.pts)
            and _arrays_equal(self.frame, other.frame)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False, kw_only=True)
class Tensor(_Base):
    """An array of any dtype and shape."""

    array: npt.NDArray[Any]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tensor)
            and self._common_equal(other)
            and _arrays_equal(self.array, other.array)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, kw_only=True)
class Text(_Base):
    text: str


@dataclass(frozen=True, kw_only=True)
class Binary(_Base):
    data: bytes
    mime_type: str = "application/octet-stream"


@dataclass(frozen=True, kw_only=True)
class Json(_Base):
    """Any JSON value: dict, list, str, number, bool or None."""

    value: Any


RuntimeData: TypeAlias = Audio | Video | Text | Binary | Tensor | Json
RUNTIME_DATA_TYPES: tuple[type[RuntimeData], ...] = (Audio, Video, Text, Binary, Tensor, Json)
