"""Input checks shared by the built-in nodes, so every node words its errors the same way.

A node that gets the wrong kind or format raises `DataValidationError` whose field is the
offending part of the input and whose message names the node, what it takes and what it
got, e.g. ``input: node 'gain' (Gain) takes Audio, got Text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from tether.data import Audio, RuntimeData
from tether.errors import DataValidationError
from tether.runtime.node import Node

KindT = TypeVar("KindT", bound=RuntimeData)


def invalid_input(node: Node[Any], field: str, message: str) -> DataValidationError:
    """An error about `field` of the input, naming the node that refused it."""
    return DataValidationError(field, f"node {node.node_id!r} ({node.node_type}) {message}")


def expect_kind(node: Node[Any], data: RuntimeData, kind: type[KindT]) -> KindT:
    """`data` if it is a `kind`, else the node's clear refusal."""
    if not isinstance(data, kind):
        raise invalid_input(node, "input", f"takes {kind.__name__}, got {type(data).__name__}")
    return data


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What a stateful audio node locks in from the first input of a run."""

    sample_rate: int
    channels: int
    dtype: np.dtype[Any]

    @classmethod
    def of(cls, audio: Audio) -> AudioFormat:
        return cls(audio.sample_rate, audio.channels, audio.samples.dtype)

    def __str__(self) -> str:
        return f"{self.sample_rate} Hz, {self.channels} channel(s), {self.dtype}"


def lock_format(node: Node[Any], locked: AudioFormat | None, audio: Audio) -> AudioFormat:
    """The run's audio format: `audio`'s if none is locked yet, else refuse a change.

    Nodes that keep samples or filter state between inputs cannot splice audio of another
    rate, channel count or dtype onto what they hold.
    """
    current = AudioFormat.of(audio)
    if locked is not None and current != locked:
        raise invalid_input(
            node,
            "input.samples",
            f"cannot change audio format within a stream: started with {locked}, got {current}",
        )
    return current
